//! The embedded BPF object loaded (not pinned, not attached) with typed handles on its
//! maps, and `BPF_PROG_TEST_RUN` of its programs with a chosen ifindex and mark.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, HashMap, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues, ProgramArray, RingBuf,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{CgroupSkb, Program, SchedClassifier, TestRun, TestRunOptions, TestRunResult, Xdp},
};
use enforcer_common::{
    COUNTERS_LEN, Config, CtKey, CtValue, EndpointInfo, EndpointKey, FailsafeKey, FlowEvent,
    FrontendKey, HOOK_CGROUP_INGRESS, HOOK_GUARD_EGRESS, HOOK_GUARD_INGRESS, HOOK_HOST_EGRESS,
    HOOK_HOST_INGRESS, HOOK_HOST_XDP, HOOK_POD_EGRESS, HOOK_POD_INGRESS, MAP_CONFIG, MAP_CONNTRACK,
    MAP_COUNTERS, MAP_DEBUG_TAIL_CGROUP, MAP_DEBUG_TAIL_TC, MAP_DEBUG_TAIL_XDP, MAP_ENDPOINTS,
    MAP_EVENTS, MAP_FAILSAFE, MAP_FRONTENDS, MAP_NODE_PORT_CLIENTS, MAP_PEERS_V4, MAP_PEERS_V6,
    MAP_PENDING, MAP_PORTS, MAP_VERDICTS, NodePortClientKey, NodePortClientValue,
    PROG_CGROUP_INGRESS, PROG_CGROUP_INGRESS_DEBUG, PROG_GUARD_EGRESS, PROG_GUARD_EGRESS_DEBUG,
    PROG_GUARD_INGRESS, PROG_GUARD_INGRESS_DEBUG, PROG_HOST_EGRESS, PROG_HOST_EGRESS_DEBUG,
    PROG_HOST_INGRESS, PROG_HOST_INGRESS_DEBUG, PROG_HOST_XDP, PROG_HOST_XDP_DEBUG,
    PROG_LOG_CGROUP_DEBUG, PROG_LOG_TC_DEBUG, PROG_LOG_XDP_DEBUG, PROG_POD_EGRESS,
    PROG_POD_EGRESS_DEBUG, PROG_POD_INGRESS, PROG_POD_INGRESS_DEBUG, PeerInfo, PeerKeyV4,
    PeerKeyV6, PendingKey, PendingValue, PortKey, REASONS, Verdict, VerdictKey,
};
use enforcer_common::{
    EventBudget, FlowReport, FlowReportKey, MAP_EVENT_BUDGET, MAP_EVENT_STATS, MAP_FLOW_REPORTS,
    MAP_RULE_COUNTERS, RuleCounter, RuleCounterKey,
};

use enforcer::dataplane::writer::GenerationWriter;

use super::OrPanic as _;

/// The two programs, by the hook they run at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// `enf_pod_eg` (packets from the pod).
    PodEgress,
    /// `enf_pod_in` (packets to the pod).
    PodIngress,
    /// `enf_host_xdp` (XDP, packets entering the node on a host interface).
    HostXdp,
    /// `enf_host_in` (TCX ingress of a host interface).
    HostIngress,
    /// `enf_host_eg` (TCX egress of a host interface).
    HostEgress,
    /// `enf_guard_eg` (TCX egress of every non-workload interface: deferred Service
    /// egress leaving the node). Passes with `TC_ACT_UNSPEC` (-1, "next").
    GuardEgress,
    /// `enf_guard_in` (TCX ingress of every non-workload interface: tunnel sources,
    /// `NodePort` clients). Passes with `TC_ACT_UNSPEC` (-1, "next").
    GuardIngress,
    /// `enf_cg_in` (`cgroup_skb/ingress`: deferred Service egress delivered to a node
    /// socket). Passes with 1, drops with 0.
    CgroupIngress,
}

/// The production programs or their debug-log variants (`enf_*_d`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Production,
    DebugLog,
}

