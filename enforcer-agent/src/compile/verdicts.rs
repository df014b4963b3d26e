//! Verdicts of the pods: `ENF_VERDICTS` entries per (profile, direction).
//!
//! Per (profile, direction) only the peer classes and cells that the profile's own
//! rules tell apart are grouped; the evaluator's tier walk runs once per (peer group,
//! cell group) on representatives, and the matrix is written with wildcard
//! compression. Because representatives are exact, the verdicts are exactly the
//! evaluator's (checked by the differential test against `simulate`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use enforcer_common::{
    ACTION_ALLOW, ACTION_DENY, ANY_CELL, ANY_PEER, DIR_EGRESS, DIR_INGRESS, NO_INDEX,
    VERDICT_F_LOG, VERDICT_KIND_NO_PROFILE, VERDICT_KIND_PROFILE, VERDICT_KIND_RULE,
    VERDICT_KIND_TIER_DEFAULT, Verdict,
};

use super::cells::{Cell, CellKey, CellKeyInputs, cell_key, leg_packet};
use super::classes::{AtomFact, ClassSignature, PeerAtoms, PeerClasses};
use super::compress::emit_compressed;
use super::hashing::{HashMap, HashSet};
use super::input::Input;
use super::profiles::Profile;
use super::rows::{LegKey, LegRows, VerdictRows};
use super::spec::SpecVerdictKey;
use crate::eval::{self, Action, DecisionKind, LegDecision, SideFacts, Walked};
use crate::policy::{Cluster, Direction, Endpoint};

/// The map verdict for an evaluator decision.
pub fn verdict_of(leg: &LegDecision) -> Verdict {
    verdict(
        leg.action,
        leg.kind,
        (leg.policy_index, leg.rule_index),
        leg.logged.first().map(|l| (l.policy_index, l.rule_index)),
    )
}

/// The map verdict for a walk of the compiler's.
fn verdict_of_walk(walked: &Walked) -> Verdict {
    verdict(
        walked.action,
        walked.kind,
        (walked.policy_index, walked.rule_index),
        walked.logged.first().copied(),
    )
}

/// A verdict: the action, its kind, the deciding (policy, rule) and the first Log
/// rule's.
fn verdict(
    action: Action,
    kind: DecisionKind,
    (policy, rule): (Option<usize>, Option<usize>),
    first_log: Option<(usize, usize)>,
) -> Verdict {
    let index = |i: Option<usize>| i.map_or(NO_INDEX, |i| i as u32);
    Verdict {
        action: match action {
            Action::Allow => ACTION_ALLOW,
            Action::Deny => ACTION_DENY,
        },
        kind: match kind {
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
        policy: index(policy),
        rule: index(rule),
        log_policy: index(first_log.map(|(p, _)| p)),
        log_rule: index(first_log.map(|(_, r)| r)),
    }
}

/// The `dir` of a verdict key for a pod leg.
pub fn dir_code(dir: Direction) -> u8 {
    match dir {
        Direction::Ingress => DIR_INGRESS,
        Direction::Egress => DIR_EGRESS,
    }
}

/// What the pod compiler has worked out before the verdicts.
pub(super) struct PodVerdicts<'a> {
    pub(super) input: &'a Input<'a>,
    pub(super) atoms: &'a PeerAtoms<'a>,
    pub(super) classes: &'a PeerClasses,
    pub(super) profiles: &'a [Profile],
    pub(super) cells: &'a [Cell],
}

