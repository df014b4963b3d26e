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

/// Kinds that application manifests (and `helm template` output) carry and the
/// enforcer does not use: no pod, address or policy of the matrix comes from them
/// (a `ReplicaSet`'s or `Job`'s pods are not modelled; a Deployment's are). The
/// manifest readers ([`load_manifests`], [`load_paths`]) skip them with a note; the
/// strict [`load_str`] (the datastore's reader) refuses them as unknown.
pub const UNUSED_KINDS: &[&str] = &[
    "APIService",
    "BGPConfiguration",
    "BGPPeer",
    "Certificate",
    "ClusterInformation",
    "ClusterRole",
    "ClusterRoleBinding",
    "ConfigMap",
    "CronJob",
    "CustomResourceDefinition",
    "FelixConfiguration",
    "Gateway",
    "GatewayClass",
    "HorizontalPodAutoscaler",
    "HTTPRoute",
    "IPPool",
    "Ingress",
    "IngressClass",
    "Job",
    "KubeControllersConfiguration",
    "Lease",
    "LimitRange",
    "MutatingWebhookConfiguration",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "PodDisruptionBudget",
    "PodMonitor",
    "PriorityClass",
    "PrometheusRule",
    "ReplicaSet",
    "ReplicationController",
    "ResourceQuota",
    "Role",
    "RoleBinding",
    "Secret",
    "ServiceAccount",
    "ServiceMonitor",
    "StorageClass",
    "ValidatingWebhookConfiguration",
    "VerticalPodAutoscaler",
];

/// A document of a kind in [`UNUSED_KINDS`], skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub path: PathBuf,
    /// 1-based line of the document (0: unknown).
    pub line: u32,
    pub kind: String,
    /// `namespace/name` or `name`.
    pub name: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: skipped {} {}: the enforcer does not use this kind",
            self.path.display(),
            self.line,
            self.kind,
            self.name
        )
    }
}

/// The path that stands for standard input (`-f -`), as it appears in messages.
pub const STDIN: &str = "-";

/// Standard input, read once per process: `-f -` given to a command that reads its
/// files twice (to validate, then to apply) sees the same text both times.
pub fn stdin_text() -> Result<&'static str, LoadError> {
    static TEXT: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    let text = TEXT.get_or_init(|| {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map(|_| text)
            .map_err(|e| e.to_string())
    });
    text.as_deref().map_err(|e| LoadError::Read {
        path: PathBuf::from("<stdin>"),
        source: std::io::Error::other(e.clone()),
    })
}

/// Loads every `.yaml`/`.yml`/`.json` file under the given files or directories (`-`:
/// standard input), skipping the kinds the enforcer does not use; returns what was
/// skipped too.
pub fn load_manifests(paths: &[PathBuf]) -> Result<(Vec<Loaded>, Vec<Skipped>), LoadError> {
    let mut files = Vec::new();
    for path in paths {
        if path.as_os_str() == STDIN {
            files.push(path.clone());
        } else {
            collect_files(path, &mut files)?;
        }
    }
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for file in files {
        let (objects, skips) = if file.as_os_str() == STDIN {
            load_manifest(Path::new("<stdin>"), stdin_text()?)?
        } else {
            let text = std::fs::read_to_string(&file).map_err(|source| LoadError::Read {
                path: file.clone(),
                source,
            })?;
            load_manifest(&file, &text)?
        };
        out.extend(objects);
        skipped.extend(skips);
    }
    Ok((out, skipped))
}

/// [`load_manifests`], the skipped documents reported as warnings (for callers that
/// have no place to show notes, such as the lab).
pub fn load_paths(paths: &[PathBuf]) -> Result<Vec<Loaded>, LoadError> {
    let (objects, skipped) = load_manifests(paths)?;
    for s in &skipped {
        tracing::warn!("{s}");
    }
    Ok(objects)
}

