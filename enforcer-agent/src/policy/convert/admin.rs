//! `AdminNetworkPolicy` and `BaselineAdminNetworkPolicy` → the Calico model, placed as
//! Calico places them (libcalico-go's admin policy conversion): an ANP is a policy in
//! tier `kube-admin` (order 1,000, before `default`) at order = its priority; the BANP
//! is a policy in tier `kube-baseline` (order 10,000,000, after `default`). Both tiers
//! end in `Pass`, so the walk is exactly the API's: ANPs by priority, first matching
//! rule decides (`Allow` final, `Deny` final, `Pass` skips the remaining ANPs), then
//! `NetworkPolicy` (tier `default`: if one selects the pod for that direction, it
//! allows or isolates), and only where none does, the BANP; nothing matched: allowed.
//!
//! Semantics follow the network-policy-api specification where it and Calico's
//! conversion differ:
//!
//! - a `namespaces` peer (and subject) means the *pods* of those namespaces
//!   (`projectcalico.org/orchestrator == 'k8s'`, so never a Calico network set);
//! - a `namedPort` matches the container port of that name with the protocol it is
//!   declared with (TCP, UDP or SCTP), not TCP only;
//! - `networks` may mix IPv4 and IPv6 CIDRs: they become one rule per family;
//! - `nodes` selects nodes by label and matches their `status.addresses`;
//! - `domainNames` (experimental, `Allow` rules only) cannot be matched by an L3/L4
//!   dataplane: as the API prescribes for a peer an implementation cannot honour, the
//!   peer matches nothing (fail closed), with a warning.
//!
//! Two ANPs at the same priority: the API leaves the order undefined; here (as in
//! Calico) they are ordered by name. What the API server would refuse (priority out of
//! 0-1000, a subject, peer or port with no field or two, an unknown action, `Pass` in
//! the baseline policy, a baseline policy not named `default`, more than 100 rules or
//! peers, a named port towards `networks`/`nodes`) is an error naming the field.

use std::sync::Arc;

use ipnet::IpNet;

use super::context::{Ctx, namespace_scope};
use crate::model::admin::{
    AdminEgressPeer, AdminEgressRule, AdminIngressPeer, AdminIngressRule, AdminNetworkPolicy,
    AdminPort, AdminSubject, BaselineAdminNetworkPolicy, NamespacedPod,
};
use crate::model::k8s::LabelSelector;
use crate::model::{KIND_ADMIN_NETWORK_POLICY, KIND_BASELINE_ADMIN_NETWORK_POLICY, PolicyName};
use crate::policy::{
    EntityMatch, EntitySelector, LABEL_ORCHESTRATOR, NamespaceScope, PROTO_SCTP, PROTO_TCP,
    PROTO_UDP, Policy, PolicyError, PolicyProblem, PortMatch, Rule, RuleAction, Warning,
};
use crate::selector::Selector;

/// The tiers Calico puts the two kinds in.
pub(super) const ADMIN_TIER: &str = "kube-admin";
pub(super) const BASELINE_TIER: &str = "kube-baseline";
/// The only name a `BaselineAdminNetworkPolicy` may have.
const BASELINE_NAME: &str = "default";
/// API limits: rules per direction, peers per rule, ports per rule, CIDRs per peer.
const MAX_RULES: usize = 100;
const MAX_PEERS: usize = 100;
const MAX_NETWORKS: usize = 25;

/// Which of the two kinds is converted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Admin,
    Baseline,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Admin => KIND_ADMIN_NETWORK_POLICY,
            Kind::Baseline => KIND_BASELINE_ADMIN_NETWORK_POLICY,
        }
    }
}

/// An `AdminNetworkPolicy` in tier `kube-admin` (index `tier`), at its priority.
pub(super) fn admin_network_policy(
    ctx: &Ctx<'_>,
    anp: &AdminNetworkPolicy,
    tier: usize,
    warnings: &mut Vec<Warning>,
) -> Result<Policy, PolicyError> {
    let priority = match anp.spec.priority {
        Some(p) if (0..=1000).contains(&p) => p,
        Some(p) => {
            return Err(invalid(
                ctx,
                "spec.priority",
                format!("priority {p} is not within 0-1000"),
            ));
        }
        None => {
            return Err(invalid(
                ctx,
                "spec.priority",
                "priority is required (0-1000)".to_owned(),
            ));
        }
    };
    let spec = Spec {
        kind: Kind::Admin,
        subject: &anp.spec.subject,
        ingress: &anp.spec.ingress,
        egress: &anp.spec.egress,
    };
    convert(
        ctx,
        &anp.metadata.name,
        &spec,
        tier,
        Some(priority as f64),
        warnings,
    )
}

