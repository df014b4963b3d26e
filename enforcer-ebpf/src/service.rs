//! Service traffic: the client's egress is judged after DNAT, wherever the translated
//! packet goes.
//!
//! The client's egress hook (`pod_egress`) sees a packet to a Service front-end before
//! kube-proxy translates it, so it cannot judge it: it *defers* ([`defer`]): it notes
//! the front-end the socket addressed in `ENF_PENDING`, sets [`MARK_EGRESS_DEFERRED`]
//! and passes, writing nothing to conntrack (a client that policy denies everything
//! cannot fill the conntrack map). Every packet to a front-end is deferred, not only the
//! first: a flow re-translated to another backend is judged again.
//!
//! The translated packet is judged by the first of our hooks it meets, each of which
//! knows the translated destination:
//!
//! 1. the backend's `pod_ingress` (a pod on this node);
//! 2. the guard on TC egress of the interface it leaves the node by (`guard`): a pod of
//!    another node, another node's host network, an address outside the cluster;
//! 3. the cgroup program on delivery to a socket of this node (`cgroup`): a hostNetwork
//!    backend, the API server behind the `kubernetes` Service.
//!
//! Each resolves the client endpoint from the packet's source (a local endpoint, else
//! the packet is dropped: fail closed), looks the translated tuple up in conntrack (an
//! approved flow passes), else judges the client's egress against the translated
//! destination's class and port, records the approval on the translated tuple and, via
//! `ENF_PENDING`, on the original one, so the reply (un-DNATed to come from the
//! front-end) passes the client's ingress hook as a reply. A deferred packet that
//! reaches none of these hooks is never approved: its replies face the client's ingress
//! policy as new flows.

use aya_ebpf::programs::TcContext;
use enforcer_common::{
    CT_F_DEFERRED, CT_F_EGRESS_OK, CT_F_ESTABLISHED, CT_F_HOST_EGRESS_OK, CT_F_HOST_INGRESS_OK,
    CT_F_INGRESS_OK, Config, CtKey, DIR_EGRESS, EndpointInfo, MARK_EGRESS_DEFERRED, MARK_MASK,
    PEER_F_LOCAL_ENDPOINT, PENDING_F_CONFLICT, PENDING_TTL_NS, PeerInfo, PendingKey, PendingValue,
    REASON_ALLOW_CONNTRACK, REASON_ALLOW_POLICY, REASON_DENY_POLICY,
};

use crate::{
    Drop, Outcome, conntrack,
    maps::ENF_PENDING,
    packet::{self, Packet},
    policy::{self, Judged},
};

/// Whether the skb carries our deferred-egress marker.
#[inline(always)]
pub fn is_deferred(mark: u32) -> bool {
    mark & MARK_MASK == MARK_EGRESS_DEFERRED
}

/// Sets the deferred-egress marker, keeping every bit outside ours.
#[inline(always)]
pub fn mark_deferred(ctx: &TcContext) {
    let mark = packet::mark(ctx);
    packet::set_mark(ctx, (mark & !MARK_MASK) | MARK_EGRESS_DEFERRED);
}

#[inline(always)]
fn pending_key(pkt: &Packet, key: &CtKey) -> PendingKey {
    PendingKey {
        client: pkt.src,
        sport: key.sport,
        proto: pkt.proto,
        family: pkt.family,
    }
}

/// The client's egress hook, on a packet to a front-end: notes the front-end for this
/// socket (a different front-end within `PENDING_TTL_NS` marks a conflict) and marks the
/// packet. A full LRU map evicts; a lost note only costs the flow its reply fast path.
#[inline(always)]
pub fn defer(ctx: &TcContext, pkt: &Packet, key: &CtKey, now: u64) {
    let pending = pending_key(pkt, key);
    let mut flags = 0;
    // SAFETY: a copy of the value is taken at once.
    if let Some(old) = unsafe { ENF_PENDING.get(pending) }.copied()
        && now.saturating_sub(old.deferred_ns) <= PENDING_TTL_NS
    {
        flags = old.flags;
        if !packet::addr_eq(&old.vip, &pkt.dst) || old.vport != key.dport {
            flags |= PENDING_F_CONFLICT;
        }
    }
    let value = PendingValue {
        deferred_ns: now,
        vip: pkt.dst,
        vport: key.dport,
        flags,
        _pad: 0,
    };
    let _ = ENF_PENDING.insert(pending, value, 0);
    mark_deferred(ctx);
}

