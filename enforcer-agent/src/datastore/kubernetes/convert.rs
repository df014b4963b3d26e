//! API objects ↔ model documents. An object read from the API becomes the document a
//! user would have written, and goes through the ordinary loader
//! ([`crate::model::load_value`]), so validation and error messages are the ones
//! `enforcer check` and the file datastore give. The reverse direction is for the lab,
//! which serves its objects the way a cluster stores them.
//!
//! Two differences between the forms, both Calico's:
//! - its CRDs (`crd.projectcalico.org/v1`) name a policy `<tier>.<name>`, `default.`
//!   included; the v3 API (and users) leave the prefix out in tier `default` and write
//!   it in other tiers. Reading a CRD drops the `default.` prefix, so a policy has the
//!   same name whichever form it was read in;
//! - the CRDs keep the v3 metadata that has no place in a CRD in the
//!   `projectcalico.org/metadata` annotation, which is no label or annotation of the
//!   policy and is dropped.
//!
//! Only what the model reads is kept of `metadata` (name, namespace, labels,
//! annotations): a pod's `managedFields` is not worth its memory.

use std::path::Path;

use serde_json::{Map, Value};

use crate::datastore::Stored;
use crate::model::{KIND_CALICO_NETWORK_POLICY, KIND_GLOBAL_NETWORK_POLICY, ObjectId};

use super::resources::{CALICO_CRD_GROUP, Resource};

/// The tier every policy without `spec.tier` is in.
pub const DEFAULT_TIER: &str = "default";
/// Where Calico's CRDs keep the v3 metadata fields a CRD has no place for.
pub const CALICO_METADATA_ANNOTATION: &str = "projectcalico.org/metadata";

/// Whether objects of `resource` are policies named after their tier in the CRDs.
fn tier_prefixed(resource: &Resource) -> bool {
    resource.group == CALICO_CRD_GROUP
        && (resource.model_kind == KIND_CALICO_NETWORK_POLICY
            || resource.model_kind == KIND_GLOBAL_NETWORK_POLICY)
}

fn tier_of(object: &Value) -> &str {
    object
        .pointer("/spec/tier")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .unwrap_or(DEFAULT_TIER)
}

/// The name a policy stored as CRD `crd_name` has in the model (and in v3).
pub fn model_name(tier: &str, crd_name: &str) -> String {
    if tier == DEFAULT_TIER
        && let Some(rest) = crd_name.strip_prefix("default.")
    {
        return rest.to_owned();
    }
    crd_name.to_owned()
}

/// The name Calico's CRDs give a policy of `tier` named `name` (the v3 name).
pub fn crd_name(tier: &str, name: &str) -> String {
    if name.starts_with(&format!("{tier}.")) {
        name.to_owned()
    } else {
        format!("{tier}.{name}")
    }
}

fn metadata_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata")?.get(field)?.as_str()
}

/// The model id of an object of `resource` (also for one that does not load, so that
/// a broken object is named as what it is, and its deletion found).
pub fn object_id(resource: &Resource, object: &Value) -> ObjectId {
    let name = metadata_str(object, "name").unwrap_or_default();
    let name = if tier_prefixed(resource) {
        model_name(tier_of(object), name)
    } else {
        name.to_owned()
    };
    ObjectId {
        kind: resource.model_kind.to_owned(),
        namespace: if resource.namespaced {
            metadata_str(object, "namespace")
                .unwrap_or_default()
                .to_owned()
        } else {
            String::new()
        },
        name,
    }
}

/// Where an object lives in the API, for messages:
/// `apis/crd.projectcalico.org/v1/namespaces/dev/networkpolicies/default.db`.
pub fn origin(resource: &Resource, object: &Value) -> String {
    let base = super::resources::group_path(resource.group, resource.version);
    let name = metadata_str(object, "name").unwrap_or_default();
    let path = match metadata_str(object, "namespace").filter(|_| resource.namespaced) {
        Some(ns) => format!("{base}/namespaces/{ns}/{}/{name}", resource.plural),
        None => format!("{base}/{}/{name}", resource.plural),
    };
    path.trim_start_matches('/').to_owned()
}

