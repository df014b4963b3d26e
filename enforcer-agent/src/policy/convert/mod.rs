//! Objects → [`Cluster`]: conversion and validation, in the order Calico's own pipeline
//! would see the objects.
//!
//! 1. Namespaces, with the `kubernetes.io/metadata.name` label the API server adds.
//! 2. Entities and tiers: pods with an address become workload endpoints ([`k8s`]),
//!    Services virtual addresses with their backends ([`services`]); network sets,
//!    host endpoints and tiers are Calico's ([`calico`]). Calico's three well-known
//!    tiers exist without being written: `kube-admin` (order 1,000, ends in Pass),
//!    `default` (1,000,000, Deny) and `kube-baseline` (10,000,000, Pass).
//! 3. Policies: Kubernetes `NetworkPolicies` converted into tier `default` ([`k8s`]),
//!    Calico policies into their tier ([`calico`]); a policy naming a tier that does not
//!    exist is refused, as Calico's API refuses it.
//! 4. Order: tiers by order (missing last) then name; policies by tier, order (missing
//!    last), then name, namespace and kind (Calico's tie-break); endpoints by
//!    namespace/name.
//!
//! Any invalid value stops the build with an error naming its object and field
//! ([`Cluster::from_objects`]), or leaves that object out alone
//! ([`Cluster::from_objects_each`], for the agent's per-object refusal): a rejected
//! object must never become a wider or narrower policy.

// Errors are built at most once per load; their size does not matter.
#![expect(clippy::result_large_err, reason = "cold error path, rich errors")]

mod admin;
mod calico;
mod context;
mod k8s;
pub mod parts;
mod services;

use std::collections::BTreeMap;

use context::{Ctx, DEFAULT_TIER};

use super::{
    Cluster, LABEL_NAMESPACE_NAME, NamespaceInfo, NodeInfo, Policy, PolicyError, PolicyProblem,
    Tier, TierAction, Warning,
};
use crate::model::{Loaded, Object};

impl Cluster {
    /// Builds the model from loaded objects (see the module documentation for how).
    /// The first invalid object stops the build.
    pub fn from_objects(objects: &[Loaded]) -> Result<(Cluster, Vec<Warning>), PolicyError> {
        let (cluster, warnings, mut errors) = Self::from_objects_each(objects);
        if errors.is_empty() {
            Ok((cluster, warnings))
        } else {
            Err(errors.swap_remove(0))
        }
    }

    /// Builds the model from the objects that convert, and says why each other one
    /// does not (in the order [`Cluster::from_objects`] meets them): an invalid object
    /// is left out alone, for a caller that refuses objects one by one (the agent).
    /// Leaving out a tier also leaves out the policies naming it.
    pub fn from_objects_each(objects: &[Loaded]) -> (Cluster, Vec<Warning>, Vec<PolicyError>) {
        let mut cluster = Cluster {
            namespaces: namespaces(objects),
            ..Cluster::default()
        };
        let mut errors = Vec::new();
        let mut tiers = well_known_tiers();
        for loaded in objects {
            if let Err(error) = add_entity_or_tier(&mut cluster, &mut tiers, loaded) {
                errors.push(error);
            }
        }
        (cluster.services, cluster.service_backends) = services::services(objects);
        // Namespaces only pods mention exist too (with just their name label).
        for ep in &cluster.endpoints {
            cluster
                .namespaces
                .entry(ep.namespace.clone())
                .or_insert_with(|| NamespaceInfo {
                    name: ep.namespace.clone(),
                    labels: [(LABEL_NAMESPACE_NAME.to_owned(), ep.namespace.clone())].into(),
                });
        }
        let tiers = tiers_in_order(tiers);
        let mut warnings = Vec::new();
        for loaded in objects {
            match policy(&tiers, loaded, &mut warnings) {
                Ok(Some(mut policy)) => {
                    policy.source = Some(loaded.source.clone());
                    cluster.policies.push(policy);
                }
                Ok(None) => {}
                Err(error) => errors.push(error),
            }
        }
        sort_policies(&mut cluster.policies);
        cluster.tiers = tiers;
        cluster
            .endpoints
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        cluster.reindex();
        (cluster, warnings, errors)
    }
}

fn ctx(loaded: &Loaded) -> Ctx<'_> {
    Ctx {
        source: Some(&loaded.source),
        id: loaded.object.id(),
    }
}

/// The Namespace objects, with their effective labels.
fn namespaces(objects: &[Loaded]) -> BTreeMap<String, NamespaceInfo> {
    objects
        .iter()
        .filter_map(|loaded| match &loaded.object {
            Object::Namespace(ns) => Some((
                ns.metadata.name.clone(),
                NamespaceInfo {
                    name: ns.metadata.name.clone(),
                    labels: ns.effective_labels(),
                },
            )),
            _ => None,
        })
        .collect()
}

