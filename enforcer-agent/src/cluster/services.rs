//! Services resolved to their backends, as the endpoints controllers and kube-proxy
//! see them ([`crate::model::endpoints`]): for every port of every Service with an
//! IPv4 `ClusterIP`, the IPv4 backends — the selected pods running on a node of the
//! plan with the container port the Service port targets, or the addresses a
//! selector-less Service's `EndpointSlices` and `Endpoints` name — with the node each
//! runs on when known.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::model::endpoints::{EndpointSources, service_endpoints};
use crate::model::workload::{PodIp, PodStatus};
use crate::model::{EndpointSlice, Endpoints, Object, ObjectId, Pod, Service};

use super::plan::PlannedPod;

/// One backend of a Service port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Backend {
    pub ip: Ipv4Addr,
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
    pub cluster_ip: Ipv4Addr,
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
        let Some(cluster_ip) = svc
            .spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse().ok())
        else {
            continue;
        };
        let namespace = svc.metadata.namespace.clone().unwrap_or_default();
        for resolved in service_endpoints(svc, &sources) {
            let protocol = match resolved.port.protocol() {
                "TCP" => "tcp",
                "UDP" => "udp",
                _ => continue,
            };
            let endpoints: Vec<Backend> = resolved
                .endpoints
                .into_iter()
                .filter_map(|e| match e.ip {
                    IpAddr::V4(ip) => Some(Backend {
                        ip,
                        port: e.port,
                        node: e.node,
                    }),
                    IpAddr::V6(_) => None,
                })
                .collect();
            out.push(ServiceBackends {
                namespace: namespace.clone(),
                service: svc.metadata.name.clone(),
                cluster_ip,
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
    out
}
