//! The planner: declared objects and an allocation in, the cluster as it would run
//! and the new allocation out (see [`super`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::workload::{PodIp, PodStatus};
use crate::model::{Object, ObjectId, Pod, Service};

use super::addresses::{Allocation, PodAddresses, PodAllocator, ServiceAllocator};
use super::error::PlanError;
use super::nodes::{self, Node, Placement};
use super::objects::{self, Declared};
use super::service_ips::{self, Family};

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
    /// Its addresses: its own, or its node's for a `hostNetwork` pod.
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    /// `spec.hostNetwork`: it runs in its node's network namespace.
    pub host_network: bool,
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
    /// Pods of nodes outside the plan and finished pods are here as declared.
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

/// A pod of the declared objects (a Pod, or a Deployment's replica).
struct Wanted<'a> {
    /// Position in declaration order.
    order: usize,
    key: String,
    pod: Pod,
    /// The Deployment that made it (`namespace/name` groups its replicas).
    owner: Option<String>,
    declared: &'a Declared,
}

/// A pod to run, placed on a node.
struct Candidate<'a> {
    wanted: Wanted<'a>,
    node: &'a Node,
}

/// Every pod the declared objects stand for, in declaration order (a `DaemonSet`'s:
/// one per node of `nodes`).
fn wanted_pods<'a>(declared: &'a BTreeMap<ObjectId, Declared>, nodes: &[Node]) -> Vec<Wanted<'a>> {
    let mut out = Vec::new();
    for d in declared.values() {
        let owned: Option<(&str, Vec<Pod>)> = match &d.object {
            Object::Deployment(dep) | Object::StatefulSet(dep) => {
                Some((dep.metadata.name.as_str(), dep.pods()))
            }
            Object::DaemonSet(ds) => Some((
                ds.metadata.name.as_str(),
                ds.pods(nodes.iter().map(|n| n.name.as_str())),
            )),
            _ => None,
        };
        if let Some((owner, pods)) = owned {
            for p in pods {
                out.push(Wanted {
                    order: out.len(),
                    key: pod_key(
                        p.metadata.namespace.as_deref().unwrap_or("default"),
                        &p.metadata.name,
                    ),
                    pod: p,
                    owner: Some(owner.to_owned()),
                    declared: d,
                });
            }
            continue;
        }
        if let Object::Pod(p) = &d.object {
            out.push(Wanted {
                order: out.len(),
                key: pod_key(
                    p.metadata.namespace.as_deref().unwrap_or("default"),
                    &p.metadata.name,
                ),
                pod: p.clone(),
                owner: None,
                declared: d,
            });
        }
    }
    out
}

/// Places the pods: by `nodeName`, else where they ran before, else spread (see
/// [`nodes`]). Returns the pods to run, and those stored only (remote or finished).
fn place_pods<'a>(
    wanted: Vec<Wanted<'a>>,
    nodes: &'a [Node],
    allocation: &Allocation,
) -> (Vec<Candidate<'a>>, Vec<Wanted<'a>>) {
    let mut placed: Vec<Candidate<'a>> = Vec::new();
    let mut unplaced: Vec<Wanted<'a>> = Vec::new();
    let mut stored: Vec<Wanted<'a>> = Vec::new();
    for w in wanted {
        let previous = allocation.nodes.get(&w.key).map(String::as_str);
        if w.pod.is_finished() {
            stored.push(w);
            continue;
        }
        match nodes::place(nodes, w.pod.spec.node_name.as_deref(), previous) {
            Placement::Node(node) => placed.push(Candidate { wanted: w, node }),
            Placement::Remote => stored.push(w),
            Placement::Unplaced => unplaced.push(w),
        }
    }
    for w in unplaced {
        let group = |c: &Candidate<'_>| {
            c.wanted.owner.is_some()
                && c.wanted.owner == w.owner
                && c.wanted.pod.metadata.namespace == w.pod.metadata.namespace
        };
        let load = |n: &Node| {
            let here = placed.iter().filter(|c| c.node.name == n.name);
            let total = here.clone().count();
            (here.filter(|c| group(c)).count(), total)
        };
        if let Some(node) = nodes::spread(nodes, load) {
            placed.push(Candidate { wanted: w, node });
        }
    }
    // Back in declaration order, so addresses are handed out as before spreading.
    placed.sort_by_key(|c| c.wanted.order);
    (placed, stored)
}

