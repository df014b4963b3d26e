//! `AdminNetworkPolicy` / `BaselineAdminNetworkPolicy` as the network-policy-api
//! specifies them: priority order, first matching rule, `Pass` into
//! `NetworkPolicy`, the baseline only where no `NetworkPolicy` selects, each peer
//! and port kind; and what the API's validation refuses.
#![expect(clippy::unwrap_used, reason = "tests panic on unexpected errors")]

use std::path::Path;

use super::*;
use crate::model::load_str;
use crate::policy::{PROTO_TCP, PROTO_UDP, PolicyError};

const CLUSTER: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: gryffindor, labels: {house: gryffindor}}
---
apiVersion: v1
kind: Namespace
metadata: {name: slytherin, labels: {house: slytherin}}
---
apiVersion: v1
kind: Pod
metadata: {name: harry, namespace: gryffindor, labels: {app: wizard}}
spec:
  containers:
  - name: c
    ports: [{name: web, containerPort: 80}, {name: dns, containerPort: 53, protocol: UDP}]
status: {podIP: 10.0.0.1, podIPs: [{ip: 10.0.0.1}, {ip: 'fd00::1'}]}
---
apiVersion: v1
kind: Pod
metadata: {name: draco, namespace: slytherin, labels: {app: wizard}}
spec:
  containers:
  - name: c
    ports: [{name: web, containerPort: 8080}, {name: dns, containerPort: 5353, protocol: UDP}]
status: {podIP: 10.0.1.1, podIPs: [{ip: 10.0.1.1}, {ip: 'fd00::2'}]}
---
apiVersion: v1
kind: Node
metadata: {name: node1, labels: {kubernetes.io/os: linux}}
status: {addresses: [{type: InternalIP, address: 10.9.0.1}, {type: Hostname, address: node1}]}
---
apiVersion: v1
kind: Node
metadata: {name: node2, labels: {kubernetes.io/os: windows}}
status: {addresses: [{type: InternalIP, address: 10.9.0.2}]}
";

const HARRY: &str = "10.0.0.1";
const DRACO: &str = "10.0.1.1";

fn try_cluster(policies: &str) -> Result<Cluster, Box<PolicyError>> {
    let text = format!("{CLUSTER}\n---\n{policies}");
    let loaded = load_str(Path::new("t.yaml"), &text).unwrap_or_else(|e| panic!("{e}"));
    Cluster::from_objects(&loaded)
        .map(|(c, _)| c)
        .map_err(Box::new)
}

fn cluster(policies: &str) -> Cluster {
    try_cluster(policies).unwrap_or_else(|e| panic!("{e}"))
}

fn packet(src: &str, dst: &str, proto: u8, port: u16) -> Packet {
    Packet {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        proto,
        src_port: 40000,
        dst_port: port,
        icmp_type: 0,
        icmp_code: 0,
    }
}

/// Whether draco → harry (TCP `port`) passes harry's ingress.
fn ingress_allowed(c: &Cluster, port: u16) -> bool {
    evaluate(c, &packet(DRACO, HARRY, PROTO_TCP, port))
        .ingress
        .unwrap()
        .action
        == Action::Allow
}

fn anp(name: &str, priority: u32, action: &str) -> String {
    format!(
        "apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {{name: {name}}}
spec:
  priority: {priority}
  subject: {{namespaces: {{matchLabels: {{house: gryffindor}}}}}}
  ingress:
  - name: r
    action: {action}
    from: [{{namespaces: {{matchLabels: {{house: slytherin}}}}}}]
"
    )
}

const BANP_DENY: &str = "
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {matchLabels: {house: gryffindor}}}
  ingress:
  - {action: Deny, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: wizard}}}}]}
";

const NP_ALLOW_SLYTHERIN: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-slytherin, namespace: gryffindor}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {house: slytherin}}}]}]
";

const NP_ISOLATE: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: isolate, namespace: gryffindor}
spec: {podSelector: {}, policyTypes: [Ingress]}
";

