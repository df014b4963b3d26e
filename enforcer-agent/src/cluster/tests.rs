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
    assert_eq!(alloc2.next_pod_index, alloc.next_pod_index + 1);
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
    assert_eq!(alloc.cluster_ips[&id], "198.19.0.11");
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
