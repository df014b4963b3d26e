//! Loading the BPF object, pinning its maps, and attaching the programs to endpoint
//! interfaces.
//!
//! Maps are pinned by name under the node's bpffs directory and reused by the next
//! agent, so policy and conntrack survive a restart. TCX links are pinned too
//! (`links/<iface>_<ifindex>_<hook>`): a restarted agent atomically replaces the program behind
//! the existing link instead of detaching and re-attaching, so no packet passes an
//! interface unjudged while the agent restarts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::{SchedClassifierLink, TcAttachOptions};
use aya::programs::xdp::{XdpLink, XdpMode};
use aya::programs::{CgroupSkb, LinkOrder, SchedClassifier, Xdp};
use aya::{Ebpf, EbpfLoader};

use super::attach::AttachMode;
pub use super::hook::{Hook, Variant, XDP_HOOK};
use aya::maps::ProgramArray;
use enforcer_common::{
    MAP_CONFIG, MAP_CONNTRACK, MAP_COUNTERS, MAP_DEBUG_TAIL_CGROUP, MAP_DEBUG_TAIL_TC,
    MAP_DEBUG_TAIL_XDP, MAP_ENDPOINTS, MAP_EVENT_BUDGET, MAP_EVENT_STATS, MAP_EVENTS, MAP_FAILSAFE,
    MAP_FLOW_REPORTS, MAP_FRONTENDS, MAP_PEERS_V4, MAP_PEERS_V6, MAP_PENDING, MAP_POLICY_NAMES,
    MAP_PORTS, MAP_RULE_COUNTERS, MAP_SOURCE_PORTS, MAP_VERDICTS, PROG_CGROUP_INGRESS,
    PROG_CGROUP_INGRESS_DEBUG, PROG_LOG_CGROUP_DEBUG, PROG_LOG_TC_DEBUG, PROG_LOG_XDP_DEBUG,
};

/// Every map the agent pins.
pub const PINNED_MAPS: [&str; 18] = [
    MAP_FAILSAFE,
    MAP_CONFIG,
    MAP_ENDPOINTS,
    MAP_PEERS_V4,
    MAP_PEERS_V6,
    MAP_PORTS,
    MAP_SOURCE_PORTS,
    MAP_VERDICTS,
    MAP_CONNTRACK,
    MAP_PENDING,
    MAP_FRONTENDS,
    MAP_COUNTERS,
    MAP_EVENTS,
    // Observability: flow-event rate limiting, event and per-rule counters, the
    // stable policy ids (which must survive restarts with the counters they key).
    MAP_FLOW_REPORTS,
    MAP_EVENT_BUDGET,
    MAP_EVENT_STATS,
    MAP_RULE_COUNTERS,
    MAP_POLICY_NAMES,
];

pub use super::load_error::LoaderError;

/// Mounts bpffs at /sys/fs/bpf when nothing is mounted there (fresh machines).
pub fn ensure_bpffs() -> Result<(), LoaderError> {
    let root = Path::new("/sys/fs/bpf");
    let is_bpffs = nix::sys::statfs::statfs(root)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC);
    if is_bpffs {
        return Ok(());
    }
    std::fs::create_dir_all(root).map_err(|source| LoaderError::Bpffs {
        op: "create",
        path: root.to_path_buf(),
        source,
    })?;
    nix::mount::mount(
        Some("bpf"),
        root,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| LoaderError::Bpffs {
        op: "mount",
        path: root.to_path_buf(),
        source: e.into(),
    })
}

