//! A synthetic cluster generator for scale benchmarks: namespaces, pods with labels and
//! named ports, Services, and Kubernetes and Calico policies with realistic selector,
//! port and CIDR mixes. Seeded and reproducible: the same parameters give the same
//! documents, byte for byte.
//!
//! It produces ordinary documents (what a user would write), read back through the
//! normal loader, so benchmarks exercise the real pipeline.

use serde_json::{Value, json};

/// Size and mix of a generated cluster.
#[derive(Clone, Debug)]
pub struct SynthParams {
    pub seed: u64,
    pub namespaces: usize,
    pub pods: usize,
    /// Kubernetes `NetworkPolicy` objects.
    pub k8s_policies: usize,
    /// Calico `GlobalNetworkPolicy` objects (in a `security` tier and the default tier).
    pub calico_policies: usize,
    /// Rules per policy direction.
    pub rules_per_policy: usize,
    /// Distinct `app` label values.
    pub apps: usize,
    /// `spec.nodeName` of every generated pod. A lab runs only `node1`'s pods; pods of
    /// another node are stored in its datastore as remote pods (peers only).
    pub node: String,
    /// Generated pod `i` gets the addresses of index `i + address_offset` (see
    /// [`pod_addresses`]), so generated pods can stay clear of other pods' addresses.
    pub address_offset: usize,
}

impl Default for SynthParams {
    fn default() -> Self {
        Self {
            seed: 1,
            namespaces: 10,
            pods: 100,
            k8s_policies: 50,
            calico_policies: 10,
            rules_per_policy: 2,
            apps: 20,
            node: "node1".to_owned(),
            address_offset: 0,
        }
    }
}

impl SynthParams {
    /// Total rules the generated policies hold (ingress + egress).
    pub fn rule_count(&self) -> usize {
        (self.k8s_policies + self.calico_policies) * self.rules_per_policy
    }
}

/// splitmix64: small, fast, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const TIERS: [&str; 3] = ["web", "api", "db"];
const PORTS: [(u16, &str); 5] = [
    (80, "http"),
    (443, "https"),
    (8080, "http-alt"),
    (5432, "pg"),
    (9090, "metrics"),
];

/// Address of the i-th generated pod: `198.18.0.0/16` from `.10` on, and `2001:2::/64`.
fn pod_addresses(i: usize) -> (String, String) {
    let n = i + 10;
    (
        format!("198.18.{}.{}", (n >> 8) & 0xff, n & 0xff),
        format!("2001:2::{n:x}"),
    )
}

/// The documents of a generated cluster.
pub fn generate(p: &SynthParams) -> Vec<Value> {
    let mut rng = Rng(p.seed);
    let mut docs = Vec::new();
    let ns_name = |i: usize| format!("ns-{i}");
    for i in 0..p.namespaces {
        docs.push(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns_name(i), "labels": {"team": format!("team-{}", i % 4), "env": if i % 2 == 0 {"prod"} else {"dev"}}},
        }));
    }
    for i in 0..p.pods {
        let app = rng.below(p.apps);
        let (v4, v6) = pod_addresses(i + p.address_offset);
        let ports: Vec<Value> = PORTS
            .iter()
            .filter(|_| rng.chance(50))
            .map(|(port, name)| json!({"name": name, "containerPort": port + (app % 3) as u16, "protocol": "TCP"}))
            .collect();
        docs.push(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": format!("pod-{i}"), "namespace": ns_name(i % p.namespaces.max(1)),
                "labels": {"app": format!("app-{app}"), "tier": TIERS[app % 3], "version": format!("v{}", rng.below(3))},
            },
            "spec": {"nodeName": p.node, "containers": [{"name": "c", "ports": ports}]},
            "status": {"podIP": v4, "podIPs": [{"ip": v4}, {"ip": v6}]},
        }));
    }
    for i in 0..p.k8s_policies {
        docs.push(k8s_policy(
            &mut rng,
            p,
            i,
            &ns_name(i % p.namespaces.max(1)),
        ));
    }
    if p.calico_policies > 0 {
        docs.push(json!({
            "apiVersion": "projectcalico.org/v3", "kind": "Tier",
            "metadata": {"name": "security"}, "spec": {"order": 100},
        }));
    }
    for i in 0..p.calico_policies {
        docs.push(calico_policy(&mut rng, p, i));
    }
    docs
}

fn port_entry(rng: &mut Rng) -> Value {
    let (port, name) = PORTS[rng.below(PORTS.len())];
    match rng.below(4) {
        0 => json!({"protocol": "TCP", "port": name}),
        1 => json!({"protocol": "TCP", "port": port, "endPort": port + 10}),
        2 => json!({"protocol": "UDP", "port": port}),
        _ => json!({"protocol": "TCP", "port": port}),
    }
}