impl PodVerdicts<'_> {
    /// Every verdict of every (profile, direction); a leg met in a recent compile
    /// with the same inputs (`rows.rs`: classes of epoch `classes_epoch`) is taken
    /// from `rows`, the others are computed and kept there.
    pub(super) fn verdicts(
        &self,
        rows: &mut VerdictRows,
        classes_epoch: u64,
    ) -> BTreeMap<SpecVerdictKey, Verdict> {
        let cluster = self.input.cluster;
        let epochs = (classes_epoch, rows.cells_epoch(self.cells));
        let mut verdicts = BTreeMap::new();
        for (profile_id, profile) in self.profiles.iter().enumerate() {
            for (d, dir) in [Direction::Ingress, Direction::Egress]
                .into_iter()
                .enumerate()
            {
                let leg = Leg::new(
                    self.input.cluster,
                    &self.input.cluster.endpoints[profile.rep],
                    &profile.applicable[d],
                    dir,
                );
                let key = |peer_class, cell| SpecVerdictKey {
                    dir: dir_code(dir),
                    profile: profile_id as u32,
                    peer_class,
                    cell,
                };
                let leg_key =
                    LegKey::new(cluster, epochs, dir_code(dir), profile.rep, leg.applicable);
                if let Some(kept) = rows.get(&leg_key) {
                    for (peer, cell, v) in kept.verdicts(leg.applicable) {
                        verdicts.insert(key(peer, cell), v);
                    }
                } else {
                    let mut emitted = Vec::new();
                    self.leg_verdicts(&leg, |peer, cell, v| emitted.push((peer, cell, v)));
                    if let Some(kept) = LegRows::new(&emitted, leg.applicable) {
                        rows.insert(cluster, leg_key, leg.applicable, kept);
                    }
                    for (peer, cell, v) in emitted {
                        verdicts.insert(key(peer, cell), v);
                    }
                }
                // No peer of a family this endpoint has: any default is correct; write
                // the one an unmatched packet would get.
                verdicts
                    .entry(key(ANY_PEER, ANY_CELL))
                    .or_insert_with(|| self.unmatched_verdict(&leg));
            }
        }
        verdicts
    }

    /// The verdicts of one (profile, direction), emitted as (peer class, cell, verdict).
    fn leg_verdicts(&self, leg: &Leg<'_>, mut emit: impl FnMut(u32, u32, Verdict)) {
        let cluster = self.input.cluster;
        let relevant: Vec<usize> = leg
            .applicable
            .iter()
            .flat_map(|&p| (0..cluster.policies[p].rules(leg.dir).len()).map(move |i| (p, i)))
            .map(|(p, i)| self.input.rule_position(p, leg.dir, i))
            .collect();
        if relevant.is_empty() && leg.applicable.is_empty() {
            emit(ANY_PEER, ANY_CELL, self.unmatched_verdict(leg));
            return;
        }
        let peer_groups = self.peer_groups(leg.ep, &relevant);
        let cell_groups = self.cell_groups(&relevant);
        let matrix = self.matrix(leg, &relevant, &peer_groups, &cell_groups);
        emit_compressed(&peer_groups, &cell_groups, &matrix, emit);
    }

    /// The verdict of a packet no rule distinguishes (the endpoint to itself, in the
    /// first cell).
    fn unmatched_verdict(&self, leg: &Leg<'_>) -> Verdict {
        let ip = leg.ep.ips[0];
        verdict_of(&eval::decide(
            self.input.cluster,
            leg.applicable,
            leg.dir,
            &leg_packet(leg.dir, ip, ip, self.cells.first()),
        ))
    }

    /// Peer groups: the classes (of a family the endpoint has) that the relevant rules
    /// tell apart, through their distinct atoms (equal atoms have equal facts).
    fn peer_groups(&self, ep: &Endpoint, relevant: &[usize]) -> Vec<Vec<u32>> {
        let mut relevant_atom = vec![false; self.atoms.len()];
        for &n in relevant {
            if let Some(atom) = self.atoms.of_rule[n] {
                relevant_atom[atom] = true;
            }
        }
        // The classes' signatures restricted to these atoms (sparse as the signatures
        // are: defaults left out).
        let mut group_of: HashMap<ClassSignature, usize> = HashMap::default();
        let mut peer_groups: Vec<Vec<u32>> = Vec::new();
        for (c, signature) in self.classes.signatures.iter().enumerate() {
            let has_family = if signature.is_v4 {
                ep.ipv4().is_some()
            } else {
                ep.ipv6().is_some()
            };
            if !has_family {
                continue;
            }
            let restricted = ClassSignature {
                is_v4: signature.is_v4,
                facts: signature
                    .facts
                    .iter()
                    .copied()
                    .filter(|f: &AtomFact| relevant_atom[f.atom as usize])
                    .collect(),
            };
            let g = *group_of.entry(restricted).or_insert_with(|| {
                peer_groups.push(Vec::new());
                peer_groups.len() - 1
            });
            peer_groups[g].push(c as u32);
        }
        peer_groups
    }

    /// Cell groups: the cells the relevant rules tell apart.
    fn cell_groups(&self, relevant: &[usize]) -> Vec<Vec<Cell>> {
        // One rule of each kind `cell_key` can tell apart: duplicates split no group
        // (thousands of rules, few distinct port predicates).
        let mut seen = HashSet::default();
        let distinct: Vec<usize> = relevant
            .iter()
            .copied()
            .filter(|&n| seen.insert(CellKeyInputs::of(self.input, n)))
            .collect();
        let mut group_of: HashMap<Vec<CellKey>, usize> = HashMap::default();
        let mut cell_groups: Vec<Vec<Cell>> = Vec::new();
        for cell in self.cells {
            let key: Vec<CellKey> = distinct
                .iter()
                .map(|&n| {
                    cell_key(
                        self.input.rules[n].rule,
                        *cell,
                        (&self.input.named_values[n], &self.input.named_src_values[n]),
                        &self.input.service_values[n],
                    )
                })
                .collect();
            let g = *group_of.entry(key).or_insert_with(|| {
                cell_groups.push(Vec::new());
                cell_groups.len() - 1
            });
            cell_groups[g].push(*cell);
        }
        cell_groups
    }

    /// The verdict matrix on representatives. The evaluator's tier walk runs per (peer
    /// group, cell group), but a rule's address predicates do not depend on the cell:
    /// they are evaluated once per peer group (peer sides from the class signature,
    /// local sides once per local address), and the walks of that group visit only the
    /// rules whose address predicates hold (`eval::walk`'s candidates), testing
    /// protocol and ports per cell. At 10k rules on one endpoint, each peer matches a
    /// few of them; which ones is read from the group's class signature (see
    /// [`PeerRules`]), not by testing every rule for every group.
    fn matrix(
        &self,
        leg: &Leg<'_>,
        relevant: &[usize],
        peer_groups: &[Vec<u32>],
        cell_groups: &[Vec<Cell>],
    ) -> Vec<Vec<Verdict>> {
        let cluster = self.input.cluster;
        let (applicable, dir) = (leg.applicable, leg.dir);
        // Position in `relevant` of the first rule of each applicable policy, and per
        // relevant rule its (position in `applicable`, index in its policy).
        let mut offsets = Vec::with_capacity(applicable.len());
        let mut pos_rule = Vec::with_capacity(relevant.len());
        for (pos, &p) in applicable.iter().enumerate() {
            offsets.push(pos_rule.len());
            pos_rule.extend((0..cluster.policies[p].rules(dir).len()).map(|r| (pos, r)));
        }
        let spans = eval::tier_spans(cluster, applicable);
        let mut peer_rules = PeerRules::new(self.atoms, relevant);
        let mut local_facts: HashMap<IpAddr, Vec<SideFacts>> = HashMap::default();
        let mut matrix = Vec::with_capacity(peer_groups.len());
        for classes in peer_groups {
            let class = classes[0] as usize;
            let peer = self.classes.reps[class];
            let local = leg.ep.address_like(peer).unwrap_or(peer);
            let local_facts = local_facts.entry(local).or_insert_with(|| {
                relevant
                    .iter()
                    .map(|&n| {
                        let r = &self.input.rules[n];
                        eval::side_facts(cluster, r.local_side(), r.rule.protocol, local)
                    })
                    .collect()
            });
            // The rules whose address predicates hold for this peer group: the walks
            // below visit these alone.
            let candidates: Vec<(usize, usize)> = peer_rules
                .matching(self.classes, class)
                .into_iter()
                .filter(|&k| local_facts[k].address_matches())
                .map(|k| pos_rule[k])
                .collect();
            let peer_facts = &peer_rules.facts;
            let row = cell_groups
                .iter()
                .map(|cells| {
                    let packet = leg_packet(dir, local, peer, cells.first());
                    let walked = eval::walk(
                        cluster,
                        applicable,
                        &spans,
                        dir,
                        candidates.iter().copied(),
                        |pos, r, rule| {
                            let k = offsets[pos] + r;
                            if !eval::protocol_matches(rule, &packet) {
                                return false;
                            }
                            let (src, dst) = match dir {
                                Direction::Ingress => (peer_facts[k], &local_facts[k]),
                                Direction::Egress => (&local_facts[k], peer_facts[k]),
                            };
                            src.port_matches(&rule.source, packet.src_port)
                                && dst.port_matches(&rule.destination, packet.dst_port_key())
                                && dst.service_port_matches(
                                    &rule.destination,
                                    packet.proto,
                                    packet.dst_port_key(),
                                )
                        },
                    );
                    verdict_of_walk(&walked)
                })
                .collect();
            matrix.push(row);
            peer_rules.reset();
        }
        matrix
    }
}

