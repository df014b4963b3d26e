//! `enforcer explain`: why a flow is allowed or denied, from the reference evaluator —
//! the same semantics the compiler turns into maps, so the answer is what the
//! dataplane does (the differential tests hold the two together).

use std::net::IpAddr;

use serde::Serialize;

use crate::eval::{
    Action, DecisionKind, FlowDecision, LegDecision, Packet, applicable_policies, evaluate,
};
use crate::model::PolicyName;
use crate::policy::{Cluster, Direction, parse_protocol};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExplainError {
    #[error("{what} {text:?}: expected NS/POD or an IP address")]
    BadEndpoint { what: &'static str, text: String },
    #[error("{what} {text:?}: no such pod, or the pod has no address yet")]
    UnknownPod { what: &'static str, text: String },
    #[error("port {text:?}: expected PORT/PROTOCOL, e.g. 8080/TCP, 53/UDP, or 8/ICMP (type)")]
    BadPort { text: String },
    #[error("{from} has an IPv{} address only, {to} an IPv{} address only", if *from_v6 { 6 } else { 4 }, if *from_v6 { 4 } else { 6 })]
    FamilyMismatch {
        from: String,
        to: String,
        from_v6: bool,
    },
}

/// A flow to explain, as users write it.
#[derive(Clone, Debug)]
pub struct FlowQuery {
    pub from: String,
    pub to: String,
    /// `PORT/PROTOCOL`.
    pub port: String,
    /// Prefer IPv6 addresses of pods.
    pub ipv6: bool,
}

/// One leg's explanation.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct LegExplanation {
    /// `egress of dev-app/frontend-0` …
    pub leg: String,
    pub allowed: bool,
    /// What decided, in words.
    pub reason: String,
    pub tier: Option<String>,
    pub policy: Option<String>,
    pub rule: Option<usize>,
    /// Log rules passed on the way (`policy#rule`).
    pub logged: Vec<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Explanation {
    pub from: String,
    pub to: String,
    pub port: String,
    pub allowed: bool,
    pub legs: Vec<LegExplanation>,
}

impl Explanation {
    /// One line: the verdict and, when denied, the first leg that denies and why.
    pub fn brief(&self) -> String {
        match self.legs.iter().find(|l| !l.allowed) {
            None => "allowed".to_owned(),
            Some(leg) => format!("denied by the {}: {}", leg.leg, leg.reason),
        }
    }

    /// Lines for people.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = format!(
            "{} -> {} {}: {}\n",
            self.from,
            self.to,
            self.port,
            if self.allowed { "ALLOWED" } else { "DENIED" }
        );
        for leg in &self.legs {
            let _ = writeln!(
                out,
                "  {}: {} — {}",
                leg.leg,
                if leg.allowed { "allow" } else { "deny" },
                leg.reason
            );
            for logged in &leg.logged {
                let _ = writeln!(out, "    logged by {logged}");
            }
        }
        out
    }
}

fn resolve(
    cluster: &Cluster,
    what: &'static str,
    text: &str,
    ipv6: bool,
) -> Result<(IpAddr, String), ExplainError> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        let name = cluster
            .endpoint_at(ip)
            .map_or_else(|| ip.to_string(), crate::policy::Endpoint::workload);
        return Ok((ip, name));
    }
    let Some((ns, pod)) = text.split_once('/') else {
        return Err(ExplainError::BadEndpoint {
            what,
            text: text.to_owned(),
        });
    };
    let endpoint = cluster
        .endpoints
        .iter()
        .find(|e| e.namespace == ns && e.name == pod)
        .ok_or_else(|| ExplainError::UnknownPod {
            what,
            text: text.to_owned(),
        })?;
    let ip = if ipv6 {
        endpoint.ipv6().or_else(|| endpoint.ipv4())
    } else {
        endpoint.ipv4().or_else(|| endpoint.ipv6())
    };
    let ip = ip.ok_or_else(|| ExplainError::UnknownPod {
        what,
        text: text.to_owned(),
    })?;
    Ok((ip, endpoint.workload()))
}

/// Parses `PORT/PROTOCOL` into (protocol number, port or `type << 8 | code`).
fn parse_port(text: &str) -> Result<(u8, u16), ExplainError> {
    let bad = || ExplainError::BadPort {
        text: text.to_owned(),
    };
    let (port, proto) = text.split_once('/').unwrap_or((text, "TCP"));
    let proto = parse_protocol(proto).ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    Ok((proto, port))
}

