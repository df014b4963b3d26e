#![expect(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::addresses::pod_v6;
use super::implied::add_implied;
use super::nodes::default_nodes;
use super::{Allocation, ClusterPlan, Declared, declare, plan};
use crate::model::{Object, ObjectId};

const TUTORIAL: &str = include_str!("../../../tests/fixtures/tutorial/dev-app-deployments.yaml");

fn declared_from(text: &str) -> BTreeMap<ObjectId, Declared> {
    let loaded = crate::model::load_str(std::path::Path::new("t.yaml"), text).unwrap();
    let mut declared = declare(loaded.into_iter().map(|l| Declared {
        object: l.object,
        source: Some(l.source),
    }));
    add_implied(&mut declared);
    declared
}

fn plan_fresh(declared: &BTreeMap<ObjectId, Declared>) -> (ClusterPlan, Allocation) {
    plan(declared, &default_nodes(), &Allocation::default()).unwrap()
}

#[test]
fn tutorial_plan() {
    let declared = declared_from(TUTORIAL);
    assert!(declared.contains_key(&ObjectId {
        kind: "Namespace".into(),
        namespace: String::new(),
        name: "dev-app".into()
    }));
    let (plan, _) = plan_fresh(&declared);
    let names: Vec<&str> = plan.pods.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "dev-app/backend-0",
            "dev-app/backend-1",
            "dev-app/database-0",
            "dev-app/frontend-0",
            "dev-app/frontend-1",
            "kube-system/coredns-0"
        ]
    );
    let backend = &plan.pods["dev-app/backend-0"];
    assert_eq!(backend.owner.as_deref(), Some("backend"));
    assert_eq!(backend.pod.metadata.labels["tier"], "api");
    assert_eq!(backend.pod.spec.node_name.as_deref(), Some("node1"));
    assert_eq!(backend.node, "node1");
    let mut ips: Vec<Ipv4Addr> = plan.pods.values().map(|p| p.ipv4).collect();
    ips.sort();
    assert_eq!(ips[0], Ipv4Addr::new(198, 18, 0, 10));
    let dns = plan
        .services
        .iter()
        .find(|s| s.metadata.name == "kube-dns")
        .unwrap();
    assert_eq!(dns.spec.cluster_ip.as_deref(), Some("198.19.0.10"));
    let backend_svc = plan
        .services
        .iter()
        .find(|s| s.metadata.name == "backend")
        .unwrap();
    assert!(
        backend_svc
            .spec
            .cluster_ip
            .as_deref()
            .unwrap()
            .starts_with("198.19.0.")
    );
    assert_eq!(pod_v6(10), "2001:2::a".parse::<Ipv6Addr>().unwrap());
    assert_eq!(plan.nodes, default_nodes());
}

#[test]
fn pods_of_other_nodes_are_stored_but_not_run() {
    let declared = declared_from(concat!(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: far, namespace: a}\n",
        "spec: {nodeName: node2, containers: [{name: c}]}\n",
        "status: {podIP: 198.18.0.10, podIPs: [{ip: 198.18.0.10}]}\n",
        "---\napiVersion: v1\nkind: Pod\nmetadata: {name: near, namespace: a}\n",
        "spec: {containers: [{name: c}]}\n",
    ));
    let (plan, _) = plan_fresh(&declared);
    assert!(!plan.pods.contains_key("a/far"));
    // The local pod does not get the remote pod's address.
    assert_ne!(plan.pods["a/near"].ipv4, Ipv4Addr::new(198, 18, 0, 10));
    let far = plan
        .objects
        .values()
        .find_map(|o| match o {
            Object::Pod(p) if p.metadata.name == "far" => Some(p),
            _ => None,
        })
        .unwrap();
    assert_eq!(far.spec.node_name.as_deref(), Some("node2"));
    assert_eq!(far.ips(), vec!["198.18.0.10".parse::<IpAddr>().unwrap()]);
}

#[test]
fn bad_input_names_the_object() {
    let declared = declared_from(
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec: {clusterIP: nope}\n",
    );
    let err = plan(&declared, &default_nodes(), &Allocation::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("t.yaml document 0") && err.contains("Service a/s"),
        "{err}"
    );
}

#[test]
fn addresses_are_kept_across_plans_and_freed_with_the_pod() {
    let two = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: n}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: n}\n";
    let (first, alloc) = plan_fresh(&declared_from(two));
    assert_eq!(alloc.pods.len(), 3, "a, b and the DNS pod: {alloc:?}");
    assert_eq!(alloc.pods["n/a"].ipv4, first.pods["n/a"].ipv4);
    // `a` goes away, `c` comes: b keeps its address, c gets a new one (not a's: the
    // cursor moves on), and a's address leaves the allocation.
    let next = "apiVersion: v1\nkind: Pod\nmetadata: {name: c, namespace: n}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: n}\n";
    let (second, alloc2) = plan(&declared_from(next), &default_nodes(), &alloc).unwrap();
    assert_eq!(second.pods["n/b"].ipv4, first.pods["n/b"].ipv4);
    assert_ne!(second.pods["n/c"].ipv4, first.pods["n/a"].ipv4);
    assert!(!alloc2.pods.contains_key("n/a"));
    assert_eq!(
        alloc2.next_pod_index["node1"],
        alloc.next_pod_index["node1"] + 1
    );
}

