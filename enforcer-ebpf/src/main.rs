//! The enforcer TC programs. One entry point per attach point; each is a thin wrapper
//! that turns every outcome, errors included, into a counted, deliberate verdict:
//! an error drops (fail closed), it never passes.
//!
//! - [`enforcer_pod_egress`]: TCX ingress of a pod's host-side veth (packets *from* the
//!   pod) = the pod's egress policy, see [`pod_egress`].
//! - [`enforcer_pod_ingress`]: TCX egress of the host-side veth (packets *to* the pod)
//!   = the pod's ingress policy, see [`pod_ingress`].
//! - [`enforcer_host_xdp`]: XDP on a host interface: untracked and preDNAT denies
//!   before an skb exists, see [`host_xdp`].
//! - [`enforcer_host_ingress`] / [`enforcer_host_egress`]: TCX ingress / egress of a
//!   host interface = the host endpoint's policy, see [`host_tc`].
//! - [`enforcer_bench_floor`]: not attached by the agent; the benchmark suite's floor
//!   (parse + one hash lookup), see [`bench_floor`].
#![no_std]
#![no_main]
#![expect(
    clippy::inline_always,
    reason = "BPF: helpers are inlined on purpose so the verifier sees one function per \
              program and no call needs more than five arguments"
)]

mod bench_floor;
mod conntrack;
mod counters;
mod debug_log;
mod host;
mod host_tc;
mod host_xdp;
mod maps;
mod observe;
mod packet;
mod pod_egress;
mod pod_ingress;
mod policy;

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT, xdp_action},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use enforcer_common::{
    HOOK_HOST_EGRESS, HOOK_HOST_INGRESS, HOOK_HOST_XDP, HOOK_POD_EGRESS, HOOK_POD_INGRESS,
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
    /// The pod sent from an address that is not its own.
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

/// Counts the outcome under `hook` and returns the TC action.
#[inline(always)]
fn finish(hook: u32, result: Result<Outcome, Drop>) -> i32 {
    if settle(hook, result) {
        TC_ACT_OK
    } else {
        TC_ACT_SHOT
    }
}

/// Packets entering the node on a host interface, before an skb exists: untracked and
/// preDNAT denies (everything else passes on to `enforcer_host_ingress`).
#[xdp]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature #[xdp] requires"
)]
pub fn enforcer_host_xdp(ctx: XdpContext) -> u32 {
    if settle(HOOK_HOST_XDP, host_xdp::run(&ctx)) {
        xdp_action::XDP_PASS
    } else {
        xdp_action::XDP_DROP
    }
}

/// Packets entering the node on a host interface: the host endpoint's ingress chain.
#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature #[classifier] requires"
)]
pub fn enforcer_host_ingress(ctx: TcContext) -> i32 {
    finish(HOOK_HOST_INGRESS, host_tc::run(&ctx, true))
}

/// Packets leaving the node on a host interface: the host endpoint's egress chain.
#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature #[classifier] requires"
)]
pub fn enforcer_host_egress(ctx: TcContext) -> i32 {
    finish(HOOK_HOST_EGRESS, host_tc::run(&ctx, false))
}

/// Packets from the pod: its egress policy.
#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature #[classifier] requires"
)]
pub fn enforcer_pod_egress(ctx: TcContext) -> i32 {
    finish(HOOK_POD_EGRESS, pod_egress::run(&ctx))
}

/// Packets to the pod: its ingress policy (and the deferred egress leg of Service
/// traffic from pods on this node).
#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature #[classifier] requires"
)]
pub fn enforcer_pod_ingress(ctx: TcContext) -> i32 {
    finish(HOOK_POD_INGRESS, pod_ingress::run(&ctx))
}

/// The benchmark floor: parse to L4 and one hash lookup (never attached by the agent).
#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature #[classifier] requires"
)]
pub fn enforcer_bench_floor(ctx: TcContext) -> i32 {
    bench_floor::run(&ctx)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: a reachable panic path is an endless loop
    // that the verifier rejects at load time.
    loop {}
}
