//! Re-verifying what keeps our programs attached (security item 13): the agent holds
//! every link it attached open, so removing a pin (any root process, or a privileged
//! pod with `/sys/fs/bpf` mounted) detaches nothing while the agent runs; this check
//! pins it again. It also finds our program detached from its hook or no longer first
//! in the TCX chain (a program placed before ours that returns `TCX_PASS` would end
//! the chain before our verdict) and attaches it again, first; and retries XDP on a
//! host interface where it could not attach.
//!
//! Runs when a pin is removed (the agent watches the pin directory) and on a timer.

use aya::programs::tc::TcAttachOptions;
use aya::programs::{LinkOrder, SchedClassifier};

use super::loader::{Hook, LoadedDataplane, LoaderError, XDP_HOOK, classifier, pin_link};

/// Where our program stands in a TCX chain.
enum Position {
    First,
    /// After this many other programs.
    Behind(usize),
    Absent,
}

impl LoadedDataplane {
    /// Checks every attached interface and repairs what it can; returns a line per
    /// repair made, and the host interfaces where XDP still does not attach (with why).
    pub fn verify(&mut self) -> (Vec<String>, Vec<(String, String)>) {
        let mut repairs = Vec::new();
        let mut xdp_missing = Vec::new();
        let attached: Vec<(String, u32)> = self
            .attached()
            .iter()
            .map(|(name, index)| (name.clone(), *index))
            .collect();
        for (iface, ifindex) in attached {
            let hooks: Vec<Hook> = Hook::ALL
                .into_iter()
                .filter(|h| self.held.contains_key(&(iface.clone(), h.name())))
                .collect();
            for hook in &hooks {
                if let Some(repair) = self.verify_hook(&iface, ifindex, *hook) {
                    repairs.push(repair);
                }
            }
            if hooks.contains(&Hook::HostIngress) {
                match self.verify_xdp(&iface, ifindex) {
                    Ok(Some(repair)) => repairs.push(repair),
                    Ok(None) => {}
                    Err(error) => xdp_missing.push((iface.clone(), error.to_string())),
                }
            }
        }
        (repairs, xdp_missing)
    }

    fn verify_hook(&mut self, iface: &str, ifindex: u32, hook: Hook) -> Option<String> {
        let path = self.link_path(iface, ifindex, hook);
        let key = (iface.to_owned(), hook.name());
        let mut repair = None;
        if !path.exists()
            && let Some(link) = self.held.remove(&key)
        {
            match link.pin(&path) {
                Ok(pinned) => {
                    self.held.insert(key.clone(), pinned.into());
                    repair = Some(format!(
                        "{iface} {}: its link pin was removed; pinned again",
                        hook.name()
                    ));
                }
                Err(error) => {
                    tracing::warn!(iface, hook = hook.name(), %error, "pinning the link again");
                }
            }
        }
        let why = match self.position(iface, hook) {
            Ok(Position::Behind(n)) => format!("{n} program(s) ran before ours"),
            Ok(Position::Absent) => "our program was detached".to_owned(),
            // First, as it should be; or the interface is gone (its link event
            // removes it).
            Ok(Position::First) | Err(_) => return repair,
        };
        match self.attach_first(iface, ifindex, hook) {
            Ok(()) => Some(format!(
                "{iface} {}: {why}; attached first again",
                hook.name()
            )),
            Err(error) => Some(format!(
                "{iface} {}: {why}; attaching again failed: {error}",
                hook.name()
            )),
        }
    }

    /// Where our program of `hook` stands in `iface`'s TCX chain.
    fn position(&mut self, iface: &str, hook: Hook) -> Result<Position, LoaderError> {
        let program = hook.program(self.variant());
        let program_err = |op, source| LoaderError::Program {
            program,
            op,
            source: Box::new(source),
        };
        let ours = classifier(&mut self.ebpf, program)?
            .info()
            .map_err(|e| program_err("info", e))?
            .id();
        let (_, chain) = SchedClassifier::query_tcx(iface, hook.attach_type())
            .map_err(|e| program_err("query the TCX chain", e))?;
        Ok(match chain.iter().position(|p| p.id() == ours) {
            Some(0) => Position::First,
            Some(n) => Position::Behind(n),
            None => Position::Absent,
        })
    }

    /// Replaces our link of `hook` by a new one first in the chain. The old link goes
    /// first (the kernel refuses one program twice in a chain), so for the time of two
    /// system calls the hook runs without us: a program moved before ours is a
    /// permanent bypass, this window is not.
    fn attach_first(&mut self, iface: &str, ifindex: u32, hook: Hook) -> Result<(), LoaderError> {
        let path = self.link_path(iface, ifindex, hook);
        self.held.remove(&(iface.to_owned(), hook.name()));
        let _ = std::fs::remove_file(&path);
        let program = hook.program(self.variant());
        let prog = classifier(&mut self.ebpf, program)?;
        let attach_err = |source| LoaderError::Attach {
            program,
            iface: iface.to_owned(),
            hook: hook.name(),
            source: Box::new(source),
        };
        let id = prog
            .attach_with_options(
                iface,
                hook.attach_type(),
                TcAttachOptions::TcxOrder(LinkOrder::first()),
            )
            .map_err(attach_err)?;
        let link = prog.take_link(id).map_err(attach_err)?;
        let held = pin_link(link, &path)?;
        self.held.insert((iface.to_owned(), hook.name()), held);
        Ok(())
    }

    /// Pins the XDP link again, or attaches XDP where it is missing.
    fn verify_xdp(&mut self, iface: &str, ifindex: u32) -> Result<Option<String>, LoaderError> {
        let key = (iface.to_owned(), XDP_HOOK);
        let path = self.xdp_link_path(iface, ifindex);
        match self.held.remove(&key) {
            Some(link) if !path.exists() => {
                let pinned = link.pin(&path).map_err(|e| LoaderError::PinLink {
                    path: path.clone(),
                    source: Box::new(e),
                })?;
                self.held.insert(key, pinned.into());
                Ok(Some(format!(
                    "{iface} {XDP_HOOK}: its link pin was removed; pinned again"
                )))
            }
            Some(link) => {
                self.held.insert(key, link);
                Ok(None)
            }
            None => {
                self.attach_xdp(iface, ifindex)?;
                Ok(Some(format!("{iface} {XDP_HOOK}: attached")))
            }
        }
    }
}
