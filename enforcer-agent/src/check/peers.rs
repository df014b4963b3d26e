//! What the policy model accepts with a warning: above all the Kubernetes-style
//! `podSelector` / `namespaceSelector: {matchLabels}` people copy into Calico rules.
//! Calico itself would reject the file; the warning shows the exact Calico form.

use super::{Finding, Severity};
use crate::policy::Warning;

pub(super) fn findings(warnings: &[Warning]) -> Vec<Finding> {
    warnings
        .iter()
        .map(|w| {
            let kubernetes_style =
                w.field.ends_with(".podSelector") || w.field.ends_with(".namespaceSelector");
            let code = if kubernetes_style {
                "kubernetes-style-peer"
            } else {
                "policy-warning"
            };
            let message = if w.field.ends_with(".podSelector") {
                format!(
                    "{}: Calico's API server rejects it, and through the CRD (crd.projectcalico.org/v1) it is silently dropped, so the rule would match every peer; enforcer reads it as the selector below",
                    w.message.split("; ").next().unwrap_or(&w.message)
                )
            } else if kubernetes_style {
                format!(
                    "{}: Calico rejects an object here; enforcer reads it as the selector below",
                    w.message.split("; ").next().unwrap_or(&w.message)
                )
            } else {
                w.message.clone()
            };
            Finding::about(
                Severity::Warning,
                code,
                w.source.as_ref(),
                &w.object,
                w.field.clone(),
                message,
                w.fix.as_ref().map(|f| format!("write `{f}`")),
            )
        })
        .collect()
}
