//! Where a Service sends its traffic: `discovery.k8s.io/v1` `EndpointSlice` and core
//! `v1` `Endpoints` objects, and [`service_endpoints`], which resolves a Service to its
//! backends as the endpoints controllers and kube-proxy do.
//!
//! A Service with a selector gets its backends from the pods it selects (the
//! `EndpointSlice` controller's job: same namespace, labels match, the pod has an
//! address and has not finished; the target port resolved by number or by container
//! port name on each pod). A Service without a selector gets them from the objects its
//! owner wrote: `EndpointSlices` labelled `kubernetes.io/service-name: <service>` and
//! the `Endpoints` object of the same name, whose addresses may be anything (an
//! address outside the cluster, another node's pod, a node). A slice endpoint whose
//! `conditions.ready` is absent counts as ready, as the API documents.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::workload::{IntOrString, ObjectMeta, Pod, Service, ServicePort};

/// The label tying an `EndpointSlice` to its Service.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSlice {
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `IPv4`, `IPv6` or `FQDN` (FQDN endpoints are not routed anywhere: ignored).
    #[serde(default)]
    pub address_type: String,
    #[serde(default)]
    pub endpoints: Vec<SliceEndpoint>,
    #[serde(default)]
    pub ports: Vec<EndpointPort>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SliceEndpoint {
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub conditions: EndpointConditions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointConditions {
    /// Absent: ready (the API's "unknown state should be interpreted as ready").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
}

/// A port of an `EndpointSlice` or an `Endpoints` subset; its name is the Service
/// port's name it serves.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

impl EndpointPort {
    pub fn protocol(&self) -> &str {
        self.protocol.as_deref().unwrap_or("TCP")
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub subsets: Vec<EndpointSubset>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSubset {
    #[serde(default)]
    pub addresses: Vec<EndpointAddress>,
    /// Not used by kube-proxy: listed so that the objects read back whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ready_addresses: Vec<EndpointAddress>,
    #[serde(default)]
    pub ports: Vec<EndpointPort>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointAddress {
    pub ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
}

/// One backend of one Service port, as kube-proxy programs it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceEndpoint {
    pub ip: IpAddr,
    /// The port the backend listens on (after DNAT).
    pub port: u16,
    /// The node it runs on, when known (`externalTrafficPolicy: Local` needs it).
    pub node: Option<String>,
}

/// A Service port with its backends (sorted, without duplicates).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortEndpoints {
    pub port: ServicePort,
    pub endpoints: Vec<ServiceEndpoint>,
}

/// What a Service's backends can come from.
#[derive(Clone, Copy, Debug, Default)]
pub struct EndpointSources<'a> {
    /// Pods of the cluster (a selector picks among them).
    pub pods: &'a [&'a Pod],
    /// Every `EndpointSlice` (those of the Service are picked by label).
    pub slices: &'a [&'a EndpointSlice],
    /// Every `Endpoints` object (the Service's is picked by name).
    pub endpoints: &'a [&'a Endpoints],
}

fn namespace_of(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

/// The backends of every port of `svc` (see the module doc for where they come from).
pub fn service_endpoints(svc: &Service, sources: &EndpointSources<'_>) -> Vec<PortEndpoints> {
    svc.spec
        .ports
        .iter()
        .map(|port| {
            let mut endpoints: Vec<ServiceEndpoint> = if svc.spec.selector.is_empty() {
                written_endpoints(svc, port, sources)
            } else {
                selected_endpoints(svc, port, sources.pods)
            };
            endpoints.sort();
            endpoints.dedup();
            PortEndpoints {
                port: port.clone(),
                endpoints,
            }
        })
        .collect()
}

/// Whether `pod` is one of the Service's backends by selector.
pub fn selects(svc: &Service, pod: &Pod) -> bool {
    !svc.spec.selector.is_empty()
        && namespace_of(&pod.metadata) == namespace_of(&svc.metadata)
        && svc
            .spec
            .selector
            .iter()
            .all(|(k, v)| pod.metadata.labels.get(k) == Some(v))
}

/// The endpoints controller's answer: selected running pods with the target port.
fn selected_endpoints(svc: &Service, port: &ServicePort, pods: &[&Pod]) -> Vec<ServiceEndpoint> {
    pods.iter()
        .filter(|p| selects(svc, p) && !p.is_finished())
        .filter_map(|p| {
            let target = target_port(p, port)?;
            Some(p.ips().into_iter().map(move |ip| ServiceEndpoint {
                ip,
                port: target,
                node: p.spec.node_name.clone(),
            }))
        })
        .flatten()
        .collect()
}

/// The container port a Service port targets on `pod`, if it has it.
pub fn target_port(pod: &Pod, port: &ServicePort) -> Option<u16> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => u16::try_from(*n).ok().filter(|n| *n != 0),
        Some(IntOrString::String(name)) => pod
            .spec
            .containers
            .iter()
            .flat_map(|c| &c.ports)
            .find(|p| p.name.as_deref() == Some(name.as_str()) && p.protocol() == port.protocol())
            .map(|p| p.container_port),
    }
}

/// Whether an endpoint port serves `port` (same name, `""` for an unnamed one, same
/// protocol), and on which number.
fn serving_port(ports: &[EndpointPort], port: &ServicePort) -> Option<u16> {
    let name = port.name.as_deref().unwrap_or_default();
    ports
        .iter()
        .find(|p| p.name.as_deref().unwrap_or_default() == name && p.protocol() == port.protocol())
        .and_then(|p| p.port)
        .filter(|p| *p != 0)
}

