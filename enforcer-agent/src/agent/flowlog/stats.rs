//! The flow log's own counters, shared between the agent's loop (events drained) and
//! the writer thread (lines written, lost), and read by reports and metrics.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// The log's own counters (what the programs lost is in `ENF_EVENT_STATS`).
#[derive(Debug, Default)]
pub struct FlowLogStats {
    pub events: AtomicU64,
    pub lines: AtomicU64,
    pub bytes: AtomicU64,
    pub rotations: AtomicU64,
    pub write_errors: AtomicU64,
    pub lines_lost: AtomicU64,
}

impl FlowLogStats {
    /// Counts a failed write (or hand-over) that cost `lines`; returns the errors so
    /// far when this one is to be logged: the first and then one in a hundred, so
    /// that a full disk does not flood the agent's own log too.
    pub fn lost(&self, lines: usize) -> Option<u64> {
        let errors = self.write_errors.fetch_add(1, Ordering::Relaxed);
        self.lines_lost.fetch_add(lines as u64, Ordering::Relaxed);
        errors.is_multiple_of(100).then_some(errors + 1)
    }

    pub fn counts(&self) -> FlowLogCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FlowLogCounts {
            events: get(&self.events),
            lines: get(&self.lines),
            bytes: get(&self.bytes),
            rotations: get(&self.rotations),
            write_errors: get(&self.write_errors),
            lines_lost: get(&self.lines_lost),
        }
    }
}

/// A copy of [`FlowLogStats`] for reports and metrics.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct FlowLogCounts {
    /// Events read from the ring buffer.
    pub events: u64,
    /// Lines written, and their bytes.
    pub lines: u64,
    pub bytes: u64,
    pub rotations: u64,
    /// Failed writes, and the lines they cost.
    pub write_errors: u64,
    pub lines_lost: u64,
}
