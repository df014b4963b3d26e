//! `enf_pod_eg`: packets leaving a pod (TCX ingress of its host-side veth),
//! judged by the pod's egress policy.
//!
//! Per packet: parse; ARP and NDP pass; `Config` (nothing loaded: drop); the endpoint of
//! this interface (none: drop); anti-spoofing; conntrack (this leg approved, or a reply
//! to an established flow: pass); then policy. Towards a Service VIP the decision is
//! deferred to the hook that sees the translated packet (`pod_ingress`).

use aya_ebpf::programs::TcContext;
use enforcer_common::{
    CT_F_DEFERRED, CT_F_EGRESS_OK, CT_F_HOST_EGRESS_OK, CT_F_HOST_INGRESS_OK, CT_F_INGRESS_OK,
    CtKey, DIR_EGRESS, EP_F_HAS_V4, EP_F_HAS_V6, EndpointInfo, FAMILY_V4, HOOK_POD_EGRESS,
    MARK_EGRESS_DEFERRED, MARK_MASK, PEER_F_LOCAL_ENDPOINT, PEER_F_SERVICE_VIP, PendingKey,
    PendingValue, REASON_ALLOW_CONNTRACK, REASON_ALLOW_NDP, REASON_ALLOW_NON_IP,
    REASON_ALLOW_POLICY, REASON_DEFERRED, REASON_DENY_POLICY,
};

use crate::{
    Drop, Outcome, conntrack,
    maps::ENF_PENDING,
    packet::{self, Frame, Packet},
    policy::{self, Judged},
};

#[inline(always)]
pub fn run<const DEBUG: bool>(ctx: &TcContext) -> Result<Outcome, Drop> {
    let pkt = match packet::parse(ctx)? {
        Frame::Arp => return Ok(Outcome::pass(REASON_ALLOW_NON_IP)),
        Frame::Ip(p) => p,
    };
    if pkt.is_ndp() {
        return Ok(Outcome::pass(REASON_ALLOW_NDP));
    }
    let cfg = policy::config()?;
    let generation = cfg.active_gen;
    let ifindex = packet::ifindex(ctx);
    let ep = policy::endpoint(generation, ifindex).ok_or(Drop::NoEndpoint)?;
    check_source(&ep, &pkt)?;

    // Conntrack first (a flow this leg approved, or a reply): see `conntrack::passes`.
    let now = conntrack::now_ns();
    let key = conntrack::forward_key(&pkt);
    let fwd = conntrack::lookup(&key, now);
    if conntrack::passes(&pkt, &key, &fwd, CT_F_EGRESS_OK, now) {
        return Ok(Outcome::pass(REASON_ALLOW_CONNTRACK));
    }

    // Policy: the destination's class, the cell, the verdict.
    let peer = policy::peer(generation, pkt.family, &pkt.dst)?;
    if peer.flags & PEER_F_SERVICE_VIP != 0 {
        defer(ctx, &pkt, &key, generation, now);
        return Ok(Outcome::pass(REASON_DEFERRED));
    }
    let cell = policy::cell(generation, &pkt);
    let who = Judged {
        generation,
        dir: DIR_EGRESS,
        profile: ep.profile,
        ifindex,
        endpoint_id: ep.endpoint_id,
        hook: HOOK_POD_EGRESS,
    };
    if !policy::judge::<DEBUG>(&cfg, &pkt, &who, peer.class, cell)? {
        if fwd.exists() {
            conntrack::remove(&key);
        }
        return Ok(Outcome::drop(REASON_DENY_POLICY));
    }
    // A peer that is not one of our endpoints has no ingress hook here: its leg counts
    // as approved, so replies need only this approval.
    let mut flags = CT_F_EGRESS_OK;
    if peer.flags & PEER_F_LOCAL_ENDPOINT == 0 {
        flags |= CT_F_INGRESS_OK;
    }
    // Keep the destination's approval of a live flow (a retransmitted SYN).
    flags |= fwd.value.flags & (CT_F_INGRESS_OK | CT_F_HOST_INGRESS_OK | CT_F_HOST_EGRESS_OK);
    conntrack::upsert(&key, flags, generation, now);
    Ok(Outcome::pass(REASON_ALLOW_POLICY))
}

/// Anti-spoofing: the source must be the endpoint's own address. IPv6 link-local
/// sources are accepted for ICMPv6 (neighbor discovery, router solicitations).
#[inline(always)]
fn check_source(ep: &EndpointInfo, pkt: &Packet) -> Result<(), Drop> {
    let ok = if pkt.family == FAMILY_V4 {
        ep.flags & EP_F_HAS_V4 != 0 && packet::addr_eq(&pkt.src, &v4_padded(ep.ipv4))
    } else {
        (ep.flags & EP_F_HAS_V6 != 0 && packet::addr_eq(&pkt.src, &ep.ipv6))
            || (pkt.is_icmpv6() && pkt.src_is_link_local_v6())
    };
    if ok { Ok(()) } else { Err(Drop::Spoofed) }
}

#[inline(always)]
fn v4_padded(a: [u8; 4]) -> [u8; 16] {
    let mut out = [0; 16];
    out[..4].copy_from_slice(&a);
    out
}

/// Service VIP: the egress verdict needs the translated destination, which only the
/// backend's `pod_ingress` sees. Remember the client socket and the VIP it addressed,
/// record the original tuple as deferred, tell the ingress hook through the skb mark.
#[inline(always)]
fn defer(ctx: &TcContext, pkt: &Packet, key: &CtKey, generation: u32, now: u64) {
    let pending = PendingKey {
        client: pkt.src,
        sport: key.sport,
        proto: pkt.proto,
        family: pkt.family,
    };
    let vip = PendingValue {
        vip: pkt.dst,
        vport: key.dport,
        _pad: [0; 2],
    };
    // A full LRU map evicts; losing the entry only delays the reply's fast path.
    let _ = ENF_PENDING.insert(pending, vip, 0);
    conntrack::upsert(key, CT_F_DEFERRED, generation, now);
    let mark = packet::mark(ctx);
    packet::set_mark(ctx, (mark & !MARK_MASK) | MARK_EGRESS_DEFERRED);
}
