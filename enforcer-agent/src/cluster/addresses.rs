//! Address planning: pod addresses from a node's pod block, Service `ClusterIPs` from
//! the Service range, and the allocation state that makes both stable.
//!
//! Pod index `i` of a block gets `v4 base + i` and `v6 base + i`; the default node's
//! block starts at 198.18.0.0 / `2001:2::` and hands out indices 10 to `0xfeff`, so the
//! first pod is 198.18.0.10 / `2001:2::a` and 198.18.255.0/24 stays free for the
//! nodes' own interfaces and clients outside the cluster (several nodes cut the range
//! in blocks: [`super::nodes`]). A pod keeps its addresses for life
//! ([`Allocation::pods`]); a new one takes the next free index of its node's block after
//! the last one handed out there, wrapping around, so a deleted pod's address is not
//! reused at once.
//!
//! Service `ClusterIPs` come from 198.19.0.0/16: `kube-dns` is 198.19.0.10, the others
//! are allocated upwards from 198.19.0.11; a Service keeps the `ClusterIP` it has.
//! IPv6 ones (IPv6 and dual-stack Services) come from `2001:2:0:19::/112`, upwards from
//! `2001:2:0:19::b` likewise: a /64 no pod block (`2001:2::/64`) or node
//! (`2001:2:0:ff::/64`) reaches.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::ObjectId;

use super::error::PlanError;
use super::service_ips::Family;

pub const FIRST_POD_INDEX: u32 = 10;
/// Last index below 198.18.255.0/24.
pub const LAST_POD_INDEX: u32 = 0xfeff;
pub const POD_NET_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
pub const POD_NET_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0);
pub const SERVICE_NET_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 0);
pub const SERVICE_NET_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0x19, 0, 0, 0, 0);
/// Prefix length of the IPv6 Service range (the largest Kubernetes accepts is a /108).
pub const SERVICE_PREFIX_V6: u8 = 112;
/// The `kube-dns` Service's `ClusterIP` (what every pod's resolv.conf names).
pub const DNS_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 10);

/// A node's pod address block: the indices it hands out and where they start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodBlock {
    pub v4_base: Ipv4Addr,
    pub v6_base: Ipv6Addr,
    pub first_index: u32,
    pub last_index: u32,
    /// Prefix lengths of the block as routed (`v4_base/prefix_v4`).
    pub prefix_v4: u8,
    pub prefix_v6: u8,
}

impl PodBlock {
    /// The block as a route destination.
    pub fn v4_net(&self) -> ipnet::Ipv4Net {
        ipnet::Ipv4Net::new(self.v4_base, self.prefix_v4)
            .unwrap_or_default()
            .trunc()
    }

    pub fn v6_net(&self) -> ipnet::Ipv6Net {
        ipnet::Ipv6Net::new(self.v6_base, self.prefix_v6)
            .unwrap_or_default()
            .trunc()
    }

    /// Whether `ip` is one of the block's pod addresses.
    pub fn contains_v4(&self, ip: Ipv4Addr) -> bool {
        let offset = u32::from(ip).wrapping_sub(u32::from(self.v4_base));
        u32::from(ip) >= u32::from(self.v4_base)
            && (self.first_index..=self.last_index).contains(&offset)
    }

    pub fn v4(&self, index: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.v4_base) + index)
    }

    pub fn v6(&self, index: u32) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.v6_base) + u128::from(index))
    }
}

/// The default node's block (198.18.0.10 and up, see the module doc), nominally the
/// whole pod range.
pub const DEFAULT_POD_BLOCK: PodBlock = PodBlock {
    v4_base: POD_NET_V4,
    v6_base: POD_NET_V6,
    first_index: FIRST_POD_INDEX,
    last_index: LAST_POD_INDEX,
    prefix_v4: 16,
    prefix_v6: 112,
};

/// A pod's IPv4 address at index `index` of the default block.
pub fn pod_v4(index: u32) -> Ipv4Addr {
    DEFAULT_POD_BLOCK.v4(index)
}