/// The original tuple (client → front-end) of a translated packet, if `ENF_PENDING`
/// names one for its socket without doubt (fresh, no conflict).
#[inline(always)]
fn original(pkt: &Packet, key: &CtKey, now: u64) -> Option<CtKey> {
    // SAFETY: a copy of the value is taken at once.
    let v = unsafe { ENF_PENDING.get(pending_key(pkt, key)) }.copied()?;
    if v.flags & PENDING_F_CONFLICT != 0 || now.saturating_sub(v.deferred_ns) > PENDING_TTL_NS {
        return None;
    }
    Some(CtKey {
        src: pkt.src,
        dst: v.vip,
        sport: key.sport,
        dport: v.vport,
        proto: pkt.proto,
        family: pkt.family,
        _pad: [0; 2],
    })
}

/// The translated flow was approved: mark the original tuple established too, so the
/// reply, which the kernel un-DNATs to come from the front-end, passes the client's
/// ingress hook; later packets to the front-end are deferred without a lookup.
#[inline(always)]
pub fn establish_original(pkt: &Packet, key: &CtKey, generation: u32, now: u64) {
    if let Some(original) = original(pkt, key, now) {
        conntrack::upsert(&original, CT_F_DEFERRED | CT_F_ESTABLISHED, generation, now);
    }
}

/// The translated flow was denied: a re-opening packet must not leave the original
/// tuple's old approval behind.
#[inline(always)]
pub fn forget_original(pkt: &Packet, key: &CtKey, now: u64) {
    if let Some(original) = original(pkt, key, now) {
        conntrack::remove(&original);
    }
}

/// The client of a deferred packet: a local endpoint (its peer entry names its
/// interface, whose endpoint entry in `generation` gives its profile). Anything else
/// (a source address rewritten by SNAT, a forged marker) cannot be judged: dropped.
pub struct Client {
    pub ifindex: u32,
    pub endpoint: EndpointInfo,
}

#[inline(always)]
pub fn client(generation: u32, src: &PeerInfo) -> Result<Client, Drop> {
    if src.flags & PEER_F_LOCAL_ENDPOINT == 0 || src.ifindex == 0 {
        return Err(Drop::NoEndpoint);
    }
    let endpoint = policy::endpoint(generation, src.ifindex).ok_or(Drop::NoEndpoint)?;
    Ok(Client {
        ifindex: src.ifindex,
        endpoint,
    })
}

/// The client's egress verdict on the translated destination (class `dst_class`,
/// cell of the translated port), in `generation`, counted and reported (per-rule
/// counters, flow events) under the judging program's `hook` (`HOOK_*`).
#[inline(always)]
pub fn judge_client<const DEBUG: bool>(
    cfg: &Config,
    pkt: &Packet,
    (generation, hook): (u32, u32),
    client: &Client,
    dst_class: u32,
    cell: u32,
) -> Result<bool, Drop> {
    let who = Judged {
        generation,
        dir: DIR_EGRESS,
        profile: client.endpoint.profile,
        ifindex: client.ifindex,
        endpoint_id: client.endpoint.endpoint_id,
        hook,
    };
    policy::judge::<DEBUG>(cfg, pkt, &who, dst_class, cell)
}

/// A deferred packet at a hook that is not its backend's ingress (the guard, the cgroup
/// program; `hook` is its `HOOK_*`): the translated tuple's approval, or the client's
/// verdict, recorded.
#[inline(always)]
pub fn judge_elsewhere<const DEBUG: bool>(
    cfg: &Config,
    pkt: &Packet,
    hook: u32,
) -> Result<Outcome, Drop> {
    let generation = cfg.active_gen;
    let now = conntrack::now_ns();
    let key = conntrack::forward_key(pkt);
    let fwd = conntrack::lookup(&key, now);
    if !pkt.is_tcp_syn_only() && fwd.has(CT_F_EGRESS_OK) {
        fwd.touch(pkt, now, false);
        return Ok(Outcome::pass(REASON_ALLOW_CONNTRACK));
    }
    let src = policy::peer(generation, pkt.family, &pkt.src)?;
    let client = client(generation, &src)?;
    let dst = policy::peer(generation, pkt.family, &pkt.dst)?;
    let cell = policy::cell(generation, pkt)?;
    if !judge_client::<DEBUG>(cfg, pkt, (generation, hook), &client, dst.class, cell)? {
        if fwd.exists() {
            conntrack::remove(&key);
        }
        forget_original(pkt, &key, now);
        return Ok(Outcome::drop(REASON_DENY_POLICY));
    }
    // A destination that is not one of our endpoints has no ingress hook of ours: its
    // leg counts as approved.
    let mut flags = CT_F_EGRESS_OK;
    if dst.flags & PEER_F_LOCAL_ENDPOINT == 0 {
        flags |= CT_F_INGRESS_OK;
    }
    flags |= fwd.value.flags & (CT_F_INGRESS_OK | CT_F_HOST_INGRESS_OK | CT_F_HOST_EGRESS_OK);
    conntrack::upsert(&key, flags, generation, now);
    establish_original(pkt, &key, generation, now);
    Ok(Outcome::pass(REASON_ALLOW_POLICY))
}