fn k8s_peer(rng: &mut Rng, p: &SynthParams) -> Value {
    match rng.below(5) {
        0 => {
            // The except must lie within the CIDR (Kubernetes validation).
            let b = rng.below(200);
            json!({"ipBlock": {"cidr": format!("10.{b}.0.0/16"), "except": [format!("10.{b}.{}.0/24", rng.below(256))]}})
        }
        1 => {
            json!({"namespaceSelector": {"matchLabels": {"team": format!("team-{}", rng.below(4))}}})
        }
        2 => json!({
            "namespaceSelector": {"matchLabels": {"env": "prod"}},
            "podSelector": {"matchLabels": {"app": format!("app-{}", rng.below(p.apps))}},
        }),
        3 => {
            json!({"podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": [TIERS[rng.below(3)], TIERS[rng.below(3)]]}]}})
        }
        _ => json!({"podSelector": {"matchLabels": {"app": format!("app-{}", rng.below(p.apps))}}}),
    }
}

fn k8s_policy(rng: &mut Rng, p: &SynthParams, i: usize, namespace: &str) -> Value {
    let rules: Vec<Value> = (0..p.rules_per_policy)
        .map(|_| json!({"from": [k8s_peer(rng, p)], "ports": [port_entry(rng)]}))
        .collect();
    let egress = rng.chance(30);
    let mut spec = json!({
        "podSelector": {"matchLabels": {"app": format!("app-{}", rng.below(p.apps))}},
        "ingress": rules,
    });
    if egress {
        let to: Vec<Value> = (0..p.rules_per_policy.div_ceil(2))
            .map(|_| {
                let peer = k8s_peer(rng, p);
                json!({"to": [peer], "ports": [port_entry(rng)]})
            })
            .collect();
        spec["egress"] = Value::Array(to);
        spec["policyTypes"] = json!(["Ingress", "Egress"]);
    }
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": format!("np-{i}"), "namespace": namespace},
        "spec": spec,
    })
}

fn calico_rule(rng: &mut Rng, p: &SynthParams) -> Value {
    let action = ["Allow", "Deny", "Pass", "Allow"][rng.below(4)];
    let mut source = serde_json::Map::new();
    match rng.below(4) {
        0 => {
            source.insert(
                "nets".into(),
                json!([format!("172.{}.0.0/16", 16 + rng.below(16))]),
            );
        }
        1 => {
            source.insert(
                "selector".into(),
                json!(format!("app == 'app-{}'", rng.below(p.apps))),
            );
            source.insert("namespaceSelector".into(), json!("env == 'prod'"));
        }
        2 => {
            source.insert(
                "notSelector".into(),
                json!(format!("tier == '{}'", TIERS[rng.below(3)])),
            );
        }
        _ => {
            source.insert(
                "selector".into(),
                json!(format!(
                    "tier in {{'{}', '{}'}}",
                    TIERS[rng.below(3)],
                    TIERS[rng.below(3)]
                )),
            );
        }
    }
    let (port, _) = PORTS[rng.below(PORTS.len())];
    let ports = if rng.chance(30) {
        json!([format!("{}:{}", port, port + 100)])
    } else {
        json!([port])
    };
    json!({
        "action": action,
        "protocol": if rng.chance(80) { "TCP" } else { "UDP" },
        "source": Value::Object(source),
        "destination": {"ports": ports},
    })
}

fn calico_policy(rng: &mut Rng, p: &SynthParams, i: usize) -> Value {
    let rules: Vec<Value> = (0..p.rules_per_policy)
        .map(|_| calico_rule(rng, p))
        .collect();
    let tier = if i.is_multiple_of(2) {
        "security"
    } else {
        "default"
    };
    let name = if tier == "default" {
        format!("gnp-{i}")
    } else {
        format!("security.gnp-{i}")
    };
    json!({
        "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": name},
        "spec": {
            "tier": tier,
            "order": rng.below(1000),
            "selector": format!("app == 'app-{}'", rng.below(p.apps)),
            "types": ["Ingress"],
            "ingress": rules,
        },
    })
}

/// A policy set whose rules all apply to one destination, for the rule-scaling and
/// throughput benchmarks: `rules - 1` filler rules that never match traffic from the
/// client, then one rule that allows everything from the client.
#[derive(Clone, Debug)]
pub struct TargetedParams {
    pub seed: u64,
    /// Total rules on the destination's ingress (at least 1).
    pub rules: usize,
    /// Rules per generated policy (the last policy may hold fewer).
    pub rules_per_policy: usize,
    /// Namespace of the destination (the policies are namespaced Calico policies there).
    pub namespace: String,
    /// `app` label of the destination: every generated policy selects it.
    pub target_app: String,
    /// `app` label of the client the final rule allows (filler rules never select it).
    pub client_app: String,
    /// Distinct `app` values filler selectors use (`app-0`…): other pods' labels.
    pub apps: usize,
    /// Distinct /24s filler rules name (inside 10.0.0.0/8, never a pod address).
    pub cidrs: usize,
    /// Distinct destination ports filler rules name.
    pub ports: usize,
}

impl Default for TargetedParams {
    fn default() -> Self {
        Self {
            seed: 1,
            rules: 1,
            rules_per_policy: 100,
            namespace: "bench".to_owned(),
            target_app: "bench-server".to_owned(),
            client_app: "bench-client".to_owned(),
            apps: 32,
            cidrs: 64,
            ports: 8,
        }
    }
}