/// A pod's IPv6 address at index `index` of the default block.
pub fn pod_v6(index: u32) -> Ipv6Addr {
    DEFAULT_POD_BLOCK.v6(index)
}

/// A pod's two addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodAddresses {
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
}

/// What is already handed out: the planner keeps these addresses (and nodes) and
/// continues from each node's `next_pod_index`; [`super::plan()`] returns the state after its own
/// allocations.
///
/// A running cluster persists it (the lab in its state file; `ClusterIPs` live in the
/// Service objects themselves); tools planning from files start from
/// [`Allocation::default`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allocation {
    /// Next pod index to try in each node's block (a node missing here starts at its
    /// block's first index).
    pub next_pod_index: BTreeMap<String, u32>,
    /// Pods' addresses by `namespace/name`.
    pub pods: BTreeMap<String, PodAddresses>,
    /// The node each pod runs on, by `namespace/name` (so that a Deployment's pod stays
    /// where it is when the Deployment is planned again).
    pub nodes: BTreeMap<String, String>,
    /// `spec.clusterIPs` of each existing Service (`["None"]` for a headless one),
    /// kept when an update of the Service leaves them out.
    pub cluster_ips: BTreeMap<ObjectId, Vec<String>>,
}

/// Hands out pod addresses from one block, skipping addresses in use.
pub(super) struct PodAllocator<'a> {
    node: &'a str,
    block: &'a PodBlock,
    used: BTreeSet<Ipv4Addr>,
    next: u32,
}

impl<'a> PodAllocator<'a> {
    pub(super) fn new(
        node: &'a str,
        block: &'a PodBlock,
        used: BTreeSet<Ipv4Addr>,
        next: u32,
    ) -> Self {
        Self {
            node,
            block,
            used,
            next,
        }
    }

    fn exhausted(&self) -> PlanError {
        PlanError::PodAddressesExhausted {
            node: self.node.to_owned(),
            block: format!(
                "{}-{}",
                self.block.v4(self.block.first_index),
                self.block.v4(self.block.last_index)
            ),
        }
    }

    pub(super) fn allocate(&mut self) -> Result<PodAddresses, PlanError> {
        let span = self.block.last_index - self.block.first_index + 1;
        for _ in 0..span {
            let index = if (self.block.first_index..=self.block.last_index).contains(&self.next) {
                self.next
            } else {
                self.block.first_index
            };
            self.next = index + 1;
            let ipv4 = self.block.v4(index);
            if self.used.insert(ipv4) {
                return Ok(PodAddresses {
                    ipv4,
                    ipv6: self.block.v6(index),
                });
            }
        }
        Err(self.exhausted())
    }

    /// Takes `ipv4` out of this allocator's reach (another block handed it out).
    pub(super) fn mark_used(&mut self, ipv4: Ipv4Addr) {
        self.used.insert(ipv4);
    }

    /// The cursor after the last allocation.
    pub(super) fn next_index(&self) -> u32 {
        self.next
    }
}

/// Hands out `ClusterIPs` of each family upwards from just above `kube-dns`'s offset,
/// skipping taken ones.
pub(super) struct ServiceAllocator {
    v4: u32,
    v6: u128,
}

impl ServiceAllocator {
    pub(super) fn new() -> Self {
        Self {
            v4: u32::from(DNS_SERVICE_IP) + 1,
            v6: u128::from(SERVICE_NET_V6) + 0xb,
        }
    }

