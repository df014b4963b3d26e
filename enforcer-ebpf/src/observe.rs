//! What the programs report about a verdict besides the verdict itself: per-rule
//! counters and flow events. Both are keyed by what the verdict already names (its
//! policy and rule ids), so they cost a constant number of map operations per judged
//! packet, and nothing at all for the packets conntrack passes.
//!
//! Flow events are rate-limited so that a flood cannot drown the ring buffer, the
//! agent or the log behind it:
//!
//! 1. per flow: `ENF_FLOW_REPORTS` (per-CPU LRU) remembers when each (flow, judging
//!    point, kind, verdict) last reported from this CPU; within
//!    [`FLOW_REPORT_INTERVAL_NS`] a packet only adds to the entry's counts, which the
//!    next event of the flow carries (the agent also reads them when it closes an
//!    interval);
//! 2. per CPU: a token bucket (`ENF_EVENT_BUDGET`) bounds the events of all flows
//!    together, so a flood of distinct flows cannot either.
//!
//! Every outcome is counted in `ENF_EVENT_STATS` (emitted, aggregated, lost to the
//! budget, lost to a full ring buffer): losses are never silent.
//!
//! # Cost to the verifier and to the stack
//!
//! The work is one BPF *global* function, [`enf_observe`] (exported by the link step,
//! so its BTF linkage is global): the verifier checks it once, on its own, instead of
//! once per state of every caller (as a static function, it multiplied the processed
//! instructions of `enf_pod_in` tenfold). A global function takes scalars only, so the
//! caller ([`report`], inlined) leaves the packet's tuple and the verdict in the
//! per-CPU `ENF_SCRATCH`, where the function's map keys are built too: BPF's 512 bytes
//! of stack are for the whole call chain, and the programs' own frames take most.

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_get_smp_processor_id};
use enforcer_common::{
    ACTION_ALLOW, CONFIG_F_EVENT_ON_ALLOW, CONFIG_F_EVENT_ON_DENY, COUNTED_LOG, EVENT_KIND_ALLOW,
    EVENT_KIND_DENY, EVENT_KIND_LOG, EVENT_STAT_AGGREGATED, EVENT_STAT_EMITTED,
    EVENT_STAT_RATE_LIMITED, EVENT_STAT_RING_FULL, EVENTS_BURST_PER_CPU, EVENTS_PER_SEC_PER_CPU,
    FLOW_REPORT_INTERVAL_NS, FlowReport, FlowReportKey, RuleCounter, RuleCounterKey, VERDICT_F_LOG,
    Verdict,
};

use crate::{
    conntrack,
    maps::{
        ENF_EVENT_BUDGET, ENF_EVENT_STATS, ENF_EVENTS, ENF_FLOW_REPORTS, ENF_RULE_COUNTERS,
        ENF_SCRATCH,
    },
    packet::Packet,
};

/// What [`report`] hands to [`enf_observe`], and the map keys and initial values the
/// latter builds, in `ENF_SCRATCH` (map memory) instead of on the stack: map helpers
/// take keys and values from map memory as well.
#[repr(C)]
pub struct Scratch {
    /// The packet's tuple is written here by [`report`]; [`enf_observe`] adds the rest.
    report_key: FlowReportKey,
    report_init: FlowReport,
    counter_key: RuleCounterKey,
    _pad: u32,
    counter_init: RuleCounter,
    /// The packet's length, for the flow report.
    len: u64,
    /// The verdict to report (also handed over by a function that returned only its
    /// action, see [`stash`]).
    verdict: Verdict,
}

/// Where a verdict was taken, and what became of the packet.
pub struct Report {
    /// `Config::flags` (which events are wanted).
    pub flags: u32,
    pub generation: u32,
    pub ifindex: u32,
    pub endpoint_id: u32,
    /// `REASON_*` of the packet's outcome.
    pub reason: u32,
    /// `DIR_*` the verdict was looked up for.
    pub dir: u8,
    /// `HOOK_*` of the program.
    pub hook: u8,
}

