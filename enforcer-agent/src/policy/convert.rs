//! Objects → [`Cluster`]: conversion and validation.
// Errors are built at most once per load; their size does not matter.
#![expect(clippy::result_large_err, reason = "cold error path, rich errors")]

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::{
    Cluster, Endpoint, EntityMatch, EntitySelector, HostEndpointInfo, IcmpMatch, LABEL_NAMESPACE,
    LABEL_ORCHESTRATOR, LABEL_SERVICE_ACCOUNT, NamedPort, NamespaceInfo, NamespaceScope,
    NetworkSetInfo, Policy, PolicyError, PolicyProblem, PortMatch, Rule, RuleAction,
    ServiceAccountMatch, ServiceInfo, Tier, TierAction, Warning, is_icmp, parse_protocol,
};
use crate::model::workload::IntOrString;
use crate::model::{
    KIND_CALICO_NETWORK_POLICY, KIND_GLOBAL_NETWORK_POLICY, KIND_K8S_NETWORK_POLICY, Loaded,
    Object, ObjectId, PolicyName, Source, calico, k8s,
};
use crate::selector::Selector;

/// Calico's order for converted Kubernetes `NetworkPolicies`.
pub const K8S_POLICY_ORDER: f64 = 1000.0;
pub const DEFAULT_TIER: &str = "default";
/// Calico's limit of rules per direction.
const MAX_RULES: usize = 1024;

struct Ctx<'a> {
    source: Option<&'a Source>,
    id: ObjectId,
}

impl Ctx<'_> {
    fn err(
        &self,
        field: impl Into<String>,
        problem: PolicyProblem,
        fix: Option<String>,
    ) -> PolicyError {
        PolicyError {
            file: self.source.cloned(),
            object: self.id.clone(),
            field: field.into(),
            problem,
            fix,
        }
    }

    fn warn(
        &self,
        field: impl Into<String>,
        message: impl Into<String>,
        fix: Option<String>,
    ) -> Warning {
        Warning {
            source: self.source.cloned(),
            object: self.id.clone(),
            field: field.into(),
            message: message.into(),
            fix,
        }
    }

    fn selector(&self, field: &str, text: &str) -> Result<Selector, PolicyError> {
        Selector::parse(text).map_err(|e| {
            self.err(
                field,
                PolicyProblem::InvalidSelector {
                    selector: text.to_owned(),
                    column: e.column,
                    message: e.message,
                },
                None,
            )
        })
    }

    /// A selector field where an empty string means "absent".
    fn opt_selector(
        &self,
        field: &str,
        text: Option<&String>,
    ) -> Result<Option<Selector>, PolicyError> {
        match text.map(|t| t.trim()) {
            None | Some("") => Ok(None),
            Some(t) => self.selector(field, t).map(Some),
        }
    }

    fn cidr(&self, field: &str, text: &str) -> Result<IpNet, PolicyError> {
        crate::model::parse_cidr(text).map_err(|message| {
            self.err(
                field,
                PolicyProblem::InvalidCidr {
                    value: text.to_owned(),
                    message,
                },
                None,
            )
        })
    }

    fn cidrs(&self, field: &str, texts: &[String]) -> Result<Vec<IpNet>, PolicyError> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| self.cidr(&format!("{field}[{i}]"), t))
            .collect()
    }
}

