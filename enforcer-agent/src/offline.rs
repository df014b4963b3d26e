//! The cluster a set of files describes, planned the way `enforcer lab up` plans it,
//! without a lab: for `check`, `matrix` and `explain -f`.
//!
//! Deployments become pods `<deployment>-<i>`; namespaces objects use exist (with
//! `kubernetes.io/metadata.name`); `kube-system/coredns-0` (`k8s-app: kube-dns`, 53
//! UDP/TCP) and the `kube-dns` Service are added when absent; pods without
//! `status.podIP` get the addresses the lab would give them (198.18.0.10 and up, in
//! object order, see [`crate::cluster::addresses`]), so `matrix -f` and `lab probe`
//! name the same pods and ports. Pods that declare addresses keep them.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::cluster::implied::{self, DNS_NAMESPACE, DNS_POD, DNS_SERVICE};
use crate::cluster::{self, Allocation, Declared, PlanError, PlannedPod, pod_key};
use crate::model::{Loaded, Object, ObjectId, Pod, Service, Source};
use crate::policy::{Cluster, PolicyError, Warning};

/// File name given to objects nobody declared (the implied DNS pod, namespaces).
pub const IMPLIED_FILE: &str = "(implied)";

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// Declared objects completed as the lab completes them.
#[derive(Clone, Debug)]
pub struct Completed {
    /// Every object (declared ones with their source; expanded pods with their
    /// Deployment's; implied ones with [`IMPLIED_FILE`]), in object-id order.
    pub objects: Vec<Loaded>,
    /// Pods and Services that were added because the files lack them.
    pub implied: Vec<ObjectId>,
    /// Pods as planned (names, addresses; declared addresses win), by `NS/NAME`.
    pub pods: BTreeMap<String, PlannedPod>,
    /// The pod objects (declared ports), by `NS/NAME`.
    pub pod_objects: BTreeMap<String, Pod>,
    /// Services with their `ClusterIP`.
    pub services: Vec<Service>,
    /// Whether the files declare any Pod or Deployment (else selector lints are moot).
    pub declares_workloads: bool,
}

impl Completed {
    /// The policy model over the completed objects.
    #[expect(clippy::result_large_err, reason = "cold error path, rich errors")]
    pub fn cluster(&self) -> Result<(Cluster, Vec<Warning>), PolicyError> {
        Cluster::from_objects(&self.objects)
    }

    /// One line per implied object (the DNS pod and Service together), for people.
    pub fn implied_notes(&self) -> Vec<String> {
        let is = |kind: &str, name: &str| {
            self.implied
                .iter()
                .any(|id| id.kind == kind && id.name == name && id.namespace == DNS_NAMESPACE)
        };
        let (pod, service) = (is("Pod", DNS_POD), is("Service", DNS_SERVICE));
        let dns_ip = cluster::addresses::DNS_SERVICE_IP;
        let mut notes = Vec::new();
        match (pod, service) {
            (true, true) => notes.push(format!(
                "no cluster DNS in the input: assuming the pod {DNS_NAMESPACE}/{DNS_POD} (k8s-app: kube-dns, 53/UDP and 53/TCP) and the Service {DNS_NAMESPACE}/{DNS_SERVICE} ({dns_ip}), as `enforcer lab up` adds them",
            )),
            (true, false) => notes.push(format!(
                "no cluster DNS pod in the input: assuming {DNS_NAMESPACE}/{DNS_POD} (k8s-app: kube-dns, 53/UDP and 53/TCP), as `enforcer lab up` adds it",
            )),
            (false, true) => notes.push(format!(
                "assuming the Service {DNS_NAMESPACE}/{DNS_SERVICE} ({dns_ip}) in front of the DNS pods, as `enforcer lab up` adds it",
            )),
            (false, false) => {}
        }
        notes.extend(
            self.implied
                .iter()
                .filter(|id| id.namespace != DNS_NAMESPACE)
                .map(|id| format!("assuming {id} (not in the input)")),
        );
        notes
    }
}

