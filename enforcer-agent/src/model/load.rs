//! Reading YAML/JSON files (multi-document, directories, `List`) into objects.
//!
//! YAML is first read into a position-annotated tree ([`Node`]), and the typed objects
//! are deserialized from that tree by a deserializer that tracks the field path. So
//! every error names the file, the object (kind, namespace/name when known), the field
//! path (`spec.ingress[0].source.selector`) and the YAML line and column.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use super::Object;
use super::calico::CalicoApi;

/// Where an object came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub file: PathBuf,
    /// 0-based index of the (non-empty) document in the file.
    pub document: usize,
    /// 1-based line where the object starts (0: unknown).
    pub line: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    pub source: Source,
    pub object: Object,
}

/// Position of a problem inside a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// 1-based; 0 when unknown.
    pub line: u32,
    /// 1-based; 0 when unknown.
    pub column: u32,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (0, _) => Ok(()),
            (l, 0) => write!(f, ":{l}"),
            (l, c) => write!(f, ":{l}:{c}"),
        }
    }
}

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
    let mut docs: Vec<Node> = serde_saphyr::from_multiple(text).map_err(|e| {
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
    for doc in &mut docs {
        doc.attach_raw(text);
    }
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

struct DocContext<'a> {
    path: &'a Path,
    text: &'a str,
    document: usize,
}

impl DocContext<'_> {
    fn error(
        &self,
        node: &Node,
        field: Option<String>,
        position: Position,
        problem: ObjectProblem,
        message: String,
    ) -> LoadError {
        LoadError::Object(Box::new(ObjectError {
            path: self.path.to_path_buf(),
            document: self.document,
            position,
            object: describe_object(node),
            field,
            problem,
            message,
        }))
    }

    fn object(&self, node: &Node, prefix: &str) -> Result<Loaded, LoadError> {
        let field_at = |f: &str| join_path(prefix, f);
        if !matches!(node.value, NodeValue::Map(_)) {
            return Err(self.error(
                node,
                (!prefix.is_empty()).then(|| prefix.to_owned()),
                node.position(),
                ObjectProblem::NotAnObject,
                "expected a mapping with apiVersion, kind, metadata".to_owned(),
            ));
        }
        let kind = node.str_field("kind").unwrap_or_default().to_owned();
        let api = node.str_field("apiVersion").unwrap_or_default().to_owned();
        let kind_pos = node
            .field("kind")
            .map_or_else(|| node.position(), Node::position);
        let unknown = |msg: String| {
            self.error(
                node,
                Some(field_at("kind")),
                kind_pos.clone(),
                ObjectProblem::UnknownKind {
                    kind: kind.clone(),
                    api_version: api.clone(),
                },
                msg,
            )
        };
        let calico_api =
            || CalicoApi::from_api_version(&api).or(api.is_empty().then_some(CalicoApi::V3));
        let de = |n: &Node| -> Result<Object, LoadError> {
            let d = NodeDeserializer {
                node: n,
                path: prefix.to_owned(),
            };
            let convert = |e: DeError| self.de_error(node, e);
            let object = match kind.as_str() {
                "Namespace" => Object::Namespace(de::Deserialize::deserialize(d).map_err(convert)?),
                "Pod" => Object::Pod(de::Deserialize::deserialize(d).map_err(convert)?),
                "Deployment" => {
                    Object::Deployment(de::Deserialize::deserialize(d).map_err(convert)?)
                }
                "Service" => Object::Service(de::Deserialize::deserialize(d).map_err(convert)?),
                "NetworkPolicy" if api == "networking.k8s.io/v1" => {
                    Object::NetworkPolicy(de::Deserialize::deserialize(d).map_err(convert)?)
                }
                "NetworkPolicy" => {
                    let Some(a) = CalicoApi::from_api_version(&api) else {
                        return Err(unknown(format!(
                            "NetworkPolicy with apiVersion {api:?}: expected networking.k8s.io/v1, projectcalico.org/v3 or crd.projectcalico.org/v1"
                        )));
                    };
                    let mut o: super::calico::NetworkPolicy =
                        de::Deserialize::deserialize(d).map_err(convert)?;
                    o.api = a;
                    Object::CalicoNetworkPolicy(o)
                }
                "GlobalNetworkPolicy"
                | "Tier"
                | "NetworkSet"
                | "GlobalNetworkSet"
                | "HostEndpoint" => {
                    let Some(a) = calico_api() else {
                        return Err(unknown(format!(
                            "{kind} with apiVersion {api:?}: expected projectcalico.org/v3 or crd.projectcalico.org/v1"
                        )));
                    };
                    calico_object(&kind, d, a).map_err(convert)?
                }
                "" => return Err(unknown("the document has no kind".to_owned())),
                _ => {
                    return Err(unknown(format!(
                        "unknown kind {kind:?} (apiVersion {api:?}); known: Namespace, Pod, Deployment, Service, NetworkPolicy, GlobalNetworkPolicy, Tier, NetworkSet, GlobalNetworkSet, HostEndpoint, List"
                    )));
                }
            };
            Ok(object)
        };
        let object = de(node)?;
        if object.is_policy_kind() {
            self.check_values(node, node, prefix)?;
        }
        Ok(Loaded {
            source: Source {
                file: self.path.to_path_buf(),
                document: self.document,
                line: node.line,
            },
            object,
        })
    }

    fn de_error(&self, object: &Node, e: DeError) -> LoadError {
        let problem = if let Some(f) = e.message.strip_prefix("unknown field `") {
            ObjectProblem::UnknownField {
                field: f.split('`').next().unwrap_or_default().to_owned(),
            }
        } else if let Some(f) = e.message.strip_prefix("missing field `") {
            ObjectProblem::MissingField {
                field: f.split('`').next().unwrap_or_default().to_owned(),
            }
        } else {
            ObjectProblem::InvalidValue
        };
        let message = if e.message.starts_with("data did not match any variant") {
            "value has the wrong shape for this field".to_owned()
        } else if let Some((unknown, best)) = super::suggest::unknown_field_suggestion(&e.message) {
            let expected = e.message.split_once(", ").map_or("", |(_, rest)| rest);
            format!("unknown field `{unknown}`: did you mean `{best}`? ({expected})")
        } else {
            e.message
        };
        self.error(
            object,
            e.path.filter(|p| !p.is_empty()),
            e.position.unwrap_or_default(),
            problem,
            message,
        )
    }

    /// Validates CIDRs and selectors where they are written, so their errors carry
    /// the YAML line and the selector's column.
    fn check_values(&self, object: &Node, node: &Node, path: &str) -> Result<(), LoadError> {
        match &node.value {
            NodeValue::Map(entries) => {
                for (k, v) in entries {
                    let NodeValue::Str(key) = &k.value else {
                        continue;
                    };
                    let sub = join_path(path, key);
                    match (key.as_str(), &v.value) {
                        (
                            "selector"
                            | "notSelector"
                            | "namespaceSelector"
                            | "serviceAccountSelector",
                            NodeValue::Str(s),
                        ) => {
                            if let Err(e) = crate::selector::Selector::parse(s) {
                                let quoted = self
                                    .char_at(&v.position())
                                    .is_some_and(|c| c == '\'' || c == '"');
                                let column = v.column + u32::from(quoted) + e.column as u32 - 1;
                                return Err(self.error(
                                    object,
                                    Some(sub),
                                    Position {
                                        line: v.line,
                                        column,
                                    },
                                    ObjectProblem::InvalidSelector {
                                        selector: s.clone(),
                                    },
                                    format!(
                                        "invalid selector (column {} of the selector): {}",
                                        e.column, e.message
                                    ),
                                ));
                            }
                        }
                        ("nets" | "notNets" | "except" | "expectedIPs", NodeValue::Seq(items)) => {
                            for (i, item) in items.iter().enumerate() {
                                if let NodeValue::Str(s) = &item.value {
                                    self.check_cidr(object, item, s, &format!("{sub}[{i}]"))?;
                                }
                            }
                        }
                        ("cidr", NodeValue::Str(s)) => self.check_cidr(object, v, s, &sub)?,
                        _ => self.check_values(object, v, &sub)?,
                    }
                }
            }
            NodeValue::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.check_values(object, item, &format!("{path}[{i}]"))?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn check_cidr(
        &self,
        object: &Node,
        node: &Node,
        value: &str,
        field: &str,
    ) -> Result<(), LoadError> {
        match super::parse_cidr(value) {
            Ok(_) => Ok(()),
            Err(message) => Err(self.error(
                object,
                Some(field.to_owned()),
                node.position(),
                ObjectProblem::InvalidCidr {
                    value: value.to_owned(),
                },
                message,
            )),
        }
    }

    fn char_at(&self, p: &Position) -> Option<char> {
        let line = self.text.lines().nth((p.line as usize).checked_sub(1)?)?;
        line.chars().nth((p.column as usize).checked_sub(1)?)
    }
}

fn calico_object(kind: &str, d: NodeDeserializer<'_>, api: CalicoApi) -> Result<Object, DeError> {
    use super::calico as c;
    Ok(match kind {
        "GlobalNetworkPolicy" => {
            let mut o: c::GlobalNetworkPolicy = de::Deserialize::deserialize(d)?;
            o.api = api;
            Object::GlobalNetworkPolicy(o)
        }
        "Tier" => {
            let mut o: c::Tier = de::Deserialize::deserialize(d)?;
            o.api = api;
            Object::Tier(o)
        }
        "NetworkSet" => {
            let mut o: c::NetworkSet = de::Deserialize::deserialize(d)?;
            o.api = api;
            Object::NetworkSet(o)
        }
        "GlobalNetworkSet" => {
            let mut o: c::GlobalNetworkSet = de::Deserialize::deserialize(d)?;
            o.api = api;
            Object::GlobalNetworkSet(o)
        }
        _ => {
            let mut o: c::HostEndpoint = de::Deserialize::deserialize(d)?;
            o.api = api;
            Object::HostEndpoint(o)
        }
    })
}

fn describe_object(node: &Node) -> String {
    let kind = node.str_field("kind").unwrap_or("object");
    let meta = node.field("metadata");
    let name = meta.and_then(|m| m.str_field("name"));
    let ns = meta.and_then(|m| m.str_field("namespace"));
    match (ns, name) {
        (Some(ns), Some(name)) => format!("{kind} {ns}/{name}"),
        (None, Some(name)) => format!("{kind} {name}"),
        _ => kind.to_owned(),
    }
}

fn join_path(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

// ---------------------------------------------------------------------------------
// Position-annotated YAML tree.
// ---------------------------------------------------------------------------------

/// A YAML value with the position where it starts.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub value: NodeValue,
    pub line: u32,
    pub column: u32,
    /// Byte range of the value in the text (when the parser knows it).
    pub span: Option<(usize, usize)>,
    /// Source text of a non-string scalar: string fields take `namespace: n` or
    /// `version: 1` as written, like Kubernetes' YAML reader does.
    pub raw: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// Fills [`Node::raw`] for non-string scalars from the source text.
    fn attach_raw(&mut self, text: &str) {
        match &mut self.value {
            NodeValue::Bool(_) | NodeValue::Int(_) | NodeValue::UInt(_) | NodeValue::Float(_) => {
                self.raw = self
                    .span
                    .and_then(|(o, l)| text.get(o..o + l))
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty());
            }
            NodeValue::Seq(items) => items.iter_mut().for_each(|n| n.attach_raw(text)),
            NodeValue::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
                k.attach_raw(text);
                v.attach_raw(text);
            }),
            NodeValue::Null | NodeValue::Str(_) => {}
        }
    }

    fn from_json(value: &serde_json::Value) -> Node {
        use serde_json::Value as J;
        let value = match value {
            J::Null => NodeValue::Null,
            J::Bool(b) => NodeValue::Bool(*b),
            J::Number(n) => n
                .as_u64()
                .map(NodeValue::UInt)
                .or_else(|| n.as_i64().map(NodeValue::Int))
                .unwrap_or_else(|| NodeValue::Float(n.as_f64().unwrap_or_default())),
            J::String(s) => NodeValue::Str(s.clone()),
            J::Array(items) => NodeValue::Seq(items.iter().map(Node::from_json).collect()),
            J::Object(map) => NodeValue::Map(
                map.iter()
                    .map(|(k, v)| (Node::from_json(&J::String(k.clone())), Node::from_json(v)))
                    .collect(),
            ),
        };
        Node {
            value,
            line: 0,
            column: 0,
            span: None,
            raw: None,
        }
    }

    fn position(&self) -> Position {
        Position {
            line: self.line,
            column: self.column,
        }
    }

    fn field(&self, key: &str) -> Option<&Node> {
        let NodeValue::Map(entries) = &self.value else {
            return None;
        };
        entries
            .iter()
            .find(|(k, _)| matches!(&k.value, NodeValue::Str(s) if s == key))
            .map(|(_, v)| v)
    }

    fn str_field(&self, key: &str) -> Option<&str> {
        let node = self.field(key)?;
        match &node.value {
            NodeValue::Str(s) => Some(s),
            _ => node.raw.as_deref(),
        }
    }
}

