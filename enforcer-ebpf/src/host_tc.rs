//! `enf_host_in` (TCX ingress of a host interface: packets entering the node)
//! and `enf_host_eg` (TCX egress: packets leaving it), the host endpoint's
//! tracked policy. One body for both, mirrored by `inbound`.
//!
//! Per packet: parse (VLAN tags skipped); ARP and NDP pass; failsafe destination ports
//! pass (and open a flow, so their replies pass); `Config` and the host endpoint;
//! untracked (doNotTrack) policy of this direction, unless the source port is a
//! failsafe port of the other direction (a possible failsafe reply, which must pass
//! conntrack instead): allow passes without conntrack, deny drops;
//! conntrack: this direction already approved the flow, or the packet is a reply to a
//! flow the other direction approved; a TCP packet other than a bare SYN that got this
//! far has no state (Calico's conntrack-INVALID drop: e.g. the SYN-ACK of a connection
//! whose SYN doNotTrack policy let in without a rule for the reply): dropped, unless
//! the kernel holds an established local socket of the connection (one opened before
//! our programs attached: passed and recorded, `packet::local_tcp_established`); then the
//! whole tracked chain of this direction (`DIR_HOST_INGRESS`: preDNAT then normal or
//! applyOnForward tiers; `DIR_HOST_EGRESS`) for a new flow, recorded in conntrack when
//! it allows.

use aya_ebpf::programs::TcContext;
use enforcer_common::{
    CT_F_HOST_EGRESS_OK, CT_F_HOST_INGRESS_OK, DIR_HOST_EGRESS, DIR_HOST_INGRESS,
    DIR_UNTRACKED_EGRESS, DIR_UNTRACKED_INGRESS, HOOK_HOST_EGRESS, HOOK_HOST_INGRESS,
    REASON_ALLOW_CONNTRACK, REASON_ALLOW_FAILSAFE, REASON_ALLOW_NDP, REASON_ALLOW_NON_IP,
    REASON_ALLOW_POLICY, REASON_ALLOW_PREEXISTING, REASON_ALLOW_RELATED, REASON_ALLOW_UNTRACKED,
    REASON_DENY_DEFERRED_UNJUDGED, REASON_DENY_NO_CONNTRACK, REASON_DENY_POLICY,
};

use crate::{
    Drop, Outcome, conntrack,
    host::{self, HostAction},
    packet::{self, Frame, IPPROTO_TCP},
    policy, related, service, snat, spoof,
};

