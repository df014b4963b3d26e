//! `enforcer lab`: a Kubernetes cluster made of network namespaces on this machine.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use enforcer::datastore::file::FileDatastore;
use enforcer::model::Loaded;

use enforcer::connectivity::{ProbeRequest, Protocol};
use enforcer::lab::{self, Encap, Lab, LabError, LabName, UpOptions};

use super::lab_faults::{ApiServerAction, ApiServerCommandArgs, RuleArgs};
use super::output::{self, Output, OutputArg, OutputError};
use super::table;

#[derive(Debug, thiserror::Error)]
pub enum LabCliError {
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error("cannot find the enforcer binary to run pod processes and the agent: {0}")]
    Binary(#[source] std::io::Error),
    #[error("cannot encode output: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("--protocol {0:?}: expected TCP or UDP")]
    Protocol(String),
    #[error(transparent)]
    Responder(#[from] lab::responder::ResponderError),
    #[error(transparent)]
    Dns(#[from] lab::dns::DnsError),
}

/// Run a Kubernetes/Calico cluster made of network namespaces.
///
/// One netns per node (`enf-<name>-node`; with --nodes N, `enf-<name>-node1..N` on a
/// shared bridge) and one per pod (`enf-<name>-<ns>.<pod>`), Calico-style veths and
/// routes, Services by nftables DNAT in every node (kube-proxy), a cluster DNS
/// (kube-dns, 198.19.0.10), and an enforcer agent in every node netns.
///
/// Exit status: 0 success, 1 on an error; `lab probe` 3 when a probe does not connect;
/// `lab exec` the command's own status.
///
/// Examples:
///
///   enforcer lab up -f tests/fixtures/tutorial/dev-app-deployments.yaml
///
///   enforcer lab exec dev-app/frontend-0 -- curl -s backend.dev-app.svc.cluster.local:8080
///
///   enforcer lab apply -f tests/fixtures/tutorial/networkpolicy-deny-all.yaml
///
///   enforcer lab probe --from 'dev-app/*' --to 'dev-app/*'
///
///   enforcer lab down
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct LabArgs {
    /// Lab name (1-12 lowercase letters and digits); several labs can run at once.
    #[arg(long, global = true, default_value = "lab")]
    pub name: String,
    #[command(subcommand)]
    pub command: LabCommand,
}

#[derive(Subcommand, Debug)]
pub enum LabCommand {
    Up(UpArgs),
    /// Create or update the objects in YAML files, live (like `kubectl apply -f`).
    ///
    /// Pods keep their netns and address across updates (labels change in place);
    /// Deployment replica changes add or remove pods; Services update their NAT rules
    /// and DNS names. Input is validated first: a bad file changes nothing. With an
    /// agent, waits until it has observed the change.
    ///
    /// Example:
    ///
    ///   enforcer lab apply -f tests/fixtures/tutorial/networkpolicy-deny-all.yaml
    #[command(verbatim_doc_comment)]
    Apply(FileArgs),
    /// Delete the objects named in YAML files, live (like `kubectl delete -f`).
    ///
    /// Deleting a Deployment deletes its pods; deleting a Namespace everything in it.
    ///
    /// Example:
    ///
    ///   enforcer lab delete -f tests/fixtures/tutorial/networkpolicy-deny-all.yaml
    #[command(verbatim_doc_comment)]
    Delete(FileArgs),
    Get(GetArgs),
    Probe(ProbeArgs),
    Exec(ExecArgs),
    /// Stop a node's agent and start a new one (an upgrade, or a crash with --kill).
    ///
    /// Maps and TCX links stay pinned while no agent runs, so packets keep being
    /// judged by the last policy; the new agent takes the links over atomically.
    /// Without --node, every node's agent is restarted.
    ///
    /// Example:
    ///
    ///   enforcer lab restart-agent --node node2 --kill
    #[command(verbatim_doc_comment)]
    RestartAgent(RestartAgentArgs),
    ApiServer(ApiServerCommandArgs),
    /// Remove everything the lab created, also after a crash.
    ///
    /// Processes, every `enf-<name>-*` netns (and what still runs in it),
    /// /etc/netns/enf-<name>-*, /sys/fs/bpf/enforcer/<name>, the state directory
    /// /run/enforcer/lab/<name>. Works without (or with a torn) state file.
    ///
    /// Example:
    ///
    ///   enforcer lab down --name demo
    #[command(verbatim_doc_comment)]
    Down,
}

#[derive(Args, Debug)]
pub struct RestartAgentArgs {
    /// Only this node's agent (default: every node's).
    #[arg(long)]
    pub node: Option<String>,
    /// SIGKILL the running agent (a crash) instead of SIGTERM.
    #[arg(long)]
    pub kill: bool,
    /// Milliseconds to wait with no agent running before starting the new one.
    #[arg(long, default_value_t = 0)]
    pub down_ms: u64,
}

/// Create the lab from YAML files or directories (multi-document).
///
/// Namespaces, Pods, Deployments (replicas become pods `<deployment>-<i>`), Services
/// (`ClusterIP` assigned when absent), `EndpointSlices` and `Endpoints`, and policy
/// objects, which go to the datastore for the agents. Namespaces that objects use are
/// created, as are kube-system, the DNS pod (kube-system/coredns-0) and the kube-dns
/// Service, unless given.
///
/// With --nodes N, pods run on node1..nodeN: on the node `spec.nodeName` names, else
/// spread (a Deployment's replicas across the nodes); pod traffic between nodes is
/// routed (Calico BGP mode) or, with --encap vxlan, tunnelled (Calico VXLAN mode).
///
/// Examples:
///
///   enforcer lab up -f tests/fixtures/tutorial/dev-app-deployments.yaml
///
///   enforcer lab up --nodes 2 -f tests/fixtures/tutorial/dev-app-deployments.yaml
///
///   enforcer lab up --name demo --no-agent -f manifests/
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct UpArgs {
    /// Do not start the node agent (no enforcement: everything connects).
    #[arg(long)]
    pub no_agent: bool,
    /// Run the agent from this program instead of this enforcer binary (same
    /// arguments: `agent --node node1 --datastore DIR --bpffs DIR`).
    #[arg(long, conflicts_with = "no_agent")]
    pub agent_bin: Option<PathBuf>,
    /// Where the agent reads the objects: `file` (the lab's datastore directory) or
    /// `kubernetes` (a Kubernetes API server the lab runs, at 198.18.255.2:6443 in
    /// the lab's network; the agent watches it with kube-rs, `lab apply` writes
    /// through it).
    #[arg(long, value_enum, default_value = "file")]
    pub datastore: LabDatastore,
    /// How the agent attaches its programs: `tcx` or `tc` (netlink clsact); default:
    /// TCX where the kernel has it.
    #[arg(long)]
    pub attach: Option<String>,
    /// An extra argument for every node agent, after the lab's own (repeatable), e.g.
    /// `--agent-arg=--flow-log=denied` or `--agent-arg=--flow-log-max-size=64K`.
    /// Kept for `lab restart-agent`.
    #[arg(
        long = "agent-arg",
        value_name = "ARG",
        allow_hyphen_values = true,
        conflicts_with = "no_agent"
    )]
    pub agent_args: Vec<String>,
    /// Number of nodes, 1 to 8.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub nodes: u32,
    /// How pod traffic crosses between nodes: none (routed, Calico BGP mode) or vxlan.
    #[arg(long, value_enum, default_value = "none")]
    pub encap: EncapArg,
    /// Masquerade `NodePort` traffic (`externalTrafficPolicy: Cluster`) to a backend of
    /// the same node too, as kube-proxy does (default: only when it leaves for another
    /// node, so a local backend sees the client, as with Calico's eBPF dataplane).
    #[arg(long)]
    pub kube_proxy_masquerade: bool,
    /// YAML/JSON files or directories (repeatable; `-`: standard input).
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LabDatastore {
    File,
    Kubernetes,
}

/// Hidden: a Kubernetes lab's API server.
#[derive(Args, Debug)]
pub struct ApiServerArgs {
    #[arg(long)]
    pub lab: String,
    /// The lab's datastore directory (objects persist there).
    #[arg(long)]
    pub datastore: PathBuf,
    /// The bearer tokens file.
    #[arg(long)]
    pub tokens: PathBuf,
    /// The netns of the cluster listener.
    #[arg(long)]
    pub netns: String,
    /// The cluster listener's address.
    #[arg(long)]
    pub addr: std::net::SocketAddr,
    /// Written once both listeners are bound.
    #[arg(long)]
    pub endpoints: PathBuf,
}

/// Files for `apply` and `delete`.
#[derive(Args, Debug)]
pub struct FileArgs {
    /// YAML/JSON files or directories (repeatable; `-`: standard input).
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum EncapArg {
    None,
    Vxlan,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Resource {
    Pods,
    Nodes,
}

/// List lab objects: pods (with their node and addresses) or nodes.
///
/// Output: -o table (the default), json or yaml.
///
/// Exit status: 0 success, 1 on an error (no such lab).
///
/// Examples:
///
///   enforcer lab get pods
///
///   enforcer lab get pods -o json
///
///   enforcer lab get nodes -o yaml
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct GetArgs {
    pub resource: Resource,
    #[command(flatten)]
    pub output: OutputArg,
}

/// Probe connectivity between pods (and to Services and nodes).
///
/// Default: every pod to every other pod, on each target's declared container ports
/// with their declared protocols. TCP connects when the handshake completes; UDP when
/// the datagram is answered. Waits first until the agents have observed the datastore.
///
/// Output: -o table (the default: a matrix), json or yaml (one entry per probe, with
/// `connected`).
///
/// Exit status: 0 when every probe connected, 3 when one did not (the results are
/// printed either way), 1 on an error.
///
/// Examples:
///
///   enforcer lab probe
///
///   enforcer lab probe --from dev-app/frontend-0 --to svc/dev-app/backend
///
///   enforcer lab probe --from 'dev-app/*' --to 'kube-system/*' --port 53 --protocol UDP -o json
///
///   enforcer lab probe --from external --to node2:30080
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ProbeArgs {
    /// Sources: NS/POD, NS/*, *, external, node (the first node) or a node's name
    /// (repeatable; default all pods).
    #[arg(long)]
    pub from: Vec<String>,
    /// Targets: NS/POD, NS/*, *, svc/NS/NAME, svc/NS/*, node:PORT[/udp] or
    /// NODE:PORT[/udp] (repeatable; default all pods).
    #[arg(long)]
    pub to: Vec<String>,
    /// Probe this port instead of the declared ones.
    #[arg(long)]
    pub port: Option<u16>,
    /// TCP or UDP instead of the declared protocol.
    #[arg(long)]
    pub protocol: Option<String>,
    /// Probe pods' and Services' IPv6 addresses (a Service's IPv6 `ClusterIP`: an
    /// IPv6 or dual-stack Service).
    #[arg(long)]
    pub ipv6: bool,
    /// Probe Services' `externalIPs` and load balancer addresses (of the family
    /// `--ipv6` picks) instead of their `ClusterIPs`.
    #[arg(long)]
    pub external_ips: bool,
    /// Send every probe from this source port (e.g. to try `source.ports` rules);
    /// default: the kernel's choice (TCP) or a rotation of fresh ports (UDP).
    #[arg(long, value_name = "PORT")]
    pub source_port: Option<u16>,
    /// Per-probe timeout in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,
    #[command(flatten)]
    pub output: OutputArg,
}

/// Run a command inside a pod (its netns and resolv.conf), a node (`node`, `node2`)
/// or the external client (`external`); exits with its status.
///
/// Examples:
///
///   enforcer lab exec dev-app/frontend-0 -- curl -s -m 5 backend.dev-app.svc.cluster.local:8080
///
///   enforcer lab exec dev-app/frontend-0 -- nslookup backend.dev-app.svc.cluster.local
///
///   enforcer lab exec external -- curl -s 198.18.255.3:30080/clientip
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ExecArgs {
    /// The pod (NS/POD), a node (`node`, `node2`) or `external`.
    pub pod: String,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Hidden: the process standing in for a pod's containers.
#[derive(Args, Debug)]
pub struct ResponderArgs {
    /// The lab (lets `lab down` find the process by its command line).
    #[arg(long)]
    pub lab: String,
    /// NS/POD, for logs.
    #[arg(long)]
    pub pod: String,
    #[arg(long)]
    pub text: String,
    /// Ports to answer on, TCP and UDP.
    #[arg(long)]
    pub port: Vec<u16>,
    /// Written once every socket is bound.
    #[arg(long)]
    pub ready_file: PathBuf,
}

/// Hidden: the lab's cluster DNS server.
#[derive(Args, Debug)]
pub struct DnsArgs {
    #[arg(long)]
    pub lab: String,
    #[arg(long)]
    pub pod: String,
    /// The zone file (JSON) the lab rewrites on changes.
    #[arg(long)]
    pub zone: PathBuf,
    /// Ports to serve DNS on, UDP and TCP.
    #[arg(long)]
    pub port: Vec<u16>,
    #[arg(long)]
    pub ready_file: PathBuf,
}

impl LabArgs {
    /// Subcommands that only read the lab and print (see `Command::prints_only`).
    pub fn prints_only(&self) -> bool {
        matches!(self.command, LabCommand::Get(_))
    }
}

/// Runs a `lab` subcommand; returns the process exit code.
pub fn execute(args: LabArgs) -> Result<i32, LabCliError> {
    let name = LabName::new(&args.name).map_err(LabError::from)?;
    match args.command {
        LabCommand::Up(up) => {
            let binary = std::env::current_exe().map_err(LabCliError::Binary)?;
            let opts = UpOptions {
                name,
                agent: !up.no_agent,
                nodes: up.nodes,
                encap: match up.encap {
                    EncapArg::None => Encap::None,
                    EncapArg::Vxlan => Encap::Vxlan,
                },
                binary,
                agent_binary: up.agent_bin,
                kubernetes: up.datastore == LabDatastore::Kubernetes,
                attach: up.attach,
                agent_args: up.agent_args,
                kube_proxy_masquerade: up.kube_proxy_masquerade,
            };
            let spinner = super::progress::spinner(format!("bringing lab {} up", opts.name));
            let lab = Lab::up(&opts, &up.files)?;
            drop(spinner);
            let pods = lab.get_pods()?;
            let nodes: Vec<String> = lab
                .topology()
                .nodes()
                .iter()
                .map(|n| lab.topology().netns(&n.name))
                .collect();
            println!(
                "lab {} is up: {} pods, node netns {}, state {}{}",
                lab.name(),
                pods.len(),
                nodes.join(", "),
                lab.paths().root.display(),
                if lab.has_agent() {
                    ""
                } else {
                    " (no agent: nothing enforced)"
                }
            );
            Ok(0)
        }
        LabCommand::Apply(f) => {
            let spinner = super::progress::spinner(format!("applying to lab {name}"));
            let report = Lab::open(&name)?.apply(&f.files)?;
            drop(spinner);
            print_change(&report);
            Ok(0)
        }
        LabCommand::Delete(f) => {
            let spinner = super::progress::spinner(format!("deleting from lab {name}"));
            let report = Lab::open(&name)?.delete(&f.files)?;
            drop(spinner);
            print_change(&report);
            Ok(0)
        }
        LabCommand::Get(get) => {
            let format = get
                .output
                .check("lab get", &[Output::Table, Output::Json, Output::Yaml])?;
            let lab = Lab::open(&name)?;
            match get.resource {
                Resource::Pods => {
                    let pods = lab.get_pods()?;
                    if format == Output::Table {
                        print!("{}", pods_table(&pods));
                    } else {
                        print!("{}", output::structured(format, &pods)?);
                    }
                }
                Resource::Nodes => {
                    let nodes = lab.get_nodes();
                    if format == Output::Table {
                        print!("{}", nodes_table(&nodes));
                    } else {
                        print!("{}", output::structured(format, &nodes)?);
                    }
                }
            }
            Ok(0)
        }
        LabCommand::Probe(p) => {
            let format = p
                .output
                .check("lab probe", &[Output::Table, Output::Json, Output::Yaml])?;
            let protocol = match p.protocol.as_deref() {
                None => None,
                Some(s) => {
                    Some(Protocol::parse(s).ok_or_else(|| LabCliError::Protocol(s.to_owned()))?)
                }
            };
            let req = ProbeRequest {
                from: p.from,
                to: p.to,
                port: p.port,
                protocol,
                ipv6: p.ipv6,
                service_external: p.external_ips,
                source_port: p.source_port,
                timeout: Duration::from_millis(p.timeout_ms),
            };
            let spinner = super::progress::spinner(format!("probing lab {name}"));
            let results = Lab::open(&name)?.probe(&req)?;
            drop(spinner);
            if format == Output::Table {
                print!("{}", table::probe_matrix(&results));
            } else {
                print!("{}", output::structured(format, &results)?);
            }
            Ok(if results.iter().all(|r| r.connected) {
                0
            } else {
                super::EXIT_NO
            })
        }
        LabCommand::Exec(e) => Ok(Lab::open(&name)?.exec(&e.pod, &e.command)?),
        LabCommand::RestartAgent(r) => {
            let mut lab = Lab::open(&name)?;
            lab.restart_agent(r.node.as_deref(), r.kill, Duration::from_millis(r.down_ms))?;
            match &r.node {
                Some(node) => println!("lab {name}: agent of {node} restarted"),
                None => println!("lab {name}: agent restarted"),
            }
            Ok(0)
        }
        LabCommand::ApiServer(a) => execute_faults(&name, a),
        LabCommand::Down => {
            let report = Lab::down(&name);
            println!(
                "lab {name} down: stopped {} processes, deleted {} netns, removed {} paths",
                report.processes,
                report.netns.len(),
                report.removed_paths.len()
            );
            for n in &report.notes {
                eprintln!("note: {n}");
            }
            for p in &report.problems {
                eprintln!("error: {p}");
            }
            Ok(i32::from(!report.problems.is_empty()))
        }
    }
}

/// Runs `lab api-server ACTION` on the lab `name`.
fn execute_faults(name: &LabName, a: ApiServerCommandArgs) -> Result<i32, LabCliError> {
    let mut lab = Lab::open(name)?;
    if !lab.is_kubernetes() {
        return Err(LabError::NoApiServer {
            name: name.to_string(),
        }
        .into());
    }
    let rule = |r: &RuleArgs| format!("group={}&resource={}", r.group, r.resource);
    match a.action {
        ApiServerAction::Stop => lab.stop_apiserver()?,
        ApiServerAction::Start => lab.start_apiserver()?,
        ApiServerAction::Expire => println!("{}", lab.api_control("expire", "")?),
        ApiServerAction::Revoke(r) => println!("{}", lab.api_control("revoke", &rule(&r))?),
        ApiServerAction::Grant(r) => println!("{}", lab.api_control("grant", &rule(&r))?),
    }
    Ok(0)
}

fn print_change(report: &lab::ChangeReport) {
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(", ")
        }
    };
    println!(
        "objects written {}, deleted {}; pods added: {}; removed: {}; restarted: {}",
        report.objects_written,
        report.objects_deleted,
        list(&report.pods_added),
        list(&report.pods_removed),
        list(&report.pods_restarted),
    );
    if let Some(status) = &report.agent
        && let Some(err) = &status.error
    {
        eprintln!(
            "warning: the agent refused revision {} (enforcing revision {}): {err}",
            status.observed_revision, status.applied_revision
        );
    }
}

fn pods_table(pods: &[lab::PodInfo]) -> String {
    let mut t = table::new(&["NAMESPACE", "NAME", "NODE", "IP", "LABELS"], &[]);
    for p in pods {
        let labels: Vec<String> = p.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        t.add_row([
            p.namespace.clone(),
            p.name.clone(),
            p.node.clone(),
            p.ip.clone(),
            labels.join(","),
        ]);
    }
    table::text(&t)
}

fn nodes_table(nodes: &[lab::NodeInfo]) -> String {
    let mut t = table::new(&["NAME", "IP", "IPV6", "POD CIDRS", "AGENT"], &[]);
    for n in nodes {
        t.add_row([
            n.name.clone(),
            n.ipv4.clone(),
            n.ipv6.clone(),
            n.pod_cidrs.join(","),
            n.agent_pid
                .map_or_else(|| "-".to_owned(), |pid| format!("pid {pid}")),
        ]);
    }
    table::text(&t)
}

/// The objects in lab `name`'s datastore (`explain --lab`).
pub fn datastore_objects(name: &str) -> Result<Vec<Loaded>, LabCliError> {
    let name = LabName::new(name).map_err(LabError::from)?;
    let store = FileDatastore::open(name.paths().datastore()).map_err(LabError::from)?;
    Ok(store.list().map_err(LabError::from)?)
}

/// The bpffs directory of lab `name`'s node (`inspect --lab`).
pub fn bpffs_dir(name: &str) -> Result<PathBuf, LabCliError> {
    Ok(LabName::new(name).map_err(LabError::from)?.bpffs_dir())
}

/// Lab `name`'s datastore directory (its agents' flow logs are there, `flows --lab`).
pub fn datastore_dir(name: &str) -> Result<PathBuf, LabCliError> {
    let name = LabName::new(name).map_err(LabError::from)?;
    Ok(name.paths().datastore())
}

/// `enforcer lab-responder`: serves until killed.
pub fn execute_responder(args: &ResponderArgs) -> Result<i32, LabCliError> {
    tracing::info!(lab = %args.lab, pod = %args.pod, "responder starting");
    lab::responder::serve(&args.text, &args.port, &args.ready_file)?;
    Ok(0)
}

/// `enforcer lab-apiserver`: serves until SIGTERM.
pub fn execute_apiserver(args: &ApiServerArgs) -> Result<i32, LabCliError> {
    tracing::info!(lab = %args.lab, "lab API server starting");
    lab::apiserver::serve(&lab::apiserver::ServeOptions {
        datastore: args.datastore.clone(),
        tokens: args.tokens.clone(),
        cluster_netns: args.netns.clone(),
        cluster_addr: args.addr,
        endpoints: args.endpoints.clone(),
    })
    .map_err(LabError::from)?;
    Ok(0)
}

/// `enforcer lab-dns`: serves until killed.
pub fn execute_dns(args: &DnsArgs) -> Result<i32, LabCliError> {
    tracing::info!(lab = %args.lab, pod = %args.pod, "DNS server starting");
    lab::dns::serve(&args.zone, &args.port, &args.ready_file)?;
    Ok(0)
}
