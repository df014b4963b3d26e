//! How the TC programs are attached: TCX links (kernel ≥ 6.6) or netlink `tc` filters
//! on a `clsact` qdisc (the older way), chosen at start (`enforcer agent --attach`).
//!
//! # Minimum kernel version
//!
//! - TCX (the default where available): Linux 6.6, which added `BPF_TCX_INGRESS` /
//!   `BPF_TCX_EGRESS` links. A TCX link is pinned under the node's bpffs directory, so
//!   a restarted agent replaces the program behind it atomically (`bpf_link_update`).
//! - `tc` (netlink `clsact` + `cls_bpf` in direct-action mode): Linux 4.5 for `clsact`
//!   itself. A filter has no pin: it lives on the interface at a fixed priority and
//!   handle per hook ([`TC_PRIORITY_GUARD`] for the guard, [`TC_PRIORITY`] for the
//!   others, [`TC_HANDLE`]), and a restarted agent replaces it in place (an
//!   `RTM_NEWTFILTER` without `NLM_F_CREATE`, which `cls_bpf` applies atomically).
//!   The guard and a host endpoint's egress program share one attach point (the
//!   egress of a host interface), so they need distinct priorities: with one
//!   priority the second filter would replace the first, and the guard runs first.
//!
//! The agent as a whole needs more than either: it loads every program at start, and
//! the newest kernel feature among them sets the floor — Linux 6.15, where
//! `bpf_get_netns_cookie` became callable from `cgroup_skb` programs (`enf_cg_in`
//! judges only its own network namespace's deliveries with it). Below that, in order:
//! `bpf_xdp_load_bytes` in the XDP program (5.18), the ring buffer of flow events and
//! `CAP_BPF`/`CAP_PERFMON` (5.8), the cgroup program's pinned link (5.7). So on every
//! kernel the agent runs on TCX is available; `tc` mode is the same programs attached
//! the older way (and what a node whose tooling expects `tc` filters can choose).
//!
//! Either way the kernel keeps the programs attached when the agent exits: TCX
//! through the pinned link, `tc` through the filter itself.

use std::path::Path;

use aya::programs::links::Link as _;
use aya::programs::tc::{NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle};
use aya::programs::{SchedClassifier, TcAttachType};
use aya::util::KernelVersion;

/// The `tc` filter priority of the guard (`enf_guard_eg`): first on a host
/// interface's egress, before the host endpoint's egress program (it judges deferred
/// Service egress and clears the marker that program would otherwise drop).
pub const TC_PRIORITY_GUARD: u16 = 1;
/// The `tc` filter priority of our other programs: right after the guard, before any
/// filter of lower precedence (a higher number), as Calico's own filters are.
/// Agents before this one put every program at priority 1, the guard's.
pub const TC_PRIORITY: u16 = 2;
/// Every priority a filter of ours may have (uninstall, switching to TCX).
const TC_PRIORITIES: [u16; 2] = [TC_PRIORITY_GUARD, TC_PRIORITY];
/// The `tc` filter handle of our programs.
pub const TC_HANDLE: u16 = 1;

/// How TC programs are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// TCX links, pinned (kernel ≥ 6.6).
    Tcx,
    /// Netlink `tc` filters on a `clsact` qdisc.
    Tc,
}

impl AttachMode {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "tcx" => Some(AttachMode::Tcx),
            "tc" | "netlink" => Some(AttachMode::Tc),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AttachMode::Tcx => "tcx",
            AttachMode::Tc => "tc",
        }
    }

    /// What was asked for, else TCX where the kernel has it.
    pub fn choose(requested: Option<AttachMode>) -> AttachMode {
        requested.unwrap_or_else(|| {
            let tcx = KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0));
            if tcx { AttachMode::Tcx } else { AttachMode::Tc }
        })
    }
}

fn handle() -> TcHandle {
    TcHandle::new(0, TC_HANDLE)
}

