//! Stable policy ids: what verdicts, flow events and per-rule counters name a policy by.
//!
//! The compiler numbers policies by their position in evaluation order, which shifts
//! whenever a policy is added or removed. The maps get a stable id instead: one per
//! (policy name, fingerprint of its rules), kept for as long as some live generation
//! uses it, so a rule's counters keep counting across unrelated changes and never
//! inherit another rule's counts (an edited policy is a new fingerprint, hence a new
//! id with fresh counters — Calico's rule ids are content hashes for the same reason).
//!
//! The table is persisted in the pinned `ENF_POLICY_NAMES` map, so a restarted agent
//! keeps the ids the counters are keyed by. Ids are handed out in increasing order and
//! never reused by one agent process, so a name looked up once stays right.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use enforcer_common::{NO_INDEX, PolicyNameEntry};

use crate::model::PolicyName;

/// The id table: id → (name, fingerprint), and the reverse index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyIds {
    names: BTreeMap<u32, (Arc<PolicyName>, u64)>,
    by_key: HashMap<(Arc<PolicyName>, u64), u32>,
    next: u32,
    /// Ids each generation slot's content uses; `None`: unknown (written by an earlier
    /// agent), so nothing restored may be retired on its account yet.
    in_slot: [Option<BTreeSet<u32>>; 2],
}

/// What an assignment changed in the table, for the map writer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assigned {
    /// Spec policy index → stable id.
    pub ids: Vec<u32>,
    /// Ids new to the table (their names must be written).
    pub added: Vec<u32>,
}

impl PolicyIds {
    /// The table a previous agent left in `ENF_POLICY_NAMES`.
    pub fn restore(entries: impl IntoIterator<Item = (u32, PolicyNameEntry)>) -> Self {
        let mut ids = Self::default();
        for (id, entry) in entries {
            if id == NO_INDEX {
                continue;
            }
            let key = (Arc::new(name_of(&entry)), entry.fingerprint);
            ids.by_key.insert(key.clone(), id);
            ids.names.insert(id, key);
            ids.next = ids.next.max(id.saturating_add(1));
        }
        ids
    }

    /// Every policy used (the tests' shorthand for [`PolicyIds::assign_used`]).
    #[cfg(test)]
    fn assign(&mut self, names: &[Arc<PolicyName>], fingerprints: &[u64]) -> Assigned {
        self.assign_used(names, fingerprints, &vec![true; names.len()])
    }

    /// Ids for a spec's policies (`names[i]` with `fingerprints[i]`) that `used` marks
    /// (what the maps name: [`DataplaneSpec::referenced_policies`]), allocating for the
    /// new ones; the others get `NO_INDEX` and take no id, so the table (and
    /// `ENF_POLICY_NAMES`, of `POLICY_NAMES_MAX` entries) grows with the policies that
    /// judge this node's endpoints, not with the cluster.
    ///
    /// [`DataplaneSpec::referenced_policies`]: crate::compile::DataplaneSpec::referenced_policies
    pub fn assign_used(
        &mut self,
        names: &[Arc<PolicyName>],
        fingerprints: &[u64],
        used: &[bool],
    ) -> Assigned {
        let mut out = Assigned::default();
        for (i, name) in names.iter().enumerate() {
            if !used.get(i).copied().unwrap_or(true) {
                out.ids.push(NO_INDEX);
                continue;
            }
            let key = (Arc::clone(name), fingerprints.get(i).copied().unwrap_or(0));
            let id = if let Some(&id) = self.by_key.get(&key) {
                id
            } else {
                let id = self.next;
                // `NO_INDEX` means "no policy" in verdicts; u32 ids do not run out in
                // practice (one per policy version), but never hand that one out.
                self.next = self.next.saturating_add(1).min(NO_INDEX - 1);
                self.by_key.insert(key.clone(), id);
                self.names.insert(id, key);
                out.added.push(id);
                id
            };
            out.ids.push(id);
        }
        out
    }

    /// Records that generation slot `generation` now holds a content using `ids`, and
    /// returns the ids no live slot uses any more (removed from the table: their
    /// names and counters are to be deleted).
    pub fn written(&mut self, generation: u32, ids: &[u32]) -> Vec<u32> {
        let slot = (generation as usize).min(1);
        self.in_slot[slot] = Some(ids.iter().copied().filter(|&id| id != NO_INDEX).collect());
        let [Some(a), Some(b)] = &self.in_slot else {
            return Vec::new();
        };
        let retired: Vec<u32> = self
            .names
            .keys()
            .copied()
            .filter(|id| !a.contains(id) && !b.contains(id))
            .collect();
        for id in &retired {
            if let Some(key) = self.names.remove(id) {
                self.by_key.remove(&key);
            }
        }
        retired
    }

    /// Generation `to` now holds what generation `from` holds (the writer copied it
    /// there); returns the ids now used by neither, as [`written`](Self::written) does.
    pub fn copied(&mut self, from: u32, to: u32) -> Vec<u32> {
        let Some(ids) = &self.in_slot[(from as usize).min(1)] else {
            return Vec::new();
        };
        let ids: Vec<u32> = ids.iter().copied().collect();
        self.written(to, &ids)
    }

    pub fn name(&self, id: u32) -> Option<&PolicyName> {
        self.names.get(&id).map(|(name, _)| &**name)
    }