/// Plans the cluster. `declared` must be normalized and complete
/// ([`super::implied::add_implied`]); `nodes` is the cluster's nodes
/// ([`nodes::cluster_nodes`]).
pub fn plan(
    declared: &BTreeMap<ObjectId, Declared>,
    nodes: &[Node],
    allocation: &Allocation,
) -> Result<(ClusterPlan, Allocation), PlanError> {
    for d in declared.values() {
        objects::validate(d)?;
    }
    let (candidates, stored) = place_pods(wanted_pods(declared, nodes), nodes, allocation);
    // Addresses: remote pods' and every kept pod's are taken; new pods get the next
    // free ones of their node's block, in declaration order. Finished pods hold none.
    let mut used: BTreeSet<Ipv4Addr> = stored
        .iter()
        .filter(|w| !w.pod.is_finished())
        .flat_map(|w| w.pod.ips())
        .filter_map(|ip| match ip {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
        .collect();
    for c in candidates
        .iter()
        .filter(|c| !c.wanted.pod.spec.host_network)
    {
        if let Some(kept) = allocation.pods.get(&c.wanted.key) {
            used.insert(kept.ipv4);
        }
    }
    let mut allocators: BTreeMap<&str, PodAllocator<'_>> = nodes
        .iter()
        .map(|n| {
            let next = allocation
                .next_pod_index
                .get(&n.name)
                .copied()
                .unwrap_or(n.pod_block.first_index);
            (
                n.name.as_str(),
                PodAllocator::new(&n.name, &n.pod_block, used.clone(), next),
            )
        })
        .collect();
    let mut objects = BTreeMap::new();
    let mut pods = BTreeMap::new();
    let mut pod_addresses = BTreeMap::new();
    let mut pod_nodes = BTreeMap::new();
    for Candidate { wanted, node } in candidates {
        let Wanted {
            order: _,
            key,
            mut pod,
            owner,
            declared: d,
        } = wanted;
        if pods.contains_key(&key) {
            return Err(d.invalid(format!(
                "pod {key} is declared twice (a Pod and a Deployment replica?)"
            )));
        }
        let host_network = pod.spec.host_network;
        let addresses = if host_network {
            PodAddresses {
                ipv4: node.ipv4,
                ipv6: node.ipv6,
            }
        } else if let Some(kept) = allocation.pods.get(&key) {
            *kept
        } else {
            let Some(allocator) = allocators.get_mut(node.name.as_str()) else {
                continue; // every node has an allocator
            };
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
            phase,
            ..running_status(addresses)
        });
        let object = Object::Pod(pod.clone());
        objects.insert(object.id(), object);
        if !host_network {
            pod_addresses.insert(key.clone(), addresses);
        }
        pod_nodes.insert(key.clone(), node.name.clone());
        pods.insert(
            key,
            PlannedPod {
                pod,
                owner,
                node: node.name.clone(),
                ipv4: addresses.ipv4,
                ipv6: addresses.ipv6,
                host_network,
            },
        );
    }
    for w in stored {
        let pod = finished_pod(
            w.pod,
            allocation.pods.get(&w.key),
            allocation.nodes.get(&w.key),
        );
        let object = Object::Pod(pod);
        objects.insert(object.id(), object);
    }
    let services = plan_services(declared, allocation)?;
    let mut cluster_ips = BTreeMap::new();
    for svc in &services {
        let object = Object::Service(svc.clone());
        if !svc.spec.cluster_ips.is_empty() {
            cluster_ips.insert(object.id(), svc.spec.cluster_ips.clone());
        } else if let Some(ip) = &svc.spec.cluster_ip {
            cluster_ips.insert(object.id(), vec![ip.clone()]);
        }
        objects.insert(object.id(), object);
    }
    for d in declared.values() {
        if !matches!(d.object, Object::Pod(_) | Object::Service(_)) {
            objects.insert(d.object.id(), d.object.clone());
        }
    }
    // The nodes, as their kubelets register them (the agents read every node's
    // addresses: tunnel packets are accepted from those only).
    for node in nodes {
        let registered = nodes::node_object(node, None);
        let object = nodes::node_object(node, objects.get(&registered.id()));
        objects.insert(object.id(), object);
    }
    let next_pod_index = allocators
        .iter()
        .map(|(node, a)| ((*node).to_owned(), a.next_index()))
        .collect();
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
            nodes: pod_nodes,
            cluster_ips,
        },
    ))
}