/// What the peer sides of a leg's relevant rules (numbered `k` as in `relevant`) say
/// about one peer class at a time. A class signature names only the atoms whose facts
/// differ from their defaults there, so a class's facts are the defaults with those
/// atoms' rules overwritten ([`PeerRules::matching`]), and the rules whose peer side
/// holds are those whose default holds, with the overwritten rules that changed their
/// minds flipped: a class costs its signature and the rules that hold, not every rule.
struct PeerRules<'s> {
    /// Per relevant rule: what its peer side says about the class last asked about
    /// (the atom's default, or the class's fact).
    facts: Vec<&'s SideFacts>,
    /// The same for an address no atom fact names.
    defaults: Vec<&'s SideFacts>,
    /// Relevant rules by peer atom.
    by_atom: HashMap<u32, Vec<usize>>,
    /// Relevant rules whose peer side holds with its default (ascending).
    default_holds: Vec<usize>,
    /// Rules [`PeerRules::matching`] overwrote in `facts`, for [`PeerRules::reset`].
    overwritten: Vec<usize>,
}

/// What a side with no address predicate says (`eval::side_facts`).
static NO_ADDRESS_TEST: SideFacts = SideFacts::untested();

impl<'s> PeerRules<'s> {
    fn new(atoms: &'s PeerAtoms<'_>, relevant: &[usize]) -> Self {
        let mut by_atom: HashMap<u32, Vec<usize>> = HashMap::default();
        let defaults: Vec<&SideFacts> = relevant
            .iter()
            .enumerate()
            .map(|(k, &n)| match atoms.of_rule[n] {
                None => &NO_ADDRESS_TEST,
                Some(atom) => {
                    by_atom.entry(atom as u32).or_default().push(k);
                    &atoms.defaults[atom]
                }
            })
            .collect();
        let default_holds = (0..relevant.len())
            .filter(|&k| defaults[k].address_matches())
            .collect();
        PeerRules {
            facts: defaults.clone(),
            defaults,
            by_atom,
            default_holds,
            overwritten: Vec::new(),
        }
    }

