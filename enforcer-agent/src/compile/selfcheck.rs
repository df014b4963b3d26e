//! The self-check of a compiled generation: before the agent switches to it, a sample
//! of first packets is judged twice — by the compiled maps, through the BPF lookup
//! procedure in Rust ([`super::simulate`]), and by the reference evaluator over the
//! policy model ([`crate::eval`]) — and any disagreement refuses the generation. It is
//! the product's promise that what is enforced is what the YAML says, checked on
//! every switch rather than only in tests.
//!
//! The sample (deterministic for a seed, so a refusal reproduces):
//!
//! - every (profile, direction) of the local endpoints at least once: a flow between
//!   the profile's first endpoint and a peer, for each address family it has;
//! - per (profile, direction), further flows with random peers drawn from the peer
//!   map's entries (one address inside each prefix: any class may be hit, including
//!   the wildcard defaults) and random protocol/ports drawn from the port map's cells
//!   (plus unlisted protocols and random ports), up to a total budget.
//!
//! The sample is drawn first, on one random stream; the flows are then judged on up
//! to four threads when there are many (the outcome is one thread's, see
//! `judge_all`).
//!
//! Peers that are Service VIPs are left out: their egress is judged after DNAT, which
//! the lookup procedure does not model (the packet to the backend is what is judged).
//! Host-endpoint directions are not sampled here (their programs read the same maps
//! through other keys; `compile::host`'s tests cover them).

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Instant;

use enforcer_common::{
    ACTION_ALLOW, ACTION_DENY, DIR_EGRESS, DIR_INGRESS, NO_INDEX, PEER_F_SERVICE_VIP, Verdict,
};
use ipnet::IpNet;

use super::simulate::Dataplane;
use super::spec::DataplaneSpec;
use super::verdicts::verdict_of;
use crate::eval::{self, Packet};
use crate::policy::{Cluster, Direction, Endpoint, has_ports, is_icmp};

/// How many flows to judge (at least one per profile × direction × family, whatever
/// the budget).
#[derive(Clone, Copy, Debug)]
pub struct SampleSize {
    /// Random flows per (profile, direction) after the first.
    pub per_leg: usize,
    /// Upper bound on the random flows in total.
    pub budget: usize,
}

impl Default for SampleSize {
    fn default() -> Self {
        SampleSize {
            per_leg: 16,
            budget: 4096,
        }
    }
}

/// One flow the two judges disagree on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disagreement {
    pub workload: String,
    pub direction: Direction,
    pub packet: Packet,
    /// What the evaluator decided, as the map verdict it should be.
    pub evaluator: Verdict,
    /// What the compiled maps answer (`None`: no entry at all, the programs drop).
    pub maps: Option<Verdict>,
}

impl std::fmt::Display for Disagreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.packet;
        write!(
            f,
            "{} {:?} of {} -> {} proto {} ports {}/{}: the policy says {}, the compiled maps say {}",
            self.workload,
            self.direction,
            p.src,
            p.dst,
            p.proto,
            p.src_port,
            p.dst_port_key(),
            describe(&self.evaluator),
            self.maps
                .as_ref()
                .map_or_else(|| "nothing (drop)".to_owned(), describe),
        )
    }
}

fn describe(v: &Verdict) -> String {
    let action = match v.action {
        ACTION_ALLOW => "allow".to_owned(),
        ACTION_DENY => "deny".to_owned(),
        other => format!("action {other}"),
    };
    let index = |i: u32| {
        if i == NO_INDEX {
            "-".to_owned()
        } else {
            i.to_string()
        }
    };
    format!(
        "{action} (policy {}, rule {})",
        index(v.policy),
        index(v.rule)
    )
}

/// What a self-check did.
#[derive(Clone, Debug, Default)]
pub struct SelfCheck {
    /// Flows (legs) judged by both.
    pub flows: usize,
    /// (profile, direction) pairs covered.
    pub legs: usize,
    /// The first disagreements (at most a few are kept).
    pub disagreements: Vec<Disagreement>,
    /// How many flows disagreed in all.
    pub disagreeing: usize,
    pub elapsed: std::time::Duration,
}

impl SelfCheck {
    pub fn passed(&self) -> bool {
        self.disagreeing == 0
    }
}

/// Small deterministic generator (xorshift64*), seeded per check.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Judges a sample of flows of `spec` (compiled from `cluster`) both ways.
pub fn self_check(
    cluster: &Cluster,
    spec: &DataplaneSpec,
    size: SampleSize,
    seed: u64,
) -> SelfCheck {
    check_with(cluster, spec, size, seed, judges_for)
}

