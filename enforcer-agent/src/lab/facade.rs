//! The [`Lab`] façade: an open lab (holding its lock) and what reads it — its pods,
//! the agent's progress, `exec` in a pod. Changing the lab is [`super::reconcile`]'s,
//! probing [`super::probe`]'s, removing it [`super::teardown`]'s.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::cluster::pod_key;
use crate::datastore::file::FileDatastore;
use crate::datastore::status::AgentStatus;
use crate::model::{Loaded, Object, Pod};

use super::agent;
use super::error::{LabError, io_err};
use super::exec;
use super::host;
use super::paths::{LabName, LabPaths};
use super::process::STOP_GRACE;
use super::state::LabState;
use super::topology::{Encap, Topology};

/// Options of [`Lab::up`].
#[derive(Clone, Debug)]
pub struct UpOptions {
    pub name: LabName,
    /// Start a node agent (`enforcer agent`) in every node netns.
    pub agent: bool,
    /// Number of nodes (1 to 8).
    pub nodes: u32,
    /// How pod traffic crosses between nodes.
    pub encap: Encap,
    /// The `enforcer` binary for pod processes and the agent (normally this one).
    pub binary: PathBuf,
    /// Run the agent from this program instead of `binary` (same arguments).
    pub agent_binary: Option<PathBuf>,
    /// Serve the objects through a Kubernetes API server; the agent reads it.
    pub kubernetes: bool,
    /// `--attach` for the agent (`tcx` or `tc`).
    pub attach: Option<String>,
    /// Extra arguments of every node agent (after the lab's own).
    pub agent_args: Vec<String>,
    /// Masquerade `externalTrafficPolicy: Cluster` `NodePort` traffic to a backend of
    /// the same node too, as kube-proxy does (default: only towards other nodes).
    pub kube_proxy_masquerade: bool,
}

/// One line of `lab get pods -o json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub node: String,
    /// The IPv4 address (`status.podIP`).
    pub ip: String,
    /// IPv4 and IPv6 (`status.podIPs`).
    pub ips: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub netns: String,
    /// Host-side veth in the node netns.
    pub interface: String,
}

/// One line of `lab get nodes -o json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    /// The host interface's (`eth0`) addresses.
    pub ipv4: String,
    pub ipv6: String,
    /// The node's pod address blocks (IPv4, IPv6).
    pub pod_cidrs: Vec<String>,
    pub netns: String,
    /// Where the node's agent pins its maps and links.
    pub bpffs: String,
    /// The agent's pid (`None`: no agent runs there now).
    pub agent_pid: Option<i32>,
}

/// An open lab, holding its lock.
pub struct Lab {
    pub(super) name: LabName,
    pub(super) paths: LabPaths,
    pub(super) topo: Topology,
    pub(super) state: LabState,
    pub(super) ds: FileDatastore,
    pub(super) _lock: Flock<File>,
}

/// Takes the lab's lock, waiting up to `wait` for another command to release it.
pub(super) fn lock(
    name: &LabName,
    paths: &LabPaths,
    wait: Duration,
) -> Result<Flock<File>, LabError> {
    let path = paths.lock_file();
    let deadline = Instant::now() + wait;
    loop {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open lock file", &path))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((_, errno))
                if errno == nix::errno::Errno::EWOULDBLOCK && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(_) => {
                return Err(LabError::Busy {
                    name: name.to_string(),
                    path,
                });
            }
        }
    }
}

