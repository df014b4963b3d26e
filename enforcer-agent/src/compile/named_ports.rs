//! The named ports the cluster's entities declare, and the numbers a rule's named ports
//! resolve to.

use super::hashing::HashMap;
use crate::policy::{Cluster, EntityMatch, PortMatch, Rule};

/// The named ports the cluster's entities declare: by name, per protocol, every
/// number declared for it (sorted, distinct). Thousands of pods declare the same name
/// with the same number: a rule then merges distinct numbers only.
#[derive(Debug, Default)]
pub(super) struct DeclaredPorts(HashMap<String, Vec<(u8, Vec<u16>)>>);

impl DeclaredPorts {
    /// Over every workload and host endpoint: one pass, not one per rule.
    pub(super) fn new(cluster: &Cluster) -> Self {
        let mut by_name: HashMap<String, Vec<(u8, Vec<u16>)>> = HashMap::default();
        let all_ports = cluster
            .endpoints
            .iter()
            .flat_map(|e| &e.named_ports)
            .chain(cluster.host_endpoints.iter().flat_map(|h| &h.named_ports));
        for np in all_ports {
            let protocols = match by_name.get_mut(np.name.as_str()) {
                Some(protocols) => protocols,
                None => by_name.entry(np.name.clone()).or_default(),
            };
            match protocols.iter_mut().find(|(p, _)| *p == np.protocol) {
                Some((_, ports)) => ports.push(np.port),
                None => protocols.push((np.protocol, vec![np.port])),
            }
        }
        for (_, ports) in by_name.values_mut().flatten() {
            ports.sort_unstable();
            ports.dedup();
        }
        DeclaredPorts(by_name)
    }

    /// The numbers declared for `name` in `protocol`.
    fn of(&self, protocol: u8, name: &str) -> &[u16] {
        self.0
            .get(name)
            .and_then(|protocols| protocols.iter().find(|(p, _)| *p == protocol))
            .map_or(&[], |(_, ports)| ports)
    }

    /// Every number the named ports of a rule's `side` can resolve to.
    pub(super) fn values(&self, rule: &Rule, side: &EntityMatch) -> Vec<u16> {
        let Some(proto) = rule.protocol else {
            return Vec::new();
        };
        let ports = side.ports.iter().chain(&side.not_ports);
        // Most rules name no port: nothing to gather.
        if !ports.clone().any(|p| matches!(p, PortMatch::Named(_))) {
            return Vec::new();
        }
        let mut out: Vec<u16> = ports
            .filter_map(|p| match p {
                PortMatch::Named(n) => Some(self.of(proto, n)),
                PortMatch::Range(..) => None,
            })
            .flatten()
            .copied()
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}
