//! Calico objects → the Calico model: tiers, network sets, host endpoints and Calico
//! policies, with the checks libcalico-go's v3 validator (`lib/validator/v3`) makes,
//! and rule selectors scoped to namespaces as its rule conversion does
//! (`lib/backend/syncersv1/updateprocessors/rules.go`, [`calico_entity`]).
//!
//! Calico policies keep their own tier, order and types; only what the dataplane needs
//! resolved is resolved here (selectors parsed, CIDRs masked, ports and protocols read,
//! rule IP versions implied by their CIDRs).

use std::sync::Arc;

use super::context::{Ctx, named_port, namespace_scope, protocol_value};
use crate::model::workload::IntOrString;
use crate::model::{KIND_CALICO_NETWORK_POLICY, KIND_GLOBAL_NETWORK_POLICY, PolicyName, calico};
use crate::policy::{
    EntityMatch, EntitySelector, HostEndpointInfo, IcmpMatch, LABEL_NAMESPACE, NamedPort,
    NamespaceScope, NetworkSetInfo, PROTO_SCTP, PROTO_TCP, PROTO_UDP, Policy, PolicyError,
    PolicyProblem, PortMatch, Rule, RuleAction, ServiceAccountMatch, ServiceRef, Tier, TierAction,
    Warning, is_icmp,
};
use crate::selector::Selector;

/// Calico's limit of rules per direction.
const MAX_RULES: usize = 1024;

/// A `Tier`. Its `defaultAction` (what ends a tier no rule decided) is `Deny` unless
/// given; Calico accepts only `Deny` and `Pass` there.
pub(super) fn tier(ctx: &Ctx<'_>, tier: &calico::Tier) -> Result<Tier, PolicyError> {
    let default_action = match tier.spec.default_action {
        None | Some(calico::Action::Deny) => TierAction::Deny,
        Some(calico::Action::Pass) => TierAction::Pass,
        Some(_) => {
            return Err(ctx.err("spec.defaultAction", PolicyProblem::InvalidTierAction, None));
        }
    };
    Ok(Tier {
        name: tier.metadata.name.clone(),
        order: tier.spec.order,
        default_action,
    })
}

/// A namespaced `NetworkSet`: rule selectors see it with its labels plus
/// `projectcalico.org/namespace` (so a namespaced rule selector only sees the sets of
/// its namespace), never a policy's own selector.
pub(super) fn network_set(
    ctx: &Ctx<'_>,
    set: &calico::NetworkSet,
) -> Result<NetworkSetInfo, PolicyError> {
    let ns = set
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let mut labels = set.metadata.labels.clone();
    labels.insert(LABEL_NAMESPACE.to_owned(), ns.clone());
    Ok(NetworkSetInfo {
        id: ctx.id.clone(),
        namespace: Some(ns),
        labels,
        nets: ctx.cidrs("spec.nets", &set.spec.nets)?,
    })
}

/// A `GlobalNetworkSet`: labels as written, in no namespace (`namespaceSelector:
/// global()` sees it).
pub(super) fn global_network_set(
    ctx: &Ctx<'_>,
    set: &calico::GlobalNetworkSet,
) -> Result<NetworkSetInfo, PolicyError> {
    Ok(NetworkSetInfo {
        id: ctx.id.clone(),
        namespace: None,
        labels: set.metadata.labels.clone(),
        nets: ctx.cidrs("spec.nets", &set.spec.nets)?,
    })
}

/// A `HostEndpoint`: selectors see its `expectedIPs` (not the interface's addresses),
/// its labels, and its named `ports` (protocol TCP unless given).
pub(super) fn host_endpoint(
    ctx: &Ctx<'_>,
    hep: &calico::HostEndpoint,
) -> Result<HostEndpointInfo, PolicyError> {
    let mut ips = Vec::new();
    for (i, ip) in hep.spec.expected_ips.iter().enumerate() {
        let net = ctx.cidr(&format!("spec.expectedIPs[{i}]"), ip)?;
        ips.push(net.addr());
    }
    let mut named_ports = Vec::new();
    for (i, p) in hep.spec.ports.iter().enumerate() {
        let field = format!("spec.ports[{i}].protocol");
        let protocol = match &p.protocol {
            None => PROTO_TCP,
            Some(v) => protocol_value(ctx, &field, v)?,
        };
        named_ports.push(NamedPort {
            name: p.name.clone(),
            protocol,
            port: p.port,
        });
    }
    Ok(HostEndpointInfo {
        id: ctx.id.clone(),
        node: hep.spec.node.clone(),
        iface: hep.spec.interface_name.clone(),
        labels: hep.metadata.labels.clone(),
        ips,
        named_ports,
        profiles: hep.spec.profiles.clone(),
    })
}