impl Hook {
    /// The production program.
    pub fn program(self) -> &'static str {
        self.program_of(Variant::Production)
    }

    pub fn program_of(self, variant: Variant) -> &'static str {
        let (production, debug) = match self {
            Self::PodEgress => (PROG_POD_EGRESS, PROG_POD_EGRESS_DEBUG),
            Self::PodIngress => (PROG_POD_INGRESS, PROG_POD_INGRESS_DEBUG),
            Self::HostXdp => (PROG_HOST_XDP, PROG_HOST_XDP_DEBUG),
            Self::HostIngress => (PROG_HOST_INGRESS, PROG_HOST_INGRESS_DEBUG),
            Self::HostEgress => (PROG_HOST_EGRESS, PROG_HOST_EGRESS_DEBUG),
            Self::GuardEgress => (PROG_GUARD_EGRESS, PROG_GUARD_EGRESS_DEBUG),
            Self::GuardIngress => (PROG_GUARD_INGRESS, PROG_GUARD_INGRESS_DEBUG),
            Self::CgroupIngress => (PROG_CGROUP_INGRESS, PROG_CGROUP_INGRESS_DEBUG),
        };
        match variant {
            Variant::Production => production,
            Variant::DebugLog => debug,
        }
    }

    /// The TC programs (every hook but XDP).
    pub const TC: [Hook; 6] = [
        Hook::PodEgress,
        Hook::PodIngress,
        Hook::HostIngress,
        Hook::HostEgress,
        Hook::GuardEgress,
        Hook::GuardIngress,
    ];

    /// The actions a run of this hook returns for pass and drop.
    pub fn pass_drop(self) -> (u32, u32) {
        match self {
            Hook::HostXdp => (2, 1),
            Hook::GuardEgress | Hook::GuardIngress => (u32::MAX, 2),
            Hook::CgroupIngress => (1, 0),
            _ => (0, 2),
        }
    }

    pub fn index(self) -> u32 {
        match self {
            Self::PodEgress => HOOK_POD_EGRESS,
            Self::PodIngress => HOOK_POD_INGRESS,
            Self::HostXdp => HOOK_HOST_XDP,
            Self::HostIngress => HOOK_HOST_INGRESS,
            Self::HostEgress => HOOK_HOST_EGRESS,
            Self::GuardEgress => HOOK_GUARD_EGRESS,
            Self::GuardIngress => HOOK_GUARD_INGRESS,
            Self::CgroupIngress => HOOK_CGROUP_INGRESS,
        }
    }
}

/// Size of the kernel's `struct __sk_buff` (6.x) and the offsets `BPF_PROG_TEST_RUN` lets
/// a caller set (every other byte must be zero).
const SKB_SIZE: usize = 192;
const SKB_MARK: usize = 8;
const SKB_INGRESS_IFINDEX: usize = 36;
const SKB_IFINDEX: usize = 40;
/// Size of the kernel's `struct xdp_md`.
const XDP_MD_SIZE: usize = 24;

/// What one run returned.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    /// The TC action (`TC_ACT_OK` = 0, `TC_ACT_SHOT` = 2).
    pub action: u32,
    /// `__sk_buff.mark` after the program.
    pub mark: u32,
}

pub struct Dataplane {
    ebpf: Ebpf,
    pub config: Array<MapData, Config>,
    pub endpoints: HashMap<MapData, EndpointKey, EndpointInfo>,
    pub peers_v4: LpmTrie<MapData, PeerKeyV4, PeerInfo>,
    pub peers_v6: LpmTrie<MapData, PeerKeyV6, PeerInfo>,
    pub ports: LpmTrie<MapData, PortKey, u32>,
    pub verdicts: HashMap<MapData, VerdictKey, Verdict>,
    pub conntrack: HashMap<MapData, CtKey, CtValue>,
    pub pending: HashMap<MapData, PendingKey, PendingValue>,
    pub counters: PerCpuArray<MapData, u64>,
    pub events: RingBuf<MapData>,
    pub failsafe: HashMap<MapData, FailsafeKey, u32>,
    pub frontends: HashMap<MapData, FrontendKey, u32>,
    pub node_port_clients: HashMap<MapData, NodePortClientKey, NodePortClientValue>,
    /// Flow-event rate limiting: per-flow reports and each CPU's budget.
    pub flow_reports: PerCpuHashMap<MapData, FlowReportKey, FlowReport>,
    pub event_budget: PerCpuArray<MapData, EventBudget>,
    pub event_stats: PerCpuArray<MapData, u64>,
    pub rule_counters: PerCpuHashMap<MapData, RuleCounterKey, RuleCounter>,
}

