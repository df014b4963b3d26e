//! What the programs report besides verdicts: flow events (`ENF_EVENTS`) and their
//! rate limiting, event counters, per-rule counters, and the stable policy ids these
//! are keyed by. Re-exported at the crate root with everything else.

// ---------------------------------------------------------------------------------
// EVENTS: RINGBUF of FlowEvent.
// ---------------------------------------------------------------------------------

/// One flow event: a Log rule hit, a denied packet (with [`CONFIG_F_EVENT_ON_DENY`](crate::CONFIG_F_EVENT_ON_DENY)) or
/// an allowed new flow (with [`CONFIG_F_EVENT_ON_ALLOW`]). Addresses in network order;
/// `sport`/`dport` are the TCP/UDP/UDPLite/SCTP ports in host order (0 for other
/// protocols, ICMP included).
///
/// Events are rate-limited in BPF (see [`FlowReportKey`]): at most one per flow, kind,
/// verdict and CPU per [`FLOW_REPORT_INTERVAL_NS`], and a per-CPU budget over all
/// flows ([`EventBudget`]). `packets` and `bytes` count every packet of the flow report
/// on `cpu` since its entry was created, those whose event was held back included, so
/// the agent's counts stay exact while the ring carries one event per flow and interval.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct FlowEvent {
    /// `bpf_ktime_get_ns` (`CLOCK_MONOTONIC`) when the event was queued.
    pub ts_ns: u64,
    /// Packets of this flow report so far, this one included (cumulative).
    pub packets: u64,
    /// Bytes (L2 frame lengths) of those packets (cumulative).
    pub bytes: u64,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub family: u8,
    /// `DIR_*` of the judging endpoint (pod or host directions).
    pub dir: u8,
    /// [`ACTION_ALLOW`](crate::ACTION_ALLOW) or [`ACTION_DENY`](crate::ACTION_DENY).
    pub action: u8,
    /// `EVENT_KIND_*`.
    pub kind: u32,
    pub ifindex: u32,
    pub endpoint_id: u32,
    pub policy: u32,
    pub rule: u32,
    /// `HOOK_*` of the program that judged.
    pub hook: u8,
    /// `VERDICT_KIND_*` of the decision (rule, tier default, profile, ...).
    pub verdict_kind: u8,
    /// Policy generation the verdict was looked up in.
    pub generation: u8,
    pub _pad0: u8,
    /// `REASON_*`: the counter the packet's outcome is recorded under.
    pub reason: u32,
    /// The CPU that queued the event: `packets` and `bytes` are that CPU's share of
    /// the flow report (see [`FlowReport`]).
    pub cpu: u32,
}
const _: () = assert!(size_of::<FlowEvent>() == 96);

/// A Log rule matched (`policy`/`rule` name the Log rule).
pub const EVENT_KIND_LOG: u32 = 1;
/// A new flow was denied (`policy`/`rule` name the decision).
pub const EVENT_KIND_DENY: u32 = 2;
/// An allowed new flow (with [`CONFIG_F_EVENT_ON_ALLOW`]; `policy`/`rule` name the decision).
pub const EVENT_KIND_ALLOW: u32 = 3;

// ---------------------------------------------------------------------------------
// Observability: flow-event rate limiting, event counters, per-rule counters and the
// stable policy ids they are keyed by. Flags of this section use bits 16 and up of
// `Config::flags`.
// ---------------------------------------------------------------------------------

/// Emit a flow event for every allowed new flow (the first packet policy judges).
pub const CONFIG_F_EVENT_ON_ALLOW: u32 = 1 << 16;

/// The flow-report map: one entry per (flow, judging interface, direction, event kind,
/// verdict) that asked for an event recently.
pub const MAP_FLOW_REPORTS: &str = "ENF_FLOW_REPORTS";
/// Per-CPU event budget (token bucket), see [`EventBudget`].
pub const MAP_EVENT_BUDGET: &str = "ENF_EVENT_BUDGET";
/// Per-CPU counters of what became of events, indexed by `EVENT_STAT_*`.
pub const MAP_EVENT_STATS: &str = "ENF_EVENT_STATS";
/// Per-rule packet and byte counters, see [`RuleCounterKey`].
pub const MAP_RULE_COUNTERS: &str = "ENF_RULE_COUNTERS";
/// Stable policy id → the policy's name (written by the agent, never read by the
/// programs): the id table survives agent restarts with the counters it keys.
pub const MAP_POLICY_NAMES: &str = "ENF_POLICY_NAMES";

pub const FLOW_REPORTS_MAX: u32 = 16_384;
pub const RULE_COUNTERS_MAX: u32 = 65_536;
pub const POLICY_NAMES_MAX: u32 = 16_384;

/// A flow that asked for an event reports again at most this often; packets in
/// between only add to its counts (`FlowReport`).
pub const FLOW_REPORT_INTERVAL_NS: u64 = 1_000_000_000;
/// Per-CPU event budget: tokens added per second, and the most a CPU may save up.
/// Beyond it events are dropped and counted (`EVENT_STAT_RATE_LIMITED`): a flood of
/// new flows cannot drown the ring buffer, the agent or the log.
pub const EVENTS_PER_SEC_PER_CPU: u64 = 2_000;
pub const EVENTS_BURST_PER_CPU: u64 = 1_000;

