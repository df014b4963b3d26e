//! Reading a flow log (`enforcer flows`): every line of the rotated files, oldest
//! first, filtered by source, destination, verdict and node, and, with `--follow`, the
//! lines appended after that, across rotations, waiting on inotify (no polling).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::agent::flowlog::file::files_oldest_first;
use crate::agent::flowlog::names::Peer;
use crate::agent::flowlog::record::FlowRecord;

#[derive(Debug, thiserror::Error)]
pub enum FlowsError {
    #[error("reading flow log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("watching flow log {path}: {source}")]
    Watch {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
}

/// `--verdict`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerdictFilter {
    Allowed,
    Denied,
}

/// Which lines to show. Endpoint patterns: `NS/POD`, `NS/*`, a name (host endpoint,
/// global network set), an IP address, or `world`.
#[derive(Clone, Debug, Default)]
pub struct FlowFilter {
    pub from: Vec<String>,
    pub to: Vec<String>,
    pub verdict: Option<VerdictFilter>,
    pub node: Option<String>,
}

fn peer_matches(peer: &Peer, pattern: &str) -> bool {
    if pattern == "*" || pattern == peer.ip {
        return true;
    }
    if pattern == "world" {
        return peer.kind == "world";
    }
    match pattern.split_once('/') {
        Some((ns, "*")) => peer.namespace == ns,
        Some((ns, name)) => peer.namespace == ns && peer.name == name,
        None => peer.namespace.is_empty() && peer.name == pattern,
    }
}

impl FlowFilter {
    pub fn matches(&self, r: &FlowRecord) -> bool {
        let any = |patterns: &[String], peer: &Peer| {
            patterns.is_empty() || patterns.iter().any(|p| peer_matches(peer, p))
        };
        any(&self.from, &r.source)
            && any(&self.to, &r.destination)
            && self
                .verdict
                .is_none_or(|v| (v == VerdictFilter::Denied) == r.denied())
            && self.node.as_ref().is_none_or(|n| *n == r.node)
    }
}

/// Lines that are not flow records (a line cut by a crash, another format).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skipped(pub usize);

fn parse_lines(text: &str, filter: &FlowFilter, out: &mut Vec<FlowRecord>, skipped: &mut Skipped) {
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<FlowRecord>(line) {
            Ok(r) if filter.matches(&r) => out.push(r),
            Ok(_) => {}
            Err(_) => skipped.0 += 1,
        }
    }
}

/// Which logs to read: the files of one directory whose names `names` accepts (a lab
/// of several nodes has a log per node), each with its rotated files.
pub struct FlowLogs {
    pub dir: PathBuf,
    names: Box<dyn Fn(&str) -> bool>,
}

impl FlowLogs {
    /// One log file.
    pub fn file(path: &Path) -> Self {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."))
            .to_path_buf();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self {
            dir,
            names: Box::new(move |n| n == name),
        }
    }

    /// The logs of a lab's agents in its datastore: `flows.jsonl` (one node) or
    /// `flows-<node>.jsonl` (several).
    pub fn lab(datastore: &Path) -> Self {
        Self {
            dir: datastore.to_path_buf(),
            names: Box::new(|n| {
                n == "flows.jsonl"
                    || n.strip_prefix("flows-").is_some_and(|rest| {
                        rest.strip_suffix(".jsonl")
                            .is_some_and(|node| !node.is_empty())
                    })
            }),
        }
    }

    /// The current (not rotated) log files.
    pub fn current(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_str().is_some_and(|n| (self.names)(n)))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
}

/// Every matching line of the logs and their rotated files, oldest first (by the
/// end of their interval, then start).
pub fn read(
    logs: &FlowLogs,
    filter: &FlowFilter,
) -> Result<(Vec<FlowRecord>, Skipped), FlowsError> {
    let mut out = Vec::new();
    let mut skipped = Skipped::default();
    for path in logs.current() {
        for file in files_oldest_first(&path) {
            let text = match std::fs::read(&file) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                // Rotated away between the listing and the read: its lines are in the next.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(FlowsError::Io { path: file, source }),
            };
            parse_lines(&text, filter, &mut out, &mut skipped);
        }
    }
    out.sort_by(|a, b| (&a.end, &a.start).cmp(&(&b.end, &b.start)));
    Ok((out, skipped))
}

