//! The policy compiler: the unified Calico model → one generation of map entries.
//!
//! The scheme is in `docs/architecture.md` ("O(1) per packet"). In short:
//!
//! - **Peer classes.** Every prefix a rule or network set names, every pod and host
//!   endpoint address and `/0` per family is an LPM entry. The addresses whose longest
//!   match is an entry (its *region*) are alike for every net predicate (CIDRs nest or
//!   are disjoint) and see the same entities, so one representative address per region
//!   gives the region's [`SideFacts`] for every rule. Regions with equal facts for
//!   every rule's peer side share a class.
//! - **Profiles.** Local endpoints with the same applicable policies and the same
//!   facts for every local rule side share a profile.
//! - **Cells.** Per protocol, the port space cut at every port, range and resolved
//!   named port boundary (ICMP: `type << 8 | code`).
//! - **Verdicts.** Per (profile, direction), only the peer classes and cells that the
//!   profile's own rules tell apart are grouped; the evaluator runs once per (peer
//!   group, cell group) on representatives, and the matrix is written with wildcard
//!   compression. Because representatives are exact, the verdicts are exactly the
//!   evaluator's (checked by the differential test against [`simulate`]).

pub mod arbitrary;
mod atom_index;
pub mod host;
pub mod simulate;
pub mod spec;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use enforcer_common::{
    ACTION_ALLOW, ACTION_DENY, ANY_CELL, ANY_PEER, CELL_UNLISTED, DIR_EGRESS, DIR_INGRESS,
    EP_F_HAS_V4, EP_F_HAS_V6, EndpointInfo, NO_INDEX, PEER_F_LOCAL_ENDPOINT, PEER_F_SERVICE_VIP,
    VERDICT_F_LOG, VERDICT_KIND_NO_PROFILE, VERDICT_KIND_PROFILE, VERDICT_KIND_RULE,
    VERDICT_KIND_TIER_DEFAULT, Verdict,
};

pub use spec::DataplaneSpec;
use spec::{SpecEndpoint, SpecPeer, SpecPort, SpecVerdictKey};

use crate::eval::{self, Action, DecisionKind, LegDecision, Packet, SideFacts};
use crate::policy::{Cluster, Direction, EntityMatch, PortMatch, Rule, has_ports, is_icmp};

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error(
        "{policy}, {field}: source ports are not supported (the dataplane keys verdicts on the destination port)"
    )]
    SourcePortsUnsupported { policy: String, field: String },
    #[error("{what}: {count} entries exceed the map capacity {max}")]
    Capacity {
        what: &'static str,
        count: usize,
        max: u32,
    },
}

/// Compiles the cluster with every endpoint treated as local.
pub fn compile(cluster: &Cluster) -> Result<DataplaneSpec, CompileError> {
    compile_for_node(cluster, None)
}

/// Compiles for one node: endpoints whose `spec.nodeName` is another node are peers
/// only (pods without a node name count as local).
pub fn compile_for_node(
    cluster: &Cluster,
    node: Option<&str>,
) -> Result<DataplaneSpec, CompileError> {
    Compiler::new(cluster, node)?.run()
}

/// The map verdict for an evaluator decision.
pub fn verdict_of(leg: &LegDecision) -> Verdict {
    let index = |i: Option<usize>| i.map_or(NO_INDEX, |i| i as u32);
    let first_log = leg.logged.first();
    Verdict {
        action: match leg.action {
            Action::Allow => ACTION_ALLOW,
            Action::Deny => ACTION_DENY,
        },
        kind: match leg.kind {
            DecisionKind::Rule => VERDICT_KIND_RULE,
            DecisionKind::TierDefault => VERDICT_KIND_TIER_DEFAULT,
            DecisionKind::Profile => VERDICT_KIND_PROFILE,
            DecisionKind::NoProfile => VERDICT_KIND_NO_PROFILE,
        },
        flags: if first_log.is_some() {
            VERDICT_F_LOG
        } else {
            0
        },
        _pad: 0,
        policy: index(leg.policy_index),
        rule: index(leg.rule_index),
        log_policy: first_log.map_or(NO_INDEX, |l| l.policy_index as u32),
        log_rule: first_log.map_or(NO_INDEX, |l| l.rule_index as u32),
    }
}

pub fn dir_code(dir: Direction) -> u8 {
    match dir {
        Direction::Ingress => DIR_INGRESS,
        Direction::Egress => DIR_EGRESS,
    }
}

/// A rule of a workload-applicable policy.
struct RuleRef<'a> {
    policy: usize,
    dir: Direction,
    index: usize,
    rule: &'a Rule,
}

