//! A live cluster after any sequence of single-object changes equals the cluster
//! built whole from the same objects.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::*;
use crate::model::{Loaded, load_value};
use crate::policy::convert::parts::{
    convert_entity, convert_policy, feeds_services, is_policy, services_of,
};
use crate::testkit::arbitrary::{Gen, generate};

/// The generated documents of `seed`, each loaded as its own file (so each is an
/// object of its own order).
fn objects(seed: u64) -> Vec<Loaded> {
    generate(seed)
        .objects
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let mut loaded = load_value(Path::new(&format!("o{i:03}.json")), v).ok()?;
            (loaded.len() == 1).then(|| loaded.remove(0))
        })
        .collect()
}

fn order(loaded: &Loaded) -> Order {
    (loaded.source.file.clone(), loaded.source.document)
}

/// Converts one object as `from_objects_each` would (`None`: it is left out).
fn part(live: &LiveCluster, loaded: &Loaded) -> Option<Part> {
    if is_policy(&loaded.object) {
        let mut warnings = Vec::new();
        return convert_policy(live.tiers(), loaded, &mut warnings)
            .ok()
            .flatten()
            .map(|p| Part::Policy(Box::new(p)));
    }
    convert_entity(loaded).ok()
}

fn services(present: &[&Loaded]) -> (Vec<ServiceInfo>, ServiceBackends) {
    let sources: Vec<&Loaded> = present
        .iter()
        .copied()
        .filter(|l| feeds_services(&l.object))
        .collect();
    services_of(&sources)
}

fn whole(present: &[&Loaded]) -> Cluster {
    let mut sorted: Vec<Loaded> = present.iter().map(|l| (*l).clone()).collect();
    sorted.sort_by_key(order);
    Cluster::from_objects_each(&sorted).0
}

/// A variant of `loaded` with other labels or rules: the same document of another
/// seed's object of the same kind, renamed to this one.
fn variant(g: &mut Gen, loaded: &Loaded, pool: &[Loaded]) -> Loaded {
    let same_kind: Vec<&Loaded> = pool
        .iter()
        .filter(|o| {
            o.object.kind() == loaded.object.kind()
                && !matches!(o.object, crate::model::Object::Tier(_))
        })
        .collect();
    if same_kind.is_empty() {
        return loaded.clone();
    }
    let donor = same_kind[g.below(same_kind.len())];
    let mut doc: Value = donor.object.to_document();
    doc["metadata"]["name"] = Value::String(loaded.object.meta().name.clone());
    match &loaded.object.meta().namespace {
        Some(ns) => doc["metadata"]["namespace"] = Value::String(ns.clone()),
        None => {
            if let Some(m) = doc["metadata"].as_object_mut() {
                m.remove("namespace");
            }
        }
    }
    let path: PathBuf = loaded.source.file.clone();
    load_value(&path, &doc)
        .ok()
        .and_then(|mut l| (l.len() == 1).then(|| l.remove(0)))
        .unwrap_or_else(|| loaded.clone())
}

