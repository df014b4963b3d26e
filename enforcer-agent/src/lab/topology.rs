//! From declared objects to the lab's cluster: implied Namespaces, the cluster DNS,
//! Deployments expanded to Pods, and addresses. Pods whose `spec.nodeName` names
//! another node are remote pods: stored in the datastore as declared (with their own
//! `status` addresses, which local pods never get), without netns or process.
//!
//! Addresses: pod index `i` (from 10) gets `198.18.0.0 + i` and `2001:2:: + i`, so
//! the first pod is 198.18.0.10 / `2001:2::a`; a pod keeps its address for life.
//! 198.18.255.0/24 stays free for the node's host interface and external clients.
//! Service `ClusterIPs` come from 198.19.0.0/16; `kube-dns` is 198.19.0.10.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::model::workload::{
    Container, ContainerPort, PodIp, PodSpec, PodStatus, ServicePort, ServiceSpec,
};
use crate::model::{Namespace, Object, ObjectId, ObjectMeta, Pod, Service, Source};

use super::paths::{LabName, NODE_NAME};
use super::state::{LabState, PodProgram, pod_key};

pub const FIRST_POD_INDEX: u32 = 10;
/// Last index below 198.18.255.0/24.
pub const LAST_POD_INDEX: u32 = 0xfeff;
pub const POD_NET_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
pub const POD_NET_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0);
pub const SERVICE_NET_V4: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 0);
pub const DNS_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 10);
pub const DNS_NAMESPACE: &str = "kube-system";
pub const DNS_SERVICE: &str = "kube-dns";
pub const DNS_POD: &str = "coredns-0";
pub const DNS_LABEL: (&str, &str) = ("k8s-app", "kube-dns");
pub const MAX_REPLICAS: u32 = 256;
/// Keeps `enf-<lab>-<namespace>.<pod>` within a file name.
pub const MAX_POD_NAME: usize = 150;

pub fn pod_v4(index: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(POD_NET_V4) + index)
}

pub fn pod_v6(index: u32) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(POD_NET_V6) + u128::from(index))
}

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("{origin}: {object}: {message}")]
    Invalid {
        origin: String,
        object: ObjectId,
        message: String,
    },
    #[error("no pod addresses left in 198.18.0.0/16 (below 198.18.255.0/24)")]
    PodAddressesExhausted,
    #[error("no Service addresses left in 198.19.0.0/16")]
    ServiceAddressesExhausted,
}

/// An object the user declared (or the lab added), with where it came from.
#[derive(Clone, Debug)]
pub struct Declared {
    pub object: Object,
    pub source: Option<Source>,
}

impl Declared {
    fn origin(&self) -> String {
        match &self.source {
            Some(s) => format!("{} document {}", s.file.display(), s.document),
            None => "lab datastore".to_owned(),
        }
    }

    fn invalid(&self, message: impl Into<String>) -> TopologyError {
        TopologyError::Invalid {
            origin: self.origin(),
            object: self.object.id(),
            message: message.into(),
        }
    }
}

/// A pod as the lab will run it.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedPod {
    /// The Pod object with `status` and `spec.nodeName` filled in.
    pub pod: Pod,
    pub owner: Option<String>,
    pub program: PodProgram,
    pub netns: String,
    pub host_iface: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
}

impl PlannedPod {
    pub fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
    }
    pub fn key(&self) -> String {
        pod_key(self.namespace(), &self.pod.metadata.name)
    }
}

/// The whole cluster as it should be.
#[derive(Clone, Debug)]
pub struct Topology {
    /// What the datastore should hold: declared objects (defaults filled in) plus the
    /// expanded Pods.
    pub objects: BTreeMap<ObjectId, Object>,
    pub pods: BTreeMap<String, PlannedPod>,
    /// Services with their `ClusterIP`.
    pub services: Vec<Service>,
    /// The state's next pod index after allocation.
    pub next_pod_index: u32,
}

fn is_namespaced(object: &Object) -> bool {
    matches!(
        object,
        Object::Pod(_)
            | Object::Deployment(_)
            | Object::Service(_)
            | Object::NetworkPolicy(_)
            | Object::CalicoNetworkPolicy(_)
            | Object::NetworkSet(_)
    )
}

fn meta_mut(object: &mut Object) -> &mut ObjectMeta {
    match object {
        Object::Namespace(o) => &mut o.metadata,
        Object::Pod(o) => &mut o.metadata,
        Object::Deployment(o) => &mut o.metadata,
        Object::Service(o) => &mut o.metadata,
        Object::NetworkPolicy(o) => &mut o.metadata,
        Object::CalicoNetworkPolicy(o) => &mut o.metadata,
        Object::GlobalNetworkPolicy(o) => &mut o.metadata,
        Object::Tier(o) => &mut o.metadata,
        Object::NetworkSet(o) => &mut o.metadata,
        Object::GlobalNetworkSet(o) => &mut o.metadata,
        Object::HostEndpoint(o) => &mut o.metadata,
    }
}