pub(super) fn build(objects: &[Loaded]) -> Result<(Cluster, Vec<Warning>), PolicyError> {
    let mut cluster = Cluster::default();
    let mut warnings = Vec::new();

    for loaded in objects {
        if let Object::Namespace(ns) = &loaded.object {
            cluster.namespaces.insert(
                ns.metadata.name.clone(),
                NamespaceInfo {
                    name: ns.metadata.name.clone(),
                    labels: ns.effective_labels(),
                },
            );
        }
    }

    let mut tiers: BTreeMap<String, Tier> = [
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
    .collect();

    for loaded in objects {
        let ctx = Ctx {
            source: Some(&loaded.source),
            id: loaded.object.id(),
        };
        match &loaded.object {
            Object::Pod(pod) => {
                if let Some(ep) = endpoint(&ctx, pod)? {
                    cluster.endpoints.push(ep);
                }
            }
            Object::Service(svc) => {
                let vips: Vec<IpAddr> = svc
                    .spec
                    .cluster_ip
                    .iter()
                    .filter_map(|ip| ip.parse().ok())
                    .collect();
                if !vips.is_empty() {
                    cluster.services.push(ServiceInfo {
                        id: ctx.id.clone(),
                        vips,
                        ports: svc.spec.ports.clone(),
                    });
                }
            }
            Object::NetworkSet(set) => {
                let ns = set
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".to_owned());
                let mut labels = set.metadata.labels.clone();
                labels.insert(LABEL_NAMESPACE.to_owned(), ns.clone());
                cluster.network_sets.push(NetworkSetInfo {
                    id: ctx.id.clone(),
                    namespace: Some(ns),
                    labels,
                    nets: ctx.cidrs("spec.nets", &set.spec.nets)?,
                });
            }
            Object::GlobalNetworkSet(set) => cluster.network_sets.push(NetworkSetInfo {
                id: ctx.id.clone(),
                namespace: None,
                labels: set.metadata.labels.clone(),
                nets: ctx.cidrs("spec.nets", &set.spec.nets)?,
            }),
            Object::HostEndpoint(hep) => {
                let mut ips = Vec::new();
                for (i, ip) in hep.spec.expected_ips.iter().enumerate() {
                    let net = ctx.cidr(&format!("spec.expectedIPs[{i}]"), ip)?;
                    ips.push(net.addr());
                }
                let mut named_ports = Vec::new();
                for (i, p) in hep.spec.ports.iter().enumerate() {
                    let field = format!("spec.ports[{i}].protocol");
                    let protocol = match &p.protocol {
                        None => super::PROTO_TCP,
                        Some(v) => protocol_value(&ctx, &field, v)?,
                    };
                    named_ports.push(NamedPort {
                        name: p.name.clone(),
                        protocol,
                        port: p.port,
                    });
                }
                cluster.host_endpoints.push(HostEndpointInfo {
                    id: ctx.id.clone(),
                    node: hep.spec.node.clone(),
                    iface: hep.spec.interface_name.clone(),
                    labels: hep.metadata.labels.clone(),
                    ips,
                    named_ports,
                    profiles: hep.spec.profiles.clone(),
                });
            }
            Object::Tier(tier) => {
                let default_action = match tier.spec.default_action {
                    None | Some(calico::Action::Deny) => TierAction::Deny,
                    Some(calico::Action::Pass) => TierAction::Pass,
                    Some(_) => {
                        return Err(ctx.err(
                            "spec.defaultAction",
                            PolicyProblem::InvalidTierAction,
                            None,
                        ));
                    }
                };
                tiers.insert(
                    tier.metadata.name.clone(),
                    Tier {
                        name: tier.metadata.name.clone(),
                        order: tier.spec.order,
                        default_action,
                    },
                );
            }
            _ => {}
        }
    }

    for ep in &cluster.endpoints {
        cluster
            .namespaces
            .entry(ep.namespace.clone())
            .or_insert_with(|| NamespaceInfo {
                name: ep.namespace.clone(),
                labels: [(super::LABEL_NAMESPACE_NAME.to_owned(), ep.namespace.clone())].into(),
            });
    }

    let mut tiers: Vec<Tier> = tiers.into_values().collect();
    tiers.sort_by(|a, b| {
        let (oa, ob) = (
            a.order.unwrap_or(f64::INFINITY),
            b.order.unwrap_or(f64::INFINITY),
        );
        oa.total_cmp(&ob).then_with(|| a.name.cmp(&b.name))
    });
    let tier_index =
        |ctx: &Ctx<'_>, field: &str, name: Option<&String>| -> Result<usize, PolicyError> {
            let name = name
                .map(String::as_str)
                .filter(|t| !t.is_empty())
                .unwrap_or(DEFAULT_TIER);
            tiers.iter().position(|t| t.name == name).ok_or_else(|| {
                ctx.err(
                    field,
                    PolicyProblem::UnknownTier {
                        tier: name.to_owned(),
                    },
                    Some(format!("create the Tier {name:?} or remove spec.tier")),
                )
            })
        };

    for loaded in objects {
        let ctx = Ctx {
            source: Some(&loaded.source),
            id: loaded.object.id(),
        };
        let policy = match &loaded.object {
            Object::NetworkPolicy(np) => {
                let tier = tier_index(&ctx, "spec", None)?;
                kubernetes_policy(&ctx, np, tier)?
            }
            Object::CalicoNetworkPolicy(np) => {
                let tier = tier_index(&ctx, "spec.tier", np.spec.tier.as_ref())?;
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
                    tier: tiers[tier].name.clone(),
                    kind: KIND_CALICO_NETWORK_POLICY.to_owned(),
                    namespace: ns.clone(),
                    name: np.metadata.name.clone(),
                };
                calico_policy(&ctx, name, tier, Some(&ns), &spec, &mut warnings)?
            }
            Object::GlobalNetworkPolicy(gnp) => {
                let tier = tier_index(&ctx, "spec.tier", gnp.spec.tier.as_ref())?;
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
                    tier: tiers[tier].name.clone(),
                    kind: KIND_GLOBAL_NETWORK_POLICY.to_owned(),
                    namespace: String::new(),
                    name: gnp.metadata.name.clone(),
                };
                calico_policy(&ctx, name, tier, None, &spec, &mut warnings)?
            }
            _ => continue,
        };
        let mut policy = policy;
        policy.source = Some(loaded.source.clone());
        cluster.policies.push(policy);
    }

    cluster.policies.sort_by(|a, b| {
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
    });
    cluster.tiers = tiers;
    cluster
        .endpoints
        .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    cluster.reindex();
    Ok((cluster, warnings))
}

