//! The reference evaluator for host endpoints (Calico `HostEndpoint`), the spec that
//! `compile::host` is tested against. Semantics digest §5:
//!
//! - **untracked** (`doNotTrack`): policies in tier order, no end-of-tier drop; Allow
//!   accepts the packet statelessly, Deny drops, no match continues;
//! - **preDNAT** (ingress only, on the original destination): the same walk; Allow
//!   skips the normal and applyOnForward policies (workload policy still runs at the
//!   pod), Deny drops, no match continues;
//! - then, for traffic **to or from the node itself** (the local address is one of the
//!   node's host-endpoint addresses and, inbound, is not a `NodePort` that kube-proxy
//!   DNATs on): the normal host-endpoint tiers with their end-of-tier drop, then the
//!   endpoint's profiles; with no profile that allows, denied;
//! - for **forwarded** traffic: the `applyOnForward` tiers; allowed when none selects
//!   the endpoint in that direction (or none decides).
//!
//! Replies (`reply_passes`): a flow whose request the tracked chain allowed has
//! conntrack state, its replies pass (unless an untracked rule of the reply's
//! direction denies them). A flow whose request passed untracked has none: the reply
//! needs an untracked Allow of its own direction; without one, a TCP reply is dropped
//! (Calico: conntrack `INVALID`, a non-SYN segment is never a new flow) and any other
//! is judged as a new tracked flow (Calico: conntrack `NEW`).
//!
//! Profiles: the model has no Profile objects; `projectcalico-default-allow` (Calico's
//! built-in) allows everything, any other name contributes nothing.
//! Failsafe ports are configuration checked before all of this (BPF side).

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::policy::{Cluster, Direction, Entity, HostEndpointInfo, RuleAction, has_ports};

use super::{
    Action, DecisionKind, LegDecision, LoggedRule, Packet, PacketEntities, rule_matches_among,
};

/// Calico's built-in profile that allows all traffic.
pub const PROFILE_DEFAULT_ALLOW: &str = "projectcalico-default-allow";

/// The policy kinds of a host endpoint, in Calico's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostKind {
    Untracked,
    PreDnat,
    /// Normal host-endpoint policies (traffic to/from the node itself).
    Normal,
    /// applyOnForward policies (forwarded traffic).
    Forward,
}

/// The result of one kind's walk: a decision, or none (untracked/preDNAT only).
type KindResult = Option<LegDecision>;

/// The addresses that are the node's own: a packet to one of them is delivered to
/// the host (not forwarded), a packet from one of them was sent by the host. This is
/// a fact of the node (security item 3), never of a `HostEndpoint` object: the agent
/// reads it from the kernel (every address of every interface, kept current from
/// netlink), plus what no interface lists but the kernel never forwards: IPv6
/// link-local (`fe80::/10`, each interface's own, scoped to its link) and multicast
/// (`ff00::/8`, `224.0.0.0/4`), and the IPv4 limited broadcast.
///
/// A `HostEndpoint`'s `expectedIPs` keep only their Calico meaning: they are the
/// addresses at which selectors see the host endpoint as an entity. Only tools that
/// have no node to ask ([`NodeAddresses::declared`]) take them as the node's
/// addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeAddresses {
    nets: BTreeSet<IpNet>,
}

impl NodeAddresses {
    /// What the kernel never forwards and delivers to the host itself: IPv6
    /// link-local and multicast, IPv4 multicast and limited broadcast.
    pub const NEVER_FORWARDED: [&'static str; 4] =
        ["fe80::/10", "ff00::/8", "224.0.0.0/4", "255.255.255.255/32"];

    /// The node's addresses as its interfaces carry them (`nets`: each address as a
    /// host prefix, or a whole prefix the kernel treats as local, such as an IPv4
    /// address on a loopback device), plus [`Self::NEVER_FORWARDED`].
    pub fn of_node(nets: impl IntoIterator<Item = IpNet>) -> Self {
        let mut all: BTreeSet<IpNet> = nets.into_iter().map(|n| n.trunc()).collect();
        all.extend(
            Self::NEVER_FORWARDED
                .iter()
                .filter_map(|n| n.parse::<IpNet>().ok()),
        );
        Self { nets: all }
    }

    /// For tools without a node to ask (explain, matrix, tests): the addresses the
    /// node's host endpoints declare in `expectedIPs`, nothing else.
    pub fn declared(cluster: &Cluster, node: Option<&str>) -> Self {
        Self {
            nets: host_endpoints_of(cluster, node)
                .flat_map(|h| h.ips.iter().map(|ip| IpNet::from(*ip)))
                .collect(),
        }
    }

    /// Whether `addr` is the node's own.
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&addr))
    }

    /// The prefixes, each an entry of the compiled peer map (so the host class of an
    /// address says whether it is the node's).
    pub fn nets(&self) -> impl Iterator<Item = &IpNet> {
        self.nets.iter()
    }
}