#[test]
fn a_service_keeps_its_cluster_ip_when_an_update_omits_it() {
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec: {ports: [{port: 80}]}\n";
    let other = "apiVersion: v1\nkind: Service\nmetadata: {name: r, namespace: a}\nspec: {ports: [{port: 80}]}\n";
    let (_, alloc) = plan_fresh(&declared_from(svc));
    let id = ObjectId {
        kind: "Service".into(),
        namespace: "a".into(),
        name: "s".into(),
    };
    assert_eq!(alloc.cluster_ips[&id], ["198.19.0.11"]);
    // Planned again with a Service that sorts first: `s` keeps .11.
    let both = format!("{other}---\n{svc}");
    let mut kept = alloc.clone();
    kept.cluster_ips.remove(&ObjectId {
        name: "kube-dns".into(),
        namespace: "kube-system".into(),
        kind: "Service".into(),
    });
    let (plan2, _) = plan(&declared_from(&both), &default_nodes(), &kept).unwrap();
    let ip = |name: &str| {
        plan2
            .services
            .iter()
            .find(|s| s.metadata.name == name)
            .and_then(|s| s.spec.cluster_ip.clone())
            .unwrap()
    };
    assert_eq!(ip("s"), "198.19.0.11");
    assert_eq!(ip("r"), "198.19.0.12");
}

#[test]
fn ipv6_and_dual_stack_services_get_a_cluster_ip_of_each_family() {
    let services = "\
apiVersion: v1
kind: Service
metadata: {name: dual, namespace: a}
spec: {ipFamilyPolicy: PreferDualStack, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: six, namespace: a}
spec: {ipFamilies: [IPv6], ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: four, namespace: a}
spec: {ports: [{port: 80}]}
";
    let (plan1, alloc) = plan_fresh(&declared_from(services));
    let spec = |plan: &ClusterPlan, name: &str| {
        plan.services
            .iter()
            .find(|s| s.metadata.name == name)
            .map(|s| s.spec.clone())
            .unwrap()
    };
    let dual = spec(&plan1, "dual");
    assert_eq!(dual.cluster_ips, ["198.19.0.11", "2001:2:0:19::b"]);
    assert_eq!(dual.cluster_ip.as_deref(), Some("198.19.0.11"));
    assert_eq!(dual.ip_families, ["IPv4", "IPv6"]);
    assert_eq!(dual.ip_family_policy.as_deref(), Some("PreferDualStack"));
    let four = spec(&plan1, "four");
    assert_eq!(four.cluster_ips, ["198.19.0.12"]);
    assert_eq!(four.ip_families, ["IPv4"]);
    assert_eq!(four.ip_family_policy.as_deref(), Some("SingleStack"));
    let six = spec(&plan1, "six");
    assert_eq!(six.cluster_ips, ["2001:2:0:19::c"]);
    assert_eq!(six.cluster_ip.as_deref(), Some("2001:2:0:19::c"));
    // The DNS answers A and AAAA for the dual-stack Service, AAAA only for the IPv6 one.
    let zone = super::dns::Zone::build(&plan1.services, &plan1.pods);
    let dual_rec = &zone.records["dual.a.svc.cluster.local"];
    assert_eq!(dual_rec.a, [Ipv4Addr::new(198, 19, 0, 11)]);
    assert_eq!(
        dual_rec.aaaa,
        ["2001:2:0:19::b".parse::<Ipv6Addr>().unwrap()]
    );
    let six_rec = &zone.records["six.a.svc.cluster.local"];
    assert!(six_rec.a.is_empty(), "{six_rec:?}");
    // An update that turns `four` dual-stack keeps its IPv4 address and adds an IPv6
    // one; `dual` re-declared without its fields keeps both of its addresses.
    let updated = services.replace(
        "metadata: {name: four, namespace: a}\nspec: {",
        "metadata: {name: four, namespace: a}\nspec: {ipFamilyPolicy: RequireDualStack, ",
    );
    let (plan2, _) = plan(&declared_from(&updated), &default_nodes(), &alloc).unwrap();
    assert_eq!(
        spec(&plan2, "four").cluster_ips,
        ["198.19.0.12", "2001:2:0:19::d"]
    );
    assert_eq!(spec(&plan2, "dual").cluster_ips, dual.cluster_ips);
    // Backends of each family behind each ClusterIP.
    let backends = super::services::backends(&plan2.services, &plan2.pods, &plan2.objects);
    let families: Vec<(String, IpAddr)> = backends
        .iter()
        .filter(|b| b.namespace == "a")
        .map(|b| (b.service.clone(), b.cluster_ip))
        .collect();
    assert_eq!(families.len(), 5, "{families:?}");
}