fn endpoint(ctx: &Ctx<'_>, pod: &crate::model::Pod) -> Result<Option<Endpoint>, PolicyError> {
    let ips = pod.ips();
    if ips.is_empty() {
        return Ok(None);
    }
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let service_account = pod
        .spec
        .service_account_name
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let mut labels = pod.metadata.labels.clone();
    labels.insert(LABEL_NAMESPACE.to_owned(), namespace.clone());
    labels.insert(LABEL_ORCHESTRATOR.to_owned(), "k8s".to_owned());
    labels.insert(LABEL_SERVICE_ACCOUNT.to_owned(), service_account.clone());
    let mut named_ports = Vec::new();
    for (ci, c) in pod.spec.containers.iter().enumerate() {
        for (pi, p) in c.ports.iter().enumerate() {
            let Some(name) = &p.name else { continue };
            let protocol = parse_protocol(p.protocol()).ok_or_else(|| {
                ctx.err(
                    format!("spec.containers[{ci}].ports[{pi}].protocol"),
                    PolicyProblem::InvalidProtocol {
                        value: p.protocol().to_owned(),
                    },
                    None,
                )
            })?;
            named_ports.push(NamedPort {
                name: name.clone(),
                protocol,
                port: p.container_port,
            });
        }
    }
    Ok(Some(Endpoint {
        id: ctx.id.clone(),
        iface: pod.host_iface(),
        namespace,
        name: pod.metadata.name.clone(),
        labels,
        ips,
        named_ports,
        service_account,
        node: pod.spec.node_name.clone(),
    }))
}

fn protocol_value(ctx: &Ctx<'_>, field: &str, value: &IntOrString) -> Result<u8, PolicyError> {
    let parsed = match value {
        IntOrString::Int(n) => u8::try_from(*n).ok().filter(|p| *p >= 1),
        IntOrString::String(s) => parse_protocol(s),
    };
    parsed.ok_or_else(|| {
        ctx.err(
            field,
            PolicyProblem::InvalidProtocol {
                value: match value {
                    IntOrString::Int(n) => n.to_string(),
                    IntOrString::String(s) => s.clone(),
                },
            },
            None,
        )
    })
}