/// Endpoints a selector-less Service's owner wrote: its slices and its `Endpoints`.
fn written_endpoints(
    svc: &Service,
    port: &ServicePort,
    sources: &EndpointSources<'_>,
) -> Vec<ServiceEndpoint> {
    let ns = namespace_of(&svc.metadata);
    let name = svc.metadata.name.as_str();
    let mut out: BTreeSet<ServiceEndpoint> = BTreeSet::new();
    for slice in sources.slices.iter().filter(|s| {
        namespace_of(&s.metadata) == ns
            && s.metadata
                .labels
                .get(LABEL_SERVICE_NAME)
                .map(String::as_str)
                == Some(name)
            && s.address_type != "FQDN"
    }) {
        let Some(target) = serving_port(&slice.ports, port) else {
            continue;
        };
        for ep in slice
            .endpoints
            .iter()
            .filter(|e| e.conditions.ready != Some(false))
        {
            out.extend(
                ep.addresses
                    .iter()
                    .filter_map(|a| a.parse::<IpAddr>().ok())
                    .map(|ip| ServiceEndpoint {
                        ip,
                        port: target,
                        node: ep.node_name.clone(),
                    }),
            );
        }
    }
    for eps in sources
        .endpoints
        .iter()
        .filter(|e| namespace_of(&e.metadata) == ns && e.metadata.name == name)
    {
        for subset in &eps.subsets {
            let Some(target) = serving_port(&subset.ports, port) else {
                continue;
            };
            out.extend(subset.addresses.iter().filter_map(|a| {
                Some(ServiceEndpoint {
                    ip: a.ip.parse().ok()?,
                    port: target,
                    node: a.node_name.clone(),
                })
            }));
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
#[expect(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::model::{Object, load_str};

    fn load(text: &str) -> Vec<Object> {
        load_str(Path::new("t.yaml"), text)
            .unwrap()
            .into_iter()
            .map(|l| l.object)
            .collect()
    }

    const OBJECTS: &str = "\
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: a}
spec:
  ports: [{name: http, port: 80, targetPort: 8080}, {name: dns, port: 53, protocol: UDP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ext-1, namespace: a, labels: {kubernetes.io/service-name: ext}}
addressType: IPv4
endpoints:
- addresses: [198.18.255.2]
- addresses: [198.18.32.10]
  nodeName: node2
- addresses: [198.18.0.99]
  conditions: {ready: false}
ports: [{name: http, port: 8080, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: other, namespace: a, labels: {kubernetes.io/service-name: nope}}
addressType: IPv4
endpoints: [{addresses: [198.18.0.77]}]
ports: [{name: http, port: 1}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: ext, namespace: a}
subsets:
- addresses: [{ip: 198.18.255.1, nodeName: node1}]
  ports: [{name: dns, port: 5353, protocol: UDP}]
";

    #[test]
    fn selectorless_services_take_slices_and_endpoints() {
        let objects = load(OBJECTS);
        let mut svc = None;
        let mut slices = Vec::new();
        let mut endpoints = Vec::new();
        for o in &objects {
            match o {
                Object::Service(s) => svc = Some(s),
                Object::EndpointSlice(s) => slices.push(s),
                Object::Endpoints(e) => endpoints.push(e),
                _ => {}
            }
        }
        let sources = EndpointSources {
            pods: &[],
            slices: &slices,
            endpoints: &endpoints,
        };
        let ports = service_endpoints(svc.unwrap(), &sources);
        let ep = |ip: &str, port: u16, node: Option<&str>| ServiceEndpoint {
            ip: ip.parse().unwrap(),
            port,
            node: node.map(str::to_owned),
        };
        assert_eq!(
            ports[0].endpoints,
            [
                ep("198.18.32.10", 8080, Some("node2")),
                ep("198.18.255.2", 8080, None)
            ]
        );
        assert_eq!(
            ports[1].endpoints,
            [ep("198.18.255.1", 5353, Some("node1"))]
        );
    }

    #[test]
    fn selectors_skip_finished_pods_and_resolve_named_ports() {
        let objects = load(
            "\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: a}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: p1, namespace: a, labels: {app: web}}
spec: {nodeName: node2, containers: [{name: c, ports: [{name: http, containerPort: 9090}]}]}
status: {podIP: 198.18.32.10, podIPs: [{ip: 198.18.32.10}]}
---
apiVersion: v1
kind: Pod
metadata: {name: done, namespace: a, labels: {app: web}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 9090}]}]}
status: {phase: Succeeded, podIP: 198.18.0.11}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: b, labels: {app: web}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 9090}]}]}
status: {podIP: 198.18.0.12}
",
        );
        let Object::Service(svc) = &objects[0] else {
            panic!("not a service")
        };
        let pods: Vec<&Pod> = objects
            .iter()
            .filter_map(|o| match o {
                Object::Pod(p) => Some(p),
                _ => None,
            })
            .collect();
        let sources = EndpointSources {
            pods: &pods,
            ..EndpointSources::default()
        };
        let ports = service_endpoints(svc, &sources);
        assert_eq!(
            ports[0].endpoints,
            [ServiceEndpoint {
                ip: "198.18.32.10".parse().unwrap(),
                port: 9090,
                node: Some("node2".into()),
            }]
        );
    }
}