/// A Calico `NetworkPolicy`: its selector, `serviceAccountSelector` and rule selectors
/// are scoped to its namespace (libcalico-go's `networkpolicyprocessor` ands
/// `projectcalico.org/namespace == '<ns>'` into them).
pub(super) fn network_policy(
    ctx: &Ctx<'_>,
    np: &calico::NetworkPolicy,
    tier: (usize, &str),
    warnings: &mut Vec<Warning>,
) -> Result<Policy, PolicyError> {
    let ns = np
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let spec = CommonSpec {
        order: np.spec.order,
        selector: np.spec.selector.as_ref(),
        namespace_selector: None,
        service_account_selector: np.spec.service_account_selector.as_ref(),
        types: np.spec.types.as_deref(),
        ingress: &np.spec.ingress,
        egress: &np.spec.egress,
        pre_dnat: false,
        do_not_track: false,
        apply_on_forward: false,
    };
    let name = PolicyName {
        tier: tier.1.to_owned(),
        kind: KIND_CALICO_NETWORK_POLICY.to_owned(),
        namespace: ns.clone(),
        name: np.metadata.name.clone(),
    };
    calico_policy(ctx, name, tier.0, Some(&ns), &spec, warnings)
}

/// A `GlobalNetworkPolicy`: cluster-wide, optionally restricted to endpoints of the
/// namespaces its `namespaceSelector` picks, and the only kind with the host endpoint
/// flags (`preDNAT`, `doNotTrack`, `applyOnForward`).
pub(super) fn global_network_policy(
    ctx: &Ctx<'_>,
    gnp: &calico::GlobalNetworkPolicy,
    tier: (usize, &str),
    warnings: &mut Vec<Warning>,
) -> Result<Policy, PolicyError> {
    let s = &gnp.spec;
    let spec = CommonSpec {
        order: s.order,
        selector: s.selector.as_ref(),
        namespace_selector: s.namespace_selector.as_ref(),
        service_account_selector: s.service_account_selector.as_ref(),
        types: s.types.as_deref(),
        ingress: &s.ingress,
        egress: &s.egress,
        pre_dnat: s.pre_dnat,
        do_not_track: s.do_not_track,
        apply_on_forward: s.apply_on_forward,
    };
    let name = PolicyName {
        tier: tier.1.to_owned(),
        kind: KIND_GLOBAL_NETWORK_POLICY.to_owned(),
        namespace: String::new(),
        name: gnp.metadata.name.clone(),
    };
    calico_policy(ctx, name, tier.0, None, &spec, warnings)
}

/// The spec fields both Calico policy kinds share (the global kind's extras default
/// for a namespaced policy).
struct CommonSpec<'a> {
    order: Option<f64>,
    selector: Option<&'a String>,
    namespace_selector: Option<&'a String>,
    service_account_selector: Option<&'a String>,
    types: Option<&'a [calico::PolicyType]>,
    ingress: &'a [calico::Rule],
    egress: &'a [calico::Rule],
    pre_dnat: bool,
    do_not_track: bool,
    apply_on_forward: bool,
}

impl CommonSpec<'_> {
    /// (applies to ingress, applies to egress). `types` as written, else as
    /// libcalico-go defaults them (`defaultPolicyTypesField`): `Ingress` when there
    /// are ingress rules or no rules at all, `Egress` when there are egress rules.
    fn policy_types(&self) -> (bool, bool) {
        match self.types {
            Some(types) if !types.is_empty() => (
                types.contains(&calico::PolicyType::Ingress),
                types.contains(&calico::PolicyType::Egress),
            ),
            _ => (
                !self.ingress.is_empty() || self.egress.is_empty(),
                !self.egress.is_empty(),
            ),
        }
    }
}

