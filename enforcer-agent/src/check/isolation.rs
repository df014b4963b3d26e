//! Policies that newly isolate endpoints they probably did not mean to. In Calico, a
//! policy that selects an endpoint for a direction isolates it there: whatever the
//! tier's policies do not allow is denied. A policy written to *add* access (it has
//! Allow rules) but with a broad selector isolates everything it selects — the
//! tutorial's step 8 `GlobalNetworkPolicy` selects `has(k8s-app)` to let monitoring
//! in, which selects the DNS pods (`k8s-app: kube-dns`) and so denies all DNS.
//!
//! Computed with the evaluator: for each policy with rules in a direction, each
//! endpoint it selects that no other policy of its tier selects for that direction,
//! the connections (pod to pod, on the ports the receiving pod serves) that are
//! allowed without the policy and denied with it. Policies without rules in the
//! direction (a default deny) isolate on purpose and are not reported.

use std::collections::BTreeSet;

use super::flows::{list, packet, port_label, served_ports};
use super::{Context, Finding, Severity};
use crate::cluster::implied::{DNS_LABEL, is_dns_pod};
use crate::eval::evaluate;
use crate::policy::{Direction, Endpoint, Policy};
use crate::selector::Selector;

/// Above this many endpoints the lint would judge too many flows for a quick check.
const MAX_ENDPOINTS: usize = 300;

pub(super) fn lint(cx: &Context<'_>, out: &mut Vec<Finding>) {
    let cluster = cx.cluster;
    if cluster.endpoints.len() > MAX_ENDPOINTS {
        out.push(Finding::note(
            "skipped",
            format!("more than {MAX_ENDPOINTS} endpoints: the new-isolation lint was skipped"),
        ));
        return;
    }
    for (pi, policy) in cluster.policies.iter().enumerate() {
        if policy.pre_dnat || policy.do_not_track {
            continue;
        }
        let mut without = cluster.clone();
        without.policies.remove(pi);
        for dir in [Direction::Ingress, Direction::Egress] {
            if !policy.applies(dir) || policy.rules(dir).is_empty() {
                continue;
            }
            let newly: Vec<&Endpoint> = cluster
                .endpoints
                .iter()
                .filter(|ep| policy.applies_to_endpoint(cluster, ep, dir))
                .filter(|ep| {
                    !cluster.policies.iter().enumerate().any(|(j, q)| {
                        j != pi && q.tier == policy.tier && q.applies_to_endpoint(cluster, ep, dir)
                    })
                })
                .collect();
            let mut broken: Vec<String> = Vec::new();
            let mut isolated: BTreeSet<String> = BTreeSet::new();
            let mut dns = false;
            for ep in &newly {
                for other in &cluster.endpoints {
                    if other.id == ep.id {
                        continue;
                    }
                    let (src, dst) = match dir {
                        Direction::Ingress => (other, *ep),
                        Direction::Egress => (*ep, other),
                    };
                    for (proto, port) in served_ports(cx, dst) {
                        let Some(pkt) = packet(src, dst, proto, port) else {
                            continue;
                        };
                        if evaluate(&without, &pkt).allowed && !evaluate(cluster, &pkt).allowed {
                            broken.push(format!(
                                "{} -> {}:{}",
                                src.workload(),
                                dst.workload(),
                                port_label(proto, port)
                            ));
                            isolated.insert(ep.workload());
                            dns |= cx
                                .completed
                                .pod_objects
                                .get(&dst.workload())
                                .is_some_and(is_dns_pod);
                        }
                    }
                }
            }
            if broken.is_empty() {
                continue;
            }
            let isolated: Vec<String> = isolated.into_iter().collect();
            let affected: Vec<&Endpoint> = newly
                .iter()
                .copied()
                .filter(|e| isolated.contains(&e.workload()))
                .collect();
            let dir_name = match dir {
                Direction::Ingress => "ingress",
                Direction::Egress => "egress",
            };
            let mut message = format!(
                "the policy selects {} for {dir_name}, which no other policy of tier {} did, so it isolates {}: everything its {dir_name} rules do not allow is now denied. {} that {} allowed {} now denied: {}",
                list(&isolated, 4),
                cluster.tiers[policy.tier].name,
                if isolated.len() == 1 { "it" } else { "them" },
                if broken.len() == 1 {
                    "1 connection".to_owned()
                } else {
                    format!("{} connections", broken.len())
                },
                if broken.len() == 1 { "was" } else { "were" },
                if broken.len() == 1 { "is" } else { "are" },
                list(&broken, 3),
            );
            if dns {
                message.push_str(
                    ". This cuts off cluster DNS: every name lookup through kube-dns fails",
                );
            }
            out.push(Finding::policy(
                Severity::Warning,
                "newly-isolates",
                policy,
                if policy.name.kind == "NetworkPolicy" {
                    "spec.podSelector"
                } else {
                    "spec.selector"
                },
                message,
                Some(narrowing_fix(policy, &affected)),
            ));
        }
    }
}

/// Exclude the affected endpoints from the selector, by a label the selector tests
/// (`has(k8s-app)` → `k8s-app != 'kube-dns'`), else by namespace.
fn narrowing_fix(policy: &Policy, affected: &[&Endpoint]) -> String {
    let subject = &policy.subject.selector;
    let mut keys: Vec<&str> = Vec::new();
    collect_has(subject, &mut keys);
    if affected
        .iter()
        .all(|e| e.labels.get(DNS_LABEL.0).map(String::as_str) == Some(DNS_LABEL.1))
    {
        keys.insert(0, DNS_LABEL.0);
    }
    let kubernetes = policy.name.kind == "NetworkPolicy";
    for key in keys {
        let values: BTreeSet<&str> = affected
            .iter()
            .filter_map(|e| e.labels.get(key).map(String::as_str))
            .collect();
        if values.is_empty() || affected.iter().any(|e| !e.labels.contains_key(key)) {
            continue;
        }
        let values: Vec<&str> = values.into_iter().collect();
        if kubernetes {
            return format!(
                "if the policy is meant to add access, not to isolate these pods, leave them out: add `matchExpressions: [{{key: {key}, operator: NotIn, values: [{}]}}]` to spec.podSelector",
                values.join(", ")
            );
        }
        let narrowed = if values.len() == 1 {
            Selector::Ne(key.to_owned(), values[0].to_owned())
        } else {
            Selector::NotIn(
                key.to_owned(),
                values.iter().map(|v| (*v).to_owned()).collect(),
            )
        };
        return format!(
            "if the policy is meant to add access, not to isolate these endpoints, leave them out: `selector: {}`; or also allow what they serve",
            subject.clone().and(narrowed)
        );
    }
    let namespaces: BTreeSet<&str> = affected.iter().map(|e| e.namespace.as_str()).collect();
    let namespaces: Vec<&str> = namespaces.into_iter().collect();
    format!(
        "narrow the selector so that it leaves out {} (e.g. by namespace: {}), or also allow what they serve",
        affected
            .iter()
            .map(|e| e.workload())
            .collect::<Vec<_>>()
            .join(", "),
        namespaces
            .iter()
            .map(|n| format!("projectcalico.org/namespace != '{n}'"))
            .collect::<Vec<_>>()
            .join(" && ")
    )
}

fn collect_has<'a>(sel: &'a Selector, out: &mut Vec<&'a str>) {
    match sel {
        Selector::Has(k) => out.push(k),
        Selector::And(parts) => parts.iter().for_each(|p| collect_has(p, out)),
        _ => {}
    }
}
