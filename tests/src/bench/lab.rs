//! `p3`, `p5` and the lab part of `p6` (placeholder while being written).
use super::{BenchResult, Mode, Report};
pub fn run(_mode: Mode, _report: &mut Report) -> BenchResult<()> { Ok(()) }
