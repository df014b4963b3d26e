//! The node agent: an event loop on tokio over the datastore's changes, the node's
//! link events, the flow-event ring buffer and shutdown signals. Each datastore change
//! is compiled and written as a new policy generation; each interface change rebinds
//! the policy in force; the outcome is published as
//! [`crate::datastore::status::AgentStatus`].
//!
//! Nothing polls: every source wakes the loop when it has something. The agent runs
//! against `dyn Datastore` and `dyn Dataplane`, so a test drives it with the in-memory
//! datastore and a recording dataplane.
//!
//! Maps and links stay pinned when the agent exits, so enforcement goes on while it
//! restarts.

pub mod cache;
mod error;
mod flow_names;
pub mod flowlog;
mod heap;
pub mod links;
pub mod model;
pub mod reconcile;
pub mod selection;
pub mod status;
pub mod version;
pub mod watchdog;

use std::future::Future;
use std::path::PathBuf;

use tokio::sync::watch;

use crate::dataplane::bpf::BpfDataplane;
use crate::dataplane::failsafe::Failsafe;
use crate::dataplane::interfaces::WorkloadPrefixes;
use crate::dataplane::loader::Variant;
use crate::datastore::Datastore;
use crate::datastore::status::AgentStatus;

pub use error::AgentError;
use flowlog::{FlowEvents, FlowLog, FlowLogError, FlowLogOptions};
use links::{LinkSource, NetlinkLinks};
use reconcile::Reconciler;
use watchdog::Watchdog;

/// How the agent runs (all from the command line).
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// This node's name; endpoints of other nodes are not attached here.
    pub node: String,
    /// Directory under bpffs for this node's pins.
    pub bpffs: PathBuf,
    /// Which verdicts become flow events (Log rules always do).
    pub flow_events: FlowEvents,
    /// Failsafe ports of host interfaces.
    pub failsafe: Failsafe,
    /// Where flow events go (one JSON line per flow and interval), size bound and
    /// rotation.
    pub flow_log: FlowLogOptions,
    /// Opt-in BPF debug log of verdicts (aya-log, forwarded to `tracing` under the
    /// target `enforcer::bpf`), off by default: the production programs carry no
    /// debug-log code; this loads and attaches their `_d` variants instead.
    pub bpf_log: bool,
    /// How TC programs are attached (TCX links or netlink `tc` filters).
    pub attach: crate::dataplane::attach::AttachMode,
    /// Which interfaces are workload interfaces (attached fail-closed on sight).
    pub workload_prefixes: WorkloadPrefixes,
    /// The cgroup v2 directory the cgroup program (deferred Service egress delivered to
    /// the node's own sockets) is attached to; `None`: not attached.
    pub cgroup: Option<PathBuf>,
}

/// Runs the agent with the BPF dataplane and this network namespace's links until
/// `shutdown` completes. Statuses go to `status` (subscribe before calling).
pub async fn run(
    options: &AgentOptions,
    mut datastore: Box<dyn Datastore>,
    status: watch::Sender<AgentStatus>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    heap::one_heap();
    let variant = if options.bpf_log {
        Variant::DebugLog
    } else {
        Variant::Production
    };
    let mut dataplane = BpfDataplane::load(
        crate::dataplane::object::BPF_OBJECT,
        &options.bpffs,
        variant,
        &options.failsafe,
        options.flow_events.config_flags(),
        options.attach,
    )?;
    // Held for the agent's lifetime: dropping the reader stops the records.
    let _bpf_log = if options.bpf_log {
        Some(dataplane.start_debug_log()?)
    } else {
        None
    };
    let cgroup_failure = options.cgroup.as_ref().and_then(|cgroup| {
        let error = dataplane.attach_cgroup(cgroup).err()?;
        // Enforcement of everything else must not wait for this one path; Service
        // traffic to the node's own sockets is then judged by nobody: said loudly, and
        // the agent is not ready.
        tracing::error!(
            cgroup = %cgroup.display(),
            %error,
            "cgroup program not attached: Service traffic to this node's sockets is not judged"
        );
        Some((format!("cgroup {}", cgroup.display()), error.to_string()))
    });
    let mut flow_log = FlowLog::new(
        dataplane.take_events()?,
        Some(dataplane.take_flow_reports()?),
        &options.flow_log,
    )?;
    let mut links = NetlinkLinks::open().await?;
    tracing::info!(
        node = %options.node,
        bpffs = %options.bpffs.display(),
        datastore = %datastore.describe(),
        attach = options.attach.name(),
        links = links.current().len(),
        "agent started"
    );
    let mut watchdog = Watchdog::new(
        watchdog::DEFAULT_VERIFY_EVERY,
        Some(&options.bpffs.join("links")),
    )?;
    let mut reconciler = Reconciler::new(options.node.clone(), Box::new(dataplane), status)
        .with_workload_prefixes(options.workload_prefixes.clone());
    if let Some((what, error)) = cgroup_failure {
        reconciler.report_node_failure(what, error);
    }
    serve(
        &mut reconciler,
        datastore.as_mut(),
        &mut links,
        &mut watchdog,
        Some(&mut flow_log),
        shutdown,
    )
    .await?;
    // Events still queued, and the open interval, go to the log before the agent ends.
    flow_log.drain(&reconciler);
    flow_log.flush();
    tracing::info!("agent stopping; programs stay attached through pinned links");
    Ok(())
}

/// The event loop. Returns when `shutdown` completes, or on the first fatal error.
pub async fn serve(
    reconciler: &mut Reconciler,
    datastore: &mut dyn Datastore,
    links: &mut dyn LinkSource,
    watchdog: &mut Watchdog,
    mut flows: Option<&mut FlowLog>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    tokio::pin!(shutdown);
    loop {
        // Biased: shutdown first, and a flood of flow events never starves policy.
        tokio::select! {
            biased;
            () = &mut shutdown => return Ok(()),
            event = datastore.next_event() => {
                // Events still queued were judged under the spec in force until now:
                // name them with it.
                if let Some(flows) = flows.as_deref_mut() {
                    flows.drain(&*reconciler);
                }
                reconciler.on_datastore(event?, links.interfaces())?;
                heap::release_freed_memory();
            }
            changed = links.changed() => {
                changed?;
                reconciler.on_links(links.interfaces())?;
            }
            () = grace_over(reconciler.retire_at()) => reconciler.retire(),
            () = watchdog.due() => reconciler.on_verify(links.interfaces()),
            ready = flows_readable(flows.as_deref()) => {
                ready?;
                if let Some(flows) = flows.as_deref_mut() {
                    flows.drain(&*reconciler);
                }
            }
            () = flows_due(flows.as_deref()) => {
                if let Some(flows) = flows.as_deref_mut() {
                    flows.drain(&*reconciler);
                    // Written by the flow log's thread, which then trims.
                    flows.flush();
                }
            }
        }
    }
}

/// Completes when the previous generation's grace period is over (never without one).
async fn grace_over(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn flows_due(flows: Option<&FlowLog>) {
    match flows {
        Some(flows) => flows.due().await,
        None => std::future::pending().await,
    }
}

async fn flows_readable(flows: Option<&FlowLog>) -> Result<(), FlowLogError> {
    match flows {
        Some(flows) => flows.readable().await,
        None => std::future::pending().await,
    }
}

/// Completes on SIGTERM or SIGINT. Registered when called, so a signal that arrives
/// while the BPF object loads is not lost (nor fatal).
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = int.recv() => tracing::info!("SIGINT"),
        }
    })
}

#[cfg(test)]
mod tests;
