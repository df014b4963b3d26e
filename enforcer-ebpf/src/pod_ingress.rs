//! `enf_pod_in`: packets going to a pod (TCX egress of its host-side veth),
//! judged by the pod's ingress policy, and, for Service traffic from a pod on this
//! node, by the client's deferred egress policy first.
//!
//! Per packet: clear our skb mark bits (remembering a deferred egress leg); parse; ARP
//! and NDP pass; `Config`; the endpoint of this interface; conntrack; then policy:
//!
//! - deferred (`MARK_EGRESS_DEFERRED`): resolve the client endpoint (its peer entry names
//!   its interface, whose endpoint entry gives its profile) and judge the client's
//!   egress against this endpoint's class and the translated port;
//! - always: this endpoint's ingress against the source's class and the port.
//!
//! A flow whose first leg (the client's egress hook) was judged in a generation that is
//! still live is judged here in that generation too.

use aya_ebpf::programs::TcContext;
use enforcer_common::{
    CT_F_DEFERRED, CT_F_EGRESS_OK, CT_F_ESTABLISHED, CT_F_HOST_EGRESS_OK, CT_F_HOST_INGRESS_OK,
    CT_F_INGRESS_OK, CtKey, DIR_EGRESS, DIR_INGRESS, EndpointInfo, HOOK_POD_INGRESS,
    MARK_EGRESS_DEFERRED, MARK_MASK, PEER_F_LOCAL_ENDPOINT, PendingKey, REASON_ALLOW_CONNTRACK,
    REASON_ALLOW_NDP, REASON_ALLOW_NON_IP, REASON_ALLOW_POLICY, REASON_DENY_POLICY,
};

use crate::{
    Drop, Outcome,
    conntrack::{self, Entry},
    maps::ENF_PENDING,
    packet::{self, Frame, Packet},
    policy::{self, Judged},
};

#[inline(always)]
pub fn run<const DEBUG: bool>(ctx: &TcContext) -> Result<Outcome, Drop> {
    // Our mark bits end here whatever the packet and the verdict: they must not leak
    // into the pod.
    let mark = packet::mark(ctx);
    let deferred = mark & MARK_MASK == MARK_EGRESS_DEFERRED;
    if mark & MARK_MASK != 0 {
        packet::set_mark(ctx, mark & !MARK_MASK);
    }
    let pkt = match packet::parse(ctx)? {
        Frame::Arp => return Ok(Outcome::pass(REASON_ALLOW_NON_IP)),
        Frame::Ip(p) => p,
    };
    if pkt.is_ndp() {
        return Ok(Outcome::pass(REASON_ALLOW_NDP));
    }
    let cfg = policy::config()?;
    let active = cfg.active_gen;
    let ifindex = packet::ifindex(ctx);
    let ep = policy::endpoint(active, ifindex).ok_or(Drop::NoEndpoint)?;

    let now = conntrack::now_ns();
    let key = conntrack::forward_key(&pkt);
    let fwd = conntrack::lookup(&key, now);
    if conntrack::passes(&pkt, &key, &fwd, CT_F_INGRESS_OK, now) {
        return Ok(Outcome::pass(REASON_ALLOW_CONNTRACK));
    }

    // The second leg of a flow uses the generation that judged the first, while live.
    let (generation, me) = flow_generation(&cfg, &fwd, deferred, ifindex, ep);
    let src_peer = policy::peer(generation, pkt.family, &pkt.src)?;
    let cell = policy::cell(generation, &pkt);
    let mut egress_ok = src_peer.flags & PEER_F_LOCAL_ENDPOINT == 0;

    if deferred {
        // The client's egress leg, judged on the translated destination (this pod).
        if src_peer.flags & PEER_F_LOCAL_ENDPOINT == 0 || src_peer.ifindex == 0 {
            return Err(Drop::NoEndpoint);
        }
        let client = policy::endpoint(generation, src_peer.ifindex).ok_or(Drop::NoEndpoint)?;
        let dst_peer = policy::peer(generation, pkt.family, &pkt.dst)?;
        let who = Judged {
            generation,
            dir: DIR_EGRESS,
            profile: client.profile,
            ifindex: src_peer.ifindex,
            endpoint_id: client.endpoint_id,
            hook: HOOK_POD_INGRESS,
        };
        if !policy::judge::<DEBUG>(&cfg, &pkt, &who, dst_peer.class, cell)? {
            return Ok(deny(&key, &fwd));
        }
        egress_ok = true;
    }

    let who = Judged {
        generation,
        dir: DIR_INGRESS,
        profile: me.profile,
        ifindex,
        endpoint_id: me.endpoint_id,
        hook: HOOK_POD_INGRESS,
    };
    if !policy::judge::<DEBUG>(&cfg, &pkt, &who, src_peer.class, cell)? {
        return Ok(deny(&key, &fwd));
    }

    let mut flags = CT_F_INGRESS_OK;
    if egress_ok {
        flags |= CT_F_EGRESS_OK;
    }
    // The client's egress hook approved its leg of this flow.
    flags |= fwd.value.flags & (CT_F_EGRESS_OK | CT_F_HOST_INGRESS_OK | CT_F_HOST_EGRESS_OK);
    conntrack::upsert(&key, flags, generation, now);
    if deferred {
        establish_original(&pkt, &key, generation, now);
    }
    Ok(Outcome::pass(REASON_ALLOW_POLICY))
}

/// The generation and endpoint entry to judge with: the first leg's generation if the
/// client's egress hook recorded one that is still live (and this interface has an
/// endpoint in it), else the active one.
#[inline(always)]
fn flow_generation(
    cfg: &enforcer_common::Config,
    fwd: &Entry,
    deferred: bool,
    ifindex: u32,
    active_ep: EndpointInfo,
) -> (u32, EndpointInfo) {
    let g = fwd.value.generation;
    if !deferred
        && fwd.has(CT_F_EGRESS_OK)
        && g != cfg.active_gen
        && policy::is_live(cfg, g)
        && let Some(ep) = policy::endpoint(g, ifindex)
    {
        return (g, ep);
    }
    (cfg.active_gen, active_ep)
}

/// Denied: drop, and forget old approvals of the tuple (a re-opening SYN was denied,
/// later packets of that connection must not pass on the old entry).
#[inline(always)]
fn deny(key: &CtKey, fwd: &Entry) -> Outcome {
    if fwd.exists() {
        conntrack::remove(key);
    }
    Outcome::drop(REASON_DENY_POLICY)
}

/// The deferred egress and this ingress approved the translated flow: mark the client's
/// original tuple (client → VIP) established too, so that the reply, which the kernel
/// un-DNATs to come from the VIP, passes the client's ingress hook as a reply.
#[inline(always)]
fn establish_original(pkt: &Packet, key: &CtKey, generation: u32, now: u64) {
    let pending = PendingKey {
        client: pkt.src,
        sport: key.sport,
        proto: pkt.proto,
        family: pkt.family,
    };
    // SAFETY: the value is copied at once.
    let Some(vip) = (unsafe { ENF_PENDING.get(pending) }).copied() else {
        return;
    };
    let original = CtKey {
        src: pkt.src,
        dst: vip.vip,
        sport: key.sport,
        dport: vip.vport,
        proto: pkt.proto,
        family: pkt.family,
        _pad: [0; 2],
    };
    conntrack::upsert(&original, CT_F_DEFERRED | CT_F_ESTABLISHED, generation, now);
}