/// [`self_check`] with exactly `judges` threads judging (to measure what the threads
/// buy: `compile-timing`).
pub fn self_check_on_threads(
    cluster: &Cluster,
    spec: &DataplaneSpec,
    size: SampleSize,
    seed: u64,
    judges: usize,
) -> SelfCheck {
    check_with(cluster, spec, size, seed, |_| judges)
}

/// How many threads judge `flows` flows: one for a small sample, else up to
/// [`MAX_JUDGES`], as many as the machine has.
fn judges_for(flows: usize) -> usize {
    if flows < PARALLEL_FROM {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_JUDGES))
    }
}

/// [`self_check`] with `judges(flows)` threads judging.
fn check_with(
    cluster: &Cluster,
    spec: &DataplaneSpec,
    size: SampleSize,
    seed: u64,
    judges: impl Fn(usize) -> usize,
) -> SelfCheck {
    let started = Instant::now();
    let mut rng = Rng(seed | 1);
    let mut out = SelfCheck::default();
    // Peer prefixes by family, Service VIPs left out.
    let peers: Vec<IpNet> = spec
        .peers
        .iter()
        .filter(|p| p.flags & PEER_F_SERVICE_VIP == 0)
        .map(|p| p.net)
        .collect();
    let (v4, v6): (Vec<IpNet>, Vec<IpNet>) = peers.iter().partition(|n| n.addr().is_ipv4());
    // The sample first (one random stream, so a seed gives the same flows), judged
    // afterwards, on more than one thread when there are many.
    let mut legs: Vec<Leg<'_>> = Vec::new();
    let mut flows: Vec<Flow> = Vec::new();
    // One endpoint per profile: the first with that profile.
    let mut seen = std::collections::BTreeSet::new();
    let mut budget = size.budget;
    for spec_ep in &spec.endpoints {
        if spec_ep.info.flags & enforcer_common::EP_F_HOST != 0
            || !seen.insert(spec_ep.info.profile)
        {
            continue;
        }
        let Some(ep) = endpoint_of(cluster, &spec_ep.workload) else {
            continue;
        };
        for dir in [Direction::Ingress, Direction::Egress] {
            let leg = legs.len();
            legs.push(Leg {
                ep,
                iface: &spec_ep.iface,
                dir,
                applicable: OnceLock::new(),
            });
            for local in [ep.ipv4(), ep.ipv6()].into_iter().flatten() {
                let nets = if local.is_ipv4() { &v4 } else { &v6 };
                let extra = size.per_leg.min(budget);
                budget -= extra;
                for i in 0..=extra {
                    let peer = pick_address(&mut rng, nets, local);
                    let packet = pick_packet(&mut rng, spec, dir, local, peer, i == 0);
                    flows.push(Flow { leg, packet });
                }
            }
        }
    }
    out.legs = legs.len();
    out.flows = flows.len();
    let dataplane = Dataplane::new(spec);
    judge_all(
        cluster,
        &dataplane,
        (&legs, &flows),
        judges(flows.len()).max(1),
        &mut out,
    );
    out.elapsed = started.elapsed();
    out
}

/// A (profile, direction) of the sample: its endpoint and the evaluator's selection
/// of policies for it (`evaluate_leg` = this + `decide`), made once per leg rather
/// than per flow.
struct Leg<'a> {
    ep: &'a Endpoint,
    iface: &'a str,
    dir: Direction,
    applicable: OnceLock<Vec<usize>>,
}

impl Leg<'_> {
    /// The evaluator's selection of policies for this leg.
    fn applicable(&self, cluster: &Cluster) -> &[usize] {
        self.applicable
            .get_or_init(|| eval::applicable_policies(cluster, self.ep, self.dir))
    }
}

/// One flow of the sample, at leg `leg`.
struct Flow {
    leg: usize,
    packet: Packet,
}

/// Fewer flows than this are judged on the calling thread alone.
const PARALLEL_FROM: usize = 64;
/// At most this many threads judge.
const MAX_JUDGES: usize = 4;