/// Completes `loaded` (later objects with the same identity replace earlier ones, as
/// `kubectl apply` of the files in order would).
pub fn complete(loaded: &[Loaded]) -> Result<Completed, OfflineError> {
    let mut declared_pods: BTreeMap<String, Pod> = BTreeMap::new();
    let mut declares_workloads = false;
    let mut declared = cluster::declare(loaded.iter().map(|l| Declared {
        object: l.object.clone(),
        source: Some(l.source.clone()),
    }));
    for d in declared.values() {
        if let Object::Pod(p) = &d.object {
            let ns = p.metadata.namespace.as_deref().unwrap_or("default");
            declared_pods.insert(pod_key(ns, &p.metadata.name), p.clone());
        }
        declares_workloads |= matches!(
            d.object,
            Object::Pod(_) | Object::Deployment(_) | Object::StatefulSet(_) | Object::DaemonSet(_)
        );
    }
    implied::add_implied(&mut declared);
    // A DNS server the files declare under another label (`k8s-app: coredns`) is the
    // cluster DNS: assuming a second one would hide the label mismatch `check` reports.
    let dns_pod_id = ObjectId {
        kind: "Pod".to_owned(),
        namespace: DNS_NAMESPACE.to_owned(),
        name: DNS_POD.to_owned(),
    };
    if declared
        .get(&dns_pod_id)
        .is_some_and(|d| d.source.is_none())
        && declared
            .values()
            .any(|d| d.source.is_some() && serves_dns(&d.object))
    {
        declared.remove(&dns_pod_id);
    }
    let implied: Vec<ObjectId> = declared
        .iter()
        .filter(|(_, d)| {
            d.source.is_none() && matches!(d.object, Object::Pod(_) | Object::Service(_))
        })
        .map(|(id, _)| id.clone())
        .collect();
    let (plan, _) = cluster::plan(
        &declared,
        &cluster::nodes::default_nodes(),
        &Allocation::default(),
    )?;

    let mut pods = BTreeMap::new();
    let mut pod_objects = BTreeMap::new();
    let mut objects: BTreeMap<ObjectId, Object> = plan.objects;
    for (key, mut planned) in plan.pods {
        if let Some(original) = declared_pods.get(&key) {
            // What the files say wins over what the lab would assign.
            planned
                .pod
                .spec
                .node_name
                .clone_from(&original.spec.node_name);
            let ips = original.ips();
            if !ips.is_empty() {
                planned.pod.status.clone_from(&original.status);
                for ip in ips {
                    match ip {
                        IpAddr::V4(v4) => planned.ipv4 = v4,
                        IpAddr::V6(v6) => planned.ipv6 = v6,
                    }
                }
            }
        }
        let pod = planned.pod.clone();
        objects.insert(Object::Pod(pod.clone()).id(), Object::Pod(pod.clone()));
        pods.insert(key.clone(), planned);
        pod_objects.insert(key, pod);
    }

    let implied_source = Source {
        file: PathBuf::from(IMPLIED_FILE),
        document: 0,
        line: 0,
    };
    let source_of = |id: &ObjectId, object: &Object| -> Source {
        if let Some(s) = declared.get(id).and_then(|d| d.source.clone()) {
            return s;
        }
        // An expanded pod: its Deployment's (StatefulSet's, DaemonSet's) source.
        if let Object::Pod(p) = object {
            let owner = pods
                .get(&pod_key(&id.namespace, &id.name))
                .and_then(|planned: &PlannedPod| planned.owner.clone());
            if let Some(owner) = owner {
                for kind in ["Deployment", "StatefulSet", "DaemonSet"] {
                    let id = ObjectId {
                        kind: kind.to_owned(),
                        namespace: p.metadata.namespace.clone().unwrap_or_default(),
                        name: owner.clone(),
                    };
                    if let Some(s) = declared.get(&id).and_then(|d| d.source.clone()) {
                        return s;
                    }
                }
            }
        }
        implied_source.clone()
    };
    let objects = objects
        .iter()
        .map(|(id, object)| Loaded {
            source: source_of(id, object),
            object: object.clone(),
        })
        .collect();
    Ok(Completed {
        objects,
        implied,
        pods,
        pod_objects,
        services: plan.services,
        declares_workloads,
    })
}

/// A kube-system Pod or Deployment with a container port 53.
fn serves_dns(object: &Object) -> bool {
    let (namespace, spec) = match object {
        Object::Pod(p) => (&p.metadata.namespace, &p.spec),
        Object::Deployment(d) | Object::StatefulSet(d) => {
            (&d.metadata.namespace, &d.spec.template.spec)
        }
        Object::DaemonSet(d) => (&d.metadata.namespace, &d.spec.template.spec),
        _ => return false,
    };
    namespace.as_deref() == Some(DNS_NAMESPACE)
        && spec
            .containers
            .iter()
            .flat_map(|c| &c.ports)
            .any(|p| p.container_port == 53)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests panic on unexpected errors")]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn completes_the_tutorial_like_the_lab() {
        let text = include_str!("../tests/fixtures/seed000_tutorial.yaml");
        let loaded = crate::model::load_str(Path::new("t.yaml"), text).unwrap();
        let done = complete(&loaded).unwrap();
        let keys: Vec<&str> = done.pods.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "dev-app/backend-0",
                "dev-app/backend-1",
                "dev-app/database-0",
                "dev-app/frontend-0",
                "dev-app/frontend-1",
                "kube-system/coredns-0"
            ]
        );
        assert_eq!(
            done.pods["dev-app/backend-0"].ipv4.to_string(),
            "198.18.0.10"
        );
        assert_eq!(done.implied.len(), 2, "{:?}", done.implied);
        let (cluster, _) = done.cluster().unwrap();
        assert_eq!(cluster.endpoints.len(), 6);
        let backend = &cluster.endpoints[0];
        assert_eq!(backend.name, "backend-0");
        assert_eq!(backend.ips.len(), 2);
    }

    #[test]
    fn declared_addresses_are_kept() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: n}\nstatus: {podIP: 10.1.0.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: n}\n";
        let loaded = crate::model::load_str(Path::new("t.yaml"), text).unwrap();
        let done = complete(&loaded).unwrap();
        assert_eq!(done.pods["n/a"].ipv4.to_string(), "10.1.0.1");
        let (cluster, _) = done.cluster().unwrap();
        let a = cluster.endpoints.iter().find(|e| e.name == "a").unwrap();
        assert_eq!(a.ips, vec!["10.1.0.1".parse::<IpAddr>().unwrap()]);
        let b = cluster.endpoints.iter().find(|e| e.name == "b").unwrap();
        assert!(b.ipv4().unwrap().to_string().starts_with("198.18.0."));
    }
}
