//! The machinery of the BPF differential test (`tests/bpf_differential.rs`): random
//! clusters compiled by the real compiler, written by the real generation writer into
//! the maps of the real programs, and random first packets judged both by the programs
//! (`BPF_PROG_TEST_RUN`) and by the reference evaluator.
//!
//! A *case* is one leg of one packet on one cluster: a packet from a local endpoint is
//! judged by `enf_pod_eg` on that endpoint's interface, a packet to one by
//! `enf_pod_in` on its interface (a packet between two local endpoints makes
//! two cases, egress first, as the kernel would run them). Per case the checks are exact:
//!
//! 1. **verdict**: the program's TC action is the evaluator's action;
//! 2. **explain**: the `ENF_VERDICTS` entry the programs' lookup hits, resolved here in
//!    the kernel's maps (kernel LPM lookups for the peer and the cell, then the 4-step
//!    wildcard precedence), equals `verdict_of(evaluator's decision)`: same action,
//!    kind, policy, rule and first Log rule; its policy index names the evaluator's
//!    policy in `DataplaneSpec::policies`; and the program's action is that entry's;
//! 3. **writer**: that entry (and the endpoint, class and cell) are what the compiled
//!    spec says (`compile::simulate`), so the writer wrote what the compiler emitted;
//! 4. **events**: the program reported that entry: with `CONFIG_F_EVENT_ON_DENY` a deny
//!    emits one event naming the entry's policy and rule, a Log verdict one naming the
//!    Log rule, and nothing else is emitted;
//! 5. **conntrack**: an allowed leg records exactly its own approval (plus the peer's
//!    when the peer is not a local endpoint) in the current generation, a denied leg
//!    leaves no entry, and the programs write no other tuple.
//!
//! Encapsulation a workload sends (IPIP, IPv6-in-IP, VXLAN on UDP 4789) is dropped at
//! its egress before policy (Calico's default), which the evaluator, the policy alone,
//! does not model: such a packet's egress case checks the drop and that no entry was
//! written, and it goes no further.
//!
//! Conntrack entries are deleted after each packet, so every packet is a new flow:
//! ICMP errors among them quote packets of no approved flow and are judged by their
//! type and code. Half of the packets every leg allows are followed, before the
//! deletion, by a packet of their flow (`related`): an ICMP error quoting the packet
//! or its reply must pass every local leg creating and refreshing nothing (check
//! **related**) when the semantics relate it, and is otherwise a first packet with
//! checks 1-5; an echo request's reply must pass as a reply.
//!
//! Clusters and packets (`enforcer::testkit::arbitrary`, [`Case`]): Kubernetes and
//! Calico policies, tiers and network sets, `AdminNetworkPolicy` and
//! `BaselineAdminNetworkPolicy` with `Node`s, Services with backends and the Calico
//! rules that match them; packets of every protocol with varied source ports, aimed at
//! the rules' ports, nets and Service backends (see `tests/bpf_differential.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use aya::Ebpf;
use aya::EbpfLoader;
use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{
    HashMap, Map, MapData, MapError, PerCpuArray, PerCpuHashMap, PerCpuValues, RingBuf,
};
use aya::programs::SchedClassifier;
use enforcer::compile::simulate::{Dataplane as SimDataplane, SimLeg};
use enforcer::compile::{DataplaneSpec, compile, dir_code, verdict_of};
use enforcer::dataplane::content::GenerationContent;
use enforcer::dataplane::writer::GenerationWriter;
use enforcer::eval::{self, Action, LegDecision, Packet};
use enforcer::policy::{Cluster, Direction, Endpoint, has_ports, is_icmp};
use enforcer::testkit::arbitrary::{self, Gen};
use enforcer_common::{
    ACTION_ALLOW, ACTION_DENY, ANY_CELL, ANY_PEER, CELL_UNLISTED, CONFIG_F_EVENT_ON_DENY,
    CT_F_EGRESS_OK, CT_F_INGRESS_OK, CtKey, CtValue, EVENT_KIND_DENY, EVENT_KIND_LOG, EndpointInfo,
    EndpointKey, FAMILY_V4, FAMILY_V6, FlowEvent, MAP_CONNTRACK, MAP_ENDPOINTS, MAP_EVENTS,
    MAP_PEERS_V4, MAP_PEERS_V6, MAP_PENDING, MAP_PORTS, MAP_VERDICTS, PEER_F_LOCAL_ENDPOINT,
    PeerInfo, PeerKeyV4, PeerKeyV6, PendingKey, PendingValue, PortKey, VERDICT_F_LOG,
    VERDICT_KIND_PROFILE, VERDICT_KIND_RULE, VERDICT_KIND_TIER_DEFAULT, Verdict, VerdictKey,
};
use enforcer_common::{
    CELL_F_BY_SOURCE, EP_F_OWN_PEER_V4, EP_F_OWN_PEER_V6, EventBudget, FlowReport, FlowReportKey,
    MAP_EVENT_BUDGET, MAP_FLOW_REPORTS, MAP_SOURCE_PORTS, REASON_ALLOW_POLICY, REASON_DENY_POLICY,
    SOURCE_PORT_KEY_FIXED_BITS, SourcePortKey,
};
use serde_json::Value;

use crate::bpf::OrPanic as _;
use crate::bpf::dataplane::{Hook, SkbCtx, addr16, run_ctx, test_run};

mod frame;
mod related;

pub use frame::{describe_frame, frame, is_icmp_error};

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;

/// Pods the cluster generator can create: `pod0..pod5` in each of its namespaces.
pub const PODS_PER_NAMESPACE: usize = 6;

