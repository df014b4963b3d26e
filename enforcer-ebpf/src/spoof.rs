//! Sources the node must not take on trust (security item 11): a pod's packets that
//! carry another packet (whose inner source the node would take as given once it
//! decapsulates it), and a local pod's address arriving through any interface but
//! that pod's own.
//!
//! - **Encapsulation from a workload** ([`is_encapsulation`]): IPIP (IP protocol 4),
//!   IPv6-in-IP (41) and VXLAN (UDP 4789), to any destination, are dropped at the pod's
//!   egress before conntrack and policy, as Calico's workload chains do by default
//!   (`AllowIPIPPacketsFromWorkloads` and `AllowVXLANPacketsFromWorkloads` false): a
//!   node (this one or another) that decapsulates such a packet delivers its inner
//!   packet with whatever source the pod wrote there.
//! - **RPF for local endpoints' addresses** ([`check_rpf`]): a packet whose source is a
//!   pod of this node (`PEER_F_LOCAL_ENDPOINT`) must have entered the node through that
//!   pod's interface (`__sk_buff.ingress_ifindex` is the peer entry's `ifindex`), where
//!   `enf_pod_eg` checked it; arriving through a host interface, a tunnel device or
//!   another pod's veth it is forged: dropped, before conntrack, so a forged packet can
//!   neither be judged as the pod nor ride one of its flows (conntrack keys carry no
//!   interface). A packet the node sent itself (`ingress_ifindex` 0) is the node's: only
//!   root there can forge a source, and root owns the dataplane anyway.
//!
//! Both count as `deny_spoofed`.

use aya_ebpf::programs::TcContext;
use enforcer_common::{EndpointInfo, PEER_F_LOCAL_ENDPOINT};

use crate::{
    Drop,
    packet::{IPPROTO_UDP, Packet},
    policy,
};

/// IP protocol numbers of IP-in-IP encapsulation: IPv4 (`IPPROTO_IPIP`) and IPv6
/// (`IPPROTO_IPV6`, also the next header of IPv6-in-IPv6).
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6_IN_IP: u8 = 41;
/// The VXLAN port (IANA, Calico's `VXLANPort` default; the lab's `vxlan.calico`).
const VXLAN_PORT: u16 = 4789;

/// The packet carries another IP packet for a node to decapsulate.
#[inline(always)]
pub fn is_encapsulation(pkt: &Packet) -> bool {
    matches!(pkt.proto, IPPROTO_IPIP | IPPROTO_IPV6_IN_IP)
        || (pkt.proto == IPPROTO_UDP && pkt.dport == VXLAN_PORT)
}

/// The interface the packet entered the node on; 0 for a packet the node sent.
#[inline(always)]
pub fn came_in(ctx: &TcContext) -> u32 {
    // SAFETY: `skb` is the context pointer the kernel passed to the program; reading
    // `ingress_ifindex` from a TC program's `__sk_buff` is allowed by the verifier.
    unsafe { (*ctx.skb.skb).ingress_ifindex }
}

/// RPF for local endpoints' addresses (see the module doc): `Err(Spoofed)` when the
/// source is a pod of this node and the packet entered the node through another
/// interface than that pod's. `Ok(Some(endpoint))`: the source is the workload's own
/// address and the packet came in through its interface (so the node did not rewrite
/// it); the workload's endpoint entry in `generation` (it may carry its address's
/// peer class, see `policy::own_peer`).
#[inline(always)]
pub fn check_rpf(
    generation: u32,
    pkt: &Packet,
    came_in: u32,
) -> Result<Option<&'static EndpointInfo>, Drop> {
    if came_in == 0 {
        return Ok(None);
    }
    // The common case without the peer trie (this check runs on every packet a pod
    // sends, before conntrack): a workload's own address through its own interface,
    // where its egress program checked the source. Its peer entry would say the same.
    if let Some(ep) = policy::endpoint_in_place(generation, came_in)
        && policy::is_own_source(ep, pkt)
    {
        return Ok(Some(ep));
    }
    let src = policy::peer(generation, pkt.family, &pkt.src)?;
    if src.flags & PEER_F_LOCAL_ENDPOINT != 0 && src.ifindex != came_in {
        return Err(Drop::Spoofed);
    }
    Ok(None)
}
