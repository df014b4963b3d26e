//! The model kept per object compiles what `selection::select` would pick from the
//! same cache, after any sequence of changes (good, broken and unenforceable versions,
//! deletions, tiers), and refuses the same objects for the same reasons.

use std::path::Path;

use serde_json::{Value, json};

use super::*;
use crate::agent::selection::select;
use crate::datastore::{Stored, read_document};
use crate::testkit::arbitrary::{Gen, generate};

/// The documents of a generated cluster, each under its own name.
fn documents(seed: u64) -> Vec<(String, Value)> {
    generate(seed)
        .objects
        .into_iter()
        .enumerate()
        .map(|(i, v)| (format!("d{i:03}"), v))
        .collect()
}

fn stored(name: &str, doc: &Value, before: &[ObjectId]) -> Vec<Stored> {
    let origin = format!("objects/{name}.json");
    read_document(Path::new(&origin), &origin, &doc.to_string(), before)
}

/// A version of `doc` that does not load (a bad CIDR or port), that loads but cannot
/// be enforced (an `http` match in a Calico rule), or another object's content under this
/// name.
fn variant(g: &mut Gen, doc: &Value, donors: &[(String, Value)]) -> Value {
    let mut v = doc.clone();
    match g.below(4) {
        0 => {
            v["spec"]["ingress"] =
                json!([{"action": "Allow", "source": {"nets": ["10.0.0.0/99"]}}]);
            v["metadata"]["labels"] = json!({"bad label": "x"});
        }
        1 => {
            v["spec"]["ingress"] =
                json!([{"action": "Allow", "protocol": "TCP", "http": {"methods": ["GET"]}}]);
        }
        _ => {
            let same: Vec<&Value> = donors
                .iter()
                .map(|(_, d)| d)
                .filter(|d| d["kind"] == doc["kind"] && d["apiVersion"] == doc["apiVersion"])
                .collect();
            if let Some(d) = same.get(g.below(same.len().max(1))) {
                v = (*d).clone();
                v["metadata"]["name"] = doc["metadata"]["name"].clone();
                v["metadata"]["namespace"] = doc["metadata"]["namespace"].clone();
                if v["metadata"]["namespace"].is_null()
                    && let Some(m) = v["metadata"].as_object_mut()
                {
                    m.remove("namespace");
                }
            }
        }
    }
    v
}

/// Checks `model` against `select`; returns the fallbacks it used.
fn same_as_select(model: &Model, what: &str) -> Vec<Fallback> {
    let reference = select(model.cache());
    assert_eq!(*model.cluster(), reference.cluster, "{what}: cluster");
    let mine = refused_by_object(model);
    let theirs: BTreeMap<String, (Fallback, String)> = reference
        .refused
        .into_iter()
        .map(|r| (r.object, (r.fallback, r.reason)))
        .collect();
    assert_eq!(mine, theirs, "{what}: refused");
    mine.into_values().map(|(f, _)| f).collect()
}

/// The datastore changes for one step on the document `name`: when it is present,
/// deleted (`delete`) or edited to a [`variant`]; when not, added as `doc`. `current`
/// (the documents present) follows.
fn change(
    g: &mut Gen,
    model: &Model,
    current: &mut Vec<(String, Value)>,
    (name, doc): (&str, &Value),
    donors: &[(String, Value)],
    delete: bool,
) -> Vec<Change> {
    let before: Vec<ObjectId> = model
        .cache()
        .entries()
        .filter(|(_, e)| e.origin == format!("objects/{name}.json"))
        .map(|(id, _)| id.clone())
        .collect();
    match current.iter().position(|(n, _)| n == name) {
        Some(i) if delete => {
            current.remove(i);
            before.into_iter().map(Change::Delete).collect()
        }
        Some(i) => {
            let v = variant(g, &current[i].1, donors);
            current[i].1 = v.clone();
            let new = stored(name, &v, &before);
            let mut out: Vec<Change> = before
                .iter()
                .filter(|id| !new.iter().any(|s| s.id == **id))
                .cloned()
                .map(Change::Delete)
                .collect();
            out.extend(new.into_iter().map(|s| Change::Upsert(Box::new(s))));
            out
        }
        None => {
            current.push((name.to_owned(), doc.clone()));
            stored(name, doc, &[])
                .into_iter()
                .map(|s| Change::Upsert(Box::new(s)))
                .collect()
        }
    }
}

