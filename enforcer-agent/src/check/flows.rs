//! Shared by the evaluator-based lints: the ports a pod serves, packets between pods,
//! and how a denying decision is described.

use std::net::IpAddr;

use crate::eval::{Action, DecisionKind, LegDecision, Packet, applicable_policies};
use crate::policy::{
    Cluster, Direction, Endpoint, PROTO_SCTP, PROTO_TCP, PROTO_UDP, Rule, protocol_name,
};

/// The ports a pod declares (`containerPort` + protocol), as `lab probe` probes them.
pub(super) fn served_ports(cx: &super::Context<'_>, ep: &Endpoint) -> Vec<(u8, u16)> {
    let Some(pod) = cx.completed.pod_objects.get(&ep.workload()) else {
        return Vec::new();
    };
    let mut ports: Vec<(u8, u16)> = pod
        .spec
        .containers
        .iter()
        .flat_map(|c| &c.ports)
        .filter_map(|p| {
            let proto = match p.protocol() {
                "TCP" => PROTO_TCP,
                "UDP" => PROTO_UDP,
                "SCTP" => PROTO_SCTP,
                _ => return None,
            };
            Some((proto, p.container_port))
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The served ports plus the first port of each numeric destination port of `rule`.
pub(super) fn rule_ports(cx: &super::Context<'_>, ep: &Endpoint, rule: &Rule) -> Vec<(u8, u16)> {
    let mut ports = served_ports(cx, ep);
    let proto = rule.protocol.unwrap_or(PROTO_TCP);
    if crate::policy::has_ports(proto) {
        for p in &rule.destination.ports {
            if let crate::policy::PortMatch::Range(a, _) = p {
                ports.push((proto, *a));
            }
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// A first packet from `src` to `dst` (IPv4 when both have it).
pub(super) fn packet(src: &Endpoint, dst: &Endpoint, proto: u8, port: u16) -> Option<Packet> {
    let (s, d): (IpAddr, IpAddr) = match (src.ipv4(), dst.ipv4()) {
        (Some(s), Some(d)) => (s, d),
        _ => (src.ipv6()?, dst.ipv6()?),
    };
    Some(Packet {
        src: s,
        dst: d,
        proto,
        src_port: 40_000,
        dst_port: port,
        icmp_type: 0,
        icmp_code: 0,
    })
}

pub(super) fn port_label(proto: u8, port: u16) -> String {
    format!("{port}/{}", protocol_name(proto))
}

/// What denied a leg, in words, e.g. "`NetworkPolicy dev-app/default-deny` isolates …".
pub(super) fn denial(cluster: &Cluster, ep: &Endpoint, dir: Direction, d: &LegDecision) -> String {
    let dir_name = match dir {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    };
    let tier = d.tier.as_deref().unwrap_or("-");
    match d.kind {
        DecisionKind::Rule if d.action == Action::Deny => {
            let field = d
                .policy_index
                .zip(d.rule_index)
                .and_then(|(p, r)| cluster.policies.get(p)?.rules(dir).get(r))
                .map_or_else(String::new, |r| format!(" {}", r.field));
            let policy = d
                .policy_index
                .and_then(|p| cluster.policies.get(p))
                .map_or_else(|| "?".to_owned(), |p| super::object_label(&p.id));
            format!("the Deny rule{field} of {policy} (tier {tier})")
        }
        _ => {
            let isolating: Vec<String> = applicable_policies(cluster, ep, dir)
                .into_iter()
                .map(|i| &cluster.policies[i])
                .filter(|p| d.tier.as_deref() == Some(cluster.tiers[p.tier].name.as_str()))
                .map(|p| super::object_label(&p.id))
                .collect();
            format!(
                "{} {} {dir_name} and no {dir_name} rule of {} allows it (tier {tier}'s default action Deny)",
                isolating.join(", "),
                if isolating.len() == 1 {
                    "isolates their"
                } else {
                    "isolate their"
                },
                if isolating.len() == 1 { "it" } else { "theirs" },
            )
        }
    }
}

/// `a, b, c and 3 more`.
pub(super) fn list(items: &[String], max: usize) -> String {
    if items.len() <= max {
        items.join(", ")
    } else {
        format!("{} and {} more", items[..max].join(", "), items.len() - max)
    }
}
