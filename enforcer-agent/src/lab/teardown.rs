//! Removing a lab, from whatever it left: `enforcer lab down`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::facade::{Lab, lock};
use super::netns;
use super::paths::{self, LabName};
use super::process::{self, ProcessRecord, STOP_GRACE};
use super::state::LabState;

/// What [`Lab::down`] removed.
#[derive(Clone, Debug, Default)]
pub struct DownReport {
    pub processes: usize,
    pub netns: Vec<String>,
    pub removed_paths: Vec<PathBuf>,
    /// Things that could not be removed (the command goes on and reports them).
    pub problems: Vec<String>,
    /// What `down` noticed but worked around (a torn state file, say).
    pub notes: Vec<String>,
}

impl Lab {
    /// Removes everything lab `name` created: its processes (from the state file, and
    /// found by command line), every `enf-<name>-*` netns with whatever still runs in
    /// it, `/etc/netns/enf-<name>-*`, its bpffs directory and its state directory.
    /// Works from any leftover state; never fails, but reports what it could not do.
    pub fn down(name: &LabName) -> DownReport {
        let mut report = DownReport::default();
        let paths = name.paths();
        // Wait a little for a running command, then go ahead regardless.
        let _lock = if paths.root.exists() {
            lock(name, &paths, Duration::from_secs(5)).ok()
        } else {
            None
        };
        let mut records: Vec<ProcessRecord> = Vec::new();
        match LabState::load(&paths.state_file()) {
            Ok(Some(state)) => {
                records.extend(state.agents.values().copied());
                records.extend(state.pods.values().filter_map(|p| p.process));
            }
            Ok(None) => {}
            Err(e) => report.notes.push(format!(
                "{e}; cleaning up from netns names and command lines instead"
            )),
        }
        records.extend(process::find_lab_processes(
            name.as_str(),
            &paths.datastore(),
        ));
        let namespaces = netns::list_with_prefix(&name.netns_prefix());
        for ns in &namespaces {
            for pid in process::netns_pids(ns) {
                records.extend(ProcessRecord::of(pid));
            }
        }
        records.sort_by_key(|r| r.pid);
        records.dedup();
        for r in &records {
            if r.is_alive() {
                report.processes += 1;
            }
        }
        std::thread::scope(|s| {
            for r in &records {
                s.spawn(move || r.terminate(STOP_GRACE));
            }
        });
        for ns in namespaces {
            match netns::delete(&ns) {
                Ok(()) => report.netns.push(ns),
                Err(e) => report.problems.push(e.to_string()),
            }
        }
        for etc in netns::list_etc_with_prefix(&name.netns_prefix()) {
            match netns::remove_etc(&etc) {
                Ok(()) => report
                    .removed_paths
                    .push(Path::new(paths::ETC_NETNS).join(etc)),
                Err(e) => report.problems.push(e.to_string()),
            }
        }
        for dir in [name.bpffs_dir(), paths.root.clone()] {
            if dir.exists() {
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => report.removed_paths.push(dir),
                    Err(e) => report
                        .problems
                        .push(format!("remove {}: {e}", dir.display())),
                }
            }
        }
        // Parents the lab may have created: removed only when empty (other labs).
        for dir in [
            paths::ETC_NETNS,
            paths::STATE_ROOT,
            "/run/enforcer",
            paths::BPFFS_ROOT,
        ] {
            let _ = std::fs::remove_dir(dir);
        }
        report
    }
}
