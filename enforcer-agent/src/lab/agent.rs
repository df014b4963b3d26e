//! Starting a node's agent inside its node netns and waiting until it has caught up
//! with the datastore.
//!
//! The contract with `enforcer agent` (written elsewhere): in a single-node lab it is
//! started as `<enforcer> agent --node node1 --datastore <state>/datastore --bpffs
//! /sys/fs/bpf/enforcer/<lab>` in the node's network namespace (only the network
//! namespace: it sees the host's `/sys/fs/bpf`), with stdout/stderr appended to
//! `<state>/logs/agent.log`, stopped with SIGTERM. It publishes an [`AgentStatus`]
//! after each reconcile, which the file datastore mirrors to `status.json`; the lab
//! waits for `observed_revision >= revision` there (a stand-in agent only has to write
//! that file, see the lab tests' fake agent). With several nodes, node `nodeK`'s agent
//! gets `--node nodeK`, its own `--bpffs`, `--status-file status-nodeK.json` and
//! `--flow-log-file`, and logs to `agent-nodeK.log` ([`super::topology`]).

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::datastore::DatastoreError;
use crate::datastore::file::FileDatastore;
use crate::datastore::status::AgentStatus;

use super::paths::LabPaths;
use super::process::{self, Daemon, ProcessError, ProcessRecord};
use super::topology::Topology;

/// How long `lab up` waits for the agent's first reconcile (it loads BPF programs).
pub const START_TIMEOUT: Duration = Duration::from_mins(1);
/// How long other commands wait for the agent to observe a revision.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Start(#[from] ProcessError),
    #[error(transparent)]
    Datastore(#[from] DatastoreError),
    #[error(
        "the agent exited{status} before observing datastore revision {revision}; last lines of {log}:\n{tail}"
    )]
    Died {
        status: String,
        revision: u64,
        log: String,
        tail: String,
    },
    #[error(
        "the agent did not observe datastore revision {revision} within {secs}s (status: {observed}); last lines of {log}:\n{tail}"
    )]
    Timeout {
        revision: u64,
        observed: String,
        secs: u64,
        log: String,
        tail: String,
    },
}

/// Where the lab's agents serve /healthz, /readyz and /metrics, in their node's netns.
pub const METRICS_ADDR: &str = "127.0.0.1:9091";

/// How the lab's agents read their objects and attach.
#[derive(Clone, Copy, Debug, Default)]
pub struct AgentMode<'a> {
    /// Through the lab's API server (`--datastore kubernetes --kubeconfig`), mirroring
    /// their status and flow log where a directory datastore would keep them.
    pub kubernetes: bool,
    /// `--attach` (`tcx` or `tc`).
    pub attach: Option<&'a str>,
    /// Extra arguments (`lab up --agent-arg`), after the lab's own.
    pub extra_args: &'a [String],
}

/// Starts `node`'s agent in its netns.
pub fn start(
    topo: &Topology,
    node: &str,
    binary: &Path,
    paths: &LabPaths,
    mode: AgentMode<'_>,
) -> Result<Daemon, ProcessError> {
    let path = |p: std::path::PathBuf| p.to_string_lossy().into_owned();
    let mut args = vec![
        "agent".to_owned(),
        "--node".to_owned(),
        node.to_owned(),
        "--bpffs".to_owned(),
        path(topo.bpffs(node)),
        // Health and metrics on the node's loopback (`ip netns exec <node> curl`).
        "--metrics-addr".to_owned(),
        METRICS_ADDR.to_owned(),
    ];
    if mode.kubernetes {
        args.extend([
            "--datastore".to_owned(),
            "kubernetes".to_owned(),
            // Also how `lab down` finds this agent (a directory agent: `--datastore`).
            "--kubeconfig".to_owned(),
            path(paths.kubeconfig()),
            "--status-file".to_owned(),
            path(paths.datastore().join(topo.status_file(node))),
            "--flow-log-file".to_owned(),
            path(
                topo.flow_log(paths, node)
                    .unwrap_or_else(|| paths.datastore().join("flows.jsonl")),
            ),
        ]);
    } else {
        args.extend(["--datastore".to_owned(), path(paths.datastore())]);
        if !topo.single() {
            args.extend(["--status-file".to_owned(), topo.status_file(node)]);
        }
        if let Some(flow_log) = topo.flow_log(paths, node) {
            args.extend(["--flow-log-file".to_owned(), path(flow_log)]);
        }
    }
    if let Some(attach) = mode.attach {
        args.extend(["--attach".to_owned(), attach.to_owned()]);
    }
    // A lab is for looking at what happens: allowed flows are logged too
    // (`enforcer flows --lab`). `--agent-arg --flow-log=denied` overrides it.
    args.extend(["--flow-log".to_owned(), "all".to_owned()]);
    args.extend(mode.extra_args.iter().cloned());
    process::spawn_in_netns(
        &topo.netns(node),
        binary,
        &args,
        &topo.agent_log(paths, node),
    )
}

/// `ds` reading `node`'s status file.
pub fn node_status(ds: &FileDatastore, topo: &Topology, node: &str) -> FileDatastore {
    ds.clone().with_status_file(&topo.status_file(node))
}

/// Waits until the agent's status says it observed the datastore's current revision.
/// `child` is given when this command started the agent (to see it exit), `record`
/// otherwise.
pub fn wait_observed(
    ds: &FileDatastore,
    mut child: Option<&mut Child>,
    record: Option<&ProcessRecord>,
    log: &Path,
    timeout: Duration,
) -> Result<AgentStatus, AgentError> {
    let revision = ds.revision()?;
    let deadline = Instant::now() + timeout;
    let tail = || process::log_tail(log, 20);
    loop {
        let status = ds.read_status()?;
        if let Some(s) = &status
            && s.observed_revision >= revision
        {
            return Ok(s.clone());
        }
        let exited = match child.as_deref_mut() {
            Some(c) => c.try_wait().ok().flatten().map(|s| format!(" ({s})")),
            None => record.filter(|r| !r.is_alive()).map(|_| String::new()),
        };
        if let Some(status) = exited {
            return Err(AgentError::Died {
                status,
                revision,
                log: log.display().to_string(),
                tail: tail(),
            });
        }
        if Instant::now() >= deadline {
            return Err(AgentError::Timeout {
                revision,
                observed: status.map_or_else(
                    || "no status.json yet".to_owned(),
                    |s| format!("observed revision {}", s.observed_revision),
                ),
                secs: timeout.as_secs(),
                log: log.display().to_string(),
                tail: tail(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