/// Share (in sixteenths) of the allowed packets followed by a packet of their flow
/// (`related`: ICMP errors quoting them, echo replies).
const FOLLOW_UP_SIXTEENTHS: u64 = 8;

/// Share of a cluster's endpoints that are local (have an interface and an
/// `ENF_ENDPOINTS` entry); the others are remote pods, plain peers.
const LOCAL_PERCENT: u64 = 80;

/// Every `(namespace, pod)` interface name the generator can produce.
pub fn pod_ifaces() -> Vec<String> {
    let mut out = Vec::new();
    for ns in arbitrary::NAMESPACES {
        for i in 0..PODS_PER_NAMESPACE {
            out.push(enforcer::model::workload::host_iface_name(
                ns,
                &format!("pod{i}"),
            ));
        }
    }
    out
}

/// Which check of the module docs failed, and everything about the case.
#[derive(Debug)]
pub struct Mismatch {
    pub check: &'static str,
    pub detail: String,
}

/// Counts of what the cases exercised, printed at the end and checked for coverage.
#[derive(Default)]
pub struct Stats {
    pub cases: u64,
    pub clusters: u64,
    pub counts: BTreeMap<String, u64>,
}

impl Stats {
    fn bump(&mut self, what: String) {
        *self.counts.entry(what).or_default() += 1;
    }

    pub fn count(&self, what: &str) -> u64 {
        self.counts.get(what).copied().unwrap_or(0)
    }
}

/// One cluster as it is on the dataplane.
pub struct Applied {
    pub cluster: Cluster,
    pub spec: DataplaneSpec,
    /// Interfaces of the local endpoints → ifindex.
    pub local: BTreeMap<String, u32>,
    pub generation: u32,
    /// What a conntrack entry judged in this generation records
    /// (`enforcer_common::ct_stamp`: the slot and its epoch).
    pub ct_stamp: u32,
}

impl Applied {
    /// The local endpoint with this address, if any.
    fn local_endpoint(&self, addr: IpAddr) -> Option<&Endpoint> {
        self.cluster
            .endpoint_at(addr)
            .filter(|ep| self.local.contains_key(&ep.iface))
    }
}

/// The loaded programs, the real writer on their policy maps, and second handles on
/// every map to read back what the programs see and did.
pub struct Bench {
    ebpf: Ebpf,
    writer: GenerationWriter,
    endpoints: HashMap<MapData, EndpointKey, EndpointInfo>,
    peers_v4: LpmTrie<MapData, PeerKeyV4, PeerInfo>,
    peers_v6: LpmTrie<MapData, PeerKeyV6, PeerInfo>,
    ports: LpmTrie<MapData, PortKey, u32>,
    source_ports: LpmTrie<MapData, SourcePortKey, u32>,
    verdicts: HashMap<MapData, VerdictKey, Verdict>,
    conntrack: HashMap<MapData, CtKey, CtValue>,
    pending: HashMap<MapData, PendingKey, PendingValue>,
    events: RingBuf<MapData>,
    /// Flow-event rate limiting, reset after every packet: cases are independent.
    flow_reports: PerCpuHashMap<MapData, FlowReportKey, FlowReport>,
    event_budget: PerCpuArray<MapData, EventBudget>,
    /// Pod interface name → ifindex, for every interface created.
    ifaces: BTreeMap<String, u32>,
}

/// The kernel id of a map of the loaded object.
fn map_id(ebpf: &Ebpf, name: &str) -> u32 {
    let (Map::HashMap(data) | Map::LruHashMap(data) | Map::LpmTrie(data) | Map::Array(data)) =
        ebpf.map(name).or_panic(name)
    else {
        panic!("{name}: unexpected map type");
    };
    data.info().or_panic("map info").id()
}

/// A new handle on the map with kernel id `id`.
fn open<T: TryFrom<Map>>(id: u32, name: &str) -> T
where
    T::Error: std::fmt::Display,
{
    let data = MapData::from_id(id).or_panic(&format!("opening {name} by id"));
    let map = Map::from_map_data(data).or_panic(&format!("{name} type"));
    T::try_from(map).or_panic(&format!("{name} typed"))
}

fn take<T: TryFrom<Map>>(ebpf: &mut Ebpf, name: &str) -> T
where
    T::Error: std::fmt::Display,
{
    let map = ebpf.take_map(name).or_panic(name);
    T::try_from(map).or_panic(&format!("{name} typed"))
}

impl Bench {
    /// Loads `object` (nothing pinned, nothing attached) and hands its policy maps to
    /// the real [`GenerationWriter`], with events on deny enabled.
    pub fn new(object: &[u8], ifaces: BTreeMap<String, u32>) -> Self {
        let mut ebpf = EbpfLoader::new()
            .load(object)
            .or_panic("loading the BPF object");
        for hook in [Hook::PodEgress, Hook::PodIngress] {
            let prog: &mut SchedClassifier = ebpf
                .program_mut(hook.program())
                .or_panic(hook.program())
                .try_into()
                .or_panic("program type");
            if let Err(e) = prog.load() {
                panic!("verifier rejected {}: {e:?}", hook.program());
            }
        }
        let ids: Vec<u32> = [
            MAP_ENDPOINTS,
            MAP_PEERS_V4,
            MAP_PEERS_V6,
            MAP_PORTS,
            MAP_VERDICTS,
            MAP_SOURCE_PORTS,
        ]
        .iter()
        .map(|name| map_id(&ebpf, name))
        .collect();
        let conntrack = take(&mut ebpf, MAP_CONNTRACK);
        let pending = take(&mut ebpf, MAP_PENDING);
        let events = take(&mut ebpf, MAP_EVENTS);
        let flow_reports = take(&mut ebpf, MAP_FLOW_REPORTS);
        let event_budget = take(&mut ebpf, MAP_EVENT_BUDGET);
        let mut writer = GenerationWriter::new(&mut ebpf).or_panic("generation writer");
        writer
            .set_flags(CONFIG_F_EVENT_ON_DENY)
            .or_panic("events on deny");
        Self {
            endpoints: open(ids[0], MAP_ENDPOINTS),
            peers_v4: open(ids[1], MAP_PEERS_V4),
            peers_v6: open(ids[2], MAP_PEERS_V6),
            ports: open(ids[3], MAP_PORTS),
            verdicts: open(ids[4], MAP_VERDICTS),
            source_ports: open(ids[5], MAP_SOURCE_PORTS),
            ebpf,
            writer,
            conntrack,
            pending,
            events,
            flow_reports,
            event_budget,
            ifaces,
        }
    }

