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
//! Peers that are Service VIPs are left out: their egress is judged after DNAT, which
//! the lookup procedure does not model (the packet to the backend is what is judged).
//! Host-endpoint directions are not sampled here (their programs read the same maps
//! through other keys; `compile::host`'s tests cover them).

use std::net::IpAddr;
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
    let started = Instant::now();
    let dataplane = Dataplane::new(spec);
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
            out.legs += 1;
            // The evaluator's own selection (`evaluate_leg` = this + `decide`), once
            // per leg rather than per flow.
            let applicable = eval::applicable_policies(cluster, ep, dir);
            for local in [ep.ipv4(), ep.ipv6()].into_iter().flatten() {
                let nets = if local.is_ipv4() { &v4 } else { &v6 };
                let extra = size.per_leg.min(budget);
                budget -= extra;
                for i in 0..=extra {
                    let peer = pick_address(&mut rng, nets, local);
                    let packet = pick_packet(&mut rng, spec, dir, local, peer, i == 0);
                    judge(
                        cluster,
                        &dataplane,
                        (ep, &spec_ep.iface, &applicable),
                        dir,
                        &packet,
                        &mut out,
                    );
                }
            }
        }
    }
    out.elapsed = started.elapsed();
    out
}

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

/// Judges `packet` at the endpoint's leg both ways; `applicable`: the endpoint's
/// policies in `dir` (`eval::applicable_policies`).
fn judge(
    cluster: &Cluster,
    dataplane: &Dataplane<'_>,
    (ep, iface, applicable): (&Endpoint, &str, &[usize]),
    dir: Direction,
    packet: &Packet,
    out: &mut SelfCheck,
) {
    out.flows += 1;
    let want = verdict_of(&eval::decide(cluster, applicable, dir, packet));
    let code = match dir {
        Direction::Ingress => DIR_INGRESS,
        Direction::Egress => DIR_EGRESS,
    };
    let got = dataplane.leg(iface, code, packet).and_then(|l| l.verdict);
    if got != Some(want) {
        out.disagreeing += 1;
        if out.disagreements.len() < 4 {
            out.disagreements.push(Disagreement {
                workload: ep.workload(),
                direction: dir,
                packet: *packet,
                evaluator: want,
                maps: got,
            });
        }
    }
}