/// Counts the verdict's rule (and its Log rule) and emits the events it calls for: a
/// Log rule matched; a deny with `CONFIG_F_EVENT_ON_DENY`; an allow with
/// `CONFIG_F_EVENT_ON_ALLOW`. See the module doc for how: [`hand_over`] leaves the
/// verdict and the packet's tuple in `ENF_SCRATCH` and calls [`enf_observe`]; only
/// scalars and pointers the caller has anyway are passed, so nothing is added to the
/// caller's (large) frame.
#[inline(always)]
pub fn report(pkt: &Packet, v: &Verdict, r: &Report) {
    hand_over(pkt, v, r.packed(), r.ids());
}

/// Keeps `v` in `ENF_SCRATCH` for [`report_stashed`]: a function that returns only
/// the action (to keep its caller's frame small) hands the verdict over this way.
#[inline(always)]
pub fn stash(v: &Verdict) {
    if let Some(scratch) = ENF_SCRATCH.get_ptr_mut(0) {
        // SAFETY: this CPU's scratch slot; a program is not preempted by another
        // program on the same CPU, and nothing else runs between this and the report.
        unsafe { (*scratch).verdict = *v };
    }
}

/// [`report`] of the verdict last [`stash`]ed on this CPU (by the same program run).
#[inline(always)]
pub fn report_stashed(pkt: &Packet, r: &Report) {
    hand_over_stashed(pkt, r.packed(), r.ids());
}

impl Report {
    /// dir | hook << 8 | generation << 16 | reason << 24 | `Config::flags` << 32.
    #[inline(always)]
    fn packed(&self) -> u64 {
        u64::from(self.dir)
            | u64::from(self.hook) << 8
            | u64::from(self.generation as u8) << 16
            | u64::from(self.reason as u8) << 24
            | u64::from(self.flags) << 32
    }

    /// ifindex << 32 | endpoint id.
    #[inline(always)]
    fn ids(&self) -> u64 {
        u64::from(self.ifindex) << 32 | u64::from(self.endpoint_id)
    }
}

/// Copies the verdict and the packet's tuple into `ENF_SCRATCH`, then runs
/// [`enf_observe`]. Out of line with a small frame of its own.
#[inline(never)]
fn hand_over(pkt: &Packet, v: &Verdict, packed: u64, ids: u64) {
    stash(v);
    hand_over_stashed(pkt, packed, ids);
}

/// The tuple into `ENF_SCRATCH` (the verdict is there), then [`enf_observe`].
#[inline(never)]
fn hand_over_stashed(pkt: &Packet, packed: u64, ids: u64) {
    let Some(scratch) = ENF_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: as in `stash`.
    let scratch = unsafe { &mut *scratch };
    let k = &mut scratch.report_key;
    k.src = pkt.src;
    k.dst = pkt.dst;
    k.sport = pkt.sport;
    k.dport = pkt.dport;
    k.proto = pkt.proto;
    k.family = pkt.family;
    scratch.len = u64::from(pkt.len);
    enf_observe(packed, ids);
}

/// The verdict in `ENF_SCRATCH`: its rule counters, then its events (a Log rule's,
/// and the decision's when `Config::flags` asks for it). A BPF global function, see
/// the module doc. `packed` = dir | hook << 8 | generation << 16 | reason << 24 |
/// `Config::flags` << 32; `ids` = ifindex << 32 | endpoint id. Returns 0.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn enf_observe(packed: u64, ids: u64) -> u32 {
    let Some(scratch) = ENF_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's scratch slot, filled by `report_stashed` just before.
    let v = unsafe { &(*scratch).verdict };
    // SAFETY: as above.
    let len = unsafe { (*scratch).len };
    let dir = packed as u8;
    count_rule(v.policy, v.rule, dir, v.action, len);
    let logged = v.flags & VERDICT_F_LOG != 0;
    if logged {
        count_rule(v.log_policy, v.log_rule, dir, COUNTED_LOG, len);
    }
    let flags = (packed >> 32) as u32;
    let decision = if v.action == ACTION_ALLOW {
        (flags & CONFIG_F_EVENT_ON_ALLOW != 0).then_some(EVENT_KIND_ALLOW)
    } else {
        (flags & CONFIG_F_EVENT_ON_DENY != 0).then_some(EVENT_KIND_DENY)
    };
    if logged {
        emit(EVENT_KIND_LOG, packed, ids);
    }
    if let Some(kind) = decision {
        emit(kind, packed, ids);
    }
    0
}

