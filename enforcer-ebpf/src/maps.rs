//! The maps, exactly as `enforcer-common` describes them (names `ENF_*`, key and value
//! types, capacities). User space finds them by these names in the loaded object and
//! pins them under `<bpffs>/enforcer/<node>/`.
//!
//! The maps are BTF-defined (`.maps` section, `#[btf_map]`): the kernel gets their key
//! and value types, so `bpftool map dump pinned <bpffs>/enforcer/<node>/ENF_VERDICTS`
//! prints every field by name (see `build.rs`: bpf-linker emits the BTF).
//!
//! `ENF_ENDPOINTS` and `ENF_VERDICTS` are hashes written only by the agent, so they are
//! created with `BPF_F_NO_PREALLOC`: a preallocated `ENF_VERDICTS` would pin about
//! 100 MiB of kernel memory for its million slots whether they are used or not. The LPM
//! tries require the flag (their default). The LRU maps are always preallocated.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    btf_maps::{
        Array, HashMap, LpmTrie, LruHashMap, LruPerCpuHashMap, PerCpuArray, PerCpuHashMap, RingBuf,
    },
    macros::btf_map,
};
use enforcer_common::{
    CONNTRACK_MAX, COUNTERS_LEN, Config, CtKey, CtValue, ENDPOINTS_MAX, EVENT_STATS_LEN,
    EVENTS_BYTES, EndpointInfo, EndpointKey, EventBudget, FAILSAFE_MAX, FLOW_REPORTS_MAX,
    FRONTENDS_MAX, FailsafeKey, FlowEvent, FlowReport, FlowReportKey, FrontendKey,
    NODE_PORT_CLIENTS_MAX, NodePortClientKey, NodePortClientValue, PEERS_MAX, PENDING_MAX,
    POLICY_NAMES_MAX, PORTS_MAX, PeerInfo, PeerKeyV4, PeerKeyV6, PendingKey, PendingValue,
    PolicyNameEntry, PortKey, RULE_COUNTERS_MAX, RuleCounter, RuleCounterKey, SOURCE_PORTS_MAX,
    SourcePortKey, VERDICTS_MAX, Verdict, VerdictKey,
};

/// `BPF_F_NO_PREALLOC` as a const generic.
const NO_PREALLOC: usize = BPF_F_NO_PREALLOC as usize;

#[btf_map]
pub static ENF_CONFIG: Array<Config, 1> = Array::new();

#[btf_map]
pub static ENF_ENDPOINTS: HashMap<
    EndpointKey,
    EndpointInfo,
    { ENDPOINTS_MAX as usize },
    NO_PREALLOC,
> = HashMap::new();

#[btf_map]
pub static ENF_PEERS_V4: LpmTrie<PeerKeyV4, PeerInfo, { PEERS_MAX as usize }> = LpmTrie::new();

#[btf_map]
pub static ENF_PEERS_V6: LpmTrie<PeerKeyV6, PeerInfo, { PEERS_MAX as usize }> = LpmTrie::new();

#[btf_map]
pub static ENF_PORTS: LpmTrie<PortKey, u32, { PORTS_MAX as usize }> = LpmTrie::new();

#[btf_map]
pub static ENF_SOURCE_PORTS: LpmTrie<SourcePortKey, u32, { SOURCE_PORTS_MAX as usize }> =
    LpmTrie::new();

#[btf_map]
pub static ENF_VERDICTS: HashMap<VerdictKey, Verdict, { VERDICTS_MAX as usize }, NO_PREALLOC> =
    HashMap::new();

#[btf_map]
pub static ENF_CONNTRACK: LruHashMap<CtKey, CtValue, { CONNTRACK_MAX as usize }> =
    LruHashMap::new();

#[btf_map]
pub static ENF_PENDING: LruHashMap<PendingKey, PendingValue, { PENDING_MAX as usize }> =
    LruHashMap::new();

/// Clients of packets to `NodePorts`, noted before kube-proxy may masquerade them (see
/// `NodePortClientKey`). Not pinned: a note lives for microseconds.
#[btf_map]
pub static ENF_NP_CLIENTS: LruHashMap<
    NodePortClientKey,
    NodePortClientValue,
    { NODE_PORT_CLIENTS_MAX as usize },
> = LruHashMap::new();

/// Service front-ends by port on the node's own addresses (see `FrontendKey`).
#[btf_map]
pub static ENF_FRONTENDS: HashMap<FrontendKey, u32, { FRONTENDS_MAX as usize }, NO_PREALLOC> =
    HashMap::new();

#[btf_map]
pub static ENF_COUNTERS: PerCpuArray<u64, { COUNTERS_LEN as usize }> = PerCpuArray::new();

#[btf_map]
pub static ENF_EVENTS: RingBuf<FlowEvent, { EVENTS_BYTES as usize }> = RingBuf::new();

/// Failsafe ports of host interfaces (configuration, written once by the agent).
#[btf_map]
pub static ENF_FAILSAFE: HashMap<FailsafeKey, u32, { FAILSAFE_MAX as usize }, NO_PREALLOC> =
    HashMap::new();

// ---- Observability (see `observe`): flow-event rate limiting and per-rule counters ----

/// Flows that asked for an event recently, with their counts, per CPU (LRU: a flood
/// of new flows evicts old reports, never anything that decides a verdict).
#[btf_map]
pub static ENF_FLOW_REPORTS: LruPerCpuHashMap<
    FlowReportKey,
    FlowReport,
    { FLOW_REPORTS_MAX as usize },
> = LruPerCpuHashMap::new();

/// Each CPU's event budget (token bucket).
#[btf_map]
pub static ENF_EVENT_BUDGET: PerCpuArray<EventBudget, 1> = PerCpuArray::new();

/// What became of events: emitted, aggregated into a flow report, lost.
#[btf_map]
pub static ENF_EVENT_STATS: PerCpuArray<u64, { EVENT_STATS_LEN as usize }> = PerCpuArray::new();

/// Packets and bytes per (policy, rule, direction, action), per CPU. Entries are
/// created by the programs on first use and removed by the agent with their policy.
#[btf_map]
pub static ENF_RULE_COUNTERS: PerCpuHashMap<
    RuleCounterKey,
    RuleCounter,
    { RULE_COUNTERS_MAX as usize },
    NO_PREALLOC,
> = PerCpuHashMap::new();

/// Stable policy id → name. Written by the agent only; in the object so that it is
/// created, pinned and described (BTF) with the rest.
#[btf_map]
pub static ENF_POLICY_NAMES: HashMap<
    u32,
    PolicyNameEntry,
    { POLICY_NAMES_MAX as usize },
    NO_PREALLOC,
> = HashMap::new();

/// Per-CPU scratch space of `observe`: the keys and first values of its map updates
/// live here rather than on the stack, where the programs' own frames leave too little
/// room for the calls that build them (BPF's 512-byte limit counts the whole call
/// chain). Not pinned: it holds nothing between two packets.
#[btf_map]
pub static ENF_SCRATCH: PerCpuArray<crate::observe::Scratch, 1> = PerCpuArray::new();

/// Per-CPU scratch space of `related`: the tuple an ICMP error quotes, built and looked
/// up here rather than on the stack (its frame sits on top of the program's, within
/// BPF's 512-byte limit for the whole call chain). Not pinned: it holds nothing between
/// two packets.
#[btf_map]
pub static ENF_RELATED_KEY: PerCpuArray<CtKey, 1> = PerCpuArray::new();
