//! Kubernetes objects → the Calico model, as Calico's Kubernetes datastore converts
//! them (libcalico-go `lib/backend/k8s/conversion`):
//!
//! - a Pod with an address is a workload endpoint whose labels are the pod's plus
//!   Calico's built-ins: `projectcalico.org/namespace`, `projectcalico.org/orchestrator:
//!   k8s` and `projectcalico.org/serviceaccount` (the workload endpoint conversion);
//! - a `NetworkPolicy` is a Calico `NetworkPolicy` in tier `default` at order 1000 whose
//!   rules all `Allow` (`K8sNetworkPolicyToCalico`); see [`kubernetes_policy`].
//!
//! Calico drops a rule it cannot convert and logs it; here such a rule is an error with
//! its field, since a dropped Allow silently narrows what the author wrote.

use std::sync::Arc;

use super::context::{Ctx, DEFAULT_TIER, named_port, namespace_scope};
use crate::model::workload::IntOrString;
use crate::model::{KIND_K8S_NETWORK_POLICY, Pod, PolicyName, k8s};
use crate::policy::{
    Endpoint, EntityMatch, EntitySelector, LABEL_NAMESPACE, LABEL_ORCHESTRATOR,
    LABEL_SERVICE_ACCOUNT, NamedPort, NamespaceScope, PROTO_SCTP, PROTO_TCP, PROTO_UDP, Policy,
    PolicyError, PolicyProblem, PortMatch, Rule, RuleAction, parse_protocol,
};
use crate::selector::Selector;

/// The order Calico gives every converted Kubernetes `NetworkPolicy`.
const K8S_POLICY_ORDER: f64 = 1000.0;

/// The workload endpoint of a pod, as Calico decides which pods are endpoints
/// (libcalico-go `IsReadyCalicoPod`): `None` for a pod on the host's network (its
/// addresses are the node's: the node would take its labels), for a terminated pod
/// (`Succeeded`/`Failed`: its address is free for a new pod, which must not inherit
/// its identity), and while it has no address.
pub(super) fn endpoint(ctx: &Ctx<'_>, pod: &Pod) -> Result<Option<Endpoint>, PolicyError> {
    if pod.spec.host_network || pod.is_finished() {
        return Ok(None);
    }
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
    // Named container ports: what a rule's named port resolves to on this pod; and the
    // host ports the node forwards to it.
    let mut named_ports = Vec::new();
    let mut host_ports = Vec::new();
    for (ci, c) in pod.spec.containers.iter().enumerate() {
        for (pi, p) in c.ports.iter().enumerate() {
            if p.name.is_none() && p.host_port.is_none() {
                continue;
            }
            let protocol = parse_protocol(p.protocol()).ok_or_else(|| {
                ctx.err(
                    format!("spec.containers[{ci}].ports[{pi}].protocol"),
                    PolicyProblem::InvalidProtocol {
                        value: p.protocol().to_owned(),
                    },
                    None,
                )
            })?;
            if let Some(host_port) = p.host_port {
                host_ports.push((protocol, host_port));
            }
            let Some(name) = &p.name else { continue };
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
        host_ports,
        service_account,
        node: pod.spec.node_name.clone(),
    }))
}

/// `projectcalico.org/orchestrator == 'k8s'`: what Calico puts in front of every
/// converted pod selector (`k8sSelectorToCalico` with `SelectorPod`), so that a
/// Kubernetes policy never selects host endpoints or network sets.
fn orchestrator_k8s() -> Selector {
    Selector::Eq(LABEL_ORCHESTRATOR.to_owned(), "k8s".to_owned())
}

