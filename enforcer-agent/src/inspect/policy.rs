//! `enforcer inspect policy NS/POD`: the tiers, policies and rules in force for one
//! endpoint, in evaluation order, each rule with its counters from the node's maps —
//! what `calicoctl` and `cilium endpoint get` users reach for.
//!
//! The policies come from the objects (the datastore the agent reads); the counters
//! from the pinned `ENF_RULE_COUNTERS`, matched through the stable ids of
//! `ENF_POLICY_NAMES` (name and rules fingerprint). A policy the agent has not (yet)
//! enforced in this form has no id and shows no counters. Counters are per rule on the
//! node, over every endpoint the policy selects, as Calico's.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

use enforcer_common::{
    ACTION_ALLOW, ACTION_DENY, COUNTED_LOG, DIR_EGRESS, DIR_INGRESS, NO_INDEX, RuleCounter,
    RuleCounterKey,
};

use crate::compile::spec::policy_fingerprint;
use crate::dataplane::policy_ids::name_of;
use crate::dataplane::rule_counters::{self, RuleCountersError};
use crate::eval::applicable_policies;
use crate::policy::{
    Cluster, Direction, EntityMatch, NamespaceScope, Policy, PortMatch, Rule, RuleAction,
    TierAction,
};

#[derive(Debug, thiserror::Error)]
pub enum PolicyViewError {
    #[error("no pod {0} (give NAMESPACE/NAME of a pod with an address)")]
    NoEndpoint(String),
    #[error(transparent)]
    Counters(#[from] RuleCountersError),
}

/// Packets and bytes.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub packets: u64,
    pub bytes: u64,
}

