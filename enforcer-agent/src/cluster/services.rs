//! Services resolved to their backends, as the endpoints controller and kube-proxy
//! see them: for every port of every Service with an IPv4 `ClusterIP`, the selected
//! pods' addresses and the container port the Service port targets on each.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::model::Service;
use crate::model::workload::IntOrString;

use super::plan::PlannedPod;

/// One Service port with its backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceBackends {
    pub namespace: String,
    pub service: String,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    /// Backend address and target port, sorted.
    pub endpoints: Vec<(Ipv4Addr, u16)>,
    /// `type: NodePort`: the node port, translated on the node's address like the
    /// `ClusterIP`.
    pub node_port: Option<u16>,
}

/// The container port a Service port targets on one pod, if the pod has it.
fn target_port(
    pod: &PlannedPod,
    target: Option<&IntOrString>,
    port: u16,
    protocol: &str,
) -> Option<u16> {
    match target {
        None => Some(port),
        Some(IntOrString::Int(n)) => u16::try_from(*n).ok().filter(|n| *n != 0),
        Some(IntOrString::String(name)) => pod
            .pod
            .spec
            .containers
            .iter()
            .flat_map(|c| &c.ports)
            .find(|p| p.name.as_deref() == Some(name.as_str()) && p.protocol() == protocol)
            .map(|p| p.container_port),
    }
}

/// Backends of every `ClusterIP` Service port (headless Services and SCTP have none).
pub fn backends(services: &[Service], pods: &BTreeMap<String, PlannedPod>) -> Vec<ServiceBackends> {
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
        let selected: Vec<&PlannedPod> = if svc.spec.selector.is_empty() {
            Vec::new() // like Kubernetes: no selector, no automatic endpoints
        } else {
            pods.values()
                .filter(|p| p.namespace() == namespace)
                .filter(|p| {
                    svc.spec
                        .selector
                        .iter()
                        .all(|(k, v)| p.pod.metadata.labels.get(k) == Some(v))
                })
                .collect()
        };
        for port in &svc.spec.ports {
            let protocol = match port.protocol() {
                "TCP" => "tcp",
                "UDP" => "udp",
                _ => continue,
            };
            let mut endpoints: Vec<(Ipv4Addr, u16)> = selected
                .iter()
                .filter_map(|p| {
                    target_port(p, port.target_port.as_ref(), port.port, port.protocol())
                        .map(|t| (p.ipv4, t))
                })
                .collect();
            endpoints.sort_unstable();
            out.push(ServiceBackends {
                namespace: namespace.clone(),
                service: svc.metadata.name.clone(),
                cluster_ip,
                port: port.port,
                protocol,
                endpoints,
                node_port: port
                    .node_port
                    .filter(|_| svc.spec.service_type.as_deref() == Some("NodePort")),
            });
        }
    }
    out
}
