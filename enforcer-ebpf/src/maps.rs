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
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use enforcer_common::{
    CONNTRACK_MAX, COUNTERS_LEN, Config, CtKey, CtValue, ENDPOINTS_MAX, EVENTS_BYTES, EndpointInfo,
    EndpointKey, FAILSAFE_MAX, FRONTENDS_MAX, FailsafeKey, FrontendKey, PEERS_MAX, PENDING_MAX,
    PORTS_MAX, PeerInfo, PeerKeyV4, PeerKeyV6, PendingKey, PendingValue, PortKey, VERDICTS_MAX,
    Verdict, VerdictKey,
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

/// Service front-ends by port on the node's own addresses (see `FrontendKey`).
#[map]
pub static ENF_FRONTENDS: HashMap<FrontendKey, u32> =
    HashMap::with_max_entries(FRONTENDS_MAX, BPF_F_NO_PREALLOC);

#[map]
pub static ENF_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS_LEN, 0);

#[map]
pub static ENF_EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

/// Failsafe ports of host interfaces (configuration, written once by the agent).
#[map]
pub static ENF_FAILSAFE: HashMap<FailsafeKey, u32> =
    HashMap::with_max_entries(FAILSAFE_MAX, BPF_F_NO_PREALLOC);
