//! The node agent: watches the datastore, compiles, writes a new generation, attaches
//! the programs to endpoint interfaces, and reports what it enforces in `status.json`.
//!
//! Bad input never replaces good policy: if a revision fails to load, validate or
//! compile, the maps keep the previous generation and the status says why.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::compile::DataplaneSpec;
use crate::dataplane::content::GenerationContent;
use crate::dataplane::loader::{LoadedDataplane, LoaderError};
use crate::dataplane::writer::{GenerationWriter, WriterError};
use crate::datastore::{AgentStatus, DatastoreError, FileDatastore};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Loader(#[from] LoaderError),
    #[error(transparent)]
    Writer(#[from] WriterError),
    #[error(transparent)]
    Datastore(#[from] DatastoreError),
    #[error(transparent)]
    FlowLog(#[from] crate::flowlog::FlowLogError),
}

/// How the agent runs (all from the command line).
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// This node's name; endpoints of other nodes are not attached here.
    pub node: String,
    pub datastore: PathBuf,
    /// Directory under bpffs for this node's pins.
    pub bpffs: PathBuf,
    /// How often the datastore revision and interfaces are checked.
    pub poll: Duration,
    /// Emit a flow event for every denied new flow.
    pub events_on_deny: bool,
    /// Failsafe ports of host interfaces.
    pub failsafe: crate::dataplane::failsafe::Failsafe,
    /// Where flow events (Log rules, denies) go, one JSON object per line.
    pub flow_log: PathBuf,
}

/// Runs until `stop` is set. Leaves maps and links pinned on exit, so enforcement goes
/// on while the agent restarts.
pub fn run(options: &AgentOptions, stop: &Arc<AtomicBool>) -> Result<(), AgentError> {
    let datastore = FileDatastore::open(&options.datastore)?;
    let mut dataplane =
        LoadedDataplane::load(crate::dataplane::object::BPF_OBJECT, &options.bpffs)?;
    crate::dataplane::failsafe::write(&mut dataplane.ebpf, &options.failsafe)?;
    let mut writer = GenerationWriter::new(&mut dataplane.ebpf)?;
    let ring = crate::dataplane::writer::take(&mut dataplane.ebpf, enforcer_common::MAP_EVENTS)?;
    let flow_log = crate::flowlog::FlowLog::new(ring, &options.flow_log);
    if options.events_on_deny {
        writer.set_flags(enforcer_common::CONFIG_F_EVENT_ON_DENY)?;
    }
    let mut agent = Agent {
        node: options.node.clone(),
        datastore,
        dataplane,
        writer,
        status: AgentStatus::default(),
        spec: None,
        last_ifaces: BTreeMap::new(),
        flow_log,
    };
    tracing::info!(node = %options.node, bpffs = %options.bpffs.display(), "agent started");
    while !stop.load(Ordering::Relaxed) {
        agent.tick()?;
        std::thread::sleep(options.poll);
    }
    tracing::info!("agent stopping; programs stay attached through pinned links");
    Ok(())
}

struct Agent {
    node: String,
    datastore: FileDatastore,
    dataplane: LoadedDataplane,
    writer: GenerationWriter,
    status: AgentStatus,
    /// The spec in force (last good revision).
    spec: Option<DataplaneSpec>,
    /// Endpoint interfaces → ifindex as last written to the maps.
    last_ifaces: BTreeMap<String, u32>,
    flow_log: crate::flowlog::FlowLog,
}

impl Agent {
    fn tick(&mut self) -> Result<(), AgentError> {
        self.flow_log.drain(self.spec.as_ref())?;
        let revision = self.datastore.revision()?;
        if revision != self.status.observed_revision || self.spec.is_none() {
            let started = Instant::now();
            match compile_revision(&self.datastore, &self.node) {
                Ok(spec) => {
                    self.spec = Some(spec);
                    self.status.error = None;
                    self.enforce()?;
                    self.status.applied_revision = revision;
                    self.status.last_apply_us = started.elapsed().as_micros() as u64;
                    tracing::info!(revision, us = self.status.last_apply_us, "applied");
                }
                Err(message) => {
                    tracing::error!(revision, %message, "refused revision; previous policy stays");
                    self.status.error = Some(message);
                }
            }
            self.status.observed_revision = revision;
            self.write_status()?;
        } else if self.interfaces_changed() {
            self.enforce()?;
            self.write_status()?;
        }
        Ok(())
    }

    /// Whether an endpoint interface appeared, vanished or changed ifindex.
    fn interfaces_changed(&self) -> bool {
        self.spec.as_ref().is_some_and(|spec| {
            current_ifaces(&crate::dataplane::host::expand_interfaces(spec)) != self.last_ifaces
        })
    }

    /// Writes the spec in force for the interfaces present now, then attaches.
    fn enforce(&mut self) -> Result<(), AgentError> {
        let Some(spec) = &self.spec else {
            return Ok(());
        };
        let spec = &crate::dataplane::host::expand_interfaces(spec);
        let host_ifaces = crate::dataplane::host::host_interfaces(spec);
        let ifaces = current_ifaces(spec);
        let content = GenerationContent::from_spec(spec, |name| ifaces.get(name).copied());
        // Maps first: the first packet through a newly attached program already finds
        // its endpoint.
        let stats = self.writer.apply(content)?;
        self.status.generation = stats.generation;
        let gone: Vec<String> = self
            .dataplane
            .attached()
            .keys()
            .filter(|name| !ifaces.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            self.dataplane.forget(&name);
        }
        for (name, ifindex) in &ifaces {
            let attached = if host_ifaces.contains(name) {
                self.dataplane.attach_host(name, *ifindex)
            } else {
                self.dataplane.attach(name, *ifindex)
            };
            if let Err(e) = attached {
                // The interface may have vanished between the lookup and the attach;
                // the next tick sees it gone. Anything else is reported.
                tracing::warn!(iface = %name, error = ?e, "attach failed");
            }
        }
        self.status.endpoints_attached = self.dataplane.attached().len();
        self.last_ifaces = ifaces;
        Ok(())
    }

    fn write_status(&self) -> Result<(), AgentError> {
        Ok(self.datastore.write_status(&self.status)?)
    }
}

/// Loads, validates and compiles the datastore's content for `node` (endpoints of other
/// nodes are peers only: no interface of theirs is here); a message on failure.
fn compile_revision(datastore: &FileDatastore, node: &str) -> Result<DataplaneSpec, String> {
    let objects = datastore.list().map_err(|e| e.to_string())?;
    let (cluster, warnings) =
        crate::policy::Cluster::from_objects(&objects).map_err(|e| e.to_string())?;
    for warning in &warnings {
        tracing::warn!(%warning, "policy warning");
    }
    crate::compile::compile_for_node(&cluster, Some(node)).map_err(|e| e.to_string())
}

/// Endpoint interfaces of the spec that exist in this network namespace.
fn current_ifaces(spec: &DataplaneSpec) -> BTreeMap<String, u32> {
    spec.endpoints
        .iter()
        .filter_map(|e| {
            let index = nix::net::if_::if_nametoindex(e.iface.as_str()).ok()?;
            Some((e.iface.clone(), index))
        })
        .collect()
}
