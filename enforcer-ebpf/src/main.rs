//! The enforcer TC programs. One entry point per attach point; each is a thin wrapper
//! that turns every outcome, errors included, into a counted, deliberate verdict:
//! an error drops (fail closed), it never passes.
//!
//! - [`enf_pod_eg`]: TCX ingress of a pod's host-side veth (packets *from* the pod) =
//!   the pod's egress policy, see [`pod_egress`].
//! - [`enf_pod_in`]: TCX egress of the host-side veth (packets *to* the pod) = the
//!   pod's ingress policy, see [`pod_ingress`].
//! - [`enf_host_xdp`]: XDP on a host interface: untracked and preDNAT denies before an
//!   skb exists, see [`host_xdp`].
//! - [`enf_host_in`] / [`enf_host_eg`]: TCX ingress / egress of a host interface = the
//!   host endpoint's policy, see [`host_tc`].
//! - [`enf_guard_in`] / [`enf_guard_eg`]: TCX ingress / egress of every non-workload
//!   interface, first in the chain: tunnel sources and `NodePort` clients, see
//!   [`guard_ingress`]; deferred Service egress leaving the node, see [`guard`].
//! - [`enf_bench_floor`]: not attached by the agent; the benchmark suite's floor (parse
//!   + one hash lookup), see [`bench_floor`].
//!
//! Every attached program also exists as a debug-log variant (`_d` suffix, the same
//! body with `DEBUG = true`): see `enforcer_common::PROGRAMS`.
#![no_std]
#![no_main]
#![expect(
    clippy::inline_always,
    reason = "BPF: helpers are inlined on purpose so the verifier sees one function per \
              program and no call needs more than five arguments"
)]

mod bench_floor;
mod cgroup;
mod conntrack;
mod counters;
mod debug_log;
mod guard;
mod guard_ingress;
mod host;
mod host_tc;
mod host_xdp;
mod maps;
mod node_port_client;
mod observe;
mod packet;
mod pod_egress;
mod pod_ingress;
mod policy;
mod related;
mod service;
mod snat;
mod spoof;

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT, TC_ACT_UNSPEC, xdp_action},
    macros::{cgroup_skb, classifier, xdp},
    programs::{SkBuffContext, TcContext, XdpContext},
};
use enforcer_common::{
    HOOK_CGROUP_INGRESS, HOOK_GUARD_EGRESS, HOOK_GUARD_INGRESS, HOOK_HOST_EGRESS,
    HOOK_HOST_INGRESS, HOOK_HOST_XDP, HOOK_POD_EGRESS, HOOK_POD_INGRESS, REASON_ALLOW_POLICY,
    REASON_FRAGMENT, REASON_MALFORMED, REASON_MAP_ERROR, REASON_NO_ENDPOINT,
    REASON_NO_POLICY_LOADED, REASON_SPOOFED, REASON_UNSUPPORTED_L3,
};

/// Why a packet is dropped before (or instead of) a policy verdict.
pub enum Drop {
    /// Truncated or inconsistent headers.
    Malformed,
    /// A non-first IP fragment: no L4 header to judge.
    Fragment,
    /// Neither ARP, IPv4 nor IPv6.
    UnsupportedL3,
    /// `Config` says no policy is loaded yet.
    NoPolicyLoaded,
    /// The interface (or a deferred flow's source) has no endpoint entry.
    NoEndpoint,
    /// The pod sent from an address that is not its own, sent a packet for a node to
    /// decapsulate, or a local pod's address arrived through another interface than
    /// its own (see `spoof`).
    Spoofed,
    /// A map lookup that must succeed did not (fail closed).
    MapError,
}

impl Drop {
    const fn reason(&self) -> u32 {
        match self {
            Self::Malformed => REASON_MALFORMED,
            Self::Fragment => REASON_FRAGMENT,
            Self::UnsupportedL3 => REASON_UNSUPPORTED_L3,
            Self::NoPolicyLoaded => REASON_NO_POLICY_LOADED,
            Self::NoEndpoint => REASON_NO_ENDPOINT,
            Self::Spoofed => REASON_SPOOFED,
            Self::MapError => REASON_MAP_ERROR,
        }
    }
}

/// The verdict on a packet and the counter it is recorded under.
pub struct Outcome {
    pass: bool,
    reason: u32,
}

impl Outcome {
    pub const fn pass(reason: u32) -> Self {
        Self { pass: true, reason }
    }

