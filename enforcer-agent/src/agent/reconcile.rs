//! What the agent does with each event: datastore changes update the object cache and,
//! when they compile, become the policy in force; interface changes rebind the policy
//! in force. Every outcome is published as [`AgentStatus`].
//!
//! Bad input never replaces good policy: a revision that fails to load, validate or
//! compile leaves the previous generation in the maps, and the status says why.

use std::time::Instant;

use tokio::sync::watch;

use crate::compile::{CompileError, DataplaneSpec};
use crate::dataplane::Dataplane;
use crate::dataplane::bindings::{Bindings, Links, bind};
use crate::datastore::DatastoreEvent;
use crate::datastore::status::AgentStatus;
use crate::policy::PolicyError;

use super::cache::{ObjectCache, Unreadable};
use super::error::AgentError;
use super::flowlog::names::AddressBook;

/// Why a revision is refused (the previous policy stays in force).
#[derive(Debug, thiserror::Error)]
pub enum RevisionError {
    #[error(transparent)]
    Unreadable(#[from] Unreadable),
    #[error(transparent)]
    Policy(#[from] Box<PolicyError>),
    #[error(transparent)]
    Compile(#[from] CompileError),
}

pub struct Reconciler {
    /// This node's name; endpoints of other nodes are peers only.
    node: String,
    dataplane: Box<dyn Dataplane>,
    cache: ObjectCache,
    /// The spec in force (last good revision).
    spec: Option<DataplaneSpec>,
    /// How the spec in force is bound to the interfaces, as last written.
    bindings: Bindings,
    /// Whether the cache changed since the last compile.
    stale: bool,
    /// Who each address is, under the spec in force (flow log names).
    addresses: AddressBook,
    /// The datastore revision the spec in force was compiled from, and the revision
    /// each generation slot holds (flow log lines say which policy version judged).
    spec_revision: u64,
    slot_revisions: [Option<u64>; 2],
    status: AgentStatus,
    publisher: watch::Sender<AgentStatus>,
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
            cache: ObjectCache::default(),
            spec: None,
            bindings: Bindings::default(),
            stale: true,
            addresses: AddressBook::default(),
            spec_revision: 0,
            slot_revisions: [None, None],
            status: AgentStatus::default(),
            publisher,
        }
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
        &self.addresses
    }

    /// The datastore revision generation slot `generation` holds, if known.
    pub fn slot_revision(&self, generation: u8) -> Option<u64> {
        self.slot_revisions
            .get(usize::from(generation))
            .copied()
            .flatten()
    }

    /// A datastore event: the cache follows it; a new revision is compiled (when its
    /// objects changed) and, if it compiles, enforced on the interfaces in `links`.
    pub fn on_datastore(&mut self, event: DatastoreEvent, links: &Links) -> Result<(), AgentError> {
        let started = Instant::now();
        let revision = match event {
            DatastoreEvent::Reset(snapshot) => {
                let revision = snapshot.revision;
                self.cache.reset(snapshot);
                self.stale = true;
                revision
            }
            DatastoreEvent::Changes { revision, changes } => {
                self.stale |= !changes.is_empty();
                self.cache.apply(changes);
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
        if self.stale {
            self.stale = false;
            match self.compile() {
                Ok((spec, addresses)) => {
                    self.spec = Some(spec);
                    self.addresses = addresses;
                    self.spec_revision = revision;
                    self.status.error = None;
                    self.enforce(links)?;
                    self.status.last_apply_us = started.elapsed().as_micros() as u64;
                    tracing::info!(
                        revision,
                        objects = self.cache.len(),
                        us = self.status.last_apply_us,
                        "applied"
                    );
                }
                Err(error) => {
                    tracing::error!(revision, %error, "refused revision; previous policy stays");
                    self.status.error = Some(error.to_string());
                }
            }
        }
        // Same objects as the revision compiled last: its outcome holds for this one.
        if self.status.error.is_none() && self.spec.is_some() {
            self.status.applied_revision = revision;
        }
        self.status.observed_revision = revision;
        self.publish();
        Ok(())
    }

    /// The interfaces changed: when an endpoint's interface appeared, vanished or
    /// changed ifindex, the policy in force is rewritten for them.
    pub fn on_links(&mut self, links: &Links) -> Result<(), AgentError> {
        let Some(spec) = &self.spec else {
            return Ok(());
        };
        let bindings = bind(spec, links);
        if bindings == self.bindings {
            return Ok(());
        }
        for (iface, binding) in bindings.iter() {
            if self.bindings.get(iface) != Some(binding) {
                tracing::info!(
                    iface,
                    ifindex = binding.ifindex,
                    "endpoint interface appeared"
                );
            }
        }
        for (iface, _) in self.bindings.iter() {
            if bindings.get(iface).is_none() {
                tracing::info!(iface, "endpoint interface vanished");
            }
        }
        self.write(bindings)?;
        self.publish();
        Ok(())
    }

    /// Loads, validates and compiles the cached objects for this node; with the
    /// addresses the flow log names.
    fn compile(&self) -> Result<(DataplaneSpec, AddressBook), RevisionError> {
        let objects = self.cache.objects()?;
        let (cluster, warnings) =
            crate::policy::Cluster::from_objects(&objects).map_err(Box::new)?;
        for warning in &warnings {
            tracing::warn!(%warning, "policy warning");
        }
        let spec = crate::compile::compile_for_node(&cluster, Some(&self.node))?;
        Ok((spec, AddressBook::from_cluster(&cluster)))
    }

    /// Writes the spec in force for the interfaces present, then attaches.
    fn enforce(&mut self, links: &Links) -> Result<(), AgentError> {
        let Some(spec) = &self.spec else {
            return Ok(());
        };
        let bindings = bind(spec, links);
        self.write(bindings)
    }

    fn write(&mut self, bindings: Bindings) -> Result<(), AgentError> {
        let Some(spec) = &self.spec else {
            return Ok(());
        };
        // Maps first: the first packet through a newly attached program already finds
        // its endpoint.
        self.status.generation = self.dataplane.apply(spec, &bindings)?;
        if let Some(slot) = self.slot_revisions.get_mut(self.status.generation as usize) {
            *slot = Some(self.spec_revision);
        }
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
        for (iface, binding) in bindings.iter() {
            if let Err(error) = self.dataplane.attach(iface, binding) {
                // The interface may have vanished between its event and the attach;
                // its removal is the next link event. Anything else is reported.
                tracing::warn!(iface, %error, "attach failed");
            }
        }
        self.status.endpoints_attached = self.dataplane.attached().len();
        self.bindings = bindings;
        Ok(())
    }

    fn publish(&self) {
        // `send_replace` works without subscribers: a status nobody reads is no error.
        self.publisher.send_replace(self.status.clone());
    }
}
