//! Compiler tests: hand-written cases and the differential property test (random
#![expect(clippy::unwrap_used, reason = "tests panic on unexpected errors")]
//! clusters × random packets: the simulated BPF lookup over the compiled spec must give
//! the reference evaluator's verdict for every leg).

use proptest::prelude::*;
use serde_json::json;

use crate::testkit::arbitrary::{build, generate, minimise};
use enforcer_common::{
    ACTION_ALLOW, ACTION_DENY, ANY_PEER, PEER_F_LOCAL_ENDPOINT, VERDICT_KIND_PROFILE,
    VERDICT_KIND_TIER_DEFAULT,
};

use super::cells::range_prefixes;
use super::simulate::Dataplane;
use super::*;
use crate::eval::{self, Packet};
use crate::policy::Cluster;

/// The first leg where the simulated dataplane and the evaluator disagree.
fn mismatch(cluster: &Cluster, packets: &[Packet]) -> Option<String> {
    let spec = match compile(cluster) {
        Ok(spec) => spec,
        Err(e) => return Some(format!("compile failed: {e}")),
    };
    let dp = Dataplane::new(&spec);
    for packet in packets {
        let want = eval::evaluate(cluster, packet);
        let got = dp.flow(packet);
        let legs = [
            ("egress", want.egress.as_ref(), got.egress.as_ref()),
            ("ingress", want.ingress.as_ref(), got.ingress.as_ref()),
        ];
        for (leg, want, got) in legs {
            let want_v = want.map(verdict_of);
            let got_v = got.and_then(|g| g.verdict);
            if want_v != got_v {
                return Some(format!(
                    "{leg} leg of {packet:?}:\n  evaluator: {want:?}\n  as verdict: {want_v:?}\n  dataplane: {got:?}"
                ));
            }
        }
    }
    None
}

fn check_seed(seed: u64) -> Result<(), String> {
    let generated = generate(seed);
    let Some(cluster) = build(&generated.objects) else {
        return Ok(());
    };
    if mismatch(&cluster, &generated.packets).is_none() {
        return Ok(());
    }
    let (objects, packets, message) =
        minimise(generated.objects, generated.packets, |objects, packets| {
            build(objects).and_then(|c| mismatch(&c, packets))
        });
    let yaml: Vec<String> = objects
        .iter()
        .map(|o| serde_json::to_string_pretty(o).unwrap_or_default())
        .collect();
    Err(format!(
        "seed {seed}: dataplane and evaluator disagree\n{message}\nminimal reproducer:\n{}\npacket: {:?}",
        yaml.join("\n---\n"),
        packets
    ))
}

fn diff_cases() -> u32 {
    std::env::var("ENFORCER_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: diff_cases(), failure_persistence: None, max_shrink_iters: 0, ..ProptestConfig::default() })]
    /// Random clusters × 16 random packets each.
    #[test]
    fn compiled_dataplane_agrees_with_evaluator(seed in any::<u64>()) {
        check_seed(seed).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn generator_produces_valid_clusters() {
    // Guards the differential test against silently skipping everything.
    let clusters: Vec<Cluster> = (1..200u64)
        .filter_map(|s| build(&generate(s).objects))
        .collect();
    assert!(
        clusters.len() > 150,
        "only {}/199 generated clusters were valid",
        clusters.len()
    );
    let endpoints: usize = clusters.iter().map(|c| c.endpoints.len()).sum();
    let policies: usize = clusters.iter().map(|c| c.policies.len()).sum();
    assert!(endpoints > clusters.len() * 2, "{endpoints} endpoints");
    assert!(policies > clusters.len(), "{policies} policies");
}

#[test]
fn range_prefixes_are_aligned_and_cover() {
    for (lo, hi) in [
        (0, 65535),
        (80, 80),
        (80, 90),
        (1, 65534),
        (1000, 2000),
        (65535, 65535),
    ] {
        let prefixes = range_prefixes(lo, hi);
        let mut covered = 0u32;
        for (port, len) in &prefixes {
            let size = 1u32 << (16 - u32::from(*len));
            assert_eq!(u32::from(*port) % size, 0, "{port}/{len} unaligned");
            covered += size;
        }
        assert_eq!(covered, hi - lo + 1);
    }
}

#[test]
fn unselected_pods_get_only_the_profile_default() {
    let cluster = build(&[
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "n"}, "status": {"podIP": "10.0.0.1"}}),
    ])
    .unwrap();
    let spec = compile(&cluster).unwrap();
    assert_eq!(spec.endpoints.len(), 1);
    assert_eq!(spec.verdicts.len(), 2, "{:?}", spec.verdicts);
    assert!(
        spec.verdicts
            .iter()
            .all(|(k, v)| k.peer_class == ANY_PEER && v.kind == VERDICT_KIND_PROFILE)
    );
    // /0 per family and the pod.
    assert_eq!(spec.peers.len(), 3);
    assert!(
        spec.peers
            .iter()
            .any(|p| p.flags & PEER_F_LOCAL_ENDPOINT != 0 && p.local_iface.is_some())
    );
}