    pub const fn drop(reason: u32) -> Self {
        Self {
            pass: false,
            reason,
        }
    }
}

/// Counts the outcome under `hook`; whether the packet passes.
#[inline(always)]
fn settle(hook: u32, result: Result<Outcome, Drop>) -> bool {
    let outcome = match result {
        Ok(o) => o,
        Err(e) => Outcome::drop(e.reason()),
    };
    counters::count(hook, outcome.reason);
    outcome.pass
}

/// Counts the outcome under `hook` and returns the TC action; the debug-log variants
/// then hand it to the log program with their notes (see `debug_log`).
#[inline(always)]
fn finish<const DEBUG: bool>(ctx: &TcContext, hook: u32, result: Result<Outcome, Drop>) -> i32 {
    let action = if settle(hook, result) {
        TC_ACT_OK
    } else {
        TC_ACT_SHOT
    };
    if DEBUG {
        debug_log::finish(ctx, action, &debug_log::ENF_DEBUG_TC)
    } else {
        action
    }
}

// Entry points. Each hook has a production program and a debug-log variant (`_d`),
// one body instantiated twice through the `DEBUG` const generic: the production
// programs carry no debug-log code (see `enforcer_common::PROGRAMS`).

/// Packets entering the node on a host interface, before an skb exists: untracked and
/// preDNAT denies (everything else passes on to `enf_host_in`).
#[inline(always)]
fn host_xdp<const DEBUG: bool>(ctx: &XdpContext) -> u32 {
    let action = if settle(HOOK_HOST_XDP, host_xdp::run::<DEBUG>(ctx)) {
        xdp_action::XDP_PASS
    } else {
        xdp_action::XDP_DROP
    };
    if DEBUG {
        debug_log::finish(ctx, action.cast_signed(), &debug_log::ENF_DEBUG_XDP).cast_unsigned()
    } else {
        action
    }
}

#[xdp]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature #[xdp] requires"
)]
pub fn enf_host_xdp(ctx: XdpContext) -> u32 {
    host_xdp::<false>(&ctx)
}

#[xdp]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature #[xdp] requires"
)]
pub fn enf_host_xdp_d(ctx: XdpContext) -> u32 {
    host_xdp::<true>(&ctx)
}

/// Packets entering the node on a host interface: the host endpoint's ingress chain.
#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature #[classifier] requires"
)]
pub fn enf_host_in(ctx: TcContext) -> i32 {
    finish::<false>(&ctx, HOOK_HOST_INGRESS, host_tc::run::<false>(&ctx, true))
}

#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature #[classifier] requires"
)]
pub fn enf_host_in_d(ctx: TcContext) -> i32 {
    finish::<true>(&ctx, HOOK_HOST_INGRESS, host_tc::run::<true>(&ctx, true))
}

/// Packets leaving the node on a host interface: the host endpoint's egress chain.
#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature #[classifier] requires"
)]
pub fn enf_host_eg(ctx: TcContext) -> i32 {
    finish::<false>(&ctx, HOOK_HOST_EGRESS, host_tc::run::<false>(&ctx, false))
}

#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature #[classifier] requires"
)]
pub fn enf_host_eg_d(ctx: TcContext) -> i32 {
    finish::<true>(&ctx, HOOK_HOST_EGRESS, host_tc::run::<true>(&ctx, false))
}

/// Packets from the pod: its egress policy.
#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature #[classifier] requires"
)]
pub fn enf_pod_eg(ctx: TcContext) -> i32 {
    finish::<false>(&ctx, HOOK_POD_EGRESS, pod_egress::run::<false>(&ctx))
}

#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature #[classifier] requires"
)]
pub fn enf_pod_eg_d(ctx: TcContext) -> i32 {
    finish::<true>(&ctx, HOOK_POD_EGRESS, pod_egress::run::<true>(&ctx))
}

/// Packets to the pod: its ingress policy (and the deferred egress leg of Service
/// traffic from pods on this node).
#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature #[classifier] requires"
)]
pub fn enf_pod_in(ctx: TcContext) -> i32 {
    finish::<false>(&ctx, HOOK_POD_INGRESS, pod_ingress::run::<false>(&ctx))
}

#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature #[classifier] requires"
)]
pub fn enf_pod_in_d(ctx: TcContext) -> i32 {
    finish::<true>(&ctx, HOOK_POD_INGRESS, pod_ingress::run::<true>(&ctx))
}

