//! The typed object model: what users write in YAML, before any compilation.
//!
//! - [`workload`]: the Kubernetes workload kinds; [`endpoints`]: `EndpointSlice`,
//!   `Endpoints` and how a Service resolves to its backends; [`k8s`] and [`calico`]:
//!   the policy kinds; [`Object`] (`object.rs`): any of them, and where it was read
//!   from;
//! - `names.rs`: [`ObjectId`] and [`PolicyName`], the names the whole pipeline carries;
//! - `load.rs`: files and text → [`Loaded`] objects, through the located YAML tree and
//!   deserializer (`located/`) and the per-document reader (`document.rs`); errors
//!   (`error.rs`) name file, object, field path, line and column, with a "did you
//!   mean" from `suggest.rs`; `locate.rs` finds a field's line again later.

pub mod admin;
pub mod calico;
mod cidr;
mod document;
pub mod endpoints;
mod error;
pub mod k8s;
pub(crate) mod load;
pub(crate) mod locate;
mod located;
mod names;
pub mod node;
mod object;
pub(crate) mod suggest;
pub mod workload;

pub(crate) use cidr::parse_cidr;
pub use endpoints::{EndpointSlice, Endpoints};
pub use error::{LoadError, ObjectError, ObjectProblem};
pub use load::{
    Skipped, UNUSED_KINDS, load_manifest, load_manifests, load_paths, load_str, load_value,
};
pub use located::tree::Position;
pub(crate) use names::{
    KIND_ADMIN_NETWORK_POLICY, KIND_BASELINE_ADMIN_NETWORK_POLICY, KIND_CALICO_NETWORK_POLICY,
    KIND_GLOBAL_NETWORK_POLICY, KIND_K8S_NETWORK_POLICY,
};
pub use names::{ObjectId, PolicyName};
pub use object::{Loaded, Object, Source};
pub use workload::{Deployment, Labels, Namespace, ObjectMeta, Pod, Service};
