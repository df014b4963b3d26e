//! The flow log: drains `ENF_EVENTS` (Log-rule hits, denied packets, allowed new
//! flows, from pod and host hooks alike), names everything in them, aggregates them per
//! flow and interval, and appends one JSON line per flow and interval to a size-bounded,
//! rotated, private file (`file.rs`), from a thread of its own (`writer.rs`: the
//! agent's event loop never waits for a write). Never a per-packet print.
//!
//! Bounded end to end, so that a flood cannot take the agent down: the programs send at
//! most one event per flow and second and spend a per-CPU budget (`observe.rs` in
//! enforcer-ebpf; what they drop is counted in `ENF_EVENT_STATS`), the aggregator keeps
//! one entry per flow of the open interval, the file rotates, and a write error is
//! counted and logged, never fatal.

pub mod aggregate;
pub mod file;
pub mod names;
pub mod record;
pub mod stats;
pub mod writer;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use aya::maps::{MapData, PerCpuHashMap, RingBuf};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use enforcer_common::{
    ACTION_ALLOW, CONFIG_F_EVENT_ON_ALLOW, CONFIG_F_EVENT_ON_DENY, FAMILY_V4, FlowEvent,
    FlowReport, FlowReportKey, NO_INDEX,
};

use crate::dataplane::names as codes;
use crate::model::PolicyName;
use crate::policy::has_ports;

use aggregate::Observed;
use file::{LogFile, Rotation};
use names::Peer;
use record::{FlowRecord, PolicyRef, protocol_name};
pub use stats::{FlowLogCounts, FlowLogStats};
use writer::LineWriter;

#[derive(Debug, thiserror::Error)]
pub enum FlowLogError {
    #[error("flow log {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Which verdicts the programs report as flow events (a Log rule's hit always is).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FlowEvents {
    /// Log rules only.
    None,
    /// Denied packets (and Log rules).
    #[default]
    Denied,
    /// Allowed new flows (and Log rules).
    Allowed,
    /// Both.
    All,
}

impl FlowEvents {
    /// The `Config::flags` bits that ask the programs for these events.
    pub fn config_flags(self) -> u32 {
        match self {
            Self::None => 0,
            Self::Denied => CONFIG_F_EVENT_ON_DENY,
            Self::Allowed => CONFIG_F_EVENT_ON_ALLOW,
            Self::All => CONFIG_F_EVENT_ON_DENY | CONFIG_F_EVENT_ON_ALLOW,
        }
    }
}

/// How the log is written.
#[derive(Clone, Debug)]
pub struct FlowLogOptions {
    pub path: PathBuf,
    pub rotation: Rotation,
    /// Aggregation interval: one line per flow per interval.
    pub interval: Duration,
}

/// What the flow log needs to name an event: the agent's view of the policy in force.
pub trait FlowNames {
    /// This node's name.
    fn node(&self) -> &str;
    /// Who `ip` is.
    fn peer(&self, ip: IpAddr, port: Option<u16>) -> Peer;
    /// The endpoint behind interface `ifindex` (events also carry the compiler's
    /// endpoint id).
    fn endpoint(&self, ifindex: u32, endpoint_id: u32) -> Option<String>;
    /// The policy a stable id names.
    fn policy(&self, id: u32) -> Option<PolicyName>;
    /// The datastore revision generation slot `generation` holds.
    fn revision(&self, generation: u8) -> Option<u64>;
}

/// The ring buffer, readable from tokio, the flow reports, and the file's writer
/// thread.
pub struct FlowLog {
    ring: AsyncFd<RingBuf<MapData>>,
    /// Whether the flows' reports are read at a close (the writer holds the map).
    reports: bool,
    path: PathBuf,
    writer: LineWriter,
    /// Whether events went to the writer since the last close.
    events_since_close: bool,
    interval: Duration,
    /// When the open interval closes (set by its first event).
    closes_at: Option<tokio::time::Instant>,
    stats: Arc<FlowLogStats>,
}

