//! Reading YAML/JSON files (multi-document, directories, `List`) into objects.
//!
//! YAML is first read into a position-annotated tree (`located`), and the typed objects
//! are deserialized from that tree by a deserializer that tracks the field path. So
//! every error names the file, the object (kind, namespace/name when known), the field
//! path (`spec.ingress[0].source.selector`) and the YAML line and column.

use std::path::{Path, PathBuf};

use super::document::DocContext;
use super::error::{LoadError, ObjectProblem};
use super::located::tree::{Node, NodeValue, Position, parse_documents};
use super::object::Loaded;

/// Loads every `.yaml`/`.yml`/`.json` file under the given files or directories.
pub fn load_paths(paths: &[PathBuf]) -> Result<Vec<Loaded>, LoadError> {
    let mut files = Vec::new();
    for path in paths {
        collect_files(path, &mut files)?;
    }
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| LoadError::Read {
            path: file.clone(),
            source,
        })?;
        out.extend(load_str(&file, &text)?);
    }
    Ok(out)
}

/// The manifest files (`.yaml`, `.yml`, `.json`) under a file or directory, sorted.
pub fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let read_err = |source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    };
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(read_err)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            let is_manifest = entry
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json");
            if entry.is_dir() || is_manifest {
                collect_files(&entry, out)?;
            }
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// Parses one file's text (YAML, multi-document, or JSON).
pub fn load_str(path: &Path, text: &str) -> Result<Vec<Loaded>, LoadError> {
    let docs = parse_documents(text).map_err(|e| {
        let position = e
            .location()
            .map(|l| Position {
                line: l.line() as u32,
                column: l.column() as u32,
            })
            .unwrap_or_default();
        LoadError::Syntax {
            path: path.to_path_buf(),
            position,
            message: first_line(&e.to_string()),
        }
    })?;
    let mut out = Vec::new();
    for (document, doc) in docs.iter().enumerate() {
        if matches!(doc.value, NodeValue::Null) {
            continue;
        }
        let ctx = DocContext {
            path,
            text,
            document,
        };
        if doc
            .str_field("kind")
            .is_some_and(|k| k == "List" || k.ends_with("List"))
        {
            let items = doc.field("items");
            match items.map(|n| &n.value) {
                Some(NodeValue::Seq(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        out.push(ctx.object(item, &format!("items[{i}]"))?);
                    }
                }
                None | Some(NodeValue::Null) => {}
                Some(_) => {
                    return Err(ctx.error(
                        doc,
                        Some("items".to_owned()),
                        items.map_or_else(Position::default, Node::position),
                        ObjectProblem::InvalidValue,
                        "a List's items must be a sequence".to_owned(),
                    ));
                }
            }
        } else {
            out.push(ctx.object(doc, "")?);
        }
    }
    Ok(out)
}

/// Reads objects from an already parsed JSON document (an object or a `List`), for
/// callers that hold `serde_json` values (no positions: errors name fields only).
pub fn load_value(path: &Path, value: &serde_json::Value) -> Result<Vec<Loaded>, LoadError> {
    let doc = Node::from_json(value);
    let ctx = DocContext {
        path,
        text: "",
        document: 0,
    };
    if doc
        .str_field("kind")
        .is_some_and(|k| k == "List" || k.ends_with("List"))
    {
        let mut out = Vec::new();
        if let Some(NodeValue::Seq(items)) = doc.field("items").map(|n| &n.value) {
            for (i, item) in items.iter().enumerate() {
                out.push(ctx.object(item, &format!("items[{i}]"))?);
            }
        }
        Ok(out)
    } else {
        Ok(vec![ctx.object(&doc, "")?])
    }
}

/// saphyr renders a source snippet after the message; the first line is the message.
fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().trim().to_owned()
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests panic on unexpected errors")]
mod tests {
    use super::*;
    use crate::model::ObjectError;

    fn load(text: &str) -> Result<Vec<Loaded>, LoadError> {
        load_str(Path::new("test.yaml"), text)
    }

    #[test]
    fn loads_multi_document_and_lists() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: b}\n";
        let objs = load(text).unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[1].object.meta().name, "b");
    }

    #[test]
    fn loads_json() {
        let objs = load(r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}"#)
            .unwrap();
        assert_eq!(objs[0].object.meta().name, "x");
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let err = load("kind: GlobalNetworkPolicy\n  name: x\n").unwrap_err();
        let LoadError::Syntax { position, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(position.line, 2, "{err}");
    }

    #[test]
    fn unknown_field_names_path_and_line() {
        let text = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  ingress:\n  - action: Allow\n    destinaton:\n      ports: [80]\n";
        let err = load(text).unwrap_err();
        let LoadError::Object(e) = &err else {
            panic!("{err}")
        };
        let ObjectError {
            field,
            position,
            problem,
            object,
            ..
        } = &**e;
        assert_eq!(
            field.as_deref(),
            Some("spec.ingress[0].destinaton"),
            "{err}"
        );
        assert_eq!(position.line, 8, "{err}");
        assert_eq!(object, "GlobalNetworkPolicy p");
        assert!(matches!(problem, ObjectProblem::UnknownField { field } if field == "destinaton"));
        assert!(err.to_string().contains("test.yaml:8:5"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_field() {
        let text = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n  namespace: n\nspec:\n  podSelector: {}\n  ingress:\n  - ports:\n    - port: 80\n      endPort: [1]\n";
        let err = load(text).unwrap_err();
        let LoadError::Object(e) = &err else {
            panic!("{err}")
        };
        let ObjectError {
            field, position, ..
        } = &**e;
        assert_eq!(
            field.as_deref(),
            Some("spec.ingress[0].ports[0].endPort"),
            "{err}"
        );
        assert_eq!(position.line, 11, "{err}");
        assert!(err.to_string().contains("NetworkPolicy n/p"), "{err}");
    }

    #[test]
    fn bad_selector_points_at_the_column() {
        let text = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  selector: \"app == 'x' && = 'y'\"\n";
        let err = load(text).unwrap_err();
        let LoadError::Object(e) = &err else {
            panic!("{err}")
        };
        let ObjectError {
            position, problem, ..
        } = &**e;
        assert!(
            matches!(problem, ObjectProblem::InvalidSelector { .. }),
            "{err}"
        );
        assert_eq!(position.line, 6);
        // `  selector: "` is 13 characters; the bad token is column 15 of the selector.
        assert_eq!(position.column, 13 + 15, "{err}");
    }

    #[test]
    fn bad_cidr_is_reported() {
        let text = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata:\n  name: s\nspec:\n  nets: [10.0.0.0/8, 10.1.2.300/32]\n";
        let err = load(text).unwrap_err();
        let LoadError::Object(e) = &err else {
            panic!("{err}")
        };
        let ObjectError {
            field,
            problem,
            position,
            ..
        } = &**e;
        assert_eq!(field.as_deref(), Some("spec.nets[1]"));
        assert_eq!(position.line, 6);
        assert!(matches!(problem, ObjectProblem::InvalidCidr { .. }));
    }

    #[test]
    fn unknown_kind_is_reported() {
        let err = load("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n").unwrap_err();
        let LoadError::Object(e) = &err else {
            panic!("{err}")
        };
        let ObjectError {
            problem, position, ..
        } = &**e;
        assert!(matches!(problem, ObjectProblem::UnknownKind { .. }));
        assert_eq!(position.line, 2);
    }
}
