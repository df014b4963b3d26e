//! The fail-closed stand-in of a policy that cannot be enforced as written and was
//! never enforced before (security item 5): a policy of the same kind, name,
//! namespace, tier, order, subject selectors and directions whose rules deny
//! everything — so the endpoints it was meant to select lose exactly what that
//! policy's position could have allowed, and nothing else changes.
//!
//! - Calico `NetworkPolicy`/`GlobalNetworkPolicy`: one `Deny` rule per direction the
//!   policy applies to, in its tier at its order: evaluation stops there for what it
//!   selects, as it would at a deny-all policy written in that place.
//! - Kubernetes `NetworkPolicy`: the same pod selector and policy types with no rules
//!   (a Kubernetes policy can only allow; with none it isolates what it selects, and
//!   the namespace's other policies keep their allows, as they would next to a policy
//!   that allows nothing).
//!
//! - `AdminNetworkPolicy` / `BaselineAdminNetworkPolicy`: a `GlobalNetworkPolicy`
//!   named `anp.<name>` / `banp.<name>` in tier `kube-admin` (at the ANP's priority) /
//!   `kube-baseline`, selecting the subject's pods, denying both directions (the API's
//!   own rule language cannot say "every source").
//!
//! Built from the document as written (JSON), so it also serves a document that does
//! not load: only the fields that place the policy and choose its subject are read,
//! and if any of them is unreadable (a selector that does not parse, a field of the
//! wrong type) there is no stand-in: the caller ignores the object and says so.

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::model::admin::ADMIN_API_VERSION;
use crate::model::k8s::LabelSelector;
use crate::model::{Loaded, Object, load_value};
use crate::policy::LABEL_ORCHESTRATOR;
use crate::selector::Selector;

/// The kinds that have a stand-in.
const K8S_API: &str = "networking.k8s.io/v1";

/// The document of a loaded policy object (`None` for other kinds), as input for
/// [`stand_in`].
pub fn document_of(object: &Object) -> Option<Value> {
    let (api, spec, meta) = match object {
        Object::NetworkPolicy(np) => (
            K8S_API.to_owned(),
            serde_json::to_value(&np.spec).ok()?,
            &np.metadata,
        ),
        Object::CalicoNetworkPolicy(np) => (
            np.api.api_version().to_owned(),
            serde_json::to_value(&np.spec).ok()?,
            &np.metadata,
        ),
        Object::GlobalNetworkPolicy(gnp) => (
            gnp.api.api_version().to_owned(),
            serde_json::to_value(&gnp.spec).ok()?,
            &gnp.metadata,
        ),
        Object::AdminNetworkPolicy(anp) => (
            ADMIN_API_VERSION.to_owned(),
            serde_json::to_value(&anp.spec).ok()?,
            &anp.metadata,
        ),
        Object::BaselineAdminNetworkPolicy(banp) => (
            ADMIN_API_VERSION.to_owned(),
            serde_json::to_value(&banp.spec).ok()?,
            &banp.metadata,
        ),
        _ => return None,
    };
    Some(json!({
        "apiVersion": api,
        "kind": object.kind(),
        "metadata": serde_json::to_value(meta).ok()?,
        "spec": spec,
    }))
}

