//! What every conversion rule shares: the object being converted (for errors and
//! warnings that name its file, identity and field), and the value parsers Calico's
//! validation defines for selectors, CIDRs, protocols and ports.

use ipnet::IpNet;

use crate::model::workload::IntOrString;
use crate::model::{ObjectId, Source, parse_cidr};
use crate::policy::{
    NamespaceScope, PolicyError, PolicyProblem, PortMatch, Warning, parse_protocol,
};
use crate::selector::Selector;

/// The tier of a policy without `spec.tier`, and of every Kubernetes policy.
pub(super) const DEFAULT_TIER: &str = "default";

/// The object being converted.
pub(super) struct Ctx<'a> {
    pub(super) source: Option<&'a Source>,
    pub(super) id: ObjectId,
}

impl Ctx<'_> {
    pub(super) fn err(
        &self,
        field: impl Into<String>,
        problem: PolicyProblem,
        fix: Option<String>,
    ) -> PolicyError {
        PolicyError {
            file: self.source.cloned(),
            object: self.id.clone(),
            field: field.into(),
            problem,
            fix,
        }
    }

    pub(super) fn warn(
        &self,
        field: impl Into<String>,
        message: impl Into<String>,
        fix: Option<String>,
    ) -> Warning {
        Warning {
            source: self.source.cloned(),
            object: self.id.clone(),
            field: field.into(),
            message: message.into(),
            fix,
        }
    }

    pub(super) fn selector(&self, field: &str, text: &str) -> Result<Selector, PolicyError> {
        Selector::parse(text).map_err(|e| {
            self.err(
                field,
                PolicyProblem::InvalidSelector {
                    selector: text.to_owned(),
                    column: e.column,
                    message: e.message,
                },
                None,
            )
        })
    }

    /// A selector field where an empty string means "absent".
    pub(super) fn opt_selector(
        &self,
        field: &str,
        text: Option<&String>,
    ) -> Result<Option<Selector>, PolicyError> {
        match text.map(|t| t.trim()) {
            None | Some("") => Ok(None),
            Some(t) => self.selector(field, t).map(Some),
        }
    }

    pub(super) fn cidr(&self, field: &str, text: &str) -> Result<IpNet, PolicyError> {
        parse_cidr(text).map_err(|message| {
            self.err(
                field,
                PolicyProblem::InvalidCidr {
                    value: text.to_owned(),
                    message,
                },
                None,
            )
        })
    }

    pub(super) fn cidrs(&self, field: &str, texts: &[String]) -> Result<Vec<IpNet>, PolicyError> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| self.cidr(&format!("{field}[{i}]"), t))
            .collect()
    }
}

/// A `protocol`/`notProtocol` value: a name Calico knows or a number 1-255.
pub(super) fn protocol_value(
    ctx: &Ctx<'_>,
    field: &str,
    value: &IntOrString,
) -> Result<u8, PolicyError> {
    let parsed = match value {
        IntOrString::Int(n) => u8::try_from(*n).ok().filter(|p| *p >= 1),
        IntOrString::String(s) => parse_protocol(s),
    };
    parsed.ok_or_else(|| {
        ctx.err(
            field,
            PolicyProblem::InvalidProtocol {
                value: match value {
                    IntOrString::Int(n) => n.to_string(),
                    IntOrString::String(s) => s.clone(),
                },
            },
            None,
        )
    })
}

/// What a rule's (or a policy's) `namespaceSelector` ranges over. As libcalico-go's
/// rule conversion (`getEndpointSelector`) reads it: `all()` means every namespaced
/// endpoint (it becomes `has(projectcalico.org/namespace)`), `global()` only
/// non-namespaced ones (`!has(projectcalico.org/namespace)`: host endpoints and global
/// network sets), anything else selects namespaces by their labels. A selector that
/// uses `global()` anywhere is taken as `global()` alone.
pub(super) fn namespace_scope(sel: Selector) -> NamespaceScope {
    match sel {
        Selector::All => NamespaceScope::AllNamespaced,
        s if s.mentions_global() => NamespaceScope::NonNamespaced,
        s => NamespaceScope::Selector(s),
    }
}

/// A port given as a string, as Calico's `numorstring.PortFromString` reads it: a
/// number, `min:max` (min ≤ max), or a port name (letters, digits, `-`, `_`, at most 63,
/// at least one letter).
pub(super) fn named_port(text: &str) -> Option<PortMatch> {
    if let Some((a, b)) = text.split_once(':') {
        let (a, b) = (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?);
        return (a <= b).then_some(PortMatch::Range(a, b));
    }
    if let Ok(n) = text.trim().parse::<u16>() {
        return Some(PortMatch::Range(n, n));
    }
    let valid_name = !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && text.chars().any(|c| c.is_ascii_alphabetic());
    valid_name.then(|| PortMatch::Named(text.to_owned()))
}
