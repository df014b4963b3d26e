//! A serde `Deserializer` over the located tree ([`super::tree::Node`]): typed objects
//! are read from it as from any format, and an error escaping from a value is stamped
//! with the value's field path (`spec.ingress[0].source`) and position on its way out.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use super::tree::{Node, NodeValue, Position};

#[derive(Debug)]
pub(crate) struct DeError {
    /// serde's message, e.g. "unknown field `x`, expected …".
    pub(crate) message: String,
    /// Field path of the innermost value the error escaped from.
    pub(crate) path: Option<String>,
    pub(crate) position: Option<Position>,
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

impl<'a> NodeDeserializer<'a> {
    /// A deserializer of `node`, whose field path is `path` (`""` for a document).
    pub(crate) fn new(node: &'a Node, path: &str) -> Self {
        NodeDeserializer {
            node,
            path: path.to_owned(),
        }
    }

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

/// `prefix.field`, or `field` at the top.
pub(crate) fn join_path(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}
