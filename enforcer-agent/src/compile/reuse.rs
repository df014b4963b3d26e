//! What one compile leaves for the next: the peer classes, with what they were
//! computed from, and what it learnt of each policy version and of the other objects
//! (`memo.rs`). The agent keeps a [`Reuse`] between policy changes. When nothing but
//! policies changed in between (the caller reports every change of the cluster to
//! [`Reuse::follow`]) and the regions and node are the same, a compile starts from the
//! classes kept:
//!
//! - same atoms (numbered by content: `classes::PeerAtoms`): the classes as they are;
//! - other atoms ([`update_classes`]): what the atoms kept and still named say about
//!   each region is in the kept signatures; only the atoms added are evaluated, at the
//!   regions where they may differ from their defaults (`atom_index::AtomRegions`:
//!   for a few atoms, the regions of the entities that have their features and of
//!   their nets, found without looking at the other regions), and the regions are
//!   grouped again by the signatures so made. A policy adds or removes a few atoms,
//!   out of 10k at scale.
//!
//! The classes before the last are kept too: a change that brings their atoms back (a
//! policy added, then deleted) takes them as they were. Each class set has an epoch,
//! which the verdicts kept per leg are keyed by (`rows.rs`).
//!
//! Everything is compared in full, not by digest, and numbered as a full compile
//! numbers it (classes by first region, an atom's facts by the first region that has
//! them): the classes are exactly what computing them again gives (checked against
//! full compiles over random change sequences in `agent/model/tests.rs`).

use super::atom_index::AtomRegions;
use super::classes::{AtomFact, ClassNumbers, ClassSignature, FactNumbers, PeerAtoms, PeerClasses};
use super::hashing::HashMap;
use super::input::Input;
use super::memo::PolicyMemo;
use super::regions::{NamedNets, Region};
use super::rows::VerdictRows;
use crate::policy::EntityMatch;
use crate::policy::live::Touched;

/// Peer classes kept from the last compile (see the module).
#[derive(Debug, Default)]
pub struct Reuse {
    kept: Option<Kept>,
    /// The classes kept before `kept`, for a change that brings their atoms back (a
    /// policy added, then deleted).
    before: Option<Kept>,
    /// Numbers the class sets computed since the last change that was not a policy's:
    /// equal numbers are equal classes of the same entities ([`Classes::epoch`]).
    epochs: u64,
    memo: PolicyMemo,
    rows: VerdictRows,
    stats: ReuseStats,
}

/// How compiles got their classes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReuseStats {
    /// Compiles that reused the classes kept as they were.
    pub reused: u64,
    /// Compiles that updated the classes kept for the atoms added and removed.
    pub updated: u64,
    /// Compiles that computed them from nothing.
    pub computed: u64,
    /// Compiles that took the classes kept before the last (their atoms came back).
    pub restored: u64,
    /// Legs (profile, direction) whose verdicts were taken from an earlier compile
    /// (`rows.rs`).
    pub legs_reused: u64,
    /// Legs whose verdicts were computed.
    pub legs_computed: u64,
}

#[derive(Debug)]
pub(super) struct Kept {
    epoch: u64,
    node: Option<String>,
    atoms: Vec<(EntityMatch, Option<u8>)>,
    regions: Vec<Region>,
    classes: PeerClasses,
}

impl Kept {
    fn same_atoms(&self, atoms: &PeerAtoms<'_>) -> bool {
        self.atoms.len() == atoms.sides.len()
            && self
                .atoms
                .iter()
                .zip(&atoms.sides)
                .all(|((side, protocol), (s, p))| side == *s && protocol == p)
    }
}

/// The peer classes of a compile: kept ones, or new ones with their epoch.
pub(super) enum Classes {
    Kept(Kept),
    New(PeerClasses, u64),
}

impl Classes {
    pub(super) fn get(&self) -> &PeerClasses {
        match self {
            Classes::Kept(kept) => &kept.classes,
            Classes::New(classes, _) => classes,
        }
    }

