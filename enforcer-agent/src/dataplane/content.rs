//! One generation's map content in the exact form the maps hold it (minus the
//! generation byte), so two generations can be diffed entry by entry.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use enforcer_common::{
    EP_F_HAS_V4, EP_F_HAS_V6, EP_F_HOST, EP_F_OWN_PEER_V4, EP_F_OWN_PEER_V6, EndpointInfo,
    NO_INDEX, PEER_F_LOCAL_ENDPOINT, PeerInfo, Verdict,
};

use super::bindings::Bindings;
use crate::compile::DataplaneSpec;
use crate::compile::spec::SpecVerdictKey;

/// Address bytes and prefix length of an LPM entry.
pub type V4Prefix = ([u8; 4], u8);
pub type V6Prefix = ([u8; 16], u8);
/// (protocol, first port, prefix length) of a `PORTS` entry.
pub type PortPrefix = (u8, u16, u8);
/// (`ENF_PORTS` value, first source port, prefix length) of a `SOURCE_PORTS` entry.
pub type SourcePortPrefix = (u32, u16, u8);

#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenerationContent {
    /// ifindex → endpoint.
    pub endpoints: HashMap<u32, EndpointInfo>,
    pub peers_v4: HashMap<V4Prefix, PeerInfo>,
    pub peers_v6: HashMap<V6Prefix, PeerInfo>,
    pub ports: HashMap<PortPrefix, u32>,
    pub source_ports: HashMap<SourcePortPrefix, u32>,
    pub verdicts: HashMap<SpecVerdictKey, Verdict>,
    /// (protocol, port) → `FRONTEND_F_*`.
    pub frontends: HashMap<(u8, u16), u32>,
}

impl GenerationContent {
    /// Resolves interface names with `ifindex_of`. Endpoints whose interface does not
    /// exist (yet) get no entry, and their addresses are then not marked as local
    /// endpoints: no program of ours would judge their leg.
    pub fn from_spec(spec: &DataplaneSpec, ifindex_of: impl Fn(&str) -> Option<u32>) -> Self {
        let endpoints = spec
            .endpoints
            .iter()
            .filter_map(|e| Some((ifindex_of(&e.iface)?, e.info)));
        Self::build(spec, endpoints, &ifindex_of)
    }

    /// The spec as bound to the interfaces present (`"*"` host endpoints expanded).
    pub fn from_bindings(spec: &DataplaneSpec, bindings: &Bindings) -> Self {
        let endpoints = bindings.iter().filter_map(|(_, b)| {
            let endpoint = spec.endpoints.get(b.endpoint?)?;
            Some((b.ifindex, endpoint.info))
        });
        Self::build(spec, endpoints, |name| bindings.ifindex(name))
    }

    fn build(
        spec: &DataplaneSpec,
        endpoints: impl Iterator<Item = (u32, EndpointInfo)>,
        ifindex_of: impl Fn(&str) -> Option<u32>,
    ) -> Self {
        let mut content = Self {
            endpoints: endpoints.collect(),
            ..Self::default()
        };
        for peer in &spec.peers {
            let ifindex = peer.local_iface.as_deref().and_then(&ifindex_of);
            let mut flags = peer.flags;
            if ifindex.is_none() {
                flags &= !PEER_F_LOCAL_ENDPOINT;
            }
            let info = PeerInfo {
                class: peer.class,
                flags,
                ifindex: ifindex.unwrap_or(0),
                host_class: peer.host_class,
            };
            match peer.net {
                IpNet::V4(net) => {
                    content
                        .peers_v4
                        .insert((net.network().octets(), net.prefix_len()), info);
                }
                IpNet::V6(net) => {
                    content
                        .peers_v6
                        .insert((net.network().octets(), net.prefix_len()), info);
                }
            }
        }
        content.note_own_peers();
        for port in &spec.ports {
            content
                .ports
                .insert((port.proto, port.port, port.prefix_len), port.cell);
        }
        content.source_ports = spec
            .source_ports
            .iter()
            .map(|p| ((p.dst_cell, p.port, p.prefix_len), p.cell))
            .collect();
        content.verdicts = spec.verdicts.iter().copied().collect();
        content.frontends = spec
            .frontends
            .iter()
            .map(|f| ((f.proto, f.port), f.flags))
            .collect();
        content
    }

