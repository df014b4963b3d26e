//! `enf_guard_eg`: TC egress of every interface of the node that is not a workload's
//! (`lo` excepted), attached first in the chain. It judges the deferred egress of
//! Service traffic leaving the node (see `service`): a translated packet whose backend
//! is a pod of another node, another node's host network or an address outside the
//! cluster. Any other packet is handed to the next program untouched, at the cost of
//! one read of the skb mark.
//!
//! The packet is parsed from its network header (`packet::parse_net`): the interface
//! may be an L3 device without an Ethernet header (a tunnel, `WireGuard`).

use aya_ebpf::programs::TcContext;
use enforcer_common::{HOOK_GUARD_EGRESS, MARK_MASK};

use crate::{Drop, Outcome, packet, policy, service};

/// `None`: not a deferred packet, not ours to judge.
#[inline(always)]
pub fn run<const DEBUG: bool>(ctx: &TcContext) -> Option<Result<Outcome, Drop>> {
    let mark = packet::mark(ctx);
    if !service::is_deferred(mark) {
        return None;
    }
    // Judged here, whatever the verdict: no later hook sees the marker (an IPIP or
    // VXLAN packet carrying it out through another interface is not the client's).
    packet::set_mark(ctx, mark & !MARK_MASK);
    Some(judge::<DEBUG>(ctx))
}

#[inline(always)]
fn judge<const DEBUG: bool>(ctx: &TcContext) -> Result<Outcome, Drop> {
    let pkt = packet::parse_net(ctx.skb.skb)?;
    let cfg = policy::config()?;
    service::judge_elsewhere::<DEBUG>(&cfg, &pkt, HOOK_GUARD_EGRESS)
}