#[test]
fn changes_one_by_one_compile_what_select_picks() {
    let mut fallbacks: Vec<Fallback> = Vec::new();
    let mut policies = 0;
    for seed in 1..120u64 {
        let docs = documents(seed);
        let donors = documents(seed.wrapping_mul(31) + 7);
        let mut g = Gen::new(seed);
        let mut model = Model::default();
        let mut current: Vec<(String, Value)> =
            docs.iter().filter(|_| g.chance(60)).cloned().collect();
        model.reset(Snapshot {
            revision: 1,
            objects: current
                .iter()
                .flat_map(|(n, d)| stored(n, d, &[]))
                .collect(),
        });
        same_as_select(&model, &format!("seed {seed} reset"));
        for step in 0..15 {
            if g.chance(50) {
                model.enforced();
            }
            let (name, doc) = docs[g.below(docs.len())].clone();
            let delete = g.below(3) == 0;
            let changes = change(&mut g, &model, &mut current, (&name, &doc), &donors, delete);
            model.apply(changes);
            fallbacks.extend(same_as_select(
                &model,
                &format!("seed {seed} step {step} ({name})"),
            ));
            policies += model.cluster().policies.len();
        }
    }
    // The sequences did exercise refusal of every kind, with policies in force.
    for kind in [Fallback::LastGood, Fallback::DenyAll, Fallback::Ignored] {
        assert!(fallbacks.contains(&kind), "no {kind:?} fallback seen");
    }
    assert!(
        policies > 1_000,
        "{policies} policies compiled over all steps"
    );
}

/// The compile that reuses what the last one left (`compile::reuse`, told of every
/// change as the agent does) gives the spec of a full compile, after every step of
/// random change sequences (policies, pods, namespaces, network sets, Services and
/// tiers added, edited, broken and deleted); some steps reuse the classes as they
/// are, some update them for the atoms added and removed, some compute them.
#[test]
fn compiles_reusing_the_last_give_the_spec_of_a_full_compile() {
    use crate::compile::{Reuse, compile_for_node, compile_reusing};
    use crate::eval::host::NodeAddresses;
    let mut reused = 0;
    let mut updated = 0;
    let mut computed = 0;
    let mut restored = 0;
    let mut legs_reused = 0;
    for seed in 1..150u64 {
        let docs = documents(seed);
        let donors = documents(seed.wrapping_mul(17) + 3);
        let mut g = Gen::new(seed ^ 0x5eed);
        let mut model = Model::default();
        let mut reuse = Reuse::default();
        let mut current: Vec<(String, Value)> =
            docs.iter().filter(|_| g.chance(70)).cloned().collect();
        let touched = model.reset(Snapshot {
            revision: 1,
            objects: current
                .iter()
                .flat_map(|(n, d)| stored(n, d, &[]))
                .collect(),
        });
        reuse.follow(&touched);
        for step in 0..12 {
            let cluster = model.cluster();
            // One node per sequence, as an agent has.
            let node = (seed % 2 == 0).then_some("node1");
            let full = compile_for_node(cluster, node);
            let again = compile_reusing(
                cluster,
                node,
                &NodeAddresses::declared(cluster, node),
                &mut reuse,
            );
            assert_eq!(
                format!("{again:?}"),
                format!("{full:?}"),
                "seed {seed} step {step}: a compile reusing the last differs from a full one"
            );
            // Policies most of the time: the changes whose classes can be kept.
            let policies: Vec<usize> = (0..docs.len())
                .filter(|&d| {
                    docs[d].1["kind"]
                        .as_str()
                        .is_some_and(|k| k.ends_with("Policy"))
                })
                .collect();
            let pick = if !policies.is_empty() && g.chance(75) {
                policies[g.below(policies.len())]
            } else {
                g.below(docs.len())
            };
            let (name, doc) = docs[pick].clone();
            // Deleted three times in four when present (and added back later): a
            // policy comes back at its place, the classes before and after alike.
            let delete = g.below(4) != 1;
            let changes = change(&mut g, &model, &mut current, (&name, &doc), &donors, delete);
            let touched = model.apply(changes);
            reuse.follow(&touched);
        }
        reused += reuse.stats().reused;
        updated += reuse.stats().updated;
        computed += reuse.stats().computed;
        restored += reuse.stats().restored;
        legs_reused += reuse.stats().legs_reused;
    }
    assert!(
        reused > 400 && updated > 70 && computed > 400 && restored > 20 && legs_reused > 1000,
        "the sequences must exercise every way: {reused} compiles reused the classes, {updated} updated them, {computed} computed them, {restored} took those from before the last; {legs_reused} legs' verdicts were taken from an earlier compile"
    );
}

