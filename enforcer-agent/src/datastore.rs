//! The file datastore: a directory the agent watches, written by `enforcer lab` (or by
//! an operator) the way the Kubernetes API would be.
//!
//! Layout under the root:
//! - `objects/<kind>.<namespace>.<name>.json`: one object per file, a complete document
//!   (`Object::to_document`), so it reads back with the ordinary loader;
//! - `revision`: a decimal counter, bumped after every change (written last, atomically);
//! - `status.json`: written by the agent ([`AgentStatus`]) after each reconcile.
//!
//! Writers replace files by rename, so a reader never sees half a file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{Loaded, Object, ObjectId};

#[derive(Debug, thiserror::Error)]
pub enum DatastoreError {
    #[error("datastore {path}: {op}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("datastore {path}: invalid revision file content {content:?}")]
    BadRevision { path: PathBuf, content: String },
    #[error("datastore {path}: cannot encode {id}: {source}")]
    Encode {
        path: PathBuf,
        id: ObjectId,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Load(#[from] crate::model::LoadError),
}

/// What the agent last did with the datastore, read by `lab probe` to wait for it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AgentStatus {
    /// Highest datastore revision the agent has read.
    pub observed_revision: u64,
    /// Revision whose policy is enforced now (may lag `observed_revision` when a
    /// newer revision was refused: then `error` says why and the old policy stays).
    pub applied_revision: u64,
    /// Why the last observed revision was refused, if it was.
    pub error: Option<String>,
    /// Endpoints whose interfaces carry the programs.
    pub endpoints_attached: usize,
    /// Time the last applied revision took from read to enforced, in microseconds.
    pub last_apply_us: u64,
    /// Policy generation live in the maps.
    pub generation: u32,
}

#[derive(Clone, Debug)]
pub struct FileDatastore {
    root: PathBuf,
}

impl FileDatastore {
    /// Opens (creating if needed) a datastore directory.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, DatastoreError> {
        let root = root.into();
        let objects = root.join("objects");
        std::fs::create_dir_all(&objects).map_err(|source| DatastoreError::Io {
            op: "create directory",
            path: objects,
            source,
        })?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn status_path(&self) -> PathBuf {
        self.root.join("status.json")
    }

    /// The current revision (0 before the first write).
    pub fn revision(&self) -> Result<u64, DatastoreError> {
        let path = self.root.join("revision");
        match std::fs::read_to_string(&path) {
            Ok(content) => content
                .trim()
                .parse()
                .map_err(|_| DatastoreError::BadRevision { path, content }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(source) => Err(DatastoreError::Io {
                op: "read",
                path,
                source,
            }),
        }
    }

    /// Every stored object, in file-name order.
    pub fn list(&self) -> Result<Vec<Loaded>, DatastoreError> {
        Ok(crate::model::load_paths(&[self.root.join("objects")])?)
    }

    /// Every object that reads back, and the errors of those that do not. For readers
    /// that must go on past a broken object (the lab's own bookkeeping), unlike the
    /// agent, which refuses a revision with any broken object.
    pub fn list_readable(
        &self,
    ) -> Result<(Vec<Loaded>, Vec<crate::model::LoadError>), DatastoreError> {
        let dir = self.root.join("objects");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|source| DatastoreError::Io {
                op: "list",
                path: dir.clone(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        let mut objects = Vec::new();
        let mut errors = Vec::new();
        for file in files {
            match crate::model::load_paths(std::slice::from_ref(&file)) {
                Ok(loaded) => objects.extend(loaded),
                Err(e) => errors.push(e),
            }
        }
        Ok((objects, errors))
    }

    /// Creates or replaces objects, then bumps the revision. Returns the new revision.
    pub fn apply(&self, objects: &[Object]) -> Result<u64, DatastoreError> {
        for object in objects {
            let id = object.id();
            let path = self.object_path(&id);
            let text = serde_json::to_string_pretty(&object.to_document()).map_err(|source| {
                DatastoreError::Encode {
                    path: path.clone(),
                    id: id.clone(),
                    source,
                }
            })?;
            write_atomic(&path, text.as_bytes())?;
        }
        self.bump()
    }

    /// Deletes objects (missing ones are ignored), then bumps the revision.
    pub fn delete(&self, ids: &[ObjectId]) -> Result<u64, DatastoreError> {
        for id in ids {
            let path = self.object_path(id);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(DatastoreError::Io {
                        op: "remove",
                        path,
                        source,
                    });
                }
            }
        }
        self.bump()
    }

    /// Writes a raw file into `objects/` (tests use it to plant bad input the way a
    /// broken client would) and bumps the revision.
    pub fn put_raw(&self, file_name: &str, text: &str) -> Result<u64, DatastoreError> {
        write_atomic(&self.root.join("objects").join(file_name), text.as_bytes())?;
        self.bump()
    }

    pub fn read_status(&self) -> Result<Option<AgentStatus>, DatastoreError> {
        let path = self.status_path();
        match std::fs::read(&path) {
            // A torn or foreign status file reads as "no status yet".
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(DatastoreError::Io {
                op: "read",
                path,
                source,
            }),
        }
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
        write_atomic(&path, &text)
    }

    fn object_path(&self, id: &ObjectId) -> PathBuf {
        let kind = id.kind.replace('/', "_");
        let ns = if id.namespace.is_empty() {
            "_"
        } else {
            &id.namespace
        };
        self.root
            .join("objects")
            .join(format!("{kind}.{ns}.{}.json", id.name))
    }

    fn bump(&self) -> Result<u64, DatastoreError> {
        let next = self.revision()? + 1;
        write_atomic(&self.root.join("revision"), next.to_string().as_bytes())?;
        Ok(next)
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DatastoreError> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|source| DatastoreError::Io {
        op: "write",
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, path).map_err(|source| DatastoreError::Io {
        op: "rename",
        path: path.to_path_buf(),
        source,
    })
}
