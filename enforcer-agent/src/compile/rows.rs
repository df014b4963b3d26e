//! The verdicts of recent legs, kept by [`super::Reuse`] for a compile that meets the
//! same leg again: a policy added and deleted again (a quarantine lifted, `p5`'s and
//! `p6`'s change), or a change that leaves a profile's policies as they were.
//!
//! A leg is a (profile, direction). Its verdicts (`verdicts.rs`) are a function of
//! what it is given, and the key holds all of it:
//!
//! - the peer classes, by epoch (`reuse::Classes::epoch`): same classes, same atoms
//!   and numbers, and no object but a policy changed in between, so the endpoints,
//!   named ports, Services and tiers the walks read are the same too;
//! - the cells, by an epoch given here: equal cells, compared in full
//!   ([`VerdictRows::cells_epoch`]);
//! - the direction and the representative endpoint (by index: the endpoints change
//!   only with a new classes epoch);
//! - the leg's policies, by version (the address of each converted
//!   `Arc<PolicyName>`, held by the entry so that no other version can take it).
//!
//! A verdict names its policies by index into `Cluster::policies`, which a change
//! elsewhere shifts: they are kept as positions among the leg's policies and put back
//! in the current numbering when taken ([`LegRows::verdicts`]).
//!
//! Legs not met in the last [`KEPT_FOR`] compiles are dropped, and all of them on a
//! change that is not a policy's (`Reuse::follow`).

use std::sync::Arc;

use enforcer_common::{NO_INDEX, Verdict};

use super::cells::Cell;
use super::hashing::HashMap;
use crate::model::PolicyName;
use crate::policy::Cluster;

/// How many compiles a leg's verdicts outlive their last use: a leg is still there
/// after a policy was added and a compile passed without it.
const KEPT_FOR: u64 = 4;

/// The verdicts of the legs of recent compiles (see the module).
#[derive(Debug, Default)]
pub(crate) struct VerdictRows {
    /// Compiles started ([`VerdictRows::cells_epoch`]).
    compiles: u64,
    /// The cells of the last two distinct cell sets met, with their epochs.
    cell_sets: Vec<(u64, Vec<Cell>)>,
    cell_epochs: u64,
    legs: HashMap<LegKey, Entry>,
    /// Legs taken from an earlier compile, and legs computed.
    pub(super) reused: u64,
    pub(super) computed: u64,
}

/// What a leg's verdicts are computed from (see the module).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct LegKey {
    classes: u64,
    cells: u64,
    dir: u8,
    rep: usize,
    /// The addresses of the versions of the leg's policies, in evaluation order.
    versions: Vec<usize>,
}

impl LegKey {
    /// The key of the leg of endpoint `rep` in direction `dir` (`dir_code`) whose
    /// policies are `applicable`, with classes and cells of the epochs given.
    pub(super) fn new(
        cluster: &Cluster,
        (classes, cells): (u64, u64),
        dir: u8,
        rep: usize,
        applicable: &[usize],
    ) -> Self {
        LegKey {
            classes,
            cells,
            dir,
            rep,
            versions: applicable
                .iter()
                .map(|&p| Arc::as_ptr(&cluster.policies[p].name).addr())
                .collect(),
        }
    }
}

#[derive(Debug)]
struct Entry {
    /// Keeps the key's addresses taken while the entry lives.
    _versions: Vec<Arc<PolicyName>>,
    rows: LegRows,
    /// The last compile that met the leg.
    used: u64,
}

/// A leg's verdicts as (peer class, cell, verdict), with the verdicts' policies as
/// positions among the leg's policies.
#[derive(Debug, Default)]
pub(super) struct LegRows {
    entries: Vec<(u32, u32, Verdict)>,
}