/// The loaded programs of one node, and the interfaces they are attached to.
pub struct LoadedDataplane {
    pub ebpf: Ebpf,
    pub(super) pin_dir: PathBuf,
    pub(super) variant: Variant,
    /// iface → ifindex it had when attached.
    attached: BTreeMap<String, u32>,
    /// Interfaces carrying the guard → their ifindex.
    pub(super) guarded: BTreeMap<String, u32>,
    /// TCX links or netlink `tc` filters (see `attach.rs`).
    mode: AttachMode,
    /// An upgrade from pins of another layout, under way (see `layout.rs`).
    upgrade: Option<Upgrade>,
    /// The links this agent attached or took over, held open, by (interface, hook
    /// name; the cgroup link under [`CGROUP_KEY`]): a removed pin then leaves the
    /// program attached until `verify.rs` pins it again.
    pub(super) held: BTreeMap<(String, &'static str), FdLink>,
}

/// The key of the cgroup program's link in [`LoadedDataplane::held`].
pub(super) const CGROUP_KEY: (&str, &str) = ("", "cgroup-ingress");

/// An upgrade between map layouts, from load to the end of the first apply.
#[derive(Debug)]
struct Upgrade {
    /// This agent's layout.
    id: String,
    /// Where its maps are pinned until the old pins go.
    staging: PathBuf,
    /// The flow tables were copied from the old maps.
    copied: bool,
}

impl LoadedDataplane {
    /// Loads the embedded object with every map pinned under `pin_dir` (reusing maps a
    /// previous agent pinned there), and the programs of `variant` through the verifier.
    pub fn load(object: &[u8], pin_dir: &Path, variant: Variant) -> Result<Self, LoaderError> {
        ensure_bpffs()?;
        for dir in [
            pin_dir.to_path_buf(),
            pin_dir.join("links"),
            pin_dir.join(GUARD_LINKS),
        ] {
            std::fs::create_dir_all(&dir).map_err(|source| LoaderError::Bpffs {
                op: "create",
                path: dir.clone(),
                source,
            })?;
        }
        // Pins of another layout are never reused: this agent's maps go to a staging
        // directory until it has taken the interfaces over.
        let id = super::layout::layout_id(object)?;
        let (maps_dir, upgrade) = match super::layout::pins(pin_dir, &id) {
            super::layout::Pins::Fresh | super::layout::Pins::Same => (pin_dir.to_path_buf(), None),
            super::layout::Pins::Other { marker } => {
                let staging = super::layout::fresh_staging(pin_dir, &id)?;
                tracing::info!(
                    from = marker.as_deref().unwrap_or("(unversioned)"),
                    to = %id,
                    "pinned maps of another layout: upgrading"
                );
                (
                    staging.clone(),
                    Some(Upgrade {
                        id: id.clone(),
                        staging,
                        copied: false,
                    }),
                )
            }
        };
        let mut loader = EbpfLoader::new();
        for name in PINNED_MAPS {
            loader.map_pin_path(name, maps_dir.join(name));
        }
        let mut ebpf = loader.load(object).map_err(|source| LoaderError::Load {
            pin_dir: pin_dir.to_path_buf(),
            source: Box::new(source),
        })?;
        for program in Hook::ALL.map(|hook| hook.program(variant)) {
            let prog = classifier(&mut ebpf, program)?;
            prog.load().map_err(|source| LoaderError::Program {
                program,
                op: "load",
                source: Box::new(source),
            })?;
        }
        xdp(&mut ebpf, variant)?
            .load()
            .map_err(|source| LoaderError::Program {
                program: variant.host_xdp(),
                op: "load",
                source: Box::new(source),
            })?;
        let program = variant.pick(PROG_CGROUP_INGRESS, PROG_CGROUP_INGRESS_DEBUG);
        cgroup_skb(&mut ebpf, program)?
            .load()
            .map_err(|source| LoaderError::Program {
                program,
                op: "load",
                source: Box::new(source),
            })?;
        if upgrade.is_none() {
            super::layout::mark(pin_dir, &id)?;
        }
        if variant == Variant::DebugLog {
            load_debug_log_programs(&mut ebpf)?;
        }
        Ok(Self {
            ebpf,
            pin_dir: pin_dir.to_path_buf(),
            variant,
            attached: BTreeMap::new(),
            guarded: BTreeMap::new(),
            mode: AttachMode::Tcx,
            upgrade,
            held: BTreeMap::new(),
        })
    }

    /// Where this agent's maps are pinned now (its staging directory during an
    /// upgrade).
    pub fn maps_dir(&self) -> &Path {
        self.upgrade.as_ref().map_or(&self.pin_dir, |u| &u.staging)
    }

