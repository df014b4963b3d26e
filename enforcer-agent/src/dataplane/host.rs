//! Host endpoints on this node's interfaces: `interfaceName: "*"` expanded to every
//! host interface present (not `lo`, not a pod's `cali*` veth).

use std::collections::BTreeSet;

use enforcer_common::EP_F_HOST;

use crate::compile::DataplaneSpec;
use crate::compile::host::ALL_INTERFACES;

/// Interface names of this network namespace.
pub fn interfaces() -> Vec<String> {
    let mut names: Vec<String> = nix::ifaddrs::getifaddrs()
        .map(|addrs| addrs.map(|a| a.interface_name).collect())
        .unwrap_or_default();
    names.sort();
    names.dedup();
    names
}

/// Whether `name` is a host interface a `"*"` host endpoint covers.
pub fn is_host_interface(name: &str) -> bool {
    name != "lo" && !name.starts_with("cali")
}

/// The spec with every `"*"` host endpoint replaced by one per host interface present.
pub fn expand_interfaces(spec: &DataplaneSpec) -> DataplaneSpec {
    if !spec.endpoints.iter().any(|e| e.iface == ALL_INTERFACES) {
        return spec.clone();
    }
    let present = interfaces();
    let named: BTreeSet<String> = spec
        .endpoints
        .iter()
        .filter(|e| e.iface != ALL_INTERFACES)
        .map(|e| e.iface.clone())
        .collect();
    let mut out = spec.clone();
    out.endpoints.clear();
    for e in &spec.endpoints {
        if e.iface != ALL_INTERFACES {
            out.endpoints.push(e.clone());
            continue;
        }
        for name in present
            .iter()
            .filter(|n| is_host_interface(n) && !named.contains(*n))
        {
            let mut one = e.clone();
            one.iface.clone_from(name);
            out.endpoints.push(one);
        }
    }
    out
}

/// Interfaces the spec names as host endpoints.
pub fn host_interfaces(spec: &DataplaneSpec) -> BTreeSet<String> {
    spec.endpoints
        .iter()
        .filter(|e| e.info.flags & EP_F_HOST != 0)
        .map(|e| e.iface.clone())
        .collect()
}
