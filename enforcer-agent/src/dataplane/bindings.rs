//! Which endpoint of a spec each interface present on this node carries: endpoints
//! name their interface, a `interfaceName: "*"` host endpoint stands for every host
//! interface present that no endpoint names (Ethernet links that are not workload
//! interfaces, bond ports or `lo`: [`WorkloadPrefixes::is_host_interface`]), and a
//! workload interface (by prefix) that no endpoint names carries the pod programs
//! with no endpoint entry: everything through it is dropped until its pod's endpoint
//! arrives (security item 5, as Calico drops traffic of unknown workload interfaces).
//!
//! Bindings refer into the spec by index, so expanding `"*"` copies no part of the spec;
//! they are recomputed whenever the spec or the interfaces change and compared to see
//! whether the dataplane must be rewritten.

use std::collections::{BTreeMap, BTreeSet};

use enforcer_common::EP_F_HOST;

use crate::compile::DataplaneSpec;
use crate::compile::host::ALL_INTERFACES;
use crate::compile::spec::SpecEndpoint;

pub use super::interfaces::{Links, NodeInterfaces, WorkloadPrefixes};

/// One present interface carrying our programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    pub ifindex: u32,
    /// Index of the endpoint in `DataplaneSpec::endpoints`; `None` for a workload
    /// interface no endpoint names (yet): the pod programs find no endpoint entry for
    /// it and drop every packet.
    pub endpoint: Option<usize>,
    /// A host endpoint (host programs, XDP); otherwise a workload's veth.
    pub host: bool,
}

/// Interface name → what it carries, for the interfaces present.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bindings(BTreeMap<String, Binding>);

impl Bindings {
    pub fn get(&self, iface: &str) -> Option<&Binding> {
        self.0.get(iface)
    }

    pub fn ifindex(&self, iface: &str) -> Option<u32> {
        self.0.get(iface).map(|b| b.ifindex)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Binding)> {
        self.0.iter().map(|(name, b)| (name.as_str(), b))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The endpoint bound to `iface`.
    pub fn endpoint<'a>(&self, spec: &'a DataplaneSpec, iface: &str) -> Option<&'a SpecEndpoint> {
        spec.endpoints.get(self.0.get(iface)?.endpoint?)
    }

    /// Workload interfaces bound without an endpoint (fail closed).
    pub fn unknown_workloads(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(|(_, b)| b.endpoint.is_none())
            .map(|(name, _)| name.as_str())
    }
}

