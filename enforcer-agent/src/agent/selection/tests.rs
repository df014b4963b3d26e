//! Per-object refusal on the cache: what is compiled for each kind of bad object.

#![expect(clippy::unwrap_used, reason = "a failing test panics with context")]

use std::path::Path;

use super::*;
use crate::datastore::{Change, Snapshot, Stored, read_document};
use crate::policy::RuleAction;

fn stored(name: &str, text: &str) -> Vec<Stored> {
    let origin = format!("objects/{name}.yaml");
    read_document(Path::new(&origin), &origin, text, &[])
}

fn stored_replacing(name: &str, text: &str, id: &ObjectId) -> Vec<Stored> {
    let origin = format!("objects/{name}.yaml");
    read_document(Path::new(&origin), &origin, text, std::slice::from_ref(id))
}

fn cache_of(docs: &[(&str, &str)]) -> ObjectCache {
    let mut cache = ObjectCache::default();
    cache.reset(Snapshot {
        revision: 1,
        objects: docs.iter().flat_map(|(n, t)| stored(n, t)).collect(),
    });
    cache
}

fn upsert(cache: &mut ObjectCache, docs: Vec<Stored>) {
    cache.apply(
        docs.into_iter()
            .map(|s| Change::Upsert(Box::new(s)))
            .collect(),
    );
}

fn id(kind: &str, namespace: &str, name: &str) -> ObjectId {
    ObjectId {
        kind: kind.into(),
        namespace: namespace.into(),
        name: name.into(),
    }
}

const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: dev}\n";

fn pod(name: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: dev, labels: {{app: {name}}}}}\nspec: {{nodeName: node1, containers: [{{name: c}}]}}\nstatus: {{podIP: {ip}}}\n"
    )
}

/// A Calico policy allowing `web` to receive from 10.0.0.0/8; `extra` is added to
/// its rule (to make it unenforceable).
fn calico(extra: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: web-in, namespace: dev}}\nspec:\n  order: 10\n  selector: app == 'web'\n  types: [Ingress]\n  ingress:\n  - action: Allow\n    protocol: TCP\n    source:\n      nets: [10.0.0.0/8]\n{extra}"
    )
}

#[test]
fn everything_good_is_compiled_as_is_in_file_order() {
    let cache = cache_of(&[
        ("b", &pod("b", "198.18.0.11")),
        ("a", &pod("a", "198.18.0.10")),
        ("ns", NS),
    ]);
    let s = select(&cache);
    assert!(s.refused.is_empty());
    assert_eq!(s.latest.len(), 3);
    let names: Vec<&str> = s
        .cluster
        .endpoints
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn a_refused_version_keeps_the_last_good_one_and_the_rest_flows() {
    let policy_id = id("NetworkPolicy (Calico)", "dev", "web-in");
    let mut cache = cache_of(&[
        ("ns", NS),
        ("web", &pod("web", "198.18.0.10")),
        ("p", &calico("")),
    ]);
    let first = select(&cache);
    assert!(first.refused.is_empty());
    let policy_id = first
        .cluster
        .policies
        .iter()
        .find(|p| p.name.name == "web-in")
        .map_or(policy_id, |p| p.id.clone());
    cache.mark_enforced(&first.latest);

    // Valid Calico the dataplane cannot enforce (an `http` match): refused alone; a
    // pod created at the same time is an endpoint at once.
    upsert(
        &mut cache,
        stored_replacing(
            "p",
            &calico(
                "    destination: {ports: [80]}\n  - action: Allow\n    http: {methods: [GET]}\n    protocol: TCP\n",
            ),
            &policy_id,
        ),
    );
    upsert(&mut cache, stored("new", &pod("new", "198.18.0.12")));
    let s = select(&cache);
    assert_eq!(s.refused.len(), 1, "{:?}", s.refused);
    let r = &s.refused[0];
    assert_eq!(r.fallback, Fallback::LastGood);
    assert!(r.reason.contains("http"), "{r:?}");
    assert_eq!(r.origin, "objects/p.yaml");
    let p = s
        .cluster
        .policies
        .iter()
        .find(|p| p.name.name == "web-in")
        .unwrap();
    assert_eq!(p.ingress.len(), 1, "the last good version: {p:?}");
    assert!(!p.ingress[0].destination.has_ports());
    assert!(s.cluster.endpoints.iter().any(|e| e.name == "new"));
    assert!(!s.latest.contains(&policy_id));

    // The version that loads no more: still the last good one.
    upsert(
        &mut cache,
        stored_replacing(
            "p",
            &calico("").replace("10.0.0.0/8", "10.0.0.0/99"),
            &policy_id,
        ),
    );
    let s = select(&cache);
    assert_eq!(s.refused[0].fallback, Fallback::LastGood);
    assert!(
        s.refused[0].reason.contains("10.0.0.0/99"),
        "{:?}",
        s.refused
    );
    assert_eq!(
        s.cluster
            .policies
            .iter()
            .filter(|p| p.name.name == "web-in")
            .count(),
        1
    );
}

#[test]
fn a_never_good_policy_denies_what_it_selects_in_its_place() {
    // Kubernetes policy whose CIDR does not parse: it never loaded.
    let broken_k8s = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad-cidr, namespace: dev}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.300/8}\n";
    // Calico policy with an `http` match: valid Calico, cannot be enforced here.
    let unenforceable = calico(
        "    destination: {ports: [80]}\n  - action: Allow\n    protocol: TCP\n    http: {methods: [GET]}\n",
    );
    let cache = cache_of(&[
        ("ns", NS),
        ("web", &pod("web", "198.18.0.10")),
        ("k", broken_k8s),
        ("p", &unenforceable),
    ]);
    let s = select(&cache);
    let fallbacks: Vec<(&str, Fallback)> = s
        .refused
        .iter()
        .map(|r| (r.origin.as_str(), r.fallback))
        .collect();
    assert_eq!(
        fallbacks,
        [
            ("objects/k.yaml", Fallback::DenyAll),
            ("objects/p.yaml", Fallback::DenyAll)
        ],
        "{:?}",
        s.refused
    );
    assert!(
        s.refused[0].reason.contains("ipBlock.cidr"),
        "{:?}",
        s.refused
    );
    let k = s
        .cluster
        .policies
        .iter()
        .find(|p| p.name.name == "bad-cidr")
        .unwrap();
    assert!(
        k.applies_ingress && k.ingress.is_empty(),
        "isolates, allows nothing: {k:?}"
    );
    let p = s
        .cluster
        .policies
        .iter()
        .find(|p| p.name.name == "web-in")
        .unwrap();
    assert_eq!(p.order, Some(10.0), "in its place");
    assert_eq!(p.ingress.len(), 1);
    assert_eq!(p.ingress[0].action, RuleAction::Deny);
    // The web pod is isolated on ingress by both: the evaluator denies everything.
    let web = s
        .cluster
        .endpoints
        .iter()
        .find(|e| e.name == "web")
        .unwrap();
    assert!(s.cluster.policies.iter().all(|p| p.applies_to_endpoint(
        &s.cluster,
        web,
        crate::policy::Direction::Ingress
    )));
}

