//! The BPF dataplane: the embedded object loaded with its maps pinned, the failsafe
//! ports written, policy generations written by [`GenerationWriter`] (with stable
//! policy ids, see [`PolicyIds`]), and the programs attached through pinned links
//! ([`LoadedDataplane`]).

use std::collections::BTreeMap;
use std::path::Path;

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuHashMap, RingBuf};

use enforcer_common::{
    MAP_POLICY_NAMES, MAP_RULE_COUNTERS, PolicyNameEntry, RuleCounter, RuleCounterKey,
};

use crate::compile::DataplaneSpec;
use crate::model::PolicyName;

use super::attach::AttachMode;
use super::bindings::{Binding, Bindings};
use super::bpf_log::BpfLog;
use super::content::GenerationContent;
use super::failsafe::Failsafe;
use super::interfaces::{NodeInterfaces, WorkloadPrefixes};
use super::loader::{LoadedDataplane, Variant};
use super::policy_ids::PolicyIds;
use super::writer::{GenerationWriter, WriterError};
use super::{Dataplane, DataplaneError, Verification};

pub struct BpfDataplane {
    loaded: LoadedDataplane,
    writer: GenerationWriter,
    policy_ids: PolicyIds,
    policy_names: BpfHashMap<MapData, u32, PolicyNameEntry>,
    rule_counters: PerCpuHashMap<MapData, RuleCounterKey, RuleCounter>,
}

impl BpfDataplane {
    /// Loads the object, reusing (or creating) the pins under `pin_dir`, with the
    /// programs of `variant`, and writes the configuration that is not policy: failsafe
    /// ports, `Config::flags` (which flow events the programs emit, `CONFIG_F_EVENT_ON_*`).
    pub fn load(
        object: &[u8],
        pin_dir: &Path,
        variant: Variant,
        failsafe: &Failsafe,
        flags: u32,
        attach: AttachMode,
    ) -> Result<Self, DataplaneError> {
        let mut loaded = LoadedDataplane::load(object, pin_dir, variant)?;
        loaded.set_attach_mode(attach);
        super::failsafe::write(&mut loaded.ebpf, failsafe)?;
        let mut writer = GenerationWriter::new(&mut loaded.ebpf)?;
        // The flags are this agent's configuration: a restart without an option
        // clears what the previous agent set.
        writer.set_flags(flags)?;
        let cookie =
            super::netns::cookie().map_err(|source| DataplaneError::NetnsCookie { source })?;
        writer.set_netns_cookie(cookie)?;
        let policy_names: BpfHashMap<MapData, u32, PolicyNameEntry> =
            super::writer::take(&mut loaded.ebpf, MAP_POLICY_NAMES)?;
        let rule_counters = super::writer::take(&mut loaded.ebpf, MAP_RULE_COUNTERS)?;
        let policy_ids = PolicyIds::restore(policy_names.iter().filter_map(Result::ok));
        Ok(Self {
            loaded,
            writer,
            policy_ids,
            policy_names,
            rule_counters,
        })
    }

    /// Attaches the cgroup program (the deferred egress of Service traffic delivered to
    /// the node's own sockets) to the cgroup v2 directory `cgroup`.
    pub fn attach_cgroup(&mut self, cgroup: &Path) -> Result<(), DataplaneError> {
        Ok(self.loaded.attach_cgroup(cgroup)?)
    }

    /// Starts the opt-in BPF debug log of verdicts: the reader forwarding records to
    /// `tracing`, then the programs' switch. Only the [`Variant::DebugLog`] programs
    /// write records. Keep the returned reader alive.
    pub fn start_debug_log(&mut self) -> Result<BpfLog, DataplaneError> {
        let log = BpfLog::start(&mut self.loaded.ebpf)?;
        super::bpf_log::set_enabled(&mut self.writer, true)?;
        Ok(log)
    }

