//! Per-CPU outcome counters and flow events: the programs' only output besides the
//! verdict. Nothing is logged per packet; `enforcer inspect counters` sums the CPUs.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use enforcer_common::{FlowEvent, REASONS};

use crate::{
    maps::{ENF_COUNTERS, ENF_EVENTS},
    packet::Packet,
};

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

/// The judging side of an event: which endpoint, in which direction, decided what.
pub struct EventSource {
    pub kind: u32,
    pub dir: u8,
    pub action: u8,
    pub ifindex: u32,
    pub endpoint_id: u32,
    pub policy: u32,
    pub rule: u32,
}

/// Queues a [`FlowEvent`] on the ring buffer. A full buffer loses the event (the agent
/// cannot keep up); the verdict is not affected.
///
/// Not inlined: a BPF-to-BPF call with its own stack frame for the event, so the four
/// call sites do not each reserve one in the programs' 512-byte stack.
#[inline(never)]
pub fn emit(pkt: &Packet, src: &EventSource) {
    let Some(mut entry) = ENF_EVENTS.reserve::<FlowEvent>(0) else {
        return;
    };
    // SAFETY: none; a plain helper call without arguments.
    let ts_ns = unsafe { bpf_ktime_get_ns() };
    entry.write(FlowEvent {
        ts_ns,
        src: pkt.src,
        dst: pkt.dst,
        sport: pkt.sport,
        dport: pkt.dport,
        proto: pkt.proto,
        family: pkt.family,
        dir: src.dir,
        action: src.action,
        kind: src.kind,
        ifindex: src.ifindex,
        endpoint_id: src.endpoint_id,
        policy: src.policy,
        rule: src.rule,
        _pad: 0,
    });
    entry.submit(0);
}
