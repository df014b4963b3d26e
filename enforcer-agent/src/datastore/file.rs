//! The file datastore: a directory written by `enforcer lab` (or by an operator) the
//! way the Kubernetes API would be, and watched by the agent with inotify.
//!
//! Layout under the root:
//! - `objects/<kind>.<namespace>.<name>.json`: one object per file, a complete document
//!   (`Object::to_document`), so it reads back with the ordinary loader (`.yaml` and
//!   `.yml` documents are read too; other names, hidden names and subdirectories are
//!   not documents);
//! - `revision`: a decimal counter, bumped after every change (written last, atomically):
//!   the commit point. Changes to `objects/` are published when it moves, so a
//!   multi-object write is seen whole;
//! - `status.json`: the agent's [`AgentStatus`], mirrored after each reconcile (several
//!   agents sharing one datastore each name their own, [`FileDatastore::with_status_file`]).
//!
//! Writers replace files by rename, so a reader never sees half a file. Nothing under
//! the root is followed if it is a symbolic link (see `nofollow`). The watcher re-reads
//! only the documents inotify names, and publishes only those whose content changed.

use std::collections::BTreeMap;
use std::hash::{Hash as _, Hasher as _};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::model::{LoadError, Loaded, Object, ObjectId};

use super::nofollow;
use super::status::{AgentStatus, StatusSink};
use super::watch::{DirWatch, Noticed};
use super::{
    Change, Datastore, DatastoreError, DatastoreEvent, EventFuture, Snapshot, Stored,
    read_document, unreadable_id,
};

const OBJECTS: &str = "objects";
const REVISION: &str = "revision";
const STATUS: &str = "status.json";

/// A datastore directory. Cloning gives another handle on the same directory (a
/// clone does not share the original's watch).
pub struct FileDatastore {
    dir: Layout,
    /// The status file's name under the root.
    status_file: String,
    watching: Option<Box<Watching>>,
}

impl Clone for FileDatastore {
    fn clone(&self) -> Self {
        Self {
            dir: self.dir.clone(),
            status_file: self.status_file.clone(),
            watching: None,
        }
    }
}

impl std::fmt::Debug for FileDatastore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDatastore")
            .field("root", &self.dir.root)
            .field("status_file", &self.status_file)
            .field("watching", &self.watching.is_some())
            .finish()
    }
}

/// What the watcher knows between events.
struct Watching {
    watch: DirWatch,
    noticed: Noticed,
    /// Document name → what it held when last published.
    documents: BTreeMap<String, Known>,
    /// Revision last published.
    revision: u64,
    /// The last read failed; nothing is retried before the next event.
    stalled: bool,
}

/// A document as last published.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Known {
    /// Hash of its content (`None`: it could not be read, so any event re-reads it).
    content: Option<u64>,
    ids: Vec<ObjectId>,
}

/// Whether a name under `objects/` is a document.
fn is_document(name: &str) -> bool {
    !name.starts_with('.')
        && Path::new(name)
            .extension()
            .is_some_and(|e| e == "json" || e == "yaml" || e == "yml")
}

fn content_hash(bytes: &[u8]) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// `<kind>.<namespace or _>.<name>.json`; a `/` in any part (an API group, a name no
/// API server would accept) becomes `_`, so a name never leaves `objects/`.
fn document_name(id: &ObjectId) -> String {
    let ns = if id.namespace.is_empty() {
        "_"
    } else {
        &id.namespace
    };
    format!("{}.{ns}.{}.json", id.kind, id.name).replace('/', "_")
}

/// The directory's layout: reading it, without watch state.
#[derive(Clone, Debug)]
struct Layout {
    root: PathBuf,
}

impl Layout {
    fn objects_path(&self) -> PathBuf {
        self.root.join(OBJECTS)
    }

    fn root_fd(&self) -> Result<OwnedFd, DatastoreError> {
        nofollow::open_root(&self.root)
    }

    fn objects_fd(&self, root: impl AsFd) -> Result<OwnedFd, DatastoreError> {
        nofollow::open_dir(root, OBJECTS, &self.objects_path())
    }

