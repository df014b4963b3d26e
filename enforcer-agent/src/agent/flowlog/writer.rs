//! The flow log's back half, on a thread of its own: it aggregates the named events
//! the agent's loop hands it, and at each interval's close reads the flows' reports
//! (`ENF_FLOW_REPORTS`, one lookup per flow), turns the interval into JSON lines and
//! appends them to the file. The loop only drains and names events. Before, all of it
//! ran on the loop: an interval of a denied flood is thousands of flows, and closing
//! and writing 3,500-4,300 of them took 115-260 ms (the `p5` benchmark at 1,000
//! policies, machine shared with a build), during which every policy change waited
//! (its p99 was that wait).
//!
//! Messages keep their order (events drained before a close are in that interval). At
//! most [`QUEUED`] messages wait for the thread; when it is that far behind (a slow or
//! hung disk), what the loop hands it is dropped and counted as lost lines: the loop is
//! never held. Dropping the writer closes nothing more: it lets the thread finish what
//! is queued (the agent's shutdown closes the open interval first), then ends it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::SystemTime;

use aya::maps::{MapData, PerCpuHashMap};
use enforcer_common::{FlowReport, FlowReportKey};

use super::aggregate::{Aggregator, Observed};
use super::file::LogFile;
use super::stats::FlowLogStats;

/// Messages that may wait for the thread.
pub const QUEUED: usize = 1024;

/// The flows' per-CPU reports, read when an interval closes.
pub type Reports = PerCpuHashMap<MapData, FlowReportKey, FlowReport>;

enum Message {
    /// Named events, in the order the loop drained them.
    Events(Vec<Observed>),
    /// Close the open interval at this time and write its lines.
    Close(SystemTime),
}

pub struct LineWriter {
    messages: Option<SyncSender<Message>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<FlowLogStats>,
}

impl LineWriter {
    pub fn spawn(
        file: LogFile,
        reports: Option<Reports>,
        stats: Arc<FlowLogStats>,
    ) -> std::io::Result<Self> {
        let (messages, queued) = mpsc::sync_channel::<Message>(QUEUED);
        let thread_stats = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name("enforcer-flowlog".to_owned())
            .spawn(move || {
                let mut aggregator = Aggregator::default();
                for message in queued {
                    match message {
                        Message::Events(events) => {
                            for o in events {
                                aggregator.add(o);
                            }
                        }
                        Message::Close(end) => {
                            close(&mut aggregator, end, reports.as_ref(), &file, &thread_stats);
                            // An interval of a flood is thousands of named lines: what
                            // they took goes back to the kernel (this thread's arena
                            // included), off the agent's loop.
                            crate::agent::heap::release_freed_memory();
                        }
                    }
                }
            })?;
        Ok(Self {
            messages: Some(messages),
            thread: Some(thread),
            stats,
        })
    }

    /// Hands named events to the thread; never blocks.
    pub fn events(&self, events: Vec<Observed>) {
        let n = events.len();
        self.send(Message::Events(events), n);
    }

    /// Closes the open interval at `end`; never blocks.
    pub fn close(&self, end: SystemTime) {
        self.send(Message::Close(end), 0);
    }

    fn send(&self, message: Message, lines: usize) {
        let Some(messages) = &self.messages else {
            return;
        };
        match messages.try_send(message) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                if let Some(errors) = self.stats.lost(lines) {
                    tracing::warn!(
                        errors,
                        "flow log writer {QUEUED} messages behind (or gone); events lost (counted)"
                    );
                }
            }
        }
    }
}

impl Drop for LineWriter {
    /// Lets the thread finish what is queued, then ends it.
    fn drop(&mut self) {
        drop(self.messages.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the flow log's writer thread panicked");
        }
    }
}

/// Closes the interval and appends its lines; a write error is counted and logged (the
/// first and then one in a hundred: a full disk must not flood the agent's own log
/// either).
fn close(
    aggregator: &mut Aggregator,
    end: SystemTime,
    reports: Option<&Reports>,
    file: &LogFile,
    stats: &FlowLogStats,
) {
    let started = std::time::Instant::now();
    let lines = aggregator.close(end, |key| {
        reports
            .and_then(|m| m.get(key, 0).ok())
            .map(|v| v.iter().copied().collect())
    });
    if lines.is_empty() {
        return;
    }
    let json: Vec<String> = lines
        .iter()
        .filter_map(|l| serde_json::to_string(l).ok())
        .collect();
    let written = file.append(&json);
    tracing::debug!(
        lines = json.len(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        "flow log interval closed and written"
    );
    match written {
        Ok(w) => {
            stats.lines.fetch_add(w.lines, Ordering::Relaxed);
            stats.bytes.fetch_add(w.bytes, Ordering::Relaxed);
            stats.rotations.fetch_add(w.rotations, Ordering::Relaxed);
        }
        Err(error) => {
            if let Some(errors) = stats.lost(json.len()) {
                tracing::warn!(%error, errors, "flow log write failed; lines lost (counted)");
            }
        }
    }
}
