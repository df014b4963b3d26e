//! The evaluator against semantics.md, case by case.
#![expect(clippy::unwrap_used, reason = "tests panic on unexpected errors")]

use std::path::Path;

use super::*;
use crate::model::load_str;
use crate::policy::{PROTO_ICMP, PROTO_TCP, PROTO_UDP};

const PODS: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: a, labels: {team: red}}
---
apiVersion: v1
kind: Namespace
metadata: {name: b}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: a, labels: {app: web, tier: front}}
spec:
  containers:
  - name: c
    ports: [{name: http, containerPort: 8080}]
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: web2, namespace: a, labels: {app: web}}
spec:
  containers:
  - name: c
    ports: [{name: http, containerPort: 9090}]
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: b, labels: {app: db}}
status: {podIPs: [{ip: 10.0.1.1}, {ip: 'fd00::11'}]}
";

fn cluster(policies: &str) -> Cluster {
    let text = format!("{PODS}\n---\n{policies}");
    let loaded = load_str(Path::new("t.yaml"), &text).unwrap_or_else(|e| panic!("{e}"));
    Cluster::from_objects(&loaded)
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}

fn tcp(src: &str, dst: &str, port: u16) -> Packet {
    Packet {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        proto: PROTO_TCP,
        src_port: 33333,
        dst_port: port,
        icmp_type: 0,
        icmp_code: 0,
    }
}

fn ingress(c: &Cluster, p: &Packet) -> LegDecision {
    evaluate(c, p).ingress.unwrap()
}

fn egress(c: &Cluster, p: &Packet) -> LegDecision {
    evaluate(c, p).egress.unwrap()
}

#[test]
fn unselected_pods_are_open_through_the_profile() {
    let c = cluster("");
    let d = evaluate(&c, &tcp("10.0.0.1", "10.0.1.1", 5432));
    assert!(d.allowed);
    assert_eq!(d.ingress.unwrap().kind, DecisionKind::Profile);
    // External source: only the ingress leg exists.
    let d = evaluate(&c, &tcp("8.8.8.8", "10.0.1.1", 1));
    assert!(d.egress.is_none() && d.allowed);
}

#[test]
fn kubernetes_policies_are_a_union_with_tier_default_deny() {
    let c = cluster(
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: one, namespace: b}
spec:
  podSelector: {}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: red}}, podSelector: {matchLabels: {tier: front}}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: two, namespace: b}
spec:
  podSelector: {}
  ingress:
  - from: [{ipBlock: {cidr: 10.0.0.0/24, except: [10.0.0.1/32]}}]
    ports: [{port: 5432}]
",
    );
    // web matches `one` (AND of namespace and pod selectors).
    assert_eq!(
        ingress(&c, &tcp("10.0.0.1", "10.0.1.1", 1))
            .policy
            .unwrap()
            .name,
        "one"
    );
    // web2 lacks tier: only `two` (ipBlock matches pod IPs too), on its port.
    assert_eq!(
        ingress(&c, &tcp("10.0.0.2", "10.0.1.1", 5432))
            .policy
            .unwrap()
            .name,
        "two"
    );
    let d = ingress(&c, &tcp("10.0.0.2", "10.0.1.1", 5433));
    assert_eq!(
        (d.action, d.kind),
        (Action::Deny, DecisionKind::TierDefault)
    );
    // Calico attributes the tier's drop to its last policy.
    assert_eq!(d.policy.unwrap().name, "two");
}

#[test]
fn named_ports_resolve_per_pod_on_the_owner() {
    let c = cluster(
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: http-in, namespace: a}
spec:
  podSelector: {}
  ingress:
  - ports: [{port: http}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: http-out, namespace: b}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {}}]
    ports: [{port: http}]
",
    );
    // Ingress: the local pod's own number.
    assert_eq!(
        ingress(&c, &tcp("10.0.1.1", "10.0.0.1", 8080)).action,
        Action::Allow
    );
    assert_eq!(
        ingress(&c, &tcp("10.0.1.1", "10.0.0.1", 9090)).action,
        Action::Deny
    );
    assert_eq!(
        ingress(&c, &tcp("10.0.1.1", "10.0.0.2", 9090)).action,
        Action::Allow
    );
    // Egress: the destination pod's number.
    assert_eq!(
        egress(&c, &tcp("10.0.1.1", "10.0.0.2", 9090)).action,
        Action::Allow
    );
    assert_eq!(
        egress(&c, &tcp("10.0.1.1", "10.0.0.2", 8080)).action,
        Action::Deny
    );
}