/// The `BaselineAdminNetworkPolicy` (named `default`) in tier `kube-baseline`.
pub(super) fn baseline_admin_network_policy(
    ctx: &Ctx<'_>,
    banp: &BaselineAdminNetworkPolicy,
    tier: usize,
    warnings: &mut Vec<Warning>,
) -> Result<Policy, PolicyError> {
    if banp.metadata.name != BASELINE_NAME {
        return Err(ctx.err(
            "metadata.name",
            PolicyProblem::InvalidKubernetes {
                message: format!(
                    "a BaselineAdminNetworkPolicy must be named {BASELINE_NAME:?} (the cluster has only one), not {:?}",
                    banp.metadata.name
                ),
            },
            Some(format!("name it {BASELINE_NAME:?}")),
        ));
    }
    let spec = Spec {
        kind: Kind::Baseline,
        subject: &banp.spec.subject,
        ingress: &banp.spec.ingress,
        egress: &banp.spec.egress,
    };
    convert(ctx, &banp.metadata.name, &spec, tier, None, warnings)
}

/// What both kinds share.
struct Spec<'a> {
    kind: Kind,
    subject: &'a AdminSubject,
    ingress: &'a [AdminIngressRule],
    egress: &'a [AdminEgressRule],
}

fn invalid(ctx: &Ctx<'_>, field: impl Into<String>, message: String) -> PolicyError {
    ctx.err(field, PolicyProblem::InvalidKubernetes { message }, None)
}

fn convert(
    ctx: &Ctx<'_>,
    name: &str,
    spec: &Spec<'_>,
    tier: usize,
    order: Option<f64>,
    warnings: &mut Vec<Warning>,
) -> Result<Policy, PolicyError> {
    let subject = subject(ctx, spec.subject)?;
    for (dir, len) in [
        ("ingress", spec.ingress.len()),
        ("egress", spec.egress.len()),
    ] {
        if len > MAX_RULES {
            return Err(invalid(
                ctx,
                format!("spec.{dir}"),
                format!("{len} rules; the API allows {MAX_RULES} per direction"),
            ));
        }
    }
    let mut ingress = Vec::new();
    for (i, rule) in spec.ingress.iter().enumerate() {
        let field = format!("spec.ingress[{i}]");
        let action = action(ctx, spec.kind, &field, &rule.action)?;
        let ports = ports(ctx, &field, rule.ports.as_deref())?;
        let peers = ingress_peers(ctx, &field, &rule.from)?;
        ingress.extend(rules(action, &peers, &ports, true));
    }
    let mut egress = Vec::new();
    for (i, rule) in spec.egress.iter().enumerate() {
        let field = format!("spec.egress[{i}]");
        let action = action(ctx, spec.kind, &field, &rule.action)?;
        let ports = ports(ctx, &field, rule.ports.as_deref())?;
        let peers = egress_peers(ctx, spec.kind, &field, rule, action, warnings)?;
        if rule.ports.iter().flatten().any(|p| p.named_port.is_some())
            && rule
                .to
                .iter()
                .any(|p| !p.networks.is_empty() || p.nodes.is_some() || !p.domain_names.is_empty())
        {
            return Err(invalid(
                ctx,
                format!("{field}.ports"),
                "a named port cannot be used with networks, nodes or domainNames peers (they have no named ports)".to_owned(),
            ));
        }
        egress.extend(rules(action, &peers, &ports, false));
    }
    Ok(Policy {
        name: Arc::new(PolicyName {
            tier: match spec.kind {
                Kind::Admin => ADMIN_TIER,
                Kind::Baseline => BASELINE_TIER,
            }
            .to_owned(),
            kind: spec.kind.name().to_owned(),
            namespace: String::new(),
            name: name.to_owned(),
        }),
        id: ctx.id.clone(),
        source: None,
        tier,
        order,
        subject,
        subject_service_accounts: None,
        // As Calico types them: a direction without rules is not affected (both tiers
        // end in Pass, so this only keeps the policy out of walks it cannot decide).
        applies_ingress: !spec.ingress.is_empty(),
        applies_egress: !spec.egress.is_empty(),
        ingress,
        egress,
        pre_dnat: false,
        do_not_track: false,
        apply_on_forward: false,
    })
}

