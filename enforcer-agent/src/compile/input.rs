//! What every compile phase reads: the cluster, the node compiled for, and the table
//! of rules (every rule of every policy, with the numbers its named ports can take).

use std::net::IpAddr;

use ipnet::IpNet;

use super::hashing::HashMap;
use crate::eval::host::{NodeAddresses, host_endpoints_of};
use crate::model::{Labels, ObjectId};
use crate::policy::{
    Cluster, Direction, Endpoint, Entity, EntityMatch, HostEndpointInfo, NamedPort, PortMatch, Rule,
};

/// A rule of a policy, as the compiler walks them.
pub(super) struct RuleRef<'a> {
    pub(super) dir: Direction,
    pub(super) rule: &'a Rule,
}

impl<'a> RuleRef<'a> {
    /// The side that tests the remote address.
    pub(super) fn peer_side(&self) -> &'a EntityMatch {
        match self.dir {
            Direction::Ingress => &self.rule.source,
            Direction::Egress => &self.rule.destination,
        }
    }

    /// The side that tests the local endpoint's own address.
    pub(super) fn local_side(&self) -> &'a EntityMatch {
        match self.dir {
            Direction::Ingress => &self.rule.destination,
            Direction::Egress => &self.rule.source,
        }
    }
}

/// The cluster, the node, and the rule table.
pub(super) struct Input<'a> {
    pub(super) cluster: &'a Cluster,
    /// `None`: every endpoint is local.
    pub(super) node: Option<&'a str>,
    /// The node's own addresses (to the host vs forwarded at a host endpoint).
    pub(super) addresses: &'a NodeAddresses,
    /// Every rule of every policy, by policy, direction (ingress first), index.
    pub(super) rules: Vec<RuleRef<'a>>,
    /// Per policy of the cluster: the position in `rules` of its first ingress and
    /// first egress rule (its rules of a direction follow in order); `None` for a
    /// policy that is not relevant (none of its rules is in the table).
    first_rule: Vec<Option<[usize; 2]>>,
    /// Per rule (as `rules`): every number its named destination ports can resolve to.
    pub(super) named_values: Vec<Vec<u16>>,
    /// Per rule: every number its named source ports can resolve to.
    pub(super) named_src_values: Vec<Vec<u16>>,
    /// Per rule: every (protocol, port) its destination `services` match can match.
    pub(super) service_values: Vec<Vec<(u8, u16)>>,
}

impl<'a> Input<'a> {
    pub(super) fn new(
        cluster: &'a Cluster,
        node: Option<&'a str>,
        addresses: &'a NodeAddresses,
    ) -> Self {
        let mut rules = Vec::new();
        let mut first_rule = vec![None; cluster.policies.len()];
        let relevant = relevant_policies(cluster, node);
        // The rules of every policy that applies here shape the classes and cells,
        // host-endpoint-only kinds (preDNAT, doNotTrack) included: `compile::host`
        // needs them; pod verdicts only group by the rules that apply to the pod.
        // A policy that applies to no endpoint of this node cannot change any of its
        // verdicts: its rules would only split classes and cells for nothing.
        for (p, policy) in cluster.policies.iter().enumerate() {
            if !relevant[p] {
                continue;
            }
            let ingress = rules.len();
            rules.extend(policy.ingress.iter().map(|rule| RuleRef {
                dir: Direction::Ingress,
                rule,
            }));
            let egress = rules.len();
            rules.extend(policy.egress.iter().map(|rule| RuleRef {
                dir: Direction::Egress,
                rule,
            }));
            first_rule[p] = Some([ingress, egress]);
        }
        // Named ports by (protocol, name), over every entity that declares any: one
        // pass over the endpoints rather than one per rule.
        let mut declared: HashMap<(u8, &str), Vec<u16>> = HashMap::default();
        let all_ports = cluster
            .endpoints
            .iter()
            .flat_map(|e| &e.named_ports)
            .chain(cluster.host_endpoints.iter().flat_map(|h| &h.named_ports));
        for np in all_ports {
            declared
                .entry((np.protocol, np.name.as_str()))
                .or_default()
                .push(np.port);
        }
        // Thousands of pods declare the same name with the same number: each rule then
        // merges distinct numbers only.
        for ports in declared.values_mut() {
            ports.sort_unstable();
            ports.dedup();
        }
        let named_values = rules
            .iter()
            .map(|r| named_port_values(r.rule, &r.rule.destination, &declared))
            .collect();
        let named_src_values = rules
            .iter()
            .map(|r| named_port_values(r.rule, &r.rule.source, &declared))
            .collect();
        let service_values = rules
            .iter()
            .map(|r| {
                let mut out: Vec<(u8, u16)> = r
                    .rule
                    .destination
                    .services
                    .iter()
                    .flat_map(|s| cluster.backends(s))
                    .map(|b| (b.protocol, b.port))
                    .collect();
                out.sort_unstable();
                out.dedup();
                out
            })
            .collect();
        Input {
            cluster,
            node,
            addresses,
            rules,
            first_rule,
            named_values,
            named_src_values,
            service_values,
        }
    }

