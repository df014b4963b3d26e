//! The programs' attach points (`Hook`) and which build of the programs is loaded
//! (`Variant`): names, TC attach types and `tc` filter priorities, shared by the
//! loader, the guard, `verify.rs` and the tools.

use aya::programs::TcAttachType;
use enforcer_common::{
    PROG_GUARD_EGRESS, PROG_GUARD_EGRESS_DEBUG, PROG_GUARD_INGRESS, PROG_GUARD_INGRESS_DEBUG,
    PROG_HOST_EGRESS, PROG_HOST_EGRESS_DEBUG, PROG_HOST_INGRESS, PROG_HOST_INGRESS_DEBUG,
    PROG_HOST_XDP, PROG_HOST_XDP_DEBUG, PROG_POD_EGRESS, PROG_POD_EGRESS_DEBUG, PROG_POD_INGRESS,
    PROG_POD_INGRESS_DEBUG,
};

/// Which build of the programs the agent loads and attaches: the production programs,
/// or their debug-log variants (`--bpf-debug-log`), which write an aya-log record per
/// verdict. Only one set is loaded: the other never goes through the verifier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Variant {
    #[default]
    Production,
    DebugLog,
}

impl Variant {
    pub(super) fn pick(self, production: &'static str, debug: &'static str) -> &'static str {
        match self {
            Variant::Production => production,
            Variant::DebugLog => debug,
        }
    }

    /// The XDP program of this variant.
    pub fn host_xdp(self) -> &'static str {
        self.pick(PROG_HOST_XDP, PROG_HOST_XDP_DEBUG)
    }
}

/// The name of the XDP hook in link pins and held links.
pub const XDP_HOOK: &str = "host-xdp";

/// One direction of an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hook {
    /// TCX ingress of the host-side veth: the pod's egress policy.
    PodEgress,
    /// TCX egress of the host-side veth: the pod's ingress policy.
    PodIngress,
    /// TCX ingress of a host interface: the host endpoint's ingress chain.
    HostIngress,
    /// TCX egress of a host interface: the host endpoint's egress chain.
    HostEgress,
    /// TCX egress of every non-workload interface, first in the chain: the deferred
    /// egress of Service traffic leaving the node.
    GuardEgress,
    /// TCX ingress of every non-workload interface, first in the chain: tunnel sources
    /// and `NodePort` clients.
    GuardIngress,
}

impl Hook {
    /// The program of `variant` that runs at this hook.
    pub fn program(self, variant: Variant) -> &'static str {
        match self {
            Hook::PodEgress => variant.pick(PROG_POD_EGRESS, PROG_POD_EGRESS_DEBUG),
            Hook::PodIngress => variant.pick(PROG_POD_INGRESS, PROG_POD_INGRESS_DEBUG),
            Hook::HostIngress => variant.pick(PROG_HOST_INGRESS, PROG_HOST_INGRESS_DEBUG),
            Hook::HostEgress => variant.pick(PROG_HOST_EGRESS, PROG_HOST_EGRESS_DEBUG),
            Hook::GuardEgress => variant.pick(PROG_GUARD_EGRESS, PROG_GUARD_EGRESS_DEBUG),
            Hook::GuardIngress => variant.pick(PROG_GUARD_INGRESS, PROG_GUARD_INGRESS_DEBUG),
        }
    }

    /// Every TC hook.
    pub const ALL: [Hook; 6] = [
        Hook::PodEgress,
        Hook::PodIngress,
        Hook::HostIngress,
        Hook::HostEgress,
        Hook::GuardEgress,
        Hook::GuardIngress,
    ];

    /// The guards, on every non-workload interface (`dataplane/guard.rs`).
    pub const GUARDS: [Hook; 2] = [Hook::GuardIngress, Hook::GuardEgress];

    /// Whether this is one of the guards.
    pub fn is_guard(self) -> bool {
        matches!(self, Hook::GuardEgress | Hook::GuardIngress)
    }

    /// The guard on this hook's side of an interface.
    #[must_use]
    pub fn guard(self) -> Hook {
        match self.attach_type() {
            TcAttachType::Ingress => Hook::GuardIngress,
            _ => Hook::GuardEgress,
        }
    }

    pub(super) fn attach_type(self) -> TcAttachType {
        match self {
            Hook::PodEgress | Hook::HostIngress | Hook::GuardIngress => TcAttachType::Ingress,
            Hook::PodIngress | Hook::HostEgress | Hook::GuardEgress => TcAttachType::Egress,
        }
    }
    /// The `tc` filter priority of this hook's program in `tc` mode (see `attach.rs`).
    pub(super) fn tc_priority(self) -> u16 {
        match self {
            Hook::GuardEgress | Hook::GuardIngress => super::attach::TC_PRIORITY_GUARD,
            Hook::PodEgress | Hook::PodIngress | Hook::HostIngress | Hook::HostEgress => {
                super::attach::TC_PRIORITY
            }
        }
    }

    /// Whether an older agent's filter of this hook, at the guard's priority, may be
    /// removed once this hook's own filter is in: on a workload's interface (a host
    /// interface's guards have that priority on both sides).
    pub(super) fn owns_legacy_tc_priority(self) -> bool {
        matches!(self, Hook::PodEgress | Hook::PodIngress)
    }

    pub fn name(self) -> &'static str {
        match self {
            Hook::PodEgress => "pod-egress",
            Hook::PodIngress => "pod-ingress",
            Hook::HostIngress => "host-ingress",
            Hook::HostEgress => "host-egress",
            Hook::GuardEgress => "guard-egress",
            Hook::GuardIngress => "guard-ingress",
        }
    }
}