/// `projectcalico.org/orchestrator == 'k8s'`: pods only (as Calico writes every
/// converted pod selector), so a `namespaces` selection never takes in network sets.
fn pods() -> Selector {
    Selector::Eq(LABEL_ORCHESTRATOR.to_owned(), "k8s".to_owned())
}

/// Pods of the namespaces `namespaces` selects.
fn namespace_pods(namespaces: &LabelSelector) -> EntitySelector {
    EntitySelector {
        selector: pods(),
        namespace: namespace_scope(namespaces.to_selector()),
    }
}

/// Pods `pods.podSelector` selects in the namespaces `pods.namespaceSelector` selects.
fn namespaced_pods(p: &NamespacedPod) -> EntitySelector {
    EntitySelector {
        selector: pods().and(p.pod_selector.to_selector()),
        namespace: namespace_scope(p.namespace_selector.to_selector()),
    }
}

fn subject(ctx: &Ctx<'_>, s: &AdminSubject) -> Result<EntitySelector, PolicyError> {
    match (&s.namespaces, &s.pods) {
        (Some(ns), None) => Ok(namespace_pods(ns)),
        (None, Some(p)) => Ok(namespaced_pods(p)),
        _ => Err(invalid(
            ctx,
            "spec.subject",
            "the subject needs exactly one of namespaces or pods".to_owned(),
        )),
    }
}

fn action(ctx: &Ctx<'_>, kind: Kind, field: &str, text: &str) -> Result<RuleAction, PolicyError> {
    match (text, kind) {
        ("Allow", _) => Ok(RuleAction::Allow),
        ("Deny", _) => Ok(RuleAction::Deny),
        ("Pass", Kind::Admin) => Ok(RuleAction::Pass),
        _ => Err(ctx.err(
            format!("{field}.action"),
            PolicyProblem::InvalidKubernetes {
                message: format!(
                    "action {text:?}: a {} rule's action is {}",
                    kind.name(),
                    match kind {
                        Kind::Admin => "Allow, Deny or Pass",
                        Kind::Baseline => "Allow or Deny",
                    }
                ),
            },
            None,
        )),
    }
}

/// One peer of a rule as a Calico rule side (the address side of the rule).
struct Peer {
    field: String,
    side: EntityMatch,
    /// For a `networks` peer: the family of its CIDRs (one peer per family).
    ip_version: Option<u8>,
}

fn selector_peer(field: String, selector: EntitySelector) -> Peer {
    Peer {
        field,
        side: EntityMatch {
            selector: Some(selector),
            ..EntityMatch::default()
        },
        ip_version: None,
    }
}

fn peer_count(ctx: &Ctx<'_>, field: &str, count: usize) -> Result<(), PolicyError> {
    if count == 0 || count > MAX_PEERS {
        return Err(invalid(
            ctx,
            field,
            format!("{count} peers; a rule needs 1 to {MAX_PEERS}"),
        ));
    }
    Ok(())
}

fn one_field(ctx: &Ctx<'_>, field: &str, set: usize, names: &str) -> Result<(), PolicyError> {
    if set != 1 {
        return Err(ctx.err(
            field,
            PolicyProblem::InvalidKubernetes {
                message: format!("a peer needs exactly one of {names} ({set} given)"),
            },
            Some("write each kind of peer as its own list item".to_owned()),
        ));
    }
    Ok(())
}

fn ingress_peers(
    ctx: &Ctx<'_>,
    field: &str,
    from: &[AdminIngressPeer],
) -> Result<Vec<Peer>, PolicyError> {
    peer_count(ctx, &format!("{field}.from"), from.len())?;
    let mut out = Vec::new();
    for (j, peer) in from.iter().enumerate() {
        let f = format!("{field}.from[{j}]");
        let set = usize::from(peer.namespaces.is_some()) + usize::from(peer.pods.is_some());
        one_field(ctx, &f, set, "namespaces or pods")?;
        if let Some(ns) = &peer.namespaces {
            out.push(selector_peer(f, namespace_pods(ns)));
        } else if let Some(p) = &peer.pods {
            out.push(selector_peer(f, namespaced_pods(p)));
        }
    }
    Ok(out)
}