    /// Builds, compiles and applies the documents with the endpoints of `local`
    /// interfaces local; `None` if the documents are not a valid cluster.
    pub fn apply(&mut self, objects: &[Value], local: &BTreeSet<String>) -> Option<Applied> {
        let cluster = arbitrary::build(objects)?;
        let spec = compile(&cluster).or_panic("compiling a generated cluster");
        let local: BTreeMap<String, u32> = self
            .ifaces
            .iter()
            .filter(|(name, _)| local.contains(*name))
            .map(|(name, index)| (name.clone(), *index))
            .collect();
        let content = GenerationContent::from_spec(&spec, |iface| local.get(iface).copied());
        let stats = self
            .writer
            .apply(content)
            .or_panic("writing the generation");
        assert!(
            self.pending.keys().next().is_none(),
            "ENF_PENDING is written only for Service VIPs"
        );
        Some(Applied {
            cluster,
            spec,
            local,
            generation: stats.generation,
            ct_stamp: enforcer_common::ct_stamp(&self.writer.config(), stats.generation),
        })
    }

    /// Judges every local leg of `packet`; returns the number of cases (legs). Leaves
    /// conntrack and the event ring empty whatever the outcome.
    pub fn check_packet(
        &mut self,
        applied: &Applied,
        packet: &Packet,
        stats: &mut Stats,
    ) -> Result<u64, Mismatch> {
        let (bytes, key) = frame(packet);
        let result = self.check_first(applied, packet, &bytes, &key, stats);
        let all: Vec<CtKey> = self.conntrack.keys().filter_map(Result::ok).collect();
        for k in &all {
            let _ = self.conntrack.remove(k);
        }
        while self.events.next().is_some() {}
        self.reset_event_limits();
        result
    }

