//! Peer classes: regions that every rule's peer side sees alike share a class, the
//! `class` of their `ENF_PEERS_*` entries.
//!
//! A rule's peer side (source of an ingress rule, destination of an egress rule) and
//! its protocol form an *atom*; rules with equal ones share it. What an atom says about
//! a region is the [`SideFacts`] at the region's representative. A class signature
//! lists, per atom, the facts that differ from the atom's default (what it says about
//! an address with no entity and in none of its nets); equal signatures ⟺ equal facts
//! for every rule, so the evaluator cannot tell the regions of a class apart. Only the
//! atoms the [`AtomIndex`] names as candidates are evaluated at a region.

use std::net::IpAddr;

use enforcer_common::{
    PEER_F_CLUSTER_NODE, PEER_F_HOST, PEER_F_LOCAL_ENDPOINT, PEER_F_SERVICE_VIP,
};

use super::atom_index::{AtomIndex, default_facts};
use super::hashing::{HashMap, HashSet};
use super::input::{AddressFingerprint, Input};
use super::regions::{NamedNets, Region};
use super::spec::SpecPeer;
use crate::eval::{self, SideFacts};
use crate::policy::{Cluster, Entity, EntityMatch};

/// One atom's facts at a region, when they differ from its default: `fact` numbers the
/// atom's distinct facts from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct AtomFact {
    pub(super) atom: u32,
    pub(super) fact: u32,
}

/// What every atom says about the addresses of a class: the family, and the atoms
/// whose facts differ from their default, sorted by atom.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct ClassSignature {
    pub(super) is_v4: bool,
    pub(super) facts: Vec<AtomFact>,
}

/// The distinct (peer side, protocol) pairs of the rules, numbered by content: sorted
/// by a fixed-seed hash of the pair (ties, which equal content cannot make, by first
/// occurrence), so that the same atoms get the same numbers whatever the order of the
/// policies that name them, and classes computed for them can be reused
/// ([`super::reuse`]) when a change to the policies leaves the atoms as they were.
pub(super) struct PeerAtoms<'a> {
    /// Per atom: its peer side and protocol.
    pub(super) sides: Vec<(&'a EntityMatch, Option<u8>)>,
    /// Per rule (as `Input::rules`): its atom; `None` when its peer side tests nothing
    /// about the address.
    pub(super) of_rule: Vec<Option<usize>>,
    /// Per atom: its facts where nothing distinguishes the region.
    pub(super) defaults: Vec<SideFacts>,
}

impl<'a> PeerAtoms<'a> {
    pub(super) fn new(input: &Input<'a>) -> Self {
        let mut first_seen: Vec<Prehashed<'a>> = Vec::new();
        // Sized for every rule at once: growing it rehashed ~10k atoms a few times.
        let mut atom_of: HashMap<Prehashed<'a>, usize> = HashMap::with_capacity_and_hasher(
            input.rules.len(),
            foldhash::fast::RandomState::default(),
        );
        let mut of_rule = vec![None; input.rules.len()];
        for (n, r) in input.rules.iter().enumerate() {
            if !r.peer_side().tests_address() {
                continue;
            }
            let key = Prehashed {
                order: input.peer_side_order[n],
                side: (r.peer_side(), r.rule.protocol),
            };
            let atom = *atom_of.entry(key).or_insert_with(|| {
                first_seen.push(key);
                first_seen.len() - 1
            });
            of_rule[n] = Some(atom);
        }
        // Numbered by content (see the type).
        let mut order: Vec<(u64, usize)> = first_seen
            .iter()
            .enumerate()
            .map(|(i, key)| (key.order, i))
            .collect();
        order.sort_unstable();
        let mut renumbered = vec![0; first_seen.len()];
        for (atom, &(_, i)) in order.iter().enumerate() {
            renumbered[i] = atom;
        }
        for atom in of_rule.iter_mut().flatten() {
            *atom = renumbered[*atom];
        }
        let sides: Vec<(&EntityMatch, Option<u8>)> =
            order.iter().map(|&(_, i)| first_seen[i].side).collect();
        let defaults = sides.iter().map(|(s, _)| default_facts(s)).collect();
        PeerAtoms {
            sides,
            of_rule,
            defaults,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.sides.len()
    }