/// Adds one packet of `len` bytes to `(policy, rule, dir, action)`, creating the entry
/// on first use. A full map leaves the packet uncounted (the verdict is unaffected).
#[inline(always)]
fn count_rule(policy: u32, rule: u32, dir: u8, action: u8, len: u64) {
    let Some(scratch) = ENF_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch slot; a program is not preempted by another program
    // on the same CPU, and the slot is not read after this function.
    let scratch = unsafe { &mut *scratch };
    scratch.counter_key = RuleCounterKey {
        policy,
        rule,
        dir,
        action,
        _pad: [0; 2],
    };
    scratch.counter_init = RuleCounter::default();
    // References into map memory: the helpers read key and value from there.
    let (key, init) = (&scratch.counter_key, &scratch.counter_init);
    let slot = if let Some(slot) = ENF_RULE_COUNTERS.get_ptr_mut(key) {
        slot
    } else {
        let _ = ENF_RULE_COUNTERS.insert(key, init, u64::from(BPF_NOEXIST));
        let Some(slot) = ENF_RULE_COUNTERS.get_ptr_mut(key) else {
            return;
        };
        slot
    };
    // SAFETY: this CPU's copy of the entry; a program is not preempted by another
    // program on the same CPU while it runs.
    unsafe {
        (*slot).packets = (*slot).packets.wrapping_add(1);
        (*slot).bytes = (*slot).bytes.wrapping_add(len);
    }
}

#[inline(always)]
fn stat(index: u32) {
    if let Some(slot) = ENF_EVENT_STATS.get_ptr_mut(index) {
        // SAFETY: as in `count_rule`.
        unsafe { *slot = (*slot).wrapping_add(1) };
    }
}

/// Takes one token from this CPU's budget, refilling it for the time elapsed.
#[inline(always)]
fn take_token(now: u64) -> bool {
    let Some(budget) = ENF_EVENT_BUDGET.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: as in `count_rule`.
    let budget = unsafe { &mut *budget };
    // At most a second of refill, so the product below cannot overflow.
    let elapsed = now.saturating_sub(budget.last_refill_ns).min(1_000_000_000);
    let refill = elapsed.saturating_mul(EVENTS_PER_SEC_PER_CPU) / 1_000_000;
    let tokens = budget
        .millitokens
        .saturating_add(refill)
        .min(EVENTS_BURST_PER_CPU * 1000);
    budget.last_refill_ns = now;
    if tokens < 1000 {
        budget.millitokens = tokens;
        return false;
    }
    budget.millitokens = tokens - 1000;
    true
}

/// Copies an address four bytes at a time with volatile loads (a volatile load of the
/// whole array would go through a stack temporary).
///
/// # Safety
/// `src` is valid for reads and `dst` for writes of 16 bytes, both 4-byte aligned.
#[inline(always)]
#[expect(
    clippy::cast_ptr_alignment,
    reason = "the caller passes 4-byte aligned addresses (map and ring-buffer records)"
)]
unsafe fn copy_addr(dst: *mut [u8; 16], src: *const [u8; 16]) {
    let (d, s) = (dst.cast::<u32>(), src.cast::<u32>());
    for i in 0..4 {
        // SAFETY: within the 16 bytes the caller vouches for.
        unsafe { d.add(i).write(core::ptr::read_volatile(s.add(i))) };
    }
}

