//! One version of an object as the agent keeps it between compiles.
//!
//! A policy is kept as its document (compact JSON, as `Object::to_document` writes
//! it and the datastores store it) and read back when it is converted again: on its
//! own change, a Tier change or a relist. Once converted, a policy's typed form is
//! not needed: at 10k policies the typed objects took ~37 MiB, their documents take
//! a few. Other objects stay typed: pods, Services and their endpoints are read on
//! every Service resolution, tiers on every rebuild, and they are few or small.

use std::borrow::Cow;

use crate::model::{LoadError, Loaded, Object, Source, load_value};
use crate::policy::convert::parts::is_policy;

#[derive(Debug, PartialEq)]
pub enum Version {
    Typed(Box<Loaded>),
    /// A policy's document; equal documents are equal objects (the document of a
    /// version reads back to an equal object, `model::object`'s test).
    Document {
        source: Source,
        json: Box<[u8]>,
    },
}

impl Version {
    /// How `loaded` is kept.
    pub fn keep(loaded: Loaded) -> Self {
        if !is_policy(&loaded.object) {
            return Self::Typed(Box::new(loaded));
        }
        match serde_json::to_vec(&loaded.object.to_document()) {
            Ok(json) => Self::Document {
                source: loaded.source,
                json: json.into_boxed_slice(),
            },
            Err(_) => Self::Typed(Box::new(loaded)),
        }
    }

    pub fn source(&self) -> &Source {
        match self {
            Self::Typed(loaded) => &loaded.source,
            Self::Document { source, .. } => source,
        }
    }

    /// The typed object, if it is kept typed (never a policy).
    pub fn typed(&self) -> Option<&Loaded> {
        match self {
            Self::Typed(loaded) => Some(loaded),
            Self::Document { .. } => None,
        }
    }

    /// The object, read back from its document if need be. A document that no longer
    /// reads back (it read once, so only a loader change could do this) is an error
    /// like a version that does not load: the object steps down to its fallback.
    pub fn loaded(&self) -> Result<Cow<'_, Loaded>, LoadError> {
        match self {
            Self::Typed(loaded) => Ok(Cow::Borrowed(loaded)),
            Self::Document { source, json } => {
                let value: serde_json::Value =
                    serde_json::from_slice(json).map_err(|e| LoadError::Syntax {
                        path: source.file.clone(),
                        position: crate::model::Position::default(),
                        message: format!("kept document: {e}"),
                    })?;
                let mut loaded = load_value(&source.file, &value)?;
                match loaded.pop() {
                    Some(mut one) if loaded.is_empty() => {
                        one.source = source.clone();
                        Ok(Cow::Owned(one))
                    }
                    _ => Err(LoadError::Syntax {
                        path: source.file.clone(),
                        position: crate::model::Position::default(),
                        message: "kept document is not one object".to_owned(),
                    }),
                }
            }
        }
    }

    /// [`Version::loaded`], a failure as the reason the version is not compiled.
    pub fn read_back(&self) -> Result<Cow<'_, Loaded>, String> {
        self.loaded().map_err(|e| e.to_string())
    }

    /// A policy's kept document as JSON, even when it no longer reads back as an
    /// object (its fail-closed stand-in is made from the document alone).
    pub fn document(&self) -> Option<serde_json::Value> {
        match self {
            Self::Typed(_) => None,
            Self::Document { json, .. } => serde_json::from_slice(json).ok(),
        }
    }

    /// Whether the object is a Tier (tiers are kept typed).
    pub fn is_tier(&self) -> bool {
        self.typed()
            .is_some_and(|l| matches!(l.object, Object::Tier(_)))
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing test panics with context")]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::model::load_str;

    const DOCS: &str = "apiVersion: crd.projectcalico.org/v1\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  order: 10\n  selector: app == 'x' && has(y)\n  types: [Ingress, Egress]\n  ingress:\n  - action: Allow\n    protocol: TCP\n    source:\n      namespaceSelector: all()\n      notNets: [198.18.0.0/16]\n    destination:\n      ports: [80, '100:200', http]\n  egress:\n  - action: Deny\n    icmp: {type: 8, code: 0}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a, namespace: n, labels: {l: v}}\nspec:\n  podSelector: {matchExpressions: [{key: app, operator: In, values: [x, y]}]}\n  ingress:\n  - from: [{ipBlock: {cidr: 198.18.0.0/15, except: [198.18.1.0/24]}}, {namespaceSelector: {}}]\n    ports: [{port: 53, protocol: UDP}, {port: dns}]\n  policyTypes: [Ingress, Egress]\n---\napiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: default.c, namespace: n}\nspec:\n  selector: all()\n  ingress: [{action: Pass}]\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: n, labels: {team: a}}\n";

    #[test]
    fn a_policy_is_kept_as_its_document_and_reads_back_equal() {
        for (index, loaded) in load_str(Path::new("t.yaml"), DOCS)
            .unwrap()
            .into_iter()
            .enumerate()
        {
            let policy = is_policy(&loaded.object);
            let kept = Version::keep(loaded.clone());
            assert_eq!(
                matches!(kept, Version::Document { .. }),
                policy,
                "document {index}"
            );
            assert_eq!(kept.source(), &loaded.source);
            assert_eq!(kept.loaded().unwrap().as_ref(), &loaded, "document {index}");
            assert_eq!(Version::keep(loaded.clone()), kept, "deterministic");
        }
    }

    #[test]
    fn a_document_that_does_not_read_back_is_an_error_not_a_panic() {
        let kept = Version::Document {
            source: Source {
                file: "x.json".into(),
                document: 0,
                line: 1,
            },
            json: b"{\"kind\": \"NetworkPolicy\", \"spec\": 3}"
                .to_vec()
                .into(),
        };
        assert!(kept.loaded().is_err());
        assert!(kept.document().is_some(), "the stand-in's source");
    }
}