/// Judges every flow on `judges` threads (the flows dealt out in turn):
/// the evaluator walks every rule of a leg's policies for each flow, 10-15 ms for
/// the sample of a node with a 10,000-rule leg, and the agent waits for it before
/// it switches. The outcome is one thread's: the same counts, the first
/// disagreements in the sample's order.
fn judge_all(
    cluster: &Cluster,
    dataplane: &Dataplane<'_>,
    (legs, flows): (&[Leg<'_>], &[Flow]),
    judges: usize,
    out: &mut SelfCheck,
) {
    // Flows `first`, `first + judges`, ...: how many disagree, and the first few.
    let share = |first: usize| {
        // The legs' selections first, shared out as the flows are, so that a thread
        // seldom waits for a selection another is making.
        for leg in legs.iter().skip(first).step_by(judges) {
            leg.applicable(cluster);
        }
        let mut disagreeing = 0;
        let mut kept: Vec<(usize, Disagreement)> = Vec::new();
        for (index, flow) in flows.iter().enumerate().skip(first).step_by(judges) {
            let Some(leg) = legs.get(flow.leg) else {
                // Cannot happen (a flow names a leg pushed before it); if it did, the
                // check refuses rather than passes a flow it did not judge.
                disagreeing += 1;
                continue;
            };
            if let Some(d) = judge(cluster, dataplane, leg, &flow.packet) {
                disagreeing += 1;
                if kept.len() < KEPT_DISAGREEMENTS {
                    kept.push((index, d));
                }
            }
        }
        (disagreeing, kept)
    };
    let shares: Vec<(usize, Vec<(usize, Disagreement)>)> = std::thread::scope(|scope| {
        let others: Vec<_> = (1..judges)
            .map(|t| {
                let thread = std::thread::Builder::new()
                    .name("enforcer-check".to_owned())
                    .spawn_scoped(scope, move || share(t));
                (t, thread)
            })
            .collect();
        let mut shares = vec![share(0)];
        for (t, other) in others {
            match other {
                Ok(thread) => match thread.join() {
                    Ok(part) => shares.push(part),
                    Err(panic) => std::panic::resume_unwind(panic),
                },
                // No thread to be had (a limit on threads): this one judges the share.
                Err(_) => shares.push(share(t)),
            }
        }
        shares
    });
    let mut kept: Vec<(usize, Disagreement)> = Vec::new();
    for (disagreeing, part) in shares {
        out.disagreeing += disagreeing;
        kept.extend(part);
    }
    kept.sort_by_key(|(index, _)| *index);
    out.disagreements = kept
        .into_iter()
        .take(KEPT_DISAGREEMENTS)
        .map(|(_, d)| d)
        .collect();
}

/// How many disagreements a self-check keeps to report.
const KEPT_DISAGREEMENTS: usize = 4;

fn endpoint_of<'a>(cluster: &'a Cluster, workload: &str) -> Option<&'a Endpoint> {
    let (ns, name) = workload.split_once('/')?;
    cluster
        .endpoints
        .binary_search_by(|e| (e.namespace.as_str(), e.name.as_str()).cmp(&(ns, name)))
        .ok()
        .map(|i| &cluster.endpoints[i])
}

/// An address inside a random peer prefix of `local`'s family (not `local` itself).
fn pick_address(rng: &mut Rng, nets: &[IpNet], local: IpAddr) -> IpAddr {
    for _ in 0..4 {
        if nets.is_empty() {
            break;
        }
        let net = nets[rng.below(nets.len())];
        let addr = address_in(rng, net);
        if addr != local {
            return addr;
        }
    }
    // An address no prefix but `/0` names, most likely.
    if local.is_ipv4() {
        IpAddr::from([203, 0, 113, 7])
    } else {
        IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 7])
    }
}

/// A random address of `net` (its first one half of the time: the prefix's own entry).
fn address_in(rng: &mut Rng, net: IpNet) -> IpAddr {
    let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
    if host_bits == 0 || rng.below(2) == 0 {
        return net.network();
    }
    match net.network() {
        IpAddr::V4(a) => {
            let mask = if host_bits >= 32 {
                u32::MAX
            } else {
                (1u32 << host_bits) - 1
            };
            IpAddr::from(std::net::Ipv4Addr::from(
                u32::from(a) | (rng.next() as u32 & mask),
            ))
        }
        IpAddr::V6(a) => {
            let mask = if host_bits >= 128 {
                u128::MAX
            } else {
                (1u128 << host_bits) - 1
            };
            let r = (u128::from(rng.next()) << 64) | u128::from(rng.next());
            IpAddr::from(std::net::Ipv6Addr::from(u128::from(a) | (r & mask)))
        }
    }
}

/// A packet of the leg: protocol and port from a random cell of the port map, or an
/// unlisted protocol, or a random port.
fn pick_packet(
    rng: &mut Rng,
    spec: &DataplaneSpec,
    dir: Direction,
    local: IpAddr,
    peer: IpAddr,
    first: bool,
) -> Packet {
    let (src, dst) = match dir {
        Direction::Ingress => (peer, local),
        Direction::Egress => (local, peer),
    };
    let mut packet = Packet {
        src,
        dst,
        proto: 6,
        src_port: rng.next() as u16,
        dst_port: 0,
        icmp_type: 0,
        icmp_code: 0,
    };
    let icmp = if local.is_ipv4() { 1 } else { 58 };
    let from_map = !first && !spec.ports.is_empty() && rng.below(4) != 0;
    let (proto, key) = if from_map {
        let p = spec.ports[rng.below(spec.ports.len())];
        let span = 1u32 << (16 - u32::from(p.prefix_len));
        let key = u32::from(p.port) + (rng.next() as u32 % span);
        (p.proto, key as u16)
    } else {
        let proto = [6u8, 17, icmp, 132, 47][rng.below(5)];
        (proto, rng.next() as u16)
    };
    // An ICMP packet of the other family would be judged as another protocol.
    packet.proto = if is_icmp(proto) { icmp } else { proto };
    if has_ports(packet.proto) {
        packet.dst_port = key;
    } else if is_icmp(packet.proto) {
        packet.icmp_type = (key >> 8) as u8;
        packet.icmp_code = (key & 0xff) as u8;
    }
    if !has_ports(packet.proto) {
        packet.src_port = 0;
    }
    packet
}