/// Explains one flow over a cluster.
pub fn explain(cluster: &Cluster, query: &FlowQuery) -> Result<Explanation, ExplainError> {
    let (src, from) = resolve(cluster, "--from", &query.from, query.ipv6)?;
    let (mut dst, to) = resolve(cluster, "--to", &query.to, query.ipv6)?;
    if src.is_ipv4() != dst.is_ipv4() {
        // A pod named by NS/POD may have the other family too.
        let other = cluster.endpoint_at(dst).and_then(|e| e.address_like(src));
        dst = other.ok_or_else(|| ExplainError::FamilyMismatch {
            from: from.clone(),
            to: to.clone(),
            from_v6: src.is_ipv6(),
        })?;
    }
    let (proto, port) = parse_port(&query.port)?;
    let icmp = crate::policy::is_icmp(proto);
    let packet = Packet {
        src,
        dst,
        proto,
        src_port: 40_000,
        dst_port: if icmp { 0 } else { port },
        icmp_type: if icmp { port as u8 } else { 0 },
        icmp_code: 0,
    };
    let decision = evaluate(cluster, &packet);
    Ok(describe(
        cluster,
        &packet,
        &from,
        &to,
        &query.port,
        &decision,
    ))
}

fn describe(
    cluster: &Cluster,
    packet: &Packet,
    from: &str,
    to: &str,
    port: &str,
    decision: &FlowDecision,
) -> Explanation {
    let mut legs = Vec::new();
    if let Some(leg) = &decision.egress {
        let selecting = selecting_in_tier(cluster, packet.src, Direction::Egress, leg);
        legs.push(leg_explanation(
            format!("egress of {from}"),
            leg,
            &selecting,
        ));
    }
    if let Some(leg) = &decision.ingress {
        let selecting = selecting_in_tier(cluster, packet.dst, Direction::Ingress, leg);
        legs.push(leg_explanation(format!("ingress of {to}"), leg, &selecting));
    }
    Explanation {
        from: from.to_owned(),
        to: to.to_owned(),
        port: port.to_owned(),
        allowed: decision.allowed,
        legs,
    }
}

/// Names of the policies in the deciding tier that select the endpoint at `addr` for
/// `dir`: for an end-of-tier drop, these are what isolate it.
fn selecting_in_tier(
    cluster: &Cluster,
    addr: IpAddr,
    dir: Direction,
    d: &LegDecision,
) -> Vec<String> {
    let (Some(endpoint), Some(tier)) = (cluster.endpoint_at(addr), &d.tier) else {
        return Vec::new();
    };
    applicable_policies(cluster, endpoint, dir)
        .into_iter()
        .map(|i| &cluster.policies[i])
        .filter(|p| cluster.tiers[p.tier].name == *tier)
        .map(|p| policy_label(&p.name))
        .collect()
}

fn policy_label(p: &PolicyName) -> String {
    if p.namespace.is_empty() {
        format!("{} {}", p.kind, p.name)
    } else {
        format!("{} {}/{}", p.kind, p.namespace, p.name)
    }
}

fn leg_explanation(leg: String, d: &LegDecision, selecting: &[String]) -> LegExplanation {
    let policy = d.policy.as_deref().map(policy_label);
    let tier = d.tier.clone().unwrap_or_else(|| "-".into());
    let reason = match (d.kind, d.action) {
        (DecisionKind::Rule, action) => format!(
            "{} rule #{} of {} (tier {tier})",
            if action == Action::Allow {
                "Allow"
            } else {
                "Deny"
            },
            d.rule_index.unwrap_or_default(),
            policy.as_deref().unwrap_or("?"),
        ),
        (DecisionKind::TierDefault, Action::Deny) => format!(
            "isolated by {} (tier {tier}), and no rule of theirs allows this flow, so the tier's default action Deny applies",
            selecting.join(", "),
        ),
        (DecisionKind::TierDefault, Action::Allow) => format!("tier {tier} default"),
        (DecisionKind::Profile, _) => {
            "no policy selects this endpoint for this direction: the namespace profile allows"
                .into()
        }
        (DecisionKind::NoProfile, _) => "no tier decided and no profile allows".into(),
    };
    LegExplanation {
        leg,
        allowed: d.action == Action::Allow,
        reason,
        tier: d.tier.clone(),
        policy,
        rule: d.rule_index,
        logged: d
            .logged
            .iter()
            .map(|l| format!("{} {}#{}", l.policy.kind, l.policy.name, l.rule_index))
            .collect(),
    }
}