    /// Which class set these are: two compiles have the same epoch only when no
    /// object but a policy changed in between and their atoms, regions and node are
    /// the same, so that their classes, and what each atom says about each class, are
    /// the same too.
    pub(super) fn epoch(&self) -> u64 {
        match self {
            Classes::Kept(kept) => kept.epoch,
            Classes::New(_, epoch) => *epoch,
        }
    }
}

impl Reuse {
    /// A change of the cluster (what `agent::model::Model` reports): anything but
    /// policies (endpoints, namespaces, network sets, host endpoints, nodes, Services,
    /// tiers) can change what an atom says about an address, so the classes go (both
    /// sets), and so do which policies apply on the node and the legs' verdicts (the
    /// policy versions' fingerprints stay).
    pub fn follow(&mut self, touched: &Touched) {
        if !touched.endpoints.is_empty() || touched.other {
            self.kept = None;
            self.before = None;
            self.memo.entities_changed();
            self.rows.clear();
        }
    }

    /// Forgets everything (a snapshot replaced the cluster).
    pub fn clear(&mut self) {
        self.kept = None;
        self.before = None;
        self.memo.clear();
        self.rows.clear();
    }

    /// What the compiler learnt of each policy version (`memo.rs`).
    pub(super) fn memo(&mut self) -> &mut PolicyMemo {
        &mut self.memo
    }

    /// The verdicts of the legs of recent compiles (`rows.rs`).
    pub(super) fn rows(&mut self) -> &mut VerdictRows {
        &mut self.rows
    }

    pub fn stats(&self) -> ReuseStats {
        ReuseStats {
            legs_reused: self.rows.reused,
            legs_computed: self.rows.computed,
            ..self.stats
        }
    }

    /// The peer classes for `atoms`: the kept ones (the last compile's, or the one's
    /// before when its atoms came back), as they are or updated, when they were
    /// computed for these regions and node since the last change that was not a
    /// policy's; computed otherwise. Give them back with [`Reuse::keep`].
    pub(super) fn classes(
        &mut self,
        input: &Input<'_>,
        atoms: &PeerAtoms<'_>,
        regions: &[Region],
        named_nets: &NamedNets,
    ) -> Classes {
        let usable = |kept: &Kept| kept.node.as_deref() == input.node && kept.regions == regions;
        let kept = self.kept.take().filter(usable);
        let before = self.before.take().filter(usable);
        match (kept, before) {
            (Some(kept), before) if kept.same_atoms(atoms) => {
                self.stats.reused += 1;
                self.before = before;
                Classes::Kept(kept)
            }
            (kept, Some(before)) if before.same_atoms(atoms) => {
                self.stats.restored += 1;
                self.before = kept;
                Classes::Kept(before)
            }
            (Some(kept), _) => {
                self.stats.updated += 1;
                let classes = update_classes(&kept, input, atoms, regions);
                self.before = Some(kept);
                Classes::New(classes, self.next_epoch())
            }
            (None, _) => {
                self.stats.computed += 1;
                Classes::New(
                    PeerClasses::new(input, atoms, regions, named_nets),
                    self.next_epoch(),
                )
            }
        }
    }

    fn next_epoch(&mut self) -> u64 {
        self.epochs += 1;
        self.epochs
    }

    /// Keeps the classes of a compile for the next one.
    pub(super) fn keep(
        &mut self,
        classes: Classes,
        input: &Input<'_>,
        atoms: &PeerAtoms<'_>,
        regions: &[Region],
    ) {
        let (classes, epoch) = match classes {
            Classes::Kept(kept) => {
                self.kept = Some(kept);
                return;
            }
            Classes::New(classes, epoch) => (classes, epoch),
        };
        self.kept = Some(Kept {
            epoch,
            node: input.node.map(str::to_owned),
            atoms: atoms
                .sides
                .iter()
                .map(|(side, protocol)| ((*side).clone(), *protocol))
                .collect(),
            regions: regions.to_vec(),
            classes,
        });
    }
}

