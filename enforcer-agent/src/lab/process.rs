//! The processes a lab starts (pod responders, the DNS server, the agent): started
//! detached inside a netns, recorded by pid *and* start time so a recycled pid is
//! never mistaken for ours, and stopped with SIGTERM then SIGKILL.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// SIGTERM grace before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot open netns {netns} ({path}): {source}")]
    Netns {
        netns: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open log file {path}: {source}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start `{command}` in netns {netns}: {source}")]
    Spawn {
        command: String,
        netns: String,
        #[source]
        source: std::io::Error,
    },
}

/// A process identified by pid and kernel start time (`/proc/<pid>/stat` field 22).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessRecord {
    pub pid: i32,
    pub start_time: u64,
}

/// State letter and start time from `/proc/<pid>/stat`.
fn stat(pid: i32) -> Option<(char, u64)> {
    stat_at(Path::new(&format!("/proc/{pid}/stat")))
}

/// Not exited and not a zombie, by a `/proc` state letter.
fn running(state: char) -> bool {
    state != 'Z' && state != 'X'
}

/// (state, start time) from a `/proc` `stat` file (a process's or one of its tasks').
fn stat_at(path: &Path) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may hold spaces and parentheses: skip past the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start_time = fields.get(19)?.parse().ok()?;
    Some((state, start_time))
}

impl ProcessRecord {
    pub fn of(pid: i32) -> Option<Self> {
        stat(pid).map(|(_, start_time)| Self { pid, start_time })
    }

    /// Running (not exited, not a zombie) and still the same process. A killed process
    /// whose leader is already a zombie is still running while another of its threads
    /// finishes (one in an RCU grace period, say), and it holds its sockets and files
    /// until the last one is gone: an agent started then could not bind its metrics
    /// port.
    pub fn is_alive(&self) -> bool {
        match stat(self.pid) {
            Some((state, start)) if start == self.start_time => {
                running(state) || self.a_thread_runs()
            }
            _ => false,
        }
    }

    /// Whether a thread of the process (its leader included) is still running.
    fn a_thread_runs(&self) -> bool {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) else {
            return false;
        };
        tasks
            .flatten()
            .any(|task| stat_at(&task.path().join("stat")).is_some_and(|(state, _)| running(state)))
    }

    /// SIGKILL, as a crash would end it. Returns once the process is gone.
    pub fn kill(&self) {
        if self.is_alive() {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
            let deadline = Instant::now() + Duration::from_secs(2);
            while self.is_alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// SIGTERM, then SIGKILL after `grace`. Returns once the process is gone.
    pub fn terminate(&self, grace: Duration) {
        if !self.is_alive() {
            return;
        }
        let pid = Pid::from_raw(self.pid);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while self.is_alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.is_alive() {
            let _ = kill(pid, Signal::SIGKILL);
            let deadline = Instant::now() + Duration::from_secs(2);
            while self.is_alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A process started by this command; `child` lets the starter notice an early exit.
pub struct Daemon {
    pub child: Child,
    pub record: ProcessRecord,
}

/// Starts `program args` inside `netns` (network namespace only: the mount namespace,
/// and with it `/sys/fs/bpf`, stays the host's), in its own session, stdin from
/// /dev/null, stdout and stderr appended to `log`.
pub fn spawn_in_netns(
    netns: &str,
    program: &Path,
    args: &[String],
    log: &Path,
) -> Result<Daemon, ProcessError> {
    let ns_path = Path::new("/run/netns").join(netns);
    let ns_file = File::open(&ns_path).map_err(|source| ProcessError::Netns {
        netns: netns.to_owned(),
        path: ns_path.clone(),
        source,
    })?;
    let log_err = |source| ProcessError::Log {
        path: log.to_path_buf(),
        source,
    };
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(log_err)?;
    let err = out.try_clone().map_err(log_err)?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "info");
    }
    // SAFETY: the closure runs in the forked child before exec and only makes two
    // async-signal-safe system calls (setns, setsid) on a descriptor opened before
    // the fork; it allocates nothing and takes no locks.
    unsafe {
        command.pre_exec(move || {
            nix::sched::setns(&ns_file, nix::sched::CloneFlags::CLONE_NEWNET)?;
            nix::unistd::setsid()?;
            Ok(())
        });
    }
    let mut shown: Vec<&str> = vec![program.to_str().unwrap_or("?")];
    shown.extend(args.iter().map(String::as_str));
    let spawn_err = |source| ProcessError::Spawn {
        command: shown.join(" "),
        netns: netns.to_owned(),
        source,
    };
    let child = command.spawn().map_err(spawn_err)?;
    let pid = child.id().cast_signed();
    // The child exists (maybe already a zombie) until we wait for it, so stat works.
    let record = ProcessRecord::of(pid).unwrap_or(ProcessRecord { pid, start_time: 0 });
    Ok(Daemon { child, record })
}

/// Pids of processes in a named netns (`ip netns pids`); empty if it cannot tell.
pub fn netns_pids(netns: &str) -> Vec<i32> {
    super::command::run("ip", &["netns", "pids", netns])
        .map(|out| {
            out.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Processes a lab started, found by their command line even after their netns name
/// is gone: hidden pod subcommands carry `--lab <name>`, the agent `--datastore <dir>`.
pub fn find_lab_processes(lab: &str, datastore: &Path) -> Vec<ProcessRecord> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let datastore = datastore.to_string_lossy();
    let me = std::process::id().cast_signed();
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let pair = |flag: &str, value: &str| args.windows(2).any(|w| w[0] == flag && w[1] == value);
        let is_pod_process = args.get(1).is_some_and(|sub| {
            sub == "lab-responder" || sub == "lab-dns" || sub == "lab-apiserver"
        }) && pair("--lab", lab);
        // In any position: the agent may be a script run by an interpreter.
        // A Kubernetes lab's agents by their kubeconfig, beside the datastore.
        let kubeconfig = format!("{}/kubeconfig", datastore.trim_end_matches("/datastore"));
        let is_agent = args.iter().any(|a| a == "agent")
            && (pair("--datastore", &datastore) || pair("--kubeconfig", &kubeconfig));
        if (is_pod_process || is_agent)
            && let Some(record) = ProcessRecord::of(pid)
        {
            found.push(record);
        }
    }
    found
}

/// The last `lines` lines of a log file, for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let tail = all[all.len().saturating_sub(lines)..].join("\n");
    if tail.is_empty() {
        format!("({} is empty)", path.display())
    } else {
        tail
    }
}
