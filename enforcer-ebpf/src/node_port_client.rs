//! The client behind kube-proxy's masquerade (security item 9): a packet from outside
//! the node to a `NodePort` is noted by the guard on the interface it entered by,
//! before any translation ([`note`]), and the backend's ingress hook judges the
//! masqueraded packet as that client ([`masqueraded_client`]). See
//! `enforcer_common::NodePortClientKey` for the map and its lookup rules.
//!
//! Why not the kernel's conntrack: the translation is the kernel's, but reading an
//! `nf_conn` from a TC program needs kfuncs and CO-RE the programs do not use. The
//! note is taken on the same packet's path a few microseconds earlier; the mark says
//! the packet was noted, the source port names the note.

use aya_ebpf::programs::TcContext;
use enforcer_common::{
    MARK_MASK, MARK_NODE_PORT_CLIENT, NODE_PORT_CLIENT_F_CONFLICT, NODE_PORT_CLIENT_TTL_NS,
    NodePortClientKey, NodePortClientValue, PEER_F_HOST,
};

use crate::{
    conntrack,
    maps::ENF_NP_CLIENTS,
    packet::{self, Packet},
    policy,
};

/// [`masqueraded_client`]: the packet carries its client's own source.
pub const SOURCE_OWN: u32 = 0;
/// [`masqueraded_client`]: the node masqueraded the packet; the client is in `out`.
pub const SOURCE_CLIENT: u32 = 1;
/// [`masqueraded_client`]: the node masqueraded the packet and no note names its client
/// without doubt: drop it (fail closed).
pub const SOURCE_UNKNOWN: u32 = 2;

#[inline(always)]
fn key(pkt: &Packet) -> NodePortClientKey {
    NodePortClientKey {
        sport: pkt.sport,
        proto: pkt.proto,
        family: pkt.family,
    }
}

/// Whether the skb carries the guard's "client noted" mark.
#[inline(always)]
pub fn is_noted(mark: u32) -> bool {
    mark & MARK_MASK == MARK_NODE_PORT_CLIENT
}

/// `enf_guard_in`, on a packet from outside to a front-end on the node's own address:
/// notes its client under its source port (another client within the TTL makes the
/// note a conflict) and marks the packet. A full LRU evicts; a lost note costs the
/// flow's first packet (dropped as unknown when masqueraded; retransmitted, it is
/// noted again).
#[inline(always)]
pub fn note(ctx: &TcContext, pkt: &Packet) {
    let now = conntrack::now_ns();
    let key = key(pkt);
    let mut flags = 0;
    // SAFETY: a copy of the value is taken at once.
    if let Some(old) = unsafe { ENF_NP_CLIENTS.get(key) }.copied()
        && now.saturating_sub(old.seen_ns) <= NODE_PORT_CLIENT_TTL_NS
    {
        flags = old.flags;
        if !packet::addr_eq(&old.client, &pkt.src) {
            flags |= NODE_PORT_CLIENT_F_CONFLICT;
        }
    }
    let value = NodePortClientValue {
        seen_ns: now,
        client: pkt.src,
        flags,
        _pad: 0,
    };
    let _ = ENF_NP_CLIENTS.insert(key, value, 0);
    let mark = packet::mark(ctx);
    packet::set_mark(ctx, (mark & !MARK_MASK) | MARK_NODE_PORT_CLIENT);
}

/// The backend's ingress hook, on a packet the guard noted: [`SOURCE_OWN`] when its
/// source is not one of the node's addresses (not masqueraded: judged as itself),
/// [`SOURCE_CLIENT`] with the noted client in `out` when the node masqueraded it,
/// [`SOURCE_UNKNOWN`] when it did and no fresh, unambiguous note names the client.
/// Out of line, in its own small frame: `enf_pod_in`'s is near the 512-byte limit.
#[inline(never)]
pub fn masqueraded_client(generation: u32, pkt: &Packet, out: &mut [u8; 16]) -> u32 {
    match policy::peer(generation, pkt.family, &pkt.src) {
        Ok(p) if p.flags & PEER_F_HOST == 0 => return SOURCE_OWN,
        Ok(_) => {}
        Err(_) => return SOURCE_UNKNOWN,
    }
    // SAFETY: the value is read in place, once.
    let Some(note) = (unsafe { ENF_NP_CLIENTS.get(key(pkt)) }) else {
        return SOURCE_UNKNOWN;
    };
    let now = conntrack::now_ns();
    if note.flags & NODE_PORT_CLIENT_F_CONFLICT != 0
        || now.saturating_sub(note.seen_ns) > NODE_PORT_CLIENT_TTL_NS
    {
        return SOURCE_UNKNOWN;
    }
    *out = note.client;
    SOURCE_CLIENT
}