/// [`load_str`] for manifests: documents of [`UNUSED_KINDS`] are skipped, not errors.
pub fn load_manifest(path: &Path, text: &str) -> Result<(Vec<Loaded>, Vec<Skipped>), LoadError> {
    let mut skipped = Vec::new();
    let objects = load_documents(path, text, Some(&mut skipped))?;
    Ok((objects, skipped))
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

/// Parses one file's text (YAML, multi-document, or JSON). Every document must be of a
/// kind the enforcer reads.
pub fn load_str(path: &Path, text: &str) -> Result<Vec<Loaded>, LoadError> {
    load_documents(path, text, None)
}

/// The document `node` if it is of an unused kind (and unused kinds are skipped).
fn skip(path: &Path, node: &Node, skipped: &mut Option<&mut Vec<Skipped>>) -> bool {
    let Some(list) = skipped.as_deref_mut() else {
        return false;
    };
    let Some(kind) = node.str_field("kind").filter(|k| UNUSED_KINDS.contains(k)) else {
        return false;
    };
    let meta = node.field("metadata");
    let name = meta.and_then(|m| m.str_field("name")).unwrap_or_default();
    let name = match meta.and_then(|m| m.str_field("namespace")) {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    };
    list.push(Skipped {
        path: path.to_path_buf(),
        line: node.line,
        kind: kind.to_owned(),
        name,
    });
    true
}

fn load_documents(
    path: &Path,
    text: &str,
    mut skipped: Option<&mut Vec<Skipped>>,
) -> Result<Vec<Loaded>, LoadError> {
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
            message: size_limit(&e).unwrap_or_else(|| first_line(&e.to_string())),
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
                        if !skip(path, item, &mut skipped) {
                            out.push(ctx.object(item, &format!("items[{i}]"))?);
                        }
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
        } else if !skip(path, doc, &mut skipped) {
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

/// What to tell a user whose file breaches the reader's size limits (serde-saphyr's
/// default budget, which bounds what one file can make the agent allocate): the limit
/// and the fix, rather than the library's "budget breached: Documents { .. }".
fn size_limit(e: &serde_saphyr::Error) -> Option<String> {
    use serde_saphyr::budget::BudgetBreach;
    let serde_saphyr::Error::Budget { breach, .. } = e.without_snippet() else {
        return None;
    };
    // The limits `parse_documents` reads with (the library's defaults), not copies.
    let budget = serde_saphyr::Budget::default();
    let what = match breach {
        BudgetBreach::Documents { .. } => format!("more than {} documents", budget.max_documents),
        BudgetBreach::Nodes { .. } => format!("more than {} YAML nodes", budget.max_nodes),
        _ => return None,
    };
    Some(format!(
        "{what} in one file (the reader's limit per file): split it into several files"
    ))
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

    /// A file over the reader's limits is refused with the limit and the fix, not
    /// the library's budget wording.
    #[test]
    fn a_file_over_the_readers_limits_says_to_split_it() {
        let doc = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n";
        let text = vec![doc; 1_100].join("---\n");
        let err = load(&text).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("more than 1024 documents in one file")
                && message.contains("split it into several files"),
            "{message}"
        );
        // 1,000 documents are read.
        assert_eq!(load(&vec![doc; 1_000].join("---\n")).unwrap().len(), 1_000);
        // One document of more than 250,000 nodes.
        let big = format!("{doc}data: [{}]\n", vec!["1"; 250_001].join(","));
        let message = load(&big).unwrap_err().to_string();
        assert!(
            message.contains("more than 250000 YAML nodes in one file"),
            "{message}"
        );
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
    fn manifests_skip_unused_kinds_and_keep_workloads() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: a}\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.k8s.io/v1\n  kind: Ingress\n  metadata: {name: i}\n---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db, namespace: a}\nspec:\n  replicas: 2\n  template:\n    metadata: {labels: {app: db}}\n    spec: {containers: [{name: c, image: x}]}\n";
        let (objects, skipped) = load_manifest(Path::new("m.yaml"), text).unwrap();
        let kinds: Vec<&str> = skipped.iter().map(|s| s.kind.as_str()).collect();
        assert_eq!(kinds, ["ConfigMap", "Ingress"]);
        assert_eq!(skipped[0].name, "a/c");
        assert_eq!(skipped[0].line, 1);
        assert!(
            skipped[0]
                .to_string()
                .contains("m.yaml:1: skipped ConfigMap a/c")
        );
        assert_eq!(objects.len(), 1);
        let crate::model::Object::StatefulSet(sts) = &objects[0].object else {
            panic!("{:?}", objects[0].object)
        };
        let names: Vec<String> = sts.pods().into_iter().map(|p| p.metadata.name).collect();
        assert_eq!(names, ["db-0", "db-1"]);
        // The strict reader (the agent's datastore) still refuses them.
        assert!(load_str(Path::new("m.yaml"), text).is_err());
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
