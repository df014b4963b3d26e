//! What the agent does with each event: datastore changes update the object cache and,
//! when they compile, become the policy in force; interface changes rebind the policy
//! in force, and a change of the node's own addresses recompiles it (they decide what
//! a host endpoint sees as traffic to the host). Every outcome is published as
//! [`AgentStatus`].
//!
//! Workload interfaces (by prefix) are attached as soon as their link appears, with or
//! without an endpoint and whether or not any policy compiled: without an endpoint
//! entry the programs drop everything, so a new pod is never unfiltered.
//!
//! Bad input never replaces good policy and never holds up other changes: an object
//! that does not load, validate or suit the dataplane is refused alone
//! (`agent/selection.rs`: its last enforced version stays, or a never-enforced policy
//! denies what it selects), and the status names it with its reason. Only a compile
//! that fails as a whole (map capacity) leaves the previous generation in the maps;
//! interfaces are still attached (a new pod's fail closed). So does a generation the
//! maps cannot hold next to the one in force (the writer refuses it before writing
//! anything): the agent never exits on it, and retries at the next change.
//!
//! A switch leaves the previous generation live for [`GENERATION_GRACE`], then the
//! agent's timer ends it ([`Reconciler::retire`]).

use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::compile::selfcheck::{SampleSize, self_check};
use crate::compile::{CompileError, DataplaneSpec, Reuse};
use crate::dataplane::bindings::{Bindings, bind};
use crate::dataplane::interfaces::{NodeInterfaces, WorkloadPrefixes};
use crate::dataplane::{Dataplane, DataplaneError, GENERATION_GRACE};
use crate::datastore::DatastoreEvent;
use crate::datastore::status::AgentStatus;
use crate::eval::host::NodeAddresses;

use super::error::AgentError;
use super::flowlog::names::AddressBook;
use super::model::Model;

/// How long a failed end of a grace period waits before it is tried again.
const RETIRE_RETRY: Duration = GENERATION_GRACE;

pub struct Reconciler {
    /// This node's name; endpoints of other nodes are peers only.
    node: String,
    dataplane: Box<dyn Dataplane>,
    /// The objects, the version of each that is compiled, and their cluster.
    model: Model,
    /// The spec in force (last good revision).
    spec: Option<DataplaneSpec>,
    /// How the spec in force is bound to the interfaces, as last written (or, when
    /// `unwritten`, as attached while the maps refused it).
    bindings: Bindings,
    /// The maps refused the last write (why): the next rebind writes even unchanged
    /// bindings.
    unwritten: Option<String>,
    /// When the previous generation's grace period ends (after a switch).
    retire_at: Option<Instant>,
    /// Which interfaces are workload interfaces.
    workloads: WorkloadPrefixes,
    /// The node's own addresses the spec in force was compiled with.
    addresses: NodeAddresses,
    /// Whether the datastore's first snapshot arrived (before it, nothing compiles).
    synced: bool,
    /// Whether the cache or the node's addresses changed since the last compile.
    stale: bool,
    /// What could not be attached for the node as a whole (the cgroup program): keeps
    /// the agent not ready.
    node_failures: std::collections::BTreeMap<String, String>,
    /// Who each address is, under the spec in force (flow log names).
    address_book: AddressBook,
    /// Whether an entity it names (endpoint, host endpoint, Service, network set) may
    /// have changed since it was built: a policy change leaves it as it is (rebuilding
    /// it at 5k pods took ~15 ms after every write).
    address_book_stale: bool,
    /// The datastore revision the spec in force was compiled from, and the revision
    /// each generation slot holds (flow log lines say which policy version judged).
    spec_revision: u64,
    slot_revisions: [Option<u64>; 2],
    status: AgentStatus,
    publisher: watch::Sender<AgentStatus>,
    /// A deliberate compiler bug, applied to every compiled spec before its
    /// self-check (tests only: proves the check refuses a wrong generation).
    planted_bug: Option<fn(&mut DataplaneSpec)>,
    /// What the last compile left for the next (`compile::reuse`), told of every
    /// change of the model.
    reuse: Reuse,
}

