//! Rules that never decide anything: every packet they match is matched first by an
//! earlier rule with a final action (Allow, Deny, Pass) — in the same policy, or in an
//! earlier policy of the same tier that certainly applies to the same endpoints (same
//! selector, same types). Conservative: a rule is reported only when containment is
//! certain from the rules' structure; anything unsure is left alone.

use super::{Context, Finding, Severity};
use crate::policy::{
    Direction, EntityMatch, EntitySelector, NamespaceScope, Policy, PortMatch, Rule, RuleAction,
};
use crate::selector::Selector;

pub(super) fn lint(cx: &Context<'_>, out: &mut Vec<Finding>) {
    let policies = &cx.cluster.policies;
    for (pi, policy) in policies.iter().enumerate() {
        for dir in [Direction::Ingress, Direction::Egress] {
            if !policy.applies(dir) {
                continue;
            }
            let rules = policy.rules(dir);
            for (j, later) in rules.iter().enumerate() {
                let earlier_here = rules[..j]
                    .iter()
                    .filter(|r| r.field != later.field)
                    .map(|r| (policy, r));
                let earlier_policies = policies[..pi]
                    .iter()
                    .filter(|q| same_endpoints(q, policy, dir))
                    .flat_map(|q| q.rules(dir).iter().map(move |r| (q, r)));
                let Some((q, r)) = earlier_here
                    .chain(earlier_policies)
                    .find(|(_, r)| decisive(r) && contains(r, later))
                else {
                    continue;
                };
                let by = if std::ptr::eq(q, policy) {
                    format!("rule {}", r.field)
                } else {
                    format!("rule {} of {}", r.field, super::object_label(&q.id))
                };
                let (severity, code, message, fix) = if r.action == later.action {
                    (
                        Severity::Info,
                        "redundant-rule",
                        format!(
                            "this {} rule is redundant: {by} matches everything it matches, with the same action",
                            action(later.action)
                        ),
                        "remove the rule, or narrow the earlier one".to_owned(),
                    )
                } else {
                    (
                        Severity::Warning,
                        "shadowed-rule",
                        format!(
                            "this {} rule never applies: {by} matches everything it matches first and decides {}",
                            action(later.action),
                            action(r.action)
                        ),
                        format!("move it before {}, or narrow the earlier rule", r.field),
                    )
                };
                out.push(Finding::policy(
                    severity,
                    code,
                    policy,
                    later.field.clone(),
                    message,
                    Some(fix),
                ));
            }
        }
    }
}

fn action(a: RuleAction) -> &'static str {
    match a {
        RuleAction::Allow => "Allow",
        RuleAction::Deny => "Deny",
        RuleAction::Pass => "Pass",
        RuleAction::Log => "Log",
    }
}

fn decisive(r: &Rule) -> bool {
    matches!(
        r.action,
        RuleAction::Allow | RuleAction::Deny | RuleAction::Pass
    )
}

/// `q` takes part in the evaluation of every endpoint `p` does, for `dir`, in the
/// same tier.
fn same_endpoints(q: &Policy, p: &Policy, dir: Direction) -> bool {
    q.tier == p.tier
        && q.applies(dir)
        && q.pre_dnat == p.pre_dnat
        && q.do_not_track == p.do_not_track
        && q.apply_on_forward == p.apply_on_forward
        && q.subject_service_accounts.is_none()
        && (q.subject == p.subject && p.subject_service_accounts.is_none()
            || q.subject.selector == Selector::All && q.subject.namespace == NamespaceScope::Any)
}

/// Every packet `b` matches, `a` matches.
fn contains(a: &Rule, b: &Rule) -> bool {
    let version = a.ip_version.is_none() || a.ip_version == b.ip_version;
    let protocol = a.protocol.is_none() || a.protocol == b.protocol;
    let not_protocol = match a.not_protocol {
        None => true,
        Some(np) => b.not_protocol == Some(np) || b.protocol.is_some_and(|p| p != np),
    };
    let icmp = match &a.icmp {
        None => true,
        Some(ai) => b.icmp.as_ref().is_some_and(|bi| {
            ai.icmp_type == bi.icmp_type && (ai.code.is_none() || ai.code == bi.code)
        }),
    };
    let not_icmp = a.not_icmp.is_none() || a.not_icmp == b.not_icmp;
    version
        && protocol
        && not_protocol
        && icmp
        && not_icmp
        && side_contains(&a.source, &b.source)
        && side_contains(&a.destination, &b.destination)
}

fn side_contains(a: &EntityMatch, b: &EntityMatch) -> bool {
    let nets = a.nets.is_empty()
        || (!b.nets.is_empty()
            && b.nets
                .iter()
                .all(|bn| a.nets.iter().any(|an| an.contains(bn))));
    // Every address `a` excludes must be excluded by `b` too (or outside `b`'s nets).
    let not_nets = a.not_nets.iter().all(|an| {
        b.not_nets.iter().any(|bn| bn.contains(an))
            || (!b.nets.is_empty() && b.nets.iter().all(|bn| !bn.contains(an) && !an.contains(bn)))
    });
    let selector = match (&a.selector, &b.selector) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(sa), Some(sb)) => selector_contains(sa, sb),
    };
    let not_selector = a.not_selector.is_none() || a.not_selector == b.not_selector;
    let service_accounts = a.service_accounts.is_none() || a.service_accounts == b.service_accounts;
    let ports = a.ports.is_empty()
        || (!b.ports.is_empty()
            && b.ports
                .iter()
                .all(|bp| a.ports.iter().any(|ap| port_contains(ap, bp))));
    let not_ports = a.not_ports.iter().all(|ap| {
        b.not_ports.iter().any(|bp| port_contains(bp, ap))
            || (!b.ports.is_empty()
                && matches!(ap, PortMatch::Range(..))
                && b.ports.iter().all(|bp| disjoint(ap, bp)))
    });
    nets && not_nets && selector && not_selector && service_accounts && ports && not_ports
}

fn port_contains(a: &PortMatch, b: &PortMatch) -> bool {
    match (a, b) {
        (PortMatch::Range(a0, a1), PortMatch::Range(b0, b1)) => a0 <= b0 && b1 <= a1,
        (PortMatch::Named(x), PortMatch::Named(y)) => x == y,
        _ => false,
    }
}

fn disjoint(a: &PortMatch, b: &PortMatch) -> bool {
    match (a, b) {
        (PortMatch::Range(a0, a1), PortMatch::Range(b0, b1)) => a1 < b0 || b1 < a0,
        _ => false,
    }
}

/// Every entity `b` selects, `a` selects: same namespace scope (or `a`'s is `Any`),
/// and `a`'s terms are a subset of `b`'s conjunction.
fn selector_contains(a: &EntitySelector, b: &EntitySelector) -> bool {
    let scope = a.namespace == NamespaceScope::Any || a.namespace == b.namespace;
    let terms = |s: &Selector| -> Vec<Selector> {
        match s {
            Selector::All => Vec::new(),
            Selector::And(parts) => parts.clone(),
            other => vec![other.clone()],
        }
    };
    let (ta, tb) = (terms(&a.selector), terms(&b.selector));
    scope && ta.iter().all(|t| tb.contains(t))
}
