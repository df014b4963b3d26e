//! Per-CPU outcome counters: every packet is counted under its hook and the reason
//! of its verdict. Nothing is logged per packet; `enforcer inspect counters` sums the
//! CPUs. (Per-rule counters and flow events are in `observe`.)

use enforcer_common::REASONS;

use crate::maps::ENF_COUNTERS;

/// Adds one packet to `hook * REASONS + reason`. A reason out of range is not counted
/// (it would land in another hook's slots); the bound also lets the compiler prove the
/// index arithmetic cannot overflow when the reason comes from an out-of-line call.
#[inline(always)]
pub fn count(hook: u32, reason: u32) {
    if reason >= REASONS {
        return;
    }
    if let Some(slot) = ENF_COUNTERS.get_ptr_mut(hook * REASONS + reason) {
        // SAFETY: the slot is this CPU's copy of a per-CPU array element; the program
        // is not preempted by itself on this CPU while it runs.
        unsafe { *slot = (*slot).wrapping_add(1) };
    }
}
