//! Validation: what Calico's validation (libcalico-go `validator/v3`) or the Kubernetes
//! API server rejects. The policy model refuses an invalid object at its first error;
//! here every invalid object is reported, and the rest of the cluster is still built
//! so that the lints can run on it. A few rules the policy model does not enforce (it
//! does not need to) are checked on the objects as written.

use super::{Finding, Report, Severity};
use crate::model::calico::{self, NamespaceSelectorField};
use crate::model::workload::IntOrString;
use crate::model::{Loaded, Object};
use crate::offline::Completed;
use crate::policy::{Cluster, PolicyError, PolicyProblem, Warning};
use crate::selector::Selector;

/// Reports every invalid object and returns the model of the valid ones.
pub(super) fn validate(completed: &Completed, report: &mut Report) -> (Cluster, Vec<Warning>) {
    let mut objects: Vec<Loaded> = completed.objects.clone();
    for l in &objects {
        raw_rules(l, &mut report.findings);
    }
    // Each failed build names one invalid object; drop it and build again.
    for _ in 0..=completed.objects.len() {
        match Cluster::from_objects(&objects) {
            Ok(built) => return built,
            Err(e) => {
                report.findings.push(policy_error(&e));
                let before = objects.len();
                objects.retain(|l| l.object.id() != e.object);
                if objects.len() == before {
                    break;
                }
            }
        }
    }
    (Cluster::default(), Vec::new())
}

fn policy_error(e: &PolicyError) -> Finding {
    let code = match &e.problem {
        PolicyProblem::InvalidSelector { .. } => "invalid-selector",
        PolicyProblem::InvalidCidr { .. } => "invalid-cidr",
        PolicyProblem::InvalidProtocol { .. } => "invalid-protocol",
        PolicyProblem::InvalidPort { .. } => "invalid-port",
        PolicyProblem::PortsWithoutPortProtocol => "ports-need-protocol",
        PolicyProblem::MixedIpVersions => "mixed-ip-versions",
        PolicyProblem::InvalidIpVersion { .. } => "invalid-ip-version",
        PolicyProblem::IcmpWithoutIcmpProtocol | PolicyProblem::InvalidIcmp { .. } => {
            "invalid-icmp"
        }
        PolicyProblem::PreDnatWithoutApplyOnForward => "pre-dnat-needs-apply-on-forward",
        PolicyProblem::PreDnatWithEgress => "pre-dnat-with-egress",
        PolicyProblem::DoNotTrackWithPreDnat | PolicyProblem::DoNotTrackWithoutApplyOnForward => {
            "do-not-track"
        }
        PolicyProblem::UnknownTier { .. } => "unknown-tier",
        PolicyProblem::InvalidTierAction => "invalid-tier-action",
        PolicyProblem::TooManyRules { .. } => "too-many-rules",
        PolicyProblem::Unsupported { .. } => "unsupported",
        PolicyProblem::InvalidKubernetes { .. } => "invalid-kubernetes",
        PolicyProblem::InvalidServiceMatch { .. } => "invalid-service-match",
        #[expect(
            unreachable_patterns,
            reason = "the policy model may grow problems; they still get reported"
        )]
        _ => "invalid",
    };
    Finding::about(
        Severity::Error,
        code,
        e.file.as_ref(),
        &e.object,
        e.field.clone(),
        e.problem.to_string(),
        e.fix.clone(),
    )
}

/// The spec parts Calico and Kubernetes policies share, as written.
struct Spec<'a> {
    name: &'a str,
    selector: Option<&'a String>,
    service_account_selector: Option<&'a String>,
    types: Option<&'a [calico::PolicyType]>,
    ingress: &'a [calico::Rule],
    egress: &'a [calico::Rule],
}

