//! Conversion and validation tests, including the seed YAML users paste.
#![expect(
    clippy::unwrap_used,
    clippy::result_large_err,
    reason = "tests panic on unexpected errors"
)]

use std::path::Path;

use super::super::*;
use crate::model::{LoadError, load_str};

const SEED_000: &str = include_str!("../../../tests/fixtures/seed000_tutorial.yaml");
const SEED_001: &str = include_str!("../../../tests/fixtures/seed001_broken_gnp.yaml");
const SEED_002: &str = include_str!("../../../tests/fixtures/seed002_nodeports.yaml");

fn cluster(text: &str) -> Result<(Cluster, Vec<Warning>), PolicyError> {
    let loaded = load_str(Path::new("test.yaml"), text).unwrap_or_else(|e| panic!("{e}"));
    Cluster::from_objects(&loaded)
}

fn policy<'a>(c: &'a Cluster, name: &str) -> &'a Policy {
    c.policies
        .iter()
        .find(|p| p.name.name == name)
        .unwrap_or_else(|| panic!("no policy {name}"))
}

/// The agent keeps every converted policy: no rule list keeps the spare capacity its
/// conversion grew (a first growth is four rules of ~900 bytes).
#[test]
fn converted_policies_keep_no_spare_capacity() {
    let (c, _) = cluster(SEED_000).unwrap();
    assert!(!c.policies.is_empty());
    for p in &c.policies {
        for rules in [&p.ingress, &p.egress] {
            assert_eq!(rules.capacity(), rules.len(), "{}", p.name.name);
            for rule in rules {
                for side in [&rule.source, &rule.destination] {
                    assert_eq!(side.nets.capacity(), side.nets.len());
                    assert_eq!(side.ports.capacity(), side.ports.len());
                }
            }
        }
    }
}

#[test]
fn seed_000_policies_load_and_convert() {
    let (c, warnings) = cluster(SEED_000).unwrap();
    assert_eq!(c.policies.len(), 6);
    let deny = policy(&c, "default-deny");
    assert!(
        deny.applies_ingress && deny.applies_egress,
        "default-deny isolates both directions"
    );
    assert!(deny.ingress.is_empty() && deny.egress.is_empty());
    assert_eq!(deny.order, Some(1000.0));
    assert_eq!(deny.name.tier, "default");
    assert_eq!(
        deny.subject.selector.to_string(),
        "projectcalico.org/orchestrator == 'k8s'"
    );
    assert_eq!(
        deny.subject.namespace,
        NamespaceScope::Named("dev-app".to_owned())
    );

    let dns = policy(&c, "allow-dns-egress");
    assert!(!dns.applies_ingress && dns.applies_egress);
    let rule = &dns.egress[0];
    assert_eq!(rule.protocol, Some(PROTO_UDP));
    assert_eq!(rule.destination.ports, vec![PortMatch::Range(53, 53)]);
    let sel = rule.destination.selector.as_ref().unwrap();
    assert_eq!(
        sel.selector.to_string(),
        "projectcalico.org/orchestrator == 'k8s' && k8s-app == 'kube-dns'"
    );
    assert!(
        matches!(&sel.namespace, NamespaceScope::Selector(s) if s.to_string() == "kubernetes.io/metadata.name == 'kube-system'")
    );

    let frontend = policy(&c, "allow-frontend-ingress");
    assert_eq!(frontend.ingress[0].source.nets[0].to_string(), "0.0.0.0/0");
    assert_eq!(frontend.ingress[0].ip_version, Some(4));

    // Step 8: the GNP's Kubernetes-style peer parses, with warnings giving the exact
    // Calico form.
    let gnp = policy(&c, "allow-monitoring-access");
    assert_eq!(gnp.order, Some(100.0));
    assert_eq!(gnp.name.kind, "GlobalNetworkPolicy");
    let src = &gnp.ingress[0].source;
    let sel = src.selector.as_ref().unwrap();
    assert_eq!(sel.selector.to_string(), "app == 'prometheus-agent'");
    let fixes: Vec<&str> = warnings.iter().filter_map(|w| w.fix.as_deref()).collect();
    assert!(
        fixes.contains(&"namespaceSelector: kubernetes.io/metadata.name == 'monitoring'"),
        "{warnings:?}"
    );
    assert!(
        fixes.contains(&"selector: app == 'prometheus-agent'"),
        "{warnings:?}"
    );
    let w = warnings
        .iter()
        .find(|w| w.field.ends_with("namespaceSelector"))
        .unwrap();
    assert_eq!(w.field, "spec.ingress[0].source.namespaceSelector");
    assert_eq!(w.object.name, "allow-monitoring-access");
    assert!(w.source.as_ref().is_some_and(|s| s.line > 0));
    assert!(w.to_string().contains("test.yaml:"), "{w}");
}