fn orchestrator_k8s() -> Selector {
    Selector::Eq(LABEL_ORCHESTRATOR.to_owned(), "k8s".to_owned())
}

fn namespace_scope(sel: Selector) -> NamespaceScope {
    match sel {
        Selector::All => NamespaceScope::AllNamespaced,
        s if s.mentions_global() => NamespaceScope::NonNamespaced,
        s => NamespaceScope::Selector(s),
    }
}

// ---------------------------------------------------------------------------------
// Kubernetes NetworkPolicy → Calico policy.
// ---------------------------------------------------------------------------------

fn kubernetes_policy(
    ctx: &Ctx<'_>,
    np: &k8s::NetworkPolicy,
    tier: usize,
) -> Result<Policy, PolicyError> {
    let ns = np
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let (applies_ingress, applies_egress) = np.spec.effective_policy_types();
    let mut ingress = Vec::new();
    for (i, r) in np.spec.ingress.iter().flatten().enumerate() {
        k8s_rule(
            ctx,
            &ns,
            &format!("spec.ingress[{i}]"),
            "from",
            &r.from,
            &r.ports,
            true,
            &mut ingress,
        )?;
    }
    let mut egress = Vec::new();
    for (i, r) in np.spec.egress.iter().flatten().enumerate() {
        k8s_rule(
            ctx,
            &ns,
            &format!("spec.egress[{i}]"),
            "to",
            &r.to,
            &r.ports,
            false,
            &mut egress,
        )?;
    }
    Ok(Policy {
        name: PolicyName {
            tier: DEFAULT_TIER.to_owned(),
            kind: KIND_K8S_NETWORK_POLICY.to_owned(),
            namespace: ns.clone(),
            name: np.metadata.name.clone(),
        },
        id: ctx.id.clone(),
        source: None,
        tier,
        order: Some(K8S_POLICY_ORDER),
        subject: EntitySelector {
            selector: orchestrator_k8s().and(np.spec.pod_selector.to_selector()),
            namespace: NamespaceScope::Named(ns),
        },
        subject_service_accounts: None,
        applies_ingress,
        applies_egress,
        ingress,
        egress,
        pre_dnat: false,
        do_not_track: false,
        apply_on_forward: false,
    })
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call per direction; a struct would only rename them"
)]
fn k8s_rule(
    ctx: &Ctx<'_>,
    ns: &str,
    field: &str,
    peers_key: &str,
    peers: &[k8s::NetworkPolicyPeer],
    ports: &[k8s::NetworkPolicyPort],
    is_ingress: bool,
    out: &mut Vec<Rule>,
) -> Result<(), PolicyError> {
    let mut peer_matches: Vec<(String, EntityMatch, Option<u8>)> = Vec::new();
    for (j, peer) in peers.iter().enumerate() {
        let pf = format!("{field}.{peers_key}[{j}]");
        peer_matches.push(k8s_peer(ctx, ns, &pf, peer)?);
    }
    if peer_matches.is_empty() {
        peer_matches.push((field.to_owned(), EntityMatch::default(), None));
    }
    let mut port_matches: Vec<(Option<u8>, Vec<PortMatch>)> = Vec::new();
    for (k, p) in ports.iter().enumerate() {
        port_matches.push(k8s_port(ctx, &format!("{field}.ports[{k}]"), p)?);
    }
    if port_matches.is_empty() {
        port_matches.push((None, Vec::new()));
    }
    for (peer_field, peer, ip_version) in &peer_matches {
        for (protocol, port_list) in &port_matches {
            let mut ports_side = EntityMatch {
                ports: port_list.clone(),
                ..EntityMatch::default()
            };
            let (source, destination) = if is_ingress {
                (peer.clone(), ports_side)
            } else {
                ports_side.nets.clone_from(&peer.nets);
                ports_side.not_nets.clone_from(&peer.not_nets);
                ports_side.selector.clone_from(&peer.selector);
                (EntityMatch::default(), ports_side)
            };
            out.push(Rule {
                action: RuleAction::Allow,
                ip_version: *ip_version,
                protocol: *protocol,
                not_protocol: None,
                icmp: None,
                not_icmp: None,
                source,
                destination,
                field: peer_field.clone(),
            });
        }
    }
    Ok(())
}