    /// Upgrade step 2, once this agent's policy is written: the old conntrack and
    /// pending tables are copied into the new maps, before any interface moves.
    pub fn copy_flows_before_swap(&mut self) {
        let Some(upgrade) = self.upgrade.as_mut().filter(|u| !u.copied) else {
            return;
        };
        let (flows, pending) = super::layout::copy_flows(&self.pin_dir, &upgrade.staging, false);
        upgrade.copied = true;
        tracing::info!(
            flows,
            pending,
            "upgrade: conntrack copied into the new maps"
        );
    }

    /// Upgrade step 4, once every bound interface runs this agent's programs: the
    /// flows the old programs opened in between are copied, the old counters added,
    /// the old links nobody took over and the old map pins removed, the new pins put
    /// in their place.
    pub fn finish_upgrade(&mut self) -> Result<(), LoaderError> {
        let Some(upgrade) = self.upgrade.as_ref().filter(|u| u.copied) else {
            return Ok(());
        };
        let (flows, pending) = super::layout::copy_flows(&self.pin_dir, &upgrade.staging, true);
        super::layout::add_counters(&self.pin_dir, &upgrade.staging);
        let links = self.pin_dir.join("links");
        let mut stale = 0;
        for entry in std::fs::read_dir(&links).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let mut parts = name.rsplitn(3, '_');
            let (_hook, ifindex, iface) = (parts.next(), parts.next(), parts.next());
            let ours = iface
                .is_some_and(|i| self.attached.get(i).map(u32::to_string).as_deref() == ifindex);
            if !ours {
                let _ = std::fs::remove_file(entry.path());
                stale += 1;
            }
        }
        super::layout::promote(&self.pin_dir, &upgrade.staging, &upgrade.id, &PINNED_MAPS)?;
        tracing::info!(
            flows,
            pending,
            stale_links = stale,
            layout = %upgrade.id,
            "upgrade done: old maps removed, new maps pinned in their place"
        );
        self.upgrade = None;
        Ok(())
    }

    /// How TC programs are attached from now on.
    pub fn set_attach_mode(&mut self, mode: AttachMode) {
        self.mode = mode;
    }

