//! One located YAML document → a typed [`Object`]: the kind and `apiVersion` pick the
//! type, the located deserializer reads it (errors carry the field path, line and
//! column, and a "did you mean" for misspelt fields), and policy kinds get their CIDRs
//! and selectors checked where they are written, so those errors point into the text
//! too (a selector error at the column of the offending token).

use std::path::Path;

use serde::de;

use super::admin::ADMIN_API_VERSION;
use super::calico::{self, CalicoApi};
use super::cidr::parse_cidr;
use super::error::{LoadError, ObjectError, ObjectProblem};
use super::located::de::{DeError, NodeDeserializer, join_path};
use super::located::tree::{Node, NodeValue, Position};
use super::object::{Loaded, Object, Source};
use super::suggest::unknown_field_suggestion;
use crate::selector::Selector;

/// One document of a file: what its errors name.
pub(super) struct DocContext<'a> {
    pub(super) path: &'a Path,
    /// The file's text (empty for JSON values read without one).
    pub(super) text: &'a str,
    /// 0-based index of the document in the file.
    pub(super) document: usize,
}

impl DocContext<'_> {
    pub(super) fn error(
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
            content: None,
        }))
    }

    /// The object at `node` (`prefix`: its field path inside the document, e.g.
    /// `items[2]` in a `List`), with where it came from.
    pub(super) fn object(&self, node: &Node, prefix: &str) -> Result<Loaded, LoadError> {
        if !matches!(node.value, NodeValue::Map(_)) {
            return Err(self.error(
                node,
                (!prefix.is_empty()).then(|| prefix.to_owned()),
                node.position(),
                ObjectProblem::NotAnObject,
                "expected a mapping with apiVersion, kind, metadata".to_owned(),
            ));
        }
        let checked = self.typed_object(node, prefix).and_then(|object| {
            if object.is_policy_kind() {
                self.check_values(node, node, prefix)?;
            }
            Ok(object)
        });
        let object = checked.map_err(|mut error| {
            if let LoadError::Object(e) = &mut error {
                e.content = Some(Box::new(node.to_json()));
            }
            error
        })?;
        Ok(Loaded {
            source: Source {
                file: self.path.to_path_buf(),
                document: self.document,
                line: node.line,
            },
            object,
        })
    }

    /// Reads the mapping at `node` as the type its `kind` and `apiVersion` name.
    fn typed_object(&self, node: &Node, prefix: &str) -> Result<Object, LoadError> {
        let kind = node.str_field("kind").unwrap_or_default();
        let api = node.str_field("apiVersion").unwrap_or_default();
        let unknown = |msg: String| {
            self.error(
                node,
                Some(join_path(prefix, "kind")),
                node.field("kind")
                    .map_or_else(|| node.position(), Node::position),
                ObjectProblem::UnknownKind {
                    kind: kind.to_owned(),
                    api_version: api.to_owned(),
                },
                msg,
            )
        };
        let d = NodeDeserializer::new(node, prefix);
        let convert = |e: DeError| self.de_error(node, e);
        let object = match kind {
            "Namespace" => Object::Namespace(de::Deserialize::deserialize(d).map_err(convert)?),
            "Pod" => Object::Pod(de::Deserialize::deserialize(d).map_err(convert)?),
            "Node" => Object::Node(de::Deserialize::deserialize(d).map_err(convert)?),
            "Deployment" => Object::Deployment(de::Deserialize::deserialize(d).map_err(convert)?),
            "StatefulSet" => Object::StatefulSet(de::Deserialize::deserialize(d).map_err(convert)?),
            "DaemonSet" => Object::DaemonSet(de::Deserialize::deserialize(d).map_err(convert)?),
            "Service" => Object::Service(de::Deserialize::deserialize(d).map_err(convert)?),
            "Endpoints" => Object::Endpoints(de::Deserialize::deserialize(d).map_err(convert)?),
            "EndpointSlice" if api == "discovery.k8s.io/v1" => {
                Object::EndpointSlice(de::Deserialize::deserialize(d).map_err(convert)?)
            }
            "EndpointSlice" => {
                return Err(unknown(format!(
                    "EndpointSlice with apiVersion {api:?}: expected discovery.k8s.io/v1"
                )));
            }
            "NetworkPolicy" if api == "networking.k8s.io/v1" => {
                Object::NetworkPolicy(de::Deserialize::deserialize(d).map_err(convert)?)
            }
            "NetworkPolicy" => {
                let Some(a) = CalicoApi::from_api_version(api) else {
                    return Err(unknown(format!(
                        "NetworkPolicy with apiVersion {api:?}: expected networking.k8s.io/v1, projectcalico.org/v3 or crd.projectcalico.org/v1"
                    )));
                };
                let mut o: calico::NetworkPolicy =
                    de::Deserialize::deserialize(d).map_err(convert)?;
                o.api = a;
                Object::CalicoNetworkPolicy(o)
            }
            "AdminNetworkPolicy" | "BaselineAdminNetworkPolicy" if api == ADMIN_API_VERSION => {
                if kind == "AdminNetworkPolicy" {
                    Object::AdminNetworkPolicy(de::Deserialize::deserialize(d).map_err(convert)?)
                } else {
                    Object::BaselineAdminNetworkPolicy(
                        de::Deserialize::deserialize(d).map_err(convert)?,
                    )
                }
            }
            "AdminNetworkPolicy" | "BaselineAdminNetworkPolicy" => {
                return Err(unknown(format!(
                    "{kind} with apiVersion {api:?}: expected {ADMIN_API_VERSION}"
                )));
            }
            "GlobalNetworkPolicy" | "Tier" | "NetworkSet" | "GlobalNetworkSet" | "HostEndpoint" => {
                // Calico-only kinds: a missing apiVersion means the calicoctl form.
                let calico_api =
                    CalicoApi::from_api_version(api).or(api.is_empty().then_some(CalicoApi::V3));
                let Some(a) = calico_api else {
                    return Err(unknown(format!(
                        "{kind} with apiVersion {api:?}: expected projectcalico.org/v3 or crd.projectcalico.org/v1"
                    )));
                };
                calico_object(kind, d, a).map_err(convert)?
            }
            "" => return Err(unknown("the document has no kind".to_owned())),
            _ => {
                return Err(unknown(format!(
                    "unknown kind {kind:?} (apiVersion {api:?}); known: Namespace, Pod, Node, Deployment, StatefulSet, DaemonSet, Service, EndpointSlice, Endpoints, NetworkPolicy, GlobalNetworkPolicy, Tier, NetworkSet, GlobalNetworkSet, HostEndpoint, AdminNetworkPolicy, BaselineAdminNetworkPolicy, List"
                )));
            }
        };
        Ok(object)
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
        } else if let Some((unknown, best)) = unknown_field_suggestion(&e.message) {
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
                            if let Err(e) = Selector::parse(s) {
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
                        (
                            "nets" | "notNets" | "except" | "expectedIPs" | "networks",
                            NodeValue::Seq(items),
                        ) => {
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
        match parse_cidr(value) {
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
    Ok(match kind {
        "GlobalNetworkPolicy" => {
            let mut o: calico::GlobalNetworkPolicy = de::Deserialize::deserialize(d)?;
            o.api = api;
            Object::GlobalNetworkPolicy(o)
        }
        "Tier" => {
            let mut o: calico::Tier = de::Deserialize::deserialize(d)?;
            o.api = api;
            Object::Tier(o)
        }
        "NetworkSet" => {
            let mut o: calico::NetworkSet = de::Deserialize::deserialize(d)?;
            o.api = api;
            Object::NetworkSet(o)
        }
        "GlobalNetworkSet" => {
            let mut o: calico::GlobalNetworkSet = de::Deserialize::deserialize(d)?;
            o.api = api;
            Object::GlobalNetworkSet(o)
        }
        _ => {
            let mut o: calico::HostEndpoint = de::Deserialize::deserialize(d)?;
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
