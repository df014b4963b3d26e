//! Any object enforcer understands, and where it was read from.

use std::path::PathBuf;

use super::admin::{AdminNetworkPolicy, BaselineAdminNetworkPolicy};
use super::endpoints::{EndpointSlice, Endpoints};
use super::names::{KIND_CALICO_NETWORK_POLICY, ObjectId};
use super::node::Node;
use super::workload::{DaemonSet, Deployment, Namespace, ObjectMeta, Pod, Service};
use super::{calico, k8s};

/// Where an object came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub file: PathBuf,
    /// 0-based index of the (non-empty) document in the file.
    pub document: usize,
    /// 1-based line where the object starts (0: unknown).
    pub line: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    pub source: Source,
    pub object: Object,
}

/// Any object enforcer understands.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Namespace(Namespace),
    Pod(Pod),
    Node(Node),
    Deployment(Deployment),
    /// A `StatefulSet`: pods `<name>-<i>`, as a Deployment's (the rest of its spec is
    /// storage and ordering, which policy does not see).
    StatefulSet(Deployment),
    /// A `DaemonSet`: one pod per node.
    DaemonSet(DaemonSet),
    Service(Service),
    EndpointSlice(EndpointSlice),
    Endpoints(Endpoints),
    NetworkPolicy(k8s::NetworkPolicy),
    CalicoNetworkPolicy(calico::NetworkPolicy),
    GlobalNetworkPolicy(calico::GlobalNetworkPolicy),
    Tier(calico::Tier),
    NetworkSet(calico::NetworkSet),
    GlobalNetworkSet(calico::GlobalNetworkSet),
    HostEndpoint(calico::HostEndpoint),
    AdminNetworkPolicy(AdminNetworkPolicy),
    BaselineAdminNetworkPolicy(BaselineAdminNetworkPolicy),
}

