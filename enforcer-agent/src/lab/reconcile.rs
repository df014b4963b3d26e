//! Changing a lab: declared objects in, the cluster planned ([`crate::cluster::plan()`])
//! from the lab's allocation, then the running lab made to match the plan — pod
//! netns and processes started or stopped, the DNS zone and Service NAT rewritten, the
//! datastore written as the API server and kubelet would — and the new allocation
//! persisted. `up`, `apply` and `delete` all end here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::cluster::dns::Zone;
use crate::cluster::{self, Allocation, ClusterPlan, Declared, implied};
use crate::datastore::file::FileDatastore;
use crate::model::{Loaded, Object, ObjectId};
use crate::policy::{Cluster, PolicyError, PolicyProblem};

use super::error::{LabError, io_err};
use super::facade::{Lab, UpOptions, lock};
use super::process::{self, STOP_GRACE};
use super::program::PodProgram;
use super::state::{LabState, PodRecord};
use super::topology::Topology;
use super::{dns, fabric, host, netns, services};

/// How long pod processes get to bind their sockets.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// What changed in an apply/delete.
#[derive(Clone, Debug, Default)]
pub struct ChangeReport {
    pub pods_added: Vec<String>,
    pub pods_removed: Vec<String>,
    pub pods_restarted: Vec<String>,
    pub objects_written: usize,
    pub objects_deleted: usize,
    /// The agent's status after it observed the change (labs with an agent).
    pub agent: Option<crate::datastore::status::AgentStatus>,
}

/// A pod process to (re)start.
struct PodToRun {
    key: String,
    namespace: String,
    name: String,
    netns: String,
    program: PodProgram,
}

/// Loaded input as declared objects, defaults filled in.
fn declared_from(loaded: Vec<Loaded>) -> Vec<Declared> {
    loaded
        .into_iter()
        .map(|l| Declared {
            object: cluster::objects::normalize(l.object),
            source: Some(l.source),
        })
        .collect()
}