/// A policy of either Calico kind (`ns`: the namespace of a namespaced one).
fn calico_policy(
    ctx: &Ctx<'_>,
    name: PolicyName,
    tier: usize,
    ns: Option<&str>,
    spec: &CommonSpec<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<Policy, PolicyError> {
    let selector = ctx
        .opt_selector("spec.selector", spec.selector)?
        .unwrap_or(Selector::All);
    // A namespaced policy selects in its namespace; a global one in the namespaces its
    // namespaceSelector picks (`all()`: every namespaced endpoint), or everywhere.
    let scope = match ns {
        Some(ns) => NamespaceScope::Named(ns.to_owned()),
        None => match ctx.opt_selector("spec.namespaceSelector", spec.namespace_selector)? {
            None => NamespaceScope::Any,
            Some(s) => namespace_scope(s),
        },
    };
    let subject_service_accounts = ctx
        .opt_selector("spec.serviceAccountSelector", spec.service_account_selector)?
        .map(|s| ServiceAccountMatch {
            names: Vec::new(),
            selector: Some(s),
            namespace: ns.map(str::to_owned),
        });
    let (applies_ingress, applies_egress) = spec.policy_types();
    check_host_flags(ctx, spec, applies_egress)?;
    let mut convert_rules = |dir: &str, rules: &[calico::Rule]| -> Result<Vec<Rule>, PolicyError> {
        if rules.len() > MAX_RULES {
            return Err(ctx.err(
                format!("spec.{dir}"),
                PolicyProblem::TooManyRules { count: rules.len() },
                None,
            ));
        }
        rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let rule = calico_rule(ctx, &format!("spec.{dir}[{i}]"), r, ns, warnings)?;
                check_services_placement(ctx, dir, &rule)?;
                Ok(rule)
            })
            .collect()
    };
    let ingress = convert_rules("ingress", spec.ingress)?;
    let egress = convert_rules("egress", spec.egress)?;
    Ok(Policy {
        name: Arc::new(name),
        id: ctx.id.clone(),
        source: None,
        tier,
        order: spec.order,
        subject: EntitySelector {
            selector,
            namespace: scope,
        },
        subject_service_accounts,
        applies_ingress,
        applies_egress,
        ingress,
        egress,
        pre_dnat: spec.pre_dnat,
        do_not_track: spec.do_not_track,
        apply_on_forward: spec.apply_on_forward,
    })
}

/// The host endpoint flags as Calico's validator (`validateGlobalNetworkPolicySpec`)
/// allows them: `preDNAT` needs `applyOnForward`, has no egress (rules or type) and
/// excludes `doNotTrack`; `doNotTrack` needs `applyOnForward`.
fn check_host_flags(
    ctx: &Ctx<'_>,
    spec: &CommonSpec<'_>,
    applies_egress: bool,
) -> Result<(), PolicyError> {
    if spec.pre_dnat {
        if !spec.apply_on_forward {
            return Err(ctx.err(
                "spec.preDNAT",
                PolicyProblem::PreDnatWithoutApplyOnForward,
                Some("add `applyOnForward: true`".to_owned()),
            ));
        }
        if !spec.egress.is_empty() || applies_egress {
            return Err(ctx.err(
                if spec.egress.is_empty() {
                    "spec.types"
                } else {
                    "spec.egress"
                },
                PolicyProblem::PreDnatWithEgress,
                Some("move the egress rules to a policy without preDNAT".to_owned()),
            ));
        }
        if spec.do_not_track {
            return Err(ctx.err(
                "spec.doNotTrack",
                PolicyProblem::DoNotTrackWithPreDnat,
                None,
            ));
        }
    }
    if spec.do_not_track && !spec.apply_on_forward {
        return Err(ctx.err(
            "spec.doNotTrack",
            PolicyProblem::DoNotTrackWithoutApplyOnForward,
            Some("add `applyOnForward: true`".to_owned()),
        ));
    }
    Ok(())
}