#[test]
fn seed_000_isolation_behaves_like_the_tutorial() {
    let pods = "
apiVersion: v1
kind: Pod
metadata: {name: frontend-0, namespace: dev-app, labels: {app: frontend, tier: web}}
status: {podIP: 10.1.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: backend-0, namespace: dev-app, labels: {app: backend, tier: api}}
status: {podIP: 10.1.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: database-0, namespace: dev-app, labels: {app: database, tier: db}}
status: {podIP: 10.1.0.3}
---
apiVersion: v1
kind: Namespace
metadata: {name: kube-system}
---
apiVersion: v1
kind: Pod
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
status: {podIP: 10.1.0.53}
";
    let (c, _) = cluster(&format!("{SEED_000}\n---\n{pods}")).unwrap();
    let pkt = |src: &str, dst: &str, proto, port| crate::eval::Packet {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        proto,
        src_port: 40000,
        dst_port: port,
        icmp_type: 0,
        icmp_code: 0,
    };
    let eval = |p| crate::eval::evaluate(&c, &p);
    // frontend → backend:8080: ingress allowed, but frontend's egress is default-denied
    // (the tutorial only allows DNS egress).
    let f = eval(pkt("10.1.0.1", "10.1.0.2", PROTO_TCP, 8080));
    assert_eq!(
        f.ingress.as_ref().unwrap().action,
        crate::eval::Action::Allow
    );
    assert_eq!(
        f.egress.as_ref().unwrap().kind,
        crate::eval::DecisionKind::TierDefault
    );
    assert!(!f.allowed);
    // DNS egress is allowed by allow-dns-egress, but step 8's GNP selects every pod
    // with a k8s-app label — coredns too — so coredns's ingress is now isolated in
    // tier default and DNS breaks: what Calico does with these manifests.
    let dns = eval(pkt("10.1.0.1", "10.1.0.53", PROTO_UDP, 53));
    assert_eq!(
        dns.egress.as_ref().unwrap().policy.as_ref().unwrap().name,
        "allow-dns-egress"
    );
    let ingress = dns.ingress.as_ref().unwrap();
    assert_eq!(ingress.kind, crate::eval::DecisionKind::TierDefault);
    assert_eq!(
        ingress.policy.as_ref().unwrap().name,
        "allow-monitoring-access"
    );
    let tcp = eval(pkt("10.1.0.1", "10.1.0.53", PROTO_TCP, 53));
    assert_eq!(
        tcp.egress.as_ref().unwrap().kind,
        crate::eval::DecisionKind::TierDefault
    );
    // External → frontend:80 allowed; → database denied.
    assert!(eval(pkt("203.0.113.9", "10.1.0.1", PROTO_TCP, 80)).allowed);
    assert!(!eval(pkt("203.0.113.9", "10.1.0.3", PROTO_TCP, 3306)).allowed);
}