    /// The relevant rules whose peer side holds for `class` (ascending), with
    /// [`PeerRules::facts`] set to what each says there; [`PeerRules::reset`] before
    /// the next class.
    fn matching(&mut self, classes: &'s PeerClasses, class: usize) -> Vec<usize> {
        let mut flipped = Vec::new();
        for f in &classes.signatures[class].facts {
            let Some(ks) = self.by_atom.get(&f.atom) else {
                continue;
            };
            let fact = &classes.fact_values[f.atom as usize][f.fact as usize - 1];
            let holds = fact.address_matches();
            for &k in ks {
                if holds != self.defaults[k].address_matches() {
                    flipped.push(k);
                }
                self.facts[k] = fact;
                self.overwritten.push(k);
            }
        }
        flipped.sort_unstable();
        // Each rule has one atom, named once in a signature: `flipped` holds distinct
        // rules, and the rules that hold are the symmetric difference.
        let mut out = Vec::with_capacity(self.default_holds.len() + flipped.len());
        let (mut a, mut b) = (
            self.default_holds.iter().peekable(),
            flipped.iter().peekable(),
        );
        loop {
            match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) if x == y => {
                    a.next();
                    b.next();
                }
                (Some(&&x), Some(&&y)) if x < y => {
                    out.push(x);
                    a.next();
                }
                (_, Some(&&y)) => {
                    out.push(y);
                    b.next();
                }
                (Some(&&x), None) => {
                    out.push(x);
                    a.next();
                }
                (None, None) => break,
            }
        }
        out
    }

    /// Back to the defaults.
    fn reset(&mut self) {
        for k in self.overwritten.drain(..) {
            self.facts[k] = self.defaults[k];
        }
    }
}

/// One (profile, direction): the profile's representative endpoint and the applicable
/// policies in that direction that a packet can reach.
struct Leg<'a> {
    ep: &'a Endpoint,
    applicable: &'a [usize],
    dir: Direction,
}

impl<'a> Leg<'a> {
    /// The leg of `ep` in `dir` whose policies (in evaluation order) are `applicable`,
    /// cut after a tier that decides every packet (`eval::reachable`): the rules after
    /// it neither decide, log nor split a group, and the walk returns before them, so a
    /// quarantine policy in a first tier costs its own rules, not the 10,000 after it.
    fn new(cluster: &Cluster, ep: &'a Endpoint, applicable: &'a [usize], dir: Direction) -> Self {
        Leg {
            ep,
            applicable: &applicable[..eval::reachable(cluster, applicable, dir)],
            dir,
        }
    }
}
