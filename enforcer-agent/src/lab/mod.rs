//! A Kubernetes cluster made of network namespaces, for trying and testing policy.
//!
//! One node netns (`enf-<lab>-node`: the pods' host-side veths, routes, Service NAT
//! and the agent) and one netns per pod (`enf-<lab>-<namespace>.<pod>`), joined
//! Calico style (see [`netns`]). Each pod runs a [`responder`] on its declared ports;
//! the `kube-system/coredns-0` pod runs the lab's [`dns`] behind the `kube-dns`
//! Service (198.19.0.10). Objects are written to a [`FileDatastore`] the way the API
//! server and kubelet would (pods with their addresses and node), which is what the
//! agent watches.
//!
//! [`Lab`] is the API behind `enforcer lab`: [`Lab::up`], [`Lab::apply`],
//! [`Lab::delete`], [`Lab::get_pods`], [`Lab::probe`], [`Lab::exec`], [`Lab::down`].
//! Everything a lab creates is named after the lab, so `down` finds it again from
//! netns names and command lines even when the state file is gone.

pub mod agent;
pub mod command;
pub mod dns;
pub mod exec;
pub mod host;
pub mod netns;
pub mod paths;
pub mod probe;
pub mod process;
pub mod responder;
pub mod services;
pub mod state;
pub mod topology;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::datastore::DatastoreError;
use crate::datastore::file::FileDatastore;
use crate::datastore::status::AgentStatus;
use crate::model::{LoadError, Loaded, Object, ObjectId, Pod};

pub use paths::{LabName, LabPaths, NameError};
pub use probe::{ProbeRequest, ProbeResult, Protocol};

use self::process::ProcessRecord;
use self::state::{LabState, PodProgram, PodRecord, StateError};
use self::topology::{Declared, PlannedPod, Topology, TopologyError};

