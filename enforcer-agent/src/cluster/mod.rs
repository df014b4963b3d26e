//! From declared objects to the cluster as it would run: implied Namespaces and the
//! cluster DNS ([`implied`]), Deployments expanded to pods `<deployment>-<i>`, pods
//! placed on nodes ([`nodes`]) with addresses planned and Service `ClusterIPs`
//! allocated ([`addresses`]; one per family a Service asks for: [`service_ips`]),
//! Services resolved to backends ([`services`]) and the names the cluster DNS serves
//! ([`dns`]).
//!
//! [`plan()`] is a pure function: declared objects and an [`Allocation`] (what is already
//! handed out) in, a [`ClusterPlan`] and the new allocation out. It knows nothing of how
//! the cluster is run: the lab turns a plan into network namespaces and processes and
//! persists the allocation; `check`, `matrix` and `explain -f` plan from files with an
//! empty allocation, so they see the pods, addresses and ports a lab brought up from
//! the same files would have.

pub mod addresses;
pub mod dns;
pub mod error;
pub mod implied;
pub mod nodes;
pub mod objects;
pub mod plan;
pub mod service_ips;
pub mod services;

pub use addresses::{Allocation, PodAddresses};
pub use error::PlanError;
pub use nodes::{Node, Placement};
pub use objects::Declared;
pub use plan::{ClusterPlan, PlannedPod, declare, plan, pod_key};

#[cfg(test)]
mod tests;