/// A Kubernetes `NetworkPolicy` as Calico converts it (`K8sNetworkPolicyToCalico`):
/// tier `default`, order 1000, subject `orchestrator == 'k8s' && <podSelector>` in the
/// policy's namespace, one Allow rule per (peer, port entry) of each Kubernetes rule,
/// and the `policyTypes` the API server defaults (omitted: `Ingress`, plus `Egress`
/// when there are egress rules).
pub(super) fn kubernetes_policy(
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
        let field = format!("spec.ingress[{i}]");
        ingress.extend(k8s_rule(ctx, &ns, &field, Peers::From(&r.from), &r.ports)?);
    }
    let mut egress = Vec::new();
    for (i, r) in np.spec.egress.iter().flatten().enumerate() {
        let field = format!("spec.egress[{i}]");
        egress.extend(k8s_rule(ctx, &ns, &field, Peers::To(&r.to), &r.ports)?);
    }
    Ok(Policy {
        name: Arc::new(PolicyName {
            tier: DEFAULT_TIER.to_owned(),
            kind: KIND_K8S_NETWORK_POLICY.to_owned(),
            namespace: ns.clone(),
            name: np.metadata.name.clone(),
        }),
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

/// The peers of a Kubernetes rule: `from` of an ingress rule, `to` of an egress rule.
#[derive(Clone, Copy)]
enum Peers<'a> {
    From(&'a [k8s::NetworkPolicyPeer]),
    To(&'a [k8s::NetworkPolicyPeer]),
}

/// One peer of a Kubernetes rule as a Calico rule side.
struct Peer {
    /// Where it was written (`spec.ingress[0].from[1]`), or the rule's field when the
    /// rule has no peers.
    field: String,
    side: EntityMatch,
    /// The family of an `ipBlock` peer: its rule only applies to that family.
    ip_version: Option<u8>,
}

/// One entry of a Kubernetes rule's `ports`.
struct PortEntry {
    /// `None`: no protocol test (the rule had no port entries).
    protocol: Option<u8>,
    /// Empty: every port of the protocol.
    ports: Vec<PortMatch>,
}

/// A Kubernetes rule as Calico rules (`k8sRuleToCalico`): the cross product of its
/// peers and its port entries, every rule `Allow`; no peers means any peer, no port
/// entries any protocol and port. Calico merges the port entries of one protocol into
/// one rule; one rule per entry allows the same, since the rules are a union of
/// Allows. The peer tests the source of an ingress rule and the destination of an
/// egress rule; the ports are always the destination's.
fn k8s_rule(
    ctx: &Ctx<'_>,
    ns: &str,
    field: &str,
    peers: Peers<'_>,
    ports: &[k8s::NetworkPolicyPort],
) -> Result<Vec<Rule>, PolicyError> {
    let (peers_key, peer_list, is_ingress) = match peers {
        Peers::From(list) => ("from", list, true),
        Peers::To(list) => ("to", list, false),
    };
    let mut peer_matches = Vec::new();
    for (j, peer) in peer_list.iter().enumerate() {
        peer_matches.push(k8s_peer(
            ctx,
            ns,
            &format!("{field}.{peers_key}[{j}]"),
            peer,
        )?);
    }
    if peer_matches.is_empty() {
        peer_matches.push(Peer {
            field: field.to_owned(),
            side: EntityMatch::default(),
            ip_version: None,
        });
    }
    let mut port_entries = Vec::new();
    for (k, p) in ports.iter().enumerate() {
        port_entries.push(k8s_port(ctx, &format!("{field}.ports[{k}]"), p)?);
    }
    if port_entries.is_empty() {
        port_entries.push(PortEntry {
            protocol: None,
            ports: Vec::new(),
        });
    }
    let mut out = Vec::new();
    for peer in &peer_matches {
        for entry in &port_entries {
            let mut ports_side = EntityMatch {
                ports: entry.ports.clone(),
                ..EntityMatch::default()
            };
            let (source, destination) = if is_ingress {
                (peer.side.clone(), ports_side)
            } else {
                ports_side.nets.clone_from(&peer.side.nets);
                ports_side.not_nets.clone_from(&peer.side.not_nets);
                ports_side.selector.clone_from(&peer.side.selector);
                (EntityMatch::default(), ports_side)
            };
            out.push(Rule {
                action: RuleAction::Allow,
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
    Ok(out)
}

/// A Kubernetes peer as a Calico rule side (`k8sPeerToCalicoFields`): an `ipBlock` is
/// `nets: [cidr]` and `notNets: except`; otherwise `podSelector` becomes
/// `orchestrator == 'k8s' && <podSelector>` (absent: every pod) and `namespaceSelector`
/// the namespace scope (absent: the policy's own namespace; `{}`: every namespace).
/// The API server's validation is applied first: an `ipBlock` stands alone, `except`
/// lies inside `cidr`, and a peer names at least one of the three.
fn k8s_peer(
    ctx: &Ctx<'_>,
    ns: &str,
    field: &str,
    peer: &k8s::NetworkPolicyPeer,
) -> Result<Peer, PolicyError> {
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
        return Ok(Peer {
            field: field.to_owned(),
            side: EntityMatch {
                nets: vec![cidr],
                not_nets: except,
                ..EntityMatch::default()
            },
            ip_version: Some(version),
        });
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
    Ok(Peer {
        field: field.to_owned(),
        side: EntityMatch {
            selector: Some(EntitySelector {
                selector: orchestrator_k8s().and(pod),
                namespace: scope,
            }),
            ..EntityMatch::default()
        },
        ip_version: None,
    })
}

/// A Kubernetes port entry (`k8sPortToCalicoFields`): the protocol defaults to TCP
/// (Calico makes the API default explicit), `port` is a number or a container port
/// name, `endPort` makes `port:endPort` an inclusive range; without `port`, every port
/// of the protocol. Protocols are the API's upper-case `TCP`, `UDP`, `SCTP`.
fn k8s_port(
    ctx: &Ctx<'_>,
    field: &str,
    port: &k8s::NetworkPolicyPort,
) -> Result<PortEntry, PolicyError> {
    let proto_text = port.protocol.as_deref().unwrap_or("TCP");
    let protocol = match proto_text {
        "TCP" => PROTO_TCP,
        "UDP" => PROTO_UDP,
        "SCTP" => PROTO_SCTP,
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
    Ok(PortEntry {
        protocol: Some(protocol),
        ports,
    })
}
