//! The lab API server's objects: the lab's file datastore, served the way a cluster
//! stores it, with a resourceVersion per object, a bounded history for watches and a
//! broadcast of what changes.
//!
//! The file datastore stays the lab's record (its revision is the server's
//! resourceVersion); this store is what the server knows of it since it started: every
//! object at the revision it found, then each write it made. Events of the
//! `events.k8s.io` API are kept in memory only.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::datastore::DatastoreError;
use crate::datastore::file::FileDatastore;
use crate::datastore::kubernetes::convert;
use crate::datastore::kubernetes::resources::{
    CALICO_CRD_GROUP, CALICO_CRDS, KUBERNETES, Resource, by_kind,
};

/// How many object events a watch can resume from.
const HISTORY: usize = 4096;

/// Deployments: stored for the lab's own bookkeeping, never watched by the agent.
pub const DEPLOYMENTS: Resource = Resource {
    group: "apps",
    version: "v1",
    kind: "Deployment",
    plural: "deployments",
    namespaced: true,
    model_kind: "Deployment",
};

/// `StatefulSets` and `DaemonSets`: stored as Deployments are (their pods are the lab's).
pub const STATEFULSETS: Resource = Resource {
    group: "apps",
    version: "v1",
    kind: "StatefulSet",
    plural: "statefulsets",
    namespaced: true,
    model_kind: "StatefulSet",
};

pub const DAEMONSETS: Resource = Resource {
    group: "apps",
    version: "v1",
    kind: "DaemonSet",
    plural: "daemonsets",
    namespaced: true,
    model_kind: "DaemonSet",
};

/// Events (`events.k8s.io/v1`), kept in memory.
pub const EVENTS: Resource = Resource {
    group: "events.k8s.io",
    version: "v1",
    kind: "Event",
    plural: "events",
    namespaced: true,
    model_kind: "Event",
};

/// Everything the lab serves: the agent's resources (Calico's as CRDs), Deployments,
/// `StatefulSets`, `DaemonSets` and events.
pub fn served() -> Vec<Resource> {
    KUBERNETES
        .iter()
        .chain(CALICO_CRDS)
        .copied()
        .chain([DEPLOYMENTS, STATEFULSETS, DAEMONSETS, EVENTS])
        .collect()
}

/// The resource a model document is served as: Calico's kinds (in either form) as
/// their CRD.
pub fn resource_of(served: &[Resource], api_version: &str, kind: &str) -> Option<usize> {
    let found = by_kind(api_version, kind).or_else(|| {
        [DEPLOYMENTS, STATEFULSETS, DAEMONSETS, EVENTS]
            .into_iter()
            .find(|r| r.kind == kind && r.api_version() == api_version)
    })?;
    let wanted = if found.is_calico() {
        CALICO_CRDS.iter().find(|r| r.kind == found.kind).copied()?
    } else {
        found
    };
    served.iter().position(|r| *r == wanted)
}

/// (resource index, namespace, name as served).
pub type Key = (usize, String, String);

/// A watch event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// What open watches are told.
#[derive(Clone, Debug)]
pub enum Notice {
    Object {
        resource: usize,
        namespace: String,
        kind: EventType,
        object: Value,
        revision: u64,
    },
    /// Every write ends with one: watches of other resources learn the revision.
    Bookmark(u64),
    /// Watches of this resource (`None`: all) end; clients resume (or relist).
    Close(Option<usize>),
}

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Exists(String),
    #[error("invalid object: {0}")]
    Invalid(String),
    #[error(transparent)]
    Datastore(#[from] DatastoreError),
}

struct Inner {
    revision: u64,
    /// Watches from a version below this are answered 410.
    compacted: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Arc<Notice>>,
}

pub struct Store {
    served: Vec<Resource>,
    file: FileDatastore,
    inner: Mutex<Inner>,
    notices: broadcast::Sender<Arc<Notice>>,
}

