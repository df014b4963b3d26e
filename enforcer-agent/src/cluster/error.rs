//! What planning a cluster can fail with.

use crate::model::ObjectId;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{origin}: {object}: {message}")]
    Invalid {
        origin: String,
        object: ObjectId,
        message: String,
    },
    #[error("no pod addresses left in node {node}'s block {block}")]
    PodAddressesExhausted { node: String, block: String },
    #[error("a cluster has 1 to 8 nodes, not {count}")]
    NodeCount { count: u32 },
    #[error("no Service addresses left in 198.19.0.0/16 or 2001:2:0:19::/112")]
    ServiceAddressesExhausted,
}
