//! Kubernetes `networking.k8s.io/v1` `NetworkPolicy`, complete.
//!
//! Strict (`deny_unknown_fields`) below `metadata`: a typo in a policy must be an error,
//! not a silently wider or narrower policy.

use serde::{Deserialize, Serialize};

use super::workload::{IntOrString, ObjectMeta};
use crate::selector::Selector;

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicy {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: NetworkPolicySpec,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicySpec {
    /// Required by the API; `{}` selects every pod of the namespace.
    #[serde(default)]
    pub pod_selector: LabelSelector,
    /// `None`: absent (API defaulting applies); `Some(vec![])`: explicitly no rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<NetworkPolicyIngressRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<NetworkPolicyEgressRule>>,
    /// `None`: defaulted as the API server does (see [`NetworkPolicySpec::effective_policy_types`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_types: Option<Vec<PolicyType>>,
}

impl NetworkPolicySpec {
    /// `policyTypes` as the API server defaults it: given → as is; omitted → `Ingress`,
    /// plus `Egress` when `egress` has at least one rule.
    pub fn effective_policy_types(&self) -> (bool, bool) {
        match &self.policy_types {
            Some(types) if !types.is_empty() => (
                types.contains(&PolicyType::Ingress),
                types.contains(&PolicyType::Egress),
            ),
            _ => (true, self.egress.as_ref().is_some_and(|e| !e.is_empty())),
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub enum PolicyType {
    Ingress,
    Egress,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyIngressRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<NetworkPolicyPeer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<NetworkPolicyPort>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyEgressRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<NetworkPolicyPeer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<NetworkPolicyPort>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyPeer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default, rename = "ipBlock", skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlock>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpBlock {
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyPort {
    /// `TCP` (default), `UDP`, `SCTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// A number or a named container port; absent = every port of the protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<IntOrString>,
    /// Inclusive end of a numeric range starting at `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<u32>,
}

/// Kubernetes `metav1.LabelSelector`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub match_labels: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

impl LabelSelector {
    /// The Calico selector with the same meaning, as libcalico-go's Kubernetes
    /// conversion (`k8sSelectorToCalico`) writes it: `matchLabels` as `k == 'v'` sorted by
    /// key, then `matchExpressions` in order (`In` → `k in {…}`, `NotIn` → `k not in {…}`,
    /// `Exists` → `has(k)`, `DoesNotExist` → `!has(k)`), all joined by `&&`. An empty
    /// selector is `all()`; callers add what Calico adds around it (the orchestrator
    /// label for pod selectors).
    pub fn to_selector(&self) -> Selector {
        let mut out = Selector::All;
        // `BTreeMap` iterates in key order: the sort Calico does.
        for (k, v) in &self.match_labels {
            out = out.and(Selector::Eq(k.clone(), v.clone()));
        }
        for expr in &self.match_expressions {
            let term = match expr.operator {
                LabelSelectorOperator::In => Selector::In(expr.key.clone(), expr.values.clone()),
                LabelSelectorOperator::NotIn => {
                    Selector::NotIn(expr.key.clone(), expr.values.clone())
                }
                LabelSelectorOperator::Exists => Selector::Has(expr.key.clone()),
                LabelSelectorOperator::DoesNotExist => {
                    Selector::Not(Box::new(Selector::Has(expr.key.clone())))
                }
            };
            out = out.and(term);
        }
        out
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: LabelSelectorOperator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub enum LabelSelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests panic on unexpected errors")]
mod tests {
    use super::*;

    #[test]
    fn converts_label_selectors_like_calico() {
        let ls: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"b": "2", "a": "1"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["x", "y"]},
                {"key": "gone", "operator": "DoesNotExist"}
            ]
        }))
        .unwrap();
        let sel = ls.to_selector();
        assert_eq!(
            sel.to_string(),
            "a == '1' && b == '2' && env in {'x', 'y'} && !has(gone)"
        );
        assert_eq!(LabelSelector::default().to_selector(), Selector::All);
    }
}
