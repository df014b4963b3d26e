//! `enf_guard_in`: TC ingress of every interface of the node that is not a workload's
//! (`lo` excepted), first in the chain, before the node decapsulates or translates
//! anything. Two jobs, each one hash lookup on the packets it concerns, nothing for the
//! rest (handed to the next program untouched):
//!
//! - **Tunnel sources** (security item 11): IPIP, IPv6-in-IP and VXLAN (UDP 4789)
//!   addressed to the node are dropped unless their outer source is a cluster node's
//!   address (`PEER_F_CLUSTER_NODE`, from the `Node` objects), as Felix drops IPIP and
//!   VXLAN from outside its all-hosts set: once decapsulated, the inner packet would
//!   enter with whatever source the sender wrote there (another node's pod, allowed by
//!   its peers' policy). No `Node` known means no trusted tunnel source: fail closed.
//! - **`NodePort` clients** (security item 9): a packet to a Service front-end on the
//!   node's own address is noted with its client before kube-proxy may masquerade it
//!   (`node_port_client`). A local pod's address arriving here is forged (it only ever
//!   enters through its own veth, `spoof`): dropped before it is noted, since behind the
//!   masquerade the backend could not check it.
//!
//! Errors: a packet that is not IPv4/IPv6 (ARP, LLDP, …) or a non-first fragment (the
//! first carries the ports; the kernel reassembles before it decapsulates) is not ours
//! to judge. A malformed header is dropped: what this parser cannot read, it cannot
//! clear. Without a loaded policy the guard stands aside: the pods' programs then drop
//! everything, decapsulated packets included.

use aya_ebpf::programs::TcContext;
use enforcer_common::{PEER_F_CLUSTER_NODE, PEER_F_HOST, PEER_F_LOCAL_ENDPOINT};

use crate::{Drop, node_port_client, packet, policy, spoof};

/// `None`: not a packet the guard judges. `Some(Err)`: drop.
#[inline(always)]
pub fn run(ctx: &TcContext) -> Option<Result<(), Drop>> {
    let pkt = match packet::parse_net(ctx.skb.skb) {
        Ok(p) => p,
        Err(Drop::UnsupportedL3 | Drop::Fragment) => return None,
        Err(e) => return Some(Err(e)),
    };
    let cfg = policy::config().ok()?;
    let generation = cfg.active_gen;
    let tunnel = spoof::is_encapsulation(&pkt);
    if !tunnel && !policy::is_frontend_port(generation, &pkt) {
        return None;
    }
    match policy::peer(generation, pkt.family, &pkt.dst) {
        // Routed through the node: neither decapsulated nor translated here.
        Ok(dst) if dst.flags & PEER_F_HOST == 0 => None,
        Ok(_) => Some(judge(ctx, generation, &pkt, tunnel)),
        Err(e) => Some(Err(e)),
    }
}

/// A tunnel packet or a front-end's packet addressed to the node.
#[inline(always)]
fn judge(ctx: &TcContext, generation: u32, pkt: &packet::Packet, tunnel: bool) -> Result<(), Drop> {
    let src = policy::peer(generation, pkt.family, &pkt.src)?;
    if tunnel {
        return if src.flags & PEER_F_CLUSTER_NODE == 0 {
            Err(Drop::Spoofed)
        } else {
            Ok(())
        };
    }
    if src.flags & PEER_F_LOCAL_ENDPOINT != 0 {
        return Err(Drop::Spoofed);
    }
    node_port_client::note(ctx, pkt);
    Ok(())
}
