//! Random `AdminNetworkPolicy` and `BaselineAdminNetworkPolicy` objects
//! (`policy.networking.k8s.io/v1alpha1`), and the `Node` objects their `nodes` peers
//! select: every field the API defines except `domainNames` (which matches nothing
//! here, see `policy/convert/admin.rs`), within what the API server accepts, so that
//! a generated cluster converts.
//!
//! Priorities repeat on purpose: two ANPs at one priority are ordered by name (the
//! API leaves it undefined; the converter defines it), which the evaluator and the
//! compiler share, so ties are deterministic.

use serde_json::{Value, json};

use super::{Gen, NAMESPACES, V4_NETS, V6_NETS, label_selector};

/// Nodes a cluster may have: name, `zone` label, addresses. The addresses are in
/// [`super::EXTERNAL`], so random packets reach them.
const NODES: [(&str, &str, &[&str]); 2] = [
    ("node0", "a", &["10.0.0.200", "fd00::99"]),
    ("node1", "b", &["192.168.3.3"]),
];

/// ANP priorities: the extremes of 0-1000 and a repeated middle one (ties).
const PRIORITIES: [i64; 5] = [0, 5, 5, 10, 1000];

/// The `Node` objects of a cluster (none, some or all of [`NODES`]).
pub(super) fn nodes(g: &mut Gen) -> Vec<Value> {
    if !g.chance(40) {
        return Vec::new();
    }
    NODES
        .iter()
        .filter(|_| g.chance(70))
        .map(|(name, zone, addrs)| {
            let addresses: Vec<Value> = addrs
                .iter()
                .map(|a| json!({"type": "InternalIP", "address": a}))
                .collect();
            json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"zone": zone}},
                "status": {"addresses": addresses},
            })
        })
        .collect()
}

/// A namespace label selector: all (rarely: an ANP over all pods decides so much that
/// the policies after it would seldom be reached), by a label, by name, or by a
/// missing label.
fn namespaces(g: &mut Gen) -> Value {
    match g.below(8) {
        0 => json!({}),
        1 => json!({"matchLabels": {"team": g.pick(&["a", "b"])}}),
        3 | 4 => json!({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}),
        5 => json!({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]}]}),
        _ => json!({"matchLabels": {"kubernetes.io/metadata.name": g.pick(&NAMESPACES)}}),
    }
}

fn pods(g: &mut Gen) -> Value {
    json!({"namespaceSelector": namespaces(g), "podSelector": label_selector(g)})
}

fn subject(g: &mut Gen) -> Value {
    if g.chance(50) {
        json!({"namespaces": namespaces(g)})
    } else {
        json!({"pods": pods(g)})
    }
}

fn protocol(g: &mut Gen, port: &mut serde_json::Map<String, Value>) {
    if g.chance(60) {
        port.insert("protocol".into(), json!(g.pick(&["TCP", "UDP", "SCTP"])));
    }
}

/// A rule's `ports` (absent 40% of the time: every port and protocol); named ports
/// only when `named` (the API refuses them towards networks and nodes).
fn ports(g: &mut Gen, named: bool) -> Option<Value> {
    if g.chance(40) {
        return None;
    }
    let list: Vec<Value> = (0..=g.below(2))
        .map(|_| match g.below(if named { 3 } else { 2 }) {
            0 => {
                let mut p = serde_json::Map::new();
                protocol(g, &mut p);
                p.insert("port".into(), json!(*g.pick(&[53, 80, 443, 8080])));
                json!({"portNumber": p})
            }
            1 => {
                let mut p = serde_json::Map::new();
                protocol(g, &mut p);
                let (start, end) = *g.pick(&[(80, 90), (80, 81), (1000, 2000), (1, 65535)]);
                p.insert("start".into(), json!(start));
                p.insert("end".into(), json!(end));
                json!({"portRange": p})
            }
            _ => json!({"namedPort": g.pick(&["http", "dns"])}),
        })
        .collect();
    Some(json!(list))
}

/// 1-2 CIDRs, either family, mixed at times (one rule per family after conversion).
fn networks(g: &mut Gen) -> Value {
    let list: Vec<&str> = (0..=g.below(2))
        .map(|_| {
            if g.chance(70) {
                *g.pick(&V4_NETS)
            } else {
                *g.pick(&V6_NETS)
            }
        })
        .collect();
    json!(list)
}

fn rule(g: &mut Gen, j: usize, actions: &[&str], ingress: bool) -> Value {
    let peers: Vec<Value> = (0..=g.below(2))
        .map(|_| match g.below(if ingress { 2 } else { 4 }) {
            0 => json!({"namespaces": namespaces(g)}),
            1 => json!({"pods": pods(g)}),
            2 => json!({"networks": networks(g)}),
            _ => json!({"nodes": if g.chance(50) { json!({}) } else { json!({"matchLabels": {"zone": g.pick(&["a", "b"])}}) }}),
        })
        .collect();
    let named = peers
        .iter()
        .all(|p| p.get("networks").is_none() && p.get("nodes").is_none());
    let mut r = serde_json::Map::new();
    if g.chance(50) {
        r.insert("name".into(), json!(format!("r{j}")));
    }
    r.insert("action".into(), json!(g.pick(actions)));
    r.insert((if ingress { "from" } else { "to" }).into(), json!(peers));
    if let Some(p) = ports(g, named) {
        r.insert("ports".into(), p);
    }
    Value::Object(r)
}

fn spec(g: &mut Gen, actions: &[&str]) -> serde_json::Map<String, Value> {
    let mut spec = serde_json::Map::new();
    spec.insert("subject".into(), subject(g));
    let ingress: Vec<Value> = (0..g.below(4)).map(|j| rule(g, j, actions, true)).collect();
    let egress: Vec<Value> = (0..g.below(4))
        .map(|j| rule(g, j, actions, false))
        .collect();
    if !ingress.is_empty() {
        spec.insert("ingress".into(), json!(ingress));
    }
    if !egress.is_empty() {
        spec.insert("egress".into(), json!(egress));
    }
    spec
}

/// An `AdminNetworkPolicy` named `anp<i>`.
pub(super) fn admin_network_policy(g: &mut Gen, i: usize) -> Value {
    // Pass twice as often: it hands the decision on to the Calico tiers.
    let mut spec = spec(g, &["Allow", "Deny", "Pass", "Pass"]);
    spec.insert("priority".into(), json!(*g.pick(&PRIORITIES)));
    json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
        "metadata": {"name": format!("anp{i}")},
        "spec": spec,
    })
}

/// The cluster's `BaselineAdminNetworkPolicy` (always named `default`).
pub(super) fn baseline_admin_network_policy(g: &mut Gen) -> Value {
    json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
        "metadata": {"name": "default"},
        "spec": spec(g, &["Allow", "Deny"]),
    })
}