    /// The next free address of `family`.
    pub(super) fn allocate(
        &mut self,
        family: Family,
        taken: &BTreeMap<IpAddr, ObjectId>,
    ) -> Result<IpAddr, PlanError> {
        loop {
            let ip = match family {
                Family::V4 => {
                    let ip = Ipv4Addr::from(self.v4);
                    if u32::from(ip) >> 16 != u32::from(SERVICE_NET_V4) >> 16 {
                        return Err(PlanError::ServiceAddressesExhausted);
                    }
                    self.v4 += 1;
                    IpAddr::V4(ip)
                }
                Family::V6 => {
                    let ip = Ipv6Addr::from(self.v6);
                    let host_bits = 128 - u32::from(SERVICE_PREFIX_V6);
                    if u128::from(ip) >> host_bits != u128::from(SERVICE_NET_V6) >> host_bits {
                        return Err(PlanError::ServiceAddressesExhausted);
                    }
                    self.v6 += 1;
                    IpAddr::V6(ip)
                }
            };
            if !taken.contains_key(&ip) && ip != IpAddr::V4(DNS_SERVICE_IP) {
                return Ok(ip);
            }
        }
    }
}

#[cfg(test)]
#[expect(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
mod tests {
    use super::*;

    #[test]
    fn first_addresses_and_wrap_around() {
        assert_eq!(pod_v4(10), Ipv4Addr::new(198, 18, 0, 10));
        assert_eq!(pod_v6(10), "2001:2::a".parse::<Ipv6Addr>().unwrap());
        assert_eq!(pod_v4(LAST_POD_INDEX), Ipv4Addr::new(198, 18, 254, 255));
        // The cursor at the end of the block wraps to the first free index.
        let used: BTreeSet<Ipv4Addr> = [pod_v4(10)].into();
        let mut a = PodAllocator::new("node1", &DEFAULT_POD_BLOCK, used, LAST_POD_INDEX);
        assert_eq!(a.allocate().unwrap().ipv4, pod_v4(LAST_POD_INDEX));
        assert_eq!(a.allocate().unwrap().ipv4, pod_v4(11));
        assert_eq!(a.next_index(), 12);
    }

    #[test]
    fn an_exhausted_block_is_an_error() {
        let block = PodBlock {
            first_index: 10,
            last_index: 11,
            ..DEFAULT_POD_BLOCK
        };
        let mut a = PodAllocator::new("node1", &block, BTreeSet::new(), 10);
        a.allocate().unwrap();
        a.allocate().unwrap();
        assert!(matches!(
            a.allocate(),
            Err(PlanError::PodAddressesExhausted { .. })
        ));
    }

    #[test]
    fn cluster_ips_skip_taken_ones() {
        let id = |name: &str| ObjectId {
            kind: "Service".into(),
            namespace: "a".into(),
            name: name.into(),
        };
        let (v4, v6) = (Family::V4, Family::V6);
        let taken: BTreeMap<IpAddr, ObjectId> = [
            ("198.19.0.11".parse().unwrap(), id("x")),
            ("2001:2:0:19::b".parse().unwrap(), id("y")),
        ]
        .into();
        let mut s = ServiceAllocator::new();
        assert_eq!(s.allocate(v4, &taken).unwrap().to_string(), "198.19.0.12");
        assert_eq!(
            s.allocate(v6, &taken).unwrap().to_string(),
            "2001:2:0:19::c"
        );
        assert_eq!(s.allocate(v4, &taken).unwrap().to_string(), "198.19.0.13");
        assert_eq!(
            s.allocate(v6, &taken).unwrap().to_string(),
            "2001:2:0:19::d"
        );
    }

    #[test]
    fn the_ipv6_service_range_is_no_pod_block_or_node_address() {
        let services = ipnet::Ipv6Net::new(SERVICE_NET_V6, SERVICE_PREFIX_V6).unwrap();
        let nodes = crate::cluster::nodes::cluster_nodes(8).unwrap();
        for node in &nodes {
            let block = node.pod_block.v6_net();
            assert!(
                !block.contains(&services.network()) && !services.contains(&block.network()),
                "{block} overlaps {services}"
            );
            assert!(!services.contains(&node.ipv6), "{}", node.ipv6);
        }
        assert!(!services.contains(&DEFAULT_POD_BLOCK.v6(LAST_POD_INDEX)));
    }
}
