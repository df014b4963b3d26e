//! The dataplane: the BPF object, its maps and programs on this node, behind the
//! [`Dataplane`] trait the agent enforces through (a test drives the agent with a
//! recording double instead of BPF).

pub mod attach;
pub mod bindings;
pub mod bpf;
pub mod bpf_log;
pub mod cgroup;
pub mod content;
pub mod detach;
pub mod failsafe;
pub mod guard;
pub mod hook;
pub mod interfaces;
pub mod layout;
pub mod load_error;
pub mod loader;
pub mod names;
pub mod netns;
pub mod object;
pub mod policy_ids;
pub mod rcu;
pub mod rule_counters;
pub mod verify;
pub mod writer;

use std::collections::BTreeMap;

use crate::compile::DataplaneSpec;
use crate::model::PolicyName;

use bindings::{Binding, Bindings};
use interfaces::{NodeInterfaces, WorkloadPrefixes};

/// How long the previous generation keeps judging the second legs of flows whose
/// first leg it judged. The second leg of a flow is the same packet at the
/// destination's hook, microseconds later: the grace only has to outlast packets in
/// flight when the generation switched.
pub const GENERATION_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

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
    /// Ends the previous generation's grace period (the agent's timer, a
    /// [`GENERATION_GRACE`] after each switch): the second legs of flows that began
    /// under it are judged by the generation in force from then on. Whether there was
    /// a previous generation.
    fn retire_previous(&mut self) -> Result<bool, DataplaneError> {
        Ok(false)
    }
    /// Makes the idle generation slot hold what the active one holds, when what it
    /// holds is unknown (after a start), so that the next change writes a diff; the
    /// agent calls it when a grace period ends. Whether it wrote.
    fn fill_idle(&mut self) -> Result<bool, DataplaneError> {
        Ok(false)
    }
    /// A compile is starting: the wait the next [`apply`](Self::apply) would begin
    /// with (for the programs still judging in the slot it rewrites) can start now and
    /// pass while the agent compiles. A failure is the next `apply`'s to report.
    fn prepare(&mut self) {}
    /// Called after every interface was attached for an applied spec: finishes what
    /// needed all of them (an upgrade between map layouts).
    fn settle(&mut self) {}
    /// Checks that the attached programs are still where they should be and repairs
    /// what it can (`verify.rs`).
    fn verify(&mut self) -> Verification {
        Verification::default()
    }
    /// Puts the guard (the deferred egress of Service traffic leaving the node) on every
    /// interface present that is not a workload's and not `lo`, and drops the guards
    /// of interfaces that are gone. Returns the interfaces it could not guard.
    fn guard(
        &mut self,
        _interfaces: &NodeInterfaces,
        _workloads: &WorkloadPrefixes,
    ) -> Vec<(String, DataplaneError)> {
        Vec::new()
    }
    /// The policy that `id`, as the maps' verdicts, events and rule counters carry it,
    /// names while a live generation uses it. A dataplane that writes the spec's
    /// policy indices as they are names them by the spec in force.
    fn policy_name(&self, id: u32, spec: &DataplaneSpec) -> Option<PolicyName> {
        spec.policies.get(id as usize).map(|name| (**name).clone())
    }
}

/// What [`Dataplane::verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verification {
    /// A line per repair made (a pin restored, a program attached first again).
    pub repairs: Vec<String>,
    /// Host interfaces judged by their TC programs only: XDP does not attach (why).
    pub xdp_missing: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("reading this network namespace's cookie: {source}")]
    NetnsCookie {
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Loader(#[from] loader::LoaderError),
    #[error(transparent)]
    Writer(#[from] writer::WriterError),
    #[error(transparent)]
    BpfLog(#[from] bpf_log::BpfLogError),
}
