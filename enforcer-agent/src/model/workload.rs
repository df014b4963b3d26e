//! Workload objects the lab and the agent read: Namespace, Pod, Deployment, Service.
//!
//! Only the fields enforcer uses are modelled; unknown fields are ignored here (the
//! policy kinds, which users get wrong more often, are strict).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Labels or annotations.
pub type Labels = BTreeMap<String, String>;

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub annotations: Labels,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Namespace {
    #[serde(default)]
    pub metadata: ObjectMeta,
}

impl Namespace {
    /// Labels as the API server stores them: with `kubernetes.io/metadata.name`.
    pub fn effective_labels(&self) -> Labels {
        let mut labels = self.metadata.labels.clone();
        labels.insert(
            "kubernetes.io/metadata.name".to_owned(),
            self.metadata.name.clone(),
        );
        labels
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PodSpec,
    /// Written by the lab (as the kubelet would): the pod's addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PodStatus>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default)]
    pub containers: Vec<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The pod runs in the node's network namespace: its addresses are the node's,
    /// so it is no workload endpoint (Calico's `IsReadyCalicoPod`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_network: bool,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub container_port: u16,
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// The node port the CNI's portmap plugin forwards to this container port (a
    /// Service front-end on the node's addresses: egress towards it is judged after
    /// the translation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    /// The node address `hostPort` is bound on (default: all of them).
    #[serde(default, rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}

impl ContainerPort {
    /// The protocol with the API default applied.
    pub fn protocol(&self) -> &str {
        self.protocol.as_deref().unwrap_or("TCP")
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    /// Kubernetes spells it `podIP` (camelCase would give `podIp`).
    #[serde(
        default,
        rename = "podIP",
        alias = "podIp",
        skip_serializing_if = "Option::is_none"
    )]
    pub pod_ip: Option<String>,
    #[serde(
        default,
        rename = "podIPs",
        alias = "podIps",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub pod_ips: Vec<PodIp>,
    /// `Pending`, `Running`, `Succeeded`, `Failed` or `Unknown`. A pod that
    /// terminated (`Succeeded`, `Failed`) has released its address, which a new pod
    /// may get: it is no workload endpoint any more (Calico's `IsFinished`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct PodIp {
    pub ip: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: DeploymentSpec,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    /// API default: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    #[serde(default)]
    pub template: PodTemplate,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplate {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PodSpec,
}

impl Deployment {
    /// The pods this Deployment (or `StatefulSet`, which has the same shape here) stands
    /// for, named `<deployment>-<i>` (a `StatefulSet`'s pods have exactly these names).
    pub fn pods(&self) -> Vec<Pod> {
        let replicas = self.spec.replicas.unwrap_or(1);
        (0..replicas)
            .map(|i| {
                let mut metadata = self.spec.template.metadata.clone();
                metadata.name = format!("{}-{i}", self.metadata.name);
                metadata.namespace.clone_from(&self.metadata.namespace);
                Pod {
                    metadata,
                    spec: self.spec.template.spec.clone(),
                    status: None,
                }
            })
            .collect()
    }
}

/// A `DaemonSet`: one pod per node.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DaemonSet {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: DaemonSetSpec,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DaemonSetSpec {
    #[serde(default)]
    pub template: PodTemplate,
}

impl DaemonSet {
    /// The pods this `DaemonSet` stands for on `nodes`: `<daemonset>-<node>`, each bound
    /// to its node (`spec.nodeName`), as the `DaemonSet` controller binds them.
    pub fn pods<'a>(&self, nodes: impl IntoIterator<Item = &'a str>) -> Vec<Pod> {
        nodes
            .into_iter()
            .map(|node| {
                let mut metadata = self.spec.template.metadata.clone();
                metadata.name = format!("{}-{node}", self.metadata.name);
                metadata.namespace.clone_from(&self.metadata.namespace);
                let mut spec = self.spec.template.spec.clone();
                spec.node_name = Some(node.to_owned());
                Pod {
                    metadata,
                    spec,
                    status: None,
                }
            })
            .collect()
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ServiceSpec,
    /// Written by a load balancer controller: the addresses it routes to the Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ServiceStatus>,
}

impl Service {
    /// The addresses outside clients reach it on besides its `ClusterIPs`: `externalIPs`
    /// and the load balancer's ingress IPs, as written (unparsed).
    pub fn external_addresses(&self) -> impl Iterator<Item = &String> {
        let load_balancer = self
            .status
            .iter()
            .filter_map(|s| s.load_balancer.as_ref())
            .flat_map(|lb| &lb.ingress)
            .filter_map(|i| i.ip.as_ref());
        self.spec.external_ips.iter().chain(load_balancer)
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerStatus>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<LoadBalancerIngress>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerIngress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(default)]
    pub selector: Labels,
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// `ClusterIP` (default) or `NodePort`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,
    /// Assigned by the lab when absent.
    #[serde(default, rename = "clusterIP", skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<String>,
    /// Every cluster IP of the Service (a dual-stack Service has one per family; the
    /// first is `clusterIP`).
    #[serde(default, rename = "clusterIPs", skip_serializing_if = "Vec::is_empty")]
    pub cluster_ips: Vec<String>,
    /// `SingleStack` (the API server's default), `PreferDualStack` or
    /// `RequireDualStack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_family_policy: Option<String>,
    /// `IPv4` and/or `IPv6`, the primary (the `clusterIP`'s) first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_families: Vec<String>,
    /// Addresses outside the cluster's ranges that kube-proxy also translates to the
    /// Service's backends.
    #[serde(default, rename = "externalIPs", skip_serializing_if = "Vec::is_empty")]
    pub external_ips: Vec<String>,
    /// `Cluster` (default: any node forwards to any backend, SNAT when the backend is
    /// on another node) or `Local` (a node forwards only to its own backends, keeping
    /// the client's address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<String>,
}

impl ServiceSpec {
    /// `externalTrafficPolicy: Local`.
    pub fn external_traffic_local(&self) -> bool {
        self.external_traffic_policy.as_deref() == Some("Local")
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    pub port: u16,
    /// A number or a container port name; defaults to `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
}

impl ServicePort {
    pub fn protocol(&self) -> &str {
        self.protocol.as_deref().unwrap_or("TCP")
    }
}

/// Kubernetes `IntOrString`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(untagged)]
pub enum IntOrString {
    Int(u32),
    String(String),
}

impl Pod {
    /// Host-side interface name of the pod's veth, as Calico names it:
    /// `cali` + the first 11 hex digits of SHA-1(`<namespace>.<name>`).
    pub fn host_iface(&self) -> String {
        host_iface_name(
            self.metadata.namespace.as_deref().unwrap_or("default"),
            &self.metadata.name,
        )
    }

    /// Whether the pod has terminated (`status.phase` `Succeeded` or `Failed`).
    pub fn is_finished(&self) -> bool {
        self.status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|phase| phase == "Succeeded" || phase == "Failed")
    }

    /// The pod's addresses from `status.podIPs` (or `status.podIP`), unparsed ones skipped.
    pub fn ips(&self) -> Vec<std::net::IpAddr> {
        let Some(status) = &self.status else {
            return Vec::new();
        };
        let mut ips: Vec<std::net::IpAddr> = status
            .pod_ips
            .iter()
            .filter_map(|p| p.ip.parse().ok())
            .collect();
        if ips.is_empty() {
            ips.extend(
                status
                    .pod_ip
                    .as_deref()
                    .and_then(|ip| ip.parse::<std::net::IpAddr>().ok()),
            );
        }
        ips
    }
}

/// Calico's interface name for a workload: `cali` + 11 hex digits of SHA-1("ns.name").
pub fn host_iface_name(namespace: &str, name: &str) -> String {
    let digest = sha1_smol::Sha1::from(format!("{namespace}.{name}"))
        .digest()
        .to_string();
    format!("cali{}", &digest[..11])
}
