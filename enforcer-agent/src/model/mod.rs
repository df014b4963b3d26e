//! The typed object model: what users write in YAML, before any compilation.
//!
//! `load` turns files into [`Loaded`] objects (with where each came from, for errors);
//! `workload` holds the Kubernetes workload kinds; `k8s` and `calico` the policy kinds.

pub mod calico;
pub mod k8s;
pub mod load;
pub mod workload;

pub use load::{LoadError, Loaded, Source, load_paths, load_str};
pub use workload::{Deployment, Labels, Namespace, ObjectMeta, Pod, Service};

/// Any object enforcer understands.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Namespace(Namespace),
    Pod(Pod),
    Deployment(Deployment),
    Service(Service),
    NetworkPolicy(k8s::NetworkPolicy),
    CalicoNetworkPolicy(calico::NetworkPolicy),
    GlobalNetworkPolicy(calico::GlobalNetworkPolicy),
    Tier(calico::Tier),
    NetworkSet(calico::NetworkSet),
    GlobalNetworkSet(calico::GlobalNetworkSet),
    HostEndpoint(calico::HostEndpoint),
}

impl Object {
    /// The kind as written in YAML.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Namespace(_) => "Namespace",
            Object::Pod(_) => "Pod",
            Object::Deployment(_) => "Deployment",
            Object::Service(_) => "Service",
            Object::NetworkPolicy(_) => "NetworkPolicy",
            Object::CalicoNetworkPolicy(_) => "NetworkPolicy",
            Object::GlobalNetworkPolicy(_) => "GlobalNetworkPolicy",
            Object::Tier(_) => "Tier",
            Object::NetworkSet(_) => "NetworkSet",
            Object::GlobalNetworkSet(_) => "GlobalNetworkSet",
            Object::HostEndpoint(_) => "HostEndpoint",
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Namespace(o) => &o.metadata,
            Object::Pod(o) => &o.metadata,
            Object::Deployment(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::NetworkPolicy(o) => &o.metadata,
            Object::CalicoNetworkPolicy(o) => &o.metadata,
            Object::GlobalNetworkPolicy(o) => &o.metadata,
            Object::Tier(o) => &o.metadata,
            Object::NetworkSet(o) => &o.metadata,
            Object::GlobalNetworkSet(o) => &o.metadata,
            Object::HostEndpoint(o) => &o.metadata,
        }
    }

    /// Identity of the object in a datastore: (kind incl. API group, namespace, name).
    /// Calico and Kubernetes `NetworkPolicy` are different objects.
    pub fn id(&self) -> ObjectId {
        let kind = match self {
            Object::CalicoNetworkPolicy(_) => "projectcalico.org/NetworkPolicy",
            other => other.kind(),
        };
        ObjectId {
            kind: kind.to_owned(),
            namespace: self.meta().namespace.clone().unwrap_or_default(),
            name: self.meta().name.clone(),
        }
    }
}

/// Identity of an object: kind, namespace (empty for cluster-scoped), name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ObjectId {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

impl Object {
    /// A complete document (`apiVersion`, `kind`, the object's fields) that
    /// [`load_str`] reads back to an equal object. The datastore stores objects so.
    pub fn to_document(&self) -> serde_json::Value {
        let (api_version, body) = match self {
            Object::Namespace(o) => ("v1", serde_json::to_value(o)),
            Object::Pod(o) => ("v1", serde_json::to_value(o)),
            Object::Deployment(o) => ("apps/v1", serde_json::to_value(o)),
            Object::Service(o) => ("v1", serde_json::to_value(o)),
            Object::NetworkPolicy(o) => ("networking.k8s.io/v1", serde_json::to_value(o)),
            Object::CalicoNetworkPolicy(o) => ("projectcalico.org/v3", serde_json::to_value(o)),
            Object::GlobalNetworkPolicy(o) => ("projectcalico.org/v3", serde_json::to_value(o)),
            Object::Tier(o) => ("projectcalico.org/v3", serde_json::to_value(o)),
            Object::NetworkSet(o) => ("projectcalico.org/v3", serde_json::to_value(o)),
            Object::GlobalNetworkSet(o) => ("projectcalico.org/v3", serde_json::to_value(o)),
            Object::HostEndpoint(o) => ("projectcalico.org/v3", serde_json::to_value(o)),
        };
        let mut doc = body.unwrap_or_else(|_| serde_json::json!({}));
        if let Some(map) = doc.as_object_mut() {
            map.insert("apiVersion".into(), api_version.into());
            map.insert("kind".into(), self.kind().into());
        }
        doc
    }
}
