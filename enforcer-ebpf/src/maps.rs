//! The maps, exactly as `enforcer-common` describes them (names `ENF_*`, key and value
//! types, capacities). User space finds them by these names in the loaded object and
//! pins them under `<bpffs>/enforcer/<node>/`.
//!
//! `ENF_ENDPOINTS` and `ENF_VERDICTS` are hashes written only by the agent, so they are
//! created with `BPF_F_NO_PREALLOC`: a preallocated `ENF_VERDICTS` would pin about
//! 100 MiB of kernel memory for its million slots whether they are used or not. The LPM
//! tries require the flag (aya-ebpf adds it). The LRU maps are always preallocated.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{
        Array, HashMap, LpmTrie, LruHashMap, LruPerCpuHashMap, PerCpuArray, PerCpuHashMap, RingBuf,
    },
};
use enforcer_common::{
    CONNTRACK_MAX, COUNTERS_LEN, Config, CtKey, CtValue, ENDPOINTS_MAX, EVENT_STATS_LEN,
    EVENTS_BYTES, EndpointInfo, EndpointKey, EventBudget, FAILSAFE_MAX, FLOW_REPORTS_MAX,
    FailsafeKey, FlowReport, FlowReportKey, PEERS_MAX, PENDING_MAX, POLICY_NAMES_MAX, PORTS_MAX,
    PeerInfo, PeerKeyV4, PeerKeyV6, PendingKey, PendingValue, PolicyNameEntry, PortKey,
    RULE_COUNTERS_MAX, RuleCounter, RuleCounterKey, VERDICTS_MAX, Verdict, VerdictKey,
};

#[map]
pub static ENF_CONFIG: Array<Config> = Array::with_max_entries(1, 0);

#[map]
pub static ENF_ENDPOINTS: HashMap<EndpointKey, EndpointInfo> =
    HashMap::with_max_entries(ENDPOINTS_MAX, BPF_F_NO_PREALLOC);

#[map]
pub static ENF_PEERS_V4: LpmTrie<PeerKeyV4, PeerInfo> = LpmTrie::with_max_entries(PEERS_MAX, 0);

#[map]
pub static ENF_PEERS_V6: LpmTrie<PeerKeyV6, PeerInfo> = LpmTrie::with_max_entries(PEERS_MAX, 0);

#[map]
pub static ENF_PORTS: LpmTrie<PortKey, u32> = LpmTrie::with_max_entries(PORTS_MAX, 0);

#[map]
pub static ENF_VERDICTS: HashMap<VerdictKey, Verdict> =
    HashMap::with_max_entries(VERDICTS_MAX, BPF_F_NO_PREALLOC);

#[map]
pub static ENF_CONNTRACK: LruHashMap<CtKey, CtValue> =
    LruHashMap::with_max_entries(CONNTRACK_MAX, 0);

#[map]
pub static ENF_PENDING: LruHashMap<PendingKey, PendingValue> =
    LruHashMap::with_max_entries(PENDING_MAX, 0);

#[map]
pub static ENF_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS_LEN, 0);

#[map]
pub static ENF_EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

/// Failsafe ports of host interfaces (configuration, written once by the agent).
#[map]
pub static ENF_FAILSAFE: HashMap<FailsafeKey, u32> =
    HashMap::with_max_entries(FAILSAFE_MAX, BPF_F_NO_PREALLOC);

// ---- Observability (see `observe`): flow-event rate limiting and per-rule counters ----

/// Flows that asked for an event recently, with their counts, per CPU (LRU: a flood
/// of new flows evicts old reports, never anything that decides a verdict).
#[map]
pub static ENF_FLOW_REPORTS: LruPerCpuHashMap<FlowReportKey, FlowReport> =
    LruPerCpuHashMap::with_max_entries(FLOW_REPORTS_MAX, 0);

/// Each CPU's event budget (token bucket).
#[map]
pub static ENF_EVENT_BUDGET: PerCpuArray<EventBudget> = PerCpuArray::with_max_entries(1, 0);

/// What became of events: emitted, aggregated into a flow report, lost.
#[map]
pub static ENF_EVENT_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(EVENT_STATS_LEN, 0);

/// Packets and bytes per (policy, rule, direction, action), per CPU. Entries are
/// created by the programs on first use and removed by the agent with their policy.
#[map]
pub static ENF_RULE_COUNTERS: PerCpuHashMap<RuleCounterKey, RuleCounter> =
    PerCpuHashMap::with_max_entries(RULE_COUNTERS_MAX, BPF_F_NO_PREALLOC);

/// Stable policy id → name. Written by the agent only; in the object so that it is
/// created, pinned and described (BTF) with the rest.
#[map]
pub static ENF_POLICY_NAMES: HashMap<u32, PolicyNameEntry> =
    HashMap::with_max_entries(POLICY_NAMES_MAX, BPF_F_NO_PREALLOC);

/// Per-CPU scratch space of `observe`: the keys and first values of its map updates
/// live here rather than on the stack, where the programs' own frames leave too little
/// room for the calls that build them (BPF's 512-byte limit counts the whole call
/// chain). Not pinned: it holds nothing between two packets.
#[map]
pub static ENF_SCRATCH: PerCpuArray<crate::observe::Scratch> = PerCpuArray::with_max_entries(1, 0);
