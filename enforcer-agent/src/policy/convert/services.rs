//! Services as the policy model sees them: their virtual addresses, which no policy
//! selects (policy applies after kube-proxy's DNAT, to the backend), and their
//! backends, resolved as kube-proxy resolves them ([`crate::model::endpoints`]): the
//! pods a selector picks, or the `EndpointSlices` and `Endpoints` a selector-less
//! Service's owner wrote.

use std::net::IpAddr;

use super::ctx;
use crate::model::endpoints::{EndpointSources, service_endpoints};
use crate::model::{Loaded, Object, Pod};
use crate::policy::ServiceInfo;

/// Every Service with a cluster IP, in the order of `objects`.
pub(super) fn services(objects: &[Loaded]) -> Vec<ServiceInfo> {
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
    objects
        .iter()
        .filter_map(|loaded| {
            let Object::Service(svc) = &loaded.object else {
                return None;
            };
            let vips: Vec<IpAddr> = svc
                .spec
                .cluster_ip
                .iter()
                .filter_map(|ip| ip.parse().ok())
                .collect();
            (!vips.is_empty()).then(|| ServiceInfo {
                id: ctx(loaded).id,
                vips,
                ports: svc.spec.ports.clone(),
                backends: service_endpoints(svc, &sources),
                external_traffic_local: svc.spec.external_traffic_local(),
            })
        })
        .collect()
}
