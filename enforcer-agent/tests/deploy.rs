//! `deploy/kubernetes/` is what a cluster gets: every manifest must parse into the
//! Kubernetes API types (k8s-openapi) with no field the API does not know (a typo in
//! a manifest is silently dropped by the API server), the RBAC rules must be exactly
//! what the agent's watchers read, the `DaemonSet` must have the properties the agent
//! relies on, and every setting of the `ConfigMap` must be one the agent reads.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde::de::DeserializeOwned;
use serde_json::Value;

use enforcer::datastore::kubernetes::resources::{Rule, required_rules};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

/// Every YAML document of a manifest file.
fn documents(file: &str) -> Vec<Value> {
    let path = deploy_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// Fields of `written` that `typed` (the same document through the API type) lost:
/// fields the API does not have.
fn unknown_fields(written: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (written, typed) {
        (Value::Object(w), Value::Object(t)) => {
            for (key, value) in w {
                let sub = format!("{path}.{key}");
                match t.get(key) {
                    Some(tv) => unknown_fields(value, tv, &sub, out),
                    None => out.push(sub),
                }
            }
        }
        (Value::Array(w), Value::Array(t)) => {
            for (i, (wv, tv)) in w.iter().zip(t).enumerate() {
                unknown_fields(wv, tv, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Parses a document as `T`, failing on any field `T` does not have.
fn strict<T: DeserializeOwned + serde::Serialize>(document: &Value) -> T {
    let typed: T = serde_json::from_value(document.clone())
        .unwrap_or_else(|e| panic!("{}: {e}", document["kind"]));
    let back = serde_json::to_value(&typed).unwrap();
    let mut unknown = Vec::new();
    unknown_fields(document, &back, "", &mut unknown);
    // apiVersion and kind are part of the API types' serialization.
    assert!(
        unknown.is_empty(),
        "{} {}: fields the API does not know: {unknown:?}",
        document["kind"],
        document["metadata"]["name"]
    );
    typed
}

#[test]
fn a_misspelt_field_is_found() {
    let document: Value = serde_json::json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "x", "namespce": "kube-system"}
    });
    let typed: ServiceAccount = serde_json::from_value(document.clone()).unwrap();
    let mut unknown = Vec::new();
    unknown_fields(
        &document,
        &serde_json::to_value(&typed).unwrap(),
        "",
        &mut unknown,
    );
    assert_eq!(unknown, [".metadata.namespce"]);
}

#[test]
fn every_manifest_parses_into_the_api_types_with_no_unknown_field() {
    let mut kinds = BTreeSet::new();
    for file in [
        "serviceaccount.yaml",
        "rbac.yaml",
        "configmap.yaml",
        "daemonset.yaml",
    ] {
        for document in documents(file) {
            let kind = document["kind"].as_str().unwrap_or_default().to_owned();
            match kind.as_str() {
                "ServiceAccount" => drop(strict::<ServiceAccount>(&document)),
                "ClusterRole" => drop(strict::<ClusterRole>(&document)),
                "ClusterRoleBinding" => drop(strict::<ClusterRoleBinding>(&document)),
                "ConfigMap" => drop(strict::<ConfigMap>(&document)),
                "DaemonSet" => drop(strict::<DaemonSet>(&document)),
                other => panic!("{file}: unexpected kind {other}"),
            }
            kinds.insert(kind);
        }
    }
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "DaemonSet",
            "ServiceAccount"
        ]
    );
    // The kustomization lists exactly these files.
    let kustomization = &documents("kustomization.yaml")[0];
    let listed: Vec<&str> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        listed,
        [
            "serviceaccount.yaml",
            "rbac.yaml",
            "configmap.yaml",
            "daemonset.yaml"
        ]
    );
}

#[test]
fn rbac_grants_exactly_what_the_watchers_read() {
    let role: ClusterRole = strict(&documents("rbac.yaml")[0]);
    let mut granted: Vec<Rule> = Vec::new();
    for rule in role.rules.unwrap_or_default() {
        let mut verbs = rule.verbs.clone();
        verbs.sort();
        for group in rule.api_groups.clone().unwrap_or_default() {
            for resource in rule.resources.clone().unwrap_or_default() {
                granted.push(Rule {
                    group: group.clone(),
                    resource,
                    verbs: verbs.clone(),
                });
            }
        }
        assert!(rule.resource_names.is_none() && rule.non_resource_urls.is_none());
    }
    granted.sort();
    let mut wanted = required_rules();
    for rule in &mut wanted {
        rule.verbs.sort();
    }
    assert_eq!(
        granted, wanted,
        "deploy/kubernetes/rbac.yaml differs from the watchers"
    );
    let binding: ClusterRoleBinding = strict(&documents("rbac.yaml")[1]);
    let account: ServiceAccount = strict(&documents("serviceaccount.yaml")[0]);
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(binding.role_ref.name, role.metadata.name.unwrap());
    assert_eq!(Some(&subject.name), account.metadata.name.as_ref());
    assert_eq!(subject.namespace, account.metadata.namespace);
}

#[test]
fn the_daemon_set_runs_the_agent_as_it_needs() {
    let ds: DaemonSet = strict(&documents("daemonset.yaml")[0]);
    let spec = ds.spec.unwrap();
    let rolling = spec.update_strategy.unwrap().rolling_update.unwrap();
    assert!(rolling.max_unavailable.is_some());
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
    assert!(
        pod.tolerations
            .unwrap()
            .iter()
            .any(|t| t.operator.as_deref() == Some("Exists"))
    );
    let container = &pod.containers[0];
    let security = container.security_context.clone().unwrap();
    assert_eq!(security.privileged, Some(false));
    let caps = security.capabilities.unwrap();
    assert_eq!(caps.drop.unwrap(), ["ALL"]);
    assert_eq!(caps.add.unwrap(), ["BPF", "NET_ADMIN", "PERFMON"]);
    let probe_path =
        |p: Option<k8s_openapi::api::core::v1::Probe>| p.unwrap().http_get.unwrap().path.unwrap();
    assert_eq!(probe_path(container.liveness_probe.clone()), "/healthz");
    assert_eq!(probe_path(container.readiness_probe.clone()), "/readyz");
    assert!(container.resources.clone().unwrap().requests.is_some());
    let mounts = container.volume_mounts.clone().unwrap();
    assert!(mounts.iter().any(|m| m.mount_path == "/sys/fs/bpf"));
    assert_eq!(
        pod.service_account_name.as_deref(),
        strict::<ServiceAccount>(&documents("serviceaccount.yaml")[0])
            .metadata
            .name
            .as_deref()
    );
    // The image name is the one the kustomization replaces.
    let kustomization = &documents("kustomization.yaml")[0];
    assert_eq!(
        container.image.as_deref(),
        kustomization["images"][0]["name"].as_str()
    );
}

#[test]
fn every_setting_is_one_the_agent_reads() {
    let config: ConfigMap = strict(&documents("configmap.yaml")[0]);
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_enforcer"))
        .args(["agent", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    for key in config.data.unwrap().keys() {
        if key == "RUST_LOG" {
            continue;
        }
        let global = key == "ENFORCER_LOG_FORMAT";
        assert!(
            global || help.contains(&format!("[env: {key}=")),
            "ConfigMap key {key} is no setting of `enforcer agent`:\n{help}"
        );
    }
    // The node name comes from the downward API.
    let ds: DaemonSet = strict(&documents("daemonset.yaml")[0]);
    let env = ds.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    assert!(env.iter().any(|e| e.name == "ENFORCER_NODE"));
    assert!(help.contains("[env: ENFORCER_NODE="));
}