fn k8s_peer(
    ctx: &Ctx<'_>,
    ns: &str,
    field: &str,
    peer: &k8s::NetworkPolicyPeer,
) -> Result<(String, EntityMatch, Option<u8>), PolicyError> {
    let has_selectors = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
    if let Some(block) = &peer.ip_block {
        if has_selectors {
            return Err(ctx.err(
                field,
                PolicyProblem::InvalidKubernetes {
                    message: "ipBlock cannot be combined with podSelector or namespaceSelector in one peer".to_owned(),
                },
                Some("make them two peers (list items)".to_owned()),
            ));
        }
        let cidr = ctx.cidr(&format!("{field}.ipBlock.cidr"), &block.cidr)?;
        let mut except = Vec::new();
        for (i, e) in block.except.iter().enumerate() {
            let ef = format!("{field}.ipBlock.except[{i}]");
            let net = ctx.cidr(&ef, e)?;
            if !cidr.contains(&net) {
                return Err(ctx.err(
                    ef,
                    PolicyProblem::InvalidKubernetes {
                        message: format!("except {net} is not within cidr {cidr}"),
                    },
                    None,
                ));
            }
            except.push(net);
        }
        let version = if cidr.addr().is_ipv4() { 4 } else { 6 };
        return Ok((
            field.to_owned(),
            EntityMatch {
                nets: vec![cidr],
                not_nets: except,
                ..EntityMatch::default()
            },
            Some(version),
        ));
    }
    if !has_selectors {
        return Err(ctx.err(
            field,
            PolicyProblem::InvalidKubernetes {
                message: "a peer needs podSelector, namespaceSelector or ipBlock".to_owned(),
            },
            Some("use `{}` selectors to match everything, or omit the from/to list".to_owned()),
        ));
    }
    let pod = peer
        .pod_selector
        .as_ref()
        .map_or(Selector::All, k8s::LabelSelector::to_selector);
    let scope = match &peer.namespace_selector {
        Some(ls) => namespace_scope(ls.to_selector()),
        None => NamespaceScope::Named(ns.to_owned()),
    };
    Ok((
        field.to_owned(),
        EntityMatch {
            selector: Some(EntitySelector {
                selector: orchestrator_k8s().and(pod),
                namespace: scope,
            }),
            ..EntityMatch::default()
        },
        None,
    ))
}

