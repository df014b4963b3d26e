//! Who an address is, as a flow log names it: a pod (namespace, name, labels), a host
//! endpoint, a Service address, a network set (longest prefix of its nets), or the
//! world. Built from the cluster the agent compiled, so the names are those of the
//! policy in force.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::policy::Cluster;

/// Labels Calico adds to every endpoint (`projectcalico.org/namespace`, ...): said by
/// the namespace and kind fields already, left out of the log.
const BUILTIN_LABEL_PREFIX: &str = "projectcalico.org/";

/// One end of a flow, named.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Peer {
    /// `pod`, `host-endpoint`, `service`, `network-set`, `global-network-set` or `world`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Shared with the address book's entry: a flood of flows between two pods holds
    /// one copy of each pod's labels, not one per flow and interval.
    #[serde(default, skip_serializing_if = "no_labels")]
    pub labels: Arc<BTreeMap<String, String>>,
    pub ip: String,
    /// TCP/UDP/SCTP port (absent for other protocols).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl Peer {
    /// `namespace/name`, `name`, or the address for the world.
    pub fn display_name(&self) -> String {
        match (self.namespace.is_empty(), self.name.is_empty()) {
            (_, true) => self.ip.clone(),
            (true, false) => self.name.clone(),
            (false, false) => format!("{}/{}", self.namespace, self.name),
        }
    }
}

/// What an address stands for, without the address itself.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Identity {
    kind: &'static str,
    namespace: String,
    name: String,
    labels: Arc<BTreeMap<String, String>>,
}

/// Addresses → identities: exact addresses (pods, host endpoints, Services) first,
/// then the longest network-set prefix, then the world.
#[derive(Clone, Debug, Default)]
pub struct AddressBook {
    exact: HashMap<IpAddr, Identity>,
    /// Network sets' nets, longest prefix first.
    nets: Vec<(IpNet, Identity)>,
}

fn no_labels(labels: &Arc<BTreeMap<String, String>>) -> bool {
    labels.is_empty()
}

fn public_labels(labels: &BTreeMap<String, String>) -> Arc<BTreeMap<String, String>> {
    Arc::new(
        labels
            .iter()
            .filter(|(k, _)| !k.starts_with(BUILTIN_LABEL_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

impl AddressBook {
    pub fn from_cluster(cluster: &Cluster) -> Self {
        let mut book = Self::default();
        for s in &cluster.services {
            for ip in &s.vips {
                book.exact.insert(
                    *ip,
                    Identity {
                        kind: "service",
                        namespace: s.id.namespace.clone(),
                        name: s.id.name.clone(),
                        labels: Arc::default(),
                    },
                );
            }
        }
        for h in &cluster.host_endpoints {
            for ip in &h.ips {
                book.exact.insert(
                    *ip,
                    Identity {
                        kind: "host-endpoint",
                        namespace: String::new(),
                        name: h.id.name.clone(),
                        labels: public_labels(&h.labels),
                    },
                );
            }
        }
        // Pods last: an address that is both (a hostNetwork pod) is named as the pod.
        for e in &cluster.endpoints {
            for ip in &e.ips {
                book.exact.insert(
                    *ip,
                    Identity {
                        kind: "pod",
                        namespace: e.namespace.clone(),
                        name: e.name.clone(),
                        labels: public_labels(&e.labels),
                    },
                );
            }
        }
        for n in &cluster.network_sets {
            for net in &n.nets {
                book.nets.push((
                    *net,
                    Identity {
                        kind: if n.namespace.is_some() {
                            "network-set"
                        } else {
                            "global-network-set"
                        },
                        namespace: n.namespace.clone().unwrap_or_default(),
                        name: n.id.name.clone(),
                        labels: public_labels(&n.labels),
                    },
                ));
            }
        }
        book.nets
            .sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        book
    }

    /// The named peer for `ip` (and `port`, for protocols with ports).
    pub fn peer(&self, ip: IpAddr, port: Option<u16>) -> Peer {
        let identity = self.exact.get(&ip).or_else(|| {
            self.nets
                .iter()
                .find(|(net, _)| net.contains(&ip))
                .map(|(_, id)| id)
        });
        match identity {
            Some(id) => Peer {
                kind: id.kind.to_owned(),
                namespace: id.namespace.clone(),
                name: id.name.clone(),
                labels: Arc::clone(&id.labels),
                ip: ip.to_string(),
                port,
            },
            None => Peer {
                kind: "world".to_owned(),
                ip: ip.to_string(),
                port,
                ..Peer::default()
            },
        }
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing test panics with context")]
mod tests {
    use super::*;
    use crate::model::load_str;

    const CLUSTER: &str = r"
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop, labels: {app: web}}
spec: {containers: [{name: c}]}
status: {podIP: 198.18.0.10}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: partners, labels: {trust: partner}}
spec: {nets: [198.51.100.0/24, 198.51.100.128/25]}
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: office, namespace: shop}
spec: {nets: [198.51.100.192/26]}
";

    #[test]
    fn addresses_are_named_exact_first_then_longest_prefix_then_world() {
        let loaded = load_str(std::path::Path::new("test.yaml"), CLUSTER).unwrap();
        let (cluster, _) = Cluster::from_objects(&loaded).unwrap();
        let book = AddressBook::from_cluster(&cluster);
        let pod = book.peer("198.18.0.10".parse().unwrap(), Some(80));
        assert_eq!(
            (pod.kind.as_str(), pod.display_name().as_str(), pod.port),
            ("pod", "shop/web-0", Some(80))
        );
        assert_eq!(pod.labels.get("app").map(String::as_str), Some("web"));
        assert!(
            pod.labels
                .keys()
                .all(|k| !k.starts_with(BUILTIN_LABEL_PREFIX)),
            "{:?}",
            pod.labels
        );
        let office = book.peer("198.51.100.200".parse().unwrap(), None);
        assert_eq!(
            (office.kind.as_str(), office.display_name().as_str()),
            ("network-set", "shop/office")
        );
        let partner = book.peer("198.51.100.5".parse().unwrap(), None);
        assert_eq!(
            (partner.kind.as_str(), partner.name.as_str()),
            ("global-network-set", "partners")
        );
        let world = book.peer("203.0.113.9".parse().unwrap(), None);
        assert_eq!(
            (world.kind.as_str(), world.display_name().as_str()),
            ("world", "203.0.113.9")
        );
    }
}
