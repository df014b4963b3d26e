//! The agent's copy of the datastore's objects, kept per object from the datastore's
//! events, and the refusal rule applied when they are compiled.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::datastore::{Change, Snapshot, Stored};
use crate::model::{LoadError, Loaded, ObjectId};

/// One object as the datastore last said it.
#[derive(Debug)]
enum Entry {
    Good(Loaded),
    /// The latest version does not load. The last version that did is kept, so a
    /// later per-object refusal can keep enforcing it.
    Broken {
        origin: String,
        error: Arc<LoadError>,
        last_good: Option<Loaded>,
    },
}

/// Why the objects in the cache are not compiled.
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    /// Today's rule: a revision with any object that does not load is refused whole.
    #[error("{error}{}", others_suffix(*others))]
    Objects {
        origin: String,
        error: Arc<LoadError>,
        /// How many more objects do not load.
        others: usize,
    },
}

fn others_suffix(others: usize) -> String {
    match others {
        0 => String::new(),
        1 => " (and 1 more object that does not load)".to_owned(),
        n => format!(" (and {n} more objects that do not load)"),
    }
}

#[derive(Debug, Default)]
pub struct ObjectCache {
    entries: BTreeMap<ObjectId, Entry>,
}

impl ObjectCache {
    /// Replaces everything with a snapshot (the first event, or a relist).
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
        let entry = match stored.object {
            Ok(loaded) => Entry::Good(loaded),
            Err(error) => Entry::Broken {
                origin: stored.origin,
                error: Arc::new(error),
                last_good: match previous {
                    Some(Entry::Good(loaded)) => Some(loaded),
                    Some(Entry::Broken { last_good, .. }) => last_good,
                    None => None,
                },
            },
        };
        self.entries.insert(stored.id, entry);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The objects to compile, in the datastore's own order (file, then document:
    /// the order a directory listing gave before, so classes and ids come out the
    /// same), or why there are none: any object that does not load refuses them all.
    pub fn objects(&self) -> Result<Vec<Loaded>, Unreadable> {
        let mut broken: Vec<(&String, &Arc<LoadError>)> = self
            .entries
            .values()
            .filter_map(|e| match e {
                Entry::Broken { origin, error, .. } => Some((origin, error)),
                Entry::Good(_) => None,
            })
            .collect();
        if !broken.is_empty() {
            broken.sort_by(|a, b| a.0.cmp(b.0));
            let (origin, error) = broken[0];
            return Err(Unreadable::Objects {
                origin: origin.clone(),
                error: Arc::clone(error),
                others: broken.len() - 1,
            });
        }
        let mut good: Vec<&Loaded> = self
            .entries
            .values()
            .filter_map(|e| match e {
                Entry::Good(loaded) => Some(loaded),
                Entry::Broken { .. } => None,
            })
            .collect();
        good.sort_by(|a, b| {
            (&a.source.file, a.source.document).cmp(&(&b.source.file, b.source.document))
        });
        // Cloned because `Cluster::from_objects` takes a slice of owned objects; the
        // incremental compiler of the performance issue reads the cache instead.
        Ok(good.into_iter().cloned().collect())
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

    #[test]
    fn a_broken_object_refuses_all_and_the_fix_restores_them() {
        let mut cache = ObjectCache::default();
        cache.reset(Snapshot {
            revision: 1,
            objects: [doc("b", "10.0.0.0/8"), doc("a", "10.1.0.0/16")]
                .into_iter()
                .flatten()
                .collect(),
        });
        let names: Vec<String> = cache
            .objects()
            .unwrap()
            .iter()
            .map(|l| l.object.meta().name.clone())
            .collect();
        assert_eq!(names, ["a", "b"], "file order");
        cache.apply(
            doc("b", "10.0.0.0/99")
                .into_iter()
                .map(|s| Change::Upsert(Box::new(s)))
                .collect(),
        );
        cache.apply(
            doc("c", "nope")
                .into_iter()
                .map(|s| Change::Upsert(Box::new(s)))
                .collect(),
        );
        let err = cache.objects().unwrap_err().to_string();
        assert!(err.contains("objects/b.json"), "{err}");
        assert!(err.contains("and 1 more"), "{err}");
        assert_eq!(cache.len(), 3);
        cache.apply(
            doc("b", "10.0.0.0/8")
                .into_iter()
                .map(|s| Change::Upsert(Box::new(s)))
                .collect(),
        );
        cache.apply(vec![Change::Delete(ObjectId {
            kind: "NetworkPolicy".into(),
            namespace: "dev".into(),
            name: "c".into(),
        })]);
        assert_eq!(cache.objects().unwrap().len(), 2);
    }
}