fn raw_rules(l: &Loaded, out: &mut Vec<Finding>) {
    let id = l.object.id();
    let mut push = |field: String, message: String, fix: Option<String>| {
        out.push(Finding::about(
            Severity::Error,
            "invalid-policy",
            Some(&l.source),
            &id,
            field,
            message,
            fix,
        ));
    };
    let spec = match &l.object {
        Object::CalicoNetworkPolicy(p) => Spec {
            name: &p.metadata.name,
            selector: p.spec.selector.as_ref(),
            service_account_selector: p.spec.service_account_selector.as_ref(),
            types: p.spec.types.as_deref(),
            ingress: &p.spec.ingress,
            egress: &p.spec.egress,
        },
        Object::GlobalNetworkPolicy(p) => Spec {
            name: &p.metadata.name,
            selector: p.spec.selector.as_ref(),
            service_account_selector: p.spec.service_account_selector.as_ref(),
            types: p.spec.types.as_deref(),
            ingress: &p.spec.ingress,
            egress: &p.spec.egress,
        },
        Object::NetworkSet(s) => {
            if s.metadata
                .labels
                .contains_key(crate::policy::LABEL_NAMESPACE)
            {
                push(
                    "metadata.labels".to_owned(),
                    "projectcalico.org/namespace is not a valid label name on a NetworkSet (Calico sets it)".to_owned(),
                    Some("remove the label; the set's namespace is metadata.namespace".to_owned()),
                );
            }
            return;
        }
        Object::NetworkPolicy(p) => {
            if !is_dns_subdomain(&p.metadata.name) {
                push(
                    "metadata.name".to_owned(),
                    name_message(
                        &p.metadata.name,
                        "a DNS subdomain: lower case alphanumerics, '-' and '.'",
                    ),
                    None,
                );
            }
            return;
        }
        _ => return,
    };
    if !is_policy_name(spec.name) {
        push(
            "metadata.name".to_owned(),
            name_message(
                spec.name,
                "lower case alphanumerics and '-' (a tier prefix `tier.` is allowed)",
            ),
            None,
        );
    }
    for (field, text) in [
        ("spec.selector", spec.selector),
        ("spec.serviceAccountSelector", spec.service_account_selector),
    ] {
        if text.is_some_and(|t| mentions_global(t)) {
            push(
                field.to_owned(),
                "global() is only valid as a rule's namespaceSelector".to_owned(),
                Some("select host endpoints by their labels instead".to_owned()),
            );
        }
    }
    if let Some(types) = spec.types {
        for (i, t) in types.iter().enumerate() {
            if types[..i].contains(t) {
                push(
                    format!("spec.types[{i}]"),
                    format!("'{t:?}' type specified more than once"),
                    Some(format!("remove spec.types[{i}]")),
                );
            }
        }
    }
    for (dir, rules) in [("ingress", spec.ingress), ("egress", spec.egress)] {
        for (i, rule) in rules.iter().enumerate() {
            let at = format!("spec.{dir}[{i}]");
            icmp_version(rule, &at, &mut push);
            for (side, e) in [("source", &rule.source), ("destination", &rule.destination)] {
                for (f, text) in [("selector", &e.selector), ("notSelector", &e.not_selector)] {
                    if text.as_deref().is_some_and(mentions_global) {
                        push(
                            format!("{at}.{side}.{f}"),
                            "global() is only valid as a rule's namespaceSelector".to_owned(),
                            Some("write `namespaceSelector: global()` and keep the other terms in the selector".to_owned()),
                        );
                    }
                }
                if let Some(NamespaceSelectorField::Calico(text)) = &e.namespace_selector
                    && let Ok(sel) = Selector::parse(text)
                    && sel.mentions_global()
                    && sel != Selector::Global
                {
                    push(
                        format!("{at}.{side}.namespaceSelector"),
                        "global() must be the whole namespaceSelector".to_owned(),
                        Some("write `namespaceSelector: global()` and move the other terms to `selector`".to_owned()),
                    );
                }
                if e.services.is_some() && (!e.ports.is_empty() || !e.not_ports.is_empty()) {
                    push(
                        format!("{at}.{side}.ports"),
                        "cannot specify ports with a service match (the Service's ports are used)"
                            .to_owned(),
                        None,
                    );
                }
            }
        }
    }
}

fn icmp_version(
    rule: &calico::Rule,
    at: &str,
    push: &mut impl FnMut(String, String, Option<String>),
) {
    let is = |p: Option<&IntOrString>, name: &str, number: u32| match p {
        Some(IntOrString::String(s)) => s.eq_ignore_ascii_case(name),
        Some(IntOrString::Int(n)) => *n == number,
        None => false,
    };
    let Some(version) = rule.ip_version else {
        return;
    };
    let icmp = is(rule.protocol.as_ref(), "ICMP", 1) || is(rule.not_protocol.as_ref(), "ICMP", 1);
    let icmpv6 =
        is(rule.protocol.as_ref(), "ICMPv6", 58) || is(rule.not_protocol.as_ref(), "ICMPv6", 58);
    if icmp && version != 4 {
        push(
            format!("{at}.ipVersion"),
            "ipVersion must be 4 with protocol ICMP".to_owned(),
            Some("use protocol ICMPv6 for IPv6, or ipVersion: 4".to_owned()),
        );
    }
    if icmpv6 && version != 6 {
        push(
            format!("{at}.ipVersion"),
            "ipVersion must be 6 with protocol ICMPv6".to_owned(),
            Some("use protocol ICMP for IPv4, or ipVersion: 6".to_owned()),
        );
    }
}

fn mentions_global(text: &str) -> bool {
    Selector::parse(text).is_ok_and(|s| s.mentions_global())
}

fn name_message(name: &str, rule: &str) -> String {
    if name.is_empty() {
        "metadata.name is missing".to_owned()
    } else {
        format!("invalid name {name:?}: must be {rule}, at most 253 characters")
    }
}

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_label)
}

/// Calico policy names: a DNS label, optionally prefixed by the tier (`tier.name`).
fn is_policy_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').count() <= 2 && s.split('.').all(is_label)
}

/// Rules of a direction the policy does not apply to: accepted, never used.
pub(super) fn ignored_rules(cluster: &Cluster, out: &mut Vec<Finding>) {
    for p in &cluster.policies {
        for (dir, applies, rules) in [
            ("ingress", p.applies_ingress, &p.ingress),
            ("egress", p.applies_egress, &p.egress),
        ] {
            if !applies && !rules.is_empty() {
                let types_field = if p.name.kind == "NetworkPolicy" {
                    "spec.policyTypes"
                } else {
                    "spec.types"
                };
                out.push(Finding::policy(
                    Severity::Warning,
                    "ignored-rules",
                    p,
                    format!("spec.{dir}"),
                    format!(
                        "{dir} rules, but {types_field} does not include {}: they are never used",
                        if dir == "ingress" {
                            "Ingress"
                        } else {
                            "Egress"
                        }
                    ),
                    Some(format!(
                        "add {} to {types_field}, or remove spec.{dir}",
                        if dir == "ingress" {
                            "Ingress"
                        } else {
                            "Egress"
                        }
                    )),
                ));
            }
        }
    }
}