/// Calico `NetworkPolicies` in `p.namespace` selecting `app == p.target_app`, in order,
/// holding `p.rules` ingress rules in total. Filler rules mix Allow and Deny, sources
/// by CIDR, by pod selector and by namespace + pod selector, TCP and UDP ports and
/// ranges, none of which match the client (its app label is never used and its
/// address is not in 10.0.0.0/8); the very last rule allows all from the client.
pub fn targeted_policies(p: &TargetedParams) -> Vec<Value> {
    let mut rng = Rng(p.seed);
    let total = p.rules.max(1);
    let per = p.rules_per_policy.max(1);
    let mut docs = Vec::new();
    let mut made = 0;
    let mut index = 0;
    while made < total {
        let n = per.min(total - made);
        let mut rules = Vec::with_capacity(n);
        for _ in 0..n {
            made += 1;
            if made == total {
                rules.push(json!({
                    "action": "Allow",
                    "source": {"selector": format!("app == '{}'", p.client_app)},
                }));
                break;
            }
            rules.push(filler_rule(&mut rng, p));
        }
        docs.push(json!({
            "apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
            "metadata": {"name": format!("bench-{index}"), "namespace": p.namespace},
            "spec": {
                "order": index,
                "selector": format!("app == '{}'", p.target_app),
                "types": ["Ingress"],
                "ingress": rules,
            },
        }));
        index += 1;
    }
    docs
}

fn filler_rule(rng: &mut Rng, p: &TargetedParams) -> Value {
    let action = if rng.chance(75) { "Allow" } else { "Deny" };
    let source = match rng.below(3) {
        0 => {
            let c = rng.below(p.cidrs.max(1));
            json!({"nets": [format!("10.{}.{}.0/24", c / 256, c % 256)]})
        }
        1 => json!({"selector": format!("app == 'app-{}'", rng.below(p.apps.max(1)))}),
        _ => json!({
            "selector": format!("app == 'app-{}'", rng.below(p.apps.max(1))),
            "namespaceSelector": "env == 'prod'",
        }),
    };
    let port = 1000 + 10 * rng.below(p.ports.max(1)) as u16;
    let ports = if rng.chance(20) {
        json!([format!("{}:{}", port, port + 5)])
    } else {
        json!([port])
    };
    json!({
        "action": action,
        "protocol": if rng.chance(70) { "TCP" } else { "UDP" },
        "source": source,
        "destination": {"ports": ports},
    })
}

/// The documents as one multi-document YAML text (JSON documents are YAML).
pub fn to_yaml_stream(docs: &[Value]) -> String {
    docs.iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n---\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_documents_other_seed_other_documents() {
        let p = SynthParams::default();
        assert_eq!(generate(&p), generate(&p));
        let q = SynthParams {
            seed: 2,
            ..p.clone()
        };
        assert_ne!(generate(&p), generate(&q));
    }

    #[test]
    fn sizes_follow_the_parameters() {
        let p = SynthParams {
            pods: 37,
            k8s_policies: 11,
            calico_policies: 3,
            ..SynthParams::default()
        };
        let docs = generate(&p);
        let count = |kind: &str| docs.iter().filter(|d| d["kind"] == kind).count();
        assert_eq!(count("Pod"), 37);
        assert_eq!(count("NetworkPolicy"), 11);
        assert_eq!(count("GlobalNetworkPolicy"), 3);
        assert_eq!(count("Namespace"), p.namespaces);
    }

    #[test]
    fn targeted_policies_hold_exactly_the_requested_rules() {
        for rules in [1, 99, 100, 101, 1000] {
            let p = TargetedParams {
                rules,
                ..TargetedParams::default()
            };
            let docs = targeted_policies(&p);
            let total: usize = docs
                .iter()
                .map(|d| d["spec"]["ingress"].as_array().map_or(0, Vec::len))
                .sum();
            assert_eq!(total, rules);
            let last = docs
                .last()
                .and_then(|d| d["spec"]["ingress"].as_array())
                .and_then(|r| r.last());
            assert_eq!(
                last.map(|r| r["source"]["selector"].clone()),
                Some(json!("app == 'bench-client'"))
            );
        }
        let p = TargetedParams {
            rules: 500,
            ..TargetedParams::default()
        };
        assert_eq!(targeted_policies(&p), targeted_policies(&p));
    }

    #[test]
    #[expect(
        clippy::unwrap_used,
        reason = "test code: a panic is the failure report"
    )]
    fn pods_carry_the_node_and_the_address_offset() {
        let p = SynthParams {
            pods: 3,
            node: "node2".into(),
            address_offset: 100,
            ..SynthParams::default()
        };
        let docs = generate(&p);
        let pod = docs.iter().find(|d| d["kind"] == "Pod").unwrap();
        assert_eq!(pod["spec"]["nodeName"], "node2");
        assert_eq!(pod["status"]["podIP"], pod_addresses(100).0);
    }
}