/// The policy compiler's checks across fields, as libcalico-go's validation makes
/// them (a `services` match beside a selector, `ports` with a destination `services`
/// match, `preDNAT` without `applyOnForward`, ...), on the objects `input` declares,
/// judged among the objects the lab already holds (`current`, which `input`
/// replaces): the first refusal, naming file, object and field. The loader checks
/// each field alone, so without this `apply` wrote such an object and only the agent
/// refused it. What the enforcer cannot enforce (`Unsupported`, too many rules) and a
/// tier that does not exist yet stay the agent's to report.
fn refuse_invalid_policies(input: &[Loaded], current: Vec<Loaded>) -> Result<(), Box<PolicyError>> {
    let ids: BTreeSet<ObjectId> = input.iter().map(|l| l.object.id()).collect();
    let mut all: Vec<Loaded> = current
        .into_iter()
        .filter(|l| !ids.contains(&l.object.id()))
        .collect();
    all.extend(input.iter().cloned());
    let (_, _, errors) = Cluster::from_objects_each(&all);
    errors
        .into_iter()
        .find(|e| {
            ids.contains(&e.object)
                && !matches!(
                    e.problem,
                    PolicyProblem::Unsupported { .. }
                        | PolicyProblem::TooManyRules { .. }
                        | PolicyProblem::UnknownTier { .. }
                )
        })
        .map_or(Ok(()), |e| Err(Box::new(e)))
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
        let topo = Topology::new(name, opts.nodes, opts.encap)?;
        let mut declared = cluster::declare(declared_from(crate::model::load_paths(files)?));
        implied::add_implied(&mut declared);
        let mut state = LabState::new(
            name.as_str(),
            opts.binary.clone(),
            opts.agent,
            opts.nodes,
            opts.encap,
        );
        state.kubernetes = opts.kubernetes;
        state.attach.clone_from(&opts.attach);
        state.agent_args.clone_from(&opts.agent_args);
        state.kube_proxy_masquerade = opts.kube_proxy_masquerade;
        let (plan, allocation) = cluster::plan(&declared, topo.nodes(), &state.allocation())?;

        for dir in [paths.root.clone(), paths.logs(), paths.run()] {
            std::fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        }
        state.save(&paths.state_file())?;
        let lock = lock(name, &paths, Duration::ZERO)?;
        let ds = FileDatastore::open(paths.datastore())?;
        let mut lab = Lab {
            name: name.clone(),
            paths,
            topo,
            state,
            ds,
            _lock: lock,
        };
        match lab.bring_up(&plan, &allocation, opts.agent_binary.as_deref()) {
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

    fn bring_up(
        &mut self,
        plan: &ClusterPlan,
        allocation: &Allocation,
        agent_binary: Option<&Path>,
    ) -> Result<(), LabError> {
        for node in self.topo.nodes() {
            netns::create_node(&self.topo.netns(&node.name))?;
        }
        fabric::create(
            &self.topo,
            &host::external_netns(&self.name),
            (host::EXTERNAL_IP_V4.into(), host::EXTERNAL_IP_V6.into()),
        )?;
        if self.state.kubernetes {
            self.start_apiserver()?;
        }
        self.reconcile(plan, allocation, &BTreeMap::new())?;
        self.start_host_responders()?;
        if self.state.agent {
            let binary = agent_binary.unwrap_or(&self.state.binary).to_path_buf();
            let nodes: Vec<String> = self.topo.nodes().iter().map(|n| n.name.clone()).collect();
            self.start_agents(&binary, &nodes)?;
        }
        Ok(())
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
                        .get(&cluster::pod_key(ns, &p.metadata.name))
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
    /// Objects whose policy Calico's validation refuses as a whole (see
    /// [`refuse_invalid_policies`]) are refused with nothing written.
    pub fn apply(&mut self, files: &[PathBuf]) -> Result<ChangeReport, LabError> {
        let loaded = crate::model::load_paths(files)?;
        refuse_invalid_policies(&loaded, self.readable_objects()?).map_err(LabError::Policy)?;
        let input = declared_from(loaded);
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
        implied::add_implied(&mut declared);
        // The lab's allocation: pods' addresses from the state, Services' from the
        // datastore (where the API server keeps them).
        let mut allocation = self.state.allocation();
        for (id, object) in current {
            if let Object::Service(svc) = object {
                let ips = if svc.spec.cluster_ips.is_empty() {
                    svc.spec.cluster_ip.iter().cloned().collect()
                } else {
                    svc.spec.cluster_ips.clone()
                };
                if !ips.is_empty() {
                    allocation.cluster_ips.insert(id.clone(), ips);
                }
            }
        }
        let (plan, allocation) = cluster::plan(&declared, self.topo.nodes(), &allocation)?;
        let mut report = self.reconcile(&plan, &allocation, current)?;
        report.agent = self.sync_agent()?;
        Ok(report)
    }

    /// Makes the netns, processes, Service rules, DNS zone and datastore match `plan`.
    fn reconcile(
        &mut self,
        plan: &ClusterPlan,
        allocation: &Allocation,
        previous: &BTreeMap<ObjectId, Object>,
    ) -> Result<ChangeReport, LabError> {
        let mut report = ChangeReport::default();
        self.state
            .next_pod_index
            .clone_from(&allocation.next_pod_index);
        // A pod moving on or off the host network is a new pod.
        let moved: Vec<String> = plan
            .pods
            .iter()
            .filter(|(key, p)| {
                self.state
                    .pods
                    .get(*key)
                    .is_some_and(|r| r.host_network != p.host_network || r.node != p.node)
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in moved {
            if let Some(rec) = self.state.pods.remove(&key) {
                remove_pod(&rec)?;
                self.save()?;
            }
        }
        // 1. New pods: network first (recorded at once, so a crash leaves a trace),
        //    then their processes.
        let mut to_start: Vec<PodToRun> = Vec::new();
        for (key, planned) in &plan.pods {
            let node = self.topo.netns(&planned.node);
            let run = PodToRun {
                key: key.clone(),
                namespace: planned.namespace().to_owned(),
                name: planned.name().to_owned(),
                netns: if planned.host_network {
                    node.clone()
                } else {
                    self.name.pod_netns(planned.namespace(), planned.name())
                },
                program: PodProgram::for_pod(&planned.pod),
            };
            match self.state.pods.get(key) {
                None => {
                    let host_iface = if planned.host_network {
                        String::new()
                    } else {
                        planned.pod.host_iface()
                    };
                    self.state.pods.insert(
                        key.clone(),
                        PodRecord {
                            namespace: run.namespace.clone(),
                            name: run.name.clone(),
                            node: planned.node.clone(),
                            netns: run.netns.clone(),
                            host_iface: host_iface.clone(),
                            host_network: planned.host_network,
                            ipv4: planned.ipv4,
                            ipv6: planned.ipv6,
                            owner: planned.owner.clone(),
                            program: run.program.clone(),
                            process: None,
                        },
                    );
                    self.save()?;
                    if !planned.host_network {
                        netns::create_pod(&netns::PodLink {
                            node: &node,
                            netns: &run.netns,
                            host_iface: &host_iface,
                            ipv4: planned.ipv4,
                            ipv6: planned.ipv6,
                        })?;
                        netns::write_resolv_conf(
                            &run.netns,
                            planned.namespace(),
                            cluster::addresses::DNS_SERVICE_IP,
                        )?;
                    }
                    report.pods_added.push(key.clone());
                    to_start.push(run);
                }
                Some(rec) => {
                    let alive = rec.process.is_some_and(|p| p.is_alive());
                    if rec.program != run.program || !alive {
                        report.pods_restarted.push(key.clone());
                        to_start.push(run);
                    }
                    if let Some(rec) = self.state.pods.get_mut(key) {
                        rec.owner.clone_from(&planned.owner);
                    }
                }
            }
        }
        // The zone before the DNS pod starts, so it serves complete answers at once.
        dns::write_zone(
            &Zone::build(&plan.services, &plan.pods),
            &self.paths.zone_file(),
        )?;
        self.start_pods(&to_start)?;
        // 2. Services over the now-ready pods, in every node (kube-proxy runs on each).
        let backends = cluster::services::backends(&plan.services, &plan.pods, &plan.objects);
        for node in self.topo.nodes() {
            services::load(
                &self.topo.netns(&node.name),
                &self.topo.nft_file(&self.paths, &node.name),
                &services::ruleset_with(&backends, node, self.state.kube_proxy_masquerade),
            )?;
        }
        // 3. The datastore, as the API server would have it (through the lab's API
        //    server in a Kubernetes lab, which stores Calico's kinds as CRDs).
        let stored = |o: &Object| {
            if self.state.kubernetes {
                super::apiserver::daemon::stored_form(o)
            } else {
                o.clone()
            }
        };
        let changed: Vec<Object> = plan
            .objects
            .iter()
            .map(|(id, o)| (id, stored(o)))
            .filter(|(id, o)| previous.get(*id) != Some(o))
            .map(|(_, o)| o)
            .collect();
        let removed: Vec<Object> = previous
            .iter()
            .filter(|(id, _)| !plan.objects.contains_key(*id))
            .map(|(_, o)| o.clone())
            .collect();
        self.write_objects(&changed, &removed)?;
        report.objects_written = changed.len();
        report.objects_deleted = removed.len();
        // 4. Pods that are gone.
        let gone: Vec<String> = self
            .state
            .pods
            .keys()
            .filter(|k| !plan.pods.contains_key(*k))
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
    fn start_pods(&mut self, pods: &[PodToRun]) -> Result<(), LabError> {
        let mut started: Vec<(String, Child, PathBuf, PathBuf)> = Vec::new();
        for run in pods {
            if let Some(old) = self.state.pods.get(&run.key).and_then(|r| r.process) {
                old.terminate(STOP_GRACE);
            }
            let ready = self.paths.pod_ready(&run.namespace, &run.name);
            let log = self.paths.pod_log(&run.namespace, &run.name);
            let _ = std::fs::remove_file(&ready);
            let mut args: Vec<String> = match &run.program {
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
                run.key.clone(),
            ]);
            args.extend(["--ready-file".into(), ready.to_string_lossy().into_owned()]);
            for port in run.program.ports() {
                args.extend(["--port".into(), port.to_string()]);
            }
            let daemon = process::spawn_in_netns(&run.netns, &self.state.binary, &args, &log)?;
            if let Some(rec) = self.state.pods.get_mut(&run.key) {
                rec.process = Some(daemon.record);
                rec.program = run.program.clone();
            }
            started.push((run.key.clone(), daemon.child, ready, log));
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

    /// Responders on every node (node-local services, failsafe port 22) and on the
    /// external client; they live in their netns and die with it at `down`.
    fn start_host_responders(&mut self) -> Result<(), LabError> {
        let mut hosts: Vec<(String, String, &[u16])> = self
            .topo
            .nodes()
            .iter()
            .map(|n| {
                // A single node answers as `node`, as it always did.
                let who = if self.topo.single() {
                    host::FROM_NODE.to_owned()
                } else {
                    n.name.clone()
                };
                (self.topo.netns(&n.name), who, &host::NODE_PORTS[..])
            })
            .collect();
        hosts.push((
            host::external_netns(&self.name),
            host::FROM_EXTERNAL.to_owned(),
            &host::EXTERNAL_PORTS[..],
        ));
        for (netns, who, ports) in hosts {
            let ready = self.paths.run().join(format!("{who}.ready"));
            let log = self.paths.logs().join(format!("{who}.log"));
            let mut args: Vec<String> = vec![
                "lab-responder".into(),
                "--text".into(),
                who.clone(),
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
}

/// Stops a pod's process and deletes its netns and `/etc/netns` files (a
/// `hostNetwork` pod's netns is its node's: only its process goes).
fn remove_pod(rec: &PodRecord) -> Result<(), LabError> {
    if let Some(p) = rec.process {
        p.terminate(STOP_GRACE);
    }
    if rec.host_network {
        return Ok(());
    }
    for pid in process::netns_pids(&rec.netns) {
        if let Some(p) = process::ProcessRecord::of(pid) {
            p.terminate(STOP_GRACE);
        }
    }
    if netns::exists(&rec.netns) {
        netns::delete(&rec.netns)?;
    }
    netns::remove_etc(&rec.netns)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::refuse_invalid_policies;
    use crate::model::{Loaded, load_str};
    use crate::policy::PolicyProblem;

    fn load(name: &str, text: &str) -> Vec<Loaded> {
        load_str(Path::new(name), text).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    const SERVER_FROM_WEB: &str = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: server-from-web, namespace: a}\nspec:\n  selector: app == 'server'\n  ingress:\n  - action: Allow\n    source:\n      services: {name: web}\n";

    #[test]
    fn a_services_match_calico_refuses_is_refused_naming_file_object_and_field() {
        let current = load("current.yaml", SERVER_FROM_WEB);
        let bad = load(
            "bad.yaml",
            &format!("{SERVER_FROM_WEB}      selector: app == 'spare'\n"),
        );
        let err = refuse_invalid_policies(&bad, current.clone())
            .err()
            .unwrap_or_else(|| panic!("services beside a selector must be refused"));
        assert!(
            matches!(err.problem, PolicyProblem::InvalidServiceMatch { .. }),
            "{err:?}"
        );
        let text = err.to_string();
        for needle in [
            "bad.yaml",
            "a/server-from-web",
            "source.services",
            "selector",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from: {text}");
        }
        // The valid version, replacing itself, passes.
        assert_eq!(refuse_invalid_policies(&current, current.clone()), Ok(()));
    }

    #[test]
    fn only_the_applied_objects_are_judged_and_a_tier_may_come_later() {
        // A broken object already in the datastore (written past validation) is the
        // agent's to report; applying something else is not refused for it.
        let broken = load(
            "broken.yaml",
            &format!("{SERVER_FROM_WEB}      nets: [198.18.0.0/15]\n"),
        );
        let other = load(
            "other.yaml",
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: later, namespace: a}\nspec:\n  tier: not-yet\n  selector: all()\n",
        );
        assert_eq!(refuse_invalid_policies(&other, broken), Ok(()));
    }
}