impl<'a> RuleRef<'a> {
    /// The side that tests the remote address.
    fn peer_side(&self) -> &'a EntityMatch {
        match self.dir {
            Direction::Ingress => &self.rule.source,
            Direction::Egress => &self.rule.destination,
        }
    }

    /// The side that tests the local endpoint's own address.
    fn local_side(&self) -> &'a EntityMatch {
        match self.dir {
            Direction::Ingress => &self.rule.destination,
            Direction::Egress => &self.rule.source,
        }
    }
}

/// One peer LPM entry and its region.
struct Region {
    net: IpNet,
    /// An address whose longest match is `net`; `None`: fully covered, not emitted.
    rep: Option<IpAddr>,
    endpoint: Option<usize>,
    vip: bool,
    /// Named by a rule, a network set or a host endpoint (also when it is a pod's /32).
    named: bool,
}

/// A cell: `lo..=hi` of one protocol.
#[derive(Clone, Copy, Debug)]
struct Cell {
    id: u32,
    proto: u8,
    lo: u16,
}

struct Compiler<'a> {
    cluster: &'a Cluster,
    node: Option<&'a str>,
    rules: Vec<RuleRef<'a>>,
    /// `(policy, dir, rule index)` → position in `rules`.
    rule_pos: HashMap<(usize, Direction, usize), usize>,
    /// Per rule (as `rules`): every number its named destination ports can resolve to.
    named_values: Vec<Vec<u16>>,
}

/// (is IPv4, facts of every peer atom): the `(atom, fact id)` pairs of the atoms whose
/// facts differ from the atom's default, by atom. Equal signatures ⟺ equal facts.
pub(super) type ClassSignature = (bool, Vec<(u32, u32)>);
/// (has IPv4, has IPv6, applicable policies per direction, facts of local rule sides).
type ProfileSignature = (bool, bool, [Vec<usize>; 2], Vec<SideFacts>);
/// What one rule's protocol and port predicates say about a cell: protocol matches for
/// IPv4 / IPv6, in numeric `ports`, in numeric `notPorts`, the port if it is one a
/// named port of the rule resolves to.
type CellKey = (bool, bool, bool, bool, Option<u16>);

impl<'a> Compiler<'a> {
    fn new(cluster: &'a Cluster, node: Option<&'a str>) -> Result<Self, CompileError> {
        let mut rules = Vec::new();
        // Every policy's rules shape the classes and cells, host-endpoint-only kinds
        // (preDNAT, doNotTrack) included: `compile::host` needs them; pod verdicts only
        // group by the rules that apply to the pod.
        for (p, policy) in cluster.policies.iter().enumerate() {
            for dir in [Direction::Ingress, Direction::Egress] {
                for (i, rule) in policy.rules(dir).iter().enumerate() {
                    if rule.source.has_ports() {
                        return Err(CompileError::SourcePortsUnsupported {
                            policy: policy.id.to_string(),
                            field: format!("{}.source.ports", rule.field),
                        });
                    }
                    rules.push(RuleRef {
                        policy: p,
                        dir,
                        index: i,
                        rule,
                    });
                }
            }
        }
        let rule_pos = rules
            .iter()
            .enumerate()
            .map(|(n, r)| ((r.policy, r.dir, r.index), n))
            .collect();
        // Named ports by (protocol, name), over every entity that declares any: one
        // pass over the endpoints rather than one per rule.
        let mut declared: HashMap<(u8, &str), Vec<u16>> = HashMap::new();
        let all_ports = cluster
            .endpoints
            .iter()
            .flat_map(|e| &e.named_ports)
            .chain(cluster.host_endpoints.iter().flat_map(|h| &h.named_ports));
        for np in all_ports {
            declared
                .entry((np.protocol, np.name.as_str()))
                .or_default()
                .push(np.port);
        }
        let named_values = rules
            .iter()
            .map(|r| named_port_values(r.rule, &declared))
            .collect();
        Ok(Compiler {
            cluster,
            node,
            rules,
            rule_pos,
            named_values,
        })
    }

    fn is_local(&self, endpoint: usize) -> bool {
        let ep = &self.cluster.endpoints[endpoint];
        match (self.node, &ep.node) {
            (Some(node), Some(ep_node)) => node == ep_node,
            _ => true,
        }
    }