#[test]
fn service_family_fields_the_api_server_refuses_are_refused() {
    let bad = "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec: {ipFamilies: [IPv4, IPv6], ports: [{port: 80}]}\n";
    let err = plan(
        &declared_from(bad),
        &default_nodes(),
        &Allocation::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("ipFamilyPolicy"), "{err}");
}

#[test]
fn several_nodes_spread_pods_and_keep_them_where_they_are() {
    let nodes = super::nodes::cluster_nodes(2).unwrap();
    let declared = declared_from(TUTORIAL);
    let (first, alloc) = plan(&declared, &nodes, &Allocation::default()).unwrap();
    let node_of = |p: &ClusterPlan, key: &str| p.pods[key].node.clone();
    // Each Deployment's replicas land on different nodes.
    for dep in ["backend", "frontend"] {
        assert_ne!(
            node_of(&first, &format!("dev-app/{dep}-0")),
            node_of(&first, &format!("dev-app/{dep}-1")),
            "{dep}"
        );
    }
    // Every pod's address is in its node's block, and the pod object says its node.
    for p in first.pods.values() {
        let node = nodes.iter().find(|n| n.name == p.node).unwrap();
        assert!(node.pod_block.contains_v4(p.ipv4), "{} {}", p.key(), p.ipv4);
        assert_eq!(p.pod.spec.node_name.as_deref(), Some(p.node.as_str()));
    }
    let per_node = |p: &ClusterPlan, n: &str| p.pods.values().filter(|x| x.node == n).count();
    assert!(per_node(&first, "node1").abs_diff(per_node(&first, "node2")) <= 1);
    // Planned again (a Deployment scaled up): nobody moves, the new replica spreads.
    let scaled = TUTORIAL.replacen("replicas: 2", "replicas: 3", 1);
    let (second, _) = plan(&declared_from(&scaled), &nodes, &alloc).unwrap();
    for (key, p) in &first.pods {
        assert_eq!(second.pods[key].node, p.node, "{key} moved");
        assert_eq!(second.pods[key].ipv4, p.ipv4, "{key} renumbered");
    }
    assert_eq!(second.pods.len(), first.pods.len() + 1);
}

#[test]
fn node_name_places_and_host_network_pods_take_the_node_address() {
    let nodes = super::nodes::cluster_nodes(3).unwrap();
    let declared = declared_from(concat!(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: pinned, namespace: a}\n",
        "spec: {nodeName: node3, containers: [{name: c}]}\n",
        "---\napiVersion: v1\nkind: Pod\nmetadata: {name: host, namespace: a}\n",
        "spec: {nodeName: node2, hostNetwork: true, containers: [{name: c, ports: [{containerPort: 9100}]}]}\n",
    ));
    let (p, alloc) = plan(&declared, &nodes, &Allocation::default()).unwrap();
    assert_eq!(p.pods["a/pinned"].node, "node3");
    assert_eq!(p.pods["a/pinned"].ipv4, Ipv4Addr::new(198, 18, 64, 10));
    let host = &p.pods["a/host"];
    assert!(host.host_network);
    assert_eq!(host.ipv4, nodes[1].ipv4);
    assert_eq!(
        host.pod.ips(),
        vec![IpAddr::V4(nodes[1].ipv4), IpAddr::V6(nodes[1].ipv6)]
    );
    // The node's address is not a pod address to hand out or keep.
    assert!(!alloc.pods.contains_key("a/host"));
    assert_eq!(alloc.nodes["a/host"], "node2");
}

#[test]
fn finished_pods_are_stored_keep_their_status_and_free_their_address() {
    let running = "apiVersion: v1\nkind: Pod\nmetadata: {name: job, namespace: a}\nspec: {containers: [{name: c}]}\n";
    let (first, alloc) = plan_fresh(&declared_from(running));
    let ip = first.pods["a/job"].ipv4;
    // The pod completes: it runs no more, its object keeps phase, node and addresses.
    let done = format!("{running}status: {{phase: Succeeded}}\n");
    let (second, alloc2) = plan(&declared_from(&done), &default_nodes(), &alloc).unwrap();
    assert!(!second.pods.contains_key("a/job"));
    let Some(Object::Pod(job)) = second.objects.get(&ObjectId {
        kind: "Pod".into(),
        namespace: "a".into(),
        name: "job".into(),
    }) else {
        panic!("the finished pod is not stored")
    };
    assert!(job.is_finished());
    assert_eq!(job.spec.node_name.as_deref(), Some("node1"));
    assert!(job.ips().contains(&IpAddr::V4(ip)));
    assert!(!alloc2.pods.contains_key("a/job"));
    // A finished pod declared with another pod's address does not take it away.
    let reuse = format!(
        "{running}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: old, namespace: a}}\nspec: {{containers: [{{name: c}}]}}\nstatus: {{phase: Failed, podIP: 198.18.0.10}}\n"
    );
    let (third, _) = plan_fresh(&declared_from(&reuse));
    assert!(!third.pods.contains_key("a/old"));
    assert!(
        third
            .pods
            .values()
            .any(|p| p.ipv4 == Ipv4Addr::new(198, 18, 0, 10))
    );
}