/// Adds the `clsact` qdisc unless the interface has one.
fn ensure_clsact(iface: &str) -> Result<(), aya::programs::tc::TcError> {
    match aya::programs::tc::qdisc_add_clsact(iface) {
        Err(aya::programs::tc::TcError::AlreadyAttached) => Ok(()),
        Err(aya::programs::tc::TcError::NetlinkError(e))
            if e.raw_os_error() == Some(libc::EEXIST) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// Attaches `prog` as our `tc` filter of `iface`/`attach_type` at `priority`: replaces
/// the filter a previous agent left there (atomically), or creates it. The filter
/// stays when the agent exits.
pub fn attach_tc(
    prog: &mut SchedClassifier,
    iface: &str,
    attach_type: TcAttachType,
    priority: u16,
) -> Result<(), aya::programs::ProgramError> {
    ensure_clsact(iface).map_err(aya::programs::ProgramError::from)?;
    let existing = SchedClassifierLink::attached(iface, attach_type, priority, handle(), None)
        .map_err(|e| aya::programs::ProgramError::from(aya::programs::tc::TcError::IoError(e)))?;
    let link_id = match prog.attach_to_link(existing) {
        Ok(id) => id,
        // No filter of ours yet: create it.
        Err(_) => prog.attach_with_options(
            iface,
            attach_type,
            TcAttachOptions::Netlink(NlOptions {
                priority,
                handle: handle(),
                classid: None,
            }),
        )?,
    };
    // Taken out of the program, never dropped: dropping it would detach the filter.
    let link = prog.take_link(link_id)?;
    std::mem::forget(link);
    Ok(())
}

/// Removes our `tc` filter of `iface`/`attach_type` at `priority`, if there is one
/// (after the agent switched to TCX: the TCX program is attached first, so no packet
/// passes unjudged in between; or a filter an older agent left at another priority,
/// after its replacement was attached).
pub fn detach_tc(iface: &str, attach_type: TcAttachType, priority: u16) {
    if let Ok(link) = SchedClassifierLink::attached(iface, attach_type, priority, handle(), None) {
        let _ = link.detach();
    }
}

/// What [`uninstall`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Uninstalled {
    pub filters: usize,
    pub links: usize,
    pub maps: usize,
}

/// Takes the enforcer off this network namespace on purpose: our `tc` filters of
/// every interface, then every link pinned under `pin_dir` (TCX, XDP, the cgroup
/// program's), detached at once ([`super::detach`]), then the pins and maps.
pub fn uninstall(pin_dir: &Path) -> Result<Uninstalled, std::io::Error> {
    let mut done = Uninstalled::default();
    let interfaces = nix::net::if_::if_nameindex().map_err(std::io::Error::from)?;
    for iface in &interfaces {
        let name = iface.name().to_string_lossy().into_owned();
        for attach_type in [TcAttachType::Ingress, TcAttachType::Egress] {
            for priority in TC_PRIORITIES {
                if let Ok(link) =
                    SchedClassifierLink::attached(&name, attach_type, priority, handle(), None)
                    && link.detach().is_ok()
                {
                    done.filters += 1;
                }
            }
        }
    }
    done.links = super::detach::detach_pinned_links(pin_dir);
    done.maps = std::fs::read_dir(pin_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("ENF_"))
        .count();
    match std::fs::remove_dir_all(pin_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    Ok(done)
}

/// Removes a pinned TCX link (after the agent switched to `tc`: the filter is
/// attached first).
pub fn remove_tcx_pin(path: &Path) {
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_default_to_tcx_on_new_kernels() {
        assert_eq!(AttachMode::parse("tc"), Some(AttachMode::Tc));
        assert_eq!(AttachMode::parse("tcx"), Some(AttachMode::Tcx));
        assert_eq!(AttachMode::parse("xdp"), None);
        assert_eq!(AttachMode::choose(Some(AttachMode::Tc)), AttachMode::Tc);
        let expected = if KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0)) {
            AttachMode::Tcx
        } else {
            AttachMode::Tc
        };
        assert_eq!(AttachMode::choose(None), expected);
    }
}