#[test]
fn lower_priority_number_decides_first() {
    let deny_first = format!("{}---\n{}", anp("a", 10, "Deny"), anp("b", 20, "Allow"));
    assert!(!ingress_allowed(&cluster(&deny_first), 80));
    let allow_first = format!("{}---\n{}", anp("a", 30, "Deny"), anp("b", 20, "Allow"));
    assert!(ingress_allowed(&cluster(&allow_first), 80));
    // Within a priority: the first matching rule of the policy.
    let c = cluster(&anp("a", 5, "Allow"));
    let leg = evaluate(&c, &packet(DRACO, HARRY, PROTO_TCP, 80))
        .ingress
        .unwrap();
    assert_eq!(leg.tier.as_deref(), Some("kube-admin"));
    assert_eq!(leg.policy.unwrap().kind, "AdminNetworkPolicy");
}

#[test]
fn allow_overrides_network_policy_and_deny_cannot_be_undone() {
    // ANP Allow: NetworkPolicy isolation does not apply.
    let c = cluster(&format!("{}---\n{NP_ISOLATE}", anp("a", 1, "Allow")));
    assert!(ingress_allowed(&c, 80));
    // ANP Deny: a NetworkPolicy that allows does not apply.
    let c = cluster(&format!("{}---\n{NP_ALLOW_SLYTHERIN}", anp("a", 1, "Deny")));
    assert!(!ingress_allowed(&c, 80));
}

#[test]
fn pass_goes_to_network_policy_then_baseline() {
    // Pass, and a NetworkPolicy selects harry: it decides (isolated → denied; allowed
    // from slytherin → allowed), the baseline is not consulted.
    let c = cluster(&format!("{}---\n{NP_ISOLATE}", anp("a", 1, "Pass")));
    assert!(!ingress_allowed(&c, 80));
    let c = cluster(&format!(
        "{}---\n{NP_ALLOW_SLYTHERIN}---\n{BANP_DENY}",
        anp("a", 1, "Pass")
    ));
    assert!(ingress_allowed(&c, 80));
    // Pass skips the remaining ANPs (a later Deny does not apply).
    let c = cluster(&format!(
        "{}---\n{}---\n{NP_ALLOW_SLYTHERIN}",
        anp("a", 1, "Pass"),
        anp("b", 2, "Deny")
    ));
    assert!(ingress_allowed(&c, 80));
    // Pass and no NetworkPolicy: the baseline decides.
    let c = cluster(&format!("{}---\n{BANP_DENY}", anp("a", 1, "Pass")));
    let leg = evaluate(&c, &packet(DRACO, HARRY, PROTO_TCP, 80))
        .ingress
        .unwrap();
    assert_eq!(leg.action, Action::Deny);
    assert_eq!(leg.tier.as_deref(), Some("kube-baseline"));
}

#[test]
fn baseline_applies_only_where_no_network_policy_selects() {
    assert!(!ingress_allowed(&cluster(BANP_DENY), 80));
    let c = cluster(&format!("{BANP_DENY}---\n{NP_ALLOW_SLYTHERIN}"));
    assert!(ingress_allowed(&c, 80));
    // Nothing matched anywhere: allowed.
    let other_direction = evaluate(&cluster(BANP_DENY), &packet(HARRY, DRACO, PROTO_TCP, 80));
    assert!(other_direction.allowed);
}

#[test]
fn ports_number_range_and_named_with_their_own_protocol() {
    let c = cluster(
        "
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: ports}
spec:
  priority: 3
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: wizard}}}}
  egress:
  - action: Deny
    to: [{pods: {namespaceSelector: {}, podSelector: {}}}]
    ports:
    - portNumber: {port: 9000}
    - portRange: {protocol: UDP, start: 100, end: 200}
    - namedPort: dns
",
    );
    let egress = |dst: &str, proto: u8, port: u16| {
        evaluate(&c, &packet(HARRY, dst, proto, port))
            .egress
            .unwrap()
            .action
    };
    assert_eq!(egress(DRACO, PROTO_TCP, 9000), Action::Deny);
    assert_eq!(
        egress(DRACO, PROTO_UDP, 9000),
        Action::Allow,
        "portNumber defaults to TCP"
    );
    assert_eq!(egress(DRACO, PROTO_UDP, 150), Action::Deny);
    assert_eq!(
        egress(DRACO, PROTO_UDP, 200),
        Action::Deny,
        "end is inclusive"
    );
    assert_eq!(egress(DRACO, PROTO_TCP, 150), Action::Allow);
    // The named port of the destination pod, with the protocol it declares.
    assert_eq!(egress(DRACO, PROTO_UDP, 5353), Action::Deny);
    assert_eq!(egress(DRACO, PROTO_TCP, 5353), Action::Allow);
    assert_eq!(
        egress(DRACO, PROTO_UDP, 53),
        Action::Allow,
        "harry's dns, not draco's"
    );
}