/// The deny-all stand-in of the policy `document` describes, loaded as if read from
/// `origin`; `None` when the document is no policy or what places it and selects its
/// subject cannot be read.
pub fn stand_in(document: &Value, origin: &Path) -> Option<Loaded> {
    let kind = document.get("kind")?.as_str()?;
    let api = match document.get("apiVersion") {
        None => "",
        Some(v) => v.as_str()?,
    };
    let meta = document.get("metadata")?;
    let mut metadata = Map::new();
    metadata.insert("name".to_owned(), json!(meta.get("name")?.as_str()?));
    if let Some(ns) = meta.get("namespace") {
        metadata.insert("namespace".to_owned(), json!(ns.as_str()?));
    }
    let empty = Value::Object(Map::new());
    let spec = document.get("spec").unwrap_or(&empty);
    let (api, kind, spec) = match (kind, api) {
        ("NetworkPolicy", K8S_API) => (api, kind, kubernetes_spec(spec)?),
        ("NetworkPolicy" | "GlobalNetworkPolicy", _) => (api, kind, calico_spec(kind, spec)?),
        ("AdminNetworkPolicy" | "BaselineAdminNetworkPolicy", ADMIN_API_VERSION) => {
            let admin = kind == "AdminNetworkPolicy";
            let name = metadata.get("name")?.as_str()?;
            let prefixed = format!("{}.{name}", if admin { "anp" } else { "banp" });
            metadata.insert("name".to_owned(), json!(prefixed));
            metadata.remove("namespace");
            (
                "projectcalico.org/v3",
                "GlobalNetworkPolicy",
                admin_spec(admin, spec)?,
            )
        }
        _ => return None,
    };
    let standin = json!({
        "apiVersion": api,
        "kind": kind,
        "metadata": metadata,
        "spec": spec,
    });
    let mut loaded = load_value(origin, &standin).ok()?;
    (loaded.len() == 1).then(|| loaded.swap_remove(0))
}

/// Whether `spec.<key>` holds something (a non-empty list or any other value).
fn present(spec: &Value, key: &str) -> bool {
    match spec.get(key) {
        None | Some(Value::Null) => false,
        Some(Value::Array(items)) => !items.is_empty(),
        Some(_) => true,
    }
}

/// `types`/`policyTypes` when it is a list of `Ingress`/`Egress`; `None` when absent
/// or unreadable (then the directions come from which rule lists are present).
fn declared_types(spec: &Value, key: &str) -> Option<(bool, bool)> {
    let items = spec.get(key)?.as_array()?;
    let mut types = (false, false);
    for item in items {
        match item.as_str()? {
            "Ingress" => types.0 = true,
            "Egress" => types.1 = true,
            _ => return None,
        }
    }
    (types.0 || types.1).then_some(types)
}

fn type_names((ingress, egress): (bool, bool)) -> Vec<&'static str> {
    let mut names = Vec::new();
    if ingress {
        names.push("Ingress");
    }
    if egress {
        names.push("Egress");
    }
    names
}

/// Same pod selector and policy types, no rules. An unreadable `policyTypes` counts
/// as both directions when an egress list is written (fail closed), else ingress.
fn kubernetes_spec(spec: &Value) -> Option<Value> {
    let selector = spec
        .get("podSelector")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if !selector.is_object() {
        return None;
    }
    let types =
        declared_types(spec, "policyTypes").unwrap_or_else(|| (true, spec.get("egress").is_some()));
    Some(json!({
        "podSelector": selector,
        "policyTypes": type_names(types),
    }))
}

/// The subject's pods in the admin tier (at the priority) or the baseline tier, both
/// directions denied; `None` when the priority or subject cannot be read.
fn admin_spec(admin: bool, spec: &Value) -> Option<Value> {
    let subject = spec.get("subject")?;
    let (selector, namespaces) = match (subject.get("namespaces"), subject.get("pods")) {
        (Some(ns), None) => (Selector::All, ns.clone()),
        (None, Some(pods)) => {
            let pod: LabelSelector =
                serde_json::from_value(pods.get("podSelector")?.clone()).ok()?;
            (pod.to_selector(), pods.get("namespaceSelector")?.clone())
        }
        _ => return None,
    };
    let namespaces: LabelSelector = serde_json::from_value(namespaces).ok()?;
    let pods = Selector::Eq(LABEL_ORCHESTRATOR.to_owned(), "k8s".to_owned()).and(selector);
    let mut out = json!({
        "tier": if admin { "kube-admin" } else { "kube-baseline" },
        "selector": pods.to_string(),
        "namespaceSelector": namespaces.to_selector().to_string(),
        "types": ["Ingress", "Egress"],
        "ingress": [{"action": "Deny"}],
        "egress": [{"action": "Deny"}],
    });
    if admin {
        let priority = spec
            .get("priority")?
            .as_i64()
            .filter(|p| (0..=1000).contains(p))?;
        out["order"] = json!(priority);
    }
    Some(out)
}