    fn run(&self) -> Result<DataplaneSpec, CompileError> {
        let cluster = self.cluster;
        let mut phases = PhaseTimer::new();
        let regions = self.regions();
        phases.done("regions");
        let cidr_set: HashSet<IpNet> = regions.iter().filter(|r| r.named).map(|r| r.net).collect();

        // ---- Peer classes ----
        // Atoms: distinct (peer side, protocol) pairs; rules with equal peer sides
        // share one.
        let mut peer_atoms: Vec<usize> = Vec::new();
        let mut atom_of: HashMap<(&EntityMatch, Option<u8>), usize> = HashMap::new();
        let mut peer_atom_pos = vec![None; self.rules.len()];
        for (n, r) in self.rules.iter().enumerate() {
            if !r.peer_side().tests_address() {
                continue;
            }
            let pos = *atom_of
                .entry((r.peer_side(), r.rule.protocol))
                .or_insert_with(|| {
                    peer_atoms.push(n);
                    peer_atoms.len() - 1
                });
            peer_atom_pos[n] = Some(pos);
        }
        // Each atom's facts where nothing distinguishes the region, and the index of
        // the atoms that may say otherwise (see `atom_index`).
        let sides: Vec<&EntityMatch> = peer_atoms
            .iter()
            .map(|&n| self.rules[n].peer_side())
            .collect();
        let defaults: Vec<SideFacts> = sides.iter().map(|s| atom_index::default_facts(s)).collect();
        let mut index = atom_index::AtomIndex::new(cluster, &sides, &regions);
        // Per atom: its distinct facts, numbered from 1 (0 is the default).
        let mut fact_ids: Vec<HashMap<SideFacts, u32>> = vec![HashMap::new(); peer_atoms.len()];
        let mut class_of_sig: HashMap<ClassSignature, u32> = HashMap::new();
        let mut class_sigs: Vec<ClassSignature> = Vec::new();
        let mut class_rep: Vec<IpAddr> = Vec::new();
        // Endpoints that only differ in things no rule can see share a fingerprint;
        // evaluate the facts once per fingerprint.
        let mut fingerprint_class: HashMap<String, u32> = HashMap::new();
        let mut region_class: Vec<Option<u32>> = Vec::with_capacity(regions.len());
        for (region_index, region) in regions.iter().enumerate() {
            let Some(rep) = region.rep else {
                region_class.push(None);
                continue;
            };
            if region.vip {
                region_class.push(None);
                continue;
            }
            let fingerprint = region.endpoint.map(|e| self.fingerprint(e, rep, &cidr_set));
            if let Some(fp) = &fingerprint
                && let Some(&class) = fingerprint_class.get(fp)
            {
                region_class.push(Some(class));
                continue;
            }
            let entities = cluster.entities_at(rep);
            let mut facts: Vec<(u32, u32)> = Vec::new();
            let candidates = index.candidates(region_index, &entities);
            #[cfg(test)]
            for (a, side) in sides.iter().enumerate() {
                // The index's promise, checked exhaustively under test.
                if candidates.binary_search(&(a as u32)).is_err() {
                    let r = &self.rules[peer_atoms[a]];
                    let f = eval::side_facts_among(cluster, side, r.rule.protocol, rep, &entities);
                    assert_eq!(
                        f, defaults[a],
                        "atom {a} at {rep}: not a candidate yet not default"
                    );
                }
            }
            for a in candidates {
                let r = &self.rules[peer_atoms[a as usize]];
                let f =
                    eval::side_facts_among(cluster, r.peer_side(), r.rule.protocol, rep, &entities);
                if f == defaults[a as usize] {
                    continue;
                }
                let ids = &mut fact_ids[a as usize];
                let next = ids.len() as u32 + 1;
                facts.push((a, *ids.entry(f).or_insert(next)));
            }
            let sig = (rep.is_ipv4(), facts);
            let class = if let Some(&c) = class_of_sig.get(&sig) {
                c
            } else {
                let c = class_sigs.len() as u32;
                class_of_sig.insert(sig.clone(), c);
                class_sigs.push(sig);
                class_rep.push(rep);
                c
            };
            if let Some(fp) = fingerprint {
                fingerprint_class.insert(fp, class);
            }
            region_class.push(Some(class));
        }
        let vip_class = class_sigs.len() as u32;
        // Fact id → facts, per atom (ids are 1-based).
        let fact_values: Vec<Vec<SideFacts>> = fact_ids
            .into_iter()
            .map(|ids| {
                let mut v: Vec<(u32, SideFacts)> = ids.into_iter().map(|(f, id)| (id, f)).collect();
                v.sort_unstable_by_key(|(id, _)| *id);
                v.into_iter().map(|(_, f)| f).collect()
            })
            .collect();
        // What a side with no address predicate says (`eval::side_facts`).
        let no_address_test = SideFacts {
            selected: true,
            in_nets: true,
            ..SideFacts::default()
        };
        phases.done("peer classes");

        let mut peers = Vec::new();
        for (region, class) in regions.iter().zip(&region_class) {
            if region.rep.is_none() {
                continue;
            }
            let (class, mut flags) = match class {
                Some(c) => (*c, 0),
                None => (vip_class, PEER_F_SERVICE_VIP),
            };
            let mut local_iface = None;
            if let Some(e) = region.endpoint
                && self.is_local(e)
            {
                flags |= PEER_F_LOCAL_ENDPOINT;
                local_iface = Some(cluster.endpoints[e].iface.clone());
            }
            peers.push(SpecPeer {
                net: region.net,
                class,
                flags,
                local_iface,
                host_class: 0,
            });
        }

        // ---- Profiles ----
        struct Profile {
            rep: usize,
            applicable: [Vec<usize>; 2],
        }
        let mut profiles: Vec<Profile> = Vec::new();
        let mut profile_of_sig: HashMap<ProfileSignature, u32> = HashMap::new();
        let mut profile_of_fp: HashMap<String, u32> = HashMap::new();
        let mut endpoints = Vec::new();
        for (e, ep) in cluster.endpoints.iter().enumerate() {
            if !self.is_local(e) {
                continue;
            }
            let fp = {
                let mut fp = String::new();
                for ip in [ep.ipv4(), ep.ipv6()].into_iter().flatten() {
                    fp.push_str(&self.fingerprint(e, ip, &cidr_set));
                    fp.push('|');
                }
                fp
            };
            let profile = if let Some(&p) = profile_of_fp.get(&fp) {
                p
            } else {
                let applicable = [
                    eval::applicable_policies(cluster, ep, Direction::Ingress),
                    eval::applicable_policies(cluster, ep, Direction::Egress),
                ];
                let mut facts = Vec::new();
                for (d, dir) in [Direction::Ingress, Direction::Egress]
                    .into_iter()
                    .enumerate()
                {
                    for &p in &applicable[d] {
                        for i in 0..cluster.policies[p].rules(dir).len() {
                            let r = &self.rules[self.rule_pos[&(p, dir, i)]];
                            if !r.local_side().tests_address() {
                                continue;
                            }
                            for ip in [ep.ipv4(), ep.ipv6()].into_iter().flatten() {
                                facts.push(eval::side_facts(
                                    cluster,
                                    r.local_side(),
                                    r.rule.protocol,
                                    ip,
                                ));
                            }
                        }
                    }
                }
                let sig = (ep.ipv4().is_some(), ep.ipv6().is_some(), applicable, facts);
                let p = if let Some(&p) = profile_of_sig.get(&sig) {
                    p
                } else {
                    let p = profiles.len() as u32;
                    profiles.push(Profile {
                        rep: e,
                        applicable: sig.2.clone(),
                    });
                    profile_of_sig.insert(sig, p);
                    p
                };
                profile_of_fp.insert(fp, p);
                p
            };
            let mut info = EndpointInfo {
                profile,
                endpoint_id: e as u32 + 1,
                ..EndpointInfo::default()
            };
            if let Some(IpAddr::V4(v4)) = ep.ipv4() {
                info.flags |= EP_F_HAS_V4;
                info.ipv4 = v4.octets();
            }
            if let Some(IpAddr::V6(v6)) = ep.ipv6() {
                info.flags |= EP_F_HAS_V6;
                info.ipv6 = v6.octets();
            }
            endpoints.push(SpecEndpoint {
                iface: ep.iface.clone(),
                workload: ep.workload(),
                info,
            });
        }

        phases.done("profiles");

        // ---- Cells ----
        let (cells, ports, unlisted_proto) = self.cells();
        let mut all_cells: Vec<Cell> = cells;
        if let Some(proto) = unlisted_proto {
            all_cells.push(Cell {
                id: CELL_UNLISTED,
                proto,
                lo: 0,
            });
        }
        let named_values = &self.named_values;

        phases.done("cells");

        // ---- Verdicts ----
        let mut verdicts: BTreeMap<SpecVerdictKey, Verdict> = BTreeMap::new();
        for (profile_id, profile) in profiles.iter().enumerate() {
            let ep = &cluster.endpoints[profile.rep];
            for (d, dir) in [Direction::Ingress, Direction::Egress]
                .into_iter()
                .enumerate()
            {
                let applicable = &profile.applicable[d];
                let key = |peer_class, cell| SpecVerdictKey {
                    dir: dir_code(dir),
                    profile: profile_id as u32,
                    peer_class,
                    cell,
                };
                let relevant: Vec<usize> = applicable
                    .iter()
                    .flat_map(|&p| (0..cluster.policies[p].rules(dir).len()).map(move |i| (p, i)))
                    .map(|(p, i)| self.rule_pos[&(p, dir, i)])
                    .collect();
                if relevant.is_empty() && applicable.is_empty() {
                    let leg = eval::decide(
                        cluster,
                        applicable,
                        dir,
                        &leg_packet(dir, ep.ips[0], ep.ips[0], all_cells.first()),
                    );
                    verdicts.insert(key(ANY_PEER, ANY_CELL), verdict_of(&leg));
                    continue;
                }
                // Peer groups: classes the relevant rules tell apart (through their
                // distinct atoms: equal atoms have equal facts).
                let mut relevant_atom = vec![false; peer_atoms.len()];
                for &n in &relevant {
                    if let Some(pos) = peer_atom_pos[n] {
                        relevant_atom[pos] = true;
                    }
                }
                // The classes' facts restricted to these atoms (sparse as the
                // signatures are: defaults left out).
                let mut group_of: HashMap<(bool, Vec<(u32, u32)>), usize> = HashMap::new();
                let mut peer_groups: Vec<Vec<u32>> = Vec::new();
                for (c, (is_v4, facts)) in class_sigs.iter().enumerate() {
                    let has_family = if *is_v4 {
                        ep.ipv4().is_some()
                    } else {
                        ep.ipv6().is_some()
                    };
                    if !has_family {
                        continue;
                    }
                    let k: Vec<(u32, u32)> = facts
                        .iter()
                        .copied()
                        .filter(|&(a, _)| relevant_atom[a as usize])
                        .collect();
                    let g = *group_of.entry((*is_v4, k)).or_insert_with(|| {
                        peer_groups.push(Vec::new());
                        peer_groups.len() - 1
                    });
                    peer_groups[g].push(c as u32);
                }
                // Cell groups: cells the relevant rules tell apart.
                let mut cell_group_of: HashMap<Vec<CellKey>, usize> = HashMap::new();
                let mut cell_groups: Vec<Vec<Cell>> = Vec::new();
                for cell in &all_cells {
                    let k: Vec<_> = relevant
                        .iter()
                        .map(|&n| cell_key(self.rules[n].rule, *cell, &named_values[n]))
                        .collect();
                    let g = *cell_group_of.entry(k).or_insert_with(|| {
                        cell_groups.push(Vec::new());
                        cell_groups.len() - 1
                    });
                    cell_groups[g].push(*cell);
                }
                // The matrix, on representatives. The evaluator's tier walk runs per
                // (peer group, cell group), but a rule's address predicates do not
                // depend on the cell: they are evaluated once per peer group (peer
                // sides from the class signature, local sides once per local
                // address), leaving only protocol and ports per cell.
                let mut offsets = Vec::with_capacity(applicable.len());
                let mut total = 0;
                for &p in applicable {
                    offsets.push(total);
                    total += cluster.policies[p].rules(dir).len();
                }
                let mut local_facts: HashMap<IpAddr, Vec<SideFacts>> = HashMap::new();
                let matrix: Vec<Vec<Verdict>> = peer_groups
                    .iter()
                    .map(|classes| {
                        let class = classes[0] as usize;
                        let peer = class_rep[class];
                        let local = ep.address_like(peer).unwrap_or(peer);
                        let local_facts = local_facts.entry(local).or_insert_with(|| {
                            relevant
                                .iter()
                                .map(|&n| {
                                    let r = &self.rules[n];
                                    eval::side_facts(
                                        cluster,
                                        r.local_side(),
                                        r.rule.protocol,
                                        local,
                                    )
                                })
                                .collect()
                        });
                        let sig = &class_sigs[class].1;
                        let peer_facts: Vec<&SideFacts> = relevant
                            .iter()
                            .map(|&n| match peer_atom_pos[n] {
                                None => &no_address_test,
                                Some(a) => match sig.binary_search_by_key(&(a as u32), |&(x, _)| x)
                                {
                                    Ok(i) => &fact_values[a][sig[i].1 as usize - 1],
                                    Err(_) => &defaults[a],
                                },
                            })
                            .collect();
                        let address_ok: Vec<bool> = peer_facts
                            .iter()
                            .zip(local_facts.iter())
                            .map(|(p, l)| p.address_matches() && l.address_matches())
                            .collect();
                        cell_groups
                            .iter()
                            .map(|cells| {
                                let packet = leg_packet(dir, local, peer, cells.first());
                                let leg =
                                    eval::decide_with(cluster, applicable, dir, |pos, r, rule| {
                                        let k = offsets[pos] + r;
                                        if !address_ok[k] || !eval::protocol_matches(rule, &packet)
                                        {
                                            return false;
                                        }
                                        let (src, dst) = match dir {
                                            Direction::Ingress => (peer_facts[k], &local_facts[k]),
                                            Direction::Egress => (&local_facts[k], peer_facts[k]),
                                        };
                                        src.port_matches(&rule.source, packet.src_port)
                                            && dst.port_matches(
                                                &rule.destination,
                                                packet.dst_port_key(),
                                            )
                                    });
                                verdict_of(&leg)
                            })
                            .collect()
                    })
                    .collect();
                emit_compressed(&peer_groups, &cell_groups, &matrix, |peer, cell, v| {
                    verdicts.insert(key(peer, cell), v);
                });
                // No peer of a family this endpoint has: any default is correct; write
                // the one an unmatched packet would get.
                verdicts.entry(key(ANY_PEER, ANY_CELL)).or_insert_with(|| {
                    verdict_of(&eval::decide(
                        cluster,
                        applicable,
                        dir,
                        &leg_packet(dir, ep.ips[0], ep.ips[0], all_cells.first()),
                    ))
                });
            }
        }

        phases.done("verdicts");
        host::compile_host(
            self,
            &host::Classes {
                regions: &regions,
                class_sigs: &class_sigs,
                class_rep: &class_rep,
                cells: &all_cells,
            },
            &mut peers,
            &mut endpoints,
            &mut verdicts,
        )?;
        phases.done("host endpoints");
        let spec = DataplaneSpec {
            endpoints,
            peers,
            ports,
            verdicts: verdicts.into_iter().collect(),
            policies: cluster.policies.iter().map(|p| p.name.clone()).collect(),
        };
        check_capacity(
            "endpoints",
            spec.endpoints.len(),
            enforcer_common::ENDPOINTS_MAX,
        )?;
        check_capacity("peers", spec.peers.len(), enforcer_common::PEERS_MAX)?;
        check_capacity("ports", spec.ports.len(), enforcer_common::PORTS_MAX)?;
        check_capacity(
            "verdicts",
            spec.verdicts.len(),
            enforcer_common::VERDICTS_MAX,
        )?;
        Ok(spec)
    }
}