/// Fills in what the API server would: the `default` namespace for namespaced
/// objects, none for cluster-scoped ones.
pub fn normalize(mut object: Object) -> Object {
    let namespaced = is_namespaced(&object);
    let meta = meta_mut(&mut object);
    if namespaced {
        if meta.namespace.as_deref().is_none_or(str::is_empty) {
            meta.namespace = Some("default".to_owned());
        }
    } else {
        meta.namespace = None;
    }
    object
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.split('.').all(is_dns_label)
}

/// Checks one declared object before anything changes.
pub fn validate(d: &Declared) -> Result<(), TopologyError> {
    let meta = d.object.meta();
    if let Some(ns) = &meta.namespace
        && !is_dns_label(ns)
    {
        return Err(d.invalid(format!("namespace {ns:?} is not a DNS label")));
    }
    match &d.object {
        Object::Namespace(_) if !is_dns_label(&meta.name) => {
            Err(d.invalid("metadata.name must be a DNS label (lowercase letters, digits, '-')"))
        }
        Object::Pod(p) => {
            if !is_dns_subdomain(&meta.name, MAX_POD_NAME) {
                return Err(d.invalid(format!(
                    "metadata.name must be a DNS subdomain of at most {MAX_POD_NAME} characters"
                )));
            }
            validate_spec(d, &p.spec, "spec")
        }
        Object::Deployment(dep) => {
            let replicas = dep.spec.replicas.unwrap_or(1);
            if replicas > MAX_REPLICAS {
                return Err(d.invalid(format!(
                    "spec.replicas {replicas} is more than the lab runs ({MAX_REPLICAS})"
                )));
            }
            if !is_dns_label(&meta.name) || meta.name.len() + 4 > MAX_POD_NAME {
                return Err(d.invalid("metadata.name must be a DNS label"));
            }
            validate_spec(d, &dep.spec.template.spec, "spec.template.spec")
        }
        Object::Service(s) => validate_service(d, &s.spec),
        _ if meta.name.is_empty() => Err(d.invalid("metadata.name is missing")),
        _ => Ok(()),
    }
}

fn validate_spec(d: &Declared, spec: &PodSpec, at: &str) -> Result<(), TopologyError> {
    for (ci, c) in spec.containers.iter().enumerate() {
        for (pi, p) in c.ports.iter().enumerate() {
            let here = format!("{at}.containers[{ci}].ports[{pi}]");
            if p.container_port == 0 {
                return Err(d.invalid(format!("{here}.containerPort must be 1-65535")));
            }
            if !matches!(p.protocol(), "TCP" | "UDP" | "SCTP") {
                return Err(d.invalid(format!(
                    "{here}.protocol {:?} is not TCP, UDP or SCTP",
                    p.protocol()
                )));
            }
        }
    }
    Ok(())
}

fn validate_service(d: &Declared, spec: &ServiceSpec) -> Result<(), TopologyError> {
    if !is_dns_label(&d.object.meta().name) {
        return Err(d.invalid("metadata.name must be a DNS label"));
    }
    if let Some(ip) = &spec.cluster_ip
        && ip != "None"
        && ip.parse::<Ipv4Addr>().is_err()
    {
        return Err(d.invalid(format!(
            "spec.clusterIP {ip:?} is not an IPv4 address or \"None\""
        )));
    }
    for (i, p) in spec.ports.iter().enumerate() {
        if p.port == 0 {
            return Err(d.invalid(format!("spec.ports[{i}].port must be 1-65535")));
        }
        if !matches!(p.protocol(), "TCP" | "UDP" | "SCTP") {
            return Err(d.invalid(format!(
                "spec.ports[{i}].protocol {:?} is not TCP, UDP or SCTP",
                p.protocol()
            )));
        }
    }
    Ok(())
}

/// The text a responder answers with: http-echo's `-text` argument if the pod has
/// one, else the pod name.
pub fn responder_text(pod: &Pod) -> String {
    for c in &pod.spec.containers {
        let args: Vec<&String> = c.command.iter().chain(&c.args).collect();
        for (i, arg) in args.iter().enumerate() {
            for flag in ["-text", "--text"] {
                if let Some(v) = arg.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
                    return v.to_owned();
                }
                if arg.as_str() == flag
                    && let Some(v) = args.get(i + 1)
                {
                    return (*v).clone();
                }
            }
        }
    }
    pod.metadata.name.clone()
}