#[test]
fn pass_log_and_tiers() {
    let c = cluster(
        "apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.gate}
spec:
  tier: security
  selector: app == 'db'
  ingress:
  - action: Log
  - action: Pass
    source: {selector: app == 'web'}
  - action: Deny
    protocol: UDP
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db, namespace: b}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    source: {namespaceSelector: team == 'red'}
    protocol: TCP
    destination: {ports: ['5000:6000']}
",
    );
    // Passed by tier security, allowed in default; the Log rule is reported.
    let d = ingress(&c, &tcp("10.0.0.1", "10.0.1.1", 5432));
    assert_eq!(
        (d.action, d.tier.as_deref()),
        (Action::Allow, Some("default"))
    );
    assert_eq!(d.logged.len(), 1);
    assert_eq!(d.logged[0].policy.name, "security.gate");
    // Passed, then no match in default → default's Deny.
    let d = ingress(&c, &tcp("10.0.0.1", "10.0.1.1", 80));
    assert_eq!(d.kind, DecisionKind::TierDefault);
    // Not passed: security's own default drops (a Log-only match still isolates).
    let d = ingress(&c, &tcp("8.8.8.8", "10.0.1.1", 5432));
    assert_eq!(
        (d.kind, d.tier.as_deref()),
        (DecisionKind::TierDefault, Some("security"))
    );
    let mut udp = tcp("8.8.8.8", "10.0.1.1", 53);
    udp.proto = PROTO_UDP;
    let d = ingress(&c, &udp);
    assert_eq!((d.kind, d.rule_index), (DecisionKind::Rule, Some(2)));
}

#[test]
fn not_has_differs_from_not_selector() {
    let c = cluster(
        "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    source: {selector: '!has(tier)'}
  - action: Deny
    source: {notSelector: has(tier)}
    protocol: UDP
",
    );
    // A pod without tier matches `!has(tier)`.
    assert_eq!(
        ingress(&c, &tcp("10.0.0.2", "10.0.1.1", 1)).rule_index,
        Some(0)
    );
    // An external address is no endpoint: `!has(tier)` does not match it…
    assert_eq!(
        ingress(&c, &tcp("8.8.8.8", "10.0.1.1", 1)).kind,
        DecisionKind::TierDefault
    );
    // …but `notSelector: has(tier)` does.
    let mut udp = tcp("8.8.8.8", "10.0.1.1", 53);
    udp.proto = PROTO_UDP;
    assert_eq!(ingress(&c, &udp).rule_index, Some(1));
}

#[test]
fn network_sets_label_external_addresses() {
    let c = cluster(
        "apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: dns, labels: {role: resolvers}}
spec: {nets: [8.8.8.0/24]}
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: partners, namespace: b, labels: {role: partner}}
spec: {nets: [198.51.100.0/24]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: b}
spec:
  selector: all()
  egress:
  - action: Allow
    destination: {selector: role == 'partner'}
  - action: Allow
    destination: {selector: role == 'resolvers', namespaceSelector: global()}
  - action: Deny
    destination: {selector: role == 'resolvers'}
",
    );
    assert_eq!(
        egress(&c, &tcp("10.0.1.1", "198.51.100.7", 443)).rule_index,
        Some(0)
    );
    assert_eq!(
        egress(&c, &tcp("10.0.1.1", "8.8.8.8", 53)).rule_index,
        Some(1)
    );
    assert_eq!(
        egress(&c, &tcp("10.0.1.1", "9.9.9.9", 53)).kind,
        DecisionKind::TierDefault
    );
}

