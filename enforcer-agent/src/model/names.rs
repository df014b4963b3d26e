//! The names that identify objects and policies all along the pipeline: the model
//! gives every object an [`ObjectId`], the policy model names each policy with a
//! [`PolicyName`], and the evaluator, the compiler's spec, explanations and flow logs
//! carry those names unchanged.

use std::fmt;

/// `ObjectId::kind` and `PolicyName::kind` of a Kubernetes `NetworkPolicy`.
pub const KIND_K8S_NETWORK_POLICY: &str = "NetworkPolicy";
/// `ObjectId::kind` and `PolicyName::kind` of a Calico (namespaced) `NetworkPolicy`:
/// with its API group, since both kinds are called `NetworkPolicy`.
pub const KIND_CALICO_NETWORK_POLICY: &str = "projectcalico.org/NetworkPolicy";
/// `ObjectId::kind` and `PolicyName::kind` of a Calico `GlobalNetworkPolicy`.
pub const KIND_GLOBAL_NETWORK_POLICY: &str = "GlobalNetworkPolicy";
/// `ObjectId::kind` and `PolicyName::kind` of a network-policy-api
/// `AdminNetworkPolicy`.
pub const KIND_ADMIN_NETWORK_POLICY: &str = "AdminNetworkPolicy";
/// … and of its `BaselineAdminNetworkPolicy`.
pub const KIND_BASELINE_ADMIN_NETWORK_POLICY: &str = "BaselineAdminNetworkPolicy";

/// Identity of an object: kind, namespace (empty for cluster-scoped), name.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ObjectId {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// A policy as users name it, for explanations.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct PolicyName {
    /// `default`, `kube-admin`, … ; the Kubernetes policies are in `default`.
    pub tier: String,
    /// `NetworkPolicy` (Kubernetes), `projectcalico.org/NetworkPolicy`,
    /// `GlobalNetworkPolicy`, or `Profile`.
    pub kind: String,
    pub namespace: String,
    pub name: String,
}