#[test]
fn default_deny_and_one_allow() {
    let cluster = build(&[
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "n", "labels": {"app": "web"}}, "status": {"podIP": "10.0.0.1"}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "db", "namespace": "n", "labels": {"app": "db"}}, "status": {"podIP": "10.0.0.2"}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny", "namespace": "n"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "db", "namespace": "n"},
               "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 5432}]}]}}),
    ])
    .unwrap();
    let spec = compile(&cluster).unwrap();
    let dp = Dataplane::new(&spec);
    let pkt = |src: &str, dst: &str, port| Packet {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        proto: 6,
        src_port: 40000,
        dst_port: port,
        icmp_type: 0,
        icmp_code: 0,
    };
    let flow = dp.flow(&pkt("10.0.0.1", "10.0.0.2", 5432));
    assert_eq!(flow.ingress.unwrap().verdict.unwrap().action, ACTION_ALLOW);
    // The web pod's egress is isolated by `deny`.
    assert_eq!(
        flow.egress.unwrap().verdict.unwrap().kind,
        VERDICT_KIND_TIER_DEFAULT
    );
    let flow = dp.flow(&pkt("10.0.0.1", "10.0.0.2", 5433));
    assert_eq!(flow.ingress.unwrap().verdict.unwrap().action, ACTION_DENY);
    assert!(
        mismatch(
            &cluster,
            &[
                pkt("10.0.0.1", "10.0.0.2", 5432),
                pkt("8.8.8.8", "10.0.0.2", 5432)
            ]
        )
        .is_none()
    );
}

/// `cargo test --release -- --ignored scale` prints the compile time of a big cluster.
#[test]
#[ignore = "timing; run in release"]
fn scale_1000_rules_3000_pods() {
    let mut objects = vec![];
    for i in 0..3000 {
        objects.push(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("p{i}"), "namespace": format!("ns{}", i % 30), "labels": {"app": format!("app{}", i % 100), "tier": format!("t{}", i % 7)}},
            "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8000 + (i % 5)}]}]},
            "status": {"podIP": format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256 + 1)}}));
    }
    for i in 0..500 {
        objects.push(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": format!("np{i}"), "namespace": format!("ns{}", i % 30)},
            "spec": {"podSelector": {"matchLabels": {"app": format!("app{}", i % 100)}},
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": format!("t{}", i % 7)}}}], "ports": [{"port": 1000 + i}]},
                                 {"from": [{"ipBlock": {"cidr": format!("192.168.{}.0/24", i % 256)}}], "ports": [{"port": "http"}]}]}}));
    }
    let cluster = build(&objects).unwrap();
    let rules: usize = cluster
        .policies
        .iter()
        .map(|p| p.ingress.len() + p.egress.len())
        .sum();
    let start = std::time::Instant::now();
    let spec = compile(&cluster).unwrap();
    println!(
        "{rules} rules, {} pods: compiled in {:?}: {} peers, {} ports, {} verdicts",
        cluster.endpoints.len(),
        start.elapsed(),
        spec.peers.len(),
        spec.ports.len(),
        spec.verdicts.len()
    );
}

