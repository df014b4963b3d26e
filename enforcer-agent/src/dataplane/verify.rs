//! Re-verifying what keeps our programs attached (security item 13): the agent holds
//! every link it attached open (endpoint programs, XDP, guards, the cgroup program), so removing a pin (any root process, or a privileged
//! pod with `/sys/fs/bpf` mounted) detaches nothing while the agent runs; this check
//! pins it again. It also finds our program detached from its hook or no longer first
//! in the TCX chain (a program placed before ours that returns `TCX_PASS` would end
//! the chain before our verdict) and attaches it again, first; and retries XDP on a
//! host interface where it could not attach.
//!
//! Runs when a pin is removed (the agent watches the pin directory) and on a timer.

use std::path::Path;
use std::time::{Duration, Instant};

use aya::programs::SchedClassifier;

use super::loader::{CGROUP_KEY, Hook, LoadedDataplane, LoaderError, XDP_HOOK, classifier};

/// How long a repair waits for the kernel to release the link it replaces.
const RELEASE_WAIT: Duration = Duration::from_secs(1);

/// Where our program stands in a TCX chain.
enum Position {
    First,
    /// After this many other programs.
    Behind(usize),
    Absent,
}

impl LoadedDataplane {
    /// Checks every link held and repairs what it can; returns a line per repair made,
    /// and the host interfaces where XDP still does not attach (with why).
    pub fn verify(&mut self) -> (Vec<String>, Vec<(String, String)>) {
        let mut repairs = Vec::new();
        let keys: Vec<(String, &'static str)> = self.held.keys().cloned().collect();
        for (iface, name) in keys {
            if name == XDP_HOOK {
                continue;
            }
            if (iface.as_str(), name) == CGROUP_KEY {
                let path = self.cgroup_link_path();
                repairs.extend(self.repin(&iface, name, &path));
                continue;
            }
            let Some(hook) = Hook::ALL.into_iter().find(|h| h.name() == name) else {
                continue;
            };
            let path = if hook.is_guard() {
                let Some(&ifindex) = self.guarded().get(&iface) else {
                    continue;
                };
                self.guard_link_path(&iface, ifindex, hook)
            } else {
                let Some(&ifindex) = self.attached().get(&iface) else {
                    continue;
                };
                self.link_path(&iface, ifindex, hook)
            };
            repairs.extend(self.repin(&iface, name, &path));
            repairs.extend(self.verify_position(&iface, hook, &path));
        }
        let mut xdp_missing = Vec::new();
        let hosts: Vec<(String, u32)> = self
            .attached()
            .iter()
            .filter(|(iface, _)| {
                self.held
                    .contains_key(&((*iface).clone(), Hook::HostIngress.name()))
            })
            .map(|(iface, ifindex)| (iface.clone(), *ifindex))
            .collect();
        for (iface, ifindex) in hosts {
            match self.verify_xdp(&iface, ifindex) {
                Ok(Some(repair)) => repairs.push(repair),
                Ok(None) => {}
                Err(error) => xdp_missing.push((iface, error.to_string())),
            }
        }
        (repairs, xdp_missing)
    }

    /// Pins the held link of (`iface`, `name`) again at `path` if its pin is gone.
    fn repin(&mut self, iface: &str, name: &'static str, path: &Path) -> Option<String> {
        if path.exists() {
            return None;
        }
        let key = (iface.to_owned(), name);
        let link = self.held.remove(&key)?;
        match link.pin(path) {
            Ok(pinned) => {
                self.held.insert(key, pinned.into());
                Some(format!(
                    "{iface} {name}: its link pin was removed; pinned again"
                ))
            }
            Err(error) => {
                tracing::warn!(iface, hook = name, %error, "pinning the link again");
                None
            }
        }
    }

    /// Attaches `hook`'s program first again when it is no longer first in the TCX
    /// chain of `iface`, or detached.
    fn verify_position(&mut self, iface: &str, hook: Hook, path: &Path) -> Option<String> {
        let why = match self.position(iface, hook) {
            Ok(Position::Behind(n)) => format!("{n} program(s) ran before ours"),
            Ok(Position::Absent) => "our program was detached".to_owned(),
            // First, as it should be; or the interface is gone (its link event
            // removes it).
            Ok(Position::First) | Err(_) => return None,
        };
        Some(match self.attach_first(iface, hook, path) {
            Ok(()) => format!("{iface} {}: {why}; attached first again", hook.name()),
            Err(error) => format!(
                "{iface} {}: {why}; attaching again failed: {error}",
                hook.name()
            ),
        })
    }

    /// The id of `hook`'s program as loaded.
    fn program_id(&mut self, hook: Hook) -> Result<u32, LoaderError> {
        let program = hook.program(self.variant());
        Ok(classifier(&mut self.ebpf, program)?
            .info()
            .map_err(|source| LoaderError::Program {
                program,
                op: "info",
                source: Box::new(source),
            })?
            .id())
    }

    /// Where our program of `hook` stands in `iface`'s TCX chain. The guard must run
    /// before everything; another program of ours must run before every program that
    /// is not ours, and after the guard where the interface has one (the host egress
    /// program drops a Service packet the guard did not judge first): the guard ahead
    /// of it is its place, not a program run before ours.
    fn position(&mut self, iface: &str, hook: Hook) -> Result<Position, LoaderError> {
        let ours = self.program_id(hook)?;
        let guard = if hook.is_guard() {
            None
        } else {
            Some(self.program_id(hook.guard())?)
        };
        let (_, chain) =
            SchedClassifier::query_tcx(iface, hook.attach_type()).map_err(|source| {
                LoaderError::Program {
                    program: hook.program(self.variant()),
                    op: "query the TCX chain",
                    source: Box::new(source),
                }
            })?;
        let Some(at) = chain.iter().position(|p| p.id() == ours) else {
            return Ok(Position::Absent);
        };
        let before = chain[..at].iter().filter(|p| Some(p.id()) != guard).count();
        Ok(if before == 0 {
            Position::First
        } else {
            Position::Behind(before)
        })
    }

    /// Replaces our link of `hook` by a new one in its place (first, or right after the
    /// guard: `tcx_order`). The old link must
    /// be gone first (the kernel refuses one program twice in a chain), and the kernel
    /// releases a link whose pin was removed only after an RCU grace period: this waits
    /// (at most [`RELEASE_WAIT`]) until our program left the chain. For that moment
    /// the hook runs without us: a program moved before ours is a permanent bypass,
    /// this window is not.
    fn attach_first(&mut self, iface: &str, hook: Hook, path: &Path) -> Result<(), LoaderError> {
        self.held.remove(&(iface.to_owned(), hook.name()));
        let _ = std::fs::remove_file(path);
        let deadline = Instant::now() + RELEASE_WAIT;
        while Instant::now() < deadline
            && !matches!(self.position(iface, hook), Ok(Position::Absent) | Err(_))
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        let order = self.tcx_order(iface, hook)?;
        if let Some(held) = self.attach_one(iface, hook, path, order)? {
            self.held.insert((iface.to_owned(), hook.name()), held);
        }
        Ok(())
    }

    /// Pins the XDP link again, or attaches XDP where it is missing.
    fn verify_xdp(&mut self, iface: &str, ifindex: u32) -> Result<Option<String>, LoaderError> {
        let path = self.xdp_link_path(iface, ifindex);
        if self.held.contains_key(&(iface.to_owned(), XDP_HOOK)) {
            return Ok(self.repin(iface, XDP_HOOK, &path));
        }
        self.attach_xdp(iface, ifindex)?;
        Ok(Some(format!("{iface} {XDP_HOOK}: attached")))
    }
}