/// A leg whose policies are unchanged keeps its verdicts only while the cells are
/// the same: another pod's policy that cuts the port space below the leg's port moves
/// the leg's cell ids, and its kept verdicts would name the wrong cells
/// (`compile::rows`); a change that leaves the classes and the cells as they were
/// reuses them.
#[test]
fn kept_verdicts_follow_the_cells() {
    use crate::compile::{Reuse, compile_for_node, compile_reusing};
    use crate::eval::host::NodeAddresses;
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}});
    let pod = |name: &str, ip: &str| {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "dev", "labels": {"app": name}},
            "spec": {"nodeName": "node1", "containers": [{"name": "c"}]},
            "status": {"podIP": ip}})
    };
    let policy = |name: &str, app: &str, port: u16| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": "dev"},
            "spec": {"podSelector": {"matchLabels": {"app": app}},
                "ingress": [{"from": [{"ipBlock": {"cidr": "198.18.0.0/16"}}],
                    "ports": [{"protocol": "TCP", "port": port}]}]}})
    };
    let mut model = Model::default();
    let mut reuse = Reuse::default();
    let touched = model.reset(Snapshot {
        revision: 1,
        objects: [
            stored("ns", &ns, &[]),
            stored("a", &pod("a", "198.18.0.10"), &[]),
            stored("b", &pod("b", "198.18.0.11"), &[]),
            stored("pa", &policy("pa", "a", 80), &[]),
            stored("pb", &policy("pb", "b", 80), &[]),
        ]
        .into_iter()
        .flatten()
        .collect(),
    });
    reuse.follow(&touched);
    let node = Some("node1");
    let compile_and_compare = |model: &Model, reuse: &mut Reuse, what: &str| {
        let cluster = model.cluster();
        let again = compile_reusing(
            cluster,
            node,
            &NodeAddresses::declared(cluster, node),
            reuse,
        );
        let full = compile_for_node(cluster, node);
        assert!(full.is_ok(), "{what}: {full:?}");
        assert_eq!(format!("{again:?}"), format!("{full:?}"), "{what}");
    };
    compile_and_compare(&model, &mut reuse, "first compile");
    // pb on port 22: the same atom, the classes kept; TCP cut at 22 below pa's 80.
    let Some(before) = model
        .cluster()
        .policies
        .iter()
        .find(|p| p.name.name == "pb")
    else {
        panic!("pb is not in force");
    };
    let before = before.id.clone();
    let touched = model.apply(
        stored("pb", &policy("pb", "b", 22), &[before])
            .into_iter()
            .map(|s| Change::Upsert(Box::new(s)))
            .collect(),
    );
    reuse.follow(&touched);
    compile_and_compare(&model, &mut reuse, "pb moved to port 22");
    let stats = reuse.stats();
    assert_eq!(stats.reused, 1, "{stats:?}");
    // Another policy of b's with the same peer and port: classes and cells as they
    // were, and a's leg taken as it is.
    let legs_reused = stats.legs_reused;
    let touched = model.apply(
        stored("pc", &policy("pc", "b", 22), &[])
            .into_iter()
            .map(|s| Change::Upsert(Box::new(s)))
            .collect(),
    );
    reuse.follow(&touched);
    compile_and_compare(&model, &mut reuse, "pc added");
    assert!(
        reuse.stats().legs_reused > legs_reused,
        "{:?}",
        reuse.stats()
    );
}

