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
    #[error("no pod addresses left in 198.18.0.0/16 (below 198.18.255.0/24)")]
    PodAddressesExhausted,
    #[error("no Service addresses left in 198.19.0.0/16")]
    ServiceAddressesExhausted,
}
