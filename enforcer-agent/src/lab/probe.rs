//! `enforcer lab probe`: the connectivity matrix on real packets, once the agent has
//! caught up with the datastore. The flows are planned as `enforcer matrix` plans them
//! ([`crate::connectivity::plan`], over the lab's pods), then run from each source's
//! netns ([`super::prober`]). Besides pods, sources may be `external`, `node` or a
//! node's name, and targets `node:PORT[/udp]` or `nodeK:PORT[/udp]` ([`super::host`]).

use std::collections::BTreeMap;

use crate::connectivity::{self, Flow, ProbePod, ProbeRequest, ProbeResult, Protocol};
use crate::model::{Object, Service};

use super::error::LabError;
use super::facade::Lab;
use super::host;
use super::prober::{self, ProbeJob, SourcePorts, UdpPorts};

impl Lab {
    /// The connectivity matrix, once the agent has caught up with the datastore.
    /// Besides pods, `from` may name `external`, `node` or a node, and `to` may name
    /// `node:PORT[/udp]` or `nodeK:PORT[/udp]` (see [`host`]).
    pub fn probe(&self, req: &ProbeRequest) -> Result<Vec<ProbeResult>, LabError> {
        let special: Vec<String> = req
            .from
            .iter()
            .filter(|f| host::is_special_source(&self.topo, f))
            .cloned()
            .collect();
        let node_targets: Vec<(String, u16, Option<Protocol>)> = req
            .to
            .iter()
            .filter_map(|t| host::parse_node_target(&self.topo, t))
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
            &self.topo,
            &self.state.pods,
            &from_all,
            &node_targets,
            req.protocol,
            req.ipv6,
        ));
        let other_to: Vec<String> = req
            .to
            .iter()
            .filter(|t| host::parse_node_target(&self.topo, t).is_none())
            .cloned()
            .collect();
        if node_targets.is_empty() || !other_to.is_empty() {
            let pod_from: Vec<String> = req
                .from
                .iter()
                .filter(|f| !host::is_special_source(&self.topo, f))
                .cloned()
                .collect();
            let services = services(self.ds.list()?.iter().map(|l| &l.object));
            let pods = self.probe_targets()?;
            let mut sub = req.clone();
            sub.to = other_to;
            if !pod_from.is_empty() || special.is_empty() {
                sub.from = pod_from;
                jobs.extend(self.jobs(connectivity::plan(&pods, &services, &sub)?));
            }
            // Special sources probe what a pod would: plan from any one pod, then move
            // the jobs to the special source's netns.
            // Two template pods, so that a target that is one of them is still probed.
            let mut template: Vec<ProbeJob> = Vec::new();
            for any in self.state.pods.keys().take(2) {
                sub.from = vec![any.clone()];
                for j in self.jobs(connectivity::plan(&pods, &services, &sub)?) {
                    if !template
                        .iter()
                        .any(|t| t.to == j.to && t.addr == j.addr && t.protocol == j.protocol)
                    {
                        template.push(j);
                    }
                }
            }
            for s in &special {
                for j in &template {
                    jobs.push(ProbeJob {
                        from: s.clone(),
                        netns: host::source_netns(&self.name, &self.topo, s),
                        ..j.clone()
                    });
                }
            }
        }
        Ok(self.run(&jobs, req))
    }

    /// [`Lab::probe`] between pods and Services only.
    fn probe_pods(&self, req: &ProbeRequest) -> Result<Vec<ProbeResult>, LabError> {
        self.sync_agent()?;
        let services = services(self.readable_objects()?.iter().map(|l| &l.object));
        let flows = connectivity::plan(&self.probe_targets()?, &services, req)?;
        Ok(self.run(&self.jobs(flows), req))
    }

    /// The lab's pods as the planner sees them: addresses from the state, declared
    /// ports from the datastore's objects.
    fn probe_targets(&self) -> Result<BTreeMap<String, ProbePod>, LabError> {
        let objects = self.pod_objects()?;
        Ok(self
            .state
            .pods
            .iter()
            .map(|(key, rec)| {
                (
                    key.clone(),
                    ProbePod {
                        namespace: rec.namespace.clone(),
                        name: rec.name.clone(),
                        ipv4: rec.ipv4,
                        ipv6: rec.ipv6,
                        ports: objects
                            .get(key)
                            .map(connectivity::declared_ports)
                            .unwrap_or_default(),
                    },
                )
            })
            .collect())
    }

    /// Flows as jobs: each leaves from its source pod's netns.
    fn jobs(&self, flows: Vec<Flow>) -> Vec<ProbeJob> {
        flows
            .into_iter()
            .filter_map(|f| {
                let netns = self.state.pods.get(&f.from)?.netns.clone();
                Some(ProbeJob {
                    from: f.from,
                    netns,
                    to: f.to,
                    addr: f.addr,
                    protocol: f.protocol,
                })
            })
            .collect()
    }

    fn run(&self, jobs: &[ProbeJob], req: &ProbeRequest) -> Vec<ProbeResult> {
        let udp_jobs = jobs.iter().filter(|j| j.protocol == Protocol::Udp).count();
        let ports = match req.source_port {
            Some(port) => SourcePorts::Fixed(port),
            None => SourcePorts::Rotating(UdpPorts::reserve(
                &self.paths.run().join("udp-port-cursor"),
                udp_jobs,
            )),
        };
        prober::run(jobs, req.timeout, &ports)
    }
}

fn services<'a>(objects: impl Iterator<Item = &'a Object>) -> Vec<Service> {
    objects
        .filter_map(|o| match o {
            Object::Service(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}