/// The model document of an API object: `apiVersion` and `kind` set (list items carry
/// neither), metadata reduced to what the model reads, a CRD policy's name without
/// the `default.` prefix.
pub fn to_model_document(resource: &Resource, object: Value) -> Value {
    let Value::Object(mut fields) = object else {
        return object;
    };
    let tier = tier_prefixed(resource).then(|| tier_of(&Value::Object(fields.clone())).to_owned());
    fields.insert("apiVersion".to_owned(), resource.api_version().into());
    fields.insert("kind".to_owned(), resource.kind.into());
    if let Some(Value::Object(meta)) = fields.get_mut("metadata") {
        meta.retain(|k, _| matches!(k.as_str(), "name" | "namespace" | "labels" | "annotations"));
        if let Some(Value::Object(annotations)) = meta.get_mut("annotations") {
            annotations.remove(CALICO_METADATA_ANNOTATION);
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
        if meta
            .get("annotations")
            .is_some_and(|a| a.as_object().is_some_and(Map::is_empty))
        {
            meta.remove("annotations");
        }
        if let (Some(tier), Some(Value::String(name))) = (&tier, meta.get_mut("name")) {
            *name = model_name(tier, name);
        }
    }
    Value::Object(fields)
}

/// The API object the model `document` is stored as under `resource`: `apiVersion`
/// the resource's, a CRD policy named with its tier.
pub fn to_api_object(resource: &Resource, document: Value) -> Value {
    let Value::Object(mut fields) = document else {
        return document;
    };
    let tier = tier_prefixed(resource).then(|| tier_of(&Value::Object(fields.clone())).to_owned());
    fields.insert("apiVersion".to_owned(), resource.api_version().into());
    fields.insert("kind".to_owned(), resource.kind.into());
    if let (Some(tier), Some(Value::String(name))) = (
        &tier,
        fields.get_mut("metadata").and_then(|m| m.get_mut("name")),
    ) {
        *name = crd_name(tier, name);
    }
    Value::Object(fields)
}

/// Loads one API object through the model's loader: the datastore's [`Stored`] for it.
pub fn load(resource: &Resource, object: Value) -> Stored {
    let id = object_id(resource, &object);
    let origin = origin(resource, &object);
    let document = to_model_document(resource, object);
    let object = crate::model::load_value(Path::new(&origin), &document).and_then(|mut loaded| {
        // One API object is one document: never a List.
        match loaded.len() {
            1 => Ok(loaded.remove(0)),
            _ => Err(crate::model::LoadError::Read {
                path: origin.clone().into(),
                source: std::io::Error::other("an API object must hold exactly one object"),
            }),
        }
    });
    Stored { id, object, origin }
}

#[cfg(test)]
#[expect(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
mod tests {
    use super::*;
    use crate::datastore::kubernetes::resources::{CALICO_CRDS, CALICO_V3, KUBERNETES};
    use crate::model::Object;
    use serde_json::json;

    #[test]
    fn crd_policy_names_lose_the_default_prefix_only() {
        assert_eq!(model_name("default", "default.allow-dns"), "allow-dns");
        assert_eq!(model_name("security", "security.gate"), "security.gate");
        assert_eq!(model_name("default", "plain"), "plain");
        assert_eq!(crd_name("default", "allow-dns"), "default.allow-dns");
        assert_eq!(crd_name("security", "security.gate"), "security.gate");
        assert_eq!(crd_name("security", "gate"), "security.gate");
    }

    #[test]
    fn a_crd_policy_loads_as_the_policy_users_wrote() {
        let gnp = CALICO_CRDS[0];
        let object = json!({
            "metadata": {
                "name": "default.allow-monitoring",
                "uid": "1234",
                "resourceVersion": "77",
                "managedFields": [{"manager": "kubectl"}],
                "annotations": {"projectcalico.org/metadata": "{\"creationTimestamp\":null}"}
            },
            "spec": {"selector": "has(app)", "ingress": [{"action": "Allow"}]}
        });
        let stored = load(&gnp, object);
        let loaded = stored.object.unwrap();
        let Object::GlobalNetworkPolicy(p) = &loaded.object else {
            panic!("{:?}", loaded.object)
        };
        assert_eq!(p.metadata.name, "allow-monitoring");
        assert!(p.metadata.annotations.is_empty());
        assert_eq!(stored.id, loaded.object.id());
        assert_eq!(
            stored.origin,
            "apis/crd.projectcalico.org/v1/globalnetworkpolicies/default.allow-monitoring"
        );
        // A v3 object of the same policy has the same id.
        let v3 = load(
            &CALICO_V3[0],
            json!({"metadata": {"name": "allow-monitoring"}, "spec": {"selector": "has(app)"}}),
        );
        assert_eq!(v3.id, stored.id);
    }

    #[test]
    fn a_broken_object_is_named_by_its_api_identity() {
        let np = CALICO_CRDS[1];
        let object = json!({
            "metadata": {"name": "default.bad", "namespace": "dev"},
            "spec": {"selector": "app == "}
        });
        let stored = load(&np, object);
        let error = stored.object.unwrap_err().to_string();
        assert!(error.contains("spec.selector"), "{error}");
        assert!(
            error.starts_with(
                "apis/crd.projectcalico.org/v1/namespaces/dev/networkpolicies/default.bad"
            ),
            "{error}"
        );
        assert_eq!(
            stored.id,
            ObjectId {
                kind: KIND_CALICO_NETWORK_POLICY.into(),
                namespace: "dev".into(),
                name: "bad".into()
            }
        );
    }

    #[test]
    fn kubernetes_objects_keep_their_fields_and_drop_server_metadata() {
        let pods = KUBERNETES[1];
        let pod = json!({
            "metadata": {"name": "a", "namespace": "dev", "labels": {"app": "x"},
                         "uid": "u", "ownerReferences": []},
            "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "i"}]},
            "status": {"podIP": "198.18.0.10", "podIPs": [{"ip": "198.18.0.10"}], "phase": "Running"}
        });
        let document = to_model_document(&pods, pod);
        assert_eq!(document["apiVersion"], "v1");
        assert_eq!(document["kind"], "Pod");
        assert_eq!(
            document["metadata"],
            json!({"name": "a", "namespace": "dev", "labels": {"app": "x"}})
        );
        let stored = load(&pods, document);
        let Object::Pod(p) = stored.object.unwrap().object else {
            panic!()
        };
        assert_eq!(
            p.ips(),
            vec!["198.18.0.10".parse::<std::net::IpAddr>().unwrap()]
        );
    }

    #[test]
    fn api_objects_and_model_documents_round_trip() {
        let np = CALICO_CRDS[1];
        let document = json!({
            "apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
            "metadata": {"name": "db", "namespace": "dev"},
            "spec": {"selector": "app == 'db'"}
        });
        let api = to_api_object(&np, document.clone());
        assert_eq!(api["apiVersion"], "crd.projectcalico.org/v1");
        assert_eq!(api["metadata"]["name"], "default.db");
        let back = to_model_document(&np, api);
        assert_eq!(back["metadata"]["name"], "db");
        assert_eq!(back["spec"], document["spec"]);
    }
}
