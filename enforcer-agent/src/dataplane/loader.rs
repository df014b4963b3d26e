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
use aya::programs::xdp::XdpMode;
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType, Xdp};
use aya::{Ebpf, EbpfLoader};

use aya::maps::ProgramArray;
use enforcer_common::{
    MAP_CONFIG, MAP_CONNTRACK, MAP_COUNTERS, MAP_DEBUG_TAIL_TC, MAP_DEBUG_TAIL_XDP, MAP_ENDPOINTS,
    MAP_EVENT_BUDGET, MAP_EVENT_STATS, MAP_EVENTS, MAP_FAILSAFE, MAP_FLOW_REPORTS, MAP_PEERS_V4,
    MAP_PEERS_V6, MAP_PENDING, MAP_POLICY_NAMES, MAP_PORTS, MAP_RULE_COUNTERS, MAP_VERDICTS,
    PROG_HOST_EGRESS, PROG_HOST_EGRESS_DEBUG, PROG_HOST_INGRESS, PROG_HOST_INGRESS_DEBUG,
    PROG_HOST_XDP, PROG_HOST_XDP_DEBUG, PROG_LOG_TC_DEBUG, PROG_LOG_XDP_DEBUG, PROG_POD_EGRESS,
    PROG_POD_EGRESS_DEBUG, PROG_POD_INGRESS, PROG_POD_INGRESS_DEBUG,
};

/// Every map the agent pins.
pub const PINNED_MAPS: [&str; 16] = [
    MAP_FAILSAFE,
    MAP_CONFIG,
    MAP_ENDPOINTS,
    MAP_PEERS_V4,
    MAP_PEERS_V6,
    MAP_PORTS,
    MAP_VERDICTS,
    MAP_CONNTRACK,
    MAP_PENDING,
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

#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error("bpffs: {op} {path}: {source}")]
    Bpffs {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("loading the BPF object (maps pinned under {pin_dir}): {source}")]
    Load {
        pin_dir: PathBuf,
        #[source]
        source: Box<aya::EbpfError>,
    },
    #[error("program {program} is missing from the BPF object")]
    MissingProgram { program: &'static str },
    #[error("map {map} is missing from the BPF object")]
    MissingMap { map: &'static str },
    #[error("the debug log's program array {map}: {op}: {source}")]
    DebugTail {
        map: &'static str,
        op: &'static str,
        #[source]
        source: Box<aya::maps::MapError>,
    },
    #[error("program {program}: {op}: {source}")]
    Program {
        program: &'static str,
        op: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("attaching {program} to {iface} ({hook}): {source}")]
    Attach {
        program: &'static str,
        iface: String,
        hook: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("pinning link {path}: {source}")]
    PinLink {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

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

/// Which build of the programs the agent loads and attaches: the production programs,
/// or their debug-log variants (`--bpf-debug-log`), which write an aya-log record per
/// verdict. Only one set is loaded: the other never goes through the verifier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Variant {
    #[default]
    Production,
    DebugLog,
}

impl Variant {
    fn pick(self, production: &'static str, debug: &'static str) -> &'static str {
        match self {
            Variant::Production => production,
            Variant::DebugLog => debug,
        }
    }

    /// The XDP program of this variant.
    pub fn host_xdp(self) -> &'static str {
        self.pick(PROG_HOST_XDP, PROG_HOST_XDP_DEBUG)
    }
}

/// One direction of an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hook {
    /// TCX ingress of the host-side veth: the pod's egress policy.
    PodEgress,
    /// TCX egress of the host-side veth: the pod's ingress policy.
    PodIngress,
    /// TCX ingress of a host interface: the host endpoint's ingress chain.
    HostIngress,
    /// TCX egress of a host interface: the host endpoint's egress chain.
    HostEgress,
}

impl Hook {
    /// The program of `variant` that runs at this hook.
    pub fn program(self, variant: Variant) -> &'static str {
        match self {
            Hook::PodEgress => variant.pick(PROG_POD_EGRESS, PROG_POD_EGRESS_DEBUG),
            Hook::PodIngress => variant.pick(PROG_POD_INGRESS, PROG_POD_INGRESS_DEBUG),
            Hook::HostIngress => variant.pick(PROG_HOST_INGRESS, PROG_HOST_INGRESS_DEBUG),
            Hook::HostEgress => variant.pick(PROG_HOST_EGRESS, PROG_HOST_EGRESS_DEBUG),
        }
    }

    /// Every TC hook.
    pub const ALL: [Hook; 4] = [
        Hook::PodEgress,
        Hook::PodIngress,
        Hook::HostIngress,
        Hook::HostEgress,
    ];
    fn attach_type(self) -> TcAttachType {
        match self {
            Hook::PodEgress | Hook::HostIngress => TcAttachType::Ingress,
            Hook::PodIngress | Hook::HostEgress => TcAttachType::Egress,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Hook::PodEgress => "pod-egress",
            Hook::PodIngress => "pod-ingress",
            Hook::HostIngress => "host-ingress",
            Hook::HostEgress => "host-egress",
        }
    }
}

/// The loaded programs of one node, and the interfaces they are attached to.
pub struct LoadedDataplane {
    pub ebpf: Ebpf,
    pin_dir: PathBuf,
    variant: Variant,
    /// iface → ifindex it had when attached.
    attached: BTreeMap<String, u32>,
}