impl Reconciler {
    pub fn new(
        node: String,
        dataplane: Box<dyn Dataplane>,
        publisher: watch::Sender<AgentStatus>,
    ) -> Self {
        Self {
            node,
            dataplane,
            model: Model::default(),
            spec: None,
            bindings: Bindings::default(),
            unwritten: None,
            retire_at: None,
            workloads: WorkloadPrefixes::default(),
            addresses: NodeAddresses::default(),
            synced: false,
            stale: true,
            node_failures: std::collections::BTreeMap::new(),
            address_book: AddressBook::default(),
            address_book_stale: true,
            spec_revision: 0,
            slot_revisions: [None, None],
            status: AgentStatus::default(),
            publisher,
            planted_bug: None,
            reuse: Reuse::default(),
        }
    }

    /// Plants a compiler bug: `bug` edits every compiled spec before the self-check.
    #[cfg(any(test, feature = "testkit"))]
    #[must_use]
    pub fn with_planted_bug(mut self, bug: fn(&mut DataplaneSpec)) -> Self {
        self.planted_bug = Some(bug);
        self
    }

    /// Which interfaces are workload interfaces (default: Calico's `cali`).
    #[must_use]
    pub fn with_workload_prefixes(mut self, workloads: WorkloadPrefixes) -> Self {
        self.workloads = workloads;
        self
    }

    /// Records that `what` (attached for the whole node) could not be attached: it is
    /// listed in `attach_failed` from now on.
    pub fn report_node_failure(&mut self, what: String, error: String) {
        self.node_failures.insert(what, error);
        self.status.attach_failed.extend(self.node_failures.clone());
        self.publish();
    }