/// A stable uid for an object (the same across server restarts).
fn uid(key: &Key) -> String {
    let digest = sha1_smol::Sha1::from(format!("{}/{}/{}", key.0, key.1, key.2))
        .digest()
        .to_string();
    format!(
        "{}-{}-{}-{}-{}",
        &digest[0..8],
        &digest[8..12],
        &digest[12..16],
        &digest[16..20],
        &digest[20..32]
    )
}

fn name_of(object: &Value) -> Option<&str> {
    object.pointer("/metadata/name")?.as_str()
}

fn namespace_of(object: &Value) -> &str {
    object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

impl Store {
    /// Reads the lab's datastore: every object at its current revision.
    pub fn open(file: FileDatastore) -> Result<Arc<Self>, StoreError> {
        let served = served();
        let revision = file.revision()?;
        let mut objects = BTreeMap::new();
        for (name, text) in file.documents()? {
            let Ok(document) = serde_json::from_str::<Value>(&text) else {
                tracing::warn!(document = name, "not JSON; not served");
                continue;
            };
            let api = document
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let kind = document
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let Some(index) = resource_of(&served, api, kind) else {
                tracing::warn!(document = name, kind, "no resource serves this kind");
                continue;
            };
            let object = convert::to_api_object(&served[index], document);
            let key = key_of(index, &object);
            objects.insert(key.clone(), with_metadata(object, &key, revision));
        }
        let (notices, _) = broadcast::channel(HISTORY);
        Ok(Arc::new(Self {
            served,
            file,
            inner: Mutex::new(Inner {
                revision,
                compacted: revision,
                objects,
                history: VecDeque::new(),
            }),
            notices,
        }))
    }

    pub fn served(&self) -> &[Resource] {
        &self.served
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn revision(&self) -> u64 {
        self.lock().revision
    }

    /// The objects of `resource` (in `namespace` when given), and the revision.
    pub fn list(&self, resource: usize, namespace: Option<&str>) -> (Vec<Value>, u64) {
        let inner = self.lock();
        let items = inner
            .objects
            .iter()
            .filter(|((r, ns, _), _)| *r == resource && namespace.is_none_or(|n| n == ns))
            .map(|(_, o)| o.clone())
            .collect();
        (items, inner.revision)
    }

    pub fn get(&self, key: &Key) -> Option<Value> {
        self.lock().objects.get(key).cloned()
    }

    /// Subscribes, then returns what happened after `since` (for `resource`), or
    /// `Err(oldest)` when that is no longer known (410).
    #[expect(
        clippy::type_complexity,
        reason = "a receiver and the events it must be preceded by"
    )]
    pub fn watch(
        &self,
        since: u64,
    ) -> Result<(broadcast::Receiver<Arc<Notice>>, Vec<Arc<Notice>>), u64> {
        let inner = self.lock();
        if since < inner.compacted {
            return Err(inner.compacted);
        }
        let receiver = self.notices.subscribe();
        let replay = inner
            .history
            .iter()
            .filter(|n| matches!(***n, Notice::Object { revision, .. } if revision > since))
            .cloned()
            .collect();
        Ok((receiver, replay))
    }

    fn publish(&self, inner: &mut Inner, notice: Notice) {
        let notice = Arc::new(notice);
        if matches!(*notice, Notice::Object { .. }) {
            inner.history.push_back(Arc::clone(&notice));
            while inner.history.len() > HISTORY {
                if let Some(Notice::Object { revision, .. }) = inner.history.pop_front().as_deref()
                {
                    inner.compacted = *revision;
                }
            }
        }
        // No watcher is no error.
        let _ = self.notices.send(notice);
    }

    /// Creates (`create`) or replaces an object; returns it as stored.
    pub fn put(&self, resource: usize, object: Value, create: bool) -> Result<Value, StoreError> {
        let Some(spec) = self.served.get(resource).copied() else {
            return Err(StoreError::Invalid("unknown resource".to_owned()));
        };
        if name_of(&object).is_none_or(str::is_empty) {
            return Err(StoreError::Invalid("metadata.name is required".to_owned()));
        }
        let key = key_of(resource, &object);
        let mut inner = self.lock();
        let exists = inner.objects.contains_key(&key);
        if create && exists {
            return Err(StoreError::Exists(format!("{} {}", spec.plural, key.2)));
        }
        let revision = if spec == EVENTS {
            self.bump()?
        } else {
            self.persist(&spec, &object)?
        };
        inner.revision = revision;
        let stored = with_metadata(object, &key, revision);
        inner.objects.insert(key.clone(), stored.clone());
        let kind = if exists {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.publish(
            &mut inner,
            Notice::Object {
                resource,
                namespace: key.1.clone(),
                kind,
                object: stored.clone(),
                revision,
            },
        );
        self.publish(&mut inner, Notice::Bookmark(revision));
        Ok(stored)
    }

    /// A new revision for a write kept in memory only (an event): the lab's datastore
    /// moves too (a write of nothing), so that resourceVersions stay one sequence and
    /// the next object written never gets the version an event already had.
    fn bump(&self) -> Result<u64, StoreError> {
        Ok(self.file.apply(&[])?)
    }

    /// Writes the model document of `object` to the lab's datastore: as the object
    /// when it loads, as raw text otherwise (a server stores what a client sends; the
    /// agent refuses it).
    fn persist(&self, spec: &Resource, object: &Value) -> Result<u64, StoreError> {
        let document = convert::to_model_document(spec, object.clone());
        let id = convert::object_id(spec, object);
        let text = serde_json::to_string_pretty(&document)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let loaded = crate::model::load_value(std::path::Path::new("request"), &document);
        Ok(match loaded {
            Ok(objects) if objects.len() == 1 && objects[0].object.id() == id => {
                self.file.apply(&[objects[0].object.clone()])?
            }
            _ => self.file.put_document(&id, &text)?,
        })
    }

    /// Deletes an object; returns it as it was.
    pub fn delete(&self, key: &Key) -> Result<Value, StoreError> {
        let Some(spec) = self.served.get(key.0).copied() else {
            return Err(StoreError::Invalid("unknown resource".to_owned()));
        };
        let mut inner = self.lock();
        let Some(object) = inner.objects.get(key).cloned() else {
            return Err(StoreError::NotFound(format!("{} {}", spec.plural, key.2)));
        };
        let revision = if spec == EVENTS {
            self.bump()?
        } else {
            self.file.delete(&[convert::object_id(&spec, &object)])?
        };
        inner.revision = revision;
        inner.objects.remove(key);
        let mut gone = object.clone();
        set_version(&mut gone, revision);
        self.publish(
            &mut inner,
            Notice::Object {
                resource: key.0,
                namespace: key.1.clone(),
                kind: EventType::Deleted,
                object: gone,
                revision,
            },
        );
        self.publish(&mut inner, Notice::Bookmark(revision));
        Ok(object)
    }

    /// Forgets the history: every watch ends, and resuming from any version before
    /// now is answered 410 (what etcd compaction does to a lagging client).
    pub fn expire(&self) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        // A write of nothing moves the revision, so that the current version itself
        // is in the past.
        let revision = self.file.apply(&[])?;
        inner.revision = revision;
        inner.compacted = revision;
        inner.history.clear();
        self.publish(&mut inner, Notice::Close(None));
        Ok(revision)
    }

    /// Ends the watches of one resource (after its permission was taken away).
    pub fn close_watches(&self, resource: usize) {
        let mut inner = self.lock();
        self.publish(&mut inner, Notice::Close(Some(resource)));
    }
}