impl LoadedDataplane {
    /// Loads the embedded object with every map pinned under `pin_dir` (reusing maps a
    /// previous agent pinned there), and the programs of `variant` through the verifier.
    pub fn load(object: &[u8], pin_dir: &Path, variant: Variant) -> Result<Self, LoaderError> {
        ensure_bpffs()?;
        for dir in [pin_dir.to_path_buf(), pin_dir.join("links")] {
            std::fs::create_dir_all(&dir).map_err(|source| LoaderError::Bpffs {
                op: "create",
                path: dir.clone(),
                source,
            })?;
        }
        let mut loader = EbpfLoader::new();
        for name in PINNED_MAPS {
            loader.map_pin_path(name, pin_dir.join(name));
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
        if variant == Variant::DebugLog {
            load_debug_log_programs(&mut ebpf)?;
        }
        Ok(Self {
            ebpf,
            pin_dir: pin_dir.to_path_buf(),
            variant,
            attached: BTreeMap::new(),
        })
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
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

    /// Attaches the host programs to a host interface: XDP (native mode, generic when
    /// the driver has none) and both TCX programs.
    pub fn attach_host(&mut self, iface: &str, ifindex: u32) -> Result<(), LoaderError> {
        if self.attached.get(iface) == Some(&ifindex) {
            return Ok(());
        }
        self.remove_pins(iface, Some(ifindex));
        let path = self
            .pin_dir
            .join("links")
            .join(format!("{iface}_{ifindex}_host-xdp"));
        if !path.exists() {
            let program = self.variant.host_xdp();
            let prog = xdp(&mut self.ebpf, self.variant)?;
            let attach_err = |source| LoaderError::Attach {
                program,
                iface: iface.to_owned(),
                hook: "host-xdp",
                source: Box::new(source),
            };
            let link_id = match prog.attach(iface, XdpMode::Driver) {
                Ok(id) => id,
                Err(e) => {
                    tracing::warn!(iface, error = %e, "native XDP failed; generic XDP");
                    prog.attach(iface, XdpMode::Skb).map_err(attach_err)?
                }
            };
            let link = prog.take_link(link_id).map_err(attach_err)?;
            pin_link(link, &path)?;
        }
        self.attached.remove(iface);
        self.attach_hooks(iface, ifindex, &[Hook::HostIngress, Hook::HostEgress])
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
            let program = hook.program(self.variant);
            let prog = classifier(&mut self.ebpf, program)?;
            let attach_err = |source| LoaderError::Attach {
                program,
                iface: iface.to_owned(),
                hook: hook.name(),
                source: Box::new(source),
            };
            // A pinned link for this very ifindex (the pin name carries it): replace
            // its program in place. Pins of an older interface of the same name die.
            let reused = PinnedLink::from_pin(&path)
                .ok()
                .and_then(|pinned| SchedClassifierLink::try_from(FdLink::from(pinned)).ok());
            let link_id = if let Some(link) = reused {
                prog.attach_to_link(link).map_err(attach_err)?
            } else {
                let _ = std::fs::remove_file(&path);
                prog.attach_with_options(
                    iface,
                    hook.attach_type(),
                    TcAttachOptions::TcxOrder(LinkOrder::default()),
                )
                .map_err(attach_err)?
            };
            let link = prog.take_link(link_id).map_err(attach_err)?;
            pin_link(link, &path)?;
        }
        self.attached.insert(iface.to_owned(), ifindex);
        Ok(())
    }

    /// Forgets an interface that went away (the kernel dropped its links with it) and
    /// removes its link pins.
    pub fn forget(&mut self, iface: &str) {
        self.attached.remove(iface);
        self.remove_pins(iface, None);
    }

    /// `links/<iface>_<ifindex>_<hook>`: bpffs refuses names with dots (EPERM).
    fn link_path(&self, iface: &str, ifindex: u32, hook: Hook) -> PathBuf {
        self.pin_dir
            .join("links")
            .join(format!("{iface}_{ifindex}_{}", hook.name()))
    }

    /// Removes link pins of `iface` except those of ifindex `keep`.
    fn remove_pins(&self, iface: &str, keep: Option<u32>) {
        let Ok(entries) = std::fs::read_dir(self.pin_dir.join("links")) else {
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
    for (map, fd) in [(MAP_DEBUG_TAIL_TC, tc_fd), (MAP_DEBUG_TAIL_XDP, xdp_fd)] {
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
    let program = variant.host_xdp();
    ebpf.program_mut(program)
        .ok_or(LoaderError::MissingProgram { program })?
        .try_into()
        .map_err(|source| LoaderError::Program {
            program,
            op: "type",
            source: Box::new(source),
        })
}

/// Pins a link: it keeps its program attached after this process exits.
fn pin_link<L>(link: L, path: &Path) -> Result<(), LoaderError>
where
    FdLink: TryFrom<L>,
    <FdLink as TryFrom<L>>::Error: std::error::Error + Send + Sync + 'static,
{
    let pin_err = |source: Box<dyn std::error::Error + Send + Sync>| LoaderError::PinLink {
        path: path.to_path_buf(),
        source,
    };
    let fd_link = FdLink::try_from(link).map_err(|e| pin_err(Box::new(e)))?;
    fd_link.pin(path).map_err(|e| pin_err(Box::new(e)))?;
    Ok(())
}

fn classifier<'a>(
    ebpf: &'a mut Ebpf,
    program: &'static str,
) -> Result<&'a mut SchedClassifier, LoaderError> {
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