    fn revision(&self) -> Result<u64, DatastoreError> {
        let path = self.root.join(REVISION);
        let Some(bytes) = nofollow::read(self.root_fd()?, REVISION, &path)? else {
            return Ok(0);
        };
        let content = String::from_utf8_lossy(&bytes).into_owned();
        content
            .trim()
            .parse()
            .map_err(|_| DatastoreError::BadRevision { path, content })
    }

    /// Reads the revision, then every document. `before`: what each document held
    /// when last published (a broken document keeps naming that object).
    fn scan(
        &self,
        before: &BTreeMap<String, Known>,
    ) -> Result<(Snapshot, BTreeMap<String, Known>), DatastoreError> {
        let revision = self.revision()?;
        let dir = self.objects_fd(self.root_fd()?)?;
        let mut names: Vec<String> = nofollow::list(&dir, &self.objects_path())?
            .into_iter()
            .filter(|n| is_document(n))
            .collect();
        names.sort();
        let mut objects = Vec::new();
        let mut documents = BTreeMap::new();
        for name in names {
            let known_ids = before.get(&name).map_or(&[][..], |k| &k.ids[..]);
            if let Some((known, stored)) = self.read_document(&dir, &name, known_ids) {
                documents.insert(name, known);
                objects.extend(stored);
            }
        }
        Ok((Snapshot { revision, objects }, documents))
    }

    /// Reads one document; `None` when it is gone. A document that cannot be read (a
    /// link, a directory, not UTF-8) is an entry that does not load.
    fn read_document(
        &self,
        dir: impl AsFd,
        name: &str,
        before: &[ObjectId],
    ) -> Option<(Known, Vec<Stored>)> {
        let path = self.objects_path().join(name);
        let origin = format!("{OBJECTS}/{name}");
        let refused = |source: std::io::Error| {
            let stored = Stored {
                id: match before {
                    [only] => only.clone(),
                    _ => unreadable_id(&origin),
                },
                object: Err(LoadError::Read {
                    path: path.clone(),
                    source,
                }),
                origin: origin.clone(),
            };
            let known = Known {
                content: None,
                ids: vec![stored.id.clone()],
            };
            Some((known, vec![stored]))
        };
        let bytes = match nofollow::read(dir, name, &path) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return None,
            Err(DatastoreError::Io { source, .. }) => return refused(source),
            Err(DatastoreError::NotRegularFile { what, .. }) => {
                return refused(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("refused, never followed or read: {what}"),
                ));
            }
            Err(other) => return refused(std::io::Error::other(other.to_string())),
        };
        let content = Some(content_hash(&bytes));
        let Ok(text) = String::from_utf8(bytes) else {
            return refused(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not UTF-8",
            ));
        };
        let stored = read_document(&path, &origin, &text, before);
        let known = Known {
            content,
            ids: stored.iter().map(|s| s.id.clone()).collect(),
        };
        Some((known, stored))
    }
}