pub fn key_of(resource: usize, object: &Value) -> Key {
    (
        resource,
        namespace_of(object).to_owned(),
        name_of(object).unwrap_or_default().to_owned(),
    )
}

fn set_version(object: &mut Value, revision: u64) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".to_owned(), revision.to_string().into());
    }
}

/// The object with the metadata the server maintains.
fn with_metadata(mut object: Value, key: &Key, revision: u64) -> Value {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    set_version(&mut object, revision);
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("uid".to_owned(), uid(key).into());
        if key.1.is_empty() {
            meta.remove("namespace");
        }
    }
    object
}

/// Whether `resource` is one of Calico's CRDs (served tier-prefixed).
pub fn is_calico_crd(resource: &Resource) -> bool {
    resource.group == CALICO_CRD_GROUP
}

#[cfg(test)]
#[expect(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
mod tests {
    use super::*;

    #[test]
    fn documents_map_to_the_resource_serving_them() {
        let served = served();
        let crd_np = resource_of(&served, "projectcalico.org/v3", "NetworkPolicy").unwrap();
        assert_eq!(served[crd_np].group, CALICO_CRD_GROUP);
        let k8s_np = resource_of(&served, "networking.k8s.io/v1", "NetworkPolicy").unwrap();
        assert_eq!(served[k8s_np].group, "networking.k8s.io");
        assert!(resource_of(&served, "apps/v1", "Deployment").is_some());
        assert!(resource_of(&served, "v1", "Secret").is_none());
    }

