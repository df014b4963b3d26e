//! Where the agent's objects come from: the [`Datastore`] trait and its
//! implementations (`file`: a directory watched with inotify; `kubernetes`: the API
//! server, watched with kube-rs; `memory`: for tests).
//!
//! A datastore answers a first [`DatastoreEvent::Reset`] with everything it holds, then
//! [`DatastoreEvent::Changes`] as objects change, the way a Kubernetes list-then-watch
//! does (a later `Reset` is a relist: it replaces everything said before). Each object
//! is loaded on its own ([`Stored::object`]), so one broken object is named alone and
//! the others still arrive; what to do with a broken object is the agent's decision.
//!
//! The agent's status is not part of the datastore: the agent publishes it
//! ([`status::AgentStatus`]) and a datastore may mirror it ([`status::StatusSink`]).

pub mod file;
pub mod kubernetes;
pub mod memory;
mod nofollow;
pub mod status;
mod watch;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use crate::model::{LoadError, Loaded, ObjectId};

/// One object as a datastore holds it.
#[derive(Debug)]
pub struct Stored {
    /// Which object this is. For a document that does not load, the object it held
    /// before when the datastore knows it (so a broken update is tied to the object it
    /// breaks), otherwise [`unreadable_id`] of its origin.
    pub id: ObjectId,
    /// The object, or why it does not load.
    pub object: Result<Loaded, LoadError>,
    /// Where the datastore keeps it, for messages (`objects/NetworkPolicy.dev.a.json`).
    pub origin: String,
}

/// Everything a datastore holds at one revision.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub revision: u64,
    pub objects: Vec<Stored>,
}

#[derive(Debug)]
pub enum Change {
    /// A new object, or a new version of one (replaces what had this id).
    Upsert(Box<Stored>),
    Delete(ObjectId),
}

#[derive(Debug)]
pub enum DatastoreEvent {
    /// Everything, replacing all earlier events (first event; a relist later).
    Reset(Snapshot),
    /// What changed up to `revision` (possibly nothing: the revision still counts, a
    /// writer waits for the agent to observe it).
    Changes { revision: u64, changes: Vec<Change> },
    /// The datastore cannot be read now; it may come back with a later event. What
    /// was read before is still the latest known content.
    Unavailable { error: DatastoreError },
}

/// What [`Datastore::next_event`] returns.
pub type EventFuture<'a> =
    Pin<Box<dyn Future<Output = Result<DatastoreEvent, DatastoreError>> + Send + 'a>>;

/// A source of objects the agent enforces. Object-safe, so the agent runs against
/// `Box<dyn Datastore>`.
pub trait Datastore: Send {
    /// What this is, for logs: `dir:/var/lib/enforcer/datastore`.
    fn describe(&self) -> String;
    /// The first call answers [`DatastoreEvent::Reset`]; later calls wait (without
    /// polling) for the next change. Cancel-safe: dropping the future before it
    /// completes loses nothing, the next call picks up what was pending (the agent
    /// selects over several event sources). An `Err` is fatal; passing trouble is an
    /// [`DatastoreEvent::Unavailable`] event.
    fn next_event(&mut self) -> EventFuture<'_>;
    /// Everything held now, in one go (for tools that do not watch).
    fn snapshot(&mut self) -> Result<Snapshot, DatastoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum DatastoreError {
    #[error("datastore {path}: {op}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file that is not what the layout says it is: a symbolic link, a directory
    /// where a document is expected, a FIFO. Never followed, never read.
    #[error("datastore {path}: refused: {what}")]
    NotRegularFile { path: PathBuf, what: &'static str },
    #[error("datastore {path}: invalid revision file content {content:?}")]
    BadRevision { path: PathBuf, content: String },
    #[error("datastore {path}: cannot encode {id}: {source}")]
    Encode {
        path: PathBuf,
        id: ObjectId,
        #[source]
        source: serde_json::Error,
    },
    #[error("datastore {path}: the directory is gone")]
    Gone { path: PathBuf },
    #[error("datastore {path}: watching for changes: {op}: {source}")]
    Watch {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The Kubernetes API cannot be read (see `kubernetes::error::KubeError`).
    #[error("Kubernetes API: {message}")]
    Kubernetes { message: String },
}

/// Kind of the id given to a document that never loaded (its name is the origin).
pub const UNREADABLE_KIND: &str = "(unreadable)";

/// The id of a document that never loaded, so it can still be named, replaced and
/// deleted.
pub fn unreadable_id(origin: &str) -> ObjectId {
    ObjectId {
        kind: UNREADABLE_KIND.to_owned(),
        namespace: String::new(),
        name: origin.to_owned(),
    }
}

/// Loads one stored document (YAML or JSON; a `List` gives several objects). A
/// document that does not load gives one entry whose id is the object it held before
/// when there was exactly one (`before`), otherwise [`unreadable_id`].
pub fn read_document(path: &Path, origin: &str, text: &str, before: &[ObjectId]) -> Vec<Stored> {
    match crate::model::load_str(path, text) {
        Ok(loaded) => loaded
            .into_iter()
            .map(|l| Stored {
                id: l.object.id(),
                object: Ok(l),
                origin: origin.to_owned(),
            })
            .collect(),
        Err(error) => vec![Stored {
            id: match before {
                [only] => only.clone(),
                _ => unreadable_id(origin),
            },
            object: Err(error),
            origin: origin.to_owned(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_document_keeps_the_id_it_had() {
        let id = ObjectId {
            kind: "NetworkPolicy".into(),
            namespace: "dev".into(),
            name: "a".into(),
        };
        let path = Path::new("objects/a.json");
        let broken = read_document(path, "a.json", "{", std::slice::from_ref(&id));
        assert_eq!(broken.len(), 1);
        assert_eq!(broken[0].id, id);
        assert!(broken[0].object.is_err());
        let never = read_document(path, "a.json", "{", &[]);
        assert_eq!(never[0].id, unreadable_id("a.json"));
        let good = read_document(
            path,
            "a.json",
            r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"dev"}}"#,
            &[],
        );
        assert_eq!(good.len(), 1);
        assert_eq!(good[0].id.kind, "Namespace");
        assert!(good[0].object.is_ok());
    }
}