/// A Calico rule, checked as libcalico-go's v3 validator checks rules: numeric or named
/// ports need protocol TCP, UDP or SCTP, `icmp`/`notICMP` need `ICMP` or `ICMPv6`, and one
/// rule holds one IP family (IPv4 and IPv6 CIDRs do not mix, nor contradict
/// `ipVersion`). A rule whose CIDRs are of one family applies to that family only, as
/// Felix renders it into that family's ruleset alone. `http` matches need an
/// application-layer proxy and are refused rather than ignored.
fn calico_rule(
    ctx: &Ctx<'_>,
    field: &str,
    rule: &calico::Rule,
    ns: Option<&str>,
    warnings: &mut Vec<Warning>,
) -> Result<Rule, PolicyError> {
    let action = match rule.action {
        calico::Action::Allow => RuleAction::Allow,
        calico::Action::Deny => RuleAction::Deny,
        calico::Action::Pass => RuleAction::Pass,
        calico::Action::Log => RuleAction::Log,
    };
    if rule.http.is_some() {
        // Calico itself enforces `http` only through its application layer policy
        // (Envoy sidecars); an L3/L4 dataplane cannot see methods or paths, and
        // ignoring the match would widen an Allow to every request.
        return Err(ctx.err(
            format!("{field}.http"),
            PolicyProblem::Unsupported {
                what: "`http` matches (HTTP methods and paths) need an application-layer proxy; this dataplane enforces L3/L4 only, so the policy is refused rather than enforced wider or narrower than written".to_owned(),
            },
            Some("remove `http` and allow the port instead (protocol: TCP, destination.ports), and restrict methods and paths in the application or a service mesh (e.g. an Istio AuthorizationPolicy)".to_owned()),
        ));
    }
    let protocol = rule
        .protocol
        .as_ref()
        .map(|p| protocol_value(ctx, &format!("{field}.protocol"), p))
        .transpose()?;
    let not_protocol = rule
        .not_protocol
        .as_ref()
        .map(|p| protocol_value(ctx, &format!("{field}.notProtocol"), p))
        .transpose()?;
    let icmp = icmp_fields(ctx, &format!("{field}.icmp"), rule.icmp.as_ref(), protocol)?;
    let not_icmp = icmp_fields(
        ctx,
        &format!("{field}.notICMP"),
        rule.not_icmp.as_ref(),
        protocol,
    )?;
    let source = calico_entity(ctx, &format!("{field}.source"), &rule.source, ns, warnings)?;
    let destination = calico_entity(
        ctx,
        &format!("{field}.destination"),
        &rule.destination,
        ns,
        warnings,
    )?;
    for (side, f) in [(&source, "source"), (&destination, "destination")] {
        if side.has_ports() && !matches!(protocol, Some(PROTO_TCP | PROTO_UDP | PROTO_SCTP)) {
            return Err(ctx.err(
                format!("{field}.{f}.ports"),
                PolicyProblem::PortsWithoutPortProtocol,
                Some("add `protocol: TCP` (or UDP/SCTP) to the rule".to_owned()),
            ));
        }
    }
    let mut families: Vec<u8> = source
        .nets
        .iter()
        .chain(&source.not_nets)
        .chain(&destination.nets)
        .chain(&destination.not_nets)
        .map(|n| if n.addr().is_ipv4() { 4 } else { 6 })
        .collect();
    families.sort_unstable();
    families.dedup();
    if let Some(v) = rule.ip_version {
        if v != 4 && v != 6 {
            return Err(ctx.err(
                format!("{field}.ipVersion"),
                PolicyProblem::InvalidIpVersion { value: v },
                None,
            ));
        }
        if families.iter().any(|f| *f != v) {
            return Err(ctx.err(
                format!("{field}.ipVersion"),
                PolicyProblem::MixedIpVersions,
                None,
            ));
        }
    }
    if families.len() > 1 {
        return Err(ctx.err(
            field,
            PolicyProblem::MixedIpVersions,
            Some("split the rule into an IPv4 rule and an IPv6 rule".to_owned()),
        ));
    }
    Ok(Rule {
        action,
        ip_version: rule.ip_version.or_else(|| families.first().copied()),
        protocol,
        not_protocol,
        icmp,
        not_icmp,
        source,
        destination,
        field: field.to_owned(),
    })
}

/// `icmp`/`notICMP` as Calico validates them: `type` 0-254 and `code` 0-255, a code only
/// with a type; only with protocol `ICMP` or `ICMPv6`.
fn icmp_fields(
    ctx: &Ctx<'_>,
    field: &str,
    fields: Option<&calico::IcmpFields>,
    protocol: Option<u8>,
) -> Result<Option<IcmpMatch>, PolicyError> {
    let Some(f) = fields else { return Ok(None) };
    if !protocol.is_some_and(is_icmp) {
        return Err(ctx.err(
            field,
            PolicyProblem::IcmpWithoutIcmpProtocol,
            Some("add `protocol: ICMP` (or ICMPv6) to the rule".to_owned()),
        ));
    }
    let invalid = |message: &str| {
        ctx.err(
            field,
            PolicyProblem::InvalidIcmp {
                message: message.to_owned(),
            },
            None,
        )
    };
    let Some(t) = f.icmp_type else {
        if f.code.is_some() {
            return Err(invalid("an ICMP code needs a type"));
        }
        return Ok(None);
    };
    let icmp_type = u8::try_from(t)
        .ok()
        .filter(|t| *t <= 254)
        .ok_or_else(|| invalid("ICMP type must be 0-254"))?;
    let code = f
        .code
        .map(|c| u8::try_from(c).map_err(|_| invalid("ICMP code must be 0-255")))
        .transpose()?;
    Ok(Some(IcmpMatch { icmp_type, code }))
}