    /// [`Self::check_legs`], then the conntrack check across tuples and, for a packet
    /// every leg allowed, often the follow-up step of `related`.
    fn check_first(
        &mut self,
        applied: &Applied,
        packet: &Packet,
        bytes: &[u8],
        key: &CtKey,
        stats: &mut Stats,
    ) -> Result<u64, Mismatch> {
        let mut cases = self.check_legs(applied, packet, bytes, key, stats)?;
        let leftover: Vec<CtKey> = self
            .conntrack
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k != key)
            .collect();
        if !leftover.is_empty() {
            return Err(Mismatch {
                check: "conntrack",
                detail: format!(
                    "{packet:?}: the programs wrote other tuples than the packet's {key:?}: {leftover:?}"
                ),
            });
        }
        // A packet dropped before policy, whatever the policy says, has no flow to
        // follow up.
        let allowed = !dropped_before_policy(applied, packet)
            && eval::evaluate(&applied.cluster, packet).allowed;
        if allowed && (frame::mix(packet) >> 60) < FOLLOW_UP_SIXTEENTHS {
            while self.events.next().is_some() {}
            self.reset_event_limits();
            cases += self.check_follow_up(applied, packet, stats)?;
        }
        Ok(cases)
    }

    /// Forgets the flows that reported and refills every CPU's event budget.
    fn reset_event_limits(&mut self) {
        let keys: Vec<FlowReportKey> = self.flow_reports.keys().filter_map(Result::ok).collect();
        for k in &keys {
            let _ = self.flow_reports.remove(k);
        }
        let cpus = aya::util::nr_cpus().unwrap_or_else(|(what, e)| panic!("{what}: {e}"));
        let empty =
            PerCpuValues::try_from(vec![EventBudget::default(); cpus]).or_panic("per-CPU budget");
        self.event_budget
            .set(0, empty, 0)
            .or_panic("resetting ENF_EVENT_BUDGET");
    }

    /// Judges every local leg of `packet` (sent as `frame`, conntrack tuple `key`).
    fn check_legs(
        &mut self,
        applied: &Applied,
        packet: &Packet,
        frame: &[u8],
        key: &CtKey,
        stats: &mut Stats,
    ) -> Result<u64, Mismatch> {
        let flow = eval::evaluate(&applied.cluster, packet);
        let src_local = applied.local_endpoint(packet.src);
        let dst_local = applied.local_endpoint(packet.dst);
        let mut cases = 0;
        let mut egress_ok = false;
        if dropped_before_policy(applied, packet)
            && let Some(ep) = src_local
        {
            // Dropped before policy at the pod's egress (`enforcer-ebpf/src/spoof.rs`,
            // Calico's default for workloads); the evaluator is the policy alone.
            let run = test_run(
                &self.ebpf,
                Hook::PodEgress,
                frame,
                applied.local[&ep.iface],
                0,
            );
            let entry = self.conntrack.get(key, 0).ok();
            if run.action != TC_ACT_SHOT || entry.is_some() {
                return Err(Mismatch {
                    check: "verdict",
                    detail: format!(
                        "{packet:?}: encapsulation from {} must be dropped before policy, leaving no conntrack entry: TC action {}, entry {entry:?}",
                        ep.workload(),
                        run.action
                    ),
                });
            }
            stats.bump("encapsulation from a workload dropped".to_owned());
            return Ok(1);
        }
        if let Some(ep) = src_local {
            let want = flow
                .egress
                .as_ref()
                .or_panic("evaluator: egress leg of an endpoint");
            let leg = Leg {
                dir: Direction::Egress,
                endpoint: ep,
                ifindex: applied.local[&ep.iface],
                peer: packet.dst,
                peer_local: dst_local.is_some(),
                prior: 0,
                came_in: 0,
            };
            egress_ok = self.check_leg(applied, packet, frame, key, &leg, want, stats)?;
            cases += 1;
        }
        if let Some(ep) = dst_local {
            let want = flow
                .ingress
                .as_ref()
                .or_panic("evaluator: ingress leg of an endpoint");
            let leg = Leg {
                dir: Direction::Ingress,
                endpoint: ep,
                ifindex: applied.local[&ep.iface],
                peer: packet.src,
                peer_local: src_local.is_some(),
                prior: if egress_ok { CT_F_EGRESS_OK } else { 0 },
                // A local client's packet entered the node through its own veth: the
                // RPF check then reads its endpoint entry, whose copy of its peer
                // class `enf_pod_in` judges with (`policy::own_peer`).
                came_in: src_local.map_or(0, |s| applied.local[&s.iface]),
            };
            self.check_leg(applied, packet, frame, key, &leg, want, stats)?;
            cases += 1;
        }
        Ok(cases)
    }

    /// One case; returns whether the program allowed the packet.
    #[expect(clippy::too_many_arguments, reason = "one case's context, read-only")]
    fn check_leg(
        &mut self,
        applied: &Applied,
        packet: &Packet,
        frame: &[u8],
        key: &CtKey,
        leg: &Leg<'_>,
        want: &LegDecision,
        stats: &mut Stats,
    ) -> Result<bool, Mismatch> {
        let hook = match leg.dir {
            Direction::Egress => Hook::PodEgress,
            Direction::Ingress => Hook::PodIngress,
        };
        let dir = dir_code(leg.dir);
        let run = run_ctx(
            &self.ebpf,
            hook.program(),
            frame,
            &SkbCtx {
                ifindex: leg.ifindex,
                mark: 0,
                ingress_ifindex: leg.came_in,
            },
        );
        let events: Vec<FlowEvent> = std::iter::from_fn(|| {
            self.events
                .next()
                .map(|item| *bytemuck::from_bytes::<FlowEvent>(&item))
        })
        .collect();
        let entry = self.conntrack.get(key, 0).ok();
        let resolved = self.resolve(applied.generation, leg.ifindex, dir, leg.peer, packet);
        let sim = SimDataplane::new(&applied.spec).leg(&leg.endpoint.iface, dir, packet);
        let want_verdict = verdict_of(want);
        let want_action = match want.action {
            Action::Allow => TC_ACT_OK,
            Action::Deny => TC_ACT_SHOT,
        };
        let allowed = run.action == TC_ACT_OK;

        let context = || {
            let mut s = String::new();
            let _ = writeln!(
                s,
                "{hook:?} leg at {} ({}, ifindex {}), generation {}",
                leg.endpoint.workload(),
                leg.endpoint.iface,
                leg.ifindex,
                applied.generation
            );
            let _ = writeln!(s, "  packet: {packet:?} ({})", describe_frame(packet));
            let _ = writeln!(s, "  evaluator: {want:?}");
            let _ = writeln!(s, "  evaluator as verdict: {want_verdict:?}");
            let _ = writeln!(s, "  BPF: TC action {} (want {want_action})", run.action);
            let _ = writeln!(s, "  kernel maps resolve to: {resolved:?}");
            let _ = writeln!(s, "  compiled spec resolves to: {sim:?}");
            let _ = writeln!(s, "  events: {events:?}");
            let _ = writeln!(s, "  conntrack entry after the leg: {entry:?}");
            s
        };
        let fail = |check: &'static str, why: &str| Mismatch {
            check,
            detail: format!("{check}: {why}\n{}", context()),
        };

        // 1. The verdict.
        if run.action != want_action {
            return Err(fail(
                "verdict",
                "the BPF program and the evaluator disagree",
            ));
        }
        // 2. Explain: the entry the lookup hits is the evaluator's decision.
        let resolved = match &resolved {
            Ok(r) => r,
            Err(e) => return Err(fail("explain", &format!("no verdict entry: {e}"))),
        };
        let v = resolved.verdict;
        if v != want_verdict {
            return Err(fail(
                "explain",
                "the verdict entry the lookup hits is not the evaluator's decision",
            ));
        }
        let named = (v.policy != u32::MAX)
            .then(|| applied.spec.policies.get(v.policy as usize).cloned())
            .flatten();
        if named != want.policy {
            return Err(fail(
                "explain",
                "the entry's policy index names another policy",
            ));
        }
        let entry_action = if v.action == ACTION_ALLOW {
            TC_ACT_OK
        } else {
            TC_ACT_SHOT
        };
        if v.action != ACTION_ALLOW && v.action != ACTION_DENY || entry_action != run.action {
            return Err(fail(
                "explain",
                "the program did not act on the entry the lookup hits",
            ));
        }
        // 3. The writer wrote what the compiler emitted.
        let spec_endpoint = applied
            .spec
            .endpoints
            .iter()
            .find(|e| e.iface == leg.endpoint.iface);
        let same_as_spec = sim.as_ref().is_some_and(|s: &SimLeg| {
            s.profile == resolved.endpoint.profile
                && s.peer_class == resolved.peer.class
                && s.cell == resolved.cell
                && s.step == resolved.step
                && s.verdict == Some(v)
        }) && spec_endpoint
            .is_some_and(|e| e.info == without_own_peers(resolved.endpoint));
        if !same_as_spec {
            return Err(fail(
                "writer",
                "the kernel maps differ from the compiled spec",
            ));
        }
        if !self.own_peers_match(applied.generation, leg.ifindex, &resolved.endpoint) {
            return Err(fail(
                "writer",
                "the endpoint entry's copy of its own peer entry differs from the trie's",
            ));
        }
        let peer_flag = resolved.peer.flags & PEER_F_LOCAL_ENDPOINT != 0;
        let peer_ifindex_ok = if leg.peer_local {
            applied
                .local_endpoint(leg.peer)
                .is_some_and(|e| applied.local[&e.iface] == resolved.peer.ifindex)
        } else {
            resolved.peer.ifindex == 0
        };
        if peer_flag != leg.peer_local || !peer_ifindex_ok {
            return Err(fail(
                "writer",
                "the peer's local-endpoint flag or ifindex is wrong",
            ));
        }
        // 4. The program reported the entry it used.
        let mut want_events = Vec::new();
        let event = |kind, policy, rule| FlowEvent {
            ts_ns: 0,
            packets: 1,
            bytes: frame.len() as u64,
            src: addr16(packet.src),
            dst: addr16(packet.dst),
            sport: if has_ports(packet.proto) {
                packet.src_port
            } else {
                0
            },
            dport: if has_ports(packet.proto) {
                packet.dst_port
            } else {
                0
            },
            proto: packet.proto,
            family: if packet.src.is_ipv4() {
                FAMILY_V4
            } else {
                FAMILY_V6
            },
            dir,
            action: v.action,
            kind,
            ifindex: leg.ifindex,
            endpoint_id: resolved.endpoint.endpoint_id,
            policy,
            rule,
            hook: hook.index() as u8,
            verdict_kind: v.kind,
            generation: applied.generation as u8,
            _pad0: 0,
            reason: if allowed {
                REASON_ALLOW_POLICY
            } else {
                REASON_DENY_POLICY
            },
            // Whichever CPU ran the test: not compared.
            cpu: 0,
        };
        if v.flags & VERDICT_F_LOG != 0 {
            want_events.push(event(EVENT_KIND_LOG, v.log_policy, v.log_rule));
        }
        if !allowed {
            want_events.push(event(EVENT_KIND_DENY, v.policy, v.rule));
        }
        let got_events: Vec<FlowEvent> = events
            .iter()
            .map(|e| FlowEvent {
                ts_ns: 0,
                cpu: 0,
                ..*e
            })
            .collect();
        if got_events != want_events {
            return Err(fail("events", &format!("want events {want_events:?}")));
        }
        // 5. Conntrack.
        let want_flags = allowed.then(|| {
            let (own, peer) = match leg.dir {
                Direction::Egress => (CT_F_EGRESS_OK, CT_F_INGRESS_OK),
                Direction::Ingress => (CT_F_INGRESS_OK, CT_F_EGRESS_OK),
            };
            own | if leg.peer_local { 0 } else { peer } | leg.prior
        });
        let got_flags = entry.map(|e| e.ct_flags());
        if got_flags != want_flags || entry.is_some_and(|e| e.generation != applied.ct_stamp) {
            return Err(fail(
                "conntrack",
                &format!(
                    "want flags {want_flags:?} in generation {} (stamp {})",
                    applied.generation, applied.ct_stamp
                ),
            ));
        }

        stats.cases += 1;
        let family = if packet.src.is_ipv4() { "v4" } else { "v6" };
        let kind = match v.kind {
            VERDICT_KIND_RULE => "rule",
            VERDICT_KIND_TIER_DEFAULT => "tier-default",
            VERDICT_KIND_PROFILE => "profile",
            _ => "other",
        };
        let action = if allowed { "allow" } else { "deny" };
        stats.bump(format!("{hook:?}/{family}/{action}/{kind}"));
        stats.bump(format!("proto {}", packet.proto));
        stats.bump(format!("lookup step {}", resolved.step));
        if v.flags & VERDICT_F_LOG != 0 {
            stats.bump("logged".to_owned());
        }
        if let Some(tier) = want.tier.as_deref().filter(|t| *t != "default") {
            stats.bump(format!("tier {tier}"));
        }
        if let Some(p) = &want.policy {
            stats.bump(format!("policy kind {}", p.kind));
        }
        if is_icmp_error(packet) {
            stats.bump(format!("ICMP error/{action}"));
        }
        let deciding = want
            .policy_index
            .zip(want.rule_index)
            .and_then(|(p, r)| applied.cluster.policies[p].rules(leg.dir).get(r));
        if let Some(rule) = deciding {
            if rule.source.services.is_some() || rule.destination.services.is_some() {
                stats.bump("services rule".to_owned());
                stats.bump(format!("services rule/{action}"));
            }
            if !rule.source.ports.is_empty() || !rule.source.not_ports.is_empty() {
                stats.bump("source ports rule".to_owned());
                stats.bump(format!("source ports rule/{action}"));
            }
        }
        Ok(allowed)
    }

    /// What the kernel's peer trie answers for `addr` in `generation`.
    fn kernel_peer(&self, generation: u32, addr: IpAddr) -> Result<PeerInfo, String> {
        let g8 = generation as u8;
        match addr {
            IpAddr::V4(a) => self
                .peers_v4
                .get(&Key::new(8 + 32, PeerKeyV4::new(g8, a.octets())), 0),
            IpAddr::V6(a) => self
                .peers_v6
                .get(&Key::new(8 + 128, PeerKeyV6::new(g8, a.octets())), 0),
        }
        .map_err(|e| format!("ENF_PEERS: {e}"))
    }

    /// Whether the copies of its own addresses' peer entries an endpoint entry carries
    /// (`EP_F_OWN_PEER_*`, which `enf_pod_in` judges a local client by instead of the
    /// trie) are what the trie answers for those addresses.
    fn own_peers_match(&self, generation: u32, ifindex: u32, ep: &EndpointInfo) -> bool {
        let own = |class| PeerInfo {
            class,
            flags: PEER_F_LOCAL_ENDPOINT,
            ifindex,
            host_class: 0,
        };
        let v4 = IpAddr::from(ep.ipv4);
        let v6 = IpAddr::from(ep.ipv6);
        (ep.flags & EP_F_OWN_PEER_V4 == 0
            || self.kernel_peer(generation, v4) == Ok(own(ep.own_class_v4)))
            && (ep.flags & EP_F_OWN_PEER_V6 == 0
                || self.kernel_peer(generation, v6) == Ok(own(ep.own_class_v6)))
    }

    /// The verdict entry the programs' lookup chain hits for a leg, in the kernel's maps.
    fn resolve(
        &self,
        generation: u32,
        ifindex: u32,
        dir: u8,
        peer_addr: IpAddr,
        packet: &Packet,
    ) -> Result<Resolved, String> {
        let g8 = generation as u8;
        let endpoint = self
            .endpoints
            .get(
                &EndpointKey {
                    generation,
                    ifindex,
                },
                0,
            )
            .map_err(|e| format!("ENF_ENDPOINTS: {e}"))?;
        let peer = self.kernel_peer(generation, peer_addr)?;
        let port_key = PortKey {
            generation: g8,
            proto: packet.proto,
            port: packet.dst_port_key().to_be_bytes(),
        };
        let dst_cell = match self.ports.get(&Key::new(32, port_key), 0) {
            Ok(cell) => cell,
            Err(MapError::KeyNotFound) => CELL_UNLISTED,
            Err(e) => return Err(format!("ENF_PORTS: {e}")),
        };
        let cell = if dst_cell & CELL_F_BY_SOURCE == 0 {
            dst_cell
        } else {
            let key = SourcePortKey {
                generation: g8,
                _pad: [0; 3],
                dst_cell,
                port: packet.src_port.to_be_bytes(),
                _pad2: [0; 2],
            };
            self.source_ports
                .get(&Key::new(SOURCE_PORT_KEY_FIXED_BITS + 16, key), 0)
                .map_err(|e| format!("ENF_SOURCE_PORTS: {e}"))?
        };
        let steps = [
            (peer.class, cell),
            (peer.class, ANY_CELL),
            (ANY_PEER, cell),
            (ANY_PEER, ANY_CELL),
        ];
        for (step, (peer_class, cell_or_any)) in steps.into_iter().enumerate() {
            let key = VerdictKey {
                generation: g8,
                dir,
                _pad: [0; 2],
                profile: endpoint.profile,
                peer_class,
                cell: cell_or_any,
            };
            match self.verdicts.get(&key, 0) {
                Ok(verdict) => {
                    return Ok(Resolved {
                        endpoint,
                        peer,
                        cell,
                        step: step as u8 + 1,
                        verdict,
                    });
                }
                Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(format!("ENF_VERDICTS: {e}")),
            }
        }
        Err(format!(
            "no entry for profile {} class {} cell {cell}",
            endpoint.profile, peer.class
        ))
    }
}