/// Binds the spec's endpoints (none when no policy was ever compiled) to the
/// interfaces present. An endpoint whose interface is absent is not bound; when two
/// endpoints name one interface, the later wins, as it did in the map. Every workload
/// interface present that no endpoint names is bound without an endpoint.
pub fn bind(
    spec: Option<&DataplaneSpec>,
    interfaces: &NodeInterfaces,
    workloads: &WorkloadPrefixes,
) -> Bindings {
    let links = &interfaces.links;
    let endpoints = spec.map_or(&[][..], |s| &s.endpoints[..]);
    let mut out = BTreeMap::new();
    let mut wildcards = Vec::new();
    for (index, endpoint) in endpoints.iter().enumerate() {
        let host = endpoint.info.flags & EP_F_HOST != 0;
        if endpoint.iface == ALL_INTERFACES {
            wildcards.push((index, host));
        } else if let Some(&ifindex) = links.get(&endpoint.iface) {
            out.insert(
                endpoint.iface.clone(),
                Binding {
                    ifindex,
                    endpoint: Some(index),
                    host,
                },
            );
        }
    }
    for (name, &ifindex) in links {
        if workloads.matches(name) && !out.contains_key(name) {
            out.insert(
                name.clone(),
                Binding {
                    ifindex,
                    endpoint: None,
                    host: false,
                },
            );
        }
    }
    if wildcards.is_empty() {
        return Bindings(out);
    }
    let named: BTreeSet<&str> = endpoints
        .iter()
        .filter(|e| e.iface != ALL_INTERFACES)
        .map(|e| e.iface.as_str())
        .collect();
    for (index, host) in wildcards {
        for (name, &ifindex) in links {
            let covered = workloads.is_host_interface(name, interfaces.kind(ifindex));
            if covered && !named.contains(name.as_str()) {
                out.insert(
                    name.clone(),
                    Binding {
                        ifindex,
                        endpoint: Some(index),
                        host,
                    },
                );
            }
        }
    }
    Bindings(out)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing test panics with context")]
mod tests {
    use super::*;
    use crate::dataplane::interfaces::LinkKind;
    use enforcer_common::EndpointInfo;

    fn endpoint(iface: &str, flags: u32) -> SpecEndpoint {
        SpecEndpoint {
            iface: iface.into(),
            workload: format!("ns/{iface}"),
            info: EndpointInfo {
                flags,
                ..EndpointInfo::default()
            },
        }
    }

    #[test]
    fn wildcards_cover_host_interfaces_no_endpoint_names() {
        let spec = DataplaneSpec {
            endpoints: vec![
                endpoint("cali1", 0),
                endpoint(ALL_INTERFACES, EP_F_HOST),
                endpoint("eth1", EP_F_HOST),
                endpoint("cali-absent", 0),
            ],
            ..DataplaneSpec::default()
        };
        let links: Links = [
            ("lo", 1),
            ("eth0", 2),
            ("eth1", 3),
            ("cali1", 4),
            ("cali9", 5),
        ]
        .into_iter()
        .map(|(n, i)| (n.to_owned(), i))
        .collect();
        let prefixes = WorkloadPrefixes::default();
        let bind = |links: &Links| {
            bind(
                Some(&spec),
                &NodeInterfaces::ethernet(links.clone()),
                &prefixes,
            )
        };
        let bound = bind(&links);
        let got: Vec<(&str, u32, Option<usize>, bool)> = bound
            .iter()
            .map(|(n, b)| (n, b.ifindex, b.endpoint, b.host))
            .collect();
        assert_eq!(
            got,
            [
                ("cali1", 4, Some(0), false),
                ("cali9", 5, None, false),
                ("eth0", 2, Some(1), true),
                ("eth1", 3, Some(2), true),
            ]
        );
        assert_eq!(
            bound.endpoint(&spec, "eth0").map(|e| e.iface.as_str()),
            Some("*")
        );
        assert_eq!(bound.endpoint(&spec, "cali9"), None);
        // An interface appearing or changing ifindex changes the bindings.
        let mut more = links.clone();
        more.insert("eth2".into(), 10);
        assert_ne!(bind(&more), bound);
        let mut renumbered = links;
        renumbered.insert("cali1".into(), 11);
        assert_ne!(bind(&renumbered), bound);
    }

    /// Security item 5: a workload interface without an endpoint carries the pod
    /// programs (no endpoint entry: every packet dropped), also before any policy was
    /// compiled; an interface that no prefix names does not.
    #[test]
    fn unknown_workload_interfaces_are_bound_fail_closed() {
        let links: Links = [("lo", 1), ("eth0", 2), ("cali1", 4), ("tap7", 5)]
            .into_iter()
            .map(|(n, i)| (n.to_owned(), i))
            .collect();
        let interfaces = NodeInterfaces::ethernet(links);
        let got = |bound: &Bindings| -> Vec<(String, Option<usize>, bool)> {
            bound
                .iter()
                .map(|(n, b)| (n.to_owned(), b.endpoint, b.host))
                .collect()
        };
        let bound = bind(None, &interfaces, &WorkloadPrefixes::default());
        assert_eq!(got(&bound), [("cali1".to_owned(), None, false)]);
        assert_eq!(bound.unknown_workloads().collect::<Vec<_>>(), ["cali1"]);
        let prefixes: WorkloadPrefixes = "cali,tap".parse().unwrap();
        let bound = bind(None, &interfaces, &prefixes);
        assert_eq!(
            got(&bound),
            [
                ("cali1".to_owned(), None, false),
                ("tap7".to_owned(), None, false)
            ]
        );
    }

    /// Security item 12: `"*"` covers Ethernet host links only: not bond ports (their
    /// bond is covered), not L3 devices (no Ethernet header to parse), not loopback,
    /// not workload interfaces.
    #[test]
    fn the_wildcard_skips_bond_ports_l3_devices_and_loopback() {
        let spec = DataplaneSpec {
            endpoints: vec![endpoint(ALL_INTERFACES, EP_F_HOST)],
            ..DataplaneSpec::default()
        };
        let mut interfaces = NodeInterfaces::ethernet(
            [
                ("lo", 1),
                ("eth0", 2),
                ("eth1", 3),
                ("bond0", 4),
                ("tunl0", 5),
                ("wg0", 6),
                ("cali1", 7),
            ]
            .into_iter()
            .map(|(n, i)| (n.to_owned(), i))
            .collect(),
        );
        interfaces.kinds.insert(2, LinkKind::BondPort);
        interfaces.kinds.insert(3, LinkKind::BondPort);
        interfaces.kinds.insert(5, LinkKind::Other);
        interfaces.kinds.remove(&6);
        let bound = bind(Some(&spec), &interfaces, &WorkloadPrefixes::default());
        let hosts: Vec<&str> = bound
            .iter()
            .filter(|(_, b)| b.host)
            .map(|(n, _)| n)
            .collect();
        assert_eq!(hosts, ["bond0"]);
    }
}