/// Declared container ports, deduplicated and sorted.
pub fn declared_ports(pod: &Pod) -> Vec<u16> {
    let set: BTreeSet<u16> = pod
        .spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().map(|p| p.container_port))
        .collect();
    set.into_iter().collect()
}

/// A pod declared on another node than the lab's (`spec.nodeName`): a remote pod.
pub fn is_remote(pod: &Pod) -> bool {
    pod.spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != NODE_NAME)
}

pub fn is_dns_pod(pod: &Pod) -> bool {
    pod.metadata.namespace.as_deref() == Some(DNS_NAMESPACE)
        && pod.metadata.labels.get(DNS_LABEL.0).map(String::as_str) == Some(DNS_LABEL.1)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn dns_pod() -> Pod {
    let port = |name: &str, protocol: &str| ContainerPort {
        name: Some(name.to_owned()),
        container_port: 53,
        protocol: Some(protocol.to_owned()),
    };
    Pod {
        metadata: ObjectMeta {
            name: DNS_POD.to_owned(),
            namespace: Some(DNS_NAMESPACE.to_owned()),
            labels: labels(&[DNS_LABEL]),
            ..ObjectMeta::default()
        },
        spec: PodSpec {
            containers: vec![Container {
                name: "coredns".to_owned(),
                image: Some("enforcer-lab-dns".to_owned()),
                ports: vec![port("dns", "UDP"), port("dns-tcp", "TCP")],
                ..Container::default()
            }],
            ..PodSpec::default()
        },
        status: None,
    }
}

fn dns_service() -> Service {
    let port = |name: &str, protocol: &str| ServicePort {
        name: Some(name.to_owned()),
        protocol: Some(protocol.to_owned()),
        port: 53,
        target_port: None,
        node_port: None,
    };
    Service {
        metadata: ObjectMeta {
            name: DNS_SERVICE.to_owned(),
            namespace: Some(DNS_NAMESPACE.to_owned()),
            labels: labels(&[DNS_LABEL]),
            ..ObjectMeta::default()
        },
        spec: ServiceSpec {
            selector: labels(&[DNS_LABEL]),
            ports: vec![port("dns", "UDP"), port("dns-tcp", "TCP")],
            service_type: None,
            cluster_ip: Some(DNS_SERVICE_IP.to_string()),
        },
    }
}

/// Adds what every cluster has unless declared: the `default` and `kube-system`
/// Namespaces, a Namespace for every namespace objects use, the DNS pod and the
/// `kube-dns` Service.
pub fn add_implied(declared: &mut BTreeMap<ObjectId, Declared>) {
    let add = |declared: &mut BTreeMap<ObjectId, Declared>, object: Object| {
        declared.entry(object.id()).or_insert(Declared {
            object,
            source: None,
        });
    };
    let has_dns_pod = declared.values().any(|d| match &d.object {
        Object::Pod(p) => is_dns_pod(p),
        Object::Deployment(dep) => dep.pods().iter().any(is_dns_pod),
        _ => false,
    });
    if !has_dns_pod {
        add(declared, Object::Pod(dns_pod()));
    }
    add(declared, Object::Service(dns_service()));
    let mut namespaces: BTreeSet<String> = ["default", DNS_NAMESPACE]
        .into_iter()
        .map(str::to_owned)
        .collect();
    namespaces.extend(
        declared
            .values()
            .filter_map(|d| d.object.meta().namespace.clone()),
    );
    for name in namespaces {
        add(
            declared,
            Object::Namespace(Namespace {
                metadata: ObjectMeta {
                    name,
                    ..ObjectMeta::default()
                },
            }),
        );
    }
}

/// Builds the topology. `declared` must already be normalized and complete
/// ([`add_implied`]); `previous` is what the datastore held (for `ClusterIPs` to keep).
pub fn build(
    lab: &LabName,
    declared: &BTreeMap<ObjectId, Declared>,
    previous: &BTreeMap<ObjectId, Object>,
    state: &LabState,
) -> Result<Topology, TopologyError> {
    for d in declared.values() {
        validate(d)?;
    }
    let mut objects = BTreeMap::new();
    let mut pods = BTreeMap::new();
    let mut planned: Vec<(Pod, Option<String>, &Declared)> = Vec::new();
    // Pods of another node stand for remote pods: stored as declared (their own
    // addresses in `status`), no netns, no process.
    let mut remote: Vec<&Pod> = Vec::new();
    for d in declared.values() {
        match &d.object {
            Object::Pod(p) if is_remote(p) => remote.push(p),
            Object::Pod(p) => planned.push((p.clone(), None, d)),
            Object::Deployment(dep) => {
                for p in dep.pods() {
                    planned.push((p, Some(dep.metadata.name.clone()), d));
                }
            }
            _ => {}
        }
    }
    // Addresses: keep every existing pod's, then allocate in declaration order.
    let mut used: BTreeSet<Ipv4Addr> = remote
        .iter()
        .flat_map(|p| p.ips())
        .filter_map(|ip| match ip {
            std::net::IpAddr::V4(v4) => Some(v4),
            std::net::IpAddr::V6(_) => None,
        })
        .collect();
    for (pod, _, _) in &planned {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        if let Some(rec) = state.pods.get(&pod_key(ns, &pod.metadata.name)) {
            used.insert(rec.ipv4);
        }
    }
    let mut next = state.next_pod_index;
    let mut allocate = || -> Result<(Ipv4Addr, Ipv6Addr), TopologyError> {
        let span = LAST_POD_INDEX - FIRST_POD_INDEX + 1;
        for _ in 0..span {
            let index = if (FIRST_POD_INDEX..=LAST_POD_INDEX).contains(&next) {
                next
            } else {
                FIRST_POD_INDEX
            };
            next = index + 1;
            let v4 = pod_v4(index);
            if used.insert(v4) {
                return Ok((v4, pod_v6(index)));
            }
        }
        Err(TopologyError::PodAddressesExhausted)
    };
    for (mut pod, owner, d) in planned {
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let name = pod.metadata.name.clone();
        let key = pod_key(&ns, &name);
        if pods.contains_key(&key) {
            return Err(d.invalid(format!(
                "pod {key} is declared twice (a Pod and a Deployment replica?)"
            )));
        }
        let (ipv4, ipv6) = match state.pods.get(&key) {
            Some(rec) => (rec.ipv4, rec.ipv6),
            None => allocate()?,
        };
        pod.spec.node_name = Some(NODE_NAME.to_owned());
        pod.status = Some(PodStatus {
            pod_ip: Some(ipv4.to_string()),
            pod_ips: vec![
                PodIp {
                    ip: ipv4.to_string(),
                },
                PodIp {
                    ip: ipv6.to_string(),
                },
            ],
        });
        let program = if is_dns_pod(&pod) {
            PodProgram::Dns {
                ports: declared_ports(&pod),
            }
        } else {
            PodProgram::Responder {
                text: responder_text(&pod),
                ports: declared_ports(&pod),
            }
        };
        let planned = PlannedPod {
            netns: lab.pod_netns(&ns, &name),
            host_iface: pod.host_iface(),
            pod,
            owner,
            program,
            ipv4,
            ipv6,
        };
        objects.insert(
            Object::Pod(planned.pod.clone()).id(),
            Object::Pod(planned.pod.clone()),
        );
        pods.insert(key, planned);
    }
    for pod in remote {
        let object = Object::Pod(pod.clone());
        objects.insert(object.id(), object);
    }
    // Services: declared ClusterIP, else the one the Service already had, else a new one.
    let mut services = Vec::new();
    let mut taken: BTreeMap<Ipv4Addr, ObjectId> = BTreeMap::new();
    let mut unassigned = Vec::new();
    for d in declared.values() {
        let Object::Service(svc) = &d.object else {
            continue;
        };
        let mut svc = svc.clone();
        if svc.spec.cluster_ip.is_none()
            && let Some(Object::Service(old)) = previous.get(&d.object.id())
        {
            svc.spec.cluster_ip.clone_from(&old.spec.cluster_ip);
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
    let mut candidate = u32::from(DNS_SERVICE_IP) + 1;
    for mut svc in unassigned {
        loop {
            let ip = Ipv4Addr::from(candidate);
            if u32::from(ip) >> 16 != u32::from(SERVICE_NET_V4) >> 16 {
                return Err(TopologyError::ServiceAddressesExhausted);
            }
            candidate += 1;
            if !taken.contains_key(&ip) && ip != DNS_SERVICE_IP {
                svc.spec.cluster_ip = Some(ip.to_string());
                taken.insert(ip, Object::Service(svc.clone()).id());
                break;
            }
        }
        services.push(svc);
    }
    for svc in &services {
        let object = Object::Service(svc.clone());
        objects.insert(object.id(), object);
    }
    for d in declared.values() {
        if !matches!(d.object, Object::Pod(_) | Object::Service(_)) {
            objects.insert(d.object.id(), d.object.clone());
        }
    }
    Ok(Topology {
        objects,
        pods,
        services,
        next_pod_index: next,
    })
}

#[cfg(test)]
#[expect(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    const TUTORIAL: &str =
        include_str!("../../../tests/fixtures/tutorial/dev-app-deployments.yaml");

    fn declared_from(text: &str) -> BTreeMap<ObjectId, Declared> {
        let loaded = crate::model::load_str(std::path::Path::new("t.yaml"), text).unwrap();
        let mut declared: BTreeMap<ObjectId, Declared> = loaded
            .into_iter()
            .map(|l| {
                let object = normalize(l.object);
                (
                    object.id(),
                    Declared {
                        object,
                        source: Some(l.source),
                    },
                )
            })
            .collect();
        add_implied(&mut declared);
        declared
    }

    #[test]
    fn tutorial_topology() {
        let lab = LabName::new("t").unwrap();
        let state = LabState::new("t", PathBuf::from("/x"), false);
        let declared = declared_from(TUTORIAL);
        assert!(declared.contains_key(&ObjectId {
            kind: "Namespace".into(),
            namespace: String::new(),
            name: "dev-app".into()
        }));
        let topo = build(&lab, &declared, &BTreeMap::new(), &state).unwrap();
        let names: Vec<&str> = topo.pods.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "dev-app/backend-0",
                "dev-app/backend-1",
                "dev-app/database-0",
                "dev-app/frontend-0",
                "dev-app/frontend-1",
                "kube-system/coredns-0"
            ]
        );
        let backend = &topo.pods["dev-app/backend-0"];
        assert_eq!(
            backend.program,
            PodProgram::Responder {
                text: "Hello from Backend!".into(),
                ports: vec![8080]
            }
        );
        assert_eq!(backend.pod.metadata.labels["tier"], "api");
        assert_eq!(backend.pod.spec.node_name.as_deref(), Some("node1"));
        let mut ips: Vec<Ipv4Addr> = topo.pods.values().map(|p| p.ipv4).collect();
        ips.sort();
        assert_eq!(ips[0], Ipv4Addr::new(198, 18, 0, 10));
        assert_eq!(
            topo.pods["kube-system/coredns-0"].program,
            PodProgram::Dns { ports: vec![53] }
        );
        let dns = topo
            .services
            .iter()
            .find(|s| s.metadata.name == "kube-dns")
            .unwrap();
        assert_eq!(dns.spec.cluster_ip.as_deref(), Some("198.19.0.10"));
        let backend_svc = topo
            .services
            .iter()
            .find(|s| s.metadata.name == "backend")
            .unwrap();
        assert!(
            backend_svc
                .spec
                .cluster_ip
                .as_deref()
                .unwrap()
                .starts_with("198.19.0.")
        );
        assert_eq!(pod_v6(10), "2001:2::a".parse::<Ipv6Addr>().unwrap());
    }

    #[test]
    fn pods_of_other_nodes_are_stored_but_not_run() {
        let lab = LabName::new("t").unwrap();
        let state = LabState::new("t", PathBuf::from("/x"), false);
        let declared = declared_from(concat!(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: far, namespace: a}\n",
            "spec: {nodeName: node2, containers: [{name: c}]}\n",
            "status: {podIP: 198.18.0.10, podIPs: [{ip: 198.18.0.10}]}\n",
            "---\napiVersion: v1\nkind: Pod\nmetadata: {name: near, namespace: a}\n",
            "spec: {containers: [{name: c}]}\n",
        ));
        let topo = build(&lab, &declared, &BTreeMap::new(), &state).unwrap();
        assert!(!topo.pods.contains_key("a/far"));
        // The local pod does not get the remote pod's address.
        assert_ne!(topo.pods["a/near"].ipv4, Ipv4Addr::new(198, 18, 0, 10));
        let far = topo
            .objects
            .values()
            .find_map(|o| match o {
                Object::Pod(p) if p.metadata.name == "far" => Some(p),
                _ => None,
            })
            .unwrap();
        assert_eq!(far.spec.node_name.as_deref(), Some("node2"));
        assert_eq!(
            far.ips(),
            vec!["198.18.0.10".parse::<std::net::IpAddr>().unwrap()]
        );
    }

    #[test]
    fn bad_input_names_the_object() {
        let lab = LabName::new("t").unwrap();
        let state = LabState::new("t", PathBuf::from("/x"), false);
        let declared = declared_from(
            "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec: {clusterIP: nope}\n",
        );
        let err = build(&lab, &declared, &BTreeMap::new(), &state)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t.yaml document 0") && err.contains("Service a/s"),
            "{err}"
        );
    }
}