/// Key of `ENF_FLOW_REPORTS` (per-CPU LRU hash): a flow as one judging point reports
/// it. The
/// tuple is the packet's own (not the conntrack forward tuple): a denied flow has no
/// conntrack entry, and its packets always come the same way.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct FlowReportKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub family: u8,
    pub dir: u8,
    pub action: u8,
    pub ifindex: u32,
    /// `EVENT_KIND_*` (a Log-rule event and a deny event of one packet are two reports).
    pub kind: u8,
    /// `HOOK_*`.
    pub hook: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<FlowReportKey>() == 48);

/// Value of `ENF_FLOW_REPORTS`, one per CPU (no atomics needed): when the flow last
/// reported from this CPU, and this CPU's counts so far (cumulative since the entry was
/// created). The agent sums the CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct FlowReport {
    pub last_report_ns: u64,
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(size_of::<FlowReport>() == 24);

/// `ENF_EVENT_BUDGET[0]` on each CPU: a token bucket refilled at
/// [`EVENTS_PER_SEC_PER_CPU`] up to [`EVENTS_BURST_PER_CPU`]. `tokens` is in
/// millitokens so that refills of less than one token are not lost.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct EventBudget {
    pub millitokens: u64,
    pub last_refill_ns: u64,
}
const _: () = assert!(size_of::<EventBudget>() == 16);

/// An event was queued on the ring buffer.
pub const EVENT_STAT_EMITTED: u32 = 0;
/// A packet's event was held back because its flow reported less than
/// [`FLOW_REPORT_INTERVAL_NS`] ago; its counts are in the flow's report (not lost).
pub const EVENT_STAT_AGGREGATED: u32 = 1;
/// An event was dropped: the CPU's budget was spent (lost, counted).
pub const EVENT_STAT_RATE_LIMITED: u32 = 2;
/// An event was dropped: the ring buffer was full (the agent fell behind; lost, counted).
pub const EVENT_STAT_RING_FULL: u32 = 3;
pub const EVENT_STATS_LEN: u32 = 4;
/// Names of the `EVENT_STAT_*` counters, by index.
pub const EVENT_STAT_NAMES: [&str; EVENT_STATS_LEN as usize] = [
    "emitted",
    "aggregated",
    "lost_rate_limited",
    "lost_ring_full",
];

/// Key of `ENF_RULE_COUNTERS` (per-CPU hash): what decided, as the verdict names it.
/// `policy` is the stable policy id the agent writes into verdicts (see
/// [`PolicyNameEntry`]), `rule` the rule's index in that policy's rules of the
/// direction ([`NO_INDEX`](crate::NO_INDEX) for a tier's end-of-tier default, attributed to the tier's
/// last policy as Calico does; `policy` too for profile decisions).
///
/// One lookup (and an insert the first time) per judged packet, whatever the number of
/// rules: the key is made of the verdict's own ids.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct RuleCounterKey {
    pub policy: u32,
    pub rule: u32,
    /// `DIR_*`.
    pub dir: u8,
    /// [`ACTION_ALLOW`](crate::ACTION_ALLOW), [`ACTION_DENY`](crate::ACTION_DENY) or [`COUNTED_LOG`].
    pub action: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<RuleCounterKey>() == 12);

/// [`RuleCounterKey::action`] of a Log rule's hits.
pub const COUNTED_LOG: u8 = 4;

/// Value of `ENF_RULE_COUNTERS` (per CPU): packets judged by the rule and their bytes.
/// Only packets that policy judges count: new flows and denied packets, not the
/// established packets conntrack passes (as Calico's per-rule counters).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct RuleCounter {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(size_of::<RuleCounter>() == 16);

/// Value of `ENF_POLICY_NAMES` (hash, stable policy id → name): the agent gives each
/// (policy, rules) an id that stays the same while the policy's rules do, whatever
/// else changes, so counters and events keep naming the same rules. Strings are
/// NUL-padded UTF-8.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct PolicyNameEntry {
    /// Digest of the policy's rules: a new digest is a new id (fresh counters).
    pub fingerprint: u64,
    pub tier: [u8; 64],
    pub kind: [u8; 32],
    pub namespace: [u8; 64],
    pub name: [u8; 256],
}
const _: () = assert!(size_of::<PolicyNameEntry>() == 424);

impl Default for PolicyNameEntry {
    fn default() -> Self {
        Self {
            fingerprint: 0,
            tier: [0; 64],
            kind: [0; 32],
            namespace: [0; 64],
            name: [0; 256],
        }
    }
}

#[cfg(feature = "user")]
mod user {
    use super::{
        EventBudget, FlowEvent, FlowReport, FlowReportKey, PolicyNameEntry, RuleCounter,
        RuleCounterKey,
    };

    // SAFETY: every type is repr(C), has no implicit padding (bytemuck's derive checks
    // it) and is valid for any bit pattern.
    unsafe impl aya::Pod for FlowEvent {}
    unsafe impl aya::Pod for FlowReportKey {}
    unsafe impl aya::Pod for FlowReport {}
    unsafe impl aya::Pod for EventBudget {}
    unsafe impl aya::Pod for RuleCounterKey {}
    unsafe impl aya::Pod for RuleCounter {}
    unsafe impl aya::Pod for PolicyNameEntry {}
}