#[test]
fn differential_cases_exercise_every_decision_kind() {
    use std::collections::HashMap;
    let mut kinds: HashMap<String, usize> = HashMap::new();
    for seed in 1..1200u64 {
        let generated = generate(seed);
        let Some(cluster) = build(&generated.objects) else {
            continue;
        };
        for packet in &generated.packets {
            let flow = eval::evaluate(&cluster, packet);
            for leg in [flow.egress, flow.ingress].into_iter().flatten() {
                let policy_kind = leg
                    .policy
                    .as_ref()
                    .map(|p| p.kind.clone())
                    .unwrap_or_default();
                *kinds
                    .entry(format!("{:?}/{:?}/{policy_kind}", leg.kind, leg.action))
                    .or_default() += 1;
                if !leg.logged.is_empty() {
                    *kinds.entry("logged".to_owned()).or_default() += 1;
                }
                if leg.tier.as_deref().is_some_and(|t| t != "default") {
                    *kinds.entry("other tier".to_owned()).or_default() += 1;
                }
            }
        }
    }
    for want in [
        "Rule/Allow/NetworkPolicy",
        "Rule/Allow/GlobalNetworkPolicy",
        "Rule/Deny/projectcalico.org/NetworkPolicy",
        "TierDefault/Deny/NetworkPolicy",
        "Profile/Allow/",
        "Rule/Allow/AdminNetworkPolicy",
        "Rule/Deny/AdminNetworkPolicy",
        "Rule/Allow/BaselineAdminNetworkPolicy",
        "Rule/Deny/BaselineAdminNetworkPolicy",
        "logged",
        "other tier",
    ] {
        assert!(
            kinds.get(want).copied().unwrap_or(0) > 20,
            "{want}: {kinds:?}"
        );
    }
}

#[test]
#[ignore = "timing"]
fn time_phases() {
    let (mut t_gen, mut t_build, mut t_compile, mut t_check) = (
        std::time::Duration::ZERO,
        std::time::Duration::ZERO,
        std::time::Duration::ZERO,
        std::time::Duration::ZERO,
    );
    for seed in 1..1200u64 {
        let t = std::time::Instant::now();
        let g = generate(seed);
        t_gen += t.elapsed();
        let t = std::time::Instant::now();
        let Some(c) = build(&g.objects) else { continue };
        t_build += t.elapsed();
        let t = std::time::Instant::now();
        let spec = compile(&c).unwrap();
        t_compile += t.elapsed();
        let t = std::time::Instant::now();
        let dp = Dataplane::new(&spec);
        for p in &g.packets {
            let _ = (eval::evaluate(&c, p), dp.flow(p));
        }
        t_check += t.elapsed();
    }
    println!("gen {t_gen:?} build {t_build:?} compile {t_compile:?} check {t_check:?}");
}

/// Seeds the random search once found disagreeing; kept as regressions.
#[test]
fn regression_seeds() {
    for seed in [
        7_031_062_733_012_995_458,
        11_238_129_832_080_816_038,
        1_602_049_303_545_688_889,
        7_638_419_956_970_912_240,
    ] {
        if let Err(e) = check_seed(seed) {
            panic!("{e}");
        }
    }
}

/// Issue 9 item 7: every front-end of a Service is deferred, not only `spec.clusterIP`:
/// the second cluster IP of a dual-stack Service, external IPs and load balancer
/// addresses are VIP peers; node ports and the local pods' host ports are front-end
/// ports on the node's addresses.
#[test]
fn issue9_7_every_service_front_end_is_deferred() {
    use enforcer_common::{FRONTEND_F_HOST_PORT, FRONTEND_F_NODE_PORT, PEER_F_SERVICE_VIP};
    let cluster = build(&[
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "n", "labels": {"app": "web"}},
               "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 8080, "hostPort": 8443}, {"containerPort": 53, "protocol": "UDP", "hostPort": 5353}]}]},
               "status": {"podIP": "10.0.0.1"}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "far", "namespace": "n"},
               "spec": {"nodeName": "node2", "containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 9999}]}]},
               "status": {"podIP": "10.0.1.1"}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "n"},
               "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00:96::10"],
                        "externalIPs": ["192.0.2.10"], "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080}]},
               "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}}}),
    ])
    .unwrap();
    let spec = compile_for_node(&cluster, Some("node1")).unwrap();
    for vip in [
        "10.96.0.10/32",
        "fd00:96::10/128",
        "192.0.2.10/32",
        "198.51.100.7/32",
    ] {
        let net: ipnet::IpNet = vip.parse().unwrap();
        let peer = spec.peers.iter().find(|p| p.net == net);
        assert!(
            peer.is_some_and(|p| p.flags & PEER_F_SERVICE_VIP != 0),
            "{vip} is not a VIP peer: {peer:?}"
        );
    }
    let frontends: Vec<(u8, u16, u32)> = spec
        .frontends
        .iter()
        .map(|f| (f.proto, f.port, f.flags))
        .collect();
    // The node port everywhere; the host ports of this node's pod only.
    assert_eq!(
        frontends,
        [
            (6, 8443, FRONTEND_F_HOST_PORT),
            (6, 30080, FRONTEND_F_NODE_PORT),
            (17, 5353, FRONTEND_F_HOST_PORT),
        ]
    );
}