/// What the kernel's maps say about a leg.
#[derive(Debug)]
struct Resolved {
    endpoint: EndpointInfo,
    peer: PeerInfo,
    cell: u32,
    /// 1 = exact … 4 = default, as in `simulate::SimLeg::step`.
    step: u8,
    verdict: Verdict,
}

struct Leg<'a> {
    dir: Direction,
    endpoint: &'a Endpoint,
    ifindex: u32,
    /// The address on the other side (destination for egress, source for ingress).
    peer: IpAddr,
    /// The peer is a local endpoint (its own hook judges its leg).
    peer_local: bool,
    /// Conntrack flags an earlier leg of this packet recorded.
    prior: u32,
    /// `__sk_buff.ingress_ifindex`: the interface the packet entered the node on (0:
    /// sent by the node, or not told).
    came_in: u32,
}

/// An endpoint entry as the compiler emits it: the copies of its own peer entries are
/// the writer's (`GenerationContent`), checked against the trie on their own.
fn without_own_peers(ep: EndpointInfo) -> EndpointInfo {
    EndpointInfo {
        flags: ep.flags & !(EP_F_OWN_PEER_V4 | EP_F_OWN_PEER_V6),
        own_class_v4: 0,
        own_class_v6: 0,
        ..ep
    }
}