    /// Copies into each workload endpoint's entry the class of its own addresses' peer
    /// entries (`EndpointInfo::own_class_v4` / `_v6`), so `enf_pod_in` judges a packet
    /// the RPF check found to come from the workload itself without walking the peer
    /// trie. Only a `/32` (`/128`) entry that names this endpoint's interface, carries
    /// exactly `PEER_F_LOCAL_ENDPOINT` and no host class is copied: that entry is what
    /// the trie answers for the address, and a program rebuilds it whole from the class
    /// (`policy::own_peer`). Anything else leaves the flag clear and the program walks
    /// the trie. Both are written in the same generation, so they never disagree.
    fn note_own_peers(&mut self) {
        let own = |peer: Option<&PeerInfo>, ifindex: u32| {
            peer.filter(|p| {
                p.flags == PEER_F_LOCAL_ENDPOINT && p.ifindex == ifindex && p.host_class == 0
            })
            .map(|p| p.class)
        };
        for (&ifindex, info) in &mut self.endpoints {
            info.flags &= !(EP_F_OWN_PEER_V4 | EP_F_OWN_PEER_V6);
            info.own_class_v4 = 0;
            info.own_class_v6 = 0;
            if info.flags & EP_F_HOST != 0 {
                continue;
            }
            if info.flags & EP_F_HAS_V4 != 0
                && let Some(class) = own(self.peers_v4.get(&(info.ipv4, 32)), ifindex)
            {
                info.flags |= EP_F_OWN_PEER_V4;
                info.own_class_v4 = class;
            }
            if info.flags & EP_F_HAS_V6 != 0
                && let Some(class) = own(self.peers_v6.get(&(info.ipv6, 128)), ifindex)
            {
                info.flags |= EP_F_OWN_PEER_V6;
                info.own_class_v6 = class;
            }
        }
    }

    /// Replaces the spec's policy indices in the verdicts (`policy`, `log_policy`) by
    /// `ids[index]` (stable ids, see `policy_ids`). Indices without an id stay.
    pub fn renumber_policies(&mut self, ids: &[u32]) {
        let map = |index: u32| ids.get(index as usize).copied().unwrap_or(index);
        for v in self.verdicts.values_mut() {
            if v.policy != NO_INDEX {
                v.policy = map(v.policy);
            }
            if v.log_policy != NO_INDEX {
                v.log_policy = map(v.log_policy);
            }
        }
    }

    /// Number of entries over all maps.
    pub fn len(&self) -> usize {
        self.endpoints.len()
            + self.peers_v4.len()
            + self.peers_v6.len()
            + self.ports.len()
            + self.source_ports.len()
            + self.verdicts.len()
            + self.frontends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Changes that turn one content into another: keys to delete, entries to upsert.
pub struct Diff<'a, K, V> {
    pub removed: Vec<&'a K>,
    pub upserted: Vec<(&'a K, &'a V)>,
}

/// What to do to a map holding `old` so it holds `new`.
pub fn diff<'a, K: Eq + std::hash::Hash, V: PartialEq, S: std::hash::BuildHasher>(
    old: &'a HashMap<K, V, S>,
    new: &'a HashMap<K, V, S>,
) -> Diff<'a, K, V> {
    Diff {
        removed: old.keys().filter(|k| !new.contains_key(k)).collect(),
        upserted: new.iter().filter(|(k, v)| old.get(k) != Some(v)).collect(),
    }
}

