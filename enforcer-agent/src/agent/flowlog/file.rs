//! The flow log on disk: JSON lines appended to one file, rotated by size, readable by
//! root only, never written through a symbolic link.
//!
//! The agent runs as root and the log's directory may be writable by others (a lab
//! datastore): the file is opened relative to its directory with `O_NOFOLLOW` (a link
//! planted as `flows.jsonl` is refused, not followed), must be a regular file, and is
//! created `0600` (an existing file is brought back to `0600`). Rotation renames
//! `flows.jsonl` → `flows.jsonl.1` → ... → `flows.jsonl.<keep>` (a rename replaces a
//! planted link, it never writes through one) and drops the oldest, so the log never
//! takes more than `(keep + 1) × max_bytes` (plus one line).
//!
//! Errors are returned to the caller, which counts them and goes on: a full disk or a
//! removed directory costs log lines, never the agent (security review, issue 9 #14).

use std::io::Write as _;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

/// Size bound and rotation of a log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// A file is rotated before a line would take it past this size.
    pub max_bytes: u64,
    /// Rotated files kept (`flows.jsonl.1` ... `.keep`); 0: the file is truncated.
    pub keep: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Self {
            max_bytes: 10 << 20,
            keep: 5,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogFileError {
    #[error("flow log {path}: {op}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("flow log {path} is {what}; refusing to write to it")]
    NotRegular { path: PathBuf, what: &'static str },
}

/// What writing did, for the log's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub lines: u64,
    pub bytes: u64,
    pub rotations: u64,
}

pub struct LogFile {
    path: PathBuf,
    dir: PathBuf,
    name: String,
    rotation: Rotation,
}

impl LogFile {
    pub fn new(path: &Path, rotation: Rotation) -> Self {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."))
            .to_path_buf();
        let name = path.file_name().map_or_else(
            || "flows.jsonl".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        );
        Self {
            path: path.to_path_buf(),
            dir,
            name,
            rotation,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, op: &'static str) -> impl FnOnce(std::io::Error) -> LogFileError + '_ {
        move |source| LogFileError::Io {
            op,
            path: self.path.clone(),
            source,
        }
    }

    fn errno(&self, op: &'static str) -> impl FnOnce(Errno) -> LogFileError + '_ {
        move |e| LogFileError::Io {
            op,
            path: self.path.clone(),
            source: e.into(),
        }
    }

    /// Appends `lines` (each gets a newline), rotating as needed. On an error, lines
    /// before it are written and the rest are not.
    pub fn append(&self, lines: &[String]) -> Result<Written, LogFileError> {
        let mut written = Written::default();
        if lines.is_empty() {
            return Ok(written);
        }
        // The directory is the operator's argument, resolved normally.
        let dir = nix::fcntl::open(
            &self.dir,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(self.errno("open directory"))?;
        let (mut file, mut size) = self.open(&dir)?;
        for line in lines {
            let len = line.len() as u64 + 1;
            if size > 0 && size + len > self.rotation.max_bytes {
                drop(file);
                self.rotate(&dir)?;
                written.rotations += 1;
                (file, size) = self.open(&dir)?;
            }
            let mut buf = Vec::with_capacity(line.len() + 1);
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
            file.write_all(&buf).map_err(self.io("write"))?;
            size += len;
            written.lines += 1;
            written.bytes += len;
        }
        Ok(written)
    }

    /// Opens the log for appending: a regular file, never through a link, `0600`.
    fn open(&self, dir: &OwnedFd) -> Result<(std::fs::File, u64), LogFileError> {
        let fd = nix::fcntl::openat(
            dir.as_fd(),
            self.name.as_str(),
            OFlag::O_WRONLY
                | OFlag::O_APPEND
                | OFlag::O_CREAT
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_NOCTTY
                | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| match e {
            Errno::ELOOP => LogFileError::NotRegular {
                path: self.path.clone(),
                what: "a symbolic link",
            },
            other => self.errno("open")(other),
        })?;
        let file = std::fs::File::from(fd);
        let meta = file.metadata().map_err(self.io("stat"))?;
        if !meta.file_type().is_file() {
            return Err(LogFileError::NotRegular {
                path: self.path.clone(),
                what: "not a regular file",
            });
        }
        use std::os::unix::fs::PermissionsExt as _;
        if meta.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(self.io("chmod"))?;
        }
        Ok((file, meta.len()))
    }

    /// `name.<keep-1>` → `name.<keep>`, ..., `name` → `name.1`.
    fn rotate(&self, dir: &OwnedFd) -> Result<(), LogFileError> {
        if self.rotation.keep == 0 {
            return match nix::unistd::unlinkat(
                dir.as_fd(),
                self.name.as_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            ) {
                Ok(()) | Err(Errno::ENOENT) => Ok(()),
                Err(e) => Err(self.errno("remove")(e)),
            };
        }
        let numbered = |i: u32| format!("{}.{i}", self.name);
        for i in (1..self.rotation.keep).rev() {
            match nix::fcntl::renameat(
                dir.as_fd(),
                numbered(i).as_str(),
                dir.as_fd(),
                numbered(i + 1).as_str(),
            ) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(self.errno("rotate")(e)),
            }
        }
        nix::fcntl::renameat(
            dir.as_fd(),
            self.name.as_str(),
            dir.as_fd(),
            numbered(1).as_str(),
        )
        .map_err(self.errno("rotate"))
    }
}

/// The files of a log, oldest first: `path.<n>` ... `path.1`, `path`.
pub fn files_oldest_first(path: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = Vec::new();
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let prefix = format!("{}.", name.to_string_lossy());
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let file = entry.file_name().to_string_lossy().into_owned();
                if let Some(n) = file.strip_prefix(&prefix).and_then(|n| n.parse().ok()) {
                    rotated.push((n, entry.path()));
                }
            }
        }
    }
    rotated.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    let mut out: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    if path.exists() {
        out.push(path.to_path_buf());
    }
    out
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing test panics with context")]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    use crate::testkit::TempDir;

    fn total_size(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.metadata().unwrap().len())
            .sum()
    }

    #[test]
    fn rotation_keeps_the_log_within_its_bound_and_the_newest_lines() {
        let tmp = TempDir::new("flowlog-rotate");
        let dir = tmp.path().to_owned();
        let path = dir.join("flows.jsonl");
        let log = LogFile::new(
            &path,
            Rotation {
                max_bytes: 100,
                keep: 2,
            },
        );
        let lines: Vec<String> = (0..50).map(|i| format!("{{\"n\":{i:04}}}")).collect();
        let mut rotations = 0;
        for chunk in lines.chunks(7) {
            rotations += log.append(chunk).unwrap().rotations;
        }
        assert!(rotations > 2, "{rotations}");
        assert!(total_size(&dir) <= 3 * 100, "{}", total_size(&dir));
        let files = files_oldest_first(&path);
        assert_eq!(files.len(), 3, "{files:?}");
        let last = std::fs::read_to_string(&path).unwrap();
        assert!(last.ends_with("{\"n\":0049}\n"), "{last}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }

    #[test]
    fn a_planted_link_is_refused_and_an_open_file_is_made_private() {
        let tmp = TempDir::new("flowlog-link");
        let dir = tmp.path().to_owned();
        let path = dir.join("flows.jsonl");
        let target = dir.join("target");
        std::fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let log = LogFile::new(&path, Rotation::default());
        let err = log.append(&["x".to_owned()]).unwrap_err();
        assert!(matches!(err, LogFileError::NotRegular { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        log.append(&["y".to_owned()]).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }

    #[test]
    fn a_missing_directory_is_an_error_not_a_panic() {
        let log = LogFile::new(
            Path::new("/nonexistent-enforcer-dir/flows.jsonl"),
            Rotation::default(),
        );
        assert!(log.append(&["x".to_owned()]).is_err());
    }
}