fn take<T: TryFrom<aya::maps::Map>>(ebpf: &mut Ebpf, name: &str) -> T
where
    T::Error: std::fmt::Display,
{
    let map = ebpf
        .take_map(name)
        .or_panic(&format!("map {name} in the object"));
    T::try_from(map).or_panic(&format!("map {name} type"))
}

impl Dataplane {
    /// Loads `object` (the production programs through the verifier) without pinning
    /// anything.
    pub fn load(object: &[u8]) -> Self {
        Self::load_variants(object, &[Variant::Production])
    }

    /// Loads `object` with the programs of every variant in `variants`.
    pub fn load_variants(object: &[u8], variants: &[Variant]) -> Self {
        let mut ebpf = load_programs(object, variants);
        Self {
            failsafe: take(&mut ebpf, MAP_FAILSAFE),
            frontends: take(&mut ebpf, MAP_FRONTENDS),
            node_port_clients: take(&mut ebpf, MAP_NODE_PORT_CLIENTS),
            config: take(&mut ebpf, MAP_CONFIG),
            endpoints: take(&mut ebpf, MAP_ENDPOINTS),
            peers_v4: take(&mut ebpf, MAP_PEERS_V4),
            peers_v6: take(&mut ebpf, MAP_PEERS_V6),
            ports: take(&mut ebpf, MAP_PORTS),
            verdicts: take(&mut ebpf, MAP_VERDICTS),
            conntrack: take(&mut ebpf, MAP_CONNTRACK),
            pending: take(&mut ebpf, MAP_PENDING),
            counters: take(&mut ebpf, MAP_COUNTERS),
            events: take(&mut ebpf, MAP_EVENTS),
            flow_reports: take(&mut ebpf, MAP_FLOW_REPORTS),
            event_budget: take(&mut ebpf, MAP_EVENT_BUDGET),
            event_stats: take(&mut ebpf, MAP_EVENT_STATS),
            rule_counters: take(&mut ebpf, MAP_RULE_COUNTERS),
            ebpf,
        }
    }

    /// Forgets which flows reported recently and refills every CPU's event budget, so
    /// the next judged packet of any flow queues its event (cases are independent of
    /// the rate limiting unless they test it).
    pub fn reset_event_limits(&mut self) {
        let keys: Vec<FlowReportKey> = self.flow_reports.keys().filter_map(Result::ok).collect();
        for k in keys {
            let _ = self.flow_reports.remove(&k);
        }
        // Zero tokens refilled since time zero: a full budget at the next event.
        let cpus = aya::util::nr_cpus().unwrap_or_else(|(what, e)| panic!("{what}: {e}"));
        let empty =
            PerCpuValues::try_from(vec![EventBudget::default(); cpus]).or_panic("per-CPU budget");
        self.event_budget
            .set(0, empty, 0)
            .or_panic("resetting ENF_EVENT_BUDGET");
    }

    /// `ENF_EVENT_STATS[index]` summed over the CPUs.
    pub fn event_stat(&self, index: u32) -> u64 {
        self.event_stats
            .get(&index, 0)
            .or_panic("reading ENF_EVENT_STATS")
            .iter()
            .sum()
    }

    /// `ENF_RULE_COUNTERS[key]` summed over the CPUs (zero when absent).
    pub fn rule_counter(&self, key: RuleCounterKey) -> RuleCounter {
        self.rule_counters
            .get(&key, 0)
            .map(|v| {
                v.iter().fold(RuleCounter::default(), |a, c| RuleCounter {
                    packets: a.packets + c.packets,
                    bytes: a.bytes + c.bytes,
                })
            })
            .unwrap_or_default()
    }

    /// Empties every map (config back to all zeros, events drained); counters are
    /// left alone, tests compare them before and after.
    pub fn reset(&mut self) {
        self.config
            .set(0, Config::default(), 0)
            .or_panic("reset config");
        clear_hash(&mut self.endpoints);
        clear_hash(&mut self.verdicts);
        clear_hash(&mut self.conntrack);
        clear_hash(&mut self.pending);
        clear_hash(&mut self.failsafe);
        clear_hash(&mut self.frontends);
        clear_hash(&mut self.node_port_clients);
        clear_lpm(&mut self.peers_v4);
        clear_lpm(&mut self.peers_v6);
        clear_lpm(&mut self.ports);
        self.drain_events();
        self.reset_event_limits();
    }