/// Security items 11 and 9: the peer map says which addresses are the node's own
/// (whether or not a host endpoint exists: the ingress guard and the Service deferral
/// need it) and which are any cluster node's (the only trusted tunnel sources).
#[test]
fn issue9_11_node_addresses_are_flagged_in_the_peer_map() {
    use enforcer_common::{PEER_F_CLUSTER_NODE, PEER_F_HOST};
    let cluster = build(&[
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "n"},
               "spec": {"containers": [{"name": "c"}]}, "status": {"podIP": "10.0.0.1"}}),
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node1"},
               "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.1"},
                                        {"type": "Hostname", "address": "node1"}]}}),
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node2"},
               "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.2"},
                                        {"type": "ExternalIP", "address": "2001:db8::2"}]}}),
    ])
    .unwrap();
    let own = NodeAddresses::of_node(["192.0.2.1/32".parse().unwrap()]);
    let spec = compile_on_node(&cluster, Some("node1"), &own).unwrap();
    let flags = |net: &str| {
        let net: ipnet::IpNet = net.parse().unwrap();
        spec.peers
            .iter()
            .find(|p| p.net == net)
            .map(|p| p.flags & (PEER_F_HOST | PEER_F_CLUSTER_NODE))
    };
    assert_eq!(
        flags("192.0.2.1/32"),
        Some(PEER_F_HOST | PEER_F_CLUSTER_NODE)
    );
    assert_eq!(flags("192.0.2.2/32"), Some(PEER_F_CLUSTER_NODE));
    assert_eq!(flags("2001:db8::2/128"), Some(PEER_F_CLUSTER_NODE));
    assert_eq!(flags("10.0.0.1/32"), Some(0));
    assert_eq!(flags("0.0.0.0/0"), Some(0));
}