/// A generated cluster: its documents and which endpoint interfaces are local.
pub struct Case {
    pub seed: u64,
    pub objects: Vec<Value>,
    pub local: BTreeSet<String>,
}

impl Case {
    /// The cluster of `seed` (the compiler's property-test generator) and a random
    /// choice of local endpoints.
    pub fn generate(seed: u64) -> Self {
        let mut objects = arbitrary::generate(seed).objects;
        let mut g = Gen::new(seed ^ 0x6d6f_7265); // "more"
        if g.chance(50) {
            // Denser policy sets: the policies (and tier, and baseline policy, of
            // which a cluster has one) of a second cluster too.
            let has = |objects: &[Value], kind: &str| objects.iter().any(|o| o["kind"] == kind);
            let singletons = ["Tier", "BaselineAdminNetworkPolicy"];
            for mut o in arbitrary::generate(g.next()).objects {
                let kind = o["kind"].as_str().unwrap_or_default().to_owned();
                if singletons.contains(&kind.as_str()) {
                    if !has(&objects, &kind) {
                        objects.push(o);
                    }
                } else if kind.ends_with("NetworkPolicy") {
                    let name = format!("{}b", o["metadata"]["name"].as_str().unwrap_or_default());
                    o["metadata"]["name"] = Value::String(name);
                    objects.push(o);
                }
            }
        }
        let mut g = Gen::new(seed ^ 0x6c6f_6361_6c73); // "locals"
        let local = pod_ifaces()
            .into_iter()
            .filter(|_| g.chance(LOCAL_PERCENT))
            .collect();
        Self {
            seed,
            objects,
            local,
        }
    }

