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
pub fn pod_addresses(i: usize) -> (String, String) {
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
        let (v4, v6) = pod_addresses(i);
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
            "spec": {"nodeName": "node1", "containers": [{"name": "c", "ports": ports}]},
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
            json!({"ipBlock": {"cidr": format!("10.{}.0.0/16", rng.below(200)), "except": [format!("10.{}.1.0/24", rng.below(200))]}})
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
}