    /// The loaded object, e.g. to take aya-log's ring buffer from it.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Runs `hook`'s program once on `frame` as if it arrived on `ifindex` with `mark`
    /// (XDP: the mark is ignored; the action is `XDP_DROP` = 1 or `XDP_PASS` = 2).
    pub fn run(&self, hook: Hook, frame: &[u8], ifindex: u32, mark: u32) -> Run {
        test_run(&self.ebpf, hook, frame, ifindex, mark)
    }

    /// [`Dataplane::run`] for a packet that entered the node on `ingress_ifindex`
    /// (`__sk_buff.ingress_ifindex`; 0 in [`Dataplane::run`]: a locally sent packet).
    pub fn run_from(
        &self,
        hook: Hook,
        frame: &[u8],
        ifindex: u32,
        mark: u32,
        ingress_ifindex: u32,
    ) -> Run {
        if hook == Hook::HostXdp {
            return run_xdp(&self.ebpf, hook.program(), frame, ifindex);
        }
        run_ctx(
            &self.ebpf,
            hook.program(),
            frame,
            &SkbCtx {
                ifindex,
                mark,
                ingress_ifindex,
            },
        )
    }

    /// [`Dataplane::run`] with the program of `variant` (loaded by
    /// [`Dataplane::load_variants`]).
    pub fn run_variant(
        &self,
        variant: Variant,
        hook: Hook,
        frame: &[u8],
        ifindex: u32,
        mark: u32,
    ) -> Run {
        test_run_variant(&self.ebpf, variant, hook, frame, ifindex, mark)
    }

    /// A Service front-end port on the node's addresses in `generation`.
    pub fn set_frontend(&mut self, generation: u8, proto: u8, port: u16, flags: u32) {
        self.frontends
            .insert(
                FrontendKey {
                    generation,
                    proto,
                    port,
                },
                flags,
                0,
            )
            .or_panic("writing ENF_FRONTENDS");
    }

    pub fn set_failsafe(&mut self, dir: u8, proto: u8, port: u16) {
        self.failsafe
            .insert(FailsafeKey { dir, proto, port }, 1, 0)
            .or_panic("writing ENF_FAILSAFE");
    }

    /// `ENF_COUNTERS[hook * REASONS + reason]` summed over the CPUs.
    pub fn counter(&self, hook: Hook, reason: u32) -> u64 {
        let index = hook.index() * REASONS + reason;
        assert!(index < COUNTERS_LEN);
        self.counters
            .get(&index, 0)
            .or_panic("reading a counter")
            .iter()
            .sum()
    }

    /// Every reason's counter of `hook`.
    pub fn counters_of(&self, hook: Hook) -> Vec<u64> {
        (0..REASONS).map(|r| self.counter(hook, r)).collect()
    }

    pub fn drain_events(&mut self) -> Vec<FlowEvent> {
        let mut out = Vec::new();
        while let Some(item) = self.events.next() {
            assert_eq!(item.len(), size_of::<FlowEvent>(), "event size");
            out.push(*bytemuck::from_bytes::<FlowEvent>(&item));
        }
        out
    }

    // ---- writing policy by hand ----

    pub fn set_config(&mut self, config: Config) {
        self.config.set(0, config, 0).or_panic("writing ENF_CONFIG");
    }

    pub fn set_endpoint(&mut self, generation: u32, ifindex: u32, info: EndpointInfo) {
        self.endpoints
            .insert(
                EndpointKey {
                    generation,
                    ifindex,
                },
                info,
                0,
            )
            .or_panic("writing ENF_ENDPOINTS");
    }

    /// A peer entry for `addr/prefix` in `generation`.
    pub fn set_peer(&mut self, generation: u8, addr: IpAddr, prefix: u32, info: PeerInfo) {
        match addr {
            IpAddr::V4(a) => {
                let key = Key::new(8 + prefix, PeerKeyV4::new(generation, a.octets()));
                self.peers_v4
                    .insert(&key, info, 0)
                    .or_panic("writing ENF_PEERS_V4");
            }
            IpAddr::V6(a) => {
                let key = Key::new(8 + prefix, PeerKeyV6::new(generation, a.octets()));
                self.peers_v6
                    .insert(&key, info, 0)
                    .or_panic("writing ENF_PEERS_V6");
            }
        }
    }