/// Per-phase wall time, logged at debug level (`RUST_LOG=enforcer::compile=debug`):
/// where a compile's time goes, without a profiler.
struct PhaseTimer {
    last: std::time::Instant,
}

impl PhaseTimer {
    fn new() -> Self {
        PhaseTimer {
            last: std::time::Instant::now(),
        }
    }

    fn done(&mut self, phase: &str) {
        let now = std::time::Instant::now();
        tracing::debug!(
            phase,
            ms = (now - self.last).as_secs_f64() * 1e3,
            "compile phase"
        );
        self.last = now;
    }
}

/// A packet of the leg `dir` between the local address and the peer, in `cell`.
fn leg_packet(dir: Direction, local: IpAddr, peer: IpAddr, cell: Option<&Cell>) -> Packet {
    let (proto, port) = cell.map_or((0, 0), |c| (c.proto, c.lo));
    let (src, dst) = match dir {
        Direction::Ingress => (peer, local),
        Direction::Egress => (local, peer),
    };
    Packet {
        src,
        dst,
        proto,
        src_port: 0,
        dst_port: if has_ports(proto) { port } else { 0 },
        icmp_type: if is_icmp(proto) { (port >> 8) as u8 } else { 0 },
        icmp_code: if is_icmp(proto) {
            (port & 0xff) as u8
        } else {
            0
        },
    }
}

