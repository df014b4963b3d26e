//! The agent's fatal errors.

use crate::dataplane::DataplaneError;
use crate::datastore::DatastoreError;

use super::flowlog::FlowLogError;
use super::links::LinkError;
use super::watchdog::WatchdogError;

/// What stops the agent. A refused revision is not one of these: it is reported in
/// the status and the agent goes on.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(transparent)]
    Datastore(#[from] DatastoreError),
    #[error(transparent)]
    Links(#[from] LinkError),
    #[error(transparent)]
    FlowLog(#[from] FlowLogError),
    #[error(transparent)]
    Watchdog(#[from] WatchdogError),
}
