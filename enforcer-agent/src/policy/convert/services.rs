//! Services as the policy model sees them: their virtual addresses, which no policy
//! selects (policy applies after kube-proxy's DNAT, to the backend), and their
//! backends, resolved as kube-proxy resolves them ([`crate::model::endpoints`]): the
//! pods a selector picks, or the `EndpointSlices` and `Endpoints` a selector-less
//! Service's owner wrote.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::ctx;
use crate::model::endpoints::{EndpointSources, service_endpoints};
use crate::model::{Loaded, Object, Pod};
use crate::policy::{Backend, ServiceBackends, ServiceInfo, parse_protocol};

/// Every Service with a front-end (a cluster IP of either family, an external IP, a load
/// balancer address or a node port), in the order of `objects`, and the backends of
/// every Service (headless ones too) by (namespace, name), for rule `services` matches.
/// Its node ports (on the node's own addresses) are front-ends by port: see
/// `compile::frontends`.
pub(super) fn services(objects: &[Loaded]) -> (Vec<ServiceInfo>, ServiceBackends) {
    let refs: Vec<&Loaded> = objects.iter().collect();
    services_of(&refs)
}

/// [`services`] over borrowed objects.
pub(super) fn services_of(objects: &[&Loaded]) -> (Vec<ServiceInfo>, ServiceBackends) {
    let mut pods: Vec<&Pod> = Vec::new();
    let mut slices = Vec::new();
    let mut endpoints = Vec::new();
    for loaded in objects {
        match &loaded.object {
            Object::Pod(p) => pods.push(p),
            Object::EndpointSlice(s) => slices.push(s),
            Object::Endpoints(e) => endpoints.push(e),
            _ => {}
        }
    }
    let sources = EndpointSources {
        pods: &pods,
        slices: &slices,
        endpoints: &endpoints,
    };
    let mut backends = BTreeMap::new();
    let infos = objects
        .iter()
        .filter_map(|loaded| {
            let Object::Service(svc) = &loaded.object else {
                return None;
            };
            let ports = service_endpoints(svc, &sources);
            let mut list: Vec<Backend> = ports
                .iter()
                .flat_map(|p| {
                    let protocol = parse_protocol(p.port.protocol()).unwrap_or(0);
                    p.endpoints.iter().map(move |e| Backend {
                        ip: e.ip,
                        protocol,
                        port: e.port,
                    })
                })
                .filter(|b| b.protocol != 0)
                .collect();
            list.sort_unstable();
            list.dedup();
            let namespace = svc
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned());
            backends.insert((namespace, svc.metadata.name.clone()), list);
            let mut vips: Vec<IpAddr> = svc
                .spec
                .cluster_ip
                .iter()
                .chain(&svc.spec.cluster_ips)
                .chain(svc.external_addresses())
                .filter_map(|ip| ip.parse().ok())
                .collect();
            vips.sort_unstable();
            vips.dedup();
            let has_node_ports = svc.spec.ports.iter().any(|p| p.node_port.is_some());
            (!vips.is_empty() || has_node_ports).then(|| ServiceInfo {
                id: ctx(loaded).id,
                vips,
                ports: svc.spec.ports.clone(),
                backends: ports,
                external_traffic_local: svc.spec.external_traffic_local(),
            })
        })
        .collect();
    (infos, backends)
}