    /// A cell for `port/port_prefix` (0..=16 bits) of `proto` in `generation`.
    pub fn set_port(&mut self, generation: u8, proto: u8, port: u16, port_prefix: u32, cell: u32) {
        let key = Key::new(
            16 + port_prefix,
            PortKey {
                generation,
                proto,
                port: port.to_be_bytes(),
            },
        );
        self.ports
            .insert(&key, cell, 0)
            .or_panic("writing ENF_PORTS");
    }

    pub fn set_verdict(&mut self, key: VerdictKey, verdict: Verdict) {
        self.verdicts
            .insert(key, verdict, 0)
            .or_panic("writing ENF_VERDICTS");
    }

    pub fn conntrack_entry(&self, key: &CtKey) -> Option<CtValue> {
        self.conntrack.get(key, 0).ok()
    }

    /// Writes `value` under `key` with the key's tag (`enforcer_common::ct_tag`), as
    /// the programs write it; [`Dataplane::set_conntrack_raw`] writes it as given.
    pub fn set_conntrack(&mut self, key: CtKey, value: CtValue) {
        let tagged = CtValue::for_key(&key, value.last_seen_ns, value.flags, value.generation);
        self.set_conntrack_raw(key, tagged);
    }

    pub fn set_conntrack_raw(&mut self, key: CtKey, value: CtValue) {
        self.conntrack
            .insert(key, value, 0)
            .or_panic("writing ENF_CONNTRACK");
    }
}

fn clear_hash<K: aya::Pod, V: aya::Pod>(map: &mut HashMap<MapData, K, V>) {
    let keys: Vec<K> = map.keys().filter_map(Result::ok).collect();
    for k in keys {
        let _ = map.remove(&k);
    }
}

fn clear_lpm<K: aya::Pod, V: aya::Pod>(map: &mut LpmTrie<MapData, K, V>) {
    let keys: Vec<Key<K>> = map.keys().filter_map(Result::ok).collect();
    for k in keys {
        let _ = map.remove(&k);
    }
}

/// A conntrack key as the programs build it: IPv4 in the first 4 bytes.
pub fn ct_key(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, proto: u8) -> CtKey {
    let (src, dst, family) = (addr16(src), addr16(dst), family(src));
    CtKey {
        src,
        dst,
        sport,
        dport,
        proto,
        family,
        _pad: [0; 2],
    }
}

pub fn family(a: IpAddr) -> u8 {
    match a {
        IpAddr::V4(_) => enforcer_common::FAMILY_V4,
        IpAddr::V6(_) => enforcer_common::FAMILY_V6,
    }
}