/// One followed file: where reading stopped, and an incomplete last line.
struct Followed {
    file: Option<std::fs::File>,
    offset: u64,
    partial: String,
}

/// Follows the logs after what [`read`] returned: new lines of each file, then of the
/// new file after a rotation, and new logs (a node's first lines).
pub struct Follower {
    logs: FlowLogs,
    inotify: Inotify,
    files: BTreeMap<String, Followed>,
}

impl Follower {
    /// Starts at the current end of every log.
    pub fn new(logs: FlowLogs) -> Result<Self, FlowsError> {
        let watch_err = |source| FlowsError::Watch {
            path: logs.dir.clone(),
            source,
        };
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC).map_err(watch_err)?;
        // The directory, not the files: rotation renames a file away and the agent
        // creates a new one under the name.
        inotify
            .add_watch(
                &logs.dir,
                AddWatchFlags::IN_MODIFY
                    | AddWatchFlags::IN_CREATE
                    | AddWatchFlags::IN_MOVED_FROM
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_DELETE,
            )
            .map_err(watch_err)?;
        let mut follower = Self {
            logs,
            inotify,
            files: BTreeMap::new(),
        };
        for path in follower.logs.current() {
            if let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) {
                let followed = follower.open(&name, true)?;
                follower.files.insert(name, followed);
            }
        }
        Ok(follower)
    }

    fn open(&self, name: &str, at_end: bool) -> Result<Followed, FlowsError> {
        let path = self.logs.dir.join(name);
        match std::fs::File::open(&path) {
            Ok(mut f) => {
                let offset = if at_end {
                    f.seek(SeekFrom::End(0))
                        .map_err(|source| FlowsError::Io { path, source })?
                } else {
                    0
                };
                Ok(Followed {
                    file: Some(f),
                    offset,
                    partial: String::new(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Followed {
                file: None,
                offset: 0,
                partial: String::new(),
            }),
            Err(source) => Err(FlowsError::Io { path, source }),
        }
    }

    /// Blocks until a log has new lines; returns the matching ones (possibly none).
    pub fn next(&mut self, filter: &FlowFilter) -> Result<Vec<FlowRecord>, FlowsError> {
        let events = self
            .inotify
            .read_events()
            .map_err(|source| FlowsError::Watch {
                path: self.logs.dir.clone(),
                source,
            })?;
        let mut touched = BTreeSet::new();
        let mut replaced = BTreeSet::new();
        for event in &events {
            let Some(name) = event.name.as_ref().and_then(|n| n.to_str()) else {
                continue;
            };
            if !(self.logs.names)(name) {
                continue;
            }
            touched.insert(name.to_owned());
            if event.mask.intersects(
                AddWatchFlags::IN_CREATE
                    | AddWatchFlags::IN_MOVED_FROM
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_DELETE,
            ) {
                replaced.insert(name.to_owned());
            }
        }
        let mut out = Vec::new();
        let mut skipped = Skipped::default();
        for name in touched {
            let mut followed = match self.files.remove(&name) {
                Some(f) => f,
                // A new log (a node's first event): from its start.
                None => self.open(&name, false)?,
            };
            // What the old file got before it was renamed, then the new file.
            self.read_new(&name, &mut followed, filter, &mut out, &mut skipped)?;
            // A renamed file (rotation) or one that was not there: the new one, from its
            // start.
            if replaced.contains(&name) || followed.file.is_none() {
                followed = self.open(&name, false)?;
                self.read_new(&name, &mut followed, filter, &mut out, &mut skipped)?;
            }
            self.files.insert(name, followed);
        }
        Ok(out)
    }

    fn read_new(
        &self,
        name: &str,
        followed: &mut Followed,
        filter: &FlowFilter,
        out: &mut Vec<FlowRecord>,
        skipped: &mut Skipped,
    ) -> Result<(), FlowsError> {
        let Some(file) = followed.file.as_mut() else {
            return Ok(());
        };
        let io = |source| FlowsError::Io {
            path: self.logs.dir.join(name),
            source,
        };
        file.seek(SeekFrom::Start(followed.offset)).map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        followed.offset += bytes.len() as u64;
        followed.partial.push_str(&String::from_utf8_lossy(&bytes));
        // Only whole lines: the agent may be between two writes.
        if let Some(end) = followed.partial.rfind('\n') {
            let complete: String = followed.partial.drain(..=end).collect();
            parse_lines(&complete, filter, out, skipped);
        }
        Ok(())
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing test panics with context")]
mod tests {
    use super::*;

    fn line(src_ns: &str, src: &str, dst: &str, action: &str) -> String {
        serde_json::json!({
            "start": "2026-01-01T00:00:00.000000Z", "end": "2026-01-01T00:00:01.000000Z",
            "ts_ns": 1, "node": "node1", "hook": "pod-ingress", "event": action,
            "verdict": if action == "deny" { "denied" } else { "allowed" },
            "action": action, "reason": "deny_policy", "decided_by": "rule",
            "direction": "ingress", "endpoint": dst, "protocol": "TCP", "proto": 6,
            "src": "198.18.0.1", "sport": 1, "dst": "198.18.0.2", "dport": 80,
            "source": {"kind": "pod", "namespace": src_ns, "name": src, "ip": "198.18.0.1"},
            "destination": {"kind": "pod", "namespace": "dev-app", "name": dst, "ip": "198.18.0.2"},
            "policy": null, "policy_ref": null, "rule": null, "generation": 0,
            "revision": 3, "packets": 2, "bytes": 148, "events": 1
        })
        .to_string()
    }

    #[test]
    fn filters_select_by_ends_and_verdict_over_rotated_files() {
        let tmp = crate::testkit::TempDir::new("flows");
        let dir = tmp.path().to_owned();
        let path = dir.join("flows.jsonl");
        std::fs::write(
            dir.join("flows.jsonl.1"),
            format!(
                "{}\nnot json\n",
                line("dev-app", "frontend-0", "backend-0", "deny")
            ),
        )
        .unwrap();
        std::fs::write(
            &path,
            format!(
                "{}\n",
                line("kube-system", "coredns-0", "backend-0", "allow")
            ),
        )
        .unwrap();
        let logs = FlowLogs::file(&path);
        let (all, skipped) = read(&logs, &FlowFilter::default()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(skipped, Skipped(1));
        assert_eq!(all[0].source.name, "frontend-0", "oldest first");
        let denied = FlowFilter {
            verdict: Some(VerdictFilter::Denied),
            ..FlowFilter::default()
        };
        assert_eq!(read(&logs, &denied).unwrap().0.len(), 1);
        let from = FlowFilter {
            from: vec!["kube-system/*".into()],
            to: vec!["dev-app/backend-0".into()],
            ..FlowFilter::default()
        };
        let (got, _) = read(&logs, &from).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].source.namespace, "kube-system");
        let by_ip = FlowFilter {
            to: vec!["198.18.0.2".into()],
            ..FlowFilter::default()
        };
        assert_eq!(read(&logs, &by_ip).unwrap().0.len(), 2);

        // Following: an append, then a rotation.
        let mut follower = Follower::new(FlowLogs::file(&path)).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| {
                use std::io::Write as _;
                writeln!(f, "{}", line("dev-app", "frontend-1", "backend-0", "deny"))
            })
            .unwrap();
        let got = follower.next(&FlowFilter::default()).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].source.name, "frontend-1");
        std::fs::rename(&path, dir.join("flows.jsonl.2")).unwrap();
        std::fs::write(
            &path,
            format!("{}\n", line("dev-app", "frontend-2", "backend-0", "deny")),
        )
        .unwrap();
        let mut seen = Vec::new();
        while seen.is_empty() {
            seen = follower.next(&FlowFilter::default()).unwrap();
        }
        assert_eq!(seen[0].source.name, "frontend-2");
    }
}