/// Issue 13: `source.ports` / `source.notPorts` (numbers, ranges, named ports of the
/// source endpoint) on ingress and egress, through the `ENF_SOURCE_PORTS` refinement:
/// what the rules say, and the simulated lookup agreeing with the evaluator on every
/// boundary of every cut.
#[test]
fn issue13_source_ports_are_enforced() {
    let pod = |name: &str, ip: &str, ports: serde_json::Value| {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "n", "labels": {"app": name}},
            "spec": {"containers": [{"name": "c", "ports": ports}]},
            "status": {"podIP": ip}})
    };
    let cluster = build(&[
        pod("server", "10.0.0.1", json!([])),
        pod("client", "10.0.0.2", json!([{"name": "src-port", "containerPort": 7777, "protocol": "TCP"}])),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
            "metadata": {"name": "by-source-port", "namespace": "n"},
            "spec": {"selector": "app == 'server'", "types": ["Ingress"], "ingress": [
                {"action": "Deny", "protocol": "TCP", "source": {"ports": [1500]}},
                {"action": "Allow", "protocol": "TCP", "source": {"ports": ["1000:1999", "src-port"]}, "destination": {"ports": [80]}},
                {"action": "Allow", "protocol": "UDP", "source": {"notPorts": [53]}},
            ]}}),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
            "metadata": {"name": "client-out", "namespace": "n"},
            "spec": {"selector": "app == 'client'", "types": ["Egress"], "egress": [
                {"action": "Allow", "protocol": "TCP", "source": {"ports": ["src-port"]}},
                {"action": "Allow", "protocol": "UDP"},
            ]}}),
    ])
    .unwrap();
    let spec = compile(&cluster).unwrap();
    assert!(!spec.source_ports.is_empty());
    let dp = Dataplane::new(&spec);
    let pkt = |src: &str, proto: u8, sport: u16, dport: u16| Packet {
        src: src.parse().unwrap(),
        dst: "10.0.0.1".parse().unwrap(),
        proto,
        src_port: sport,
        dst_port: dport,
        icmp_type: 0,
        icmp_code: 0,
    };
    let ingress = |p: Packet| dp.flow(&p).ingress.unwrap().verdict.unwrap().action;
    let egress = |p: Packet| dp.flow(&p).egress.unwrap().verdict.unwrap().action;
    assert_eq!(ingress(pkt("198.18.0.9", 6, 1200, 80)), ACTION_ALLOW);
    assert_eq!(ingress(pkt("198.18.0.9", 6, 1500, 80)), ACTION_DENY);
    assert_eq!(ingress(pkt("198.18.0.9", 6, 2000, 80)), ACTION_DENY);
    assert_eq!(ingress(pkt("198.18.0.9", 6, 1200, 81)), ACTION_DENY);
    // A named source port resolves on the source endpoint: the client's 7777, not an
    // external host's.
    assert_eq!(ingress(pkt("10.0.0.2", 6, 7777, 80)), ACTION_ALLOW);
    assert_eq!(ingress(pkt("198.18.0.9", 6, 7777, 80)), ACTION_DENY);
    assert_eq!(ingress(pkt("198.18.0.9", 17, 53, 9)), ACTION_DENY);
    assert_eq!(ingress(pkt("198.18.0.9", 17, 54, 9)), ACTION_ALLOW);
    // Egress: the named source port is the local endpoint's own.
    assert_eq!(egress(pkt("10.0.0.2", 6, 7777, 80)), ACTION_ALLOW);
    assert_eq!(egress(pkt("10.0.0.2", 6, 7778, 80)), ACTION_DENY);
    let mut packets = Vec::new();
    for src in ["10.0.0.2", "198.18.0.9"] {
        for proto in [6, 17, 132] {
            for sport in [
                0, 52, 53, 54, 999, 1000, 1499, 1500, 1501, 1999, 2000, 7776, 7777, 7778, 65535,
            ] {
                for dport in [0, 79, 80, 81, 65535] {
                    packets.push(pkt(src, proto, sport, dport));
                }
            }
        }
    }
    assert_eq!(mismatch(&cluster, &packets), None);
}

/// `referenced_policies`: a verdict names the policy that decides it or logs it; a
/// policy that selects no endpoint of the node is named by none (so it takes no stable
/// id and no `ENF_POLICY_NAMES` entry: a node holds the names of what judges its
/// endpoints, however many policies the cluster has).
#[test]
fn referenced_policies_are_those_verdicts_name() {
    let pod = |name: &str, ip: &str, node: &str| {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "n", "labels": {"app": name}},
            "spec": {"nodeName": node, "containers": [{"name": "c"}]},
            "status": {"podIP": ip}})
    };
    let policy = |name: &str, selector: &str, action: &str| {
        json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": "n"},
            "spec": {"selector": selector, "types": ["Ingress"],
                     "ingress": [{"action": action, "protocol": "TCP"}]}})
    };
    let cluster = build(&[
        pod("local", "10.0.0.1", "node1"),
        pod("remote", "10.0.0.2", "node2"),
        policy("logs-local", "app == 'local'", "Log"),
        policy("for-remote", "app == 'remote'", "Allow"),
        policy("for-local", "app == 'local'", "Allow"),
        policy("for-nobody", "app == 'nobody'", "Deny"),
    ])
    .unwrap();
    let spec = compile_for_node(&cluster, Some("node1")).unwrap();
    let used: Vec<(&str, bool)> = spec
        .policies
        .iter()
        .map(|p| p.name.as_str())
        .zip(spec.referenced_policies())
        .collect();
    let mut used_names: Vec<&str> = used.iter().filter(|u| u.1).map(|u| u.0).collect();
    used_names.sort_unstable();
    assert_eq!(used_names, ["for-local", "logs-local"], "{used:?}");
    // Compiled for every node, the remote pod's policy judges too.
    let all = compile(&cluster).unwrap();
    assert_eq!(all.referenced_policies().iter().filter(|&&u| u).count(), 3);
}