impl Lab {
    /// Starts the agents of `nodes` from `binary`, records them, and waits until each
    /// has observed the datastore.
    pub(super) fn start_agents(&mut self, binary: &Path, nodes: &[String]) -> Result<(), LabError> {
        let mode = agent::AgentMode {
            kubernetes: self.state.kubernetes,
            attach: self.state.attach.as_deref(),
            extra_args: &self.state.agent_args,
        };
        let mut started = Vec::new();
        for node in nodes {
            // The last agent's status says nothing about this one: wait for its own.
            let _ =
                std::fs::remove_file(agent::node_status(&self.ds, &self.topo, node).status_path());
            let daemon = agent::start(&self.topo, node, binary, &self.paths, mode)?;
            self.state.agents.insert(node.clone(), daemon.record);
            started.push((node, daemon));
        }
        self.save()?;
        for (node, mut daemon) in started {
            agent::wait_observed(
                &agent::node_status(&self.ds, &self.topo, node),
                Some(&mut daemon.child),
                None,
                &self.topo.agent_log(&self.paths, node),
                agent::START_TIMEOUT,
            )?;
        }
        Ok(())
    }

    /// Stops the agent of `node` (every node's when `None`; SIGKILL when `kill`: a
    /// crash), waits `down`, starts a new one and waits until it has observed the
    /// datastore. The other nodes' agents are left alone.
    pub fn restart_agent(
        &mut self,
        node: Option<&str>,
        kill: bool,
        down: Duration,
    ) -> Result<(), LabError> {
        if !self.state.agent {
            return Err(LabError::NoAgent {
                name: self.name.to_string(),
            });
        }
        let nodes: Vec<String> = match node {
            Some(n) => {
                let Some(n) = self.topo.node(n) else {
                    return Err(LabError::NoSuchNode {
                        lab: self.name.to_string(),
                        node: n.to_owned(),
                    });
                };
                vec![n.name.clone()]
            }
            None => self.topo.nodes().iter().map(|n| n.name.clone()).collect(),
        };
        for n in &nodes {
            if let Some(record) = self.state.agents.remove(n) {
                if kill {
                    record.kill();
                } else {
                    record.terminate(STOP_GRACE);
                }
            }
        }
        self.save()?;
        std::thread::sleep(down);
        let binary = self.state.binary.clone();
        self.start_agents(&binary, &nodes)
    }

    /// Opens an existing lab (waits up to 30 s for another command's lock).
    pub fn open(name: &LabName) -> Result<Lab, LabError> {
        let paths = name.paths();
        let state_file = paths.state_file();
        if !paths.root.exists() {
            return Err(LabError::NotFound {
                name: name.to_string(),
                path: paths.root,
            });
        }
        let lock = lock(name, &paths, Duration::from_secs(30))?;
        let broken = || LabError::Broken {
            name: name.to_string(),
            path: state_file.clone(),
        };
        let Some(state) = LabState::load(&state_file).map_err(|_| broken())? else {
            return Err(broken());
        };
        let ds = FileDatastore::open(paths.datastore())?;
        let topo = Topology::new(name, state.nodes, state.encap)?;
        Ok(Lab {
            name: name.clone(),
            paths,
            topo,
            state,
            ds,
            _lock: lock,
        })
    }

    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// The nodes with their addresses, netns and agents.
    pub fn get_nodes(&self) -> Vec<NodeInfo> {
        self.topo
            .nodes()
            .iter()
            .map(|n| NodeInfo {
                name: n.name.clone(),
                ipv4: n.ipv4.to_string(),
                ipv6: n.ipv6.to_string(),
                pod_cidrs: vec![
                    n.pod_block.v4_net().to_string(),
                    n.pod_block.v6_net().to_string(),
                ],
                netns: self.topo.netns(&n.name),
                bpffs: self.topo.bpffs(&n.name).to_string_lossy().into_owned(),
                agent_pid: self
                    .state
                    .agents
                    .get(&n.name)
                    .filter(|r| r.is_alive())
                    .map(|r| r.pid),
            })
            .collect()
    }

    pub fn name(&self) -> &LabName {
        &self.name
    }

    pub fn paths(&self) -> &LabPaths {
        &self.paths
    }

    pub fn datastore(&self) -> &FileDatastore {
        &self.ds
    }

    pub fn has_agent(&self) -> bool {
        self.state.agent
    }

