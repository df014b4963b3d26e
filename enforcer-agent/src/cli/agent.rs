//! `enforcer agent`: the node agent.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use enforcer::agent::flowlog::file::Rotation;
use enforcer::agent::flowlog::{FlowEvents, FlowLogOptions};
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
#[command(args_override_self = true)]
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
    /// Which verdicts go to the flow log besides Log rules: denied packets, allowed new
    /// flows, all of them, or none.
    #[arg(long, value_enum, default_value = "denied", value_name = "WHAT")]
    pub flow_log: FlowLogWhat,
    /// Older spelling of `--flow-log denied` (the default).
    #[arg(long, hide = true)]
    pub events_on_deny: bool,
    /// Failsafe inbound ports of host interfaces, Calico's spelling
    /// (`tcp:22,udp:68,...`; `none` disables). Default: Calico's.
    #[arg(long)]
    pub failsafe_inbound: Option<String>,
    /// Failsafe outbound ports (`udp:53,...`; `none` disables). Default: Calico's.
    #[arg(long)]
    pub failsafe_outbound: Option<String>,
    /// Flow log file: one JSON line per flow and interval (default:
    /// <datastore>/flows.jsonl). Created 0600; a symbolic link there is refused.
    #[arg(long, value_name = "PATH")]
    pub flow_log_file: Option<PathBuf>,
    /// Aggregation interval of the flow log, in seconds: one line per flow per
    /// interval, with its packet and byte counts.
    #[arg(long, default_value_t = 1, value_name = "SECONDS")]
    pub flow_log_interval: u64,
    /// Rotate the flow log before it grows past this size (bytes; K, M, G suffixes).
    #[arg(long, default_value = "10M", value_parser = parse_size, value_name = "SIZE")]
    pub flow_log_max_size: u64,
    /// Rotated flow log files kept (flows.jsonl.1 ...): the log never takes more than
    /// (files + 1) × max size.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub flow_log_files: u32,
    /// Log every policy verdict the programs take, through aya-log, as tracing events
    /// of target `enforcer::bpf` (debug aid: one record per judged packet).
    #[arg(long)]
    pub bpf_debug_log: bool,
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
        let flow_log = FlowLogOptions {
            path: self
                .flow_log_file
                .unwrap_or_else(|| self.datastore.join("flows.jsonl")),
            rotation: Rotation {
                max_bytes: self.flow_log_max_size,
                keep: self.flow_log_files,
            },
            interval: Duration::from_secs(self.flow_log_interval.max(1)),
        };
        let options = AgentOptions {
            failsafe,
            flow_log,
            flow_events: match (self.flow_log, self.events_on_deny) {
                (FlowLogWhat::Allowed, true) => FlowEvents::All,
                (FlowLogWhat::None, true) => FlowEvents::Denied,
                (what, _) => what.into(),
            },
            node: self.node,
            bpffs,
            bpf_log: self.bpf_debug_log,
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

/// `--flow-log`: which verdicts become flow events.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FlowLogWhat {
    /// Denied packets (and Log rules).
    Denied,
    /// Allowed new flows (and Log rules).
    Allowed,
    /// Both.
    All,
    /// Log rules only.
    None,
}

impl From<FlowLogWhat> for FlowEvents {
    fn from(what: FlowLogWhat) -> Self {
        match what {
            FlowLogWhat::Denied => FlowEvents::Denied,
            FlowLogWhat::Allowed => FlowEvents::Allowed,
            FlowLogWhat::All => FlowEvents::All,
            FlowLogWhat::None => FlowEvents::None,
        }
    }
}

/// A size in bytes: `4096`, `64K`, `10M`, `1G` (powers of 1024).
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: expected a size such as 4096, 64K, 10M"))?;
    let shift = match unit
        .trim_end_matches(['i', 'B'])
        .to_ascii_uppercase()
        .as_str()
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (K, M or G)")),
    };
    n.checked_mul(1 << shift)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("{text:?}: out of range"))
}