#[inline(always)]
pub fn run<const DEBUG: bool>(ctx: &TcContext, inbound: bool) -> Result<Outcome, Drop> {
    let pkt = match packet::parse_host(ctx)? {
        Frame::Arp => return Ok(Outcome::pass(REASON_ALLOW_NON_IP)),
        Frame::Ip(p) => p,
    };
    if pkt.is_ndp() {
        return Ok(Outcome::pass(REASON_ALLOW_NDP));
    }
    if !inbound && service::is_deferred(packet::mark(ctx)) {
        // Service traffic leaving the node is judged by the guard, which the agent
        // attaches first in the chain and which clears the marker once it approved.
        // A marked packet here was judged by nobody: fail closed.
        return Ok(Outcome::drop(REASON_DENY_DEFERRED_UNJUDGED));
    }
    let (own_ok, other_ok, untracked_dir, tracked_dir) = if inbound {
        (
            CT_F_HOST_INGRESS_OK,
            CT_F_HOST_EGRESS_OK,
            DIR_UNTRACKED_INGRESS,
            DIR_HOST_INGRESS,
        )
    } else {
        (
            CT_F_HOST_EGRESS_OK,
            CT_F_HOST_INGRESS_OK,
            DIR_UNTRACKED_EGRESS,
            DIR_HOST_EGRESS,
        )
    };
    let now = conntrack::now_ns();
    let fwd_key = conntrack::forward_key(&pkt);
    if host::is_failsafe(&pkt, inbound) {
        let cfg = policy::config()?;
        let fwd = conntrack::lookup(&fwd_key, now);
        host::record(&fwd_key, &fwd, own_ok, cfg.active_gen, now);
        return Ok(Outcome::pass(REASON_ALLOW_FAILSAFE));
    }
    let cfg = policy::config()?;
    let ifindex = packet::ifindex(ctx);
    let ep = policy::endpoint(cfg.active_gen, ifindex).ok_or(Drop::NoEndpoint)?;
    let hook = if inbound {
        HOOK_HOST_INGRESS
    } else {
        HOOK_HOST_EGRESS
    };
    let mut key = host::host_key(cfg.active_gen, &ep, &pkt, inbound, (ifindex, hook))?;
    if inbound && key.remote_is_local_pod {
        // RPF: a local pod's address entering through a host interface (see `spoof`).
        return Err(Drop::Spoofed);
    }
    if !inbound && key.local_is_node {
        // A pod's packet the node SNATed to its own address (natOutgoing): forwarded
        // traffic from the pod, not the host's own (`snat`).
        snat::rekey_forwarded(cfg.active_gen, &ep, &pkt, spoof::came_in(ctx), &mut key)?;
    }
    if key.local_is_node && pkt.is_ndp_message() {
        // Neighbor discovery to or from the node's own (global) address.
        return Ok(Outcome::pass(REASON_ALLOW_NDP));
    }
    if !host::may_be_failsafe_reply(&pkt, inbound) {
        match host::decide::<DEBUG>(&cfg, untracked_dir, &key, &pkt)? {
            HostAction::Allow => return Ok(Outcome::pass(REASON_ALLOW_UNTRACKED)),
            HostAction::Deny => return Ok(Outcome::drop(REASON_DENY_POLICY)),
            HostAction::Continue => {}
        }
    }
    let fwd = conntrack::lookup(&fwd_key, now);
    if !pkt.is_tcp_syn_only() {
        if fwd.has(own_ok) {
            fwd.touch(&pkt, now, false);
            return Ok(Outcome::pass(REASON_ALLOW_CONNTRACK));
        }
        let r = conntrack::lookup(&conntrack::reverse_key(&fwd_key), now);
        if pkt.may_be_reply() && r.has(other_ok) {
            r.touch(&pkt, now, true);
            return Ok(Outcome::pass(REASON_ALLOW_CONNTRACK));
        }
        if pkt.proto == IPPROTO_TCP {
            let established = if inbound {
                packet::local_tcp_established(ctx.skb.skb.cast(), &pkt)
            } else {
                packet::skb_tcp_established(ctx.skb.skb)
            };
            if established {
                // A connection older than our state (the kernel's socket is
                // established): approved in this direction, as Calico's fallback to
                // Linux conntrack; an RST ends it, so it records nothing.
                if !pkt.is_tcp_rst() {
                    host::record(&fwd_key, &fwd, own_ok, cfg.active_gen, now);
                }
                return Ok(Outcome::pass(REASON_ALLOW_PREEXISTING));
            }
            // Mid-connection without state: never the start of a new tracked flow.
            return Ok(Outcome::drop(REASON_DENY_NO_CONNTRACK));
        }
    }
    if related::passes(ctx, &pkt, own_ok, other_ok) {
        return Ok(Outcome::pass(REASON_ALLOW_RELATED));
    }
    match host::decide::<DEBUG>(&cfg, tracked_dir, &key, &pkt)? {
        HostAction::Allow => {
            host::record(&fwd_key, &fwd, own_ok, cfg.active_gen, now);
            Ok(Outcome::pass(REASON_ALLOW_POLICY))
        }
        // The tracked chain always ends in a decision; a continue here is a map error.
        HostAction::Continue => Err(Drop::MapError),
        HostAction::Deny => {
            if fwd.has(own_ok) {
                // A re-opening SYN was denied: forget this direction's old approval.
                conntrack::upsert(&fwd_key, fwd.value.flags & !own_ok, cfg.active_gen, now);
            }
            Ok(Outcome::drop(REASON_DENY_POLICY))
        }
    }
}