/// Judges `packet` at `leg` both ways; the disagreement, if they differ.
fn judge(
    cluster: &Cluster,
    dataplane: &Dataplane<'_>,
    leg: &Leg<'_>,
    packet: &Packet,
) -> Option<Disagreement> {
    let want = verdict_of(&eval::decide(
        cluster,
        leg.applicable(cluster),
        leg.dir,
        packet,
    ));
    let code = match leg.dir {
        Direction::Ingress => DIR_INGRESS,
        Direction::Egress => DIR_EGRESS,
    };
    let got = dataplane
        .leg(leg.iface, code, packet)
        .and_then(|l| l.verdict);
    (got != Some(want)).then(|| Disagreement {
        workload: leg.ep.workload(),
        direction: leg.dir,
        packet: *packet,
        evaluator: want,
        maps: got,
    })
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;
    use std::path::Path;

    use enforcer_common::{ACTION_ALLOW, ACTION_DENY, VERDICT_KIND_PROFILE};

    use super::*;

    /// 40 pods, each isolated but for two others on one port.
    fn cluster() -> Cluster {
        let mut text = String::new();
        for i in 0..40 {
            let _ = write!(
                text,
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, namespace: n, labels: {{app: p{i}}}}}\nstatus: {{podIP: 198.18.1.{}}}\n",
                i + 1
            );
            let _ = write!(
                text,
                "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p{i}, namespace: n}}\nspec:\n  podSelector: {{matchLabels: {{app: p{i}}}}}\n  ingress:\n  - from: [{{podSelector: {{matchLabels: {{app: p{}}}}}}}, {{podSelector: {{matchLabels: {{app: p{}}}}}}}]\n    ports: [{{port: {}}}]\n",
                (i + 1) % 40,
                (i + 7) % 40,
                8000 + i
            );
        }
        let loaded =
            crate::model::load_str(Path::new("t.yaml"), &text).unwrap_or_else(|e| panic!("{e}"));
        Cluster::from_objects(&loaded)
            .unwrap_or_else(|e| panic!("{e}"))
            .0
    }

    /// A compiler bug planted in every other verdict entry of the policies.
    fn plant_bug(spec: &mut DataplaneSpec) {
        for (i, (_, v)) in spec.verdicts.iter_mut().enumerate() {
            if v.kind != VERDICT_KIND_PROFILE && i % 2 == 0 {
                v.action = if v.action == ACTION_ALLOW {
                    ACTION_DENY
                } else {
                    ACTION_ALLOW
                };
            }
        }
    }

    fn outcome(c: &SelfCheck) -> (usize, usize, usize, Vec<Disagreement>) {
        (c.flows, c.legs, c.disagreeing, c.disagreements.clone())
    }

    /// Judging on several threads gives one thread's outcome: the same flows, the
    /// same count of disagreements and the same first ones, in the sample's order.
    #[test]
    fn threads_judge_as_one_thread_does() {
        let cluster = cluster();
        let mut spec = super::super::compile(&cluster).unwrap_or_else(|e| panic!("{e}"));
        let right = check_with(&cluster, &spec, SampleSize::default(), 7, |_| 1);
        assert!(right.flows >= PARALLEL_FROM, "{} flows", right.flows);
        assert!(right.passed(), "{:?}", right.disagreements);
        plant_bug(&mut spec);
        let one = check_with(&cluster, &spec, SampleSize::default(), 7, |_| 1);
        assert!(
            one.disagreeing > KEPT_DISAGREEMENTS,
            "the planted bug shows: {} disagreements",
            one.disagreeing
        );
        for judges in [2, 3, 4] {
            let many = check_with(&cluster, &spec, SampleSize::default(), 7, |_| judges);
            assert_eq!(outcome(&many), outcome(&one), "{judges} judges");
        }
        let chosen = self_check(&cluster, &spec, SampleSize::default(), 7);
        assert_eq!(outcome(&chosen), outcome(&one), "the agent's choice");
    }
}
