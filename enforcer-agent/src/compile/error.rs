//! Why a compile fails: a policy the dataplane cannot express, or more entries than a
//! map holds. Either way the previous generation stays in force.

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error(
        "{policy}, {field}: source ports are not supported (the dataplane keys verdicts on the destination port)"
    )]
    SourcePortsUnsupported { policy: String, field: String },
    /// The compiled maps and the evaluator disagree on a sampled flow (see
    /// `compile::selfcheck`): a compiler bug; the generation is not switched to.
    #[error(
        "self-check failed: the compiled maps disagree with the policy on {disagreeing} of {flows} sampled flows (first: {first}); the previous policy stays in force"
    )]
    SelfCheck {
        flows: usize,
        disagreeing: usize,
        first: String,
    },
    #[error("{what}: {count} entries exceed the map capacity {max}")]
    Capacity {
        what: &'static str,
        count: usize,
        max: u32,
    },
}

/// Refuses `count` entries for a map of `max`.
pub(super) fn check_capacity(
    what: &'static str,
    count: usize,
    max: u32,
) -> Result<(), CompileError> {
    if count > max as usize {
        return Err(CompileError::Capacity { what, count, max });
    }
    Ok(())
}