    /// Whether the agents read a Kubernetes API server the lab runs.
    pub fn is_kubernetes(&self) -> bool {
        self.state.kubernetes
    }

    pub(super) fn save(&self) -> Result<(), LabError> {
        Ok(self.state.save(&self.paths.state_file())?)
    }

    /// The datastore's objects, passing over (with a warning) any that do not read
    /// back: a broken object a client planted must not stop the lab's own commands;
    /// the agent refuses it and says so in its status.
    pub(super) fn readable_objects(&self) -> Result<Vec<Loaded>, LabError> {
        let (objects, errors) = self.ds.list_readable()?;
        for error in errors {
            tracing::warn!(%error, "datastore object does not load; ignored by the lab");
        }
        Ok(objects)
    }

    /// Pods with their addresses and (datastore) labels.
    pub fn get_pods(&self) -> Result<Vec<PodInfo>, LabError> {
        let pods = self.pod_objects()?;
        Ok(self
            .state
            .pods
            .values()
            .map(|rec| {
                let pod = pods.get(&rec.key());
                PodInfo {
                    namespace: rec.namespace.clone(),
                    name: rec.name.clone(),
                    node: rec.node.clone(),
                    ip: rec.ipv4.to_string(),
                    ips: vec![rec.ipv4.to_string(), rec.ipv6.to_string()],
                    labels: pod.map(|p| p.metadata.labels.clone()).unwrap_or_default(),
                    netns: rec.netns.clone(),
                    interface: rec.host_iface.clone(),
                }
            })
            .collect())
    }

    pub(super) fn pod_objects(&self) -> Result<BTreeMap<String, Pod>, LabError> {
        Ok(self
            .readable_objects()?
            .into_iter()
            .filter_map(|l| match l.object {
                Object::Pod(p) => Some((
                    pod_key(
                        p.metadata.namespace.as_deref().unwrap_or("default"),
                        &p.metadata.name,
                    ),
                    p,
                )),
                _ => None,
            })
            .collect())
    }

    /// Waits (bounded) until every node's agent has observed every datastore
    /// revision; a no-op for labs without agents. Returns the status of the first node
    /// whose agent refused the revision, else the first node's.
    pub fn sync_agent(&self) -> Result<Option<AgentStatus>, LabError> {
        if !self.state.agent {
            return Ok(None);
        }
        let mut statuses = Vec::new();
        for node in self.topo.nodes() {
            statuses.push(agent::wait_observed(
                &agent::node_status(&self.ds, &self.topo, &node.name),
                None,
                self.state.agents.get(&node.name),
                &self.topo.agent_log(&self.paths, &node.name),
                agent::SYNC_TIMEOUT,
            )?);
        }
        let refused = statuses.iter().position(|s| s.error.is_some());
        Ok(statuses.into_iter().nth(refused.unwrap_or(0)))
    }

    /// The netns of `NS/POD`, or of `external`, `node` or a node's name.
    pub fn pod_netns(&self, pod: &str) -> Result<String, LabError> {
        if host::is_special_source(&self.topo, pod) {
            return Ok(host::source_netns(&self.name, &self.topo, pod));
        }
        if !pod.contains('/') {
            return Err(LabError::BadPodRef {
                pod: pod.to_owned(),
            });
        }
        self.state
            .pods
            .get(pod)
            .map(|r| r.netns.clone())
            .ok_or_else(|| LabError::NoSuchPod {
                lab: self.name.to_string(),
                pod: pod.to_owned(),
            })
    }

    /// Runs a command in a pod, a node or the external client (stdio inherited);
    /// returns its exit code. Releases the lab lock first, so the command may itself
    /// call `enforcer lab`.
    pub fn exec(self, pod: &str, command: &[String]) -> Result<i32, LabError> {
        let netns = self.pod_netns(pod)?;
        drop(self);
        Ok(exec::exit_code(exec::run(&netns, command)?))
    }
}
