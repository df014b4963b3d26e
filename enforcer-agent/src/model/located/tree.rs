//! A YAML document as a tree of values that remember where they start (line, column,
//! byte span), read with serde-saphyr's `Spanned`. Loading deserializes typed objects
//! from this tree ([`super::de`]) so that every error can name its line and column, and
//! `model::locate` walks it to find a field again.

use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};

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

/// The documents of a YAML (or JSON) text, each as a located tree.
pub(crate) fn parse_documents(text: &str) -> Result<Vec<Node>, serde_saphyr::Error> {
    let mut docs: Vec<Node> = serde_saphyr::from_multiple(text)?;
    for doc in &mut docs {
        doc.attach_raw(text);
    }
    Ok(docs)
}

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
    pub(crate) fn attach_raw(&mut self, text: &str) {
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

    /// The tree of a JSON value (no positions: every line and column is 0).
    pub(crate) fn from_json(value: &serde_json::Value) -> Node {
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

    /// The value as JSON (mapping keys as their text; positions dropped).
    pub(crate) fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            NodeValue::Null => J::Null,
            NodeValue::Bool(b) => J::Bool(*b),
            NodeValue::Int(i) => J::from(*i),
            NodeValue::UInt(u) => J::from(*u),
            NodeValue::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            NodeValue::Str(s) => J::String(s.clone()),
            NodeValue::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| {
                        let key = match &k.value {
                            NodeValue::Str(s) => s.clone(),
                            _ => k.raw.clone().unwrap_or_else(|| k.to_json().to_string()),
                        };
                        (key, v.to_json())
                    })
                    .collect(),
            ),
        }
    }

    pub(crate) fn position(&self) -> Position {
        Position {
            line: self.line,
            column: self.column,
        }
    }

    /// The value of `key` in a mapping.
    pub(crate) fn field(&self, key: &str) -> Option<&Node> {
        let NodeValue::Map(entries) = &self.value else {
            return None;
        };
        entries
            .iter()
            .find(|(k, _)| matches!(&k.value, NodeValue::Str(s) if s == key))
            .map(|(_, v)| v)
    }

    /// The text of `key`'s scalar value in a mapping.
    pub(crate) fn str_field(&self, key: &str) -> Option<&str> {
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