/// A guard's verdict: a packet that is not its to judge, or that it approves, goes on
/// to the next program in the chain (`TC_ACT_UNSPEC`, TCX's "next"); a denied one is
/// dropped.
#[inline(always)]
fn guard<const DEBUG: bool>(
    ctx: &TcContext,
    hook: u32,
    result: Option<Result<Outcome, Drop>>,
) -> i32 {
    let Some(result) = result else {
        return TC_ACT_UNSPEC;
    };
    let action = if settle(hook, result) {
        TC_ACT_UNSPEC
    } else {
        TC_ACT_SHOT
    };
    if DEBUG {
        debug_log::finish(ctx, action, &debug_log::ENF_DEBUG_TC)
    } else {
        action
    }
}

/// The ingress guard's outcome: approved packets count as `allow_policy` (they met
/// the guard's only rule).
#[inline(always)]
fn guard_ingress(ctx: &TcContext) -> Option<Result<Outcome, Drop>> {
    guard_ingress::run(ctx).map(|r| r.map(|()| Outcome::pass(REASON_ALLOW_POLICY)))
}

/// Packets entering the node through an interface that is not a workload's: tunnel
/// packets from sources that are not cluster nodes are dropped, `NodePort` clients
/// noted (everything else passes to the next program).
#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature #[classifier] requires"
)]
pub fn enf_guard_in(ctx: TcContext) -> i32 {
    guard::<false>(&ctx, HOOK_GUARD_INGRESS, guard_ingress(&ctx))
}

#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature #[classifier] requires"
)]
pub fn enf_guard_in_d(ctx: TcContext) -> i32 {
    guard::<true>(&ctx, HOOK_GUARD_INGRESS, guard_ingress(&ctx))
}

/// Packets leaving the node through an interface that is not a workload's: the
/// deferred egress of Service traffic (everything else passes to the next program).
#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature #[classifier] requires"
)]
pub fn enf_guard_eg(ctx: TcContext) -> i32 {
    guard::<false>(&ctx, HOOK_GUARD_EGRESS, guard::run::<false>(&ctx))
}

#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature #[classifier] requires"
)]
pub fn enf_guard_eg_d(ctx: TcContext) -> i32 {
    guard::<true>(&ctx, HOOK_GUARD_EGRESS, guard::run::<true>(&ctx))
}

/// A cgroup program's verdict: 1 delivers, 0 drops.
#[inline(always)]
fn cgroup_ingress<const DEBUG: bool>(ctx: &SkBuffContext) -> i32 {
    let Some(result) = cgroup::run::<DEBUG>(ctx) else {
        return 1;
    };
    let action = i32::from(settle(HOOK_CGROUP_INGRESS, result));
    if DEBUG {
        debug_log::finish(ctx, action, &debug_log::ENF_DEBUG_CG)
    } else {
        action
    }
}

/// Packets delivered to the node's own sockets: the deferred egress of Service traffic
/// whose backend is the node (everything else is delivered).
#[cgroup_skb(ingress)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature #[cgroup_skb] requires"
)]
pub fn enf_cg_in(ctx: SkBuffContext) -> i32 {
    cgroup_ingress::<false>(&ctx)
}

#[cgroup_skb(ingress)]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature #[cgroup_skb] requires"
)]
pub fn enf_cg_in_d(ctx: SkBuffContext) -> i32 {
    cgroup_ingress::<true>(&ctx)
}

/// The debug-log variants' log program (TC): writes the noted verdicts' records and
/// returns the verdict the tail-calling program chose (see `debug_log`).
#[classifier]
pub fn enf_log_tc_d(_ctx: TcContext) -> i32 {
    debug_log::write_notes(false)
}

/// The same for the XDP variant.
#[xdp]
pub fn enf_log_xdp_d(_ctx: XdpContext) -> u32 {
    debug_log::write_notes(true).cast_unsigned()
}

/// The same for the cgroup variant.
#[cgroup_skb(ingress)]
pub fn enf_log_cg_d(_ctx: SkBuffContext) -> i32 {
    debug_log::write_notes_cgroup()
}

/// The benchmark floor: parse to L4 and one hash lookup (never attached by the agent).
#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature #[classifier] requires"
)]
pub fn enf_bench_floor(ctx: TcContext) -> i32 {
    bench_floor::run(&ctx)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: a reachable panic path is an endless loop
    // that the verifier rejects at load time.
    loop {}
}
