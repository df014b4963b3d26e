//! Services resolved to their backends, as the endpoints controllers and kube-proxy
//! see them ([`crate::model::endpoints`]): for every port of every Service and each of
//! its cluster IPs (one per family), the backends of that family — the selected pods
//! running on a node of the plan with the container port the Service port targets, or
//! the addresses a selector-less Service's `EndpointSlices` and `Endpoints` name — with
//! the node each runs on when known, and the Service's other front-ends of that family
//! (`externalIPs`, `status.loadBalancer.ingress[].ip`), which kube-proxy translates to
//! the same backends.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::model::endpoints::{EndpointSources, service_endpoints};
use crate::model::workload::{PodIp, PodStatus};
use crate::model::{EndpointSlice, Endpoints, Object, ObjectId, Pod, Service};

use super::plan::PlannedPod;

/// One backend of a Service port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Backend {
    pub ip: IpAddr,
    /// The port after DNAT.
    pub port: u16,
    /// The node it runs on, when known (`externalTrafficPolicy: Local` needs it).
    pub node: Option<String>,
}

/// One Service port with its backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceBackends {
    pub namespace: String,
    pub service: String,
    /// One cluster IP; the endpoints and external addresses are of its family.
    pub cluster_ip: IpAddr,
    /// `externalIPs` and load balancer ingress addresses of the family, translated on
    /// `port` like `NodePorts` (following `externalTrafficPolicy`).
    pub external_ips: Vec<IpAddr>,
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    /// Sorted.
    pub endpoints: Vec<Backend>,
    /// `type: NodePort`: the node port, translated on each node's address.
    pub node_port: Option<u16>,
    /// `externalTrafficPolicy: Local`.
    pub external_local: bool,
}

/// Backends of every `ClusterIP` Service port (headless Services and SCTP have none).
/// `objects` are the cluster's objects (for `EndpointSlices` and `Endpoints`).
pub fn backends(
    services: &[Service],
    pods: &BTreeMap<String, PlannedPod>,
    objects: &BTreeMap<ObjectId, Object>,
) -> Vec<ServiceBackends> {
    // The pods with the addresses the plan gave them.
    let running: Vec<Pod> = pods
        .values()
        .map(|p| {
            let mut pod = p.pod.clone();
            if pod.ips().is_empty() {
                pod.status = Some(PodStatus {
                    phase: None,
                    pod_ip: Some(p.ipv4.to_string()),
                    pod_ips: [p.ipv4.to_string(), p.ipv6.to_string()]
                        .into_iter()
                        .map(|ip| PodIp { ip })
                        .collect(),
                });
            }
            pod
        })
        .collect();
    let running: Vec<&Pod> = running.iter().collect();
    let slices: Vec<&EndpointSlice> = objects
        .values()
        .filter_map(|o| match o {
            Object::EndpointSlice(s) => Some(s),
            _ => None,
        })
        .collect();
    let endpoints: Vec<&Endpoints> = objects
        .values()
        .filter_map(|o| match o {
            Object::Endpoints(e) => Some(e),
            _ => None,
        })
        .collect();
    let sources = EndpointSources {
        pods: &running,
        slices: &slices,
        endpoints: &endpoints,
    };
    let mut out = Vec::new();
    for svc in services {
        let cluster_ips: Vec<IpAddr> = if svc.spec.cluster_ips.is_empty() {
            svc.spec.cluster_ip.iter().collect::<Vec<_>>()
        } else {
            svc.spec.cluster_ips.iter().collect()
        }
        .into_iter()
        .filter_map(|ip| ip.parse().ok())
        .collect();
        if cluster_ips.is_empty() {
            continue;
        }
        let mut external: Vec<IpAddr> = svc
            .external_addresses()
            .filter_map(|ip| ip.parse().ok())
            .collect();
        external.sort_unstable();
        external.dedup();
        let namespace = svc.metadata.namespace.clone().unwrap_or_default();
        let resolved_ports = service_endpoints(svc, &sources);
        for cluster_ip in cluster_ips {
            let same_family = |ip: &IpAddr| ip.is_ipv4() == cluster_ip.is_ipv4();
            for resolved in &resolved_ports {
                let protocol = match resolved.port.protocol() {
                    "TCP" => "tcp",
                    "UDP" => "udp",
                    _ => continue,
                };
                let endpoints: Vec<Backend> = resolved
                    .endpoints
                    .iter()
                    .filter(|e| same_family(&e.ip))
                    .map(|e| Backend {
                        ip: e.ip,
                        port: e.port,
                        node: e.node.clone(),
                    })
                    .collect();
                out.push(ServiceBackends {
                    namespace: namespace.clone(),
                    service: svc.metadata.name.clone(),
                    cluster_ip,
                    external_ips: external.iter().copied().filter(same_family).collect(),
                    port: resolved.port.port,
                    protocol,
                    endpoints,
                    node_port: resolved
                        .port
                        .node_port
                        .filter(|_| svc.spec.service_type.as_deref() == Some("NodePort")),
                    external_local: svc.spec.external_traffic_local(),
                });
            }
        }
    }
    out
}