    /// `n` random packets for the cluster, each with at least one local leg: half from
    /// a local endpoint to anything, half from anything to a local endpoint.
    pub fn packets(&self, applied: &Applied, n: usize) -> Vec<Packet> {
        let mut g = Gen::new(self.seed ^ 0x7061_636b_6574); // "packet"
        let cluster = &applied.cluster;
        let mut pool: Vec<IpAddr> = cluster
            .endpoints
            .iter()
            .flat_map(|e| e.ips.clone())
            .collect();
        pool.extend(
            arbitrary::EXTERNAL
                .iter()
                .filter_map(|s| s.parse::<IpAddr>().ok()),
        );
        let local: Vec<IpAddr> = cluster
            .endpoints
            .iter()
            .filter(|e| applied.local.contains_key(&e.iface))
            .flat_map(|e| e.ips.clone())
            .collect();
        let mut out = Vec::new();
        if local.is_empty() {
            return out;
        }
        while out.len() < n {
            if g.chance(50)
                && let Some(p) = targeted_packet(&mut g, applied, &local, &pool)
            {
                out.push(p);
                continue;
            }
            let mine = *g.pick(&local);
            // Never empty: the external pool has addresses of both families.
            let others: Vec<IpAddr> = pool
                .iter()
                .copied()
                .filter(|a| a.is_ipv4() == mine.is_ipv4() && *a != mine)
                .collect();
            let other = *g.pick(&others);
            let (src, dst) = if g.chance(50) {
                (mine, other)
            } else {
                (other, mine)
            };
            out.push(arbitrary::random_packet(&mut g, src, dst));
        }
        out
    }
}

/// A packet aimed at one rule of a policy that applies to a local endpoint: the
/// rule's protocol, a port in (or at the edge of) its ports, its ICMP type, a peer in
/// its nets; so that rules, not defaults, decide often. `None` if the endpoint has no
/// such rule.
fn targeted_packet<'a>(
    g: &mut Gen,
    applied: &'a Applied,
    local: &[IpAddr],
    pool: &[IpAddr],
) -> Option<Packet> {
    let cluster = &applied.cluster;
    // (local address, direction) pairs whose endpoint some policy with rules selects.
    let mut targets = Vec::new();
    for &addr in local {
        let ep = cluster.endpoint_at(addr)?;
        for dir in [Direction::Ingress, Direction::Egress] {
            let rules: Vec<&enforcer::policy::Rule> = eval::applicable_policies(cluster, ep, dir)
                .into_iter()
                .flat_map(|p| cluster.policies[p].rules(dir))
                .collect();
            if !rules.is_empty() {
                targets.push((addr, dir, rules));
            }
        }
    }
    if targets.is_empty() {
        return None;
    }
    let (mine, dir, rules) = g.pick(&targets);
    let (mine, dir) = (*mine, *dir);
    let peer_of = |rule: &'a enforcer::policy::Rule| match dir {
        Direction::Ingress => &rule.source,
        Direction::Egress => &rule.destination,
    };
    // Rules matching a Service's backends are rare among the rules: favour them.
    let service_rules: Vec<&enforcer::policy::Rule> = rules
        .iter()
        .copied()
        .filter(|r| peer_of(r).services.is_some())
        .collect();
    let rule = if !service_rules.is_empty() && g.chance(25) {
        *g.pick(&service_rules)
    } else {
        *g.pick(rules)
    };
    let peer_side = peer_of(rule);
    // A backend of the rule's Service (of the family), with the port it serves.
    let backends: Vec<&enforcer::policy::Backend> = peer_side
        .services
        .iter()
        .flat_map(|s| cluster.backends(s))
        .filter(|b| b.ip.is_ipv4() == mine.is_ipv4())
        .collect();
    let backend = (!backends.is_empty() && g.chance(85)).then(|| *g.pick(&backends));
    // The peer: the backend, inside one of the rule's nets, or any address of the
    // family.
    let peer = if let Some(b) = backend {
        b.ip
    } else if !peer_side.nets.is_empty() && g.chance(80) {
        let net = *g.pick(&peer_side.nets);
        if net.addr().is_ipv4() != mine.is_ipv4() {
            return None;
        }
        address_in(g, net)
    } else {
        let others: Vec<IpAddr> = pool
            .iter()
            .copied()
            .filter(|a| a.is_ipv4() == mine.is_ipv4() && *a != mine)
            .collect();
        *g.pick(&others)
    };
    if peer == mine {
        return None;
    }
    let (src, dst) = match dir {
        Direction::Ingress => (peer, mine),
        Direction::Egress => (mine, peer),
    };
    let mut packet = arbitrary::random_packet(g, src, dst);
    if let Some(proto) = rule.protocol {
        let family_icmp = if mine.is_ipv4() { 1 } else { 58 };
        if is_icmp(proto) && proto != family_icmp {
            return None;
        }
        packet.proto = proto;
    }
    packet.src_port = 0;
    packet.dst_port = 0;
    packet.icmp_type = 0;
    packet.icmp_code = 0;
    if let Some(b) = backend.filter(|b| rule.protocol.is_none_or(|p| p == b.protocol)) {
        packet.proto = b.protocol;
    }
    if has_ports(packet.proto) {
        packet.src_port = arbitrary::source_port(g);
        packet.dst_port = g.next() as u16;
        if let Some(p) = near(g, &rule.destination.ports) {
            packet.dst_port = p;
        }
        if let Some(b) = backend.filter(|b| b.protocol == packet.proto && dir == Direction::Egress)
            && g.chance(85)
        {
            packet.dst_port = b.port;
        }
        if let Some(p) = near(g, &rule.source.ports) {
            packet.src_port = p;
        }
    } else if is_icmp(packet.proto) {
        packet.icmp_type = *g.pick(if mine.is_ipv4() {
            &arbitrary::V4_ICMP_TYPES[..]
        } else {
            &arbitrary::V6_ICMP_TYPES[..]
        });
        packet.icmp_code = *g.pick(&arbitrary::ICMP_CODES);
        if let Some(icmp) = rule.icmp.filter(|_| g.chance(80)) {
            packet.icmp_type = icmp.icmp_type;
            packet.icmp_code = icmp.code.unwrap_or(packet.icmp_code);
        }
    }
    Some(packet)
}