    /// What `atom` says about `rep` (with `entities` there), numbered by `numbers`;
    /// `None` when it is the atom's default (left out of signatures).
    pub(super) fn fact_at(
        &self,
        cluster: &Cluster,
        atom: u32,
        rep: IpAddr,
        entities: &[Entity<'_>],
        numbers: &mut FactNumbers,
    ) -> Option<AtomFact> {
        let (side, protocol) = self.sides[atom as usize];
        let f = eval::side_facts_among(cluster, side, protocol, rep, entities);
        (f != self.defaults[atom as usize]).then(|| AtomFact {
            atom,
            fact: numbers.number(f),
        })
    }

    /// The promise of the atom index and of `AtomRegions`, checked at every region
    /// under test: each of `atoms` (the `i`-th is candidate number `i`) that is not
    /// among `candidates` says its default at `rep` (where `entities` are).
    #[cfg(test)]
    pub(super) fn assert_defaults_outside(
        &self,
        cluster: &Cluster,
        atoms: impl Iterator<Item = u32>,
        candidates: &[u32],
        rep: IpAddr,
        entities: &[Entity<'_>],
    ) {
        for (candidate, atom) in atoms.enumerate() {
            if candidates.binary_search(&(candidate as u32)).is_err() {
                let (side, protocol) = self.sides[atom as usize];
                let f = eval::side_facts_among(cluster, side, protocol, rep, entities);
                assert_eq!(
                    f, self.defaults[atom as usize],
                    "atom {atom} at {rep}: not a candidate yet not default"
                );
            }
        }
    }
}

/// One atom's distinct facts, numbered from 1 in the order they are first met (0 is
/// the default): region order, in a full compile and in an update alike.
#[derive(Clone, Debug, Default)]
pub(super) struct FactNumbers(HashMap<SideFacts, u32>);

impl FactNumbers {
    fn number(&mut self, f: SideFacts) -> u32 {
        let next = self.0.len() as u32 + 1;
        *self.0.entry(f).or_insert(next)
    }

    /// The facts by number − 1 (`PeerClasses::fact_values`).
    pub(super) fn into_values(self) -> Vec<SideFacts> {
        let mut v: Vec<(u32, SideFacts)> = self.0.into_iter().map(|(f, id)| (id, f)).collect();
        v.sort_unstable_by_key(|(id, _)| *id);
        v.into_iter().map(|(_, f)| f).collect()
    }
}

/// Classes numbered by the first region of each signature, that region's address
/// their representative.
#[derive(Default)]
pub(super) struct ClassNumbers {
    class_of: HashMap<ClassSignature, u32>,
    signatures: Vec<ClassSignature>,
    reps: Vec<IpAddr>,
}

impl ClassNumbers {
    /// The class of a region at `rep` whose signature is `signature`.
    pub(super) fn class(&mut self, signature: ClassSignature, rep: IpAddr) -> u32 {
        if let Some(&c) = self.class_of.get(&signature) {
            return c;
        }
        let c = self.signatures.len() as u32;
        self.class_of.insert(signature.clone(), c);
        self.signatures.push(signature);
        self.reps.push(rep);
        c
    }

    pub(super) fn finish(
        self,
        of_region: Vec<Option<u32>>,
        fact_values: Vec<Vec<SideFacts>>,
    ) -> PeerClasses {
        PeerClasses {
            signatures: self.signatures,
            reps: self.reps,
            of_region,
            fact_values,
        }
    }
}

/// A rule's (peer side, protocol) with its `hashing::atom_order` hash, found once per
/// policy version: the atoms are told apart by that hash first, and compared in full
/// only when it is equal (equal content, or a collision).
#[derive(Clone, Copy)]
struct Prehashed<'a> {
    order: u64,
    side: (&'a EntityMatch, Option<u8>),
}

impl PartialEq for Prehashed<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.order == other.order && self.side == other.side
    }
}

impl Eq for Prehashed<'_> {}

impl std::hash::Hash for Prehashed<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.order);
    }
}

/// The peer classes of the regions.
#[derive(Debug)]
pub(super) struct PeerClasses {
    /// Per class.
    pub(super) signatures: Vec<ClassSignature>,
    /// Per class: the representative address of its first region.
    pub(super) reps: Vec<IpAddr>,
    /// Per region: its class; `None` for a region not emitted or a Service VIP.
    pub(super) of_region: Vec<Option<u32>>,
    /// Per atom: its distinct facts, by fact number − 1.
    pub(super) fact_values: Vec<Vec<SideFacts>>,
}

