//! Which endpoint of a spec each interface present on this node carries: endpoints
//! name their interface, and a `interfaceName: "*"` host endpoint stands for every host
//! interface present (not `lo`, not a pod's `cali*` veth) that no endpoint names.
//!
//! Bindings refer into the spec by index, so expanding `"*"` copies no part of the spec;
//! they are recomputed whenever the spec or the interfaces change and compared to see
//! whether the dataplane must be rewritten.

use std::collections::{BTreeMap, BTreeSet};

use enforcer_common::EP_F_HOST;

use crate::compile::DataplaneSpec;
use crate::compile::host::ALL_INTERFACES;
use crate::compile::spec::SpecEndpoint;

/// The interfaces of this network namespace: name → ifindex.
pub type Links = BTreeMap<String, u32>;

/// One present interface carrying an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    pub ifindex: u32,
    /// Index of the endpoint in `DataplaneSpec::endpoints`.
    pub endpoint: usize,
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
        spec.endpoints.get(self.0.get(iface)?.endpoint)
    }
}

/// Whether `name` is a host interface a `"*"` host endpoint covers.
pub fn is_host_interface(name: &str) -> bool {
    name != "lo" && !name.starts_with("cali")
}

/// Binds the spec's endpoints to the interfaces present. An endpoint whose interface
/// is absent is not bound (no program of ours would judge it yet); when two endpoints
/// name one interface, the later wins, as it did in the map.
pub fn bind(spec: &DataplaneSpec, links: &Links) -> Bindings {
    let mut out = BTreeMap::new();
    let mut wildcards = Vec::new();
    for (index, endpoint) in spec.endpoints.iter().enumerate() {
        let host = endpoint.info.flags & EP_F_HOST != 0;
        if endpoint.iface == ALL_INTERFACES {
            wildcards.push((index, host));
        } else if let Some(&ifindex) = links.get(&endpoint.iface) {
            out.insert(
                endpoint.iface.clone(),
                Binding {
                    ifindex,
                    endpoint: index,
                    host,
                },
            );
        }
    }
    if wildcards.is_empty() {
        return Bindings(out);
    }
    let named: BTreeSet<&str> = spec
        .endpoints
        .iter()
        .filter(|e| e.iface != ALL_INTERFACES)
        .map(|e| e.iface.as_str())
        .collect();
    for (index, host) in wildcards {
        for (name, &ifindex) in links {
            if is_host_interface(name) && !named.contains(name.as_str()) {
                out.insert(
                    name.clone(),
                    Binding {
                        ifindex,
                        endpoint: index,
                        host,
                    },
                );
            }
        }
    }
    Bindings(out)
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let bound = bind(&spec, &links);
        let got: Vec<(&str, u32, usize, bool)> = bound
            .iter()
            .map(|(n, b)| (n, b.ifindex, b.endpoint, b.host))
            .collect();
        assert_eq!(
            got,
            [
                ("cali1", 4, 0, false),
                ("eth0", 2, 1, true),
                ("eth1", 3, 2, true),
            ]
        );
        assert_eq!(
            bound.endpoint(&spec, "eth0").map(|e| e.iface.as_str()),
            Some("*")
        );
        // An interface appearing or changing ifindex changes the bindings; an
        // unrelated veth does not.
        let mut more = links.clone();
        more.insert("cali7".into(), 9);
        assert_eq!(bind(&spec, &more), bound);
        more.insert("eth2".into(), 10);
        assert_ne!(bind(&spec, &more), bound);
        let mut renumbered = links;
        renumbered.insert("cali1".into(), 11);
        assert_ne!(bind(&spec, &renumbered), bound);
    }
}
