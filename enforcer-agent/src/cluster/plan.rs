//! The planner: declared objects and an allocation in, the cluster as it would run
//! and the new allocation out (see [`super`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::workload::{PodIp, PodStatus};
use crate::model::{Object, ObjectId, Pod, Service};

use super::addresses::{Allocation, PodAllocator, ServiceAllocator};
use super::error::PlanError;
use super::nodes::{self, Node, Placement};
use super::objects::{self, Declared};

/// `namespace/name`, the key of pods throughout.
pub fn pod_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// A pod placed on a node of the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedPod {
    /// The Pod object with `status` (addresses) and `spec.nodeName` filled in.
    pub pod: Pod,
    /// The Deployment that made this pod, if any.
    pub owner: Option<String>,
    /// The node it runs on.
    pub node: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
}

impl PlannedPod {
    pub fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
    }

    pub fn name(&self) -> &str {
        &self.pod.metadata.name
    }

    pub fn key(&self) -> String {
        pod_key(self.namespace(), self.name())
    }
}

/// The whole cluster as it should be.
#[derive(Clone, Debug)]
pub struct ClusterPlan {
    pub nodes: Vec<Node>,
    /// What the API server would hold: declared objects (defaults filled in), the
    /// expanded pods with their addresses and node, Services with their `ClusterIP`.
    /// Pods of nodes outside the plan are here as declared.
    pub objects: BTreeMap<ObjectId, Object>,
    /// Pods that run on a node of the plan, by `namespace/name`.
    pub pods: BTreeMap<String, PlannedPod>,
    /// Services with their `ClusterIP` (or `"None"`: headless).
    pub services: Vec<Service>,
}

/// Declared objects as a map, defaults filled in ([`objects::normalize`]), later
/// objects with the same identity replacing earlier ones (`kubectl apply` in order).
pub fn declare(objects: impl IntoIterator<Item = Declared>) -> BTreeMap<ObjectId, Declared> {
    objects
        .into_iter()
        .map(|d| {
            let object = objects::normalize(d.object);
            (
                object.id(),
                Declared {
                    object,
                    source: d.source,
                },
            )
        })
        .collect()
}

/// A pod to place: the object, its Deployment, where it was declared.
struct Candidate<'a> {
    pod: Pod,
    owner: Option<String>,
    declared: &'a Declared,
    node: &'a Node,
}