/// What a rule's protocol/port predicates say about a cell.
fn cell_key(rule: &Rule, cell: Cell, named: &[u16]) -> CellKey {
    let v4 = leg_packet(
        Direction::Ingress,
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some(&cell),
    );
    let mut v6 = v4;
    v6.src = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    v6.dst = v6.src;
    let port = v4.dst_port_key();
    let side = &rule.destination;
    let named_hit =
        (rule.protocol == Some(cell.proto) && named.binary_search(&port).is_ok()).then_some(port);
    (
        eval::protocol_matches(rule, &v4),
        eval::protocol_matches(rule, &v6),
        eval::numeric_port_in(&side.ports, port),
        eval::numeric_port_in(&side.not_ports, port),
        named_hit,
    )
}

/// Every number a rule's named destination ports can resolve to, given the declared
/// named ports by (protocol, name).
fn named_port_values(rule: &Rule, declared: &HashMap<(u8, &str), Vec<u16>>) -> Vec<u16> {
    let Some(proto) = rule.protocol else {
        return Vec::new();
    };
    let mut out: Vec<u16> = rule
        .destination
        .ports
        .iter()
        .chain(&rule.destination.not_ports)
        .filter_map(|p| match p {
            PortMatch::Named(n) => declared.get(&(proto, n.as_str())),
            PortMatch::Range(..) => None,
        })
        .flatten()
        .copied()
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

impl Compiler<'_> {
    /// Everything about an endpoint's address that a rule can see, as a string key:
    /// labels (which include namespace and service account), named ports, family,
    /// the most specific CIDR entry containing the address, and other entities there.
    fn fingerprint(&self, endpoint: usize, addr: IpAddr, cidr_set: &HashSet<IpNet>) -> String {
        let ep = &self.cluster.endpoints[endpoint];
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let parent = (0..=max)
            .rev()
            .filter_map(|len| IpNet::new(addr, len).ok().map(|n| n.trunc()))
            .find(|n| cidr_set.contains(n));
        let others: Vec<String> = self
            .cluster
            .entities_at(addr)
            .iter()
            .filter_map(|e| match e {
                crate::policy::Entity::HostEndpoint(h) => Some(h.id.to_string()),
                _ => None,
            })
            .collect();
        format!(
            "{:?}|{:?}|{}|{:?}|{:?}",
            ep.labels,
            ep.named_ports,
            addr.is_ipv4(),
            parent,
            others
        )
    }

    /// All peer LPM entries with their representative addresses.
    fn regions(&self) -> Vec<Region> {
        let cluster = self.cluster;
        let mut entries: BTreeMap<IpNet, (Option<usize>, bool, bool)> = BTreeMap::new();
        let mut add = |net: IpNet, endpoint: Option<usize>, vip: bool| {
            let e = entries.entry(net.trunc()).or_insert((None, false, false));
            if endpoint.is_some() {
                e.0 = endpoint;
            }
            e.1 |= vip;
            e.2 |= endpoint.is_none() && !vip;
        };
        add(IpNet::V4(Ipv4Net::default()), None, false);
        add(IpNet::V6(Ipv6Net::default()), None, false);
        for r in &self.rules {
            for side in [&r.rule.source, &r.rule.destination] {
                for net in side.nets.iter().chain(&side.not_nets) {
                    add(*net, None, false);
                }
            }
        }
        for set in &cluster.network_sets {
            for net in &set.nets {
                add(*net, None, false);
            }
        }
        for h in &cluster.host_endpoints {
            for ip in &h.ips {
                add(IpNet::from(*ip), None, false);
            }
        }
        for (i, ep) in cluster.endpoints.iter().enumerate() {
            for ip in &ep.ips {
                add(IpNet::from(*ip), Some(i), false);
            }
        }
        for svc in &cluster.services {
            for ip in &svc.vips {
                add(IpNet::from(*ip), None, true);
            }
        }
        let set: BTreeSet<IpNet> = entries.keys().copied().collect();
        entries
            .into_iter()
            .map(|(net, (endpoint, vip, named))| Region {
                net,
                rep: if net.prefix_len() == net.max_prefix_len() {
                    Some(net.addr())
                } else {
                    free_address(net, net, &set)
                },
                endpoint,
                vip: vip && endpoint.is_none(),
                named,
            })
            .collect()
    }

    /// Cells per protocol, their LPM entries, and a protocol no rule names (for
    /// `CELL_UNLISTED`), if any.
    fn cells(&self) -> (Vec<Cell>, Vec<SpecPort>, Option<u8>) {
        let mut protos: BTreeMap<u8, BTreeSet<u32>> = BTreeMap::new();
        for r in &self.rules {
            for p in [r.rule.protocol, r.rule.not_protocol].into_iter().flatten() {
                protos.entry(p).or_default().insert(0);
            }
        }
        for (n, r) in self.rules.iter().enumerate() {
            let Some(proto) = r.rule.protocol else {
                continue;
            };
            let cuts = protos.entry(proto).or_default();
            let mut cut = |lo: u32, hi: u32| {
                cuts.insert(lo);
                cuts.insert(hi + 1);
            };
            for p in r
                .rule
                .destination
                .ports
                .iter()
                .chain(&r.rule.destination.not_ports)
            {
                if let PortMatch::Range(a, b) = p {
                    cut(u32::from(*a), u32::from(*b));
                }
            }
            for icmp in [r.rule.icmp, r.rule.not_icmp].into_iter().flatten() {
                let base = u32::from(icmp.icmp_type) << 8;
                match icmp.code {
                    Some(c) => cut(base | u32::from(c), base | u32::from(c)),
                    None => cut(base, base | 0xff),
                }
            }
            for &v in &self.named_values[n] {
                cut(u32::from(v), u32::from(v));
            }
        }
        host::cut_node_ports(self.cluster, &mut protos);
        let mut cells = Vec::new();
        let mut ports = Vec::new();
        let mut next_id = CELL_UNLISTED + 1;
        for (&proto, cuts) in &protos {
            let bounds: Vec<u32> = cuts.iter().copied().filter(|c| *c <= 0xffff).collect();
            for (i, &lo) in bounds.iter().enumerate() {
                let hi = bounds.get(i + 1).map_or(0xffff, |next| next - 1);
                let id = next_id;
                next_id += 1;
                cells.push(Cell {
                    id,
                    proto,
                    lo: lo as u16,
                });
                for (port, prefix_len) in range_prefixes(lo, hi) {
                    ports.push(SpecPort {
                        proto,
                        port,
                        prefix_len,
                        cell: id,
                    });
                }
            }
        }
        let unlisted = (0..=255u8).find(|p| !protos.contains_key(p));
        (cells, ports, unlisted)
    }
}