/// Adds the packet to its flow report and queues an event when the flow has not
/// reported for [`FLOW_REPORT_INTERVAL_NS`] and the budget allows.
#[inline(always)]
fn emit(kind: u32, packed: u64, ids: u64) {
    let Some(scratch) = ENF_SCRATCH.get_ptr_mut(0) else {
        return stat(EVENT_STAT_RATE_LIMITED);
    };
    // SAFETY: as in `enf_observe`.
    let scratch = unsafe { &mut *scratch };
    let v = &raw const scratch.verdict;
    // The tuple is there already (`report_stashed`); the rest of the key, field by
    // field (no temporary key on the stack). From here on the event's fields are read
    // back from this key (map memory) rather than kept in registers, which would spill
    // into the stack this function has so little of.
    let k = &mut scratch.report_key;
    k.dir = packed as u8;
    // SAFETY: `v` points into the scratch slot.
    k.action = unsafe { (*v).action };
    k.ifindex = (ids >> 32) as u32;
    k.kind = kind as u8;
    k.hook = (packed >> 8) as u8;
    k._pad = [0; 2];
    scratch.report_init = FlowReport::default();
    let (key, init) = (&scratch.report_key, &scratch.report_init);
    let entry = if let Some(entry) = ENF_FLOW_REPORTS.get_ptr_mut(key) {
        entry
    } else {
        let _ = ENF_FLOW_REPORTS.insert(key, init, u64::from(BPF_NOEXIST));
        let Some(entry) = ENF_FLOW_REPORTS.get_ptr_mut(key) else {
            return stat(EVENT_STAT_RATE_LIMITED);
        };
        entry
    };
    // SAFETY: `entry` is this CPU's copy of the map value; a program is not
    // preempted by another program on the same CPU. An LRU eviction may recycle the
    // element under us: the worst case is a count added to another flow's fresh
    // entry, never memory outside the map.
    let entry = unsafe { &mut *entry };
    entry.packets = entry.packets.wrapping_add(1);
    entry.bytes = entry.bytes.wrapping_add(scratch.len);
    let last = entry.last_report_ns;
    let now = conntrack::now_ns();
    if last != 0 && now.saturating_sub(last) < FLOW_REPORT_INTERVAL_NS {
        return stat(EVENT_STAT_AGGREGATED);
    }
    if !take_token(now) {
        return stat(EVENT_STAT_RATE_LIMITED);
    }
    let Some(mut slot) = ENF_EVENTS.reserve(0) else {
        return stat(EVENT_STAT_RING_FULL);
    };
    entry.last_report_ns = now;
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let e = slot.as_mut_ptr();
    let k = &raw const scratch.report_key;
    let logged = kind == EVENT_KIND_LOG;
    // SAFETY: `e` is the reserved ring-buffer record, `size_of::<FlowEvent>()` bytes,
    // written field by field (no copy of a whole event on our small stack) before the
    // submit below publishes it. `k`, `entry` and `v` are valid (map memory, the
    // caller's verdict); the volatile reads make the compiler load each field here
    // instead of keeping it live since it was first read.
    unsafe {
        use core::ptr::read_volatile as get;
        (*e).ts_ns = now;
        (*e).packets = get(&raw const entry.packets);
        (*e).bytes = get(&raw const entry.bytes);
        copy_addr(&raw mut (*e).src, &raw const (*k).src);
        copy_addr(&raw mut (*e).dst, &raw const (*k).dst);
        (*e).sport = get(&raw const (*k).sport);
        (*e).dport = get(&raw const (*k).dport);
        (*e).proto = get(&raw const (*k).proto);
        (*e).family = get(&raw const (*k).family);
        (*e).dir = get(&raw const (*k).dir);
        (*e).action = get(&raw const (*k).action);
        (*e).kind = kind;
        (*e).ifindex = get(&raw const (*k).ifindex);
        (*e).endpoint_id = ids as u32;
        (*e).policy = if logged {
            get(&raw const (*v).log_policy)
        } else {
            get(&raw const (*v).policy)
        };
        (*e).rule = if logged {
            get(&raw const (*v).log_rule)
        } else {
            get(&raw const (*v).rule)
        };
        (*e).hook = get(&raw const (*k).hook);
        (*e).verdict_kind = get(&raw const (*v).kind);
        (*e).generation = (packed >> 16) as u8;
        (*e)._pad0 = 0;
        (*e).reason = u32::from((packed >> 24) as u8);
        (*e).cpu = cpu;
    }
    slot.submit(0);
    stat(EVENT_STAT_EMITTED);
}