impl FileDatastore {
    /// Opens (creating if needed) a datastore directory.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, DatastoreError> {
        let dir = Layout { root: root.into() };
        std::fs::create_dir_all(&dir.root).map_err(|source| DatastoreError::Io {
            op: "create directory",
            path: dir.root.clone(),
            source,
        })?;
        let root_fd = dir.root_fd()?;
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o755);
        match nix::sys::stat::mkdirat(&root_fd, OBJECTS, mode) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => {
                return Err(DatastoreError::Io {
                    op: "create directory",
                    path: dir.objects_path(),
                    source: e.into(),
                });
            }
        }
        // A link in place of `objects/` is refused here rather than at first use.
        dir.objects_fd(&root_fd)?;
        Ok(Self {
            dir,
            status_file: STATUS.to_owned(),
            watching: None,
        })
    }

    /// The same datastore with the status read and written as `name` (a plain file
    /// name under the root) instead of `status.json`: one per agent when the agents of
    /// several nodes share the datastore.
    #[must_use]
    pub fn with_status_file(mut self, name: &str) -> Self {
        name.clone_into(&mut self.status_file);
        self
    }

    pub fn root(&self) -> &Path {
        &self.dir.root
    }

    pub fn status_path(&self) -> PathBuf {
        self.dir.root.join(&self.status_file)
    }

    /// The current revision (0 before the first write).
    pub fn revision(&self) -> Result<u64, DatastoreError> {
        self.dir.revision()
    }

    /// Every stored object, in file-name order; the first document that does not
    /// load is an error.
    pub fn list(&self) -> Result<Vec<Loaded>, DatastoreError> {
        let (snapshot, _) = self.dir.scan(&BTreeMap::new())?;
        snapshot
            .objects
            .into_iter()
            .map(|s| s.object.map_err(DatastoreError::from))
            .collect()
    }

    /// Every object that reads back, and the errors of those that do not. For readers
    /// that must go on past a broken object (the lab's own bookkeeping), unlike the
    /// agent, which refuses a revision with any broken object.
    pub fn list_readable(&self) -> Result<(Vec<Loaded>, Vec<LoadError>), DatastoreError> {
        let (snapshot, _) = self.dir.scan(&BTreeMap::new())?;
        let mut objects = Vec::new();
        let mut errors = Vec::new();
        for stored in snapshot.objects {
            match stored.object {
                Ok(loaded) => objects.push(loaded),
                Err(e) => errors.push(e),
            }
        }
        Ok((objects, errors))
    }

    /// Creates or replaces objects, then bumps the revision. Returns the new revision.
    pub fn apply(&self, objects: &[Object]) -> Result<u64, DatastoreError> {
        let root = self.dir.root_fd()?;
        let dir = self.dir.objects_fd(&root)?;
        for object in objects {
            let id = object.id();
            let name = document_name(&id);
            let path = self.dir.objects_path().join(&name);
            let text = serde_json::to_string_pretty(&object.to_document()).map_err(|source| {
                DatastoreError::Encode {
                    path: path.clone(),
                    id: id.clone(),
                    source,
                }
            })?;
            nofollow::write_atomic(&dir, &name, text.as_bytes(), 0o644, &path)?;
        }
        self.bump(&root)
    }

    /// Deletes objects (missing ones are ignored), then bumps the revision.
    pub fn delete(&self, ids: &[ObjectId]) -> Result<u64, DatastoreError> {
        let root = self.dir.root_fd()?;
        let dir = self.dir.objects_fd(&root)?;
        for id in ids {
            let name = document_name(id);
            nofollow::remove(&dir, &name, &self.dir.objects_path().join(&name))?;
        }
        self.bump(&root)
    }

    /// Writes a raw file into `objects/` (tests use it to plant bad input the way a
    /// broken client would) and bumps the revision.
    pub fn put_raw(&self, file_name: &str, text: &str) -> Result<u64, DatastoreError> {
        let root = self.dir.root_fd()?;
        let dir = self.dir.objects_fd(&root)?;
        let name = file_name.replace('/', "_");
        let path = self.dir.objects_path().join(&name);
        nofollow::write_atomic(&dir, &name, text.as_bytes(), 0o644, &path)?;
        self.bump(&root)
    }

    pub fn read_status(&self) -> Result<Option<AgentStatus>, DatastoreError> {
        let bytes = nofollow::read(self.dir.root_fd()?, &self.status_file, &self.status_path())?;
        // A torn or foreign status file reads as "no status yet".
        Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    pub fn write_status(&self, status: &AgentStatus) -> Result<(), DatastoreError> {
        let path = self.status_path();
        let text = serde_json::to_vec_pretty(status).map_err(|source| DatastoreError::Encode {
            path: path.clone(),
            id: ObjectId {
                kind: "AgentStatus".into(),
                namespace: String::new(),
                name: String::new(),
            },
            source,
        })?;
        // World-readable on purpose: it says what is enforced, not what the policy is.
        nofollow::write_atomic(self.dir.root_fd()?, &self.status_file, &text, 0o644, &path)
    }

    fn bump(&self, root: impl AsFd) -> Result<u64, DatastoreError> {
        let next = self.dir.revision()? + 1;
        let path = self.dir.root.join(REVISION);
        nofollow::write_atomic(root, REVISION, next.to_string().as_bytes(), 0o644, &path)?;
        Ok(next)
    }

    async fn watch_next(&mut self) -> Result<DatastoreEvent, DatastoreError> {
        let Some(watching) = self.watching.as_deref_mut() else {
            // Watch first, then read: a write after the read is an event, not a loss.
            let watch = DirWatch::new(&self.dir.root, &self.dir.objects_path())?;
            let (snapshot, documents) = self.dir.scan(&BTreeMap::new())?;
            self.watching = Some(Box::new(Watching {
                watch,
                noticed: Noticed::default(),
                documents,
                revision: snapshot.revision,
                stalled: false,
            }));
            return Ok(DatastoreEvent::Reset(snapshot));
        };
        loop {
            // After a failed read, nothing is retried before the next event (no spin).
            if !watching.stalled {
                if watching.noticed.rescan {
                    return Ok(watching.rescan(&self.dir));
                }
                if std::mem::take(&mut watching.noticed.revision) {
                    match self.dir.revision() {
                        Err(error) => return Ok(DatastoreEvent::Unavailable { error }),
                        // The directory was recreated: start over.
                        Ok(revision) if revision < watching.revision => {
                            return Ok(watching.rescan(&self.dir));
                        }
                        Ok(revision) if revision > watching.revision => {
                            return Ok(watching.publish(&self.dir, revision));
                        }
                        // Rewritten, not moved: nothing new is committed.
                        Ok(_) => {}
                    }
                }
            }
            // The only await: what it reads is recorded in `noticed` before it returns.
            watching.watch.wait(&mut watching.noticed).await?;
            watching.stalled = false;
        }
    }
}

