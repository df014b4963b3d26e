//! The dataplane: the BPF object, its maps and programs on this node, behind the
//! [`Dataplane`] trait the agent enforces through (a test drives the agent with a
//! recording double instead of BPF).

pub mod bindings;
pub mod bpf;
pub mod bpf_log;
pub mod content;
pub mod failsafe;
pub mod loader;
pub mod names;
pub mod object;
pub mod policy_ids;
pub mod rule_counters;
pub mod writer;

use std::collections::BTreeMap;

use crate::compile::DataplaneSpec;
use crate::model::PolicyName;

use bindings::{Binding, Bindings};

/// What the agent needs from a dataplane.
pub trait Dataplane: Send {
    /// Writes `spec`, as bound to the interfaces present, as the next policy
    /// generation and switches new flows to it atomically; returns the generation now
    /// live. The agent applies before it attaches, so the first packet through a new
    /// attachment already finds its endpoint.
    fn apply(&mut self, spec: &DataplaneSpec, bindings: &Bindings) -> Result<u32, DataplaneError>;
    /// Attaches the programs for a bound interface (host or workload programs), unless
    /// they are attached to that ifindex already.
    fn attach(&mut self, iface: &str, binding: &Binding) -> Result<(), DataplaneError>;
    /// Stops tracking an interface that is gone or carries no endpoint any more, and
    /// removes what keeps its programs attached.
    fn detach(&mut self, iface: &str);
    /// Interfaces carrying programs → the ifindex they had when attached.
    fn attached(&self) -> &BTreeMap<String, u32>;
    /// The policy that `id`, as the maps' verdicts, events and rule counters carry it,
    /// names while a live generation uses it. A dataplane that writes the spec's
    /// policy indices as they are names them by the spec in force.
    fn policy_name(&self, id: u32, spec: &DataplaneSpec) -> Option<PolicyName> {
        spec.policies.get(id as usize).cloned()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error(transparent)]
    Loader(#[from] loader::LoaderError),
    #[error(transparent)]
    Writer(#[from] writer::WriterError),
    #[error(transparent)]
    BpfLog(#[from] bpf_log::BpfLogError),
}
