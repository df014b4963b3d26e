//! File access inside a datastore directory that never follows a symbolic link.
//!
//! The agent runs as root and the datastore may be writable by others (a lab user, a
//! sidecar): a link planted as `objects/x.json` must not make the agent read
//! `/etc/shadow` into a status message, a link planted as `status.json` must not make
//! it overwrite a file elsewhere, and a link loop must not hang or crash it. So every
//! name is resolved relative to a directory descriptor with `O_NOFOLLOW`, only regular
//! files are read, and writes go to a fresh `O_EXCL` file renamed over the target
//! (`rename` replaces a link, it never writes through one). The datastore root itself
//! is the operator's argument and is resolved normally.

use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::DatastoreError;

/// Larger documents are refused rather than read (Kubernetes caps objects at 1.5 MiB).
pub const MAX_FILE_BYTES: u64 = 16 << 20;

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(Errno) -> DatastoreError {
    let path = path.to_path_buf();
    move |e| DatastoreError::Io {
        op,
        path,
        source: e.into(),
    }
}

/// Opens the directory `name` in `parent`, refusing a symbolic link. `path` names it
/// in errors.
pub fn open_dir(parent: impl AsFd, name: &str, path: &Path) -> Result<OwnedFd, DatastoreError> {
    nix::fcntl::openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::ENOENT => DatastoreError::Gone {
            path: path.to_path_buf(),
        },
        Errno::ELOOP => DatastoreError::NotRegularFile {
            path: path.to_path_buf(),
            what: "a symbolic link where a directory is expected",
        },
        Errno::ENOTDIR => DatastoreError::NotRegularFile {
            path: path.to_path_buf(),
            what: "not a directory",
        },
        other => io_err("open directory", path)(other),
    })
}

/// Opens the datastore root, the operator's own argument: resolved like any path.
pub fn open_root(path: &Path) -> Result<OwnedFd, DatastoreError> {
    nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::ENOENT => DatastoreError::Gone {
            path: path.to_path_buf(),
        },
        other => io_err("open directory", path)(other),
    })
}

/// Reads the regular file `name` in `dir`; `None` when there is none. `path` names it
/// in errors.
pub fn read(dir: impl AsFd, name: &str, path: &Path) -> Result<Option<Vec<u8>>, DatastoreError> {
    let fd = match nix::fcntl::openat(
        dir,
        name,
        // O_NONBLOCK: opening a FIFO planted under this name must not block.
        OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(Errno::ELOOP) => {
            return Err(DatastoreError::NotRegularFile {
                path: path.to_path_buf(),
                what: "a symbolic link",
            });
        }
        Err(e) => return Err(io_err("open", path)(e)),
    };
    let mut file = std::fs::File::from(fd);
    let io = |op| {
        move |source| DatastoreError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    };
    let meta = file.metadata().map_err(io("stat"))?;
    if !meta.file_type().is_file() {
        return Err(DatastoreError::NotRegularFile {
            path: path.to_path_buf(),
            what: if meta.is_dir() {
                "a directory"
            } else {
                "not a regular file"
            },
        });
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(DatastoreError::NotRegularFile {
            path: path.to_path_buf(),
            what: "larger than 16 MiB",
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow after the stat: read at most one byte past the cap to see it.
    (&mut file)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io("read"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(DatastoreError::NotRegularFile {
            path: path.to_path_buf(),
            what: "larger than 16 MiB",
        });
    }
    Ok(Some(bytes))
}

/// Replaces `name` in `dir` with `bytes` atomically: a reader sees the old or the new
/// content, never part of it, and a link at `name` is replaced, not followed.
pub fn write_atomic(
    dir: impl AsFd,
    name: &str,
    bytes: &[u8],
    mode: u32,
    path: &Path,
) -> Result<(), DatastoreError> {
    let dir = dir.as_fd();
    // Hidden and without a manifest extension: watchers and loaders skip it.
    let tmp = format!(".{name}.tmp.{}", std::process::id());
    match nix::unistd::unlinkat(dir, tmp.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(io_err("remove stale temporary", path)(e)),
    }
    let fd = nix::fcntl::openat(
        dir,
        tmp.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(mode),
    )
    .map_err(io_err("create temporary", path))?;
    let mut file = std::fs::File::from(fd);
    if let Err(source) = file.write_all(bytes) {
        let _ = nix::unistd::unlinkat(dir, tmp.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
        return Err(DatastoreError::Io {
            op: "write",
            path: path.to_path_buf(),
            source,
        });
    }
    drop(file);
    nix::fcntl::renameat(dir, tmp.as_str(), dir, name).map_err(io_err("rename", path))
}

/// Removes `name` from `dir` (a link is removed, not its target); a missing file is
/// not an error.
pub fn remove(dir: impl AsFd, name: &str, path: &Path) -> Result<(), DatastoreError> {
    match nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(io_err("remove", path)(e)),
    }
}

/// Names in a directory (not `.`/`..`), unsorted.
pub fn list(dir: impl AsFd, path: &Path) -> Result<Vec<String>, DatastoreError> {
    let mut listing = nix::dir::Dir::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err("list", path))?;
    let mut names = Vec::new();
    for entry in listing.iter() {
        let entry = entry.map_err(io_err("list", path))?;
        let name = entry.file_name().to_string_lossy();
        if name != "." && name != ".." {
            names.push(name.into_owned());
        }
    }
    Ok(names)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing test panics with context")]
mod tests {
    use super::*;

    use crate::testkit::TempDir;

    #[test]
    fn links_are_refused_and_replaced_never_followed() {
        let tmp = TempDir::new("nofollow-links");
        let dir = tmp.path().to_owned();
        let secret = dir.join("secret");
        std::fs::write(&secret, "do not read").unwrap();
        std::os::unix::fs::symlink(&secret, dir.join("a.json")).unwrap();
        std::os::unix::fs::symlink("loop.json", dir.join("loop.json")).unwrap();
        let fd = open_root(&dir).unwrap();
        for name in ["a.json", "loop.json"] {
            let err = read(&fd, name, &dir.join(name)).unwrap_err();
            assert!(
                matches!(err, DatastoreError::NotRegularFile { .. }),
                "{name}: {err}"
            );
        }
        // Writing over the link replaces the link; the target keeps its content.
        write_atomic(&fd, "a.json", b"new", 0o644, &dir.join("a.json")).unwrap();
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "do not read");
        assert_eq!(read(&fd, "a.json", &dir).unwrap().unwrap(), b"new");
        assert!(
            !std::fs::symlink_metadata(dir.join("a.json"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        // A directory under a document's name, and a linked directory, are refused.
        std::fs::create_dir(dir.join("d.json")).unwrap();
        assert!(read(&fd, "d.json", &dir).is_err());
        std::os::unix::fs::symlink(&dir, dir.join("linked")).unwrap();
        assert!(open_dir(&fd, "linked", &dir).is_err());
        assert!(open_dir(&fd, "loop.json", &dir).is_err());
        assert_eq!(read(&fd, "missing.json", &dir).unwrap(), None);
        let mut names = list(&fd, &dir).unwrap();
        names.sort();
        assert_eq!(names, ["a.json", "d.json", "linked", "loop.json", "secret"]);
    }
}
