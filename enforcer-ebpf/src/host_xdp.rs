//! `enf_host_xdp`: XDP on a host interface (packets entering the node from its
//! network), before an skb exists.
//!
//! Per packet: parse (VLAN tags skipped); ARP and NDP pass; failsafe destination ports
//! pass; `Config` and the host endpoint of this interface; untracked (doNotTrack)
//! ingress policy, skipped for a possible failsafe reply: allow passes, deny drops; replies to flows the node or its pods opened
//! (conntrack: reversed tuple approved by the host egress hook) and packets of flows
//! the host ingress hook already approved pass, and so does a TCP packet other than a
//! bare SYN of an established local socket (a connection older than our state, which
//! `enf_host_in` records); an ICMP error related to such a flow passes too (as Calico's
//! `RELATED` accept precedes its preDNAT chain; `related`); then preDNAT policy on the original
//! destination: deny drops here, anything else is left to `enf_host_in`
//! (which evaluates the whole tracked chain, preDNAT included, so a packet XDP never
//! saw is judged alike).

use aya_ebpf::programs::XdpContext;
use enforcer_common::{
    CT_F_HOST_EGRESS_OK, CT_F_HOST_INGRESS_OK, DIR_PREDNAT_INGRESS, DIR_UNTRACKED_INGRESS,
    HOOK_HOST_XDP, REASON_ALLOW_CONNTRACK, REASON_ALLOW_FAILSAFE, REASON_ALLOW_NDP,
    REASON_ALLOW_NON_IP, REASON_ALLOW_POLICY, REASON_ALLOW_PREEXISTING, REASON_ALLOW_RELATED,
    REASON_ALLOW_UNTRACKED, REASON_DENY_POLICY, REASON_XDP_CONTINUE,
};

use crate::{
    Drop, Outcome, conntrack,
    host::{self, HostAction},
    packet::{self, Frame, IPPROTO_TCP, Packet},
    policy, related,
};

#[inline(always)]
pub fn run<const DEBUG: bool>(ctx: &XdpContext) -> Result<Outcome, Drop> {
    let pkt = match packet::parse_host(ctx)? {
        Frame::Arp => return Ok(Outcome::pass(REASON_ALLOW_NON_IP)),
        Frame::Ip(p) => p,
    };
    if pkt.is_ndp() {
        return Ok(Outcome::pass(REASON_ALLOW_NDP));
    }
    if host::is_failsafe(&pkt, true) {
        return Ok(Outcome::pass(REASON_ALLOW_FAILSAFE));
    }
    let cfg = policy::config()?;
    let ifindex = ctx.ingress_ifindex() as u32;
    let ep = policy::endpoint(cfg.active_gen, ifindex).ok_or(Drop::NoEndpoint)?;
    let key = host::host_key(cfg.active_gen, &ep, &pkt, true, (ifindex, HOOK_HOST_XDP))?;
    if key.remote_is_local_pod {
        // RPF: a local pod's address entering through a host interface (see `spoof`).
        return Err(Drop::Spoofed);
    }
    if key.local_is_node && pkt.is_ndp_message() {
        // Neighbor discovery to the node's own (global) address.
        return Ok(Outcome::pass(REASON_ALLOW_NDP));
    }
    if !host::may_be_failsafe_reply(&pkt, true) {
        match host::decide::<DEBUG>(&cfg, DIR_UNTRACKED_INGRESS, &key, &pkt)? {
            HostAction::Allow => return Ok(Outcome::pass(REASON_ALLOW_UNTRACKED)),
            HostAction::Deny => return Ok(Outcome::drop(REASON_DENY_POLICY)),
            HostAction::Continue => {}
        }
    }
    if !pkt.is_tcp_syn_only() && tracked(&pkt) {
        return Ok(Outcome::pass(REASON_ALLOW_CONNTRACK));
    }
    if pkt.proto == IPPROTO_TCP
        && !pkt.is_tcp_syn_only()
        && packet::local_tcp_established(ctx.ctx.cast(), &pkt)
    {
        // A connection older than our state: preDNAT policy never judges an
        // established connection; `enf_host_in` records it.
        return Ok(Outcome::pass(REASON_ALLOW_PREEXISTING));
    }
    // The legs `enf_host_in` checks for an inbound error, which judges it again.
    if related::passes(ctx, &pkt, CT_F_HOST_INGRESS_OK, CT_F_HOST_EGRESS_OK) {
        return Ok(Outcome::pass(REASON_ALLOW_RELATED));
    }
    match host::decide::<DEBUG>(&cfg, DIR_PREDNAT_INGRESS, &key, &pkt)? {
        HostAction::Allow => Ok(Outcome::pass(REASON_ALLOW_POLICY)),
        HostAction::Deny => Ok(Outcome::drop(REASON_DENY_POLICY)),
        HostAction::Continue => Ok(Outcome::pass(REASON_XDP_CONTINUE)),
    }
}

/// A reply to a flow the host egress hook approved, or a packet of a flow the host
/// ingress hook approved. Out of line: the two tuples and entries live in this frame,
/// not in the program's, which the debug-log variant's record calls stack on top of.
#[inline(never)]
fn tracked(pkt: &Packet) -> bool {
    let now = conntrack::now_ns();
    let fwd = conntrack::forward_key(pkt);
    (pkt.may_be_reply()
        && conntrack::lookup(&conntrack::reverse_key(&fwd), now).has(CT_F_HOST_EGRESS_OK))
        || conntrack::lookup(&fwd, now).has(CT_F_HOST_INGRESS_OK)
}