/// What the node treats as its own: addresses and `NodePorts`.
#[derive(Clone, Debug, Default)]
pub struct NodeView {
    /// The node's own addresses.
    pub addresses: NodeAddresses,
    /// (protocol, port) of every Service `NodePort`.
    pub node_ports: BTreeSet<(u8, u16)>,
}

impl NodeView {
    /// The view of `node` (all when `None`) for a tool that cannot ask the node: its
    /// addresses are those its host endpoints declare ([`NodeAddresses::declared`]).
    pub fn new(cluster: &Cluster, node: Option<&str>) -> Self {
        Self::with_addresses(cluster, NodeAddresses::declared(cluster, node))
    }

    /// The view of a node whose own addresses are `addresses`, with every Service's
    /// `NodePorts`.
    pub fn with_addresses(cluster: &Cluster, addresses: NodeAddresses) -> Self {
        let node_ports = cluster
            .services
            .iter()
            .flat_map(|s| &s.ports)
            .filter_map(|p| {
                let proto = crate::policy::parse_protocol(p.protocol.as_deref().unwrap_or("TCP"))?;
                Some((proto, p.node_port?))
            })
            .collect();
        Self {
            addresses,
            node_ports,
        }
    }

    /// Whether `addr` is one of the node's own addresses.
    pub fn is_own(&self, addr: IpAddr) -> bool {
        self.addresses.contains(addr)
    }

    /// An inbound packet is for the node itself (not `DNATed` away by kube-proxy).
    pub fn inbound_to_host(&self, packet: &Packet) -> bool {
        self.is_own(packet.dst)
            && !(has_ports(packet.proto)
                && self.node_ports.contains(&(packet.proto, packet.dst_port)))
    }

    /// An outbound packet comes from the node itself.
    pub fn outbound_from_host(&self, packet: &Packet) -> bool {
        self.is_own(packet.src)
    }
}

/// Host endpoints of `node` (every one when `None`; one without `spec.node` is on
/// every node).
pub fn host_endpoints_of<'a>(
    cluster: &'a Cluster,
    node: Option<&'a str>,
) -> impl Iterator<Item = &'a HostEndpointInfo> + 'a {
    cluster
        .host_endpoints
        .iter()
        .filter(move |h| match (node, &h.node) {
            (Some(n), Some(hn)) => n == hn,
            _ => true,
        })
}

/// Indices of the policies of `kind` that select `hep` for `dir`, in evaluation order.
pub fn applicable(
    cluster: &Cluster,
    hep: &HostEndpointInfo,
    kind: HostKind,
    dir: Direction,
) -> Vec<usize> {
    let entity = Entity::HostEndpoint(hep);
    (0..cluster.policies.len())
        .filter(|&i| {
            let p = &cluster.policies[i];
            let of_kind = match kind {
                HostKind::Untracked => p.do_not_track,
                HostKind::PreDnat => p.pre_dnat && dir == Direction::Ingress,
                HostKind::Normal => !p.pre_dnat && !p.do_not_track,
                HostKind::Forward => p.apply_on_forward && !p.pre_dnat && !p.do_not_track,
            };
            of_kind && p.applies(dir) && p.selects(cluster, &entity)
        })
        .collect()
}

/// The tier walk without end-of-tier drop: first Allow/Deny rule decides, Pass goes to
/// the next tier, no decision → `None`.
fn walk_no_default(
    cluster: &Cluster,
    applicable: &[usize],
    dir: Direction,
    packet: &Packet,
) -> KindResult {
    let mut logged = Vec::new();
    let mut skip_tier: Option<usize> = None;
    let entities = PacketEntities::of(cluster, packet);
    for &p in applicable {
        let policy = &cluster.policies[p];
        if skip_tier == Some(policy.tier) {
            continue;
        }
        for (r, rule) in policy.rules(dir).iter().enumerate() {
            if !rule_matches_among(cluster, rule, packet, &entities) {
                continue;
            }
            let action = match rule.action {
                RuleAction::Allow => Action::Allow,
                RuleAction::Deny => Action::Deny,
                RuleAction::Pass => {
                    skip_tier = Some(policy.tier);
                    break;
                }
                RuleAction::Log => {
                    logged.push(LoggedRule {
                        policy: policy.name.clone(),
                        policy_index: p,
                        rule_index: r,
                    });
                    continue;
                }
            };
            return Some(LegDecision {
                action,
                tier: Some(cluster.tiers[policy.tier].name.clone()),
                policy: Some(policy.name.clone()),
                policy_index: Some(p),
                rule_index: Some(r),
                kind: DecisionKind::Rule,
                logged,
            });
        }
    }
    None
}