fn k8s_port(
    ctx: &Ctx<'_>,
    field: &str,
    port: &k8s::NetworkPolicyPort,
) -> Result<(Option<u8>, Vec<PortMatch>), PolicyError> {
    let proto_text = port.protocol.as_deref().unwrap_or("TCP");
    let protocol = match proto_text {
        "TCP" => super::PROTO_TCP,
        "UDP" => super::PROTO_UDP,
        "SCTP" => super::PROTO_SCTP,
        other => {
            return Err(ctx.err(
                format!("{field}.protocol"),
                PolicyProblem::InvalidProtocol {
                    value: other.to_owned(),
                },
                Some("Kubernetes accepts TCP, UDP or SCTP (upper case)".to_owned()),
            ));
        }
    };
    let invalid = |f: &str, value: String, message: &str| {
        ctx.err(
            format!("{field}.{f}"),
            PolicyProblem::InvalidPort {
                value,
                message: message.to_owned(),
            },
            None,
        )
    };
    let ports = match &port.port {
        None => {
            if port.end_port.is_some() {
                return Err(invalid(
                    "endPort",
                    format!("{:?}", port.end_port),
                    "endPort needs a numeric port",
                ));
            }
            Vec::new()
        }
        Some(IntOrString::Int(n)) => {
            let start = u16::try_from(*n)
                .ok()
                .filter(|p| *p >= 1)
                .ok_or_else(|| invalid("port", n.to_string(), "must be 1-65535"))?;
            let end = match port.end_port {
                None => start,
                Some(e) => u16::try_from(e)
                    .ok()
                    .filter(|e| *e >= start)
                    .ok_or_else(|| {
                        invalid("endPort", e.to_string(), "must be ≥ port and ≤ 65535")
                    })?,
            };
            vec![PortMatch::Range(start, end)]
        }
        Some(IntOrString::String(name)) => {
            if port.end_port.is_some() {
                return Err(invalid(
                    "endPort",
                    name.clone(),
                    "endPort cannot be used with a named port",
                ));
            }
            vec![
                named_port(name)
                    .ok_or_else(|| invalid("port", name.clone(), "not a port number or name"))?,
            ]
        }
    };
    Ok((Some(protocol), ports))
}

/// A port given as a string: a number, `min:max`, or a name.
fn named_port(text: &str) -> Option<PortMatch> {
    if let Some((a, b)) = text.split_once(':') {
        let (a, b) = (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?);
        return (a <= b).then_some(PortMatch::Range(a, b));
    }
    if let Ok(n) = text.trim().parse::<u16>() {
        return Some(PortMatch::Range(n, n));
    }
    let valid_name = !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && text.chars().any(|c| c.is_ascii_alphabetic());
    valid_name.then(|| PortMatch::Named(text.to_owned()))
}

// ---------------------------------------------------------------------------------
// Calico policies.
// ---------------------------------------------------------------------------------

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
    let (applies_ingress, applies_egress) = match spec.types {
        Some(types) if !types.is_empty() => (
            types.contains(&calico::PolicyType::Ingress),
            types.contains(&calico::PolicyType::Egress),
        ),
        _ => (
            !spec.ingress.is_empty() || spec.egress.is_empty(),
            !spec.egress.is_empty(),
        ),
    };
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
            .map(|(i, r)| calico_rule(ctx, &format!("spec.{dir}[{i}]"), r, ns, warnings))
            .collect()
    };
    let ingress = convert_rules("ingress", spec.ingress)?;
    let egress = convert_rules("egress", spec.egress)?;
    Ok(Policy {
        name,
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
        return Err(ctx.err(
            format!("{field}.http"),
            PolicyProblem::Unsupported {
                what: "HTTP match rules (they need an application-layer proxy)".to_owned(),
            },
            None,
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
        if side.has_ports()
            && !matches!(
                protocol,
                Some(super::PROTO_TCP | super::PROTO_UDP | super::PROTO_SCTP)
            )
        {
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

fn calico_entity(
    ctx: &Ctx<'_>,
    field: &str,
    e: &calico::EntityRule,
    ns: Option<&str>,
    warnings: &mut Vec<Warning>,
) -> Result<EntityMatch, PolicyError> {
    if e.services.is_some() {
        return Err(ctx.err(
            format!("{field}.services"),
            PolicyProblem::Unsupported {
                what: "service matches in rules".to_owned(),
            },
            Some("select the service's pods with a selector instead".to_owned()),
        ));
    }
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
    // Calico scopes a rule's selector to namespaces (libcalico-go rule conversion):
    // an explicit namespaceSelector wins, else a namespaced policy's own namespace;
    // the scope only applies when the side has a selector, notSelector or
    // namespaceSelector at all.
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
        service_accounts,
        ports: calico_ports(ctx, &format!("{field}.ports"), &e.ports)?,
        not_ports: calico_ports(ctx, &format!("{field}.notPorts"), &e.not_ports)?,
    })
}

#[cfg(test)]
mod tests;
