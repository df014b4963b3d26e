//! The generator makes what the differential tests claim to cover: clusters that
//! convert, with every kind of object and rule field in play.
#![expect(clippy::unwrap_used, reason = "tests panic on unexpected errors")]

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use super::generate;
use crate::model::load_value;
use crate::policy::Cluster;

/// Why `objects` do not convert, if they do not.
fn refusal(objects: &[Value]) -> Option<String> {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    let loaded = match load_value(Path::new("generated.json"), &list) {
        Ok(l) => l,
        Err(e) => return Some(format!("load: {e}")),
    };
    Cluster::from_objects(&loaded).err().map(|e| e.to_string())
}

#[test]
fn generated_clusters_convert_and_use_every_kind() {
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut refused = Vec::new();
    for seed in 1..400u64 {
        let objects = generate(seed).objects;
        if let Some(why) = refusal(&objects) {
            refused.push(format!("seed {seed}: {why}"));
            continue;
        }
        let cluster = super::build(&objects).unwrap();
        for o in &objects {
            *kinds
                .entry(o["kind"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        for p in &cluster.policies {
            for r in p.ingress.iter().chain(&p.egress) {
                if r.source.services.is_some() {
                    *kinds.entry("source.services".to_owned()).or_default() += 1;
                }
                if r.destination.services.is_some() {
                    *kinds.entry("destination.services".to_owned()).or_default() += 1;
                }
                if !r.source.ports.is_empty() {
                    *kinds.entry("source.ports".to_owned()).or_default() += 1;
                }
                if !r.source.not_ports.is_empty() {
                    *kinds.entry("source.notPorts".to_owned()).or_default() += 1;
                }
                if r.source
                    .ports
                    .iter()
                    .chain(&r.source.not_ports)
                    .any(|p| matches!(p, crate::policy::PortMatch::Named(_)))
                {
                    *kinds.entry("named source port".to_owned()).or_default() += 1;
                }
            }
        }
        let backends: usize = cluster.service_backends.values().map(Vec::len).sum();
        *kinds.entry("service backends".to_owned()).or_default() += backends;
    }
    assert!(
        refused.len() < 20,
        "{} refused: {refused:#?}",
        refused.len()
    );
    for want in [
        "AdminNetworkPolicy",
        "BaselineAdminNetworkPolicy",
        "Node",
        "Service",
        "Endpoints",
        "EndpointSlice",
        "source.services",
        "destination.services",
        "service backends",
        "source.ports",
        "source.notPorts",
        "named source port",
    ] {
        assert!(
            kinds.get(want).copied().unwrap_or(0) > 20,
            "{want}: {kinds:?}"
        );
    }
}