fn check_capacity(what: &'static str, count: usize, max: u32) -> Result<(), CompileError> {
    if count > max as usize {
        return Err(CompileError::Capacity { what, count, max });
    }
    Ok(())
}

/// `lo..=hi` as aligned prefixes of the 16-bit port space.
fn range_prefixes(lo: u32, hi: u32) -> Vec<(u16, u8)> {
    let mut out = Vec::new();
    let mut start = lo;
    while start <= hi {
        let mut size_bits = if start == 0 {
            16
        } else {
            start.trailing_zeros().min(16)
        };
        while size_bits > 0 && start + (1 << size_bits) - 1 > hi {
            size_bits -= 1;
        }
        out.push((start as u16, (16 - size_bits) as u8));
        start += 1 << size_bits;
    }
    out
}

/// An address in `net` that no other entry of `set` covers more specifically.
fn free_address(net: IpNet, owner: IpNet, set: &BTreeSet<IpNet>) -> Option<IpAddr> {
    if net != owner && set.contains(&net) {
        return None;
    }
    let inside = set
        .range(IpNet::new(net.network(), 0).map_or(net, |n| n)..)
        .take_while(|n| n.network() <= net.broadcast())
        .any(|n| n.prefix_len() > net.prefix_len() && net.contains(n));
    if !inside {
        return Some(net.network());
    }
    if net.prefix_len() == net.max_prefix_len() {
        return None;
    }
    let halves = net.subnets(net.prefix_len() + 1).ok()?;
    for half in halves {
        if let Some(a) = free_address(half, owner, set) {
            return Some(a);
        }
    }
    None
}