fn egress_peers(
    ctx: &Ctx<'_>,
    kind: Kind,
    field: &str,
    rule: &AdminEgressRule,
    action: RuleAction,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<Peer>, PolicyError> {
    peer_count(ctx, &format!("{field}.to"), rule.to.len())?;
    let mut out = Vec::new();
    for (j, peer) in rule.to.iter().enumerate() {
        let f = format!("{field}.to[{j}]");
        let set = usize::from(peer.namespaces.is_some())
            + usize::from(peer.pods.is_some())
            + usize::from(peer.nodes.is_some())
            + usize::from(!peer.networks.is_empty())
            + usize::from(!peer.domain_names.is_empty());
        one_field(
            ctx,
            &f,
            set,
            "namespaces, pods, nodes, networks or domainNames",
        )?;
        egress_peer(ctx, kind, &f, peer, action, &mut out, warnings)?;
    }
    Ok(out)
}

fn egress_peer(
    ctx: &Ctx<'_>,
    kind: Kind,
    f: &str,
    peer: &AdminEgressPeer,
    action: RuleAction,
    out: &mut Vec<Peer>,
    warnings: &mut Vec<Warning>,
) -> Result<(), PolicyError> {
    if let Some(ns) = &peer.namespaces {
        out.push(selector_peer(f.to_owned(), namespace_pods(ns)));
    } else if let Some(p) = &peer.pods {
        out.push(selector_peer(f.to_owned(), namespaced_pods(p)));
    } else if let Some(nodes) = &peer.nodes {
        out.push(selector_peer(
            f.to_owned(),
            EntitySelector {
                selector: nodes.to_selector(),
                namespace: NamespaceScope::Nodes,
            },
        ));
    } else if !peer.networks.is_empty() {
        if peer.networks.len() > MAX_NETWORKS {
            return Err(invalid(
                ctx,
                format!("{f}.networks"),
                format!(
                    "{} CIDRs; the API allows {MAX_NETWORKS}",
                    peer.networks.len()
                ),
            ));
        }
        let nets = ctx.cidrs(&format!("{f}.networks"), &peer.networks)?;
        for version in [4u8, 6] {
            let family: Vec<IpNet> = nets
                .iter()
                .copied()
                .filter(|n| n.addr().is_ipv4() == (version == 4))
                .collect();
            if !family.is_empty() {
                out.push(Peer {
                    field: f.to_owned(),
                    side: EntityMatch {
                        nets: family,
                        ..EntityMatch::default()
                    },
                    ip_version: Some(version),
                });
            }
        }
    } else {
        // domainNames.
        if kind == Kind::Baseline || action != RuleAction::Allow {
            return Err(invalid(
                ctx,
                format!("{f}.domainNames"),
                "domainNames peers are only valid in AdminNetworkPolicy Allow rules".to_owned(),
            ));
        }
        warnings.push(ctx.warn(
            format!("{f}.domainNames"),
            "domain names need DNS-aware enforcement, which this L3/L4 dataplane does not do: the peer matches nothing (the API's fail-closed reading of an Allow peer)",
            Some("allow the destinations' CIDRs with a networks peer".to_owned()),
        ));
    }
    Ok(())
}

/// One protocol's ports of a rule (`protocol: None`: the rule has no `ports`).
struct PortEntry {
    protocol: Option<u8>,
    ports: Vec<PortMatch>,
}

fn protocol(ctx: &Ctx<'_>, field: &str, text: Option<&str>) -> Result<u8, PolicyError> {
    match text.unwrap_or("TCP") {
        "TCP" => Ok(PROTO_TCP),
        "UDP" => Ok(PROTO_UDP),
        "SCTP" => Ok(PROTO_SCTP),
        other => Err(ctx.err(
            field,
            PolicyProblem::InvalidProtocol {
                value: other.to_owned(),
            },
            Some("the API accepts TCP, UDP or SCTP (upper case)".to_owned()),
        )),
    }
}

fn port_number(ctx: &Ctx<'_>, field: &str, n: i64) -> Result<u16, PolicyError> {
    u16::try_from(n).ok().filter(|p| *p >= 1).ok_or_else(|| {
        ctx.err(
            field,
            PolicyProblem::InvalidPort {
                value: n.to_string(),
                message: "must be 1-65535".to_owned(),
            },
            None,
        )
    })
}

/// The rule's ports grouped by protocol, in the order protocols first appear.
fn ports(
    ctx: &Ctx<'_>,
    field: &str,
    ports: Option<&[AdminPort]>,
) -> Result<Vec<PortEntry>, PolicyError> {
    let Some(ports) = ports else {
        return Ok(vec![PortEntry {
            protocol: None,
            ports: Vec::new(),
        }]);
    };
    if ports.is_empty() || ports.len() > MAX_PEERS {
        return Err(invalid(
            ctx,
            format!("{field}.ports"),
            format!(
                "{} ports; when given, a rule needs 1 to {MAX_PEERS}",
                ports.len()
            ),
        ));
    }
    let mut out: Vec<PortEntry> = Vec::new();
    let mut add = |proto: u8, m: PortMatch| match out.iter_mut().find(|e| e.protocol == Some(proto))
    {
        Some(e) => e.ports.push(m),
        None => out.push(PortEntry {
            protocol: Some(proto),
            ports: vec![m],
        }),
    };
    for (k, p) in ports.iter().enumerate() {
        let f = format!("{field}.ports[{k}]");
        let set = usize::from(p.port_number.is_some())
            + usize::from(p.named_port.is_some())
            + usize::from(p.port_range.is_some());
        if set != 1 {
            return Err(invalid(
                ctx,
                f,
                format!(
                    "a port needs exactly one of portNumber, namedPort or portRange ({set} given)"
                ),
            ));
        }
        if let Some(n) = &p.port_number {
            let proto = protocol(
                ctx,
                &format!("{f}.portNumber.protocol"),
                n.protocol.as_deref(),
            )?;
            let port = port_number(ctx, &format!("{f}.portNumber.port"), n.port)?;
            add(proto, PortMatch::Range(port, port));
        } else if let Some(r) = &p.port_range {
            let proto = protocol(
                ctx,
                &format!("{f}.portRange.protocol"),
                r.protocol.as_deref(),
            )?;
            let start = port_number(ctx, &format!("{f}.portRange.start"), r.start)?;
            let end = port_number(ctx, &format!("{f}.portRange.end"), r.end)?;
            if start >= end {
                return Err(ctx.err(
                    format!("{f}.portRange"),
                    PolicyProblem::InvalidPort {
                        value: format!("{start}-{end}"),
                        message: "start must be less than end".to_owned(),
                    },
                    None,
                ));
            }
            add(proto, PortMatch::Range(start, end));
        } else if let Some(name) = &p.named_port {
            let valid =
                super::context::named_port(name).is_some_and(|m| matches!(m, PortMatch::Named(_)));
            if !valid {
                return Err(ctx.err(
                    format!("{f}.namedPort"),
                    PolicyProblem::InvalidPort {
                        value: name.clone(),
                        message: "not a port name".to_owned(),
                    },
                    None,
                ));
            }
            // The container port of that name, whatever protocol it is declared with.
            for proto in [PROTO_TCP, PROTO_UDP, PROTO_SCTP] {
                add(proto, PortMatch::Named(name.clone()));
            }
        }
    }
    Ok(out)
}

/// The Calico rules of one API rule: every peer × every protocol's ports, all with the
/// rule's action (they are alternatives of one match, so their order is immaterial).
fn rules(action: RuleAction, peers: &[Peer], ports: &[PortEntry], ingress: bool) -> Vec<Rule> {
    let mut out = Vec::new();
    for peer in peers {
        for entry in ports {
            let mut ports_side = EntityMatch {
                ports: entry.ports.clone(),
                ..EntityMatch::default()
            };
            let (source, destination) = if ingress {
                (peer.side.clone(), ports_side)
            } else {
                ports_side.nets.clone_from(&peer.side.nets);
                ports_side.selector.clone_from(&peer.side.selector);
                (EntityMatch::default(), ports_side)
            };
            out.push(Rule {
                action,
                ip_version: peer.ip_version,
                protocol: entry.protocol,
                not_protocol: None,
                icmp: None,
                not_icmp: None,
                source,
                destination,
                field: peer.field.clone(),
            });
        }
    }
    out
}