/// Address bytes of an IP as the maps hold them.
pub fn addr_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => {
            let mut out = [0u8; 16];
            out[..4].copy_from_slice(&v4.octets());
            out
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing test panics with context")]
mod tests {
    use super::*;

    #[test]
    fn diff_lists_removed_changed_and_new_keys_only() {
        let old: HashMap<u32, u32> = [(1, 10), (2, 20), (3, 30)].into();
        let new: HashMap<u32, u32> = [(2, 20), (3, 31), (4, 40)].into();
        let d = diff(&old, &new);
        assert_eq!(d.removed, vec![&1]);
        let mut up: Vec<_> = d.upserted.into_iter().map(|(k, v)| (*k, *v)).collect();
        up.sort_unstable();
        assert_eq!(up, vec![(3, 31), (4, 40)]);
    }

    #[test]
    fn missing_interface_drops_endpoint_and_local_flag() {
        use crate::compile::spec::{SpecEndpoint, SpecPeer};
        let spec = DataplaneSpec {
            endpoints: vec![
                SpecEndpoint {
                    iface: "caliA".into(),
                    workload: "ns/a".into(),
                    info: EndpointInfo::default(),
                },
                SpecEndpoint {
                    iface: "caliB".into(),
                    workload: "ns/b".into(),
                    info: EndpointInfo::default(),
                },
            ],
            peers: vec![SpecPeer {
                net: "198.18.0.11/32".parse().unwrap(),
                class: 7,
                flags: PEER_F_LOCAL_ENDPOINT,
                host_class: 0,
                local_iface: Some("caliB".into()),
            }],
            ..DataplaneSpec::default()
        };
        let content = GenerationContent::from_spec(&spec, |name| (name == "caliA").then_some(5));
        assert_eq!(
            content.endpoints.keys().copied().collect::<Vec<_>>(),
            vec![5]
        );
        let peer = content.peers_v4[&([198, 18, 0, 11], 32)];
        assert_eq!(peer.class, 7);
        assert_eq!(peer.flags & PEER_F_LOCAL_ENDPOINT, 0);
        assert_eq!(peer.ifindex, 0);
    }

    #[test]
    fn own_peer_classes_copy_only_the_entry_the_trie_would_answer() {
        use crate::compile::spec::{SpecEndpoint, SpecPeer};
        let endpoint = |iface: &str, last: u8| SpecEndpoint {
            iface: iface.into(),
            workload: format!("ns/{iface}"),
            info: EndpointInfo {
                flags: EP_F_HAS_V4,
                ipv4: [198, 18, 0, last],
                ..EndpointInfo::default()
            },
        };
        let peer = |net: &str, class: u32, flags: u32, host_class: u32, iface: &str| SpecPeer {
            net: net.parse().unwrap(),
            class,
            flags,
            host_class,
            local_iface: Some(iface.into()),
        };
        let spec = DataplaneSpec {
            endpoints: vec![
                endpoint("caliA", 1),
                endpoint("caliB", 2),
                endpoint("caliC", 3),
                endpoint("caliD", 4),
            ],
            peers: vec![
                // A's own entry: copied.
                peer("198.18.0.1/32", 7, PEER_F_LOCAL_ENDPOINT, 0, "caliA"),
                // B's address names another interface: not B's own entry.
                peer("198.18.0.2/32", 8, PEER_F_LOCAL_ENDPOINT, 0, "caliA"),
                // C's entry has a host class the program could not rebuild.
                peer("198.18.0.3/32", 9, PEER_F_LOCAL_ENDPOINT, 4, "caliC"),
                // D has only a covering CIDR: the trie answers, not a /32.
                peer("198.18.0.0/24", 10, 0, 0, "caliD"),
            ],
            ..DataplaneSpec::default()
        };
        let ifindex = |name: &str| {
            name.strip_prefix("cali")
                .map(|c| u32::from(c.as_bytes()[0]))
        };
        let content = GenerationContent::from_spec(&spec, ifindex);
        let info = |name: &str| content.endpoints[&ifindex(name).unwrap()];
        assert_eq!(info("caliA").flags & EP_F_OWN_PEER_V4, EP_F_OWN_PEER_V4);
        assert_eq!(info("caliA").own_class_v4, 7);
        for name in ["caliB", "caliC", "caliD"] {
            assert_eq!(info(name).flags & EP_F_OWN_PEER_V4, 0, "{name}");
            assert_eq!(info(name).own_class_v4, 0, "{name}");
        }
        assert_eq!(info("caliA").flags & EP_F_OWN_PEER_V6, 0);
    }
}