impl From<RuleCounter> for Counts {
    fn from(c: RuleCounter) -> Self {
        Self {
            packets: c.packets,
            bytes: c.bytes,
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RuleView {
    pub index: u32,
    /// `Allow`, `Deny`, `Pass` or `Log`.
    pub action: &'static str,
    /// Where it is written: `spec.ingress[0]` (`...from[1]` for an expanded
    /// Kubernetes rule).
    pub field: String,
    /// What it matches, in one line.
    pub matches: String,
    /// Packets the rule decided (Allow, Deny) or logged (Log); none for Pass.
    pub counters: Option<Counts>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PolicyView {
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
    pub order: Option<f64>,
    /// Stable id in the maps; `None`: not enforced in this form on this node.
    pub id: Option<u32>,
    pub rules: Vec<RuleView>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TierView {
    pub tier: String,
    pub order: Option<f64>,
    /// What happens when no rule of the tier's policies decides: `deny` or `pass`.
    pub end_of_tier: &'static str,
    pub policies: Vec<PolicyView>,
    /// Packets the end-of-tier deny dropped (attributed to the tier's last policy).
    pub end_of_tier_counters: Option<Counts>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DirectionView {
    pub tiers: Vec<TierView>,
    /// When no tier decides: the namespace profile `kns.<namespace>` allows.
    pub profile: String,
    /// Packets profiles allowed in this direction (node-wide: profile verdicts carry
    /// no policy).
    pub profile_counters: Option<Counts>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EndpointPolicy {
    pub endpoint: String,
    pub addresses: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub ingress: DirectionView,
    pub egress: DirectionView,
}

/// The counters of a node: raw keys, and the stable id of each (name, rules).
struct NodeCounters {
    counters: HashMap<RuleCounterKey, RuleCounter>,
    ids: HashMap<(crate::model::PolicyName, u64), u32>,
}

impl NodeCounters {
    fn read(pin_dir: &Path) -> Result<Self, RuleCountersError> {
        let names = rule_counters::policy_names(pin_dir)?;
        let mut ids = HashMap::new();
        for (id, entry) in names {
            let key = (name_of(&entry), entry.fingerprint);
            let slot = ids.entry(key).or_insert(id);
            *slot = (*slot).max(id);
        }
        Ok(Self {
            counters: rule_counters::read_raw(pin_dir)?,
            ids,
        })
    }

    fn id_of(&self, policy: &Policy) -> Option<u32> {
        self.ids
            .get(&((*policy.name).clone(), policy_fingerprint(policy)))
            .copied()
    }

    fn get(&self, policy: u32, rule: u32, dir: u8, action: u8) -> Counts {
        let key = RuleCounterKey {
            policy,
            rule,
            dir,
            action,
            _pad: [0; 2],
        };
        self.counters
            .get(&key)
            .copied()
            .map(Counts::from)
            .unwrap_or_default()
    }
}

/// The policy in force for pod `endpoint` (`NAMESPACE/NAME`), with the counters of the
/// node whose maps are pinned at `pin_dir` (none without it).
pub fn endpoint_policy(
    cluster: &Cluster,
    endpoint: &str,
    pin_dir: Option<&Path>,
) -> Result<EndpointPolicy, PolicyViewError> {
    let ep = cluster
        .endpoints
        .iter()
        .find(|e| e.workload() == endpoint)
        .ok_or_else(|| PolicyViewError::NoEndpoint(endpoint.to_owned()))?;
    let counters = pin_dir.map(NodeCounters::read).transpose()?;
    let view = |dir: Direction| {
        let applicable = applicable_policies(cluster, ep, dir);
        direction_view(cluster, &applicable, dir, &ep.namespace, counters.as_ref())
    };
    Ok(EndpointPolicy {
        endpoint: endpoint.to_owned(),
        addresses: ep.ips.iter().map(ToString::to_string).collect(),
        labels: ep
            .labels
            .iter()
            .filter(|(k, _)| !k.starts_with("projectcalico.org/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        ingress: view(Direction::Ingress),
        egress: view(Direction::Egress),
    })
}

fn direction_view(
    cluster: &Cluster,
    applicable: &[usize],
    dir: Direction,
    namespace: &str,
    counters: Option<&NodeCounters>,
) -> DirectionView {
    let code = match dir {
        Direction::Ingress => DIR_INGRESS,
        Direction::Egress => DIR_EGRESS,
    };
    let mut tiers: Vec<TierView> = Vec::new();
    for &p in applicable {
        let policy = &cluster.policies[p];
        let tier = &cluster.tiers[policy.tier];
        if tiers.last().is_none_or(|t| t.tier != tier.name) {
            tiers.push(TierView {
                tier: tier.name.clone(),
                order: tier.order,
                end_of_tier: match tier.default_action {
                    TierAction::Deny => "deny",
                    TierAction::Pass => "pass",
                },
                policies: Vec::new(),
                end_of_tier_counters: None,
            });
        }
        let id = counters.and_then(|c| c.id_of(policy));
        let rules = policy
            .rules(dir)
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                let action = match rule.action {
                    RuleAction::Allow => Some(ACTION_ALLOW),
                    RuleAction::Deny => Some(ACTION_DENY),
                    RuleAction::Log => Some(COUNTED_LOG),
                    RuleAction::Pass => None,
                };
                RuleView {
                    index: i as u32,
                    action: action_name(rule.action),
                    field: rule.field.clone(),
                    matches: rule_text(rule),
                    counters: counters
                        .zip(id)
                        .zip(action)
                        .map(|((c, id), a)| c.get(id, i as u32, code, a)),
                }
            })
            .collect();
        if let Some(t) = tiers.last_mut() {
            t.policies.push(PolicyView {
                kind: policy.name.kind.clone(),
                namespace: policy.name.namespace.clone(),
                name: policy.name.name.clone(),
                order: policy.order,
                id,
                rules,
            });
            // The end-of-tier deny is attributed to the tier's last policy: the one
            // pushed last when the tier ends.
            t.end_of_tier_counters = (t.end_of_tier == "deny")
                .then(|| {
                    counters
                        .zip(id)
                        .map(|(c, id)| c.get(id, NO_INDEX, code, ACTION_DENY))
                })
                .flatten();
        }
    }
    DirectionView {
        tiers,
        profile: format!("kns.{namespace}"),
        profile_counters: counters.map(|c| c.get(NO_INDEX, NO_INDEX, code, ACTION_ALLOW)),
    }
}

fn action_name(a: RuleAction) -> &'static str {
    match a {
        RuleAction::Allow => "Allow",
        RuleAction::Deny => "Deny",
        RuleAction::Pass => "Pass",
        RuleAction::Log => "Log",
    }
}

fn protocol(p: u8) -> String {
    crate::agent::flowlog::record::protocol_name(p)
}

fn ports(list: &[PortMatch]) -> String {
    list.iter()
        .map(|p| match p {
            PortMatch::Range(a, b) if a == b => a.to_string(),
            PortMatch::Range(a, b) => format!("{a}:{b}"),
            PortMatch::Named(n) => n.clone(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn side_text(m: &EntityMatch) -> Vec<String> {
    let nets = |v: &[ipnet::IpNet]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut out = Vec::new();
    if !m.nets.is_empty() {
        out.push(format!("nets {}", nets(&m.nets)));
    }
    if !m.not_nets.is_empty() {
        out.push(format!("notNets {}", nets(&m.not_nets)));
    }
    if let Some(sel) = &m.selector {
        let scope = match &sel.namespace {
            NamespaceScope::Any => String::new(),
            NamespaceScope::Named(ns) => format!(" in namespace {ns}"),
            NamespaceScope::Selector(s) => format!(" in namespaces {s}"),
            NamespaceScope::AllNamespaced => " in all namespaces".to_owned(),
            NamespaceScope::NonNamespaced => " (global)".to_owned(),
            NamespaceScope::Nodes => " (nodes)".to_owned(),
        };
        out.push(format!("selector {}{scope}", sel.selector));
    }
    if let Some(s) = &m.not_selector {
        out.push(format!("notSelector {s}"));
    }
    if let Some(sa) = &m.service_accounts {
        out.push(format!("serviceAccounts {}", sa.names.join(",")));
    }
    if let Some(s) = &m.services {
        out.push(format!("services {}/{}", s.namespace, s.name));
    }
    if !m.ports.is_empty() {
        out.push(format!("ports {}", ports(&m.ports)));
    }
    if !m.not_ports.is_empty() {
        out.push(format!("notPorts {}", ports(&m.not_ports)));
    }
    out
}

/// One line for what a rule matches: `TCP from selector ... to ports 8080`.
pub fn rule_text(r: &Rule) -> String {
    let mut parts = Vec::new();
    if let Some(v) = r.ip_version {
        parts.push(format!("IPv{v}"));
    }
    match r.protocol {
        Some(p) => parts.push(protocol(p)),
        None => parts.push("any protocol".to_owned()),
    }
    if let Some(p) = r.not_protocol {
        parts.push(format!("not {}", protocol(p)));
    }
    if let Some(i) = &r.icmp {
        parts.push(match i.code {
            Some(c) => format!("type {} code {c}", i.icmp_type),
            None => format!("type {}", i.icmp_type),
        });
    }
    if let Some(i) = &r.not_icmp {
        parts.push(format!("not type {}", i.icmp_type));
    }
    let from = side_text(&r.source);
    if !from.is_empty() {
        parts.push(format!("from {}", from.join(" ")));
    }
    let to = side_text(&r.destination);
    if !to.is_empty() {
        parts.push(format!("to {}", to.join(" ")));
    }
    parts.join(" ")
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing test panics with context")]
mod tests {
    use super::*;
    use crate::model::load_str;

    const OBJECTS: &str = r"
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop, labels: {app: web}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
status: {podIP: 198.18.0.10}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.audit}
spec:
  tier: security
  selector: all()
  ingress: [{action: Log}, {action: Pass}]
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-http, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: 80}]}]
";

    #[test]
    fn the_view_lists_tiers_policies_and_rules_in_evaluation_order() {
        let loaded = load_str(Path::new("t.yaml"), OBJECTS).unwrap();
        let (cluster, _) = Cluster::from_objects(&loaded).unwrap();
        let view = endpoint_policy(&cluster, "shop/web-0", None).unwrap();
        let tiers: Vec<&str> = view.ingress.tiers.iter().map(|t| t.tier.as_str()).collect();
        assert_eq!(tiers, vec!["security", "default"]);
        let security = &view.ingress.tiers[0];
        assert_eq!(security.policies[0].name, "security.audit");
        let actions: Vec<&str> = security.policies[0]
            .rules
            .iter()
            .map(|r| r.action)
            .collect();
        assert_eq!(actions, vec!["Log", "Pass"]);
        let default = &view.ingress.tiers[1];
        assert_eq!(default.policies[0].name, "allow-http");
        assert_eq!(default.end_of_tier, "deny");
        let rule = &default.policies[0].rules[0];
        assert_eq!(rule.action, "Allow");
        assert!(rule.matches.contains("ports 80"), "{}", rule.matches);
        assert!(rule.counters.is_none(), "no maps given");
        assert!(view.egress.tiers.is_empty(), "no egress policy selects it");
        assert_eq!(view.egress.profile, "kns.shop");
        assert_eq!(view.labels.get("app").map(String::as_str), Some("web"));
        assert!(matches!(
            endpoint_policy(&cluster, "shop/nope", None),
            Err(PolicyViewError::NoEndpoint(_))
        ));
    }
}
