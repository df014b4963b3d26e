//! `enforcer agent`: the node agent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Args, ValueEnum};

use enforcer::agent::flowlog::file::Rotation;
use enforcer::agent::flowlog::{FlowEvents, FlowLogOptions};
use enforcer::agent::{AgentOptions, run, shutdown_signal, status};
use enforcer::dataplane::attach::AttachMode;
use enforcer::datastore::Datastore;
use enforcer::datastore::file::FileDatastore;
use enforcer::datastore::kubernetes::{self, KubernetesDatastore, KubernetesOptions};
use enforcer::datastore::status::{StatusFile, StatusSink};
use enforcer::health::{self, bpf::BpfStats, metrics};

/// Run the node agent: read the policy objects from a datastore (the Kubernetes API,
/// or a directory), compile them into BPF maps, and attach the programs to this
/// node's endpoint interfaces.
///
/// The agent is event-driven: datastore changes arrive as watch events (or inotify),
/// interfaces through netlink link events, flow events through the ring buffer's
/// readiness; it never polls. SIGTERM or SIGINT stops it and leaves the programs
/// attached and the maps pinned (the next agent takes them over without a gap).
///
/// Exit status: 0 after SIGTERM or SIGINT, 1 when it cannot start or meets a fatal
/// error.
///
/// Examples:
///
///   enforcer agent --node node1 --datastore kubernetes --metrics-addr 0.0.0.0:9091
///
///   enforcer agent --node node1 --datastore kubernetes --kubeconfig ~/.kube/config
///
///   enforcer agent --node node1 --datastore /var/lib/enforcer/datastore
#[derive(Args, Debug)]
#[command(
    verbatim_doc_comment,
    args_override_self = true,
    about = "Run the node agent: compile the policy into BPF maps and enforce it"
)]
pub struct AgentArgs {
    /// This node's name (in a `DaemonSet`: `spec.nodeName` through the downward API).
    #[arg(long, env = "ENFORCER_NODE", default_value = "node1")]
    pub node: String,
    /// Where objects come from: `kubernetes` (the API server), or `dir:PATH` (a
    /// datastore directory: objects/, revision, status.json); a bare PATH is a
    /// directory too.
    #[arg(long, env = "ENFORCER_DATASTORE")]
    pub datastore: String,
    /// Kubeconfig for `--datastore kubernetes` (default: the in-cluster service
    /// account).
    #[arg(long, env = "ENFORCER_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Where the agent's status (JSON) is mirrored. With a directory datastore: a
    /// plain file name under it (default `status.json`; one per agent when the agents
    /// of several nodes share a datastore). Otherwise: a path (default: none).
    #[arg(long, env = "ENFORCER_STATUS_FILE")]
    pub status_file: Option<String>,
    /// Serve /healthz, /readyz and Prometheus /metrics on this address.
    #[arg(long, env = "ENFORCER_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// How TC programs are attached: `tcx` (links, kernel >= 6.6) or `tc` (netlink
    /// clsact filters, older kernels); default (or empty): TCX where the kernel has it.
    #[arg(long, env = "ENFORCER_ATTACH")]
    pub attach: Option<String>,
    /// bpffs directory for this node's pinned maps and links
    /// (default: /sys/fs/bpf/enforcer/<node>).
    #[arg(long)]
    pub bpffs: Option<PathBuf>,
    /// Accepted for older scripts and ignored: the agent no longer polls.
    #[arg(long, hide = true)]
    pub poll_ms: Option<u64>,
    /// Which verdicts go to the flow log besides Log rules: denied packets, allowed new
    /// flows, all of them, or none.
    #[arg(
        long,
        env = "ENFORCER_FLOW_LOG",
        value_enum,
        default_value = "denied",
        value_name = "WHAT"
    )]
    pub flow_log: FlowLogWhat,
    /// Older spelling of `--flow-log denied` (the default).
    #[arg(long, hide = true, env = "ENFORCER_EVENTS_ON_DENY")]
    pub events_on_deny: bool,
    /// Failsafe inbound ports of host interfaces, Calico's spelling
    /// (`tcp:22,udp:68,...`; `none` disables). Default: Calico's.
    #[arg(long, env = "ENFORCER_FAILSAFE_INBOUND")]
    pub failsafe_inbound: Option<String>,
    /// Failsafe outbound ports (`udp:53,...`; `none` disables). Default: Calico's.
    #[arg(long, env = "ENFORCER_FAILSAFE_OUTBOUND")]
    pub failsafe_outbound: Option<String>,
    /// Flow log file: one JSON line per flow and interval (default:
    /// <datastore>/flows.jsonl with a directory datastore,
    /// /var/log/enforcer/flows.jsonl otherwise). Created 0600; a symbolic link there
    /// is refused.
    #[arg(long, env = "ENFORCER_FLOW_LOG_FILE", value_name = "PATH")]
    pub flow_log_file: Option<PathBuf>,
    /// Aggregation interval of the flow log, in seconds: one line per flow per
    /// interval, with its packet and byte counts.
    #[arg(
        long,
        env = "ENFORCER_FLOW_LOG_INTERVAL",
        default_value_t = 1,
        value_name = "SECONDS"
    )]
    pub flow_log_interval: u64,
    /// Rotate the flow log before it grows past this size (bytes; K, M, G suffixes).
    #[arg(
        long,
        env = "ENFORCER_FLOW_LOG_MAX_SIZE",
        default_value = "10M",
        value_parser = parse_size,
        value_name = "SIZE"
    )]
    pub flow_log_max_size: u64,
    /// Rotated flow log files kept (flows.jsonl.1 ...): the log never takes more than
    /// (files + 1) × max size.
    #[arg(
        long,
        env = "ENFORCER_FLOW_LOG_FILES",
        default_value_t = 5,
        value_name = "N"
    )]
    pub flow_log_files: u32,
    /// Log every policy verdict the programs take, through aya-log, as tracing events
    /// of target `enforcer::bpf` (debug aid: one record per judged packet).
    #[arg(long)]
    pub bpf_debug_log: bool,
    /// Name prefixes of workload (pod) interfaces, comma-separated, as Calico's
    /// `InterfacePrefix`. Such an interface carries the pod programs as soon as it
    /// appears; until its pod's endpoint is known, everything through it is dropped.
    #[arg(
        long,
        env = "ENFORCER_INTERFACE_PREFIX",
        default_value = enforcer::dataplane::interfaces::DEFAULT_WORKLOAD_PREFIX
    )]
    pub interface_prefix: enforcer::dataplane::interfaces::WorkloadPrefixes,
    /// The cgroup v2 directory whose sockets' deliveries are judged for deferred Service
    /// egress (a Service whose backend is the node itself, such as the `kubernetes`
    /// Service). `auto`: the root of the cgroup v2 hierarchy (found among the mounts,
    /// or mounted at /run/enforcer/cgroup2), which covers every process of the node.
    /// `none` attaches nothing (Service traffic to the node's own sockets is then
    /// judged by nobody: for tests of other parts only).
    #[arg(long, default_value = "auto")]
    pub cgroup: String,
}