fn allowed_by_default(kind: DecisionKind) -> LegDecision {
    LegDecision {
        action: Action::Allow,
        tier: None,
        policy: None,
        policy_index: None,
        rule_index: None,
        kind,
        logged: Vec::new(),
    }
}

/// One kind's decision for `hep` on `packet` in `dir`.
pub fn evaluate_kind(
    cluster: &Cluster,
    hep: &HostEndpointInfo,
    kind: HostKind,
    dir: Direction,
    packet: &Packet,
) -> KindResult {
    let policies = applicable(cluster, hep, kind, dir);
    match kind {
        HostKind::Untracked | HostKind::PreDnat => walk_no_default(cluster, &policies, dir, packet),
        HostKind::Normal => {
            let leg = super::decide(cluster, &policies, dir, packet);
            if leg.kind != DecisionKind::Profile {
                return Some(leg);
            }
            // No tier decided: the host endpoint's profiles (not the namespace profile
            // `decide` assumes for pods).
            if hep.profiles.iter().any(|p| p == PROFILE_DEFAULT_ALLOW) {
                Some(leg)
            } else {
                Some(LegDecision {
                    action: Action::Deny,
                    kind: DecisionKind::NoProfile,
                    ..leg
                })
            }
        }
        HostKind::Forward => {
            if policies.is_empty() {
                return Some(allowed_by_default(DecisionKind::Profile));
            }
            Some(super::decide(cluster, &policies, dir, packet))
        }
    }
}

/// The tracked chain of a new flow at the host interface: inbound (`Ingress`):
/// preDNAT, then normal (to the node) or applyOnForward (forwarded); outbound: normal
/// (from the node) or applyOnForward.
pub fn evaluate_tracked(
    cluster: &Cluster,
    view: &NodeView,
    hep: &HostEndpointInfo,
    dir: Direction,
    packet: &Packet,
) -> LegDecision {
    let local_traffic = match dir {
        Direction::Ingress => {
            if let Some(d) = evaluate_kind(cluster, hep, HostKind::PreDnat, dir, packet) {
                return d;
            }
            view.inbound_to_host(packet)
        }
        Direction::Egress => view.outbound_from_host(packet),
    };
    let kind = if local_traffic {
        HostKind::Normal
    } else {
        HostKind::Forward
    };
    evaluate_kind(cluster, hep, kind, dir, packet)
        .unwrap_or_else(|| allowed_by_default(DecisionKind::Profile))
}

/// How the first packet of a flow crossed a host endpoint. The reply rules below are
/// the spec the BPF programs' conntrack handling is tested against; only the tests
/// call them (the dataplane answers replies from its conntrack table).
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Allowed by a doNotTrack policy: no conntrack state.
    Untracked,
    /// Allowed by the tracked chain: the flow is in conntrack.
    Tracked,
    Denied,
}

/// How the first packet of a flow crosses `hep` in `dir`.
#[cfg(test)]
pub fn admission(
    cluster: &Cluster,
    view: &NodeView,
    hep: &HostEndpointInfo,
    dir: Direction,
    packet: &Packet,
) -> Admission {
    if let Some(d) = evaluate_kind(cluster, hep, HostKind::Untracked, dir, packet) {
        return if d.action == Action::Allow {
            Admission::Untracked
        } else {
            Admission::Denied
        };
    }
    if evaluate_tracked(cluster, view, hep, dir, packet).action == Action::Allow {
        Admission::Tracked
    } else {
        Admission::Denied
    }
}

/// Whether `reply` (crossing `hep` in `dir`, the request's opposite) passes, for a
/// flow whose request was admitted as `request` (see the module doc).
#[cfg(test)]
pub fn reply_passes(
    cluster: &Cluster,
    view: &NodeView,
    hep: &HostEndpointInfo,
    dir: Direction,
    reply: &Packet,
    request: Admission,
) -> bool {
    if let Some(d) = evaluate_kind(cluster, hep, HostKind::Untracked, dir, reply) {
        return d.action == Action::Allow;
    }
    match request {
        Admission::Tracked => true,
        Admission::Untracked | Admission::Denied => {
            reply.proto != crate::policy::PROTO_TCP
                && evaluate_tracked(cluster, view, hep, dir, reply).action == Action::Allow
        }
    }
}
