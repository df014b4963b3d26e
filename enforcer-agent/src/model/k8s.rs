//! Kubernetes `networking.k8s.io/v1` NetworkPolicy.
//! PLACEHOLDER: the policy-core work replaces this with the complete typed model.

use serde::{Deserialize, Serialize};

use super::ObjectMeta;

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct NetworkPolicy {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: serde_json::Value,
}
