//! An in-memory datastore for tests: a [`MemoryWriter`] changes it, the agent reads it
//! through the [`Datastore`] trait like any other. Documents are kept as text and
//! loaded with the ordinary loader, so a broken document fails the way a broken file
//! or API object does.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use crate::model::{Object, ObjectId};

use super::{
    Change, Datastore, DatastoreError, DatastoreEvent, EventFuture, Snapshot, Stored, read_document,
};

#[derive(Debug, Default)]
struct Content {
    revision: u64,
    /// id → document text.
    documents: BTreeMap<ObjectId, String>,
    /// Ids changed since the reader's last event, in order.
    pending: Vec<ObjectId>,
}

/// The reading side (give it to the agent).
pub struct MemoryDatastore {
    content: Arc<Mutex<Content>>,
    revisions: watch::Receiver<u64>,
    started: bool,
    /// Revision of the last event returned.
    published: u64,
}

/// The writing side (keep it in the test).
#[derive(Clone)]
pub struct MemoryWriter {
    content: Arc<Mutex<Content>>,
    revisions: Arc<watch::Sender<u64>>,
}

impl MemoryDatastore {
    pub fn new() -> (Self, MemoryWriter) {
        let content = Arc::new(Mutex::new(Content::default()));
        let (tx, rx) = watch::channel(0);
        (
            Self {
                content: Arc::clone(&content),
                revisions: rx,
                started: false,
                published: 0,
            },
            MemoryWriter {
                content,
                revisions: Arc::new(tx),
            },
        )
    }
}

fn origin(id: &ObjectId) -> String {
    format!("memory/{id}")
}

fn stored(id: &ObjectId, text: &str) -> Vec<Stored> {
    let origin = origin(id);
    read_document(Path::new(&origin), &origin, text, std::slice::from_ref(id))
}

impl Content {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            revision: self.revision,
            objects: self
                .documents
                .iter()
                .flat_map(|(id, text)| stored(id, text))
                .collect(),
        }
    }
}

impl MemoryWriter {
    fn change(&self, f: impl FnOnce(&mut Content)) -> u64 {
        let mut content = self.content.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut content);
        content.revision += 1;
        let revision = content.revision;
        drop(content);
        self.revisions.send_replace(revision);
        revision
    }

    /// Creates or replaces objects; returns the new revision.
    pub fn apply(&self, objects: &[Object]) -> u64 {
        self.change(|content| {
            for object in objects {
                let id = object.id();
                content
                    .documents
                    .insert(id.clone(), object.to_document().to_string());
                content.pending.push(id);
            }
        })
    }

    /// Stores a document as text under `id`, as a client that skipped validation
    /// would; returns the new revision.
    pub fn put_text(&self, id: &ObjectId, text: &str) -> u64 {
        self.change(|content| {
            content.documents.insert(id.clone(), text.to_owned());
            content.pending.push(id.clone());
        })
    }

    /// Deletes objects; returns the new revision.
    pub fn delete(&self, ids: &[ObjectId]) -> u64 {
        self.change(|content| {
            for id in ids {
                content.documents.remove(id);
                content.pending.push(id.clone());
            }
        })
    }
}

impl MemoryDatastore {
    async fn next(&mut self) -> Result<DatastoreEvent, DatastoreError> {
        loop {
            // Marked seen before looking: a write after the look wakes `changed`.
            self.revisions.borrow_and_update();
            {
                let mut content = self.content.lock().unwrap_or_else(PoisonError::into_inner);
                if !self.started {
                    self.started = true;
                    self.published = content.revision;
                    content.pending.clear();
                    return Ok(DatastoreEvent::Reset(content.snapshot()));
                }
                if content.revision > self.published {
                    self.published = content.revision;
                    let ids = std::mem::take(&mut content.pending);
                    let mut changes = Vec::new();
                    for id in ids {
                        match content.documents.get(&id) {
                            Some(text) => {
                                changes.extend(
                                    stored(&id, text)
                                        .into_iter()
                                        .map(|s| Change::Upsert(Box::new(s))),
                                );
                            }
                            None => changes.push(Change::Delete(id)),
                        }
                    }
                    return Ok(DatastoreEvent::Changes {
                        revision: content.revision,
                        changes,
                    });
                }
            }
            if self.revisions.changed().await.is_err() {
                // The writer is gone: nothing will change any more.
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Datastore for MemoryDatastore {
    fn describe(&self) -> String {
        "memory".to_owned()
    }

    fn next_event(&mut self) -> EventFuture<'_> {
        Box::pin(self.next())
    }

    fn snapshot(&mut self) -> Result<Snapshot, DatastoreError> {
        Ok(self
            .content
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .snapshot())
    }
}
