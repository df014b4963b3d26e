//! `enforcer agent`: the node agent.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::Args;

use enforcer::agent::{AgentOptions, run};

/// Run the node agent: watch a datastore directory, compile the policy set into BPF
/// maps, and attach the programs to this node's endpoint interfaces.
///
/// Examples:
///   enforcer agent --node node1 --datastore /var/lib/enforcer/datastore
///   enforcer agent --node node1 --datastore ./ds --bpffs /sys/fs/bpf/enforcer/node1
#[derive(Args, Debug)]
pub struct AgentArgs {
    /// This node's name.
    #[arg(long, default_value = "node1")]
    pub node: String,
    /// Datastore directory (see `datastore.rs`: objects/, revision, status.json).
    #[arg(long)]
    pub datastore: PathBuf,
    /// bpffs directory for this node's pinned maps and links
    /// (default: /sys/fs/bpf/enforcer/<node>).
    #[arg(long)]
    pub bpffs: Option<PathBuf>,
    /// Datastore poll interval in milliseconds.
    #[arg(long, default_value_t = 10)]
    pub poll_ms: u64,
    /// Emit a flow event for every denied new flow.
    #[arg(long)]
    pub events_on_deny: bool,
    /// Failsafe inbound ports of host interfaces, Calico's spelling
    /// (`tcp:22,udp:68,...`; `none` disables). Default: Calico's.
    #[arg(long)]
    pub failsafe_inbound: Option<String>,
    /// Failsafe outbound ports (`udp:53,...`; `none` disables). Default: Calico's.
    #[arg(long)]
    pub failsafe_outbound: Option<String>,
    /// Flow log file (JSON lines; default: <datastore>/flows.jsonl).
    #[arg(long)]
    pub flow_log: Option<PathBuf>,
}

impl AgentArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let bpffs = self
            .bpffs
            .unwrap_or_else(|| PathBuf::from("/sys/fs/bpf/enforcer").join(&self.node));
        let mut failsafe = enforcer::dataplane::failsafe::Failsafe::default();
        for (text, ports) in [
            (&self.failsafe_inbound, &mut failsafe.inbound),
            (&self.failsafe_outbound, &mut failsafe.outbound),
        ] {
            if let Some(text) = text {
                *ports = enforcer::dataplane::failsafe::parse_ports(text)
                    .ok_or_else(|| anyhow::anyhow!("bad failsafe port list {text:?}"))?;
            }
        }
        let flow_log = self
            .flow_log
            .unwrap_or_else(|| self.datastore.join("flows.jsonl"));
        let options = AgentOptions {
            failsafe,
            flow_log,
            node: self.node,
            datastore: self.datastore,
            bpffs,
            poll: Duration::from_millis(self.poll_ms),
            events_on_deny: self.events_on_deny,
        };
        let stop = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook_like::SIGTERM, signal_hook_like::SIGINT] {
            signal_hook_like::register(signal, Arc::clone(&stop))?;
        }
        run(&options, &stop)?;
        Ok(())
    }
}

/// Sets a flag on SIGTERM/SIGINT so the agent loop ends cleanly.
mod signal_hook_like {
    use std::sync::Arc;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering};

    pub use nix::sys::signal::Signal::{SIGINT, SIGTERM};

    static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

    extern "C" fn on_signal(_: libc::c_int) {
        if let Some(stop) = STOP.get() {
            stop.store(true, Ordering::Relaxed);
        }
    }

    pub fn register(signal: nix::sys::signal::Signal, stop: Arc<AtomicBool>) -> nix::Result<()> {
        let _ = STOP.set(stop);
        let action = nix::sys::signal::SigAction::new(
            nix::sys::signal::SigHandler::Handler(on_signal),
            nix::sys::signal::SaFlags::empty(),
            nix::sys::signal::SigSet::empty(),
        );
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { nix::sys::signal::sigaction(signal, &action) }.map(|_| ())
    }
}