impl FlowLog {
    /// Must be called from within a tokio runtime.
    pub fn new(
        ring: RingBuf<MapData>,
        reports: Option<PerCpuHashMap<MapData, FlowReportKey, FlowReport>>,
        options: &FlowLogOptions,
    ) -> Result<Self, FlowLogError> {
        // SAFETY: the ring buffer owns its map's descriptor and `AsyncFd` owns the ring
        // buffer: the descriptor stays open, and the same, as long as it is registered.
        let ring =
            unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }.map_err(|e| {
                FlowLogError::Io {
                    path: options.path.clone(),
                    source: e.into(),
                }
            })?;
        let stats = Arc::new(FlowLogStats::default());
        let has_reports = reports.is_some();
        let writer = LineWriter::spawn(
            LogFile::new(&options.path, options.rotation.clone()),
            reports,
            Arc::clone(&stats),
        )
        .map_err(|source| FlowLogError::Io {
            path: options.path.clone(),
            source,
        })?;
        Ok(Self {
            ring,
            reports: has_reports,
            path: options.path.clone(),
            writer,
            events_since_close: false,
            interval: options.interval.max(Duration::from_millis(100)),
            closes_at: None,
            stats,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The counters, shared (a metrics endpoint may hold them).
    pub fn stats(&self) -> Arc<FlowLogStats> {
        Arc::clone(&self.stats)
    }

    /// Waits until the ring buffer has events. The readiness is consumed here: events
    /// that arrive after it are announced again, and [`FlowLog::drain`] takes
    /// everything present, so none is left behind.
    pub async fn readable(&self) -> Result<(), FlowLogError> {
        let mut guard = self
            .ring
            .readable()
            .await
            .map_err(|source| FlowLogError::Io {
                path: self.path.clone(),
                source,
            })?;
        guard.clear_ready();
        Ok(())
    }

    /// Completes when the open interval is due to close (never while none is open).
    pub async fn due(&self) {
        match self.closes_at {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }

    /// Names every pending event and hands them to the writer (which aggregates them);
    /// returns how many.
    pub fn drain(&mut self, names: &dyn FlowNames) -> usize {
        let clock = Clock::now();
        let mut observed = Vec::new();
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            if item.len() < size_of::<FlowEvent>() {
                continue;
            }
            let event: FlowEvent = bytemuck::pod_read_unaligned(&item[..size_of::<FlowEvent>()]);
            drop(item);
            observed.push(observe(&event, names, &clock));
        }
        let n = observed.len();
        if n > 0 {
            self.writer.events(observed);
            self.events_since_close = true;
            self.stats.events.fetch_add(n as u64, Ordering::Relaxed);
            if self.closes_at.is_none() {
                self.closes_at = Some(tokio::time::Instant::now() + self.interval);
            }
        }
        n
    }

    /// Closes the open interval: the writer thread (`writer.rs`) reads its flows'
    /// reports and writes its lines, and counts and logs a write error; never fatal,
    /// never waited for.
    pub fn flush(&mut self) {
        self.closes_at = None;
        self.writer.close(SystemTime::now());
        if std::mem::take(&mut self.events_since_close) && self.reports {
            // A flow's last packets may follow its last event by up to a second: the
            // next close looks at the flows of this one again.
            self.closes_at = Some(tokio::time::Instant::now() + self.interval);
        }
    }
}

/// Monotonic and wall clocks read together, to turn `bpf_ktime_get_ns` stamps into
/// wall-clock times.
struct Clock {
    mono_ns: u64,
    wall: SystemTime,
}

impl Clock {
    fn now() -> Self {
        let mono = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
            t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
        });
        Self {
            mono_ns: mono,
            wall: SystemTime::now(),
        }
    }

    fn wall_of(&self, mono_ns: u64) -> SystemTime {
        self.wall - Duration::from_nanos(self.mono_ns.saturating_sub(mono_ns))
    }
}

fn addr(bytes: [u8; 16], family: u8) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(bytes))
    }
}

/// An event, decoded and named.
fn observe(event: &FlowEvent, names: &dyn FlowNames, clock: &Clock) -> Observed {
    let record = record(event, names);
    Observed {
        key: FlowReportKey {
            src: event.src,
            dst: event.dst,
            sport: event.sport,
            dport: event.dport,
            proto: event.proto,
            family: event.family,
            dir: event.dir,
            action: event.action,
            ifindex: event.ifindex,
            kind: event.kind as u8,
            hook: event.hook,
            _pad: [0; 2],
        },
        at: clock.wall_of(event.ts_ns),
        cpu: event.cpu,
        packets: event.packets.max(1),
        bytes: event.bytes,
        record,
    }
}

/// The line an event stands for (times and counts are the aggregator's).
pub fn record(event: &FlowEvent, names: &dyn FlowNames) -> FlowRecord {
    let policy_ref = (event.policy != NO_INDEX)
        .then(|| names.policy(event.policy))
        .flatten()
        .map(|p| PolicyRef::new(&p, event.policy));
    let ports = has_ports(event.proto);
    let (src, dst) = (addr(event.src, event.family), addr(event.dst, event.family));
    let allowed = event.action == ACTION_ALLOW;
    FlowRecord {
        start: String::new(),
        end: String::new(),
        ts_ns: event.ts_ns,
        node: names.node().to_owned(),
        hook: codes::hook(u32::from(event.hook)).to_owned(),
        event: codes::event_kind(event.kind).to_owned(),
        verdict: if allowed { "allowed" } else { "denied" }.to_owned(),
        action: if allowed { "allow" } else { "deny" }.to_owned(),
        reason: codes::reason(event.reason).to_owned(),
        decided_by: codes::verdict_kind(event.verdict_kind).to_owned(),
        direction: codes::direction(event.dir).to_owned(),
        endpoint: names.endpoint(event.ifindex, event.endpoint_id),
        protocol: protocol_name(event.proto),
        proto: event.proto,
        src: src.to_string(),
        sport: event.sport,
        dst: dst.to_string(),
        dport: event.dport,
        source: names.peer(src, ports.then_some(event.sport)),
        destination: names.peer(dst, ports.then_some(event.dport)),
        policy: policy_ref.as_ref().map(PolicyRef::legacy),
        policy_ref,
        rule: (event.rule != NO_INDEX).then_some(event.rule),
        generation: event.generation,
        revision: names.revision(event.generation),
        packets: 0,
        bytes: 0,
        events: 0,
    }
}

#[cfg(test)]
mod tests;
