//! What the API server does to an object before it exists: defaults filled in and
//! names checked, each error naming the object and where it came from.

use crate::model::workload::{PodSpec, ServiceSpec};
use crate::model::{Object, ObjectMeta, Source};

use super::error::PlanError;

/// More replicas than this is refused (a cluster on one machine).
pub const MAX_REPLICAS: u32 = 256;
/// Longest pod name: keeps names derived from it (a netns `enf-<lab>-<ns>.<pod>`)
/// within a file name.
pub const MAX_POD_NAME: usize = 150;

/// An object the user declared (or the planner assumed), with where it came from.
#[derive(Clone, Debug)]
pub struct Declared {
    pub object: Object,
    /// The file and document; `None` for objects read back from a datastore and for
    /// objects the planner assumed.
    pub source: Option<Source>,
}

impl Declared {
    fn origin(&self) -> String {
        match &self.source {
            Some(s) => format!("{} document {}", s.file.display(), s.document),
            None => "datastore".to_owned(),
        }
    }

    pub(super) fn invalid(&self, message: impl Into<String>) -> PlanError {
        PlanError::Invalid {
            origin: self.origin(),
            object: self.object.id(),
            message: message.into(),
        }
    }
}

fn is_namespaced(object: &Object) -> bool {
    matches!(
        object,
        Object::Pod(_)
            | Object::Deployment(_)
            | Object::StatefulSet(_)
            | Object::DaemonSet(_)
            | Object::Service(_)
            | Object::EndpointSlice(_)
            | Object::Endpoints(_)
            | Object::NetworkPolicy(_)
            | Object::CalicoNetworkPolicy(_)
            | Object::NetworkSet(_)
    )
}

fn meta_mut(object: &mut Object) -> &mut ObjectMeta {
    match object {
        Object::Namespace(o) => &mut o.metadata,
        Object::Pod(o) => &mut o.metadata,
        Object::Node(o) => &mut o.metadata,
        Object::Deployment(o) | Object::StatefulSet(o) => &mut o.metadata,
        Object::DaemonSet(o) => &mut o.metadata,
        Object::Service(o) => &mut o.metadata,
        Object::EndpointSlice(o) => &mut o.metadata,
        Object::Endpoints(o) => &mut o.metadata,
        Object::NetworkPolicy(o) => &mut o.metadata,
        Object::CalicoNetworkPolicy(o) => &mut o.metadata,
        Object::GlobalNetworkPolicy(o) => &mut o.metadata,
        Object::Tier(o) => &mut o.metadata,
        Object::NetworkSet(o) => &mut o.metadata,
        Object::GlobalNetworkSet(o) => &mut o.metadata,
        Object::HostEndpoint(o) => &mut o.metadata,
        Object::AdminNetworkPolicy(o) => &mut o.metadata,
        Object::BaselineAdminNetworkPolicy(o) => &mut o.metadata,
    }
}

/// Fills in what the API server would: the `default` namespace for namespaced
/// objects, none for cluster-scoped ones.
pub fn normalize(mut object: Object) -> Object {
    let namespaced = is_namespaced(&object);
    let meta = meta_mut(&mut object);
    if namespaced {
        if meta.namespace.as_deref().is_none_or(str::is_empty) {
            meta.namespace = Some("default".to_owned());
        }
    } else {
        meta.namespace = None;
    }
    object
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.split('.').all(is_dns_label)
}

/// Checks one declared object before anything changes.
pub fn validate(d: &Declared) -> Result<(), PlanError> {
    let meta = d.object.meta();
    if let Some(ns) = &meta.namespace
        && !is_dns_label(ns)
    {
        return Err(d.invalid(format!("namespace {ns:?} is not a DNS label")));
    }
    match &d.object {
        Object::Namespace(_) if !is_dns_label(&meta.name) => {
            Err(d.invalid("metadata.name must be a DNS label (lowercase letters, digits, '-')"))
        }
        Object::Pod(p) => {
            if !is_dns_subdomain(&meta.name, MAX_POD_NAME) {
                return Err(d.invalid(format!(
                    "metadata.name must be a DNS subdomain of at most {MAX_POD_NAME} characters"
                )));
            }
            validate_spec(d, &p.spec, "spec")
        }
        Object::Deployment(dep) | Object::StatefulSet(dep) => {
            let replicas = dep.spec.replicas.unwrap_or(1);
            if replicas > MAX_REPLICAS {
                return Err(d.invalid(format!(
                    "spec.replicas {replicas} is more than the lab runs ({MAX_REPLICAS})"
                )));
            }
            if !is_dns_label(&meta.name) || meta.name.len() + 4 > MAX_POD_NAME {
                return Err(d.invalid("metadata.name must be a DNS label"));
            }
            validate_spec(d, &dep.spec.template.spec, "spec.template.spec")
        }
        Object::DaemonSet(ds) => {
            if !is_dns_label(&meta.name) {
                return Err(d.invalid("metadata.name must be a DNS label"));
            }
            validate_spec(d, &ds.spec.template.spec, "spec.template.spec")
        }
        Object::Service(s) => validate_service(d, &s.spec),
        _ if meta.name.is_empty() => Err(d.invalid("metadata.name is missing")),
        _ => Ok(()),
    }
}

fn validate_spec(d: &Declared, spec: &PodSpec, at: &str) -> Result<(), PlanError> {
    for (ci, c) in spec.containers.iter().enumerate() {
        for (pi, p) in c.ports.iter().enumerate() {
            let here = format!("{at}.containers[{ci}].ports[{pi}]");
            if p.container_port == 0 {
                return Err(d.invalid(format!("{here}.containerPort must be 1-65535")));
            }
            if !matches!(p.protocol(), "TCP" | "UDP" | "SCTP") {
                return Err(d.invalid(format!(
                    "{here}.protocol {:?} is not TCP, UDP or SCTP",
                    p.protocol()
                )));
            }
        }
    }
    Ok(())
}

fn validate_service(d: &Declared, spec: &ServiceSpec) -> Result<(), PlanError> {
    if !is_dns_label(&d.object.meta().name) {
        return Err(d.invalid("metadata.name must be a DNS label"));
    }
    if !super::service_ips::is_headless(spec) {
        super::service_ips::request(spec, &[]).map_err(|m| d.invalid(m))?;
    }
    for (i, p) in spec.ports.iter().enumerate() {
        if p.port == 0 {
            return Err(d.invalid(format!("spec.ports[{i}].port must be 1-65535")));
        }
        if !matches!(p.protocol(), "TCP" | "UDP" | "SCTP") {
            return Err(d.invalid(format!(
                "spec.ports[{i}].protocol {:?} is not TCP, UDP or SCTP",
                p.protocol()
            )));
        }
    }
    Ok(())
}
