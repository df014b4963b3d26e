//! `enf_pod_eg`: packets leaving a pod (TCX ingress of its host-side veth),
//! judged by the pod's egress policy.
//!
//! Per packet: parse; ARP and NDP pass; `Config` (nothing loaded: drop); the endpoint of
//! this interface (none: drop); anti-spoofing (and no encapsulation, see `spoof`); conntrack (this leg approved, or a reply
//! to an established flow: pass); then policy. Towards a Service VIP the decision is
//! deferred to the hook that sees the translated packet (`pod_ingress`).

use aya_ebpf::programs::TcContext;
use enforcer_common::{
    CT_F_DEFERRED, CT_F_EGRESS_OK, CT_F_ESTABLISHED, CT_F_HOST_EGRESS_OK, CT_F_HOST_INGRESS_OK,
    CT_F_INGRESS_OK, DIR_EGRESS, EP_F_HAS_V4, EP_F_HAS_V6, EndpointInfo, FAMILY_V4,
    HOOK_POD_EGRESS, PEER_F_HOST, PEER_F_LOCAL_ENDPOINT, PEER_F_SERVICE_VIP,
    REASON_ALLOW_CONNTRACK, REASON_ALLOW_NDP, REASON_ALLOW_NON_IP, REASON_ALLOW_POLICY,
    REASON_ALLOW_RELATED, REASON_DEFERRED, REASON_DENY_POLICY,
};

use crate::{
    Drop, Outcome, conntrack,
    packet::{self, Frame, Packet},
    policy::{self, Judged},
    related, service, spoof,
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
    if spoof::is_encapsulation(&pkt) {
        // IPIP / VXLAN from a workload: see `spoof`.
        return Err(Drop::Spoofed);
    }

    // Conntrack first (a flow this leg approved, or a reply): see `conntrack::passes`.
    let now = conntrack::now_ns();
    let key = conntrack::forward_key(&pkt);
    let fwd = conntrack::lookup(&key, now);
    if fwd.has(CT_F_DEFERRED) && !pkt.is_tcp_syn_only() {
        // An approved Service flow: still judged after DNAT, packet by packet (the hook
        // that sees the translated packet passes it on its own conntrack entry), so a
        // flow translated to another backend is judged again.
        fwd.touch(&pkt, now, false);
        service::mark_deferred(ctx);
        return Ok(Outcome::pass(REASON_DEFERRED));
    }
    if conntrack::passes(&pkt, &key, &fwd, CT_F_EGRESS_OK, now) {
        return Ok(Outcome::pass(REASON_ALLOW_CONNTRACK));
    }
    if related::passes(ctx, &pkt, CT_F_EGRESS_OK, CT_F_ESTABLISHED) {
        return Ok(Outcome::pass(REASON_ALLOW_RELATED));
    }

    // Policy: the destination's class, the cell, the verdict.
    let peer = policy::peer(generation, pkt.family, &pkt.dst)?;
    // A Service front-end: a VIP, or a node port / host port on the node's address.
    if peer.flags & PEER_F_SERVICE_VIP != 0
        || (peer.flags & PEER_F_HOST != 0 && policy::is_frontend_port(generation, &pkt))
    {
        service::defer(ctx, &pkt, &key, now);
        return Ok(Outcome::pass(REASON_DEFERRED));
    }
    let cell = policy::cell(generation, &pkt)?;
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
    conntrack::update(&key, &fwd, flags, generation, now);
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
