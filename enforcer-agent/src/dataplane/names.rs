//! Human names of the codes the maps and events carry: hooks, directions, actions,
//! decision kinds, counter reasons. One place, so the flow log, `enforcer inspect` and
//! the metrics say the same words.

use enforcer_common::{
    ACTION_ALLOW, ACTION_CONTINUE, ACTION_DENY, COUNTED_LOG, DIR_EGRESS, DIR_HOST_EGRESS,
    DIR_HOST_INGRESS, DIR_INGRESS, DIR_PREDNAT_INGRESS, DIR_UNTRACKED_EGRESS,
    DIR_UNTRACKED_INGRESS, EVENT_KIND_ALLOW, EVENT_KIND_DENY, EVENT_KIND_LOG, HOOK_CGROUP_INGRESS,
    HOOK_GUARD_EGRESS, HOOK_GUARD_INGRESS, HOOK_HOST_EGRESS, HOOK_HOST_INGRESS, HOOK_HOST_XDP,
    HOOK_POD_EGRESS, HOOK_POD_INGRESS, REASON_NAMES, VERDICT_KIND_NO_PROFILE, VERDICT_KIND_PROFILE,
    VERDICT_KIND_RULE, VERDICT_KIND_TIER_DEFAULT,
};

/// `HOOK_*`: the program that judged.
pub fn hook(hook: u32) -> &'static str {
    match hook {
        HOOK_POD_EGRESS => "pod-egress",
        HOOK_POD_INGRESS => "pod-ingress",
        HOOK_HOST_XDP => "host-xdp",
        HOOK_HOST_INGRESS => "host-ingress",
        HOOK_HOST_EGRESS => "host-egress",
        HOOK_GUARD_EGRESS => "guard-egress",
        HOOK_GUARD_INGRESS => "guard-ingress",
        HOOK_CGROUP_INGRESS => "cgroup-ingress",
        _ => "other",
    }
}

/// `DIR_*`: the direction a verdict was looked up for.
pub fn direction(dir: u8) -> &'static str {
    match dir {
        DIR_INGRESS => "ingress",
        DIR_EGRESS => "egress",
        DIR_UNTRACKED_INGRESS => "untracked-ingress",
        DIR_UNTRACKED_EGRESS => "untracked-egress",
        DIR_PREDNAT_INGRESS => "prednat-ingress",
        DIR_HOST_INGRESS => "host-ingress",
        DIR_HOST_EGRESS => "host-egress",
        _ => "other",
    }
}

/// `ACTION_*` (and `COUNTED_LOG` of rule counters).
pub fn action(action: u8) -> &'static str {
    match action {
        ACTION_ALLOW => "allow",
        ACTION_DENY => "deny",
        ACTION_CONTINUE => "continue",
        COUNTED_LOG => "log",
        _ => "other",
    }
}

/// `VERDICT_KIND_*`: what decided.
pub fn verdict_kind(kind: u8) -> &'static str {
    match kind {
        VERDICT_KIND_RULE => "rule",
        VERDICT_KIND_TIER_DEFAULT => "tier-default",
        VERDICT_KIND_PROFILE => "profile",
        VERDICT_KIND_NO_PROFILE => "no-profile",
        _ => "other",
    }
}

/// `EVENT_KIND_*`.
pub fn event_kind(kind: u32) -> &'static str {
    match kind {
        EVENT_KIND_LOG => "log",
        EVENT_KIND_DENY => "deny",
        EVENT_KIND_ALLOW => "allow",
        _ => "other",
    }
}

/// `REASON_*`: the outcome counter.
pub fn reason(reason: u32) -> &'static str {
    REASON_NAMES
        .get(reason as usize)
        .copied()
        .unwrap_or("other")
}
