//! The BPF dataplane: the embedded object loaded with its maps pinned, the failsafe
//! ports written, policy generations written by [`GenerationWriter`], and the programs
//! attached through pinned links ([`LoadedDataplane`]).

use std::collections::BTreeMap;
use std::path::Path;

use aya::maps::{MapData, RingBuf};

use crate::compile::DataplaneSpec;

use super::bindings::{Binding, Bindings};
use super::bpf_log::BpfLog;
use super::content::GenerationContent;
use super::failsafe::Failsafe;
use super::loader::{LoadedDataplane, Variant};
use super::writer::GenerationWriter;
use super::{Dataplane, DataplaneError, Verification};

pub struct BpfDataplane {
    loaded: LoadedDataplane,
    writer: GenerationWriter,
}

impl BpfDataplane {
    /// Loads the object, reusing (or creating) the pins under `pin_dir`, with the
    /// programs of `variant`, and writes the configuration that is not policy: failsafe
    /// ports, event flags.
    pub fn load(
        object: &[u8],
        pin_dir: &Path,
        variant: Variant,
        failsafe: &Failsafe,
        events_on_deny: bool,
    ) -> Result<Self, DataplaneError> {
        let mut loaded = LoadedDataplane::load(object, pin_dir, variant)?;
        super::failsafe::write(&mut loaded.ebpf, failsafe)?;
        let mut writer = GenerationWriter::new(&mut loaded.ebpf)?;
        // The flags are this agent's configuration: a restart without an option
        // clears what the previous agent set.
        let flags = if events_on_deny {
            enforcer_common::CONFIG_F_EVENT_ON_DENY
        } else {
            0
        };
        writer.set_flags(flags)?;
        Ok(Self { loaded, writer })
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
}

impl Dataplane for BpfDataplane {
    fn apply(&mut self, spec: &DataplaneSpec, bindings: &Bindings) -> Result<u32, DataplaneError> {
        let content = GenerationContent::from_bindings(spec, bindings);
        Ok(self.writer.apply(content)?.generation)
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
}
