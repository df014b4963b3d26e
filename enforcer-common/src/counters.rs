//! The outcome counters (`ENF_COUNTERS`): per hook, per reason. Flow events and the
//! other observability maps are in `observe`. Re-exported at the crate root.

// ---------------------------------------------------------------------------------
// COUNTERS: PERCPU_ARRAY u64, index = hook * REASONS + reason.
// ---------------------------------------------------------------------------------

pub const HOOK_POD_EGRESS: u32 = 0;
pub const HOOK_POD_INGRESS: u32 = 1;
pub const HOOK_HOST_XDP: u32 = 2;
pub const HOOK_HOST_INGRESS: u32 = 3;
pub const HOOK_HOST_EGRESS: u32 = 4;
/// The guard on TC egress of every non-workload interface (deferred Service egress).
pub const HOOK_GUARD_EGRESS: u32 = 5;
/// The cgroup program on local delivery to the node's sockets (deferred Service egress).
pub const HOOK_CGROUP_INGRESS: u32 = 6;
/// The guard on TC ingress of every non-workload interface (tunnel sources, `NodePort`
/// clients).
pub const HOOK_GUARD_INGRESS: u32 = 7;
pub const HOOKS: u32 = 8;

/// Counter slots per hook.
pub const REASONS: u32 = 20;
pub const COUNTERS_LEN: u32 = HOOKS * REASONS;

pub const REASON_ALLOW_POLICY: u32 = 0;
pub const REASON_ALLOW_CONNTRACK: u32 = 1;
pub const REASON_ALLOW_NON_IP: u32 = 2;
pub const REASON_DEFERRED: u32 = 3;
pub const REASON_DENY_POLICY: u32 = 4;
pub const REASON_NO_ENDPOINT: u32 = 5;
pub const REASON_NO_POLICY_LOADED: u32 = 6;
pub const REASON_SPOOFED: u32 = 7;
pub const REASON_MALFORMED: u32 = 8;
pub const REASON_FRAGMENT: u32 = 9;
pub const REASON_UNSUPPORTED_L3: u32 = 10;
pub const REASON_MAP_ERROR: u32 = 11;
pub const REASON_ALLOW_NDP: u32 = 12;
/// A failsafe port (host endpoints): passed before any policy.
pub const REASON_ALLOW_FAILSAFE: u32 = 13;
/// Allowed by a doNotTrack policy: passed without conntrack.
pub const REASON_ALLOW_UNTRACKED: u32 = 14;
/// XDP found no untracked or preDNAT decision: left to the TC program.
pub const REASON_XDP_CONTINUE: u32 = 15;
/// A TCP packet other than a bare SYN that no conntrack entry approves, at a host
/// interface (Calico's conntrack-INVALID drop): e.g. the reply of a flow that untracked
/// (doNotTrack) policy allowed in one direction only.
pub const REASON_DENY_NO_CONNTRACK: u32 = 16;
/// A packet carrying the deferred-egress marker reached a hook that does not judge it
/// (the host egress program, when the guard did not run first): dropped, since nobody
/// judged the client's egress.
pub const REASON_DENY_DEFERRED_UNJUDGED: u32 = 17;
/// A TCP packet other than a bare SYN that no conntrack entry approves, at a host
/// interface, of a connection the node's kernel holds an established local socket for
/// (opened before the programs attached, or under earlier policy): passed, and
/// recorded in conntrack as approved in its direction (Calico's fallback to Linux
/// conntrack).
pub const REASON_ALLOW_PREEXISTING: u32 = 18;
/// An ICMP or `ICMPv6` error quoting a packet of a flow conntrack approves, travelling
/// the way that flow allows (related ICMP: fragmentation needed, packet too big, port
/// unreachable...): passed without creating or refreshing an entry.
pub const REASON_ALLOW_RELATED: u32 = 19;

/// Human names of the reasons, by index.
pub const REASON_NAMES: [&str; REASONS as usize] = [
    "allow_policy",
    "allow_conntrack",
    "allow_non_ip",
    "deferred_to_dnat",
    "deny_policy",
    "deny_no_endpoint",
    "deny_no_policy_loaded",
    "deny_spoofed",
    "deny_malformed",
    "deny_fragment",
    "deny_unsupported_l3",
    "deny_map_error",
    "allow_ndp",
    "allow_failsafe",
    "allow_untracked",
    "xdp_to_tc",
    "deny_no_conntrack",
    "deny_deferred_unjudged",
    "allow_preexisting",
    "allow_related",
];