#[test]
fn a_policy_change_touches_that_policy_only() {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}});
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "a", "namespace": "dev", "labels": {"app": "a"}},
        "spec": {"nodeName": "node1", "containers": [{"name": "c"}]},
        "status": {"podIP": "198.18.0.10"}});
    let policy = |cidr: &str| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "p", "namespace": "dev"},
            "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": cidr}}]}]}})
    };
    let mut model = Model::default();
    let touched = model.reset(Snapshot {
        revision: 1,
        objects: [
            stored("ns", &ns, &[]),
            stored("pod", &pod, &[]),
            stored("p", &policy("10.0.0.0/8"), &[]),
        ]
        .into_iter()
        .flatten()
        .collect(),
    });
    assert!(touched.other);
    let id = model.cluster().policies[0].id.clone();
    let touched = model.apply(
        stored("p", &policy("10.1.0.0/16"), std::slice::from_ref(&id))
            .into_iter()
            .map(|s| Change::Upsert(Box::new(s)))
            .collect(),
    );
    assert_eq!(touched.policies, [id.clone()].into());
    assert!(
        touched.endpoints.is_empty() && !touched.other,
        "{touched:?}"
    );
    assert_eq!(
        model.cluster().policies[0].ingress[0].source.nets[0].to_string(),
        "10.1.0.0/16"
    );
    assert!(same_as_select(&model, "after the edit").is_empty());
}

#[test]
fn admin_policies_compile_as_the_whole_cluster_does() {
    // The lab found AdminNetworkPolicy and BaselineAdminNetworkPolicy converted as
    // entities (to nothing) by the per-object model, so the agent never enforced them
    // while `explain` and `matrix` did.
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}});
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "a", "namespace": "dev", "labels": {"app": "a"}},
        "spec": {"nodeName": "node1", "containers": [{"name": "c"}]},
        "status": {"podIP": "198.18.0.10"}});
    let subject = json!({"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "dev"}}});
    let rule = json!([{"action": "Deny", "from": [{"namespaces": {}}]}]);
    let anp = json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
        "metadata": {"name": "deny-all"},
        "spec": {"priority": 5, "subject": subject, "ingress": rule}});
    let banp = json!({"apiVersion": "policy.networking.k8s.io/v1alpha1",
        "kind": "BaselineAdminNetworkPolicy", "metadata": {"name": "default"},
        "spec": {"subject": subject, "ingress": rule}});
    let mut model = Model::default();
    model.reset(Snapshot {
        revision: 1,
        objects: [
            stored("ns", &ns, &[]),
            stored("pod", &pod, &[]),
            stored("anp", &anp, &[]),
            stored("banp", &banp, &[]),
        ]
        .into_iter()
        .flatten()
        .collect(),
    });
    let mut kinds: Vec<&str> = model
        .cluster()
        .policies
        .iter()
        .map(|p| p.id.kind.as_str())
        .collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["AdminNetworkPolicy", "BaselineAdminNetworkPolicy"]);
    assert!(same_as_select(&model, "admin policies").is_empty());
}

#[test]
fn nodes_are_kept_for_admin_node_peers() {
    // A Node object is what an AdminNetworkPolicy `nodes` peer selects: the model must
    // keep it as the whole cluster does (it converted to nothing before, so a Deny to
    // nodes denied nothing).
    let node = |address: &str| {
        json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "node1", "labels": {"kubernetes.io/os": "linux"}},
            "status": {"addresses": [{"type": "InternalIP", "address": address}]}})
    };
    let anp = json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
        "metadata": {"name": "deny-nodes"},
        "spec": {"priority": 5, "subject": {"namespaces": {}},
            "egress": [{"action": "Deny", "to": [{"nodes": {"matchLabels": {"kubernetes.io/os": "linux"}}}]}]}});
    let mut model = Model::default();
    model.reset(Snapshot {
        revision: 1,
        objects: [
            stored("node", &node("198.18.255.1"), &[]),
            stored("anp", &anp, &[]),
        ]
        .into_iter()
        .flatten()
        .collect(),
    });
    assert_eq!(model.cluster().nodes.len(), 1);
    assert!(same_as_select(&model, "a node").is_empty());
    let id = model.cluster().nodes[0].id.clone();
    let touched = model.apply(
        stored("node", &node("198.18.255.2"), std::slice::from_ref(&id))
            .into_iter()
            .map(|s| Change::Upsert(Box::new(s)))
            .collect(),
    );
    assert!(touched.other, "{touched:?}");
    let ips: Vec<String> = model.cluster().nodes[0]
        .ips
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(ips, ["198.18.255.2"]);
    assert!(same_as_select(&model, "the node readdressed").is_empty());
    let touched = model.apply(vec![Change::Delete(id)]);
    assert!(touched.other && model.cluster().nodes.is_empty());
    assert!(same_as_select(&model, "the node gone").is_empty());
}
