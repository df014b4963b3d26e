//! The node's interfaces as the agent sees them (from netlink): names and indexes,
//! what kind of link each is, and the addresses they carry; and which of them are
//! workload interfaces (by name prefix, as Calico's `InterfacePrefix`) or host
//! interfaces a `interfaceName: "*"` host endpoint covers.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use crate::eval::host::NodeAddresses;

/// The interfaces of this network namespace: name → ifindex.
pub type Links = BTreeMap<String, u32>;

/// What a link is, as far as the programs care: whether its packets start with an
/// Ethernet header, and whether it is a port of a bond.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkKind {
    /// `ARPHRD_ETHER` (physical NICs, veth, bridges, bonds, VLAN and VXLAN devices).
    Ethernet,
    /// An Ethernet port of a bond: its traffic is the bond's, judged on the bond
    /// master. Programs on the port itself would see the bond's control frames (LACP,
    /// LLDP) and drop them, bringing the bond down.
    BondPort,
    /// `ARPHRD_LOOPBACK`: traffic that never leaves the node.
    Loopback,
    /// Anything else: L3 devices without an Ethernet header (IPIP `tunl0`, `WireGuard`,
    /// `tun`, SIT...). The programs parse an Ethernet header, so they are not attached
    /// here; what such a device carries crossed an Ethernet interface encapsulated.
    Other,
}

/// ifindex → what the link is. A link missing here is treated as [`LinkKind::Other`].
pub type LinkKinds = BTreeMap<u32, LinkKind>;

/// The addresses the node's interfaces carry, with the ifindex carrying each (an
/// address may sit on several interfaces). Each is a host prefix, or a whole prefix
/// the kernel treats as local (an IPv4 address on a loopback device).
pub type LocalAddresses = BTreeSet<(u32, IpNet)>;

/// Everything netlink says about the node's interfaces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInterfaces {
    pub links: Links,
    pub kinds: LinkKinds,
    pub addresses: LocalAddresses,
}

impl NodeInterfaces {
    /// Links only (every one Ethernet, no addresses), as tests describe a node.
    pub fn ethernet(links: Links) -> Self {
        let kinds = links
            .iter()
            .map(|(name, &ifindex)| {
                let kind = if name == "lo" {
                    LinkKind::Loopback
                } else {
                    LinkKind::Ethernet
                };
                (ifindex, kind)
            })
            .collect();
        Self {
            links,
            kinds,
            addresses: LocalAddresses::new(),
        }
    }

    pub fn kind(&self, ifindex: u32) -> LinkKind {
        self.kinds.get(&ifindex).copied().unwrap_or(LinkKind::Other)
    }

    /// The node's own addresses: every address of every interface (IPv6 link-local
    /// ones are all of `fe80::/10`, which [`NodeAddresses::of_node`] adds whole, so a
    /// pod's veth appearing with its link-local address changes nothing).
    pub fn node_addresses(&self) -> NodeAddresses {
        NodeAddresses::of_node(
            self.addresses
                .iter()
                .map(|(_, net)| *net)
                .filter(|net| !is_ipv6_link_local(net)),
        )
    }
}

fn is_ipv6_link_local(net: &IpNet) -> bool {
    match net {
        IpNet::V6(n) => n.addr().segments()[0] & 0xffc0 == 0xfe80,
        IpNet::V4(_) => false,
    }
}

/// Calico's default `InterfacePrefix`.
pub const DEFAULT_WORKLOAD_PREFIX: &str = "cali";

/// Which interfaces are workload (pod) interfaces: those whose name starts with one of
/// the prefixes (Calico's `InterfacePrefix`, a comma-separated list, default `cali`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadPrefixes(Vec<String>);

impl Default for WorkloadPrefixes {
    fn default() -> Self {
        Self(vec![DEFAULT_WORKLOAD_PREFIX.to_owned()])
    }
}

