//! Selectors that match no endpoint: a policy that selects nothing, or a rule peer that
//! names nothing — usually a label the cluster spells differently (`k8s-app: kube-dns`
//! where the DNS pods carry `k8s-app: coredns`). The finding lists the values the
//! cluster does have.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::{Context, Finding, Severity};
use crate::policy::{Cluster, Entity, EntitySelector, LABEL_ORCHESTRATOR, NamespaceScope, Policy};
use crate::selector::Selector;

pub(super) fn lint(cx: &Context<'_>, out: &mut Vec<Finding>) {
    let cluster = cx.cluster;
    let entities: Vec<Entity<'_>> = cluster.entities().collect();
    for policy in &cluster.policies {
        let selected = entities.iter().filter(|e| policy.selects(cluster, e));
        if selected.count() == 0 {
            let field = match policy.name.kind.as_str() {
                "NetworkPolicy" => "spec.podSelector",
                "AdminNetworkPolicy" | "BaselineAdminNetworkPolicy" => "spec.subject",
                _ => "spec.selector",
            };
            let (hint, fix) = near_misses(cluster, &entities, &policy.subject, policy);
            out.push(Finding::policy(
                Severity::Warning,
                "selector-matches-nothing",
                policy,
                field,
                format!(
                    "the policy selects no endpoint in the input ({}){hint}",
                    describe(&policy.subject)
                ),
                fix,
            ));
        }
        let mut seen = HashSet::new();
        for rule in policy.ingress.iter().chain(&policy.egress) {
            for (side_name, side) in [("source", &rule.source), ("destination", &rule.destination)]
            {
                let Some(sel) = &side.selector else { continue };
                // Kubernetes rules are written per peer: `spec.ingress[0].from[1]`.
                let field = if rule.field.contains(".from[") || rule.field.contains(".to[") {
                    rule.field.clone()
                } else {
                    format!("{}.{side_name}", rule.field)
                };
                if !seen.insert(field.clone()) {
                    continue;
                }
                if entities.iter().any(|e| sel.matches(cluster, e)) {
                    continue;
                }
                let (hint, fix) = near_misses(cluster, &entities, sel, policy);
                out.push(Finding::policy(
                    Severity::Warning,
                    "selector-matches-nothing",
                    policy,
                    field,
                    format!(
                        "this peer matches no endpoint or network set in the input ({}), so the rule never matches{hint}",
                        describe(sel)
                    ),
                    fix,
                ));
            }
        }
    }
}

/// The selector as its author wrote it: without the orchestrator term Calico adds to
/// Kubernetes policies, plus its namespace scope.
fn describe(sel: &EntitySelector) -> String {
    let own = user_part(&sel.selector);
    let scope = match &sel.namespace {
        NamespaceScope::Any => String::new(),
        NamespaceScope::Named(ns) => format!(" in namespace {ns}"),
        NamespaceScope::Selector(s) => format!(" in namespaces matching {s}"),
        NamespaceScope::AllNamespaced => " in any namespace".to_owned(),
        NamespaceScope::NonNamespaced => " among non-namespaced entities".to_owned(),
        NamespaceScope::Nodes => " among nodes".to_owned(),
    };
    format!("{own}{scope}")
}

fn user_part(sel: &Selector) -> Selector {
    let keep =
        |s: &&Selector| !matches!(s, Selector::Eq(k, v) if k == LABEL_ORCHESTRATOR && v == "k8s");
    match sel {
        Selector::And(parts) => parts
            .iter()
            .filter(keep)
            .cloned()
            .fold(Selector::All, Selector::and),
        s if keep(&s) => s.clone(),
        _ => Selector::All,
    }
}

fn leaves(sel: &Selector) -> Vec<&Selector> {
    match sel {
        Selector::And(parts) => parts.iter().flat_map(leaves).collect(),
        s => vec![s],
    }
}

/// Why nothing matches: the namespace scope matching no namespace, or label terms no
/// entity in scope satisfies, with the values that exist.
fn near_misses(
    cluster: &Cluster,
    entities: &[Entity<'_>],
    sel: &EntitySelector,
    policy: &Policy,
) -> (String, Option<String>) {
    let scope = EntitySelector {
        selector: Selector::All,
        namespace: sel.namespace.clone(),
    };
    let in_scope: Vec<&Entity<'_>> = entities
        .iter()
        .filter(|e| scope.matches(cluster, e))
        .collect();
    if in_scope.is_empty() {
        let namespaces: Vec<&str> = cluster.namespaces.keys().map(String::as_str).collect();
        return (
            format!(
                "; nothing is in that namespace scope (namespaces in the input: {})",
                namespaces.join(", ")
            ),
            None,
        );
    }
    let kubernetes = policy.name.kind == "NetworkPolicy";
    let mut hints = Vec::new();
    let mut fixes = Vec::new();
    for leaf in leaves(&user_part(&sel.selector)) {
        let (key, wanted): (&str, Vec<&str>) = match leaf {
            Selector::Eq(k, v) => (k, vec![v.as_str()]),
            Selector::In(k, vs) => (k, vs.iter().map(String::as_str).collect()),
            Selector::Has(k) => (k, Vec::new()),
            _ => continue,
        };
        if in_scope.iter().any(|e| leaf.matches(e.labels())) {
            continue;
        }
        // Values of the key in scope, with who carries them.
        let mut values: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for e in &in_scope {
            if let Some(v) = e.labels().get(key) {
                values.entry(v).or_default().insert(entity_name(e));
            }
        }
        let wanted_text = if wanted.is_empty() {
            format!("a label {key}")
        } else {
            format!("{key}={}", wanted.join("|"))
        };
        if values.is_empty() {
            hints.push(format!("no endpoint in scope has {wanted_text}"));
            continue;
        }
        let have: Vec<String> = values
            .iter()
            .map(|(v, who)| {
                let who: Vec<&str> = who.iter().map(String::as_str).take(3).collect();
                format!("{key}={v} ({})", who.join(", "))
            })
            .collect();
        hints.push(format!(
            "no endpoint in scope has {wanted_text}, but the input has {}",
            have.join(", ")
        ));
        if let Some(v) = values.keys().next()
            && !wanted.is_empty()
        {
            fixes.push(if kubernetes {
                format!("match the label the pods carry: `{key}: {v}`")
            } else {
                format!("match the label the endpoints carry: `{key} == '{v}'`")
            });
        }
    }
    let hint = if hints.is_empty() {
        String::new()
    } else {
        format!("; {}", hints.join("; "))
    };
    let fix = (!fixes.is_empty()).then(|| fixes.join("; "));
    (hint, fix)
}

fn entity_name(e: &Entity<'_>) -> String {
    match e {
        Entity::Endpoint(ep) => ep.workload(),
        Entity::NetworkSet(n) => super::object_label(&n.id),
        Entity::HostEndpoint(h) => super::object_label(&h.id),
        Entity::Node(n) => super::object_label(&n.id),
    }
}
