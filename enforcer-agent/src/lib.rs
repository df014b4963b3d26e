//! enforcer: Calico's policy model enforced by eBPF.
//!
//! Pipeline: [`model`] (YAML → typed objects) → [`policy`] (the unified, ordered Calico
//! model; Kubernetes policies converted as Calico does) → [`compile`] (classes and
//! verdict entries, see `docs/architecture.md`) → [`dataplane`] (BPF maps and programs).
//! [`eval`] is the reference evaluator, the readable spec the compiler is tested
//! against. [`cluster`] plans the cluster a set of objects describes (pods,
//! addresses, nodes, DNS, Services); [`lab`] runs such a plan in network namespaces.

pub mod agent;
pub mod check;
pub mod cluster;
pub mod compile;
pub mod connectivity;
pub mod dataplane;
pub mod datastore;
pub mod eval;
pub mod explain;
pub mod flows;
pub mod health;
pub mod inspect;
pub mod lab;
pub mod matrix;
pub mod model;
pub mod offline;
pub mod policy;
pub mod selector;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