impl<'de> de::Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<NodeValue>::deserialize(d)?;
        let span = spanned.referenced.span();
        Ok(Node {
            value: spanned.value,
            line: spanned.referenced.line() as u32,
            column: spanned.referenced.column() as u32,
            span: span
                .byte_offset()
                .zip(span.byte_len())
                .map(|(o, l)| (o as usize, l as usize)),
            raw: None,
        })
    }
}

impl<'de> de::Deserialize<'de> for NodeValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = NodeValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }
    fn visit_none<E>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<NodeValue, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
    fn visit_bool<E>(self, v: bool) -> Result<NodeValue, E> {
        Ok(NodeValue::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<NodeValue, E> {
        Ok(NodeValue::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<NodeValue, E> {
        Ok(NodeValue::UInt(v))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<NodeValue, E> {
        i64::try_from(v)
            .map(NodeValue::Int)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<NodeValue, E> {
        u64::try_from(v)
            .map(NodeValue::UInt)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<NodeValue, E> {
        Ok(NodeValue::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<NodeValue, E> {
        Ok(NodeValue::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<NodeValue, E> {
        Ok(NodeValue::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(NodeValue::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeValue, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<Node>()? {
            let v = map.next_value::<Node>()?;
            entries.push((k, v));
        }
        Ok(NodeValue::Map(entries))
    }
}

// ---------------------------------------------------------------------------------
// Deserializing typed objects from the tree, with field paths and positions.
// ---------------------------------------------------------------------------------

#[derive(Debug)]
pub(crate) struct DeError {
    message: String,
    path: Option<String>,
    position: Option<Position>,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            path: None,
            position: None,
        }
    }
}

impl DeError {
    /// Attaches the innermost position: the first node an error escapes from.
    fn at(mut self, node: &Node, path: &str) -> Self {
        if self.position.is_none() {
            self.position = Some(node.position());
            self.path = Some(path.to_owned());
        }
        self
    }
}

pub(crate) struct NodeDeserializer<'a> {
    node: &'a Node,
    path: String,
}

impl NodeDeserializer<'_> {
    fn any<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let node = self.node;
        let path = self.path.clone();
        let result = match &node.value {
            NodeValue::Null => visitor.visit_unit(),
            NodeValue::Bool(b) => visitor.visit_bool(*b),
            NodeValue::Int(i) => visitor.visit_i64(*i),
            NodeValue::UInt(u) => visitor.visit_u64(*u),
            NodeValue::Float(x) => visitor.visit_f64(*x),
            NodeValue::Str(s) => visitor.visit_str(s),
            NodeValue::Seq(items) => visitor.visit_seq(NodeSeq {
                items: items.iter(),
                index: 0,
                path: &self.path,
            }),
            NodeValue::Map(entries) => visitor.visit_map(NodeMap {
                entries: entries.iter(),
                value: None,
                path: &self.path,
            }),
        };
        result.map_err(|e| e.at(node, &path))
    }
}

impl<'de> de::Deserializer<'de> for NodeDeserializer<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.any(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if matches!(self.node.value, NodeValue::Null) {
            visitor.visit_none()
        } else {
            let (node, path) = (self.node, self.path.clone());
            visitor.visit_some(self).map_err(|e| e.at(node, &path))
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let (node, path) = (self.node, self.path.clone());
        visitor
            .visit_newtype_struct(self)
            .map_err(|e| e.at(node, &path))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            NodeValue::Str(s) => {
                let d: de::value::StrDeserializer<'_, DeError> = s.as_str().into_deserializer();
                visitor
                    .visit_enum(d)
                    .map_err(|e| e.at(self.node, &self.path))
            }
            _ => Err(
                <DeError as de::Error>::custom("expected one of the listed names (a string)")
                    .at(self.node, &self.path),
            ),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // `spec:` with nothing after it is null; YAML users mean "empty".
        if matches!(self.node.value, NodeValue::Null) {
            let empty: [(Node, Node); 0] = [];
            return visitor
                .visit_map(NodeMap {
                    entries: empty.iter(),
                    value: None,
                    path: &self.path,
                })
                .map_err(|e| e.at(self.node, &self.path));
        }
        self.any(visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if matches!(self.node.value, NodeValue::Null) {
            let empty: [Node; 0] = [];
            return visitor
                .visit_seq(NodeSeq {
                    items: empty.iter(),
                    index: 0,
                    path: &self.path,
                })
                .map_err(|e| e.at(self.node, &self.path));
        }
        self.any(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if let Some(raw) = &self.node.raw {
            return visitor
                .visit_str::<DeError>(raw)
                .map_err(|e| e.at(self.node, &self.path));
        }
        self.any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char
        bytes byte_buf unit unit_struct tuple
        tuple_struct identifier ignored_any
    }
}

struct NodeSeq<'a> {
    items: std::slice::Iter<'a, Node>,
    index: usize,
    path: &'a str,
}

impl<'de> SeqAccess<'de> for NodeSeq<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        let path = format!("{}[{}]", self.path, self.index);
        self.index += 1;
        seed.deserialize(NodeDeserializer { node: item, path })
            .map(Some)
    }
}

struct NodeMap<'a> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<(&'a Node, String)>,
    path: &'a str,
}

impl<'de> MapAccess<'de> for NodeMap<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((k, v)) = self.entries.next() else {
            return Ok(None);
        };
        let key_text = match &k.value {
            NodeValue::Str(s) => s.clone(),
            NodeValue::Int(i) => i.to_string(),
            NodeValue::UInt(u) => u.to_string(),
            NodeValue::Bool(b) => b.to_string(),
            _ => "?".to_owned(),
        };
        let path = join_path(self.path, &key_text);
        self.value = Some((v, path.clone()));
        // Keys are always read as strings (YAML `80: x` still names a field "80").
        let key_de: de::value::StringDeserializer<DeError> = key_text.into_deserializer();
        seed.deserialize(key_de)
            .map(Some)
            .map_err(|e| e.at(k, &path))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((node, path)) = self.value.take() else {
            return Err(de::Error::custom("value requested before key"));
        };
        seed.deserialize(NodeDeserializer { node, path })
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests panic on unexpected errors")]
mod tests {
    use super::*;

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