/// Calico's tiers that exist without a `Tier` object (a `Tier` of the same name
/// replaces one).
fn well_known_tiers() -> BTreeMap<String, Tier> {
    [
        ("kube-admin", 1_000.0, TierAction::Pass),
        (DEFAULT_TIER, 1_000_000.0, TierAction::Deny),
        ("kube-baseline", 10_000_000.0, TierAction::Pass),
    ]
    .into_iter()
    .map(|(name, order, default_action)| {
        (
            name.to_owned(),
            Tier {
                name: name.to_owned(),
                order: Some(order),
                default_action,
            },
        )
    })
    .collect()
}

/// Adds what `loaded` contributes besides policies and Services: an endpoint, a
/// network set, a host endpoint or a tier.
fn add_entity_or_tier(
    cluster: &mut Cluster,
    tiers: &mut BTreeMap<String, Tier>,
    loaded: &Loaded,
) -> Result<(), PolicyError> {
    let ctx = ctx(loaded);
    match &loaded.object {
        Object::Pod(pod) => {
            if let Some(ep) = k8s::endpoint(&ctx, pod)? {
                cluster.endpoints.push(ep);
            }
        }
        Object::NetworkSet(set) => cluster.network_sets.push(calico::network_set(&ctx, set)?),
        Object::GlobalNetworkSet(set) => cluster
            .network_sets
            .push(calico::global_network_set(&ctx, set)?),
        Object::HostEndpoint(hep) => cluster
            .host_endpoints
            .push(calico::host_endpoint(&ctx, hep)?),
        Object::Tier(tier) => {
            let tier = calico::tier(&ctx, tier)?;
            tiers.insert(tier.name.clone(), tier);
        }
        Object::Node(node) => cluster.nodes.push(NodeInfo {
            id: ctx.id.clone(),
            labels: node.metadata.labels.clone(),
            ips: node.ips(),
        }),
        _ => {}
    }
    Ok(())
}

/// Tiers in evaluation order: by order (missing = +∞), then name.
fn tiers_in_order(tiers: BTreeMap<String, Tier>) -> Vec<Tier> {
    let mut tiers: Vec<Tier> = tiers.into_values().collect();
    tiers.sort_by(|a, b| {
        let (oa, ob) = (
            a.order.unwrap_or(f64::INFINITY),
            b.order.unwrap_or(f64::INFINITY),
        );
        oa.total_cmp(&ob).then_with(|| a.name.cmp(&b.name))
    });
    tiers
}

/// The policy `loaded` is, if it is one.
fn policy(
    tiers: &[Tier],
    loaded: &Loaded,
    warnings: &mut Vec<Warning>,
) -> Result<Option<Policy>, PolicyError> {
    let ctx = ctx(loaded);
    // An absent or empty `spec.tier` means `default`.
    let tier_of = |field: &str, name: Option<&String>| -> Result<(usize, &str), PolicyError> {
        let name = name
            .map(String::as_str)
            .filter(|t| !t.is_empty())
            .unwrap_or(DEFAULT_TIER);
        let index = tiers.iter().position(|t| t.name == name).ok_or_else(|| {
            ctx.err(
                field,
                PolicyProblem::UnknownTier {
                    tier: name.to_owned(),
                },
                Some(format!("create the Tier {name:?} or remove spec.tier")),
            )
        })?;
        Ok((index, tiers[index].name.as_str()))
    };
    let mut policy = match &loaded.object {
        Object::NetworkPolicy(np) => {
            let (tier, _) = tier_of("spec", None)?;
            k8s::kubernetes_policy(&ctx, np, tier)?
        }
        Object::CalicoNetworkPolicy(np) => {
            let tier = tier_of("spec.tier", np.spec.tier.as_ref())?;
            calico::network_policy(&ctx, np, tier, warnings)?
        }
        Object::GlobalNetworkPolicy(gnp) => {
            let tier = tier_of("spec.tier", gnp.spec.tier.as_ref())?;
            calico::global_network_policy(&ctx, gnp, tier, warnings)?
        }
        Object::AdminNetworkPolicy(anp) => {
            let (tier, _) = tier_of("spec", Some(&admin::ADMIN_TIER.to_owned()))?;
            admin::admin_network_policy(&ctx, anp, tier, warnings)?
        }
        Object::BaselineAdminNetworkPolicy(banp) => {
            let (tier, _) = tier_of("spec", Some(&admin::BASELINE_TIER.to_owned()))?;
            admin::baseline_admin_network_policy(&ctx, banp, tier, warnings)?
        }
        _ => return Ok(None),
    };
    policy.shrink_to_fit();
    Ok(Some(policy))
}

/// Policies in evaluation order: by tier, then order (missing = +∞), then name,
/// namespace and kind.
fn sort_policies(policies: &mut [Policy]) {
    policies.sort_by(sort_key);
}

fn sort_key(a: &Policy, b: &Policy) -> std::cmp::Ordering {
    let (oa, ob) = (
        a.order.unwrap_or(f64::INFINITY),
        b.order.unwrap_or(f64::INFINITY),
    );
    a.tier
        .cmp(&b.tier)
        .then(oa.total_cmp(&ob))
        .then_with(|| a.name.name.cmp(&b.name.name))
        .then_with(|| a.name.namespace.cmp(&b.name.namespace))
        .then_with(|| a.name.kind.cmp(&b.name.kind))
}

#[cfg(test)]
mod tests;