impl LegRows {
    /// The verdicts of a leg whose policies are `applicable`, as they were emitted;
    /// `None` when a verdict names a policy that is not among them (then it cannot be
    /// kept by position).
    pub(super) fn new(entries: &[(u32, u32, Verdict)], applicable: &[usize]) -> Option<Self> {
        let position = |index: u32| -> Option<u32> {
            if index == NO_INDEX {
                return Some(NO_INDEX);
            }
            // `applicable` is in evaluation order, which is the order of
            // `Cluster::policies`.
            let at = applicable.binary_search(&(index as usize)).ok()?;
            Some(at as u32)
        };
        let entries = entries
            .iter()
            .map(|&(peer, cell, v)| {
                Some((
                    peer,
                    cell,
                    Verdict {
                        policy: position(v.policy)?,
                        log_policy: position(v.log_policy)?,
                        ..v
                    },
                ))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(LegRows { entries })
    }

    /// The verdicts for a leg whose policies are `applicable` (the same versions as
    /// when they were kept), with the verdicts' policies as indices again.
    pub(super) fn verdicts(
        &self,
        applicable: &[usize],
    ) -> impl Iterator<Item = (u32, u32, Verdict)> {
        let index = |position: u32| {
            if position == NO_INDEX {
                NO_INDEX
            } else {
                applicable[position as usize] as u32
            }
        };
        self.entries.iter().map(move |&(peer, cell, v)| {
            (
                peer,
                cell,
                Verdict {
                    policy: index(v.policy),
                    log_policy: index(v.log_policy),
                    ..v
                },
            )
        })
    }
}

impl VerdictRows {
    /// Starts a compile whose cells are `cells`: drops the legs not met in the last
    /// [`KEPT_FOR`] compiles and returns the cells' epoch (equal cells, compared in
    /// full, have equal epochs).
    pub(super) fn cells_epoch(&mut self, cells: &[Cell]) -> u64 {
        self.compiles += 1;
        let now = self.compiles;
        self.legs.retain(|_, entry| entry.used + KEPT_FOR >= now);
        if let Some(at) = self.cell_sets.iter().position(|(_, c)| c == cells) {
            let epoch = self.cell_sets[at].0;
            // The latest last: the other one is dropped next.
            let set = self.cell_sets.remove(at);
            self.cell_sets.push(set);
            return epoch;
        }
        self.cell_epochs += 1;
        if self.cell_sets.len() == 2 {
            self.cell_sets.remove(0);
        }
        self.cell_sets.push((self.cell_epochs, cells.to_vec()));
        self.cell_epochs
    }

    /// The verdicts kept for `key`, if any (the leg is met in this compile).
    pub(super) fn get(&mut self, key: &LegKey) -> Option<&LegRows> {
        let now = self.compiles;
        let entry = self.legs.get_mut(key);
        if entry.is_some() {
            self.reused += 1;
        } else {
            self.computed += 1;
        }
        entry.map(|entry| {
            entry.used = now;
            &entry.rows
        })
    }

    /// Keeps the verdicts of the leg `key` of `cluster` whose policies are
    /// `applicable`.
    pub(super) fn insert(
        &mut self,
        cluster: &Cluster,
        key: LegKey,
        applicable: &[usize],
        rows: LegRows,
    ) {
        let versions = applicable
            .iter()
            .map(|&p| Arc::clone(&cluster.policies[p].name))
            .collect();
        self.legs.insert(
            key,
            Entry {
                _versions: versions,
                rows,
                used: self.compiles,
            },
        );
    }

    /// Forgets every leg (an object other than a policy changed, or everything did).
    pub(super) fn clear(&mut self) {
        self.legs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(policy: u32, log_policy: u32) -> Verdict {
        Verdict {
            policy,
            rule: 3,
            log_policy,
            log_rule: 1,
            ..Verdict::default()
        }
    }

    /// Kept by position among the leg's policies, a verdict names the same policies
    /// again, in the numbering of the compile that takes it: here the policies moved
    /// from 4 and 9 to 5 and 12 (one added before each).
    #[test]
    fn verdicts_name_their_policies_in_the_current_numbering() {
        let emitted = [
            (1, 2, verdict(9, 4)),
            (0, 0, verdict(NO_INDEX, NO_INDEX)),
            (3, 7, verdict(4, NO_INDEX)),
        ];
        let Some(kept) = LegRows::new(&emitted, &[4, 9]) else {
            panic!("every policy named is the leg's");
        };
        let taken: Vec<_> = kept.verdicts(&[5, 12]).collect();
        assert_eq!(
            taken,
            [
                (1, 2, verdict(12, 5)),
                (0, 0, verdict(NO_INDEX, NO_INDEX)),
                (3, 7, verdict(5, NO_INDEX)),
            ]
        );
        // A verdict naming a policy that is not the leg's cannot be kept by position.
        assert!(LegRows::new(&[(0, 0, verdict(6, NO_INDEX))], &[4, 9]).is_none());
    }

    /// Equal cells have equal epochs, whichever of the last two sets they equal;
    /// other cells a new one.
    #[test]
    fn cell_epochs_tell_cell_sets_apart() {
        let cells = |hi: u16| -> Vec<Cell> {
            [0, 80, hi]
                .into_iter()
                .enumerate()
                .map(|(id, lo)| Cell {
                    id: id as u32,
                    proto: 6,
                    lo,
                    src_lo: 0,
                })
                .collect()
        };
        let mut rows = VerdictRows::default();
        let a = rows.cells_epoch(&cells(81));
        let b = rows.cells_epoch(&cells(443));
        assert_ne!(a, b);
        assert_eq!(rows.cells_epoch(&cells(81)), a);
        assert_eq!(rows.cells_epoch(&cells(443)), b);
        let c = rows.cells_epoch(&cells(8080));
        assert!(c != a && c != b);
        // Two sets are remembered: the older of a and b is gone.
        assert_eq!(rows.cells_epoch(&cells(443)), b);
        assert_ne!(rows.cells_epoch(&cells(81)), a);
    }
}
