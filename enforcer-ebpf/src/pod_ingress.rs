//! `enf_pod_in`: packets going to a pod (TCX egress of its host-side veth),
//! judged by the pod's ingress policy, and, for Service traffic from a pod on this
//! node, by the client's deferred egress policy first.
//!
//! Per packet: clear our skb mark bits (remembering a deferred egress leg, or a
//! `NodePort` client noted by the ingress guard: `node_port_client`); parse; ARP
//! and NDP pass; `Config`; the endpoint of this interface; RPF for local pods' addresses
//! (`spoof`); conntrack; then policy:
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
    CT_F_EGRESS_OK, CT_F_ESTABLISHED, CT_F_HOST_EGRESS_OK, CT_F_HOST_INGRESS_OK, CT_F_INGRESS_OK,
    CtKey, DIR_INGRESS, EndpointInfo, HOOK_POD_INGRESS, MARK_MASK, PEER_F_LOCAL_ENDPOINT,
    REASON_ALLOW_CONNTRACK, REASON_ALLOW_NDP, REASON_ALLOW_NON_IP, REASON_ALLOW_POLICY,
    REASON_ALLOW_RELATED, REASON_DENY_POLICY,
};

use crate::{
    Drop, Outcome,
    conntrack::{self, Entry},
    node_port_client,
    packet::{self, Frame},
    policy::{self, Judged},
    related, service, snat, spoof,
};

#[inline(always)]
pub fn run<const DEBUG: bool>(ctx: &TcContext) -> Result<Outcome, Drop> {
    // Our mark bits end here whatever the packet and the verdict: they must not leak
    // into the pod.
    let mark = packet::mark(ctx);
    let deferred = service::is_deferred(mark);
    let noted = node_port_client::is_noted(mark);
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
    // A local pod's address only ever enters through its own veth (before conntrack:
    // a forged packet must not ride one of its flows either).
    let came_in = spoof::came_in(ctx);
    let own_source = spoof::check_rpf(active, &pkt, came_in)?;

    let now = conntrack::now_ns();
    let key = conntrack::forward_key(&pkt);
    let fwd = conntrack::lookup(&key, now);
    if conntrack::passes(&pkt, &key, &fwd, CT_F_INGRESS_OK, now) {
        return Ok(Outcome::pass(REASON_ALLOW_CONNTRACK));
    }
    // A deferred packet still owes the client's egress leg its judgement.
    if !deferred && related::passes(ctx, &pkt, CT_F_INGRESS_OK, CT_F_ESTABLISHED) {
        return Ok(Outcome::pass(REASON_ALLOW_RELATED));
    }

    // The second leg of a flow uses the generation that judged the first, while live.
    let (generation, me) = flow_generation(&cfg, &fwd, deferred, ifindex, ep);
    // A local pod's packet whose source the node rewrote (SNAT) is the pod's (`snat`);
    // its egress hook approved the flow before the rewrite, under the original tuple.
    let mut src = pkt.src;
    let rewritten = if noted {
        // From outside to a `NodePort`: judged as the client the guard noted when the
        // node masqueraded it (`node_port_client`), never as the node.
        match node_port_client::masqueraded_client(generation, &pkt, &mut src) {
            node_port_client::SOURCE_UNKNOWN => return Err(Drop::Spoofed),
            _ => 0,
        }
    } else if own_source.is_some() && generation == active {
        // The RPF check found the pod's own address: nothing was rewritten.
        0
    } else {
        snat::judged_source(generation, &pkt, came_in, &mut src)
    };
    // The source's peer entry; for the pod's own address in the active generation, the
    // copy its endpoint entry carries (read by the RPF check) spares the trie walk.
    let own_peer = match own_source {
        Some(client) if !noted && generation == active => {
            policy::own_peer(client, pkt.family, came_in)
        }
        _ => None,
    };
    let src_peer = match own_peer {
        Some(p) => p,
        None => policy::peer(generation, pkt.family, &src)?,
    };
    let cell = policy::cell(generation, &pkt)?;
    let mut egress_ok = src_peer.flags & PEER_F_LOCAL_ENDPOINT == 0 || rewritten != 0;

    if deferred {
        // The client's egress leg, judged on the translated destination (this pod).
        let client = service::client(generation, &src_peer)?;
        let dst_peer = policy::peer(generation, pkt.family, &pkt.dst)?;
        let judged = service::judge_client::<DEBUG>(
            &cfg,
            &pkt,
            (generation, HOOK_POD_INGRESS),
            &client,
            dst_peer.class,
            cell,
        )?;
        if !judged {
            service::forget_original(&pkt, &key, now);
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
    conntrack::update(&key, &fwd, flags, generation, now);
    if deferred {
        service::establish_original(&pkt, &key, generation, now);
    }
    Ok(Outcome::pass(REASON_ALLOW_POLICY))
}

/// The generation and endpoint entry to judge with: the first leg's generation if the
/// client's egress hook recorded one that is still live and still holds the epoch the
/// flow was stamped with (and this interface has an endpoint in it), else the active
/// one. A superseded generation stays live only for the agent's grace period.
#[inline(always)]
fn flow_generation(
    cfg: &enforcer_common::Config,
    fwd: &Entry,
    deferred: bool,
    ifindex: u32,
    active_ep: EndpointInfo,
) -> (u32, EndpointInfo) {
    if !deferred
        && fwd.has(CT_F_EGRESS_OK)
        && let Some(g) = enforcer_common::stamped_slot(cfg, fwd.value.generation)
        && g != cfg.active_gen
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