#[test]
fn seed_001_broken_policy_gives_a_positioned_error() {
    let err = load_str(Path::new("seed001.yaml"), SEED_001).unwrap_err();
    let LoadError::Syntax { position, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(position.line, 2, "{err}");
    assert!(err.to_string().starts_with("seed001.yaml:2:"), "{err}");
}

#[test]
fn seed_001_repaired_indentation_still_reports_the_missing_structure() {
    // Someone fixing only the indentation gets a field error, not an empty policy.
    let text = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: default-deny\nspec:\n  order: 500\n  selector: all()\n  - Ingress\n";
    assert!(load_str(Path::new("t.yaml"), text).is_err());
    let text = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: default-deny\nspec:\n  order: 500\n  selector: all()\n  types: [Ingress, Egress]\n  ingres:\n  - action: Deny\n";
    let err = load_str(Path::new("t.yaml"), text).unwrap_err();
    assert!(err.to_string().contains("spec.ingres"), "{err}");
    assert_eq!(err.line(), Some(9));
}

#[test]
fn seed_002_loads() {
    let (c, warnings) = cluster(SEED_002).unwrap();
    assert!(warnings.is_empty());
    assert_eq!(c.policies.len(), 3);
    assert_eq!(c.host_endpoints.len(), 1);
    let internal = policy(&c, "allow-cluster-internal-ingress-only");
    assert!(internal.pre_dnat && internal.apply_on_forward);
    assert_eq!(internal.ingress[0].source.nets[0].to_string(), "1.2.0.0/16");
    // preDNAT policies never apply to workload endpoints.
    assert_eq!(c.policies[0].name.name, "allow-nodeport");
    assert_eq!(c.policies[1].name.name, "allow-outbound-external");
    // The text as pasted (with INSERT_IP_HERE) is a positioned CIDR error.
    let pasted = SEED_002.replace("192.0.2.10", "INSERT_IP_HERE");
    let err = load_str(Path::new("seed002.yaml"), &pasted).unwrap_err();
    assert!(err.to_string().contains("spec.expectedIPs[0]"), "{err}");
}

fn gnp(spec: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n{spec}"
    )
}

fn problem(text: &str) -> PolicyProblem {
    cluster(text).map(|_| ()).unwrap_err().problem
}

#[test]
fn validation_rejects_what_calico_rejects() {
    assert_eq!(
        problem(&gnp(
            "  ingress:\n  - action: Allow\n    destination:\n      ports: [80]\n"
        )),
        PolicyProblem::PortsWithoutPortProtocol
    );
    assert_eq!(
        problem(&gnp(
            "  ingress:\n  - action: Allow\n    source:\n      nets: [10.0.0.0/8]\n    destination:\n      nets: [fd00::/8]\n"
        )),
        PolicyProblem::MixedIpVersions
    );
    assert_eq!(
        problem(&gnp("  preDNAT: true\n  ingress:\n  - action: Allow\n")),
        PolicyProblem::PreDnatWithoutApplyOnForward
    );
    assert_eq!(
        problem(&gnp(
            "  preDNAT: true\n  applyOnForward: true\n  egress:\n  - action: Allow\n"
        )),
        PolicyProblem::PreDnatWithEgress
    );
    assert_eq!(
        problem(&gnp(
            "  preDNAT: true\n  doNotTrack: true\n  applyOnForward: true\n  ingress:\n  - action: Allow\n"
        )),
        PolicyProblem::DoNotTrackWithPreDnat
    );
    assert_eq!(
        problem(&gnp(
            "  ingress:\n  - action: Allow\n    protocol: TCP\n    icmp: {type: 8}\n"
        )),
        PolicyProblem::IcmpWithoutIcmpProtocol
    );
    assert!(matches!(
        problem(&gnp(
            "  ingress:\n  - action: Allow\n    protocol: TCP\n    destination:\n      ports: ['90:80']\n"
        )),
        PolicyProblem::InvalidPort { .. }
    ));
    assert!(matches!(
        problem(&gnp("  ingress:\n  - action: Allow\n    protocol: XTP\n")),
        PolicyProblem::InvalidProtocol { .. }
    ));
    assert!(matches!(
        problem(&gnp("  tier: nope\n")),
        PolicyProblem::UnknownTier { .. }
    ));
    let err = cluster(&gnp(
        "  ingress:\n  - action: Allow\n    destination:\n      ports: [80]\n",
    ))
    .map(|_| ())
    .unwrap_err();
    assert_eq!(err.field, "spec.ingress[0].destination.ports");
    assert!(
        err.fix
            .as_deref()
            .is_some_and(|f| f.contains("protocol: TCP"))
    );
    assert!(err.to_string().contains("test.yaml:1:"), "{err}");
}