/// `ports`/`notPorts`: numbers, `"min:max"` ranges and port names
/// (`numorstring.Port`).
fn calico_ports(
    ctx: &Ctx<'_>,
    field: &str,
    ports: &[IntOrString],
) -> Result<Vec<PortMatch>, PolicyError> {
    ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let f = format!("{field}[{i}]");
            let bad = |value: String| {
                ctx.err(
                    &f,
                    PolicyProblem::InvalidPort {
                        value,
                        message:
                            "expected a number 0-65535, \"min:max\" with min ≤ max, or a port name"
                                .to_owned(),
                    },
                    None,
                )
            };
            match p {
                IntOrString::Int(n) => u16::try_from(*n)
                    .map(|n| PortMatch::Range(n, n))
                    .map_err(|_| bad(n.to_string())),
                IntOrString::String(s) => named_port(s).ok_or_else(|| bad(s.clone())),
            }
        })
        .collect()
}

/// A side's `services` match, with the restrictions libcalico-go's validator puts on
/// it (`validateEntityRule`, `validateGlobalNetworkPolicySpec`): a name; no selector,
/// notSelector, namespaceSelector, serviceAccounts, nets or notNets beside it (the
/// Service's endpoints are the addresses); in a global policy a namespace (a
/// namespaced policy's own namespace is the default).
fn services_match(
    ctx: &Ctx<'_>,
    field: &str,
    e: &calico::EntityRule,
    ns: Option<&str>,
) -> Result<Option<ServiceRef>, PolicyError> {
    let Some(svc) = &e.services else {
        return Ok(None);
    };
    let f = format!("{field}.services");
    let bad = |message: &str, fix: &str| {
        ctx.err(
            &f,
            PolicyProblem::InvalidServiceMatch {
                message: message.to_owned(),
            },
            Some(fix.to_owned()),
        )
    };
    if svc.name.is_empty() {
        return Err(bad("a service match needs a name", "name the Service"));
    }
    let conflicts = [
        (e.selector.is_some() || e.pod_selector.is_some(), "selector"),
        (e.not_selector.is_some(), "notSelector"),
        (e.namespace_selector.is_some(), "namespaceSelector"),
        (e.service_accounts.is_some(), "serviceAccounts"),
        (!e.nets.is_empty(), "nets"),
        (!e.not_nets.is_empty(), "notNets"),
    ];
    if let Some((_, what)) = conflicts.iter().find(|(set, _)| *set) {
        return Err(bad(
            &format!(
                "cannot be combined with {what} in the same rule side (the Service's endpoints are the addresses)"
            ),
            &format!("remove {what}, or write a second rule for it"),
        ));
    }
    let namespace = match (&svc.namespace, ns) {
        (Some(n), _) if !n.is_empty() => n.clone(),
        (_, Some(own)) => own.to_owned(),
        (_, None) => {
            return Err(bad(
                "a global policy's service match must name the Service's namespace",
                "add services.namespace",
            ));
        }
    };
    Ok(Some(ServiceRef {
        namespace,
        name: svc.name.clone(),
    }))
}

/// Where `services` may appear (libcalico-go's policy validators): as the source of
/// an ingress rule or the destination of an egress rule (the peer), and a destination
/// match takes its ports from the endpoints, so it has no `ports`/`notPorts`.
fn check_services_placement(ctx: &Ctx<'_>, dir: &str, rule: &Rule) -> Result<(), PolicyError> {
    let (local, local_name) = if dir == "ingress" {
        (&rule.destination, "destination")
    } else {
        (&rule.source, "source")
    };
    if local.services.is_some() {
        return Err(ctx.err(
            format!("{}.{local_name}.services", rule.field),
            PolicyProblem::InvalidServiceMatch {
                message: format!("not allowed in an {dir} rule's {local_name} (it names the policy's own endpoint there)"),
            },
            Some(if dir == "ingress" {
                "match services in source".to_owned()
            } else {
                "match services in destination".to_owned()
            }),
        ));
    }
    if rule.destination.services.is_some() && rule.destination.has_ports() {
        return Err(ctx.err(
            format!("{}.destination.ports", rule.field),
            PolicyProblem::InvalidServiceMatch {
                message: "cannot specify ports or notPorts with a destination service match (the endpoints' ports are used)".to_owned(),
            },
            Some("remove the ports, or match the pods with a selector".to_owned()),
        ));
    }
    Ok(())
}