/// The classes for `atoms` from `kept`, computed for other atoms over the same regions
/// and entities: what [`PeerClasses::new`] gives, without evaluating the atoms kept.
/// A region's signature is its kept class's, restricted to the atoms still named (an
/// atom's facts at a region and their numbers do not depend on the other atoms), plus
/// the facts of the atoms added (evaluated where their index names them); classes are
/// numbered again by first region.
fn update_classes(
    kept: &Kept,
    input: &Input<'_>,
    atoms: &PeerAtoms<'_>,
    regions: &[Region],
) -> PeerClasses {
    let cluster = input.cluster;
    let new_id: HashMap<(&EntityMatch, Option<u8>), u32> = atoms
        .sides
        .iter()
        .enumerate()
        .map(|(a, &side)| (side, a as u32))
        .collect();
    let renumbered: Vec<Option<u32>> = kept
        .atoms
        .iter()
        .map(|(side, protocol)| new_id.get(&(side, *protocol)).copied())
        .collect();
    let mut old_of_new: Vec<Option<usize>> = vec![None; atoms.len()];
    for (old, new) in renumbered.iter().enumerate() {
        if let Some(new) = new {
            old_of_new[*new as usize] = Some(old);
        }
    }
    let added: Vec<u32> = (0..atoms.len() as u32)
        .filter(|&a| old_of_new[a as usize].is_none())
        .collect();
    // The kept classes' signatures on the atoms still named, in their new numbers.
    let restricted: Vec<Vec<AtomFact>> = kept
        .classes
        .signatures
        .iter()
        .map(|signature| {
            let mut facts: Vec<AtomFact> = signature
                .facts
                .iter()
                .filter_map(|f| {
                    renumbered[f.atom as usize].map(|atom| AtomFact { atom, fact: f.fact })
                })
                .collect();
            facts.sort_unstable_by_key(|f| f.atom);
            facts
        })
        .collect();
    let added_sides: Vec<&EntityMatch> = added.iter().map(|&a| atoms.sides[a as usize].0).collect();
    let mut added_regions =
        (!added.is_empty()).then(|| AtomRegions::new(cluster, &added_sides, regions));
    let mut fact_numbers = vec![FactNumbers::default(); added.len()];
    // Regions of one kept class with the same facts of the added atoms are alike: one
    // signature per such pair.
    let mut class_of_pair: HashMap<(u32, Vec<AtomFact>), u32> = HashMap::default();
    let mut classes = ClassNumbers::default();
    let mut of_region = Vec::with_capacity(regions.len());
    for (region_index, (region, kept_class)) in
        regions.iter().zip(&kept.classes.of_region).enumerate()
    {
        let (Some(kept_class), Some(rep)) = (*kept_class, region.rep) else {
            of_region.push(None);
            continue;
        };
        let mut added_facts = Vec::new();
        if let Some(added_regions) = added_regions.as_mut() {
            let (entities, candidates) = added_regions.at(cluster, region_index, rep);
            #[cfg(test)]
            atoms.assert_defaults_outside(
                cluster,
                added.iter().copied(),
                &candidates,
                rep,
                &cluster.entities_at(rep),
            );
            for candidate in candidates {
                let numbers = &mut fact_numbers[candidate as usize];
                let atom = added[candidate as usize];
                added_facts.extend(atoms.fact_at(cluster, atom, rep, &entities, numbers));
            }
        }
        let pair = (kept_class, added_facts);
        if let Some(&class) = class_of_pair.get(&pair) {
            of_region.push(Some(class));
            continue;
        }
        let mut facts = restricted[kept_class as usize].clone();
        facts.extend_from_slice(&pair.1);
        facts.sort_unstable_by_key(|f| f.atom);
        let signature = ClassSignature {
            is_v4: rep.is_ipv4(),
            facts,
        };
        let class = classes.class(signature, rep);
        class_of_pair.insert(pair, class);
        of_region.push(Some(class));
    }
    let mut added_values = fact_numbers.into_iter().map(FactNumbers::into_values);
    let fact_values = old_of_new
        .iter()
        .map(|old| match old {
            Some(old) => kept.classes.fact_values[*old].clone(),
            None => added_values.next().unwrap_or_default(),
        })
        .collect();
    classes.finish(of_region, fact_values)
}