#[test]
fn kubernetes_validation() {
    let np = |ports: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: n}}\nspec:\n  podSelector: {{}}\n  ingress:\n  - ports:\n    - {ports}\n"
        )
    };
    assert!(cluster(&np("{port: 80, endPort: 79}")).is_err());
    assert!(cluster(&np("{port: http, endPort: 90}")).is_err());
    assert!(cluster(&np("{protocol: ICMP}")).is_err());
    let (c, _) = cluster(&np("{port: 80, endPort: 90}")).unwrap();
    assert_eq!(
        c.policies[0].ingress[0].destination.ports,
        vec![PortMatch::Range(80, 90)]
    );
    assert_eq!(c.policies[0].ingress[0].protocol, Some(PROTO_TCP));
    let (c, _) = cluster(&np("{protocol: UDP}")).unwrap();
    assert!(c.policies[0].ingress[0].destination.ports.is_empty());
}

#[test]
fn policy_types_default_like_the_api_server() {
    let np = |spec: &str| {
        let (c, _) = cluster(&format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: n}}\nspec:\n  podSelector: {{}}\n{spec}"
        ))
        .unwrap();
        (c.policies[0].applies_ingress, c.policies[0].applies_egress)
    };
    assert_eq!(np(""), (true, false));
    assert_eq!(np("  egress: []\n"), (true, false));
    assert_eq!(np("  egress:\n  - {}\n"), (true, true));
    assert_eq!(np("  policyTypes: [Egress]\n"), (false, true));
    let calico = |spec: &str| {
        let (c, _) = cluster(&gnp(spec)).unwrap();
        (c.policies[0].applies_ingress, c.policies[0].applies_egress)
    };
    assert_eq!(calico("  selector: all()\n"), (true, false));
    assert_eq!(calico("  egress:\n  - action: Allow\n"), (false, true));
    assert_eq!(
        calico("  egress:\n  - action: Allow\n  ingress:\n  - action: Allow\n"),
        (true, true)
    );
}

#[test]
fn tiers_and_policies_are_ordered() {
    let text = format!(
        "{}\n---\n{}\n---\n{}\n---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {{name: security}}\nspec: {{order: 10}}\n",
        gnp("  order: 5\n").replace("name: p", "name: b"),
        gnp("  tier: security\n").replace("name: p", "name: z"),
        gnp("").replace("name: p", "name: a"),
    );
    let (c, _) = cluster(&text).unwrap();
    let tiers: Vec<&str> = c.tiers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        tiers,
        ["security", "kube-admin", "default", "kube-baseline"]
    );
    let names: Vec<&str> = c.policies.iter().map(|p| p.name.name.as_str()).collect();
    assert_eq!(names, ["z", "b", "a"]);
}

#[test]
fn namespaced_rule_selectors_are_scoped() {
    let text = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p, namespace: n}\nspec:\n  ingress:\n  - action: Allow\n    source: {selector: app == 'a'}\n  - action: Allow\n    source: {nets: [10.0.0.0/8]}\n  - action: Allow\n    source: {namespaceSelector: global()}\n";
    let (c, _) = cluster(text).unwrap();
    let p = &c.policies[0];
    assert_eq!(p.subject.namespace, NamespaceScope::Named("n".to_owned()));
    assert_eq!(
        p.ingress[0].source.selector.as_ref().unwrap().namespace,
        NamespaceScope::Named("n".to_owned())
    );
    assert!(p.ingress[1].source.selector.is_none());
    assert_eq!(
        p.ingress[2].source.selector.as_ref().unwrap().namespace,
        NamespaceScope::NonNamespaced
    );
}