#[test]
fn networks_of_both_families_and_nodes() {
    let c = cluster(
        "
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: out}
spec:
  priority: 3
  subject: {namespaces: {matchLabels: {house: gryffindor}}}
  egress:
  - action: Allow
    to: [{nodes: {matchLabels: {kubernetes.io/os: linux}}}]
  - action: Deny
    to: [{networks: [10.0.0.0/8, 'fd00::/64']}]
",
    );
    let egress = |dst: &str| {
        let src = if dst.contains(':') { "fd00::1" } else { HARRY };
        evaluate(&c, &packet(src, dst, PROTO_TCP, 80))
            .egress
            .unwrap()
            .action
    };
    assert_eq!(
        egress("10.9.0.1"),
        Action::Allow,
        "the linux node's address"
    );
    assert_eq!(
        egress("10.9.0.2"),
        Action::Deny,
        "the other node falls to networks"
    );
    assert_eq!(
        egress(DRACO),
        Action::Deny,
        "networks include pod addresses"
    );
    assert_eq!(egress("fd00::2"), Action::Deny);
    assert_eq!(egress("192.0.2.1"), Action::Allow);
    // Calico selectors never see nodes.
    let c = cluster(
        "
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
spec:
  egress: [{action: Deny, destination: {selector: \"kubernetes.io/os == 'linux'\"}}]
",
    );
    let leg = evaluate(&c, &packet(HARRY, "10.9.0.1", PROTO_TCP, 80))
        .egress
        .unwrap();
    assert_eq!(leg.kind, DecisionKind::TierDefault);
}

#[test]
fn domain_names_match_nothing_and_the_api_validation_is_applied() {
    let c = cluster(
        "
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: fqdn}
spec:
  priority: 3
  subject: {namespaces: {}}
  egress:
  - action: Allow
    to: [{domainNames: [example.com]}]
",
    );
    assert!(c.policies[0].egress.is_empty());
    for (yaml, field) in [
        (anp("a", 1001, "Allow"), "spec.priority"),
        (anp("a", 1, "Log"), "spec.ingress[0].action"),
        (
            "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\nmetadata: {name: other}\nspec: {subject: {namespaces: {}}}\n".to_owned(),
            "metadata.name",
        ),
        (
            "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\nmetadata: {name: default}\nspec:\n  subject: {namespaces: {}}\n  ingress: [{action: Pass, from: [{namespaces: {}}]}]\n".to_owned(),
            "spec.ingress[0].action",
        ),
        (
            "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: a}\nspec:\n  priority: 1\n  subject: {namespaces: {}, pods: {namespaceSelector: {}, podSelector: {}}}\n".to_owned(),
            "spec.subject",
        ),
        (
            "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: a}\nspec:\n  priority: 1\n  subject: {namespaces: {}}\n  egress: [{action: Deny, to: [{namespaces: {}, networks: [10.0.0.0/8]}]}]\n".to_owned(),
            "spec.egress[0].to[0]",
        ),
        (
            "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: a}\nspec:\n  priority: 1\n  subject: {namespaces: {}}\n  egress: [{action: Deny, to: [{namespaces: {}}], ports: [{portRange: {start: 90, end: 80}}]}]\n".to_owned(),
            "spec.egress[0].ports[0].portRange",
        ),
        (
            "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: a}\nspec:\n  priority: 1\n  subject: {namespaces: {}}\n  egress: [{action: Deny, to: [{networks: [10.0.0.0/8]}], ports: [{namedPort: web}]}]\n".to_owned(),
            "spec.egress[0].ports",
        ),
        (
            "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: a}\nspec:\n  priority: 1\n  subject: {namespaces: {}}\n  egress: [{action: Deny, to: [{domainNames: [example.com]}]}]\n".to_owned(),
            "spec.egress[0].to[0].domainNames",
        ),
    ] {
        let e = try_cluster(&yaml).err().unwrap_or_else(|| panic!("accepted: {yaml}"));
        assert_eq!(e.field, field, "{e}");
    }
}
