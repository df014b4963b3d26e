//! One object at a time: what each object contributes to a [`Cluster`], converted on
//! its own, for a caller that keeps the converted objects and replaces them one by one
//! (`policy::live`). The conversion is the same as [`Cluster::from_objects_each`]'s; only
//! Services are resolved together (their backends are pods, slices and endpoints).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::{add_entity_or_tier, policy, services, sort_key, tiers_in_order};
use crate::model::{Loaded, Object};
use crate::policy::{
    Cluster, Endpoint, HostEndpointInfo, NamespaceInfo, NetworkSetInfo, NodeInfo, Policy,
    PolicyError, ServiceBackends, ServiceInfo, Tier, Warning,
};

/// What one object contributes to a [`Cluster`], converted alone.
#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    Namespace(NamespaceInfo),
    Endpoint(Box<Endpoint>),
    NetworkSet(Box<NetworkSetInfo>),
    HostEndpoint(Box<HostEndpointInfo>),
    /// A Kubernetes node (what an `AdminNetworkPolicy` `nodes` peer selects).
    Node(Box<NodeInfo>),
    Tier(Tier),
    Policy(Box<Policy>),
    /// Nothing on its own: a pod without an address, a Deployment, and the objects
    /// Services are resolved from (Services, `EndpointSlices`, `Endpoints`).
    Nothing,
}

/// Whether an object takes part in resolving Services (see [`services_of`]).
pub fn feeds_services(object: &Object) -> bool {
    matches!(
        object,
        Object::Pod(_) | Object::Service(_) | Object::EndpointSlice(_) | Object::Endpoints(_)
    )
}

/// Whether an object is a policy (converted against the tiers by [`convert_policy`]).
pub fn is_policy(object: &Object) -> bool {
    matches!(
        object,
        Object::NetworkPolicy(_)
            | Object::CalicoNetworkPolicy(_)
            | Object::GlobalNetworkPolicy(_)
            | Object::AdminNetworkPolicy(_)
            | Object::BaselineAdminNetworkPolicy(_)
    )
}

/// Converts an object that is not a policy.
pub fn convert_entity(loaded: &Loaded) -> Result<Part, PolicyError> {
    if let Object::Namespace(ns) = &loaded.object {
        return Ok(Part::Namespace(NamespaceInfo {
            name: ns.metadata.name.clone(),
            labels: ns.effective_labels(),
        }));
    }
    let mut cluster = Cluster::default();
    let mut tiers = BTreeMap::new();
    add_entity_or_tier(&mut cluster, &mut tiers, loaded)?;
    Ok(if let Some(ep) = cluster.endpoints.pop() {
        Part::Endpoint(Box::new(ep))
    } else if let Some(set) = cluster.network_sets.pop() {
        Part::NetworkSet(Box::new(set))
    } else if let Some(hep) = cluster.host_endpoints.pop() {
        Part::HostEndpoint(Box::new(hep))
    } else if let Some(node) = cluster.nodes.pop() {
        Part::Node(Box::new(node))
    } else if let Some((_, tier)) = tiers.pop_first() {
        Part::Tier(tier)
    } else {
        Part::Nothing
    })
}

/// Converts a policy object for the tiers in evaluation order (`Ok(None)`: not a
/// policy). Its `tier` is an index into `tiers`.
pub fn convert_policy(
    tiers: &[Tier],
    loaded: &Loaded,
    warnings: &mut Vec<Warning>,
) -> Result<Option<Policy>, PolicyError> {
    let converted = policy(tiers, loaded, warnings)?;
    Ok(converted.map(|mut p| {
        p.source = Some(loaded.source.clone());
        p
    }))
}

/// Calico's well-known tiers together with `objects` (a Tier object of the same name
/// replaces one), in evaluation order.
pub fn tiers_with<'a>(objects: impl IntoIterator<Item = &'a Tier>) -> Vec<Tier> {
    let mut tiers = super::well_known_tiers();
    for tier in objects {
        tiers.insert(tier.name.clone(), tier.clone());
    }
    tiers_in_order(tiers)
}

/// Evaluation order of policies: by tier, then order (missing = +∞), then name,
/// namespace and kind.
pub fn policy_order(a: &Policy, b: &Policy) -> Ordering {
    sort_key(a, b)
}

/// Every Service with a cluster IP, in the order of `objects`, its backends resolved
/// from the pods, `EndpointSlices` and `Endpoints` among `objects`.
pub fn services_of(objects: &[&Loaded]) -> (Vec<ServiceInfo>, ServiceBackends) {
    services::services_of(objects)
}

/// The namespace every pod of `namespace` implies when no Namespace object exists.
pub fn implied_namespace(namespace: &str) -> NamespaceInfo {
    NamespaceInfo {
        name: namespace.to_owned(),
        labels: [(
            crate::policy::LABEL_NAMESPACE_NAME.to_owned(),
            namespace.to_owned(),
        )]
        .into(),
    }
}