/// Same tier, order, subject and flags; a `Deny` rule per direction.
fn calico_spec(kind: &str, spec: &Value) -> Option<Value> {
    let mut out = Map::new();
    let mut copy = |key: &str, check: fn(&Value) -> bool| -> Option<()> {
        match spec.get(key) {
            None | Some(Value::Null) => Some(()),
            Some(v) if check(v) => {
                out.insert(key.to_owned(), v.clone());
                Some(())
            }
            Some(_) => None,
        }
    };
    copy("tier", Value::is_string)?;
    copy("order", Value::is_number)?;
    copy("selector", Value::is_string)?;
    copy("serviceAccountSelector", Value::is_string)?;
    if kind == "GlobalNetworkPolicy" {
        copy("namespaceSelector", Value::is_string)?;
    }
    let flag = |key: &str| spec.get(key).and_then(Value::as_bool).unwrap_or(false);
    let apply_on_forward = flag("applyOnForward");
    // Calico's validation: preDNAT and doNotTrack need applyOnForward and exclude
    // each other; preDNAT is ingress only. A combination it would refuse is dropped
    // rather than making the stand-in unloadable.
    let pre_dnat = flag("preDNAT") && apply_on_forward && !flag("doNotTrack");
    let do_not_track = flag("doNotTrack") && apply_on_forward && !pre_dnat;
    let mut types = declared_types(spec, "types").unwrap_or_else(|| {
        let egress = present(spec, "egress");
        (present(spec, "ingress") || !egress, egress)
    });
    if pre_dnat {
        types = (true, false);
    }
    if kind == "GlobalNetworkPolicy" {
        for (key, on) in [
            ("applyOnForward", apply_on_forward),
            ("preDNAT", pre_dnat),
            ("doNotTrack", do_not_track),
        ] {
            if on {
                out.insert(key.to_owned(), json!(true));
            }
        }
    }
    out.insert("types".to_owned(), json!(type_names(types)));
    let deny = json!([{ "action": "Deny" }]);
    if types.0 {
        out.insert("ingress".to_owned(), deny.clone());
    }
    if types.1 {
        out.insert("egress".to_owned(), deny);
    }
    Some(Value::Object(out))
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing test panics with context")]
mod tests {
    use super::*;
    use crate::policy::{Cluster, RuleAction};

    fn doc(yaml: &str) -> Value {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn policy_of(loaded: &Loaded) -> crate::policy::Policy {
        let (cluster, _) = Cluster::from_objects(std::slice::from_ref(loaded)).unwrap();
        cluster.policies.into_iter().next().unwrap()
    }

    #[test]
    fn a_calico_policy_becomes_deny_all_in_its_place() {
        // Source ports: valid Calico the dataplane cannot enforce yet.
        let d = doc(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec:\n  order: 5\n  selector: app == 'db'\n  namespaceSelector: team == 'a'\n  egress:\n  - action: Allow\n    source: {ports: [53]}\n",
        );
        let s = stand_in(&d, Path::new("objects/p.json")).unwrap();
        assert_eq!(s.source.file, Path::new("objects/p.json"));
        let p = policy_of(&s);
        assert_eq!(p.name.name, "p");
        assert_eq!(p.order, Some(5.0));
        assert_eq!((p.applies_ingress, p.applies_egress), (false, true));
        assert_eq!(p.egress.len(), 1);
        assert_eq!(p.egress[0].action, RuleAction::Deny);
        assert!(!p.egress[0].source.has_ports());
        assert!(p.subject.selector.to_string().contains("db"), "{p:?}");
    }

    #[test]
    fn a_kubernetes_policy_becomes_one_that_allows_nothing() {
        let d = doc(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: dev}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{ipBlock: {cidr: 10.0.0.300/8}}]\n  egress:\n  - {}\n",
        );
        let p = policy_of(&stand_in(&d, Path::new("p.yaml")).unwrap());
        assert_eq!(p.name.namespace, "dev");
        assert_eq!((p.applies_ingress, p.applies_egress), (true, true));
        assert!(p.ingress.is_empty() && p.egress.is_empty());
    }

    #[test]
    fn no_stand_in_without_a_readable_subject() {
        for yaml in [
            // The selector does not parse.
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec: {selector: 'a ==='}\n",
            // Of the wrong type.
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec: {selector: [1]}\n",
            // Not a policy.
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n",
            // No name.
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {namespace: dev}\nspec: {podSelector: {}}\n",
        ] {
            assert!(
                stand_in(&doc(yaml), Path::new("p.yaml")).is_none(),
                "{yaml}"
            );
        }
    }

    #[test]
    fn pre_dnat_stays_ingress_only() {
        let d = doc(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec:\n  preDNAT: true\n  applyOnForward: true\n  types: [Ingress, Egress]\n  selector: has(host)\n",
        );
        let p = policy_of(&stand_in(&d, Path::new("p.yaml")).unwrap());
        assert!(p.pre_dnat && p.apply_on_forward);
        assert_eq!((p.applies_ingress, p.applies_egress), (true, false));
    }

    #[test]
    fn an_admin_policy_becomes_deny_all_at_its_priority() {
        let d = doc(
            "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: p}\nspec:\n  priority: 7\n  subject: {pods: {namespaceSelector: {matchLabels: {team: a}}, podSelector: {matchLabels: {app: db}}}}\n  ingress: [{action: Bogus, from: []}]\n",
        );
        let p = policy_of(&stand_in(&d, Path::new("p.yaml")).unwrap());
        assert_eq!(p.name.name, "anp.p");
        assert_eq!(p.name.tier, "kube-admin");
        assert_eq!(p.order, Some(7.0));
        assert_eq!((p.applies_ingress, p.applies_egress), (true, true));
        assert_eq!(p.ingress[0].action, RuleAction::Deny);
        assert_eq!(p.egress[0].action, RuleAction::Deny);
        let subject = p.subject.selector.to_string();
        assert!(
            subject.contains("app == 'db'") && subject.contains("orchestrator"),
            "{subject}"
        );
        let b = doc(
            "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\nmetadata: {name: default}\nspec:\n  subject: {namespaces: {}}\n  egress: [{action: Pass, to: [{namespaces: {}}]}]\n",
        );
        let p = policy_of(&stand_in(&b, Path::new("b.yaml")).unwrap());
        assert_eq!(
            (p.name.name.as_str(), p.name.tier.as_str()),
            ("banp.default", "kube-baseline")
        );
        // No readable priority: no stand-in.
        let bad = doc(
            "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: p}\nspec:\n  priority: 5000\n  subject: {namespaces: {}}\n",
        );
        assert!(stand_in(&bad, Path::new("p.yaml")).is_none());
    }

    #[test]
    fn a_loaded_policy_gives_its_document() {
        let loaded =
            crate::model::load_str(Path::new("p.yaml"), "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p, namespace: dev}\nspec:\n  selector: app == 'x'\n  ingress:\n  - action: Allow\n    source: {ports: [80]}\n    protocol: TCP\n")
                .unwrap();
        let d = document_of(&loaded[0].object).unwrap();
        let p = policy_of(&stand_in(&d, Path::new("p.yaml")).unwrap());
        assert_eq!(p.name.namespace, "dev");
        assert_eq!(p.ingress[0].action, RuleAction::Deny);
    }
}