impl Watching {
    /// A full read published as a relist, after lost events or a replaced directory.
    fn rescan(&mut self, dir: &Layout) -> DatastoreEvent {
        self.noticed = Noticed::default();
        // Stay set if this fails: the next event tries again.
        self.noticed.rescan = true;
        self.stalled = true;
        if let Err(error) = self.watch.rewatch_objects() {
            return DatastoreEvent::Unavailable { error };
        }
        match dir.scan(&self.documents) {
            Ok((snapshot, documents)) => {
                self.noticed.rescan = false;
                self.stalled = false;
                self.documents = documents;
                self.revision = snapshot.revision;
                DatastoreEvent::Reset(snapshot)
            }
            Err(error) => DatastoreEvent::Unavailable { error },
        }
    }

    /// Re-reads the documents inotify named since the last event and publishes those
    /// whose content changed, as of `revision`.
    fn publish(&mut self, dir: &Layout, revision: u64) -> DatastoreEvent {
        let objects = match dir.root_fd().and_then(|root| dir.objects_fd(root)) {
            Ok(fd) => fd,
            Err(error) => {
                self.noticed.rescan = true;
                self.stalled = true;
                return DatastoreEvent::Unavailable { error };
            }
        };
        let mut changes = Vec::new();
        for name in std::mem::take(&mut self.noticed.documents) {
            if !is_document(&name) {
                continue;
            }
            let known = self.documents.remove(&name);
            let before = known.as_ref().map_or(&[][..], |k| &k.ids[..]);
            let Some((now, stored)) = dir.read_document(&objects, &name, before) else {
                changes.extend(before.iter().cloned().map(Change::Delete));
                continue;
            };
            let unchanged = known
                .as_ref()
                .is_some_and(|k| k.content.is_some() && *k == now);
            if !unchanged {
                changes.extend(
                    before
                        .iter()
                        .filter(|id| !now.ids.contains(id))
                        .cloned()
                        .map(Change::Delete),
                );
                changes.extend(stored.into_iter().map(|s| Change::Upsert(Box::new(s))));
            }
            self.documents.insert(name, now);
        }
        self.revision = revision;
        DatastoreEvent::Changes { revision, changes }
    }
}

impl Datastore for FileDatastore {
    fn describe(&self) -> String {
        format!("dir:{}", self.dir.root.display())
    }

    fn next_event(&mut self) -> EventFuture<'_> {
        Box::pin(self.watch_next())
    }

    fn snapshot(&mut self) -> Result<Snapshot, DatastoreError> {
        Ok(self.dir.scan(&BTreeMap::new())?.0)
    }
}

impl StatusSink for FileDatastore {
    fn publish(&mut self, status: &AgentStatus) -> Result<(), DatastoreError> {
        self.write_status(status)
    }
}

#[cfg(test)]
mod tests;