/// Plans the cluster. `declared` must be normalized and complete
/// ([`super::implied::add_implied`]); `nodes` is the cluster's nodes
/// ([`nodes::default_nodes`]: one).
pub fn plan(
    declared: &BTreeMap<ObjectId, Declared>,
    nodes: &[Node],
    allocation: &Allocation,
) -> Result<(ClusterPlan, Allocation), PlanError> {
    for d in declared.values() {
        objects::validate(d)?;
    }
    let mut candidates: Vec<Candidate<'_>> = Vec::new();
    let mut remote: Vec<&Pod> = Vec::new();
    for d in declared.values() {
        match &d.object {
            Object::Pod(p) => match nodes::place(nodes, p) {
                Placement::Node(node) => candidates.push(Candidate {
                    pod: p.clone(),
                    owner: None,
                    declared: d,
                    node,
                }),
                Placement::Remote => remote.push(p),
            },
            Object::Deployment(dep) => {
                // Replicas run on the first node (issue 11 spreads them).
                let Some(node) = nodes.first() else {
                    continue;
                };
                for p in dep.pods() {
                    candidates.push(Candidate {
                        pod: p,
                        owner: Some(dep.metadata.name.clone()),
                        declared: d,
                        node,
                    });
                }
            }
            _ => {}
        }
    }
    // Addresses: remote pods' and every kept pod's are taken; new pods get the next
    // free ones, in declaration order.
    let mut used: BTreeSet<Ipv4Addr> = remote
        .iter()
        .flat_map(|p| p.ips())
        .filter_map(|ip| match ip {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
        .collect();
    for c in &candidates {
        let ns = c.pod.metadata.namespace.as_deref().unwrap_or("default");
        if let Some(kept) = allocation.pods.get(&pod_key(ns, &c.pod.metadata.name)) {
            used.insert(kept.ipv4);
        }
    }
    let mut allocators: BTreeMap<&str, PodAllocator<'_>> = nodes
        .iter()
        .map(|n| {
            (
                n.name.as_str(),
                PodAllocator::new(&n.pod_block, used.clone(), allocation.next_pod_index),
            )
        })
        .collect();
    let mut objects = BTreeMap::new();
    let mut pods = BTreeMap::new();
    let mut pod_addresses = BTreeMap::new();
    for Candidate {
        mut pod,
        owner,
        declared: d,
        node,
    } in candidates
    {
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let key = pod_key(&ns, &pod.metadata.name);
        if pods.contains_key(&key) {
            return Err(d.invalid(format!(
                "pod {key} is declared twice (a Pod and a Deployment replica?)"
            )));
        }
        let addresses = if let Some(kept) = allocation.pods.get(&key) {
            *kept
        } else {
            let allocator = allocators
                .get_mut(node.name.as_str())
                .ok_or(PlanError::PodAddressesExhausted)?;
            let fresh = allocator.allocate()?;
            // Blocks do not overlap, but a pod keeps an address from any of them.
            for other in allocators.values_mut() {
                other.mark_used(fresh.ipv4);
            }
            fresh
        };
        pod.spec.node_name = Some(node.name.clone());
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
        pod.status = Some(PodStatus {
            pod_ip: Some(addresses.ipv4.to_string()),
            pod_ips: vec![
                PodIp {
                    ip: addresses.ipv4.to_string(),
                },
                PodIp {
                    ip: addresses.ipv6.to_string(),
                },
            ],
            phase,
        });
        let object = Object::Pod(pod.clone());
        objects.insert(object.id(), object);
        pod_addresses.insert(key.clone(), addresses);
        pods.insert(
            key,
            PlannedPod {
                pod,
                owner,
                node: node.name.clone(),
                ipv4: addresses.ipv4,
                ipv6: addresses.ipv6,
            },
        );
    }
    for pod in remote {
        let object = Object::Pod(pod.clone());
        objects.insert(object.id(), object);
    }
    let services = plan_services(declared, allocation)?;
    let mut cluster_ips = BTreeMap::new();
    for svc in &services {
        let object = Object::Service(svc.clone());
        if let Some(ip) = &svc.spec.cluster_ip {
            cluster_ips.insert(object.id(), ip.clone());
        }
        objects.insert(object.id(), object);
    }
    for d in declared.values() {
        if !matches!(d.object, Object::Pod(_) | Object::Service(_)) {
            objects.insert(d.object.id(), d.object.clone());
        }
    }
    let next_pod_index = nodes
        .first()
        .and_then(|n| allocators.get(n.name.as_str()))
        .map_or(allocation.next_pod_index, PodAllocator::next_index);
    Ok((
        ClusterPlan {
            nodes: nodes.to_vec(),
            objects,
            pods,
            services,
        },
        Allocation {
            next_pod_index,
            pods: pod_addresses,
            cluster_ips,
        },
    ))
}

/// Services with a `ClusterIP`: the declared one, else the one the Service already
/// had, else a new one.
fn plan_services(
    declared: &BTreeMap<ObjectId, Declared>,
    allocation: &Allocation,
) -> Result<Vec<Service>, PlanError> {
    let mut services = Vec::new();
    let mut taken: BTreeMap<Ipv4Addr, ObjectId> = BTreeMap::new();
    let mut unassigned = Vec::new();
    for d in declared.values() {
        let Object::Service(svc) = &d.object else {
            continue;
        };
        let mut svc = svc.clone();
        if svc.spec.cluster_ip.is_none() {
            svc.spec.cluster_ip = allocation.cluster_ips.get(&d.object.id()).cloned();
        }
        match svc.spec.cluster_ip.as_deref().map(str::parse::<Ipv4Addr>) {
            Some(Ok(ip)) => {
                if let Some(other) = taken.insert(ip, d.object.id()) {
                    return Err(
                        d.invalid(format!("spec.clusterIP {ip} is already used by {other}"))
                    );
                }
                services.push(svc);
            }
            Some(Err(_)) => services.push(svc), // "None": headless
            None => unassigned.push(svc),
        }
    }
    let mut allocator = ServiceAllocator::new();
    for mut svc in unassigned {
        let ip = allocator.allocate(&taken)?;
        svc.spec.cluster_ip = Some(ip.to_string());
        taken.insert(ip, Object::Service(svc.clone()).id());
        services.push(svc);
    }
    Ok(services)
}
