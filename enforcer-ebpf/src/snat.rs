//! Sources the node's own SNAT rewrote (security item 9): kube-proxy's masquerade of a
//! pod's `NodePort` traffic, `natOutgoing` of a pod's traffic leaving the node. Our TC
//! hooks run after `POSTROUTING`, so they see the node's address where Calico (judging
//! in `FORWARD`, before SNAT) sees the pod's.
//!
//! The pod is still known: the packet entered the node through its veth
//! (`__sk_buff.ingress_ifindex`, set by the kernel when the packet arrived, beyond the
//! pod's reach), and its egress hook let it leave with the pod's own address only, so a
//! different source there can only be the node's rewrite. The hooks judge such a packet
//! as the pod's: `enf_pod_in` with the pod as the peer (and as the client of a deferred
//! Service leg), `enf_host_eg` as forwarded traffic from the pod (applyOnForward), not
//! as the host's own.
//!
//! A client outside the node whose `NodePort` traffic kube-proxy masquerades to a
//! local backend is not recovered: the backend's ingress sees the node's address, as
//! for a backend on another node (Calico's documented behaviour there; filter external
//! clients with preDNAT policy on the node they enter).

use enforcer_common::{EP_F_HAS_V4, EP_F_HAS_V6, EP_F_HOST, FAMILY_V4};

use crate::{
    packet::{self, Packet},
    policy,
};

/// The address of the local workload whose packet this is, when the node rewrote its
/// source: the packet entered the node through that workload's interface (`came_in`)
/// and no longer carries the workload's address of its family. `None`: not a
/// workload's packet (sent by the node, or entered through a host interface), or one
/// with its own source.
#[inline(always)]
pub fn workload_behind(generation: u32, pkt: &Packet, came_in: u32) -> Option<[u8; 16]> {
    if came_in == 0 {
        return None;
    }
    let ep = policy::endpoint(generation, came_in)?;
    if ep.flags & EP_F_HOST != 0 {
        return None;
    }
    let own = if pkt.family == FAMILY_V4 {
        if ep.flags & EP_F_HAS_V4 == 0 {
            return None;
        }
        let mut a = [0; 16];
        a[..4].copy_from_slice(&ep.ipv4);
        a
    } else {
        if ep.flags & EP_F_HAS_V6 == 0 {
            return None;
        }
        ep.ipv6
    };
    if packet::addr_eq(&own, &pkt.src) {
        None
    } else {
        Some(own)
    }
}