/// A port at or next to a boundary of one of `ports` (85% of the time when there are
/// any): a range's ends, the port after it, or inside; a named port's usual numbers.
fn near(g: &mut Gen, ports: &[enforcer::policy::PortMatch]) -> Option<u16> {
    if ports.is_empty() || !g.chance(85) {
        return None;
    }
    Some(match g.pick(ports) {
        enforcer::policy::PortMatch::Range(a, b) => match g.below(5) {
            0 => *a,
            1 => *b,
            2 => b.saturating_add(1),
            3 => a.saturating_sub(1),
            _ => a.saturating_add((g.next() % (u64::from(*b - *a) + 1)) as u16),
        },
        enforcer::policy::PortMatch::Named(_) => *g.pick(&[53, 80, 81, 8080]),
    })
}

/// A random address inside `net` (its first address a quarter of the time).
fn address_in(g: &mut Gen, net: ipnet::IpNet) -> IpAddr {
    if g.chance(25) {
        return net.network();
    }
    match net {
        ipnet::IpNet::V4(n) => {
            let host = u32::MAX.checked_shr(u32::from(n.prefix_len())).unwrap_or(0);
            IpAddr::V4((u32::from(n.network()) | (g.next() as u32 & host)).into())
        }
        ipnet::IpNet::V6(n) => {
            let host = u128::MAX
                .checked_shr(u32::from(n.prefix_len()))
                .unwrap_or(0);
            let r = u128::from(g.next()) << 64 | u128::from(g.next());
            IpAddr::V6((u128::from(n.network()) | (r & host)).into())
        }
    }
}

/// Shrinks a mismatch (same failing check) and renders the reproducer.
pub fn reproducer(bench: &mut Bench, case: &Case, packet: Packet, first: &Mismatch) -> String {
    let check = first.check;
    let local = case.local.clone();
    let (objects, packets, message) =
        arbitrary::minimise(case.objects.clone(), vec![packet], |objects, packets| {
            let applied = bench.apply(objects, &local)?;
            let mut stats = Stats::default();
            packets
                .iter()
                .find_map(|p| match bench.check_packet(&applied, p, &mut stats) {
                    Err(m) if m.check == check => Some(m.detail),
                    _ => None,
                })
        });
    let yaml = serde_saphyr::to_string_multiple(&objects)
        .unwrap_or_else(|e| format!("(YAML rendering failed: {e})\n{objects:?}"));
    let cluster = arbitrary::build(&objects);
    let mut endpoints = String::new();
    for ep in cluster.iter().flat_map(|c| &c.endpoints) {
        let _ = writeln!(
            endpoints,
            "  {} {:?} {} ({})",
            ep.workload(),
            ep.ips,
            if local.contains(&ep.iface) {
                "local"
            } else {
                "remote"
            },
            ep.iface
        );
    }
    format!(
        "BPF and evaluator disagree (check `{check}`), cluster seed {seed} \
         (replay: ENFORCER_BPF_DIFF_REPLAY={seed}).\n\
         First seen:\n{first}\n\
         Minimal reproducer ({n} documents):\n---\n{yaml}\n\
         The same as JSON:\n{json}\n\
         Endpoints:\n{endpoints}\
         Packet: {packets:?}\n\
         {message}",
        seed = case.seed,
        first = first.detail,
        n = objects.len(),
        json = enforcer::testkit::synth::to_yaml_stream(&objects),
    )
}

/// IPIP (4), IPv6-in-IP (41) or VXLAN (UDP 4789) from a local workload: what a
/// workload may not send, dropped at its pod's egress before policy.
fn dropped_before_policy(applied: &Applied, packet: &Packet) -> bool {
    (matches!(packet.proto, 4 | 41) || (packet.proto == 17 && packet.dst_port == 4789))
        && applied.local_endpoint(packet.src).is_some()
}