    #[test]
    fn events_take_their_version_from_the_one_sequence() {
        let tmp = crate::testkit::TempDir::new("apistore-events");
        let dir = tmp.path().to_owned();
        let file = FileDatastore::open(&dir).unwrap();
        let store = Store::open(file.clone()).unwrap();
        let served = store.served().to_vec();
        let ns = resource_of(&served, "v1", "Namespace").unwrap();
        let events = resource_of(&served, "events.k8s.io/v1", "Event").unwrap();
        store
            .put(ns, json!({"metadata": {"name": "dev"}}), true)
            .unwrap();
        let event = store
            .put(
                events,
                json!({"metadata": {"name": "e.1", "namespace": "default"}}),
                true,
            )
            .unwrap();
        assert_eq!(event["metadata"]["resourceVersion"], "2");
        assert_eq!(file.revision().unwrap(), 2, "the datastore moves too");
        // The next object is newer than the event, never of the same version.
        let next = store
            .put(ns, json!({"metadata": {"name": "prod"}}), true)
            .unwrap();
        assert_eq!(next["metadata"]["resourceVersion"], "3");
        assert_eq!(store.list(events, Some("default")).0.len(), 1);
    }

    #[test]
    fn writes_persist_move_the_revision_and_expire_forgets_history() {
        let tmp = crate::testkit::TempDir::new("apistore");
        let dir = tmp.path().to_owned();
        let file = FileDatastore::open(&dir).unwrap();
        let store = Store::open(file.clone()).unwrap();
        let served = store.served().to_vec();
        let ns = resource_of(&served, "v1", "Namespace").unwrap();
        let gnp = resource_of(&served, "crd.projectcalico.org/v1", "GlobalNetworkPolicy").unwrap();
        let stored = store
            .put(ns, json!({"metadata": {"name": "dev"}}), true)
            .unwrap();
        assert_eq!(stored["metadata"]["resourceVersion"], "1");
        store
            .put(
                gnp,
                json!({"metadata": {"name": "default.deny"}, "spec": {"selector": "all()"}}),
                true,
            )
            .unwrap();
        // A malformed object is stored too: the agent refuses it, not the server.
        store
            .put(
                gnp,
                json!({"metadata": {"name": "default.bad"}, "spec": {"selector": "a =="}}),
                true,
            )
            .unwrap();
        assert_eq!(store.revision(), 3);
        assert_eq!(file.revision().unwrap(), 3);
        let (_, errors) = file.list_readable().unwrap();
        assert_eq!(errors.len(), 1);
        let (_rx, replay) = store.watch(1).unwrap();
        assert_eq!(replay.len(), 2);
        // A restarted server finds the same objects under the same names.
        let again = Store::open(file.clone()).unwrap();
        let (items, revision) = again.list(gnp, None);
        assert_eq!(revision, 3);
        let mut names: Vec<&str> = items.iter().filter_map(name_of).collect();
        names.sort_unstable();
        assert_eq!(names, ["default.bad", "default.deny"]);
        assert!(again.watch(2).is_err(), "a restarted server has no history");
        store.expire().unwrap();
        assert_eq!(store.watch(3).unwrap_err(), 4);
        assert!(store.watch(4).is_ok());
        store
            .delete(&(gnp, String::new(), "default.bad".into()))
            .unwrap();
        assert_eq!(file.list_readable().unwrap().1.len(), 0);
    }
}