/// The status the kubelet writes for a running pod: its addresses (the phase is the
/// caller's).
fn running_status(addresses: PodAddresses) -> PodStatus {
    PodStatus {
        phase: None,
        pod_ip: Some(addresses.ipv4.to_string()),
        pod_ips: vec![
            PodIp {
                ip: addresses.ipv4.to_string(),
            },
            PodIp {
                ip: addresses.ipv6.to_string(),
            },
        ],
    }
}

/// A pod stored but not run (remote, or finished). A finished pod that ran here keeps
/// the node and the addresses it had in its status, as the kubelet leaves them; the
/// addresses are free for other pods all the same.
fn finished_pod(mut pod: Pod, had: Option<&PodAddresses>, node: Option<&String>) -> Pod {
    if !pod.is_finished() {
        return pod;
    }
    if pod.spec.node_name.is_none() {
        pod.spec.node_name = node.cloned();
    }
    if let Some(had) = had
        && pod.ips().is_empty()
    {
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
        pod.status = Some(PodStatus {
            phase,
            ..running_status(*had)
        });
    }
    pod
}

/// Services with their cluster IPs ([`service_ips`]): for each family, the declared
/// address, else the one the Service already had, else a new one; written back into
/// `clusterIP`, `clusterIPs`, `ipFamilies` and `ipFamilyPolicy` as the API server does.
/// Headless Services stay as declared.
fn plan_services(
    declared: &BTreeMap<ObjectId, Declared>,
    allocation: &Allocation,
) -> Result<Vec<Service>, PlanError> {
    let mut services = Vec::new();
    let mut taken: BTreeMap<IpAddr, ObjectId> = BTreeMap::new();
    // Declared addresses first, so that no allocation takes one of them.
    let mut pending = Vec::new();
    for d in declared.values() {
        let Object::Service(svc) = &d.object else {
            continue;
        };
        let mut svc = svc.clone();
        let kept = allocation
            .cluster_ips
            .get(&d.object.id())
            .map(Vec::as_slice)
            .unwrap_or_default();
        if svc.spec.cluster_ip.is_none()
            && svc.spec.cluster_ips.is_empty()
            && kept.first().map(String::as_str) == Some("None")
        {
            svc.spec.cluster_ip = Some("None".to_owned());
        }
        if service_ips::is_headless(&svc.spec) {
            services.push(svc);
            continue;
        }
        let kept: Vec<IpAddr> = kept.iter().filter_map(|ip| ip.parse().ok()).collect();
        let request = service_ips::request(&svc.spec, &kept).map_err(|m| d.invalid(m))?;
        for ip in &request.named {
            if let Some(other) = taken.insert(*ip, d.object.id()) {
                return Err(d.invalid(format!("spec.clusterIPs {ip} is already used by {other}")));
            }
        }
        pending.push((d, svc, request, kept));
    }
    // Kept addresses next (an update that leaves them out keeps them).
    let mut chosen = Vec::new();
    for (d, svc, request, kept) in pending {
        let ips: Vec<(Family, Option<IpAddr>)> = request
            .families
            .iter()
            .map(|&family| {
                let named = request.named.iter().find(|ip| Family::of(**ip) == family);
                let kept = kept
                    .iter()
                    .find(|ip| Family::of(**ip) == family && !taken.contains_key(ip));
                (family, named.or(kept).copied())
            })
            .collect();
        for ip in ips.iter().filter_map(|(_, ip)| *ip) {
            taken.insert(ip, d.object.id());
        }
        chosen.push((svc, request.policy, ips));
    }
    let mut allocator = ServiceAllocator::new();
    for (mut svc, policy, ips) in chosen {
        let mut addresses = Vec::new();
        for (family, ip) in ips {
            let ip = if let Some(ip) = ip {
                ip
            } else {
                let ip = allocator.allocate(family, &taken)?;
                taken.insert(ip, Object::Service(svc.clone()).id());
                ip
            };
            addresses.push((family, ip));
        }
        svc.spec.cluster_ips = addresses.iter().map(|(_, ip)| ip.to_string()).collect();
        svc.spec.cluster_ip = svc.spec.cluster_ips.first().cloned();
        svc.spec.ip_families = addresses.iter().map(|(f, _)| f.name().to_owned()).collect();
        svc.spec.ip_family_policy = Some(policy.to_owned());
        services.push(svc);
    }
    Ok(services)
}