/// Writes a (peer group × cell group) verdict matrix with the fewest entries the
/// 4-step lookup allows: the biggest peer group's most common verdict is the default,
/// its other verdicts become `(ANY_PEER, cell)` entries, and every other group gets
/// either exact entries where it differs from that or its own `(class, ANY_CELL)`.
fn emit_compressed(
    peer_groups: &[Vec<u32>],
    cell_groups: &[Vec<Cell>],
    matrix: &[Vec<Verdict>],
    mut emit: impl FnMut(u32, u32, Verdict),
) {
    let Some(g0) =
        (0..peer_groups.len()).max_by_key(|&g| (peer_groups[g].len(), std::cmp::Reverse(g)))
    else {
        return;
    };
    let weights: Vec<usize> = cell_groups.iter().map(Vec::len).collect();
    let row0 = &matrix[g0];
    let default = most_common(row0, &weights);
    emit(ANY_PEER, ANY_CELL, default);
    for (c, v) in row0.iter().enumerate() {
        if *v != default {
            for cell in &cell_groups[c] {
                emit(ANY_PEER, cell.id, *v);
            }
        }
    }
    for (g, classes) in peer_groups.iter().enumerate() {
        if g == g0 {
            continue;
        }
        let row = &matrix[g];
        let cost_exact: usize = (0..row.len())
            .filter(|&c| row[c] != row0[c])
            .map(|c| weights[c])
            .sum();
        if cost_exact == 0 {
            continue;
        }
        let own = most_common(row, &weights);
        let cost_own: usize = 1
            + (0..row.len())
                .filter(|&c| row[c] != own)
                .map(|c| weights[c])
                .sum::<usize>();
        for &class in classes {
            if cost_exact <= cost_own {
                for (c, v) in row.iter().enumerate() {
                    if *v != row0[c] {
                        for cell in &cell_groups[c] {
                            emit(class, cell.id, *v);
                        }
                    }
                }
            } else {
                emit(class, ANY_CELL, own);
                for (c, v) in row.iter().enumerate() {
                    if *v != own {
                        for cell in &cell_groups[c] {
                            emit(class, cell.id, *v);
                        }
                    }
                }
            }
        }
    }
}

fn most_common(row: &[Verdict], weights: &[usize]) -> Verdict {
    let mut counts: Vec<(Verdict, usize)> = Vec::new();
    for (v, w) in row.iter().zip(weights) {
        match counts.iter_mut().find(|(x, _)| x == v) {
            Some((_, n)) => *n += w,
            None => counts.push((*v, *w)),
        }
    }
    counts
        .iter()
        .enumerate()
        .max_by_key(|(i, (_, n))| (*n, std::cmp::Reverse(*i)))
        .map(|(_, (v, _))| *v)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
