//! What the agent reports about its work, and where a report can be mirrored.
//!
//! The agent publishes [`AgentStatus`] (a tokio watch channel); sinks subscribe. The
//! file datastore mirrors it as `status.json`, which `enforcer lab` and the lab tests
//! wait on; a Kubernetes datastore may write it to an object, a health endpoint may
//! serve it. It lives with the datastores because they are where it is written back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::DatastoreError;

/// What the agent last did with the datastore.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AgentStatus {
    /// Highest datastore revision the agent has read.
    pub observed_revision: u64,
    /// Revision whose policy is enforced now (may lag `observed_revision` when a
    /// newer revision was refused: then `error` says why and the old policy stays).
    pub applied_revision: u64,
    /// Why the last observed revision was refused as a whole, if it was (a compile
    /// that fails for no single object: map capacity). The previous policy stays.
    pub error: Option<String>,
    /// Objects whose latest version is not enforced, with why and what is enforced
    /// instead (the rest of the revision is applied).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<Refused>,
    /// Endpoints whose interfaces carry the programs.
    pub endpoints_attached: usize,
    /// Workload interfaces (by name prefix) that carry the pod programs without a
    /// known endpoint: everything through them is dropped until their pod is known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces_without_endpoint: Vec<String>,
    /// Interfaces that should carry our programs and do not (the attach failed; it is
    /// retried): the node is not fully enforced, so the agent is not ready.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attach_failed: BTreeMap<String, String>,
    /// Host interfaces whose XDP program did not attach: their TC programs judge every
    /// packet (XDP only drops denied packets earlier).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub xdp_unavailable: BTreeMap<String, String>,
    /// How many times the agent found an attachment tampered with or lost (a pin
    /// removed, our program detached or moved behind another) and repaired it.
    #[serde(default)]
    pub attach_repairs: u64,
    /// Time the last applied revision took from read to enforced, in microseconds.
    pub last_apply_us: u64,
    /// Policy generation live in the maps.
    pub generation: u32,
    /// Policies written to the maps so far (each revision applied, each rebinding
    /// after interfaces changed): a new value is a new apply (metrics observe its
    /// latency).
    #[serde(default)]
    pub applies: u64,
    /// Why the datastore cannot be read now (the last content read stays enforced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore_unavailable: Option<String>,
    /// The self-check of compiled generations (compiled maps vs the evaluator).
    #[serde(default)]
    pub self_check: SelfCheckStatus,
}

/// What the self-check of compiled generations has done.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SelfCheckStatus {
    /// Flows judged both ways for the last compiled generation.
    pub last_flows: u64,
    /// Time that took, in microseconds (part of `last_apply_us` when applied).
    pub last_us: u64,
    /// Generations refused because the two disagreed (a compiler bug; the previous
    /// policy stayed in force).
    pub refused: u64,
}

/// What is enforced for an object whose latest version is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fallback {
    /// Its last enforced version stays in force.
    LastGood,
    /// Deny-all for the endpoints its selector selects, in its tier position.
    DenyAll,
    /// Nothing: it is left out.
    Ignored,
}

/// An object whose latest version is not enforced, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// `Kind namespace/name`.
    pub object: String,
    /// Where the datastore keeps it.
    pub origin: String,
    /// Why its latest version was refused.
    pub reason: String,
    /// What is enforced instead.
    pub fallback: Fallback,
}

/// Somewhere a status is written to.
pub trait StatusSink: Send {
    fn publish(&mut self, status: &AgentStatus) -> Result<(), DatastoreError>;
}

/// A status file anywhere (`enforcer agent --status-file`), replaced by rename so a
/// reader never sees half of it: what the lab waits on when its agents read the
/// Kubernetes API rather than its datastore directory.
#[derive(Clone, Debug)]
pub struct StatusFile {
    pub path: std::path::PathBuf,
}

impl StatusSink for StatusFile {
    fn publish(&mut self, status: &AgentStatus) -> Result<(), DatastoreError> {
        let io = |op, source| DatastoreError::Io {
            op,
            path: self.path.clone(),
            source,
        };
        let text = serde_json::to_vec_pretty(status).map_err(|e| io("encode status", e.into()))?;
        let tmp = self
            .path
            .with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&tmp, text).map_err(|e| io("write status", e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| io("rename status", e))
    }
}
