//! Publishing the agent's status: a tokio watch channel holds the latest
//! [`AgentStatus`]; sinks (the file datastore's `status.json`, later a health
//! endpoint) subscribe and always see the newest one.

use tokio::sync::watch;

use crate::datastore::status::{AgentStatus, StatusSink};

/// The publishing side, held by the agent, and a first subscriber.
pub fn channel() -> (watch::Sender<AgentStatus>, watch::Receiver<AgentStatus>) {
    watch::channel(AgentStatus::default())
}

/// Writes every status published to `sink`, until the publisher is gone (then the
/// last one is written too). Intermediate statuses may be skipped, never the latest.
/// Nothing is written before the first publish: a sink is never told about a status
/// the agent has not reached.
pub async fn mirror(mut updates: watch::Receiver<AgentStatus>, mut sink: Box<dyn StatusSink>) {
    while updates.changed().await.is_ok() {
        let status = updates.borrow_and_update().clone();
        if let Err(error) = sink.publish(&status) {
            tracing::warn!(%error, "could not mirror the agent status");
        }
    }
}
