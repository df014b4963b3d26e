//! A Kubernetes cluster made of network namespaces, for trying and testing policy.
//!
//! A node netns per node (`enf-<lab>-node` with one node, `enf-<lab>-nodeK` with
//! several: the pods' host-side veths, routes, Service NAT and the node's agent), one
//! netns per pod (`enf-<lab>-<namespace>.<pod>`) joined to its node Calico style (see
//! [`netns`]), and the network between the nodes and the external client
//! ([`fabric`], shaped by [`topology`]). What runs where comes from the cluster plan
//! ([`crate::cluster`]); the lab runs it: each pod runs a [`responder`] on its
//! declared ports, the DNS pod the lab's [`dns`] server behind the `kube-dns`
//! Service (198.19.0.10). Objects are written to a [`crate::datastore::FileDatastore`]
//! the way the API server and kubelet would (pods with their addresses and node),
//! which is what the agent watches.
//!
//! [`Lab`] is the API behind `enforcer lab`: [`Lab::up`], [`Lab::apply`] and
//! [`Lab::delete`] ([`reconcile`]), [`Lab::get_pods`] and [`Lab::exec`] ([`facade`]),
//! [`Lab::probe`] ([`probe`]), [`Lab::down`] ([`teardown`]). Everything a lab creates
//! is named after the lab, so `down` finds it all again from netns names and command
//! lines even when the state file is gone.

pub mod agent;
pub mod command;
pub mod dns;
pub mod error;
pub mod exec;
pub mod fabric;
pub mod facade;
pub mod host;
pub mod netns;
pub mod paths;
pub mod probe;
pub mod prober;
pub mod process;
pub mod program;
pub mod reconcile;
pub mod responder;
pub mod services;
pub mod state;
pub mod teardown;
pub mod topology;

pub use error::LabError;
pub use facade::{Lab, NodeInfo, PodInfo, UpOptions};
pub use paths::{LabName, LabPaths, NameError};
pub use reconcile::ChangeReport;
pub use teardown::DownReport;
pub use topology::{Encap, Topology};