    pub fn attach_mode(&self) -> AttachMode {
        self.mode
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// The build of the programs loaded.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// Interfaces currently carrying our programs.
    pub fn attached(&self) -> &BTreeMap<String, u32> {
        &self.attached
    }

    /// Attaches both pod programs to `iface` (ifindex `ifindex`) unless already done for
    /// that ifindex. A pinned link left by a previous agent is taken over atomically.
    pub fn attach(&mut self, iface: &str, ifindex: u32) -> Result<(), LoaderError> {
        self.attach_hooks(iface, ifindex, &[Hook::PodEgress, Hook::PodIngress])
    }

    /// Attaches the host programs to a host interface: both TCX programs, then XDP
    /// (native mode, generic when the driver has none). XDP is an optimization (TC
    /// judges every packet XDP passes): when it cannot attach, the TC programs still
    /// do and the interface counts as attached; the error is returned to be reported,
    /// and `verify.rs` tries XDP again later.
    pub fn attach_host(&mut self, iface: &str, ifindex: u32) -> Result<(), LoaderError> {
        if self.attached.get(iface) == Some(&ifindex) {
            return Ok(());
        }
        self.attach_hooks(iface, ifindex, &[Hook::HostIngress, Hook::HostEgress])?;
        self.attach_xdp(iface, ifindex)
    }

    /// Attaches XDP to a host interface unless a link of ours is pinned for it.
    pub(super) fn attach_xdp(&mut self, iface: &str, ifindex: u32) -> Result<(), LoaderError> {
        let path = self.xdp_link_path(iface, ifindex);
        if path.exists() {
            // A link a previous agent pinned: its program is replaced in place (this
            // agent's maps, perhaps of a new layout), and the link held.
            let reused = PinnedLink::from_pin(&path)
                .ok()
                .and_then(|pinned| XdpLink::try_from(FdLink::from(pinned)).ok());
            if let Some(link) = reused {
                let prog = xdp(&mut self.ebpf, self.variant)?;
                let taken = prog
                    .attach_to_link(link)
                    .and_then(|id| prog.take_link(id))
                    .map_err(|e| e.to_string())
                    .and_then(|link| FdLink::try_from(link).map_err(|e| e.to_string()));
                match taken {
                    Ok(held) => {
                        self.held.insert((iface.to_owned(), XDP_HOOK), held);
                        return Ok(());
                    }
                    Err(error) => tracing::warn!(
                        iface,
                        %error,
                        "taking the pinned XDP link over failed; attaching anew"
                    ),
                }
            }
            let _ = std::fs::remove_file(&path);
        }
        let program = self.variant.host_xdp();
        let prog = xdp(&mut self.ebpf, self.variant)?;
        let attach_err = |source| LoaderError::Attach {
            program,
            iface: iface.to_owned(),
            hook: XDP_HOOK,
            source: Box::new(source),
        };
        let link_id = match prog.attach(iface, XdpMode::Driver) {
            Ok(id) => id,
            Err(e) => {
                tracing::debug!(iface, error = %e, "native XDP failed; generic XDP");
                prog.attach(iface, XdpMode::Skb).map_err(attach_err)?
            }
        };
        let link = prog.take_link(link_id).map_err(attach_err)?;
        let held = pin_link(link, &path)?;
        self.held.insert((iface.to_owned(), XDP_HOOK), held);
        Ok(())
    }

    /// `links/<iface>_<ifindex>_host-xdp`.
    pub(super) fn xdp_link_path(&self, iface: &str, ifindex: u32) -> PathBuf {
        self.pin_dir
            .join("links")
            .join(format!("{iface}_{ifindex}_{XDP_HOOK}"))
    }

    fn attach_hooks(
        &mut self,
        iface: &str,
        ifindex: u32,
        hooks: &[Hook],
    ) -> Result<(), LoaderError> {
        if self.attached.get(iface) == Some(&ifindex) {
            return Ok(());
        }
        self.remove_pins(iface, Some(ifindex));
        for &hook in hooks {
            let path = self.link_path(iface, ifindex, hook);
            let order = self.tcx_order(iface, hook)?;
            let Some(held) = self.attach_one(iface, hook, &path, order)? else {
                continue;
            };
            self.held.insert((iface.to_owned(), hook.name()), held);
        }
        self.attached.insert(iface.to_owned(), ifindex);
        Ok(())
    }

    /// Where `hook`'s TCX link goes in `iface`'s chain: first (security item 13: a
    /// program placed before ours that returns `TCX_PASS` would end the chain before our
    /// verdict), except right after the guard of the same side where `iface` has guards
    /// (the host egress program drops a Service packet the egress guard did not judge
    /// first; the host ingress program's `TCX_PASS` would skip the ingress guard).
    pub(super) fn tcx_order(&mut self, iface: &str, hook: Hook) -> Result<LinkOrder, LoaderError> {
        let behind_guard =
            !hook.is_guard() && self.mode == AttachMode::Tcx && self.guarded.contains_key(iface);
        if !behind_guard {
            return Ok(LinkOrder::first());
        }
        let program = hook.guard().program(self.variant);
        LinkOrder::after_program(classifier(&mut self.ebpf, program)?).map_err(|source| {
            LoaderError::Program {
                program,
                op: "order after the guard",
                source: Box::new(source),
            }
        })
    }

    /// Attaches `hook`'s program to `iface` at `order`, pinned at `path`; returns the
    /// link, held open. A pinned link for this very ifindex (the pin name carries it),
    /// left by a previous agent, is taken over atomically: its program is replaced in
    /// place, and the pin stays. In `tc` mode the program goes in as a netlink `tc`
    /// filter instead (no link: `None`), and a TCX link left from before goes after it.
    pub(super) fn attach_one(
        &mut self,
        iface: &str,
        hook: Hook,
        path: &Path,
        order: LinkOrder,
    ) -> Result<Option<FdLink>, LoaderError> {
        let program = hook.program(self.variant);
        let prog = classifier(&mut self.ebpf, program)?;
        let attach_err = |source| LoaderError::Attach {
            program,
            iface: iface.to_owned(),
            hook: hook.name(),
            source: Box::new(source),
        };
        if self.mode == AttachMode::Tc {
            super::attach::attach_tc(prog, iface, hook.attach_type(), hook.tc_priority())
                .map_err(attach_err)?;
            if hook.owns_legacy_tc_priority() {
                // An older agent's filter of this hook (priority 1 for every program):
                // ours judges now, so it goes.
                super::attach::detach_tc(
                    iface,
                    hook.attach_type(),
                    super::attach::TC_PRIORITY_GUARD,
                );
            }
            // Switched from TCX: the filter judges first, then the link goes.
            super::attach::remove_tcx_pin(path);
            return Ok(None);
        }
        let reused = PinnedLink::from_pin(path)
            .ok()
            .and_then(|pinned| SchedClassifierLink::try_from(FdLink::from(pinned)).ok());
        if let Some(link) = reused {
            let link_id = prog.attach_to_link(link).map_err(attach_err)?;
            let link = prog.take_link(link_id).map_err(attach_err)?;
            // Pinned already: only held.
            return FdLink::try_from(link)
                .map(Some)
                .map_err(|e| LoaderError::PinLink {
                    path: path.to_path_buf(),
                    source: Box::new(e),
                });
        }
        let _ = std::fs::remove_file(path);
        let link_id = prog
            .attach_with_options(iface, hook.attach_type(), TcAttachOptions::TcxOrder(order))
            .map_err(attach_err)?;
        let link = prog.take_link(link_id).map_err(attach_err)?;
        let held = pin_link(link, path)?;
        // Switched from `tc`: the link judges first, then the filter goes (and an older
        // agent's, at the guard's priority, where that is not the guard's place).
        super::attach::detach_tc(iface, hook.attach_type(), hook.tc_priority());
        if hook.owns_legacy_tc_priority() {
            super::attach::detach_tc(iface, hook.attach_type(), super::attach::TC_PRIORITY_GUARD);
        }
        Ok(Some(held))
    }

    /// Forgets an interface that went away (the kernel dropped its links with it) and
    /// removes its link pins.
    pub fn forget(&mut self, iface: &str) {
        self.attached.remove(iface);
        self.held.retain(|(held, hook), _| {
            held != iface || Hook::GUARDS.iter().any(|g| g.name() == *hook)
        });
        self.remove_pins(iface, None);
    }

    /// `links/<iface>_<ifindex>_<hook>`: bpffs refuses names with dots (EPERM).
    pub(super) fn link_path(&self, iface: &str, ifindex: u32, hook: Hook) -> PathBuf {
        self.pin_dir
            .join("links")
            .join(format!("{iface}_{ifindex}_{}", hook.name()))
    }

    /// Removes link pins of `iface` except those of ifindex `keep`.
    fn remove_pins(&self, iface: &str, keep: Option<u32>) {
        remove_pins_in(&self.pin_dir.join("links"), iface, keep);
    }
}

/// Guard links live apart from the endpoint links (`links/`): an interface that stops
/// carrying an endpoint keeps its guard.
pub(super) const GUARD_LINKS: &str = "guards";
/// The cgroup program's pinned link.
pub(super) const CGROUP_LINK: &str = "cgroup_ingress";

/// Removes the pins `<iface>_<ifindex>_<hook>` in `dir` except those of ifindex `keep`.
pub(super) fn remove_pins_in(dir: &Path, iface: &str, keep: Option<u32>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!("{iface}_");
    let kept = keep.map(|k| format!("{iface}_{k}_"));
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = name.starts_with(&prefix)
            && !kept.as_ref().is_some_and(|k| name.starts_with(k.as_str()));
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Loads the log programs the debug-log variants tail-call, and puts them in
/// `ENF_DEBUG_TC` / `ENF_DEBUG_XDP` (which stay in the object, open for as long as the programs are:
/// the kernel empties a program array when its last user reference closes).
fn load_debug_log_programs(ebpf: &mut Ebpf) -> Result<(), LoaderError> {
    let program_err = |program: &'static str, op: &'static str| {
        move |source| LoaderError::Program {
            program,
            op,
            source: Box::new(source),
        }
    };
    let tc = classifier(ebpf, PROG_LOG_TC_DEBUG)?;
    tc.load().map_err(program_err(PROG_LOG_TC_DEBUG, "load"))?;
    let tc_fd = tc
        .fd()
        .map_err(program_err(PROG_LOG_TC_DEBUG, "fd"))?
        .try_clone()
        .map_err(|e| program_err(PROG_LOG_TC_DEBUG, "fd")(e.into()))?;
    let program = PROG_LOG_XDP_DEBUG;
    let xdp: &mut Xdp = ebpf
        .program_mut(program)
        .ok_or(LoaderError::MissingProgram { program })?
        .try_into()
        .map_err(program_err(program, "type"))?;
    xdp.load().map_err(program_err(program, "load"))?;
    let xdp_fd = xdp
        .fd()
        .map_err(program_err(program, "fd"))?
        .try_clone()
        .map_err(|e| program_err(program, "fd")(e.into()))?;
    let program = PROG_LOG_CGROUP_DEBUG;
    let cg = cgroup_skb(ebpf, program)?;
    cg.load().map_err(program_err(program, "load"))?;
    let cg_fd = cg
        .fd()
        .map_err(program_err(program, "fd"))?
        .try_clone()
        .map_err(|e| program_err(program, "fd")(e.into()))?;
    for (map, fd) in [
        (MAP_DEBUG_TAIL_TC, tc_fd),
        (MAP_DEBUG_TAIL_XDP, xdp_fd),
        (MAP_DEBUG_TAIL_CGROUP, cg_fd),
    ] {
        let map_err = |op: &'static str| {
            move |source| LoaderError::DebugTail {
                map,
                op,
                source: Box::new(source),
            }
        };
        let found = ebpf.map_mut(map).ok_or(LoaderError::MissingMap { map })?;
        let mut tail = ProgramArray::try_from(found).map_err(map_err("open"))?;
        tail.set(0, &fd, 0)
            .map_err(map_err("set the log program"))?;
    }
    Ok(())
}

fn xdp(ebpf: &mut Ebpf, variant: Variant) -> Result<&mut Xdp, LoaderError> {
    typed_program(ebpf, variant.host_xdp())
}

/// Pins a link: it keeps its program attached after this process exits. Returns the
/// link, still open.
pub(super) fn pin_link<L>(link: L, path: &Path) -> Result<FdLink, LoaderError>
where
    FdLink: TryFrom<L>,
    <FdLink as TryFrom<L>>::Error: std::error::Error + Send + Sync + 'static,
{
    let pin_err = |source: Box<dyn std::error::Error + Send + Sync>| LoaderError::PinLink {
        path: path.to_path_buf(),
        source,
    };
    let fd_link = FdLink::try_from(link).map_err(|e| pin_err(Box::new(e)))?;
    let pinned = fd_link.pin(path).map_err(|e| pin_err(Box::new(e)))?;
    Ok(FdLink::from(pinned))
}

pub(super) fn cgroup_skb<'a>(
    ebpf: &'a mut Ebpf,
    program: &'static str,
) -> Result<&'a mut CgroupSkb, LoaderError> {
    typed_program(ebpf, program)
}

pub(super) fn classifier<'a>(
    ebpf: &'a mut Ebpf,
    program: &'static str,
) -> Result<&'a mut SchedClassifier, LoaderError> {
    typed_program(ebpf, program)
}

/// `program` of the object as its program type `T`.
fn typed_program<'a, T>(ebpf: &'a mut Ebpf, program: &'static str) -> Result<&'a mut T, LoaderError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(program)
        .ok_or(LoaderError::MissingProgram { program })?
        .try_into()
        .map_err(|source| LoaderError::Program {
            program,
            op: "type",
            source: Box::new(source),
        })
}

/// Removes a node's pinned links and maps (the programs detach with the last link).
pub fn unpin_all(pin_dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(pin_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
