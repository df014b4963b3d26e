//! `enforcer agent`: the node agent.

use std::path::PathBuf;

use clap::Args;

use enforcer::agent::{AgentOptions, run, shutdown_signal, status};
use enforcer::datastore::file::FileDatastore;

/// Run the node agent: watch a datastore directory, compile the policy set into BPF
/// maps, and attach the programs to this node's endpoint interfaces.
///
/// The agent is event-driven: datastore changes arrive through inotify, interfaces
/// through netlink link events, flow events through the ring buffer's readiness; it
/// never polls. SIGTERM or SIGINT stops it and leaves the programs attached.
///
/// Examples:
///   enforcer agent --node node1 --datastore /var/lib/enforcer/datastore
///   enforcer agent --node node1 --datastore ./ds --bpffs /sys/fs/bpf/enforcer/node1
#[derive(Args, Debug)]
pub struct AgentArgs {
    /// This node's name.
    #[arg(long, default_value = "node1")]
    pub node: String,
    /// Datastore directory (objects/, revision, status.json; see `datastore/file.rs`).
    #[arg(long)]
    pub datastore: PathBuf,
    /// Name of the status file under the datastore directory (one per agent when the
    /// agents of several nodes share a datastore).
    #[arg(long, default_value = "status.json")]
    pub status_file: String,
    /// bpffs directory for this node's pinned maps and links
    /// (default: /sys/fs/bpf/enforcer/<node>).
    #[arg(long)]
    pub bpffs: Option<PathBuf>,
    /// Accepted for older scripts and ignored: the agent no longer polls.
    #[arg(long, hide = true)]
    pub poll_ms: Option<u64>,
    /// Emit a flow event for every denied new flow.
    #[arg(long)]
    pub events_on_deny: bool,
    /// Failsafe inbound ports of host interfaces, Calico's spelling
    /// (`tcp:22,udp:68,...`; `none` disables). Default: Calico's.
    #[arg(long)]
    pub failsafe_inbound: Option<String>,
    /// Failsafe outbound ports (`udp:53,...`; `none` disables). Default: Calico's.
    #[arg(long)]
    pub failsafe_outbound: Option<String>,
    /// Flow log file (JSON lines; default: <datastore>/flows.jsonl).
    #[arg(long)]
    pub flow_log: Option<PathBuf>,
    /// Log every policy verdict the programs take, through aya-log, as tracing events
    /// of target `enforcer::bpf` (debug aid: one record per judged packet).
    #[arg(long)]
    pub bpf_debug_log: bool,
    /// Name prefixes of workload (pod) interfaces, comma-separated, as Calico's
    /// `InterfacePrefix`. Such an interface carries the pod programs as soon as it
    /// appears; until its pod's endpoint is known, everything through it is dropped.
    #[arg(long, default_value = enforcer::dataplane::interfaces::DEFAULT_WORKLOAD_PREFIX)]
    pub interface_prefix: enforcer::dataplane::interfaces::WorkloadPrefixes,
}

impl AgentArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let bpffs = self
            .bpffs
            .unwrap_or_else(|| PathBuf::from("/sys/fs/bpf/enforcer").join(&self.node));
        let mut failsafe = enforcer::dataplane::failsafe::Failsafe::default();
        for (text, ports) in [
            (&self.failsafe_inbound, &mut failsafe.inbound),
            (&self.failsafe_outbound, &mut failsafe.outbound),
        ] {
            if let Some(text) = text {
                *ports = enforcer::dataplane::failsafe::parse_ports(text)
                    .ok_or_else(|| anyhow::anyhow!("bad failsafe port list {text:?}"))?;
            }
        }
        if self.status_file.is_empty()
            || self.status_file.contains('/')
            || self.status_file.starts_with('.')
        {
            anyhow::bail!(
                "--status-file {:?}: expected a plain file name under the datastore directory",
                self.status_file
            );
        }
        if self.poll_ms.is_some() {
            tracing::warn!("--poll-ms is ignored: the agent is event-driven and does not poll");
        }
        let flow_log = self
            .flow_log
            .unwrap_or_else(|| self.datastore.join("flows.jsonl"));
        let options = AgentOptions {
            failsafe,
            flow_log,
            node: self.node,
            bpffs,
            events_on_deny: self.events_on_deny,
            bpf_log: self.bpf_debug_log,
            workload_prefixes: self.interface_prefix,
        };
        // One thread: the loop's work (compile, map writes) is sequential anyway, and
        // the sources it waits on are all file descriptors.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            // First, so a SIGTERM while the BPF object loads ends the agent cleanly.
            let shutdown = shutdown_signal()?;
            let datastore =
                FileDatastore::open(&self.datastore)?.with_status_file(&self.status_file);
            let (publisher, updates) = status::channel();
            let mirror = tokio::spawn(status::mirror(updates, Box::new(datastore.clone())));
            let result = run(&options, Box::new(datastore), publisher, shutdown).await;
            // The publisher is dropped with `run`: the mirror writes the last status
            // and ends.
            mirror.await?;
            Ok(result?)
        })
    }
}