    /// The map value for `id`.
    pub fn entry(&self, id: u32) -> Option<PolicyNameEntry> {
        self.names.get(&id).map(|(name, fp)| entry_of(name, *fp))
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// `ENF_POLICY_NAMES`' value for a policy. Fields longer than their arrays are cut
/// (Kubernetes names fit: 253 bytes in 256).
pub fn entry_of(name: &PolicyName, fingerprint: u64) -> PolicyNameEntry {
    let mut e = PolicyNameEntry {
        fingerprint,
        ..PolicyNameEntry::default()
    };
    copy_str(&mut e.tier, &name.tier);
    copy_str(&mut e.kind, &name.kind);
    copy_str(&mut e.namespace, &name.namespace);
    copy_str(&mut e.name, &name.name);
    e
}

/// The policy name an `ENF_POLICY_NAMES` value holds.
pub fn name_of(entry: &PolicyNameEntry) -> PolicyName {
    PolicyName {
        tier: read_str(&entry.tier),
        kind: read_str(&entry.kind),
        namespace: read_str(&entry.namespace),
        name: read_str(&entry.name),
    }
}

fn copy_str(dst: &mut [u8], src: &str) {
    let n = src.len().min(dst.len());
    dst[..n].copy_from_slice(&src.as_bytes()[..n]);
}

fn read_str(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> Arc<PolicyName> {
        Arc::new(PolicyName {
            tier: "default".into(),
            kind: "NetworkPolicy".into(),
            namespace: "dev-app".into(),
            name: n.into(),
        })
    }

    #[test]
    fn ids_survive_unrelated_changes_and_an_edit_gets_a_new_id() {
        let mut ids = PolicyIds::default();
        let first = ids.assign(&[name("a"), name("b")], &[1, 2]);
        assert_eq!(first.ids, vec![0, 1]);
        assert_eq!(first.added, vec![0, 1]);
        assert!(ids.written(0, &first.ids).is_empty(), "other slot unknown");
        // A policy inserted before both: their ids do not move.
        let second = ids.assign(&[name("0"), name("a"), name("b")], &[9, 1, 2]);
        assert_eq!(second.ids, vec![2, 0, 1]);
        assert_eq!(second.added, vec![2]);
        assert!(ids.written(1, &second.ids).is_empty());
        // `a` edited (new fingerprint), `b` deleted: new id for `a`; the old `a` and
        // `b` stay while slot 1 uses them, and retire when the next write replaces it.
        let third = ids.assign(&[name("0"), name("a")], &[9, 5]);
        assert_eq!(third.ids, vec![2, 3]);
        assert!(
            ids.written(0, &third.ids).is_empty(),
            "slot 1 still uses 0 and 1"
        );
        let fourth = ids.assign(&[name("0"), name("a")], &[9, 5]);
        assert_eq!(ids.written(1, &fourth.ids), vec![0, 1]);
        assert_eq!(ids.name(3), Some(&*name("a")));
        assert_eq!(ids.name(0), None);
        // Never reused.
        let fifth = ids.assign(&[name("b")], &[2]);
        assert_eq!(fifth.ids, vec![4]);
    }

    /// After a start, slot 1 is unknown and nothing retires; the writer's copy of
    /// slot 0 into slot 1 makes it known, so the names a later write drops from both
    /// slots retire, and those the copy holds do not.
    #[test]
    fn a_copied_slot_holds_the_ids_of_its_source() {
        let mut ids = PolicyIds::default();
        let first = ids.assign(&[name("a"), name("b")], &[1, 2]);
        assert!(ids.written(0, &first.ids).is_empty(), "slot 1 unknown");
        assert!(ids.copied(1, 0).is_empty(), "from an unknown slot: nothing");
        assert!(ids.copied(0, 1).is_empty(), "both slots use a and b");
        let second = ids.assign(&[name("a")], &[1]);
        assert!(
            ids.written(0, &second.ids).is_empty(),
            "the copy in slot 1 still uses b"
        );
        let third = ids.assign(&[name("a")], &[1]);
        assert_eq!(ids.written(1, &third.ids), vec![1], "b retired");
    }

    #[test]
    fn only_used_policies_take_ids() {
        let mut ids = PolicyIds::default();
        let first = ids.assign_used(
            &[name("a"), name("b"), name("c")],
            &[1, 2, 3],
            &[false, true, false],
        );
        assert_eq!(first.ids, vec![NO_INDEX, 0, NO_INDEX]);
        assert_eq!(first.added, vec![0]);
        assert_eq!(ids.len(), 1);
        assert!(ids.written(0, &first.ids).is_empty());
        // `a` now judges an endpoint here, `b` no longer does.
        let second = ids.assign_used(
            &[name("a"), name("b"), name("c")],
            &[1, 2, 3],
            &[true, false, false],
        );
        assert_eq!(second.ids, vec![1, NO_INDEX, NO_INDEX]);
        assert!(
            ids.written(1, &second.ids).is_empty(),
            "slot 0 still uses 0"
        );
        let third = ids.assign_used(&[name("a")], &[1], &[true]);
        assert_eq!(ids.written(0, &third.ids), vec![0], "b retired");
        assert_eq!(ids.len(), 1);
    }

    #[test]
    fn the_table_round_trips_through_its_map_entries() {
        let mut ids = PolicyIds::default();
        let a = ids.assign(&[name("a"), name("b")], &[1, 2]);
        let entries: Vec<_> = a
            .ids
            .iter()
            .map(|&id| (id, ids.entry(id).unwrap_or_default()))
            .collect();
        let mut restored = PolicyIds::restore(entries);
        assert_eq!(restored.name(1), Some(&*name("b")));
        let again = restored.assign(&[name("b"), name("c")], &[2, 3]);
        assert_eq!(again.ids, vec![1, 2], "known ids kept, new ones after them");
        assert_eq!(again.added, vec![2]);
    }
}