#[derive(Debug, thiserror::Error)]
#[error("interface prefix list {list:?}: {problem}")]
pub struct PrefixError {
    list: String,
    problem: &'static str,
}

impl std::str::FromStr for WorkloadPrefixes {
    type Err = PrefixError;

    /// `cali,tap`: non-empty prefixes separated by commas.
    fn from_str(list: &str) -> Result<Self, PrefixError> {
        let prefixes: Vec<String> = list.split(',').map(|p| p.trim().to_owned()).collect();
        if prefixes.iter().any(String::is_empty) {
            return Err(PrefixError {
                list: list.to_owned(),
                problem: "empty prefix (it would match every interface)",
            });
        }
        Ok(Self(prefixes))
    }
}

impl WorkloadPrefixes {
    /// Whether `name` is a workload interface.
    pub fn matches(&self, name: &str) -> bool {
        self.0.iter().any(|p| name.starts_with(p.as_str()))
    }

    pub fn prefixes(&self) -> &[String] {
        &self.0
    }

    /// Whether an `interfaceName: "*"` host endpoint covers this interface: an
    /// Ethernet link (not a bond's port: the bond master is covered instead) that is
    /// neither a workload interface nor loopback. L3 devices are left out (see
    /// [`LinkKind::Other`]).
    pub fn is_host_interface(&self, name: &str, kind: LinkKind) -> bool {
        kind == LinkKind::Ethernet && name != "lo" && !self.matches(name)
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing test panics with context")]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_and_match() {
        let p: WorkloadPrefixes = "cali, tap".parse().unwrap();
        assert!(p.matches("cali123") && p.matches("tap0"));
        assert!(!p.matches("eth0"));
        assert!("cali,".parse::<WorkloadPrefixes>().is_err());
        assert!(WorkloadPrefixes::default().matches("calie3b0c442f1d"));
    }

    #[test]
    fn the_wildcard_covers_ethernet_host_links_only() {
        let p = WorkloadPrefixes::default();
        assert!(p.is_host_interface("eth0", LinkKind::Ethernet));
        assert!(p.is_host_interface("bond0", LinkKind::Ethernet));
        assert!(p.is_host_interface("vxlan.calico", LinkKind::Ethernet));
        assert!(!p.is_host_interface("eth1", LinkKind::BondPort));
        assert!(!p.is_host_interface("tunl0", LinkKind::Other));
        assert!(!p.is_host_interface("wireguard.cali", LinkKind::Other));
        assert!(!p.is_host_interface("lo", LinkKind::Loopback));
        assert!(!p.is_host_interface("cali1", LinkKind::Ethernet));
    }

    #[test]
    fn node_addresses_are_every_interface_address_plus_what_is_never_forwarded() {
        let mut interfaces = NodeInterfaces::default();
        for (index, net) in [
            (1, "127.0.0.0/8"),
            (1, "::1/128"),
            (2, "198.18.255.1/32"),
            (2, "2001:2:0:ff::1/128"),
            (2, "fe80::1234/128"),
            (3, "198.18.254.1/32"),
            (4, "fe80::1/128"),
        ] {
            interfaces.addresses.insert((index, net.parse().unwrap()));
        }
        let own = interfaces.node_addresses();
        for addr in [
            "127.0.0.5",
            "::1",
            "198.18.255.1",
            "2001:2:0:ff::1",
            "198.18.254.1",
            "fe80::1234",
            "fe80::99",
            "ff02::1",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(own.contains(addr.parse().unwrap()), "{addr}");
        }
        for addr in ["198.18.255.2", "2001:2:0:ff::2", "198.18.0.10"] {
            assert!(!own.contains(addr.parse().unwrap()), "{addr}");
        }
        // A veth's link-local address appearing changes nothing.
        let mut more = interfaces.clone();
        more.addresses
            .insert((9, "fe80::abcd/128".parse().unwrap()));
        assert_eq!(more.node_addresses(), own);
    }
}