#[test]
fn single_object_changes_give_the_cluster_built_whole() {
    for seed in 1..150u64 {
        let all = objects(seed);
        let pool = objects(seed ^ 0x5eed);
        let mut g = Gen::new(seed);
        // Start with a random half (tiers always: they change by rebuilding).
        let mut present: Vec<Loaded> = all
            .iter()
            .filter(|l| matches!(l.object, crate::model::Object::Tier(_)) || g.chance(50))
            .cloned()
            .collect();
        let tiers_only: Vec<(ObjectId, Order, Part)> = present
            .iter()
            .filter(|l| matches!(l.object, crate::model::Object::Tier(_)))
            .filter_map(|l| Some((l.object.id(), order(l), convert_entity(l).ok()?)))
            .collect();
        let mut live = LiveCluster::build(tiers_only, Default::default());
        let mut parts = Vec::new();
        for l in &present {
            if matches!(l.object, crate::model::Object::Tier(_)) {
                continue;
            }
            if let Some(p) = part(&live, l) {
                parts.push((l.object.id(), order(l), p));
            }
        }
        let tiers: Vec<(ObjectId, Order, Part)> = present
            .iter()
            .filter(|l| matches!(l.object, crate::model::Object::Tier(_)))
            .filter_map(|l| Some((l.object.id(), order(l), convert_entity(l).ok()?)))
            .collect();
        parts.extend(tiers);
        let refs: Vec<&Loaded> = present.iter().collect();
        live = LiveCluster::build(parts, services(&refs));
        assert_eq!(*live.cluster(), whole(&refs), "seed {seed}: built whole");
        for step in 0..12 {
            let mut touched = Touched::default();
            let candidates: Vec<&Loaded> = all
                .iter()
                .filter(|l| !matches!(l.object, crate::model::Object::Tier(_)))
                .collect();
            if candidates.is_empty() {
                break;
            }
            let chosen = candidates[g.below(candidates.len())];
            let id = chosen.object.id();
            let at = present.iter().position(|l| l.object.id() == id);
            match (at, g.below(3)) {
                (Some(i), 0) => {
                    present.remove(i);
                    assert!(live.remove(&id, &mut touched));
                }
                (Some(i), _) => {
                    let v = variant(&mut g, &present[i], &pool);
                    present[i] = v.clone();
                    match part(&live, &v) {
                        Some(p) => assert!(live.upsert(&id, order(&v), p, &mut touched)),
                        None => assert!(live.remove(&id, &mut touched)),
                    }
                }
                (None, _) => {
                    present.push(chosen.clone());
                    if let Some(p) = part(&live, chosen) {
                        assert!(live.upsert(&id, order(chosen), p, &mut touched));
                    }
                }
            }
            let refs: Vec<&Loaded> = present.iter().collect();
            live.set_services(services(&refs), &mut touched);
            assert_eq!(
                *live.cluster(),
                whole(&refs),
                "seed {seed} step {step}: {id} changed"
            );
        }
    }
}

/// `Node` objects (an `AdminNetworkPolicy` `nodes` peer, the trusted tunnel sources) are
/// part of the live cluster: added, changed and removed one by one, the live cluster
/// equals the one built whole (it once left them out, so the agent saw no nodes).
#[test]
fn nodes_come_and_go_like_the_cluster_built_whole() {
    let node = |name: &str, ip: &str, file: &str| {
        let value = serde_json::json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"zone": "a"}},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}});
        load_value(Path::new(file), &value)
            .unwrap_or_else(|e| panic!("{e}"))
            .remove(0)
    };
    let b = node("node-b", "192.0.2.2", "b.json");
    let a = node("node-a", "192.0.2.1", "a.json");
    let a_moved = node("node-a", "192.0.2.9", "a.json");
    let mut live = LiveCluster::build(
        [&b].iter()
            .map(|l| {
                (
                    l.object.id(),
                    order(l),
                    convert_entity(l).unwrap_or_else(|e| panic!("{e}")),
                )
            })
            .collect(),
        Default::default(),
    );
    assert_eq!(*live.cluster(), whole(&[&b]));
    let mut touched = Touched::default();
    for (present, change) in [(vec![&b, &a], &a), (vec![&b, &a_moved], &a_moved)] {
        let part = convert_entity(change).unwrap_or_else(|e| panic!("{e}"));
        assert!(live.upsert(&change.object.id(), order(change), part, &mut touched));
        assert_eq!(*live.cluster(), whole(&present));
        assert_eq!(live.cluster().nodes.len(), 2);
    }
    assert!(touched.other, "a node change touches the peers");
    assert!(live.remove(&a.object.id(), &mut Touched::default()));
    assert_eq!(*live.cluster(), whole(&[&b]));
    assert_eq!(live.cluster().nodes.len(), 1);
}
