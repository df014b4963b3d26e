//! What can go wrong loading objects, and where: every error names the file, and past
//! the YAML syntax the object, the field path and the line and column.

use std::path::PathBuf;

use super::located::tree::Position;

/// What a problem is about, for [`LoadError::Object`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectProblem {
    /// `kind`/`apiVersion` not understood.
    UnknownKind { kind: String, api_version: String },
    /// Field not in the schema (typo?).
    UnknownField { field: String },
    /// A required field is absent.
    MissingField { field: String },
    /// Value of the wrong type or shape.
    InvalidValue,
    /// A CIDR or address that does not parse.
    InvalidCidr { value: String },
    /// A selector that does not parse (the column points into the file).
    InvalidSelector { selector: String },
    /// The document is not a mapping.
    NotAnObject,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}{position}: YAML syntax error: {message}")]
    Syntax {
        path: PathBuf,
        position: Position,
        message: String,
    },
    /// A document that parses as YAML but is not a valid object.
    #[error(transparent)]
    Object(Box<ObjectError>),
}

/// What is wrong with one object, and where.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}{position}: {object}{}: {message}", field_suffix(.field.as_ref()))]
pub struct ObjectError {
    pub path: PathBuf,
    pub document: usize,
    pub position: Position,
    /// `Kind namespace/name` as far as known.
    pub object: String,
    /// Field path inside the object, e.g. `spec.ingress[0].source.selector`.
    pub field: Option<String>,
    pub problem: ObjectProblem,
    pub message: String,
    /// The whole document as read (when it was a mapping), for a caller that must
    /// still act on what the object meant to select: the agent enforces a policy that
    /// never loaded as deny-all for the endpoints its selector names (fail closed).
    pub content: Option<Box<serde_json::Value>>,
}

fn field_suffix(field: Option<&String>) -> String {
    field.map(|f| format!(", field {f}")).unwrap_or_default()
}

impl LoadError {
    /// 1-based line of the problem, when known.
    pub fn line(&self) -> Option<u32> {
        match self {
            LoadError::Read { .. } => None,
            LoadError::Syntax { position, .. } => (position.line > 0).then_some(position.line),
            LoadError::Object(e) => (e.position.line > 0).then_some(e.position.line),
        }
    }
}