/// An address as the maps store it (IPv4 in the first 4 bytes, the rest zero).
pub fn addr16(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => {
            let mut out = [0; 16];
            out[..4].copy_from_slice(&v4.octets());
            out
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The endpoint entry for an address pair.
pub fn endpoint(
    profile: u32,
    endpoint_id: u32,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
) -> EndpointInfo {
    let mut info = EndpointInfo {
        profile,
        endpoint_id,
        ..EndpointInfo::default()
    };
    if let Some(a) = v4 {
        info.flags |= enforcer_common::EP_F_HAS_V4;
        info.ipv4 = a.octets();
    }
    if let Some(a) = v6 {
        info.flags |= enforcer_common::EP_F_HAS_V6;
        info.ipv6 = a.octets();
    }
    info
}

/// Monotonic clock, as `bpf_ktime_get_ns` reads it.
pub fn monotonic_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).or_panic("clock_gettime");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// The object loaded (not pinned, not attached) with its policy maps owned by the
/// agent's own [`GenerationWriter`]: a compiled policy set reaches the maps exactly as
/// the agent writes it, and the real programs judge packets against it.
pub struct CompiledDataplane {
    ebpf: Ebpf,
    pub writer: GenerationWriter,
    pub conntrack: HashMap<MapData, CtKey, CtValue>,
}

impl CompiledDataplane {
    pub fn load(object: &[u8]) -> Self {
        Self::load_with_max_entries(object, &[])
    }

    /// [`CompiledDataplane::load`] with some maps made smaller (name, `max_entries`).
    pub fn load_with_max_entries(object: &[u8], max_entries: &[(&str, u32)]) -> Self {
        let mut ebpf = load_programs_with(object, &[Variant::Production], max_entries);
        let writer = GenerationWriter::new(&mut ebpf).or_panic("GenerationWriter::new");
        let conntrack = take(&mut ebpf, MAP_CONNTRACK);
        Self {
            ebpf,
            writer,
            conntrack,
        }
    }

    /// Runs `hook`'s program once on `frame` as if it arrived on `ifindex` with `mark`.
    pub fn run(&self, hook: Hook, frame: &[u8], ifindex: u32, mark: u32) -> Run {
        test_run(&self.ebpf, hook, frame, ifindex, mark)
    }

    /// Forgets every flow.
    pub fn clear_conntrack(&mut self) {
        clear_hash(&mut self.conntrack);
    }
}

/// Loads `object` (the programs of `variants` through the verifier), without pinning
/// anything.
fn load_programs(object: &[u8], variants: &[Variant]) -> Ebpf {
    load_programs_with(object, variants, &[])
}

/// [`load_programs`] with some maps made smaller (name, `max_entries`).
fn load_programs_with(object: &[u8], variants: &[Variant], max_entries: &[(&str, u32)]) -> Ebpf {
    let mut loader = EbpfLoader::new();
    for (name, max) in max_entries {
        loader.map_max_entries(name, *max);
    }
    let mut ebpf = loader.load(object).or_panic("loading the BPF object");
    for &variant in variants {
        for hook in Hook::TC {
            let name = hook.program_of(variant);
            let prog: &mut SchedClassifier = ebpf
                .program_mut(name)
                .or_panic(name)
                .try_into()
                .or_panic("program type");
            if let Err(e) = prog.load() {
                // The verifier log is in the error's source chain.
                panic!("verifier rejected {name}: {e:?}");
            }
        }
        let name = Hook::HostXdp.program_of(variant);
        let xdp: &mut Xdp = ebpf
            .program_mut(name)
            .or_panic(name)
            .try_into()
            .or_panic("program type");
        if let Err(e) = xdp.load() {
            panic!("verifier rejected {name}: {e:?}");
        }
        let name = Hook::CgroupIngress.program_of(variant);
        let cgroup: &mut CgroupSkb = ebpf
            .program_mut(name)
            .or_panic(name)
            .try_into()
            .or_panic("program type");
        if let Err(e) = cgroup.load() {
            panic!("verifier rejected {name}: {e:?}");
        }
        if variant == Variant::DebugLog {
            load_log_programs(&mut ebpf);
        }
    }
    ebpf
}

/// The debug-log variants' log programs, loaded and put in their program arrays (which
/// stay in the object: the kernel empties a program array when it is closed).
fn load_log_programs(ebpf: &mut Ebpf) {
    let tc: &mut SchedClassifier = ebpf
        .program_mut(PROG_LOG_TC_DEBUG)
        .or_panic(PROG_LOG_TC_DEBUG)
        .try_into()
        .or_panic("program type");
    if let Err(e) = tc.load() {
        panic!("verifier rejected {PROG_LOG_TC_DEBUG}: {e:?}");
    }
    let tc_fd = tc
        .fd()
        .or_panic("program fd")
        .try_clone()
        .or_panic("program fd");
    let xdp: &mut Xdp = ebpf
        .program_mut(PROG_LOG_XDP_DEBUG)
        .or_panic(PROG_LOG_XDP_DEBUG)
        .try_into()
        .or_panic("program type");
    if let Err(e) = xdp.load() {
        panic!("verifier rejected {PROG_LOG_XDP_DEBUG}: {e:?}");
    }
    let xdp_fd = xdp
        .fd()
        .or_panic("program fd")
        .try_clone()
        .or_panic("program fd");
    let cg: &mut CgroupSkb = ebpf
        .program_mut(PROG_LOG_CGROUP_DEBUG)
        .or_panic(PROG_LOG_CGROUP_DEBUG)
        .try_into()
        .or_panic("program type");
    if let Err(e) = cg.load() {
        panic!("verifier rejected {PROG_LOG_CGROUP_DEBUG}: {e:?}");
    }
    let cg_fd = cg
        .fd()
        .or_panic("program fd")
        .try_clone()
        .or_panic("program fd");
    for (map, fd) in [
        (MAP_DEBUG_TAIL_TC, tc_fd),
        (MAP_DEBUG_TAIL_XDP, xdp_fd),
        (MAP_DEBUG_TAIL_CGROUP, cg_fd),
    ] {
        let mut tail = ProgramArray::try_from(ebpf.map_mut(map).or_panic(map)).or_panic(map);
        tail.set(0, &fd, 0).or_panic("setting a log program");
    }
}

/// Runs `hook`'s program of `ebpf` once on `frame` as if it arrived on `ifindex` with
/// `mark` (XDP: the mark is ignored; the action is `XDP_DROP` = 1 or `XDP_PASS` = 2).
pub fn test_run(ebpf: &Ebpf, hook: Hook, frame: &[u8], ifindex: u32, mark: u32) -> Run {
    test_run_variant(ebpf, Variant::Production, hook, frame, ifindex, mark)
}

/// [`test_run`] with the program of `variant`.
pub fn test_run_variant(
    ebpf: &Ebpf,
    variant: Variant,
    hook: Hook,
    frame: &[u8],
    ifindex: u32,
    mark: u32,
) -> Run {
    let name = hook.program_of(variant);
    if hook == Hook::HostXdp {
        return run_xdp(ebpf, name, frame, ifindex);
    }
    run_ctx(
        ebpf,
        name,
        frame,
        &SkbCtx {
            ifindex,
            mark,
            ingress_ifindex: 0,
        },
    )
}

/// The `__sk_buff` fields a test sets.
pub struct SkbCtx {
    pub ifindex: u32,
    pub mark: u32,
    pub ingress_ifindex: u32,
}

/// Runs the TC or cgroup program `name` once on `frame` with the context `ctx` (a
/// cgroup program sees the frame from its IP header on).
pub fn run_ctx(ebpf: &Ebpf, name: &str, frame: &[u8], ctx: &SkbCtx) -> Run {
    let program = ebpf.program(name).or_panic(name);
    let test_run = |opts| -> Result<TestRunResult, aya::programs::ProgramError> {
        match program {
            Program::SchedClassifier(p) => p.test_run(opts),
            Program::CgroupSkb(p) => p.test_run(opts),
            other => panic!(
                "{name}: not a TC or cgroup program: {:?}",
                other.prog_type()
            ),
        }
    };
    let mut ctx_in = [0u8; SKB_SIZE];
    ctx_in[SKB_MARK..SKB_MARK + 4].copy_from_slice(&ctx.mark.to_ne_bytes());
    ctx_in[SKB_INGRESS_IFINDEX..SKB_INGRESS_IFINDEX + 4]
        .copy_from_slice(&ctx.ingress_ifindex.to_ne_bytes());
    ctx_in[SKB_IFINDEX..SKB_IFINDEX + 4].copy_from_slice(&ctx.ifindex.to_ne_bytes());
    let mut ctx_out = [0u8; SKB_SIZE];
    let result = test_run(TestRunOptions {
        data_in: Some(frame),
        ctx_in: Some(&ctx_in),
        ctx_out: Some(&mut ctx_out),
        ..TestRunOptions::new()
    })
    .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN of {name} ({} bytes): {e:?}", frame.len()));
    let mut mark_out = [0u8; 4];
    mark_out.copy_from_slice(&ctx_out[SKB_MARK..SKB_MARK + 4]);
    Run {
        action: result.return_value,
        mark: u32::from_ne_bytes(mark_out),
    }
}

fn run_xdp(ebpf: &Ebpf, name: &str, frame: &[u8], ifindex: u32) -> Run {
    let prog: &Xdp = ebpf
        .program(name)
        .or_panic(name)
        .try_into()
        .or_panic("program type");
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
    // egress_ifindex. The kernel wants data_end = the frame's length.
    let mut ctx_in = [0u8; XDP_MD_SIZE];
    ctx_in[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    ctx_in[12..16].copy_from_slice(&ifindex.to_ne_bytes());
    let mut ctx_out = [0u8; XDP_MD_SIZE];
    let result = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx_in),
            ctx_out: Some(&mut ctx_out),
            ..TestRunOptions::new()
        })
        .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN of {name} ({} bytes): {e:?}", frame.len()));
    Run {
        action: result.return_value,
        mark: 0,
    }
}