#[test]
fn ip_versions_and_icmp() {
    let c = cluster(
        "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
    protocol: ICMP
    icmp: {type: 8}
  - action: Allow
    source: {notNets: [10.0.0.0/8]}
",
    );
    let mut ping = tcp("10.0.0.1", "10.0.1.1", 0);
    ping.proto = PROTO_ICMP;
    ping.icmp_type = 8;
    assert_eq!(ingress(&c, &ping).rule_index, Some(0));
    ping.icmp_type = 0;
    assert_eq!(ingress(&c, &ping).kind, DecisionKind::TierDefault);
    // notNets with an IPv4 CIDR makes the rule IPv4-only, as Felix renders it.
    assert_eq!(
        ingress(&c, &tcp("fd00::1", "fd00::11", 80)).kind,
        DecisionKind::TierDefault
    );
    assert_eq!(
        ingress(&c, &tcp("8.8.8.8", "10.0.1.1", 80)).rule_index,
        Some(1)
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { failure_persistence: None, ..proptest::prelude::ProptestConfig::default() })]
    /// The evaluator's shortcut before the selectors: when numeric ports exclude a
    /// port, the side's port test fails whatever its named ports resolve to.
    #[test]
    fn numeric_ports_exclude_only_what_the_port_test_fails(
        ports in proptest::collection::vec((0u16..40, 0u16..8, proptest::bool::ANY), 0..3),
        not_ports in proptest::collection::vec((0u16..40, 0u16..8, proptest::bool::ANY), 0..2),
        named in proptest::collection::vec(0u16..48, 0..3),
        port in 0u16..48,
    ) {
        let list = |v: &[(u16, u16, bool)]| -> Vec<PortMatch> {
            v.iter()
                .map(|&(a, span, is_named)| {
                    if is_named {
                        PortMatch::Named(format!("p{a}"))
                    } else {
                        PortMatch::Range(a, a + span)
                    }
                })
                .collect()
        };
        let side = EntityMatch {
            ports: list(&ports),
            not_ports: list(&not_ports),
            ..EntityMatch::default()
        };
        // Named ports resolve to any numbers (here `named`), only when the side has some.
        let has_named = |l: &[PortMatch]| l.iter().any(|p| matches!(p, PortMatch::Named(_)));
        let facts = SideFacts {
            named_ports: if has_named(&side.ports) { named.clone() } else { Vec::new() },
            named_not_ports: if has_named(&side.not_ports) { named } else { Vec::new() },
            ..SideFacts::untested()
        };
        if numeric_ports_exclude(&side, port) {
            proptest::prop_assert!(!facts.port_matches(&side, port));
        }
    }
}

/// A tier whose default is Deny and that has no Pass rule decides every packet that
/// reaches it: no later policy is reachable. A Pass rule, or a tier defaulting to
/// Pass, leaves the next tiers reachable.
#[test]
fn reachable_policies_end_at_a_tier_that_decides_every_packet() {
    let policies = |gate_rule: &str, default_action: &str| {
        cluster(&format!(
            "apiVersion: projectcalico.org/v3
kind: Tier
metadata: {{name: security}}
spec: {{order: 100, defaultAction: {default_action}}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: security.gate}}
spec:
  tier: security
  selector: app == 'db'
  ingress:
  - action: Log
  - {gate_rule}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: db, namespace: b}}
spec:
  selector: app == 'db'
  ingress:
  - action: Allow
"
        ))
    };
    let db = |c: &Cluster| {
        c.endpoints
            .iter()
            .find(|e| e.name == "db")
            .cloned()
            .unwrap()
    };
    for (gate_rule, default_action, reachable_count) in [
        (
            "action: Deny\n    source: {selector: app == 'web'}",
            "Deny",
            1,
        ),
        ("action: Allow\n    protocol: TCP", "Deny", 1),
        (
            "action: Pass\n    source: {selector: app == 'web'}",
            "Deny",
            2,
        ),
        (
            "action: Deny\n    source: {selector: app == 'web'}",
            "Pass",
            2,
        ),
    ] {
        let c = policies(gate_rule, default_action);
        let applicable = applicable_policies(&c, &db(&c), Direction::Ingress);
        assert_eq!(applicable.len(), 2, "{gate_rule} / {default_action}");
        assert_eq!(
            reachable(&c, &applicable, Direction::Ingress),
            reachable_count,
            "{gate_rule} / {default_action}"
        );
        // Egress: the gate does not apply, the namespace policy has no egress rule but
        // applies (types: Ingress only, so not at all): nothing to cut.
        let egress = applicable_policies(&c, &db(&c), Direction::Egress);
        assert_eq!(reachable(&c, &egress, Direction::Egress), egress.len());
    }
}
