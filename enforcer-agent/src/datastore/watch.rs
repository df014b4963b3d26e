//! Inotify on a datastore directory, read from tokio: which documents changed, whether
//! the revision was written, whether the watcher lost track (then everything is read
//! again).

use std::collections::BTreeSet;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent, WatchDescriptor};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::DatastoreError;

/// What the events read so far say. Kept by the caller across calls, so nothing read
/// is lost when a wait is cancelled.
#[derive(Debug, Default)]
pub struct Noticed {
    /// Names under `objects/` that were written, created, renamed or removed.
    pub documents: BTreeSet<String>,
    /// The revision file was written (the writer's commit point).
    pub revision: bool,
    /// Events were lost, or `objects/` was replaced: read everything again.
    pub rescan: bool,
}

/// The inotify descriptor, for [`AsyncFd`] (which wants `AsRawFd`).
struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl AsFd for InotifyFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

pub struct DirWatch {
    fd: AsyncFd<InotifyFd>,
    root: WatchDescriptor,
    objects: Option<WatchDescriptor>,
    root_path: PathBuf,
    objects_path: PathBuf,
}

/// The revision and `objects/` are replaced by rename or written in place; links and
/// removals count as changes too. `IN_MODIFY` is left out on purpose: a writer's
/// `IN_CLOSE_WRITE` says the same once the content is complete.
const DOCUMENT_EVENTS: AddWatchFlags = AddWatchFlags::IN_CLOSE_WRITE
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_CREATE)
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_ATTRIB)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_MOVE_SELF)
    .union(AddWatchFlags::IN_ONLYDIR)
    .union(AddWatchFlags::IN_DONT_FOLLOW);

/// Events that mean the watched directory itself is gone or replaced.
const SELF_EVENTS: AddWatchFlags = AddWatchFlags::IN_DELETE_SELF
    .union(AddWatchFlags::IN_MOVE_SELF)
    .union(AddWatchFlags::IN_IGNORED)
    .union(AddWatchFlags::IN_UNMOUNT);

impl DirWatch {
    /// Starts watching `root` (for the revision and for `objects/` being replaced) and
    /// `objects/`. Must be called from within a tokio runtime.
    pub fn new(root: &Path, objects: &Path) -> Result<Self, DatastoreError> {
        let watch_err = |op, path: &Path| {
            let path = path.to_path_buf();
            move |e: nix::errno::Errno| DatastoreError::Watch {
                op,
                path,
                source: e.into(),
            }
        };
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(watch_err("inotify_init", root))?;
        let root_wd = inotify
            .add_watch(root, DOCUMENT_EVENTS)
            .map_err(watch_err("watch", root))?;
        // SAFETY: `InotifyFd` owns the inotify descriptor and `AsyncFd` owns it: the
        // descriptor stays open, and the same, as long as it is registered.
        let fd = unsafe { AsyncFd::register_with_interest(InotifyFd(inotify), Interest::READABLE) }
            .map_err(|e| DatastoreError::Watch {
                op: "register with tokio",
                path: root.to_path_buf(),
                source: e.into(),
            })?;
        let mut watch = Self {
            fd,
            root: root_wd,
            objects: None,
            root_path: root.to_path_buf(),
            objects_path: objects.to_path_buf(),
        };
        watch.rewatch_objects()?;
        Ok(watch)
    }

    /// (Re)starts watching `objects/`, after it was replaced. Missing: not watched
    /// until the root says it is back.
    pub fn rewatch_objects(&mut self) -> Result<(), DatastoreError> {
        if let Some(old) = self.objects.take() {
            // The watch is usually gone with the directory already.
            let _ = self.fd.get_ref().0.rm_watch(old);
        }
        match self
            .fd
            .get_ref()
            .0
            .add_watch(&self.objects_path, DOCUMENT_EVENTS)
        {
            Ok(wd) => {
                self.objects = Some(wd);
                Ok(())
            }
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => Ok(()),
            Err(e) => Err(DatastoreError::Watch {
                op: "watch",
                path: self.objects_path.clone(),
                source: e.into(),
            }),
        }
    }

    /// Waits for events and records what they say into `noticed`.
    pub async fn wait(&self, noticed: &mut Noticed) -> Result<(), DatastoreError> {
        loop {
            let mut guard = self
                .fd
                .readable()
                .await
                .map_err(|source| DatastoreError::Watch {
                    op: "wait",
                    path: self.root_path.clone(),
                    source,
                })?;
            match guard.try_io(|fd| fd.get_ref().0.read_events().map_err(std::io::Error::from)) {
                Ok(Ok(events)) => {
                    for event in &events {
                        self.record(event, noticed);
                    }
                    return Ok(());
                }
                Ok(Err(source)) => {
                    return Err(DatastoreError::Watch {
                        op: "read events",
                        path: self.root_path.clone(),
                        source,
                    });
                }
                // Spurious readiness: wait again.
                Err(_would_block) => {}
            }
        }
    }

    fn record(&self, event: &InotifyEvent, noticed: &mut Noticed) {
        if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
            noticed.rescan = true;
            return;
        }
        let name = event.name.as_ref().map(|n| n.to_string_lossy());
        if event.wd == self.root {
            match name.as_deref() {
                Some("revision") => noticed.revision = true,
                Some("objects") => noticed.rescan = true,
                _ if event.mask.intersects(SELF_EVENTS) => noticed.rescan = true,
                _ => {}
            }
        } else if Some(event.wd) == self.objects {
            match name {
                Some(name) => {
                    noticed.documents.insert(name.into_owned());
                }
                None if event.mask.intersects(SELF_EVENTS) => noticed.rescan = true,
                None => {}
            }
        }
    }
}