/// Security item 10: a pod on the host's network would give the node's address the
/// pod's labels (so a rule selecting e.g. kube-system would match everything the node
/// sends), and a terminated pod's address is free for the next pod, which must not be
/// judged as the old one. Calico makes neither an endpoint (`IsReadyCalicoPod`).
#[test]
fn host_network_and_terminated_pods_are_not_endpoints() {
    let pod = |name: &str, ip: &str, extra_spec: &str, phase: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: kube-system, labels: {{app: {name}}}}}\nspec:\n  nodeName: node1\n{extra_spec}  containers: [{{name: c}}]\nstatus:\n  podIP: {ip}\n{phase}"
        )
    };
    let text = [
        pod("proxy", "198.18.255.1", "  hostNetwork: true\n", ""),
        pod("job", "198.18.0.7", "", "  phase: Succeeded\n"),
        pod("crashed", "198.18.0.8", "", "  phase: Failed\n"),
        pod(
            "web",
            "198.18.0.9",
            "  hostNetwork: false\n",
            "  phase: Running\n",
        ),
        pod("starting", "198.18.0.10", "", "  phase: Pending\n"),
    ]
    .join("---\n");
    let (c, _) = cluster(&text).unwrap();
    let names: Vec<&str> = c.endpoints.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["starting", "web"]);
    for addr in ["198.18.255.1", "198.18.0.7", "198.18.0.8"] {
        assert!(
            c.endpoint_at(addr.parse().unwrap()).is_none(),
            "{addr} must have no identity"
        );
    }
}

#[test]
fn host_network_and_finished_pods_are_no_endpoints_and_services_get_backends() {
    let (c, _) = cluster(
        "\
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: a, labels: {app: web}}
spec: {nodeName: node2, containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
status: {podIP: 198.18.32.10}
---
apiVersion: v1
kind: Pod
metadata: {name: exporter, namespace: a, labels: {app: web}}
spec: {nodeName: node1, hostNetwork: true, containers: [{name: c, ports: [{name: http, containerPort: 9100}]}]}
status: {podIP: 198.18.255.1}
---
apiVersion: v1
kind: Pod
metadata: {name: job, namespace: a, labels: {role: admin}}
spec: {containers: [{name: c}]}
status: {phase: Succeeded, podIP: 198.18.0.10}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: a}
spec: {clusterIP: 198.19.0.20, type: NodePort, externalTrafficPolicy: Local, selector: {app: web}, ports: [{port: 80, targetPort: http, nodePort: 30080}]}
---
apiVersion: v1
kind: Service
metadata: {name: outside, namespace: a}
spec: {clusterIP: 198.19.0.21, ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: outside-x, namespace: a, labels: {kubernetes.io/service-name: outside}}
addressType: IPv4
endpoints: [{addresses: [198.18.255.2]}]
ports: [{name: http, port: 8080}]
",
    )
    .unwrap();
    let names: Vec<&str> = c.endpoints.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        ["web"],
        "hostNetwork and finished pods are no endpoints"
    );
    let svc = |name: &str| c.services.iter().find(|s| s.id.name == name).unwrap();
    let web = svc("web");
    assert!(web.external_traffic_local);
    let backends: Vec<(String, u16, Option<String>)> = web.backends[0]
        .endpoints
        .iter()
        .map(|e| (e.ip.to_string(), e.port, e.node.clone()))
        .collect();
    // The hostNetwork pod is a backend with the node's address (as in Kubernetes).
    assert_eq!(
        backends,
        [
            ("198.18.32.10".to_owned(), 8080, Some("node2".to_owned())),
            ("198.18.255.1".to_owned(), 9100, Some("node1".to_owned())),
        ]
    );
    let outside = svc("outside");
    assert!(!outside.external_traffic_local);
    assert_eq!(outside.backends[0].endpoints.len(), 1);
    assert_eq!(
        outside.backends[0].endpoints[0].ip.to_string(),
        "198.18.255.2"
    );
    assert_eq!(outside.backends[0].endpoints[0].port, 8080);
}