    /// The spec in force, to name policies in flow events.
    pub fn spec(&self) -> Option<&DataplaneSpec> {
        self.spec.as_ref()
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The interfaces the spec in force is bound to.
    pub fn bindings(&self) -> &Bindings {
        &self.bindings
    }

    /// The enforcement side (for the stable policy ids it keeps).
    pub fn dataplane(&self) -> &dyn Dataplane {
        self.dataplane.as_ref()
    }

    /// Who each address is, under the spec in force.
    pub fn addresses(&self) -> &AddressBook {
        &self.address_book
    }

    /// The datastore revision generation slot `generation` holds, if known.
    pub fn slot_revision(&self, generation: u8) -> Option<u64> {
        self.slot_revisions
            .get(usize::from(generation))
            .copied()
            .flatten()
    }

    /// A datastore event: the cache follows it; a new revision is compiled (when its
    /// objects changed) and, if it compiles, enforced on the interfaces present.
    pub fn on_datastore(
        &mut self,
        event: DatastoreEvent,
        interfaces: &NodeInterfaces,
    ) -> Result<(), AgentError> {
        let started = Instant::now();
        self.follow_addresses(interfaces);
        let revision = match event {
            DatastoreEvent::Reset(snapshot) => {
                let revision = snapshot.revision;
                self.model.reset(snapshot);
                self.reuse.clear();
                self.address_book_stale = true;
                self.synced = true;
                self.stale = true;
                revision
            }
            DatastoreEvent::Changes { revision, changes } => {
                // Any change recompiles (and republishes what is refused), even one
                // that touched nothing the compiler reads.
                self.stale |= !changes.is_empty();
                let touched = self.model.apply(changes);
                self.reuse.follow(&touched);
                self.address_book_stale |= !touched.endpoints.is_empty() || touched.other;
                revision
            }
            DatastoreEvent::Unavailable { error } => {
                tracing::warn!(%error, "datastore unavailable; the policy in force stays");
                self.status.datastore_unavailable = Some(error.to_string());
                self.publish();
                return Ok(());
            }
        };
        self.status.datastore_unavailable = None;
        self.recompile(revision, started, interfaces);
        // Same objects as the revision compiled last: its outcome holds for this one.
        if self.status.error.is_none() && self.spec.is_some() {
            self.status.applied_revision = revision;
        }
        self.status.observed_revision = revision;
        self.publish();
        Ok(())
    }

    /// Compiles the cache when it (or the node's addresses) changed and enforces the
    /// result on the interfaces present; a refused compile keeps the spec in force,
    /// which is still bound to the interfaces present (new workload interfaces fail
    /// closed).
    fn recompile(&mut self, revision: u64, started: Instant, interfaces: &NodeInterfaces) {
        if !self.stale || !self.synced {
            self.rebind(interfaces);
            return;
        }
        self.stale = false;
        // Where a revision's time goes, for `RUST_LOG=enforcer::agent::reconcile=debug`.
        let model_us = started.elapsed().as_micros();
        // The wait for programs in the slot the write will take passes while we compile.
        self.dataplane.prepare();
        let compiling = Instant::now();
        match self.compile(revision) {
            Ok(spec) => {
                let compile_us = compiling.elapsed().as_micros();
                let writing = Instant::now();
                let previous = self.spec.replace(spec);
                let previous_revision = std::mem::replace(&mut self.spec_revision, revision);
                self.status.refused = self.model.refused();
                if let Err(error) = self.enforce(interfaces) {
                    // The maps cannot hold it next to the generation in force: nothing
                    // was switched, the previous spec stays in force.
                    tracing::error!(revision, %error, "refused revision; previous policy stays");
                    self.spec = previous;
                    self.spec_revision = previous_revision;
                    self.status.error = Some(error.to_string());
                    // Tried again at the next event (the maps may have room by then).
                    self.stale = true;
                    return;
                }
                let write_us = writing.elapsed().as_micros();
                let naming = Instant::now();
                if std::mem::take(&mut self.address_book_stale) {
                    self.address_book = AddressBook::from_cluster(self.model.cluster());
                }
                tracing::debug!(
                    revision,
                    model_us,
                    compile_us,
                    self_check_us = self.status.self_check.last_us,
                    write_us,
                    address_book_us = naming.elapsed().as_micros(),
                    "revision phases"
                );
                self.status.error = None;
                self.model.enforced();
                self.status.last_apply_us = started.elapsed().as_micros() as u64;
                self.status.applies += 1;
                tracing::info!(
                    revision,
                    objects = self.model.len(),
                    us = self.status.last_apply_us,
                    "applied"
                );
            }
            Err(error) => {
                if matches!(error, CompileError::SelfCheck { .. }) {
                    self.status.self_check.refused += 1;
                }
                tracing::error!(revision, %error, "refused revision; previous policy stays");
                self.status.error = Some(error.to_string());
                self.rebind(interfaces);
            }
        }
    }

    /// Takes the node's own addresses from `interfaces`; a change makes the next
    /// compile due.
    fn follow_addresses(&mut self, interfaces: &NodeInterfaces) {
        let addresses = interfaces.node_addresses();
        if addresses != self.addresses {
            tracing::info!(
                addresses = ?addresses.nets().collect::<Vec<_>>(),
                "node addresses changed"
            );
            self.addresses = addresses;
            self.stale = true;
        }
    }

    /// The interfaces or their addresses changed: a change of the node's addresses
    /// recompiles; otherwise, when an interface carrying (or due to carry) programs
    /// appeared, vanished or changed ifindex, the policy in force is rewritten for
    /// them.
    pub fn on_links(&mut self, interfaces: &NodeInterfaces) -> Result<(), AgentError> {
        self.follow_addresses(interfaces);
        if self.stale && self.synced {
            let revision = self.status.observed_revision;
            self.recompile(revision, Instant::now(), interfaces);
            self.publish();
            return Ok(());
        }
        self.rebind(interfaces);
        self.publish();
        Ok(())
    }

    /// Rewrites the policy in force when the bindings changed (or the maps refused
    /// the last write).
    fn rebind(&mut self, interfaces: &NodeInterfaces) {
        let bindings = bind(self.spec.as_ref(), interfaces, &self.workloads);
        if bindings == self.bindings && self.unwritten.is_none() {
            // Endpoints unchanged; an interface to guard may still have come or gone.
            self.attach_all(interfaces);
            return;
        }
        for (iface, binding) in bindings.iter() {
            if self.bindings.get(iface) != Some(binding) {
                if binding.endpoint.is_some() {
                    tracing::info!(
                        iface,
                        ifindex = binding.ifindex,
                        "endpoint interface appeared"
                    );
                } else {
                    tracing::info!(
                        iface,
                        ifindex = binding.ifindex,
                        "workload interface without an endpoint: dropping its traffic"
                    );
                }
            }
        }
        for (iface, _) in self.bindings.iter() {
            if bindings.get(iface).is_none() {
                tracing::info!(iface, "endpoint interface vanished");
            }
        }
        let refused_before = self.unwritten.clone();
        if let Err(error) = self.write(bindings, interfaces) {
            tracing::error!(%error, "the maps refused the policy for the interfaces present; the generation in force stays");
            self.status.error = Some(error.to_string());
        } else if refused_before.is_some() && self.status.error == refused_before {
            // Written at last: the refusal no longer holds.
            self.status.error = None;
        }
    }

    /// Compiles the model (each object at the version `Model` picked) for this node
    /// and self-checks the result (`compile::selfcheck`): a generation whose maps
    /// disagree with the policy is refused.
    fn compile(&mut self, revision: u64) -> Result<DataplaneSpec, CompileError> {
        let cluster = self.model.cluster();
        let mut spec = crate::compile::compile_reusing(
            cluster,
            Some(&self.node),
            &self.addresses,
            &mut self.reuse,
        )?;
        if let Some(bug) = self.planted_bug {
            bug(&mut spec);
        }
        let check = self_check(cluster, &spec, SampleSize::default(), revision);
        self.status.self_check.last_flows = check.flows as u64;
        self.status.self_check.last_us = check.elapsed.as_micros() as u64;
        tracing::debug!(
            flows = check.flows,
            legs = check.legs,
            us = self.status.self_check.last_us,
            "self-check"
        );
        if let Some(first) = check.disagreements.first() {
            for d in &check.disagreements {
                tracing::error!(disagreement = %d, "self-check: the compiled maps disagree with the policy");
            }
            return Err(CompileError::SelfCheck {
                flows: check.flows,
                disagreeing: check.disagreeing,
                first: first.to_string(),
            });
        }
        Ok(spec)
    }

    /// Writes the spec in force for the interfaces present, then attaches.
    fn enforce(&mut self, interfaces: &NodeInterfaces) -> Result<(), DataplaneError> {
        let bindings = bind(self.spec.as_ref(), interfaces, &self.workloads);
        self.write(bindings, interfaces)
    }

    /// Writes the spec in force as the next generation, then attaches. When the maps
    /// refuse it (the error returned), nothing was switched and the generation in
    /// force stays; the interfaces are attached all the same (one without an entry
    /// in the generation in force drops everything: fail closed).
    fn write(
        &mut self,
        bindings: Bindings,
        interfaces: &NodeInterfaces,
    ) -> Result<(), DataplaneError> {
        // Maps first: the first packet through a newly attached program already finds
        // its endpoint. Without a spec there is nothing to write: the programs find no
        // policy loaded and drop.
        let mut written = Ok(());
        if let Some(spec) = &self.spec {
            match self.dataplane.apply(spec, &bindings) {
                Ok(generation) => {
                    self.status.generation = generation;
                    if let Some(slot) = self.slot_revisions.get_mut(generation as usize) {
                        *slot = Some(self.spec_revision);
                    }
                    self.retire_at = Some(Instant::now() + GENERATION_GRACE);
                }
                Err(error) => written = Err(error),
            }
        }
        self.unwritten = written.as_ref().err().map(ToString::to_string);
        let gone: Vec<String> = self
            .dataplane
            .attached()
            .keys()
            .filter(|name| bindings.get(name).is_none())
            .cloned()
            .collect();
        for name in gone {
            self.dataplane.detach(&name);
        }
        self.bindings = bindings;
        self.attach_all(interfaces);
        written
    }

    /// When the previous generation's grace period ends, if one is running.
    pub fn retire_at(&self) -> Option<Instant> {
        self.retire_at
    }

    /// Ends the previous generation's grace period: the second legs of flows that
    /// began under it are judged by the generation in force from now on. A failure is
    /// retried after another grace period. Then, after a start, the idle slot gets a
    /// copy of the generation in force ([`Dataplane::fill_idle`]).
    pub fn retire(&mut self) {
        self.retire_at = None;
        if let Err(error) = self.dataplane.retire_previous() {
            tracing::error!(%error, "ending the previous generation's grace period; retrying");
            self.retire_at = Some(Instant::now() + RETIRE_RETRY);
            return;
        }
        // The idle slot is settled now: after a start, it gets a copy of the active
        // one, so that the next change writes a diff.
        let filling = Instant::now();
        match self.dataplane.fill_idle() {
            Ok(true) => tracing::debug!(
                us = filling.elapsed().as_micros(),
                "idle generation slot filled with the active one's content"
            ),
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(%error, "filling the idle generation slot; the next change writes it in full");
            }
        }
    }