/// How long pod processes get to bind their sockets.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// SIGTERM grace before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("lab {name} runs without an agent (it was brought up with --no-agent)")]
    NoAgent { name: String },
    #[error("invalid input, nothing changed: {0}")]
    Load(#[from] LoadError),
    #[error("invalid input, nothing changed: {0}")]
    Input(#[from] TopologyError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Datastore(#[from] DatastoreError),
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    #[error(transparent)]
    Services(#[from] services::ServicesError),
    #[error(transparent)]
    Dns(#[from] dns::DnsError),
    #[error(transparent)]
    Agent(#[from] agent::AgentError),
    #[error(transparent)]
    Probe(#[from] probe::ProbeError),
    #[error(transparent)]
    Exec(#[from] exec::ExecError),
    #[error("lab {name} already exists ({what}); run `enforcer lab down --name {name}` first")]
    Exists { name: String, what: String },
    #[error(
        "lab {name} does not exist (no {path}); start it with `enforcer lab up --name {name} -f FILE`"
    )]
    NotFound { name: String, path: PathBuf },
    #[error(
        "lab {name} is broken ({path} is missing or unreadable); run `enforcer lab down --name {name}`"
    )]
    Broken { name: String, path: PathBuf },
    #[error("no pod {pod} in lab {lab} (see `enforcer lab get pods --name {lab}`)")]
    NoSuchPod { lab: String, pod: String },
    #[error("pod {pod}: expected NS/POD")]
    BadPodRef { pod: String },
    #[error("pod {pod}: its process {what}; last lines of {log}:\n{tail}")]
    PodProcess {
        pod: String,
        what: String,
        log: String,
        tail: String,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("lab {name} is busy: another `enforcer lab` command holds {path}")]
    Busy { name: String, path: PathBuf },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LabError + 'a {
    move |source| LabError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Options of [`Lab::up`].
#[derive(Clone, Debug)]
pub struct UpOptions {
    pub name: LabName,
    /// Start the node agent (`enforcer agent`) in the node netns.
    pub agent: bool,
    /// The `enforcer` binary for pod processes and the agent (normally this one).
    pub binary: PathBuf,
    /// Run the agent from this program instead of `binary` (same arguments).
    pub agent_binary: Option<PathBuf>,
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

/// What [`Lab::down`] removed.
#[derive(Clone, Debug, Default)]
pub struct DownReport {
    pub processes: usize,
    pub netns: Vec<String>,
    pub removed_paths: Vec<PathBuf>,
    /// Things that could not be removed (the command goes on and reports them).
    pub problems: Vec<String>,
    /// What `down` noticed but worked around (a torn state file, say).
    pub notes: Vec<String>,
}

/// What changed in an apply/delete.
#[derive(Clone, Debug, Default)]
pub struct ChangeReport {
    pub pods_added: Vec<String>,
    pub pods_removed: Vec<String>,
    pub pods_restarted: Vec<String>,
    pub objects_written: usize,
    pub objects_deleted: usize,
    /// The agent's status after it observed the change (labs with an agent).
    pub agent: Option<AgentStatus>,
}

/// An open lab, holding its lock.
pub struct Lab {
    name: LabName,
    paths: LabPaths,
    state: LabState,
    ds: FileDatastore,
    _lock: Flock<File>,
}

fn lock(name: &LabName, paths: &LabPaths, wait: Duration) -> Result<Flock<File>, LabError> {
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

/// Loaded input as declared objects, defaults filled in.
fn declared_from(loaded: Vec<Loaded>) -> Vec<Declared> {
    loaded
        .into_iter()
        .map(|l| Declared {
            object: topology::normalize(l.object),
            source: Some(l.source),
        })
        .collect()
}

impl Lab {
    /// Creates a lab from files or directories of YAML. On failure everything created
    /// so far is removed again.
    pub fn up(opts: &UpOptions, files: &[PathBuf]) -> Result<Lab, LabError> {
        let name = &opts.name;
        let paths = name.paths();
        if paths.root.exists() {
            return Err(LabError::Exists {
                name: name.to_string(),
                what: format!("{} exists", paths.root.display()),
            });
        }
        if let Some(ns) = netns::list_with_prefix(&name.netns_prefix()).first() {
            return Err(LabError::Exists {
                name: name.to_string(),
                what: format!("netns {ns} exists"),
            });
        }
        // Validate everything before creating anything.
        let mut declared: BTreeMap<ObjectId, Declared> = BTreeMap::new();
        for d in declared_from(crate::model::load_paths(files)?) {
            declared.insert(d.object.id(), d);
        }
        topology::add_implied(&mut declared);
        let state = LabState::new(name.as_str(), opts.binary.clone(), opts.agent);
        let topo = topology::build(name, &declared, &BTreeMap::new(), &state)?;

        for dir in [paths.root.clone(), paths.logs(), paths.run()] {
            std::fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        }
        state.save(&paths.state_file())?;
        let lock = lock(name, &paths, Duration::ZERO)?;
        let ds = FileDatastore::open(paths.datastore())?;
        let mut lab = Lab {
            name: name.clone(),
            paths,
            state,
            ds,
            _lock: lock,
        };
        match lab.bring_up(&topo, opts.agent_binary.as_deref()) {
            Ok(()) => Ok(lab),
            Err(e) => {
                tracing::debug!(error = %e, "lab up failed, cleaning up");
                let name = lab.name.clone();
                drop(lab);
                let report = Lab::down(&name);
                for p in report.problems {
                    tracing::warn!("cleanup: {p}");
                }
                Err(e)
            }
        }
    }

    fn bring_up(&mut self, topo: &Topology, agent_binary: Option<&Path>) -> Result<(), LabError> {
        netns::create_node(&self.name.node_netns())?;
        host::create(&self.name.node_netns(), &host::external_netns(&self.name))?;
        self.reconcile(topo, &BTreeMap::new())?;
        self.start_host_responders()?;
        if self.state.agent {
            let binary = agent_binary.unwrap_or(&self.state.binary).to_path_buf();
            self.start_agent(&binary)?;
        }
        Ok(())
    }

    /// Starts the agent from `binary`, records it, and waits until it has observed
    /// the datastore.
    fn start_agent(&mut self, binary: &Path) -> Result<(), LabError> {
        let mut daemon = agent::start(&self.name, binary, &self.paths)?;
        self.state.agent_process = Some(daemon.record);
        self.save()?;
        agent::wait_observed(
            &self.ds,
            Some(&mut daemon.child),
            None,
            &self.paths.agent_log(),
            agent::START_TIMEOUT,
        )?;
        Ok(())
    }

    /// Stops the agent (SIGKILL when `kill`: a crash), waits `down`, starts a new one
    /// and waits until it has observed the datastore.
    pub fn restart_agent(&mut self, kill: bool, down: Duration) -> Result<(), LabError> {
        if !self.state.agent {
            return Err(LabError::NoAgent {
                name: self.name.to_string(),
            });
        }
        if let Some(record) = self.state.agent_process.take() {
            if kill {
                record.kill();
            } else {
                record.terminate(STOP_GRACE);
            }
        }
        std::thread::sleep(down);
        let binary = self.state.binary.clone();
        self.start_agent(&binary)
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
        Ok(Lab {
            name: name.clone(),
            paths,
            state,
            ds,
            _lock: lock,
        })
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

    fn save(&self) -> Result<(), LabError> {
        Ok(self.state.save(&self.paths.state_file())?)
    }

    /// The datastore's objects, passing over (with a warning) any that do not read
    /// back: a broken object a client planted must not stop the lab's own commands;
    /// the agent refuses it and says so in its status.
    fn readable_objects(&self) -> Result<Vec<Loaded>, LabError> {
        let (objects, errors) = self.ds.list_readable()?;
        for error in errors {
            tracing::warn!(%error, "datastore object does not load; ignored by the lab");
        }
        Ok(objects)
    }

    /// The datastore's objects by id.
    fn current_objects(&self) -> Result<BTreeMap<ObjectId, Object>, LabError> {
        Ok(self
            .readable_objects()?
            .into_iter()
            .map(|l| (l.object.id(), l.object))
            .collect())
    }

    /// What the user declared: the datastore minus the Pods Deployments made.
    fn declared(&self, current: &BTreeMap<ObjectId, Object>) -> BTreeMap<ObjectId, Declared> {
        current
            .iter()
            .filter(|(_, o)| match o {
                Object::Pod(p) => {
                    let ns = p.metadata.namespace.as_deref().unwrap_or("default");
                    self.state
                        .pods
                        .get(&state::pod_key(ns, &p.metadata.name))
                        .is_none_or(|r| r.owner.is_none())
                }
                _ => true,
            })
            .map(|(id, o)| {
                (
                    id.clone(),
                    Declared {
                        object: o.clone(),
                        source: None,
                    },
                )
            })
            .collect()
    }

    /// Creates or updates objects from files (like `kubectl apply`).
    pub fn apply(&mut self, files: &[PathBuf]) -> Result<ChangeReport, LabError> {
        let input = declared_from(crate::model::load_paths(files)?);
        let current = self.current_objects()?;
        let mut declared = self.declared(&current);
        for d in input {
            declared.insert(d.object.id(), d);
        }
        self.change(declared, &current)
    }

    /// Deletes the objects named in files (like `kubectl delete -f`). Deleting a
    /// Deployment deletes its pods, deleting a Namespace everything in it.
    pub fn delete(&mut self, files: &[PathBuf]) -> Result<ChangeReport, LabError> {
        let input = declared_from(crate::model::load_paths(files)?);
        let current = self.current_objects()?;
        let mut declared = self.declared(&current);
        for d in input {
            declared.remove(&d.object.id());
            if let Object::Namespace(ns) = &d.object {
                declared.retain(|_, o| {
                    o.object.meta().namespace.as_deref() != Some(ns.metadata.name.as_str())
                });
            }
        }
        self.change(declared, &current)
    }

    fn change(
        &mut self,
        mut declared: BTreeMap<ObjectId, Declared>,
        current: &BTreeMap<ObjectId, Object>,
    ) -> Result<ChangeReport, LabError> {
        topology::add_implied(&mut declared);
        let topo = topology::build(&self.name, &declared, current, &self.state)?;
        let mut report = self.reconcile(&topo, current)?;
        if self.state.agent {
            let status = agent::wait_observed(
                &self.ds,
                None,
                self.state.agent_process.as_ref(),
                &self.paths.agent_log(),
                agent::SYNC_TIMEOUT,
            )?;
            report.agent = Some(status);
        }
        Ok(report)
    }

    /// Makes the netns, processes, Service rules, DNS zone and datastore match `topo`.
    fn reconcile(
        &mut self,
        topo: &Topology,
        previous: &BTreeMap<ObjectId, Object>,
    ) -> Result<ChangeReport, LabError> {
        let mut report = ChangeReport::default();
        let node = self.name.node_netns();
        self.state.next_pod_index = topo.next_pod_index;
        // 1. New pods: network first (recorded at once, so a crash leaves a trace),
        //    then their processes.
        let mut to_start: Vec<&PlannedPod> = Vec::new();
        for (key, planned) in &topo.pods {
            match self.state.pods.get(key) {
                None => {
                    self.state.pods.insert(
                        key.clone(),
                        PodRecord {
                            namespace: planned.namespace().to_owned(),
                            name: planned.pod.metadata.name.clone(),
                            netns: planned.netns.clone(),
                            host_iface: planned.host_iface.clone(),
                            ipv4: planned.ipv4,
                            ipv6: planned.ipv6,
                            owner: planned.owner.clone(),
                            program: planned.program.clone(),
                            process: None,
                        },
                    );
                    self.save()?;
                    netns::create_pod(&netns::PodLink {
                        node: &node,
                        netns: &planned.netns,
                        host_iface: &planned.host_iface,
                        ipv4: planned.ipv4,
                        ipv6: planned.ipv6,
                    })?;
                    netns::write_resolv_conf(
                        &planned.netns,
                        planned.namespace(),
                        topology::DNS_SERVICE_IP,
                    )?;
                    report.pods_added.push(key.clone());
                    to_start.push(planned);
                }
                Some(rec) => {
                    let alive = rec.process.is_some_and(|p| p.is_alive());
                    if rec.program != planned.program || !alive {
                        report.pods_restarted.push(key.clone());
                        to_start.push(planned);
                    }
                    if let Some(rec) = self.state.pods.get_mut(key) {
                        rec.owner.clone_from(&planned.owner);
                    }
                }
            }
        }
        // The zone before the DNS pod starts, so it serves complete answers at once.
        dns::Zone::build(&topo.services, &topo.pods).write(&self.paths.zone_file())?;
        self.start_pods(&to_start)?;
        // 2. Services over the now-ready pods.
        let rules = services::rules(&topo.services, &topo.pods);
        services::load(&node, &self.paths.nft_file(), &services::ruleset(&rules))?;
        // 3. The datastore, as the API server would have it.
        let changed: Vec<Object> = topo
            .objects
            .iter()
            .filter(|(id, o)| previous.get(*id) != Some(*o))
            .map(|(_, o)| o.clone())
            .collect();
        let removed: Vec<ObjectId> = previous
            .keys()
            .filter(|id| !topo.objects.contains_key(*id))
            .cloned()
            .collect();
        if !changed.is_empty() {
            self.ds.apply(&changed)?;
        }
        if !removed.is_empty() {
            self.ds.delete(&removed)?;
        }
        report.objects_written = changed.len();
        report.objects_deleted = removed.len();
        // 4. Pods that are gone.
        let gone: Vec<String> = self
            .state
            .pods
            .keys()
            .filter(|k| !topo.pods.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(rec) = self.state.pods.get(&key).cloned() {
                remove_pod(&rec)?;
                self.state.pods.remove(&key);
                self.save()?;
                report.pods_removed.push(key);
            }
        }
        self.save()?;
        Ok(report)
    }

    /// (Re)starts pod processes and waits until every one is ready.
    fn start_pods(&mut self, pods: &[&PlannedPod]) -> Result<(), LabError> {
        let mut started: Vec<(String, Child, PathBuf, PathBuf)> = Vec::new();
        for planned in pods {
            let key = planned.key();
            if let Some(old) = self.state.pods.get(&key).and_then(|r| r.process) {
                old.terminate(STOP_GRACE);
            }
            let ns = planned.namespace();
            let name = &planned.pod.metadata.name;
            let ready = self.paths.pod_ready(ns, name);
            let log = self.paths.pod_log(ns, name);
            let _ = std::fs::remove_file(&ready);
            let mut args: Vec<String> = match &planned.program {
                PodProgram::Responder { text, .. } => {
                    vec!["lab-responder".into(), "--text".into(), text.clone()]
                }
                PodProgram::Dns { .. } => vec![
                    "lab-dns".into(),
                    "--zone".into(),
                    self.paths.zone_file().to_string_lossy().into_owned(),
                ],
            };
            args.extend([
                "--lab".into(),
                self.name.to_string(),
                "--pod".into(),
                key.clone(),
            ]);
            args.extend(["--ready-file".into(), ready.to_string_lossy().into_owned()]);
            let (PodProgram::Responder { ports, .. } | PodProgram::Dns { ports }) =
                &planned.program;
            for port in ports {
                args.extend(["--port".into(), port.to_string()]);
            }
            let daemon = process::spawn_in_netns(&planned.netns, &self.state.binary, &args, &log)?;
            if let Some(rec) = self.state.pods.get_mut(&key) {
                rec.process = Some(daemon.record);
                rec.program = planned.program.clone();
            }
            started.push((key, daemon.child, ready, log));
        }
        self.save()?;
        let deadline = Instant::now() + READY_TIMEOUT;
        for (key, mut child, ready, log) in started {
            loop {
                if ready.exists() {
                    break;
                }
                let failure = match child.try_wait() {
                    Ok(Some(status)) => Some(format!("exited ({status})")),
                    _ if Instant::now() >= deadline => {
                        Some(format!("was not ready within {}s", READY_TIMEOUT.as_secs()))
                    }
                    _ => None,
                };
                if let Some(what) = failure {
                    return Err(LabError::PodProcess {
                        pod: key,
                        what,
                        log: log.display().to_string(),
                        tail: process::log_tail(&log, 10),
                    });
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
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
                    node: pod
                        .and_then(|p| p.spec.node_name.clone())
                        .unwrap_or_else(|| paths::NODE_NAME.to_owned()),
                    ip: rec.ipv4.to_string(),
                    ips: vec![rec.ipv4.to_string(), rec.ipv6.to_string()],
                    labels: pod.map(|p| p.metadata.labels.clone()).unwrap_or_default(),
                    netns: rec.netns.clone(),
                    interface: rec.host_iface.clone(),
                }
            })
            .collect())
    }

    fn pod_objects(&self) -> Result<BTreeMap<String, Pod>, LabError> {
        Ok(self
            .readable_objects()?
            .into_iter()
            .filter_map(|l| match l.object {
                Object::Pod(p) => Some((
                    state::pod_key(
                        p.metadata.namespace.as_deref().unwrap_or("default"),
                        &p.metadata.name,
                    ),
                    p,
                )),
                _ => None,
            })
            .collect())
    }

    /// Waits (bounded) until the agent has observed every datastore revision; a no-op
    /// for labs without an agent.
    pub fn sync_agent(&self) -> Result<Option<AgentStatus>, LabError> {
        if !self.state.agent {
            return Ok(None);
        }
        Ok(Some(agent::wait_observed(
            &self.ds,
            None,
            self.state.agent_process.as_ref(),
            &self.paths.agent_log(),
            agent::SYNC_TIMEOUT,
        )?))
    }

    /// Responders on the node (node-local services, failsafe port 22) and on the
    /// external client; they live in their netns and die with it at `down`.
    fn start_host_responders(&mut self) -> Result<(), LabError> {
        let ext = host::external_netns(&self.name);
        for (netns, who, ports) in [
            (self.name.node_netns(), "node", &host::NODE_PORTS[..]),
            (ext, "external", &host::EXTERNAL_PORTS[..]),
        ] {
            let ready = self.paths.run().join(format!("{who}.ready"));
            let log = self.paths.logs().join(format!("{who}.log"));
            let mut args: Vec<String> = vec![
                "lab-responder".into(),
                "--text".into(),
                who.into(),
                "--lab".into(),
                self.name.to_string(),
                "--pod".into(),
                format!("host/{who}"),
                "--ready-file".into(),
                ready.to_string_lossy().into_owned(),
            ];
            for port in ports {
                args.extend(["--port".into(), port.to_string()]);
            }
            let mut daemon = process::spawn_in_netns(&netns, &self.state.binary, &args, &log)?;
            let deadline = Instant::now() + READY_TIMEOUT;
            while !ready.exists() {
                if daemon.child.try_wait().ok().flatten().is_some() || Instant::now() >= deadline {
                    return Err(LabError::PodProcess {
                        pod: format!("host/{who}"),
                        what: "did not become ready".into(),
                        log: log.display().to_string(),
                        tail: process::log_tail(&log, 10),
                    });
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }

    /// The connectivity matrix, once the agent has caught up with the datastore.
    /// Besides pods, `from` may name `external` or `node`, and `to` may name
    /// `node:PORT[/udp]` (see [`host`]).
    pub fn probe(&self, req: &ProbeRequest) -> Result<Vec<ProbeResult>, LabError> {
        let special: Vec<String> = req
            .from
            .iter()
            .filter(|f| host::is_special_source(f))
            .cloned()
            .collect();
        let node_targets: Vec<(u16, Option<Protocol>)> = req
            .to
            .iter()
            .filter_map(|t| host::parse_node_target(t))
            .collect();
        if special.is_empty() && node_targets.is_empty() {
            return self.probe_pods(req);
        }
        self.sync_agent()?;
        let mut jobs = Vec::new();
        let from_all = if req.from.is_empty() {
            vec!["*".to_owned()]
        } else {
            req.from.clone()
        };
        jobs.extend(host::node_jobs(
            &self.name,
            &self.state.pods,
            &from_all,
            &node_targets,
            req.protocol,
            req.ipv6,
        ));
        let other_to: Vec<String> = req
            .to
            .iter()
            .filter(|t| host::parse_node_target(t).is_none())
            .cloned()
            .collect();
        if node_targets.is_empty() || !other_to.is_empty() {
            let pod_from: Vec<String> = req
                .from
                .iter()
                .filter(|f| !host::is_special_source(f))
                .cloned()
                .collect();
            let objects = self.ds.list()?;
            let services: Vec<crate::model::Service> = objects
                .iter()
                .filter_map(|l| match &l.object {
                    Object::Service(s) => Some(s.clone()),
                    _ => None,
                })
                .collect();
            let pod_objects = self.pod_objects()?;
            let mut sub = req.clone();
            sub.to = other_to;
            if !pod_from.is_empty() || special.is_empty() {
                sub.from = pod_from;
                jobs.extend(probe::plan(
                    &self.state.pods,
                    &pod_objects,
                    &services,
                    &sub,
                )?);
            }
            // Special sources probe what a pod would: plan from any one pod, then move
            // the jobs to the special source's netns.
            // Two template pods, so that a target that is one of them is still probed.
            let mut template: Vec<probe::ProbeJob> = Vec::new();
            for any in self.state.pods.keys().take(2) {
                sub.from = vec![any.clone()];
                for j in probe::plan(&self.state.pods, &pod_objects, &services, &sub)? {
                    if !template
                        .iter()
                        .any(|t| t.to == j.to && t.addr == j.addr && t.protocol == j.protocol)
                    {
                        template.push(j);
                    }
                }
            }
            {
                for s in &special {
                    for j in &template {
                        jobs.push(probe::ProbeJob {
                            from: s.clone(),
                            netns: host::source_netns(&self.name, s),
                            ..j.clone()
                        });
                    }
                }
            }
        }
        let udp_jobs = jobs.iter().filter(|j| j.protocol == Protocol::Udp).count();
        let ports = probe::UdpPorts::reserve(&self.paths.run().join("udp-port-cursor"), udp_jobs);
        Ok(probe::run(&jobs, req.timeout, &ports))
    }

    /// [`Lab::probe`] between pods and Services only.
    fn probe_pods(&self, req: &ProbeRequest) -> Result<Vec<ProbeResult>, LabError> {
        self.sync_agent()?;
        let objects = self.readable_objects()?;
        let services: Vec<crate::model::Service> = objects
            .iter()
            .filter_map(|l| match &l.object {
                Object::Service(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        let jobs = probe::plan(&self.state.pods, &self.pod_objects()?, &services, req)?;
        let udp_jobs = jobs.iter().filter(|j| j.protocol == Protocol::Udp).count();
        let ports = probe::UdpPorts::reserve(&self.paths.run().join("udp-port-cursor"), udp_jobs);
        Ok(probe::run(&jobs, req.timeout, &ports))
    }

    /// The netns of `NS/POD`.
    pub fn pod_netns(&self, pod: &str) -> Result<String, LabError> {
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

    /// Runs a command in a pod (stdio inherited); returns its exit code. Releases the
    /// lab lock first, so the command may itself call `enforcer lab`.
    pub fn exec(self, pod: &str, command: &[String]) -> Result<i32, LabError> {
        let netns = self.pod_netns(pod)?;
        drop(self);
        Ok(exec::exit_code(exec::run(&netns, command)?))
    }

    /// Removes everything lab `name` created: its processes (from the state file, and
    /// found by command line), every `enf-<name>-*` netns with whatever still runs in
    /// it, `/etc/netns/enf-<name>-*`, its bpffs directory and its state directory.
    /// Works from any leftover state; never fails, but reports what it could not do.
    pub fn down(name: &LabName) -> DownReport {
        let mut report = DownReport::default();
        let paths = name.paths();
        // Wait a little for a running command, then go ahead regardless.
        let _lock = if paths.root.exists() {
            lock(name, &paths, Duration::from_secs(5)).ok()
        } else {
            None
        };
        let mut records: Vec<ProcessRecord> = Vec::new();
        match LabState::load(&paths.state_file()) {
            Ok(Some(state)) => {
                records.extend(state.agent_process);
                records.extend(state.pods.values().filter_map(|p| p.process));
            }
            Ok(None) => {}
            Err(e) => report.notes.push(format!(
                "{e}; cleaning up from netns names and command lines instead"
            )),
        }
        records.extend(process::find_lab_processes(
            name.as_str(),
            &paths.datastore(),
        ));
        let namespaces = netns::list_with_prefix(&name.netns_prefix());
        for ns in &namespaces {
            for pid in process::netns_pids(ns) {
                records.extend(ProcessRecord::of(pid));
            }
        }
        records.sort_by_key(|r| r.pid);
        records.dedup();
        for r in &records {
            if r.is_alive() {
                report.processes += 1;
            }
        }
        std::thread::scope(|s| {
            for r in &records {
                s.spawn(move || r.terminate(STOP_GRACE));
            }
        });
        for ns in namespaces {
            match netns::delete(&ns) {
                Ok(()) => report.netns.push(ns),
                Err(e) => report.problems.push(e.to_string()),
            }
        }
        for etc in netns::list_etc_with_prefix(&name.netns_prefix()) {
            match netns::remove_etc(&etc) {
                Ok(()) => report
                    .removed_paths
                    .push(Path::new(paths::ETC_NETNS).join(etc)),
                Err(e) => report.problems.push(e.to_string()),
            }
        }
        for dir in [name.bpffs_dir(), paths.root.clone()] {
            if dir.exists() {
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => report.removed_paths.push(dir),
                    Err(e) => report
                        .problems
                        .push(format!("remove {}: {e}", dir.display())),
                }
            }
        }
        // Parents the lab may have created: removed only when empty (other labs).
        for dir in [
            paths::ETC_NETNS,
            paths::STATE_ROOT,
            "/run/enforcer",
            paths::BPFFS_ROOT,
        ] {
            let _ = std::fs::remove_dir(dir);
        }
        report
    }
}

/// Stops a pod's process and deletes its netns and `/etc/netns` files.
fn remove_pod(rec: &PodRecord) -> Result<(), LabError> {
    if let Some(p) = rec.process {
        p.terminate(STOP_GRACE);
    }
    for pid in process::netns_pids(&rec.netns) {
        if let Some(p) = ProcessRecord::of(pid) {
            p.terminate(STOP_GRACE);
        }
    }
    if netns::exists(&rec.netns) {
        netns::delete(&rec.netns)?;
    }
    netns::remove_etc(&rec.netns)?;
    Ok(())
}
