//! `enf_cg_in`: `cgroup_skb/ingress` on the node's cgroup (the root of the cgroup v2
//! hierarchy by default): packets delivered to a socket of the node. It judges the
//! deferred egress of Service traffic whose backend is the node itself (a hostNetwork
//! pod, the API server behind the `kubernetes` Service; see `service`). Every other
//! packet is accepted untouched: this program never judges anything else, and a pod's
//! own sockets never see our marker (the kernel scrubs the mark when a packet crosses
//! into another network namespace).
//!
//! The program runs for the sockets of every network namespace under that cgroup; it
//! judges only packets of the agent's own (`Config::netns_cookie`), so agents of
//! several namespaces (the lab's nodes) each judge their own.

use aya_ebpf::{helpers::generated::bpf_get_netns_cookie, programs::SkBuffContext};
use enforcer_common::HOOK_CGROUP_INGRESS;

use crate::{Drop, Outcome, packet, policy, service};

/// `None`: not a deferred packet of this namespace, not ours to judge.
#[inline(always)]
pub fn run<const DEBUG: bool>(ctx: &SkBuffContext) -> Option<Result<Outcome, Drop>> {
    if !service::is_deferred(packet::skb_mark(ctx.skb.skb)) {
        return None;
    }
    // Nothing loaded here yet: the packet may not even be this namespace's.
    let Ok(cfg) = policy::config() else {
        return None;
    };
    // SAFETY: a helper call on the context pointer the kernel passed to the program.
    let netns = unsafe { bpf_get_netns_cookie(ctx.skb.skb.cast()) };
    if cfg.netns_cookie == 0 || netns != cfg.netns_cookie {
        return None;
    }
    Some(
        packet::parse_net(ctx.skb.skb)
            .and_then(|pkt| service::judge_elsewhere::<DEBUG>(&cfg, &pkt, HOOK_CGROUP_INGRESS)),
    )
}
