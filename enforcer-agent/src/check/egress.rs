//! Ingress allows whose peers cannot send: the rule allows the flow into its endpoints,
//! but the peers' own egress is denied by another policy (the tutorial's steps 5 and
//! 6: `default-deny` isolates egress too, and nothing allows the frontend's egress to
//! the backend). Computed with the evaluator: for each ingress Allow rule that names
//! peers by selector, each endpoint it protects and each peer endpoint, the flow on
//! the ports the endpoint serves (and the rule's own ports) that this very rule
//! allows is judged at the peer's egress.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::flows::{denial, list, packet, port_label, rule_ports};
use super::{Context, Finding, Severity};
use crate::eval::{Action, DecisionKind, evaluate_leg, rule_matches};
use crate::model::Object;
use crate::model::k8s::LabelSelector;
use crate::policy::{Direction, Policy, RuleAction};

#[derive(Default)]
struct Denied {
    peers: BTreeSet<String>,
    peer_namespaces: BTreeSet<String>,
    targets: BTreeSet<String>,
    ports: BTreeSet<String>,
    tier_default: bool,
}

pub(super) fn lint(cx: &Context<'_>, out: &mut Vec<Finding>) {
    let cluster = cx.cluster;
    for (pi, policy) in cluster.policies.iter().enumerate() {
        if policy.pre_dnat || policy.do_not_track || !policy.applies_ingress {
            continue;
        }
        let targets: Vec<_> = cluster
            .endpoints
            .iter()
            .filter(|ep| policy.applies_to_endpoint(cluster, ep, Direction::Ingress))
            .collect();
        for (ri, rule) in policy.ingress.iter().enumerate() {
            if rule.action != RuleAction::Allow
                || (rule.source.selector.is_none() && rule.source.service_accounts.is_none())
            {
                continue;
            }
            // Grouped by what denies the egress.
            let mut denied: BTreeMap<String, Denied> = BTreeMap::new();
            for target in &targets {
                let ports = rule_ports(cx, target, rule);
                for peer in &cluster.endpoints {
                    if peer.id == target.id {
                        continue;
                    }
                    for &(proto, port) in &ports {
                        let Some(pkt) = packet(peer, target, proto, port) else {
                            continue;
                        };
                        if !rule_matches(cluster, rule, &pkt) {
                            continue;
                        }
                        let ingress = evaluate_leg(cluster, target, Direction::Ingress, &pkt);
                        if ingress.action != Action::Allow
                            || ingress.policy_index != Some(pi)
                            || ingress.rule_index != Some(ri)
                        {
                            continue;
                        }
                        let egress = evaluate_leg(cluster, peer, Direction::Egress, &pkt);
                        if egress.action == Action::Allow {
                            continue;
                        }
                        let d = denied
                            .entry(denial(cluster, peer, Direction::Egress, &egress))
                            .or_default();
                        d.peers.insert(peer.workload());
                        d.peer_namespaces.insert(peer.namespace.clone());
                        d.targets.insert(target.workload());
                        d.ports.insert(port_label(proto, port));
                        d.tier_default |= egress.kind == DecisionKind::TierDefault;
                    }
                }
            }
            for (why, d) in denied {
                let peers: Vec<String> = d.peers.iter().cloned().collect();
                let targets: Vec<String> = d.targets.iter().cloned().collect();
                let ports: Vec<String> = d.ports.iter().cloned().collect();
                let message = format!(
                    "this rule allows {} to reach {} on {}, but their egress is still denied: {why}; the connections fail",
                    list(&peers, 4),
                    list(&targets, 4),
                    ports.join(", "),
                );
                let fix = if d.tier_default {
                    mirror_fix(cx, policy, &rule.field, &d.peer_namespaces)
                } else {
                    None
                }
                .or_else(|| {
                    Some(format!(
                        "allow the egress too: a policy selecting {} with an egress Allow rule to {} on {}",
                        list(&peers, 4),
                        list(&targets, 4),
                        ports.join(", ")
                    ))
                });
                out.push(Finding::policy(
                    Severity::Warning,
                    "egress-still-denied",
                    policy,
                    rule.field.clone(),
                    message,
                    fix,
                ));
            }
        }
    }
}

/// For a Kubernetes policy's ingress peer: the egress policy the peers need, in the
/// peers' namespace.
fn mirror_fix(
    cx: &Context<'_>,
    policy: &Policy,
    field: &str,
    peer_namespaces: &BTreeSet<String>,
) -> Option<String> {
    let Object::NetworkPolicy(np) = &cx.declared.get(&policy.id)?.object else {
        return None;
    };
    let (rule_index, peer_index) = parse_peer_field(field)?;
    let rule = np.spec.ingress.as_ref()?.get(rule_index)?;
    let peer = rule.from.get(peer_index)?;
    if peer_namespaces.len() != 1 {
        return None;
    }
    let peer_ns = peer_namespaces.iter().next()?;
    let ns = np.metadata.namespace.as_deref().unwrap_or("default");
    let mut to = format!("podSelector: {}", flow(&np.spec.pod_selector));
    if peer_ns != ns {
        let _ = write!(
            to,
            ", namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {ns}}}}}"
        );
    }
    let ports: Vec<String> = rule
        .ports
        .iter()
        .map(|p| {
            let mut s = format!("protocol: {}", p.protocol.as_deref().unwrap_or("TCP"));
            match &p.port {
                Some(crate::model::workload::IntOrString::Int(n)) => {
                    let _ = write!(s, ", port: {n}");
                }
                Some(crate::model::workload::IntOrString::String(n)) => {
                    let _ = write!(s, ", port: {n}");
                }
                None => {}
            }
            if let Some(e) = p.end_port {
                let _ = write!(s, ", endPort: {e}");
            }
            format!("{{{s}}}")
        })
        .collect();
    let mut yaml = format!(
        "add the egress allow the peers need, e.g.:\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {}-egress\n  namespace: {peer_ns}\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n  - to: [{{{to}}}]",
        np.metadata.name,
        peer.pod_selector
            .as_ref()
            .map_or_else(|| "{}".to_owned(), flow),
    );
    if !ports.is_empty() {
        let _ = write!(yaml, "\n    ports: [{}]", ports.join(", "));
    }
    Some(yaml)
}

/// `spec.ingress[2].from[1]` → (2, 1).
fn parse_peer_field(field: &str) -> Option<(usize, usize)> {
    let rest = field.strip_prefix("spec.ingress[")?;
    let (rule, rest) = rest.split_once("].from[")?;
    let peer = rest.strip_suffix(']')?;
    Some((rule.parse().ok()?, peer.parse().ok()?))
}

/// A label selector in YAML flow style.
fn flow(ls: &LabelSelector) -> String {
    if ls.match_expressions.is_empty() {
        if ls.match_labels.is_empty() {
            return "{}".to_owned();
        }
        let labels: Vec<String> = ls
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        return format!("{{matchLabels: {{{}}}}}", labels.join(", "));
    }
    serde_json::to_string(ls).unwrap_or_else(|_| "{}".to_owned())
}