/// A rule side (`source`/`destination`). Its selector is scoped to namespaces as
/// libcalico-go's rule conversion (`getEndpointSelector`) does: a `namespaceSelector`
/// wins, else a namespaced policy's own namespace, else none; and the scope applies as
/// soon as the side uses any of `selector`, `notSelector` or `namespaceSelector`.
/// `notSelector` itself stays unscoped (it also matches addresses of no endpoint).
/// Kubernetes-shaped `podSelector`/`namespaceSelector` (a frequent copy-paste) are read
/// as the Calico selectors they mean, with a warning giving the Calico spelling.
fn calico_entity(
    ctx: &Ctx<'_>,
    field: &str,
    e: &calico::EntityRule,
    ns: Option<&str>,
    warnings: &mut Vec<Warning>,
) -> Result<EntityMatch, PolicyError> {
    let services = services_match(ctx, field, e, ns)?;
    let mut selector = ctx.opt_selector(&format!("{field}.selector"), e.selector.as_ref())?;
    if let Some(ls) = &e.pod_selector {
        let converted = ls.to_selector();
        let combined = match selector.take() {
            Some(s) => s.and(converted),
            None => converted,
        };
        warnings.push(ctx.warn(
            format!("{field}.podSelector"),
            "Kubernetes-style podSelector in a Calico rule; Calico rules take a selector string",
            Some(format!("selector: {combined}")),
        ));
        selector = Some(combined);
    }
    let ns_selector = match &e.namespace_selector {
        None => None,
        Some(calico::NamespaceSelectorField::Calico(text)) => {
            ctx.opt_selector(&format!("{field}.namespaceSelector"), Some(text))?
        }
        Some(calico::NamespaceSelectorField::Kubernetes(ls)) => {
            let converted = ls.to_selector();
            warnings.push(ctx.warn(
                format!("{field}.namespaceSelector"),
                "Kubernetes-style namespaceSelector (matchLabels/matchExpressions) in a Calico rule; Calico takes a selector string over namespace labels",
                Some(format!("namespaceSelector: {converted}")),
            ));
            Some(converted)
        }
    };
    let not_selector =
        ctx.opt_selector(&format!("{field}.notSelector"), e.not_selector.as_ref())?;
    // The namespace scope (see above): only when the side selects at all.
    let scope = match ns_selector {
        Some(s) => namespace_scope(s),
        None => ns.map_or(NamespaceScope::Any, |n| NamespaceScope::Named(n.to_owned())),
    };
    let wants_scope =
        selector.is_some() || not_selector.is_some() || e.namespace_selector.is_some();
    let selector = if wants_scope && scope != NamespaceScope::Any {
        Some(EntitySelector {
            selector: selector.unwrap_or(Selector::All),
            namespace: scope,
        })
    } else {
        selector.map(|s| EntitySelector {
            selector: s,
            namespace: NamespaceScope::Any,
        })
    };
    let service_accounts = match &e.service_accounts {
        None => None,
        Some(sa) => Some(ServiceAccountMatch {
            names: sa.names.clone(),
            selector: ctx.opt_selector(
                &format!("{field}.serviceAccounts.selector"),
                sa.selector.as_ref(),
            )?,
            namespace: ns.map(str::to_owned),
        }),
    };
    Ok(EntityMatch {
        nets: ctx.cidrs(&format!("{field}.nets"), &e.nets)?,
        not_nets: ctx.cidrs(&format!("{field}.notNets"), &e.not_nets)?,
        selector,
        not_selector,
        service_accounts: service_accounts.map(Box::new),
        services: services.map(Box::new),
        ports: calico_ports(ctx, &format!("{field}.ports"), &e.ports)?,
        not_ports: calico_ports(ctx, &format!("{field}.notPorts"), &e.not_ports)?,
    })
}