impl PeerClasses {
    pub(super) fn new(
        input: &Input<'_>,
        atoms: &PeerAtoms<'_>,
        regions: &[Region],
        named_nets: &NamedNets,
    ) -> Self {
        let cluster = input.cluster;
        let sides: Vec<&EntityMatch> = atoms.sides.iter().map(|(s, _)| *s).collect();
        let mut index = AtomIndex::new(cluster, &sides, regions);
        let mut fact_numbers = vec![FactNumbers::default(); atoms.len()];
        let mut classes = ClassNumbers::default();
        // Endpoints that only differ in things no rule can see share a fingerprint;
        // evaluate the facts once per fingerprint.
        let mut fingerprint_class: HashMap<AddressFingerprint<'_>, u32> = HashMap::default();
        let mut of_region: Vec<Option<u32>> = Vec::with_capacity(regions.len());
        for (region_index, region) in regions.iter().enumerate() {
            let Some(rep) = region.rep else {
                of_region.push(None);
                continue;
            };
            if region.vip {
                of_region.push(None);
                continue;
            }
            let fingerprint = region
                .endpoint
                .map(|e| input.fingerprint(e, rep, named_nets.around(rep)));
            if let Some(fp) = &fingerprint
                && let Some(&class) = fingerprint_class.get(fp)
            {
                of_region.push(Some(class));
                continue;
            }
            let entities = cluster.entities_at(rep);
            let candidates = index.candidates(region_index, &entities);
            #[cfg(test)]
            atoms.assert_defaults_outside(
                cluster,
                0..atoms.len() as u32,
                &candidates,
                rep,
                &entities,
            );
            let facts: Vec<AtomFact> = candidates
                .into_iter()
                .filter_map(|atom| {
                    let numbers = &mut fact_numbers[atom as usize];
                    atoms.fact_at(cluster, atom, rep, &entities, numbers)
                })
                .collect();
            let class = classes.class(
                ClassSignature {
                    is_v4: rep.is_ipv4(),
                    facts,
                },
                rep,
            );
            if let Some(fp) = fingerprint {
                fingerprint_class.insert(fp, class);
            }
            of_region.push(Some(class));
        }
        classes.finish(
            of_region,
            fact_numbers
                .into_iter()
                .map(FactNumbers::into_values)
                .collect(),
        )
    }

    /// The class of Service VIPs, after the others: policy never judges a VIP (the
    /// programs defer to the packet after DNAT).
    pub(super) fn vip_class(&self) -> u32 {
        self.signatures.len() as u32
    }
}

/// The `ENF_PEERS_*` entries: every emitted region with its class and flags.
/// `PEER_F_HOST` marks the node's own addresses (what is delivered to the host) and
/// `PEER_F_CLUSTER_NODE` every `Node`'s addresses (trusted tunnel sources): both are
/// regions of their own (`regions`), so the flag covers exactly those addresses.
pub(super) fn peer_entries(
    input: &Input<'_>,
    regions: &[Region],
    classes: &PeerClasses,
) -> Vec<SpecPeer> {
    let node_ips: HashSet<IpAddr> = input
        .cluster
        .nodes
        .iter()
        .flat_map(|n| n.ips.iter().copied())
        .collect();
    let mut peers = Vec::new();
    for (region, class) in regions.iter().zip(&classes.of_region) {
        let Some(rep) = region.rep else {
            continue;
        };
        let (class, mut flags) = match class {
            Some(c) => (*c, 0),
            None => (classes.vip_class(), PEER_F_SERVICE_VIP),
        };
        if input.addresses.contains(rep) {
            flags |= PEER_F_HOST;
        }
        if region.net.prefix_len() == region.net.max_prefix_len() && node_ips.contains(&rep) {
            flags |= PEER_F_CLUSTER_NODE;
        }
        let mut local_iface = None;
        if let Some(e) = region.endpoint
            && input.is_local(e)
        {
            flags |= PEER_F_LOCAL_ENDPOINT;
            local_iface = Some(input.cluster.endpoints[e].iface.clone());
        }
        peers.push(SpecPeer {
            net: region.net,
            class,
            flags,
            local_iface,
            host_class: 0,
        });
    }
    peers
}