#[test]
fn what_has_no_readable_selector_is_ignored_and_reported() {
    let cache = cache_of(&[
        ("ns", NS),
        ("syntax", "apiVersion: v1\nkind: NetworkPolicy\n  bad: [\n"),
        (
            "kind",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolcy\nmetadata: {name: typo, namespace: dev}\nspec: {}\n",
        ),
        (
            "selector",
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: bad-selector}\nspec:\n  selector: app == 'x' &&& tier == 'y'\n  ingress:\n  - action: Allow\n",
        ),
        ("web", &pod("web", "198.18.0.10")),
    ]);
    let s = select(&cache);
    let got: Vec<(&str, Fallback)> = s
        .refused
        .iter()
        .map(|r| (r.origin.as_str(), r.fallback))
        .collect();
    let mut want = [
        ("objects/kind.yaml", Fallback::Ignored),
        ("objects/selector.yaml", Fallback::Ignored),
        ("objects/syntax.yaml", Fallback::Ignored),
    ];
    let mut got_sorted = got.clone();
    got_sorted.sort_unstable_by_key(|(o, _)| *o);
    want.sort_unstable_by_key(|(o, _)| *o);
    assert_eq!(got_sorted, want, "{:?}", s.refused);
    assert!(s.cluster.policies.is_empty());
    assert_eq!(s.cluster.endpoints.len(), 1, "the pod flows");
    let selector = s
        .refused
        .iter()
        .find(|r| r.origin.contains("selector"))
        .unwrap();
    assert!(selector.reason.contains("column"), "{selector:?}");
}

#[test]
fn a_refused_tier_keeps_its_last_good_version_and_its_policies() {
    let tier = |action: &str| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {{name: security}}\nspec: {{order: 10, defaultAction: {action}}}\n"
        )
    };
    let policy = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: security.deny-db}\nspec:\n  tier: security\n  selector: app == 'db'\n  ingress:\n  - action: Deny\n";
    let mut cache = cache_of(&[("ns", NS), ("t", &tier("Deny")), ("p", policy)]);
    let first = select(&cache);
    assert!(first.refused.is_empty(), "{:?}", first.refused);
    cache.mark_enforced(&first.latest);
    let tier_id = id("Tier", "", "security");
    upsert(&mut cache, stored_replacing("t", &tier("Bogus"), &tier_id));
    let s = select(&cache);
    assert_eq!(s.refused.len(), 1, "{:?}", s.refused);
    assert_eq!(s.refused[0].fallback, Fallback::LastGood);
    assert_eq!(s.cluster.policies.len(), 1, "the tier's policy stays");
}
