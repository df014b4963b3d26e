//! The agent's copy of the datastore's objects, kept per object from the datastore's
//! events: each object's latest version (or why it does not load) and the version of
//! it in the policy in force, which a refused later version leaves enforced
//! (`agent/selection.rs` decides which version of each object is compiled). Policies
//! are kept as their documents, read back when converted (`agent/version.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::version::Version;
use crate::datastore::{Change, Snapshot, Stored};
use crate::model::{LoadError, ObjectId};

/// One object as the datastore last said it.
#[derive(Debug)]
pub struct Entry {
    /// Where the datastore keeps it, for messages.
    pub origin: String,
    /// The latest version, or why it does not load.
    pub latest: Result<Arc<Version>, Arc<LoadError>>,
    /// The version in the policy in force, if one was: what a refused later version
    /// leaves enforced (shared with `latest` when it is that version).
    pub enforced: Option<Arc<Version>>,
}

#[derive(Debug, Default)]
pub struct ObjectCache {
    entries: BTreeMap<ObjectId, Entry>,
}

impl ObjectCache {
    /// Replaces everything with a snapshot (the first event, or a relist); objects
    /// that stay keep their enforced version.
    pub fn reset(&mut self, snapshot: Snapshot) {
        let mut old = std::mem::take(&mut self.entries);
        for stored in snapshot.objects {
            let previous = old.remove(&stored.id);
            self.upsert(stored, previous);
        }
    }

    pub fn apply(&mut self, changes: Vec<Change>) {
        for change in changes {
            match change {
                Change::Upsert(stored) => {
                    let previous = self.entries.remove(&stored.id);
                    self.upsert(*stored, previous);
                }
                Change::Delete(id) => {
                    self.entries.remove(&id);
                }
            }
        }
    }

    fn upsert(&mut self, stored: Stored, previous: Option<Entry>) {
        let entry = Entry {
            origin: stored.origin,
            latest: stored
                .object
                .map(|loaded| Arc::new(Version::keep(loaded)))
                .map_err(Arc::new),
            enforced: previous.and_then(|p| p.enforced),
        };
        self.entries.insert(stored.id, entry);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, id: &ObjectId) -> Option<&Entry> {
        self.entries.get(id)
    }

    pub fn entries(&self) -> impl Iterator<Item = (&ObjectId, &Entry)> {
        self.entries.iter()
    }

    /// Records that the latest version of each of `ids` is now in force.
    pub fn mark_enforced(&mut self, ids: &[ObjectId]) {
        for id in ids {
            if let Some(entry) = self.entries.get_mut(id)
                && let Ok(latest) = &entry.latest
            {
                entry.enforced = Some(Arc::clone(latest));
            }
        }
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing test panics with context")]
mod tests {
    use super::*;
    use crate::datastore::read_document;
    use std::path::Path;

    fn doc(name: &str, cidr: &str) -> Vec<Stored> {
        let text = format!(
            r#"{{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{{"name":"{name}","namespace":"dev"}},"spec":{{"podSelector":{{}},"ingress":[{{"from":[{{"ipBlock":{{"cidr":"{cidr}"}}}}]}}]}}}}"#
        );
        let origin = format!("objects/{name}.json");
        let id = ObjectId {
            kind: "NetworkPolicy".into(),
            namespace: "dev".into(),
            name: name.into(),
        };
        read_document(Path::new(&origin), &origin, &text, &[id])
    }

    fn upsert(cache: &mut ObjectCache, stored: Vec<Stored>) {
        cache.apply(
            stored
                .into_iter()
                .map(|s| Change::Upsert(Box::new(s)))
                .collect(),
        );
    }

    #[test]
    fn a_broken_version_keeps_the_enforced_one() {
        let mut cache = ObjectCache::default();
        cache.reset(Snapshot {
            revision: 1,
            objects: doc("b", "10.0.0.0/8"),
        });
        let id = ObjectId {
            kind: "NetworkPolicy".into(),
            namespace: "dev".into(),
            name: "b".into(),
        };
        assert!(
            cache.get(&id).unwrap().enforced.is_none(),
            "not enforced yet"
        );
        cache.mark_enforced(std::slice::from_ref(&id));
        upsert(&mut cache, doc("b", "10.0.0.0/99"));
        let entry = cache.get(&id).unwrap();
        assert!(entry.latest.is_err());
        assert_eq!(entry.origin, "objects/b.json");
        let kept = entry.enforced.as_ref().unwrap();
        assert_eq!(kept.loaded().unwrap().object.meta().name, "b");
        // Marking a broken latest version changes nothing.
        cache.mark_enforced(std::slice::from_ref(&id));
        assert!(cache.get(&id).unwrap().enforced.is_some());
        // A relist keeps what is enforced; a deletion forgets it.
        cache.reset(Snapshot {
            revision: 2,
            objects: doc("b", "10.0.0.0/98"),
        });
        assert!(cache.get(&id).unwrap().enforced.is_some());
        cache.apply(vec![Change::Delete(id.clone())]);
        assert!(cache.get(&id).is_none());
        assert!(cache.is_empty());
    }
}
