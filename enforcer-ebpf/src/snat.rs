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
//! local backend entered through a host interface: the ingress guard noted it there
//! (`node_port_client`), and `enf_pod_in` judges it as that client.

use enforcer_common::{EP_F_HAS_V4, EP_F_HAS_V6, EP_F_HOST, EndpointInfo, FAMILY_V4};

use crate::{
    Drop,
    host::{self, HostKey},
    packet::Packet,
    policy,
};

/// The address to judge the packet's source by: `src` is the packet's own source on
/// entry, and is replaced by the local workload's address when the node rewrote the
/// workload's packet (it entered the node through that workload's interface,
/// `came_in`, and no longer carries the workload's address of its family). Returns 1
/// when it did, else 0 (a packet the node sent, one that entered through a host
/// interface, or one with its own source). Out of line: the two outcomes meet again
/// in the caller as one state (inlined, the verifier walked the rest of `enf_pod_in`
/// once per outcome, three times the instructions).
#[inline(never)]
pub fn judged_source(generation: u32, pkt: &Packet, came_in: u32, src: &mut [u8; 16]) -> u32 {
    u32::from(workload_behind(generation, pkt, came_in, src))
}

/// `enf_host_eg`: re-keys `key` (the packet's source is one of the node's addresses)
/// with the pod's address as the local side when the packet is a pod's whose source
/// the node rewrote (natOutgoing): forwarded traffic, judged by applyOnForward policy.
/// Out of line, in its own stack frame: the host program's is near the limit.
#[inline(never)]
pub fn rekey_forwarded(
    generation: u32,
    ep: &EndpointInfo,
    pkt: &Packet,
    came_in: u32,
    key: &mut HostKey,
) -> Result<(), Drop> {
    let mut pod = [0; 16];
    if workload_behind(generation, pkt, came_in, &mut pod) {
        host::local_side(generation, ep, pkt, &pod, key)
    } else {
        Ok(())
    }
}

/// Whether the node rewrote the source of a local workload's packet (see
/// [`judged_source`]); if so, the workload's address of the packet's family is in
/// `out` (left as it was otherwise). Reads the endpoint entry in place and writes the
/// address straight into `out`: no copy in the out-of-line callers' frames, which add
/// to `enf_pod_in`'s and `enf_host_eg`'s (the 512-byte limit is for the whole chain).
#[inline(always)]
pub fn workload_behind(generation: u32, pkt: &Packet, came_in: u32, out: &mut [u8; 16]) -> bool {
    if came_in == 0 {
        return false;
    }
    let Some(ep) = policy::endpoint_in_place(generation, came_in) else {
        return false;
    };
    if ep.flags & EP_F_HOST != 0 || policy::is_own_source(ep, pkt) {
        return false;
    }
    if pkt.family == FAMILY_V4 {
        if ep.flags & EP_F_HAS_V4 == 0 {
            return false;
        }
        *out = [0; 16];
        out[..4].copy_from_slice(&ep.ipv4);
    } else {
        if ep.flags & EP_F_HAS_V6 == 0 {
            return false;
        }
        *out = ep.ipv6;
    }
    true
}