/// Where objects come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatastoreSpec {
    Dir(PathBuf),
    Kubernetes,
}

impl DatastoreSpec {
    pub fn parse(text: &str) -> Self {
        match text {
            "kubernetes" | "k8s" => DatastoreSpec::Kubernetes,
            _ => DatastoreSpec::Dir(PathBuf::from(text.strip_prefix("dir:").unwrap_or(text))),
        }
    }
}

/// The default flow log of a non-directory datastore.
const FLOW_LOG: &str = "/var/log/enforcer/flows.jsonl";

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
        if self.poll_ms.is_some() {
            tracing::warn!("--poll-ms is ignored: the agent is event-driven and does not poll");
        }
        let requested = match self.attach.as_deref().filter(|a| !a.is_empty()) {
            None => None,
            Some(text) => Some(
                AttachMode::parse(text)
                    .ok_or_else(|| anyhow::anyhow!("--attach {text:?}: expected tcx or tc"))?,
            ),
        };
        let spec = DatastoreSpec::parse(&self.datastore);
        if let (DatastoreSpec::Dir(_), Some(name)) = (&spec, &self.status_file)
            && (name.is_empty() || name.contains('/') || name.starts_with('.'))
        {
            anyhow::bail!(
                "--status-file {name:?}: expected a plain file name under the datastore directory"
            );
        }
        let flow_log_file = self.flow_log_file.unwrap_or_else(|| match &spec {
            DatastoreSpec::Dir(dir) => dir.join("flows.jsonl"),
            DatastoreSpec::Kubernetes => PathBuf::from(FLOW_LOG),
        });
        if let Some(parent) = flow_log_file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let flow_log = FlowLogOptions {
            path: flow_log_file,
            rotation: Rotation {
                max_bytes: self.flow_log_max_size,
                keep: self.flow_log_files,
            },
            interval: Duration::from_secs(self.flow_log_interval.max(1)),
        };
        let node = self.node.clone();
        let options = AgentOptions {
            failsafe,
            flow_log,
            flow_events: match (self.flow_log, self.events_on_deny) {
                (FlowLogWhat::Allowed, true) => FlowEvents::All,
                (FlowLogWhat::None, true) => FlowEvents::Denied,
                (what, _) => what.into(),
            },
            node: self.node,
            bpffs: bpffs.clone(),
            bpf_log: self.bpf_debug_log,
            attach: AttachMode::choose(requested),
            workload_prefixes: self.interface_prefix,
            cgroup: match self.cgroup.as_str() {
                "none" => None,
                "auto" => Some(enforcer::dataplane::cgroup::root()?),
                path => Some(PathBuf::from(path)),
            },
        };
        // One thread: the loop's work (compile, map writes) is sequential anyway, and
        // the sources it waits on are all file descriptors. The health endpoint shares
        // it, so a wedged loop fails the liveness probe.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            // First, so a SIGTERM while the BPF object loads ends the agent cleanly.
            let shutdown = shutdown_signal()?;
            let listener = match self.metrics_addr {
                Some(addr) => Some(health::bind(addr).await?),
                None => None,
            };
            let mut builder = metrics::MetricsBuilder::new().collector(BpfStats {
                pin_dir: bpffs.clone(),
            });
            let (publisher, updates) = status::channel();
            let (datastore, mut sinks): (Box<dyn Datastore>, Vec<Box<dyn StatusSink>>) = match &spec
            {
                DatastoreSpec::Dir(dir) => {
                    let store = FileDatastore::open(dir)?
                        .with_status_file(self.status_file.as_deref().unwrap_or("status.json"));
                    (Box::new(store.clone()), vec![Box::new(store)])
                }
                DatastoreSpec::Kubernetes => {
                    let kube_options = KubernetesOptions {
                        kubeconfig: self.kubeconfig.clone(),
                    };
                    let client = kubernetes::client(&kube_options).await?;
                    let store = KubernetesDatastore::start(
                        client.clone(),
                        KubernetesDatastore::describe_options(&kube_options),
                    );
                    // Refused objects are named in Kubernetes Events too.
                    tokio::spawn(kubernetes::events::record_refusals(
                        updates.clone(),
                        client,
                        node.clone(),
                    ));
                    let restarts = store.stats();
                    let failures = store.stats();
                    builder = builder
                        .collector(metrics::FnCounter::new(
                            "datastore_watch_restarts",
                            "Watches of the Kubernetes API started over with a relist",
                            move || restarts.watch_restarts.load(Ordering::Relaxed),
                        ))
                        .collector(metrics::FnCounter::new(
                            "datastore_request_failures",
                            "Failed requests to the Kubernetes API (each retried)",
                            move || failures.request_failures.load(Ordering::Relaxed),
                        ));
                    (Box::new(store), Vec::new())
                }
            };
            if let (DatastoreSpec::Kubernetes, Some(path)) = (&spec, &self.status_file) {
                sinks = vec![Box::new(StatusFile {
                    path: PathBuf::from(path),
                })];
            }
            let metrics = Arc::new(builder.build());
            tokio::spawn(metrics::follow(updates.clone(), Arc::clone(&metrics)));
            if let Some(listener) = listener {
                tokio::spawn(health::serve(
                    listener,
                    health::Health {
                        status: updates.clone(),
                        metrics,
                    },
                ));
            }
            let mirrors: Vec<_> = sinks
                .into_iter()
                .map(|sink| tokio::spawn(status::mirror(updates.clone(), sink)))
                .collect();
            drop(updates);
            let result = run(&options, datastore, publisher, shutdown).await;
            // The publisher is dropped with `run`: the mirrors write the last status
            // and end.
            for mirror in mirrors {
                mirror.await?;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datastore_specs() {
        assert_eq!(
            DatastoreSpec::parse("kubernetes"),
            DatastoreSpec::Kubernetes
        );
        assert_eq!(
            DatastoreSpec::parse("dir:/var/lib/x"),
            DatastoreSpec::Dir("/var/lib/x".into())
        );
        assert_eq!(
            DatastoreSpec::parse("./ds"),
            DatastoreSpec::Dir("./ds".into())
        );
    }
}