    /// The policies that apply to an endpoint of the node (see [`relevant_policies`]:
    /// those whose rules are in the table), ascending: the only ones a local
    /// endpoint's applicable policies can come from.
    pub(super) fn relevant(&self) -> impl Iterator<Item = usize> + '_ {
        self.first_rule
            .iter()
            .enumerate()
            .filter_map(|(p, first)| first.map(|_| p))
    }

    /// Position in [`Input::rules`] of rule `index` of `policy` in `dir`.
    pub(super) fn rule_position(&self, policy: usize, dir: Direction, index: usize) -> usize {
        let Some([ingress, egress]) = self.first_rule[policy] else {
            panic!("rule position asked of policy {policy}, which is not relevant here");
        };
        index
            + match dir {
                Direction::Ingress => ingress,
                Direction::Egress => egress,
            }
    }

    /// Whether an endpoint runs on the node compiled for (pods without a node name do).
    pub(super) fn is_local(&self, endpoint: usize) -> bool {
        let ep = &self.cluster.endpoints[endpoint];
        match (self.node, &ep.node) {
            (Some(node), Some(ep_node)) => node == ep_node,
            _ => true,
        }
    }

    /// Everything about an endpoint's address that a rule can see (see
    /// [`AddressFingerprint`]); `parent`: the most specific named prefix around it.
    pub(super) fn fingerprint(
        &self,
        endpoint: usize,
        addr: IpAddr,
        parent: Option<IpNet>,
    ) -> AddressFingerprint<'a> {
        let ep = &self.cluster.endpoints[endpoint];
        let others = self
            .cluster
            .entities_at(addr)
            .into_iter()
            .filter_map(|e| match e {
                Entity::HostEndpoint(h) => Some(&h.id),
                Entity::Node(n) => Some(&n.id),
                _ => None,
            })
            .collect();
        AddressFingerprint {
            labels: &ep.labels,
            named_ports: &ep.named_ports,
            is_v4: addr.is_ipv4(),
            parent,
            others,
        }
    }
}

/// Everything about an endpoint's address that a rule can see: labels (which include
/// namespace and service account), named ports, family, the most specific named CIDR
/// containing the address, and the other entities there (host endpoints, nodes).
/// Addresses with equal fingerprints get equal facts from every rule side.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct AddressFingerprint<'a> {
    labels: &'a Labels,
    named_ports: &'a [NamedPort],
    is_v4: bool,
    parent: Option<IpNet>,
    others: Vec<&'a ObjectId>,
}

/// Per policy of `cluster`: whether it applies, in some direction, to a workload
/// endpoint of `node` or (as any kind of host policy) to one of its host endpoints
/// with an interface. Only those policies' rules can decide a verdict there.
pub(crate) fn relevant_policies(cluster: &Cluster, node: Option<&str>) -> Vec<bool> {
    let locals: Vec<&Endpoint> = cluster
        .endpoints
        .iter()
        .filter(|ep| match (node, &ep.node) {
            (Some(node), Some(ep_node)) => node == ep_node,
            _ => true,
        })
        .collect();
    let heps: Vec<&HostEndpointInfo> = host_endpoints_of(cluster, node)
        .filter(|h| h.iface.is_some())
        .collect();
    cluster
        .policies
        .iter()
        .map(|policy| {
            [Direction::Ingress, Direction::Egress]
                .into_iter()
                .any(|dir| {
                    locals
                        .iter()
                        .any(|ep| policy.applies_to_endpoint(cluster, ep, dir))
                        || (policy.applies(dir)
                            && heps.iter().any(|h| {
                                let entity = Entity::HostEndpoint(h);
                                policy.subject.matches(cluster, &entity)
                                    && policy
                                        .subject_service_accounts
                                        .as_ref()
                                        .is_none_or(|sa| sa.matches(&entity))
                            }))
                })
        })
        .collect()
}

/// Every number the named ports of a rule's `side` can resolve to, given the declared
/// named ports by (protocol, name).
fn named_port_values(
    rule: &Rule,
    side: &EntityMatch,
    declared: &HashMap<(u8, &str), Vec<u16>>,
) -> Vec<u16> {
    let Some(proto) = rule.protocol else {
        return Vec::new();
    };
    let mut out: Vec<u16> = side
        .ports
        .iter()
        .chain(&side.not_ports)
        .filter_map(|p| match p {
            PortMatch::Named(n) => declared.get(&(proto, n.as_str())),
            PortMatch::Range(..) => None,
        })
        .flatten()
        .copied()
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}