impl Object {
    /// The kind as written in YAML.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Namespace(_) => "Namespace",
            Object::Pod(_) => "Pod",
            Object::Node(_) => "Node",
            Object::Deployment(_) => "Deployment",
            Object::StatefulSet(_) => "StatefulSet",
            Object::DaemonSet(_) => "DaemonSet",
            Object::Service(_) => "Service",
            Object::EndpointSlice(_) => "EndpointSlice",
            Object::Endpoints(_) => "Endpoints",
            Object::NetworkPolicy(_) | Object::CalicoNetworkPolicy(_) => "NetworkPolicy",
            Object::GlobalNetworkPolicy(_) => "GlobalNetworkPolicy",
            Object::Tier(_) => "Tier",
            Object::NetworkSet(_) => "NetworkSet",
            Object::GlobalNetworkSet(_) => "GlobalNetworkSet",
            Object::HostEndpoint(_) => "HostEndpoint",
            Object::AdminNetworkPolicy(_) => "AdminNetworkPolicy",
            Object::BaselineAdminNetworkPolicy(_) => "BaselineAdminNetworkPolicy",
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Namespace(o) => &o.metadata,
            Object::Pod(o) => &o.metadata,
            Object::Node(o) => &o.metadata,
            Object::Deployment(o) | Object::StatefulSet(o) => &o.metadata,
            Object::DaemonSet(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Endpoints(o) => &o.metadata,
            Object::NetworkPolicy(o) => &o.metadata,
            Object::CalicoNetworkPolicy(o) => &o.metadata,
            Object::GlobalNetworkPolicy(o) => &o.metadata,
            Object::Tier(o) => &o.metadata,
            Object::NetworkSet(o) => &o.metadata,
            Object::GlobalNetworkSet(o) => &o.metadata,
            Object::HostEndpoint(o) => &o.metadata,
            Object::AdminNetworkPolicy(o) => &o.metadata,
            Object::BaselineAdminNetworkPolicy(o) => &o.metadata,
        }
    }

    /// Policy-related kinds, whose CIDRs and selectors the loader checks.
    pub(crate) fn is_policy_kind(&self) -> bool {
        !matches!(
            self,
            Object::Namespace(_)
                | Object::Pod(_)
                | Object::Node(_)
                | Object::Deployment(_)
                | Object::StatefulSet(_)
                | Object::DaemonSet(_)
                | Object::Service(_)
                | Object::EndpointSlice(_)
                | Object::Endpoints(_)
        )
    }

    /// `apiVersion` of the object as it was (or would be) written.
    pub(crate) fn api_version(&self) -> &'static str {
        match self {
            Object::Namespace(_)
            | Object::Pod(_)
            | Object::Node(_)
            | Object::Service(_)
            | Object::Endpoints(_) => "v1",
            Object::EndpointSlice(_) => "discovery.k8s.io/v1",
            Object::Deployment(_) | Object::StatefulSet(_) | Object::DaemonSet(_) => "apps/v1",
            Object::NetworkPolicy(_) => "networking.k8s.io/v1",
            Object::CalicoNetworkPolicy(o) => o.api.api_version(),
            Object::GlobalNetworkPolicy(o) => o.api.api_version(),
            Object::Tier(o) => o.api.api_version(),
            Object::NetworkSet(o) => o.api.api_version(),
            Object::GlobalNetworkSet(o) => o.api.api_version(),
            Object::HostEndpoint(o) => o.api.api_version(),
            Object::AdminNetworkPolicy(_) | Object::BaselineAdminNetworkPolicy(_) => {
                super::admin::ADMIN_API_VERSION
            }
        }
    }

    /// The complete document (with `apiVersion` and `kind`) that `model::load_str` reads
    /// back to an equal object; the datastore stores objects this way.
    pub(crate) fn to_document(&self) -> serde_json::Value {
        let body = match self {
            Object::Namespace(o) => serde_json::to_value(o),
            Object::Pod(o) => serde_json::to_value(o),
            Object::Node(o) => serde_json::to_value(o),
            Object::Deployment(o) | Object::StatefulSet(o) => serde_json::to_value(o),
            Object::DaemonSet(o) => serde_json::to_value(o),
            Object::Service(o) => serde_json::to_value(o),
            Object::EndpointSlice(o) => serde_json::to_value(o),
            Object::Endpoints(o) => serde_json::to_value(o),
            Object::NetworkPolicy(o) => serde_json::to_value(o),
            Object::CalicoNetworkPolicy(o) => serde_json::to_value(o),
            Object::GlobalNetworkPolicy(o) => serde_json::to_value(o),
            Object::Tier(o) => serde_json::to_value(o),
            Object::NetworkSet(o) => serde_json::to_value(o),
            Object::GlobalNetworkSet(o) => serde_json::to_value(o),
            Object::HostEndpoint(o) => serde_json::to_value(o),
            Object::AdminNetworkPolicy(o) => serde_json::to_value(o),
            Object::BaselineAdminNetworkPolicy(o) => serde_json::to_value(o),
        };
        // Serializing these plain data types cannot fail (string keys, finite data);
        // an empty body would still read back as an object of the right kind.
        let mut doc = match body {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        doc.insert("apiVersion".to_owned(), self.api_version().into());
        doc.insert("kind".to_owned(), self.kind().into());
        serde_json::Value::Object(doc)
    }

    /// Identity of the object in a datastore: (kind incl. API group, namespace, name).
    /// Calico and Kubernetes `NetworkPolicy` are different objects.
    pub fn id(&self) -> ObjectId {
        let kind = match self {
            Object::CalicoNetworkPolicy(_) => KIND_CALICO_NETWORK_POLICY,
            other => other.kind(),
        };
        ObjectId {
            kind: kind.to_owned(),
            namespace: self.meta().namespace.clone().unwrap_or_default(),
            name: self.meta().name.clone(),
        }
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests panic on unexpected errors")]
mod tests {
    use std::path::Path;

    use crate::model::load_str;

    #[test]
    fn documents_read_back_equal() {
        let text = "apiVersion: crd.projectcalico.org/v1\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  order: 10\n  selector: all()\n  ingress:\n  - action: Allow\n    protocol: TCP\n    destination:\n      ports: [80, '100:200', http]\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a, namespace: n}\nspec:\n  podSelector: {matchLabels: {app: x}}\n  egress: []\n  policyTypes: [Egress]\n";
        for loaded in load_str(Path::new("t.yaml"), text).unwrap() {
            let doc = loaded.object.to_document();
            let again = load_str(Path::new("t.json"), &doc.to_string()).unwrap();
            assert_eq!(again[0].object, loaded.object, "{doc}");
        }
    }
}
