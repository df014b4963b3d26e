//! Why a compile fails: more entries than a map holds, or a self-check disagreement.
//! Either way the previous generation stays in force.

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
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