    /// The flow-event ring buffer (`ENF_EVENTS`), taken out of the object once.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, DataplaneError> {
        Ok(super::writer::take(
            &mut self.loaded.ebpf,
            enforcer_common::MAP_EVENTS,
        )?)
    }

    /// The flow reports (`ENF_FLOW_REPORTS`), taken out of the object once: the flow
    /// log reads the counts of flows whose events the programs held back.
    pub fn take_flow_reports(
        &mut self,
    ) -> Result<
        PerCpuHashMap<MapData, enforcer_common::FlowReportKey, enforcer_common::FlowReport>,
        DataplaneError,
    > {
        Ok(super::writer::take(
            &mut self.loaded.ebpf,
            enforcer_common::MAP_FLOW_REPORTS,
        )?)
    }

    /// Writes the names of new ids before any verdict can name them.
    fn write_names(&mut self, ids: &[u32]) -> Result<(), WriterError> {
        for &id in ids {
            if let Some(entry) = self.policy_ids.entry(id) {
                self.policy_names
                    .insert(id, entry, 0)
                    .map_err(|source| WriterError::Map {
                        map: MAP_POLICY_NAMES,
                        op: "insert",
                        source,
                    })?;
            }
        }
        Ok(())
    }

    /// Forgets retired ids: their names, and their counters (an id is never reused, so
    /// nothing would read them again).
    fn retire(&mut self, retired: &[u32]) {
        if retired.is_empty() {
            return;
        }
        for id in retired {
            let _ = self.policy_names.remove(id);
        }
        let stale: Vec<RuleCounterKey> = self
            .rule_counters
            .keys()
            .filter_map(Result::ok)
            .filter(|k| retired.contains(&k.policy))
            .collect();
        for key in stale {
            let _ = self.rule_counters.remove(&key);
        }
    }
}

impl Dataplane for BpfDataplane {
    fn apply(&mut self, spec: &DataplaneSpec, bindings: &Bindings) -> Result<u32, DataplaneError> {
        let assigned = self.policy_ids.assign_used(
            &spec.policies,
            &spec.policy_fingerprints,
            &spec.referenced_policies(),
        );
        self.write_names(&assigned.added)?;
        let mut content = GenerationContent::from_bindings(spec, bindings);
        content.renumber_policies(&assigned.ids);
        let generation = self.writer.apply(content)?.generation;
        let retired = self.policy_ids.written(generation, &assigned.ids);
        self.retire(&retired);
        // An upgrade: the policy is in the new maps, the flows go there too before
        // the first interface moves to the new programs.
        self.loaded.copy_flows_before_swap();
        Ok(generation)
    }

    fn retire_previous(&mut self) -> Result<bool, DataplaneError> {
        Ok(self.writer.retire_previous()?)
    }

    fn fill_idle(&mut self) -> Result<bool, DataplaneError> {
        let active = self.writer.config().active_gen;
        if !self.writer.fill_idle()? {
            return Ok(false);
        }
        // The idle slot now holds the active one's policies, under the same ids.
        let retired = self.policy_ids.copied(active, 1 - active);
        self.retire(&retired);
        Ok(true)
    }

    fn prepare(&mut self) {
        if let Err(error) = self.writer.prepare() {
            tracing::warn!(%error, "starting the wait for programs in the slot to rewrite; the write will wait itself");
        }
    }

    fn settle(&mut self) {
        if let Err(error) = self.loaded.finish_upgrade() {
            tracing::error!(%error, "finishing the upgrade between map layouts");
        }
    }

    fn attach(&mut self, iface: &str, binding: &Binding) -> Result<(), DataplaneError> {
        if binding.host {
            self.loaded.attach_host(iface, binding.ifindex)?;
        } else {
            self.loaded.attach(iface, binding.ifindex)?;
        }
        Ok(())
    }

    fn detach(&mut self, iface: &str) {
        self.loaded.forget(iface);
    }

    fn attached(&self) -> &BTreeMap<String, u32> {
        self.loaded.attached()
    }

    fn verify(&mut self) -> Verification {
        let (repairs, xdp_missing) = self.loaded.verify();
        Verification {
            repairs,
            xdp_missing,
        }
    }

    fn guard(
        &mut self,
        interfaces: &NodeInterfaces,
        workloads: &WorkloadPrefixes,
    ) -> Vec<(String, DataplaneError)> {
        let guarded = |name: &str| name != "lo" && !workloads.matches(name);
        let links = &interfaces.links;
        let gone: Vec<String> = self
            .loaded
            .guarded()
            .keys()
            .filter(|name| !(links.contains_key(*name) && guarded(name)))
            .cloned()
            .collect();
        for name in gone {
            self.loaded.unguard(&name);
        }
        let mut failed = Vec::new();
        for (name, &ifindex) in links {
            if guarded(name)
                && let Err(e) = self.loaded.attach_guard(name, ifindex)
            {
                failed.push((name.clone(), e.into()));
            }
        }
        failed
    }

    fn policy_name(&self, id: u32, _spec: &DataplaneSpec) -> Option<PolicyName> {
        self.policy_ids.name(id).cloned()
    }
}