    /// Attaches the programs wherever the bindings want them and they are not yet
    /// (a no-op for interfaces attached already), and reports what failed: an
    /// interface without its programs (not ready; retried by [`Self::on_verify`]),
    /// or a host interface judged by TC only (XDP did not attach). Every other
    /// interface gets the guard (Service traffic leaving the node).
    fn attach_all(&mut self, interfaces: &NodeInterfaces) {
        let mut failed = self.node_failures.clone();
        for (iface, error) in self.dataplane.guard(interfaces, &self.workloads) {
            tracing::warn!(iface, %error, "guard attach failed");
            failed.insert(format!("{iface} (guard)"), error.to_string());
        }
        let mut xdp = std::collections::BTreeMap::new();
        for (iface, binding) in self.bindings.iter() {
            if let Err(error) = self.dataplane.attach(iface, binding) {
                // The interface may have vanished between its event and the attach
                // (its removal is the next link event); anything else stays reported
                // until an attach succeeds.
                let attached = self.dataplane.attached().get(iface) == Some(&binding.ifindex);
                if attached {
                    tracing::warn!(iface, %error, "XDP did not attach; TC judges every packet");
                    xdp.insert(iface.to_owned(), error.to_string());
                } else {
                    tracing::warn!(iface, %error, "attach failed");
                    failed.insert(iface.to_owned(), error.to_string());
                }
            }
        }
        // An upgrade between map layouts ends once every interface runs the new
        // programs.
        self.dataplane.settle();
        // XDP problems found earlier stay until verification attaches XDP.
        for (iface, error) in &self.status.xdp_unavailable {
            if self.bindings.get(iface).is_some() {
                xdp.entry(iface.clone()).or_insert_with(|| error.clone());
            }
        }
        self.status.attach_failed = failed;
        self.status.xdp_unavailable = xdp;
        let attached = self.dataplane.attached();
        self.status.endpoints_attached = self
            .bindings
            .iter()
            .filter(|(iface, b)| b.endpoint.is_some() && attached.contains_key(*iface))
            .count();
        self.status.interfaces_without_endpoint = self
            .bindings
            .unknown_workloads()
            .map(str::to_owned)
            .collect();
    }

    /// Checks that the programs are still attached as they should be (a pin removed, a
    /// program detached or moved behind another), repairs what it can, and retries
    /// interfaces whose attach failed: on a timer, and when a pin is removed.
    pub fn on_verify(&mut self, interfaces: &NodeInterfaces) {
        let verification = self.dataplane.verify();
        for repair in &verification.repairs {
            tracing::warn!(%repair, "attachment repaired");
        }
        self.status.attach_repairs += verification.repairs.len() as u64;
        self.status.xdp_unavailable = verification.xdp_missing.into_iter().collect();
        self.attach_all(interfaces);
        self.publish();
    }

    fn publish(&self) {
        // `send_replace` works without subscribers: a status nobody reads is no error.
        self.publisher.send_replace(self.status.clone());
    }
}
