//! The BPF debug log of verdicts, user side: the programs' aya-log records forwarded to
//! `tracing` (target [`TARGET`]).
//!
//! Only the debug-log program variants (`enf_*_d`, loaded with
//! `dataplane::loader::Variant::DebugLog`) write records, one per policy verdict, and
//! only while `Config.flags` has [`CONFIG_F_DEBUG_LOG`] ([`set_enabled`]); the
//! production programs have no record code at all. [`BpfLog::start`] takes aya-log's ring buffer (`AYA_LOGS`) out of the
//! loaded object and drains it from a tokio task woken by the ring buffer's epoll
//! readiness (no polling). Keep the [`BpfLog`] for as long as records are wanted: it
//! owns the map's file descriptor (programs not yet loaded when it is dropped would
//! fail verification with "fd N is not pointing to valid `bpf_map`").
//!
//! The ring buffer is per loaded object and never pinned: records of programs a
//! previous agent loaded (still attached through pinned links until replaced) go to
//! that agent's buffer, which nobody reads any more; they are lost, not misattributed.
//! (Their log programs are gone too once that agent's program arrays closed: the kernel
//! empties a program array with its last user reference, and the variants then return
//! their verdict without records.)

use std::io;

use aya::Ebpf;
use aya_log::EbpfLogger;
use enforcer_common::CONFIG_F_DEBUG_LOG;
use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;

use crate::dataplane::writer::{GenerationWriter, WriterError};

/// The `tracing` target of forwarded records.
pub const TARGET: &str = "enforcer::bpf";

#[derive(Debug, thiserror::Error)]
pub enum BpfLogError {
    #[error("taking the BPF log ring buffer (AYA_LOGS) from the loaded object: {source}")]
    Init {
        #[source]
        source: aya_log::Error,
    },
    #[error("registering the BPF log ring buffer with the tokio reactor: {source}")]
    Register {
        #[source]
        source: io::Error,
    },
}

/// The running forwarder. Dropping it stops the task and closes the ring buffer.
pub struct BpfLog {
    task: JoinHandle<()>,
}

impl BpfLog {
    /// Starts forwarding the records of `ebpf`'s programs to `tracing`. Must be called
    /// from within a tokio runtime (with I/O enabled).
    pub fn start(ebpf: &mut Ebpf) -> Result<Self, BpfLogError> {
        let logger = EbpfLogger::init_with_logger(ebpf, TracingBridge)
            .map_err(|source| BpfLogError::Init { source })?;
        // SAFETY: the logger owns the ring buffer map's file descriptor: it stays open,
        // and `as_raw_fd` keeps answering the same descriptor, until the logger is
        // dropped, which only the `AsyncFd` that owns it can do.
        let mut readable =
            unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) }
                .map_err(|e| BpfLogError::Register { source: e.into() })?;
        let task = tokio::spawn(async move {
            loop {
                let Ok(mut guard) = readable.readable_mut().await else {
                    // The reactor is shutting down: nothing more will be read.
                    tracing::warn!(target: TARGET, "BPF log ring buffer no longer polled");
                    return;
                };
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
        });
        Ok(Self { task })
    }
}

impl Drop for BpfLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Turns the programs' debug log on or off (keeping the other `Config` flags).
pub fn set_enabled(writer: &mut GenerationWriter, on: bool) -> Result<(), WriterError> {
    let flags = writer.config().flags;
    let flags = if on {
        flags | CONFIG_F_DEBUG_LOG
    } else {
        flags & !CONFIG_F_DEBUG_LOG
    };
    writer.set_flags(flags)
}

/// aya-log hands records to a `log::Log`; this one re-emits them as `tracing` events
/// at the record's level, so one subscriber (and its filter) sees the agent's and the
/// programs' logs alike.
struct TracingBridge;

impl log::Log for TracingBridge {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let message = record.args();
        match record.level() {
            log::Level::Error => tracing::error!(target: TARGET, "{message}"),
            log::Level::Warn => tracing::warn!(target: TARGET, "{message}"),
            log::Level::Info => tracing::info!(target: TARGET, "{message}"),
            log::Level::Debug => tracing::debug!(target: TARGET, "{message}"),
            log::Level::Trace => tracing::trace!(target: TARGET, "{message}"),
        }
    }

    fn flush(&self) {}
}
