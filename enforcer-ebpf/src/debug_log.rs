//! The opt-in debug log of verdicts: one aya-log record per policy verdict, written to
//! aya-log's `AYA_LOGS` ring buffer and forwarded to the agent's log by
//! `enforcer::dataplane::bpf_log`.
//!
//! Only the debug-log program variants (`enf_*_d`, `DEBUG = true`) contain the
//! recording code; the production programs have none of it. In those variants it is
//! off unless `Config.flags` has [`CONFIG_F_DEBUG_LOG`]: one bit test per verdict.
//!
//! The aya-log record code is expensive to verify, and a BPF-to-BPF call is verified
//! again for every path that reaches it: called from the programs' many paths it cost
//! `enf_pod_in_d` most of the verifier's million instructions. So the variants only
//! *note* their verdicts ([`note`]: a few stores into the per-CPU [`ENF_DEBUG_NOTES`])
//! and, once the packet's verdict is final, tail-call the log program of their type
//! ([`enf_log_tc_d`](crate::enf_log_tc_d) / [`enf_log_xdp_d`](crate::enf_log_xdp_d),
//! through [`ENF_DEBUG_TC`] / [`ENF_DEBUG_XDP`]), which writes the records and returns
//! the verdict: the
//! record code is verified once, in a program of its own. If the tail call fails (the
//! slot is empty, e.g. after the agent that filled it exited), the verdict is returned
//! without the records.

use aya_ebpf::{
    EbpfContext,
    bindings::xdp_action,
    macros::map,
    maps::{PerCpuArray, ProgramArray},
};
use aya_log_ebpf::info;
use enforcer_common::{CONFIG_F_DEBUG_LOG, Config, FAMILY_V4};

use crate::packet::Packet;

/// What decided a packet: the direction, the action, and who decided it.
pub struct VerdictLog {
    pub dir: u8,
    pub action: u8,
    pub endpoint_id: u32,
    /// The deciding policy and rule (`NO_INDEX` for a tier or profile default).
    pub policy: u32,
    pub rule: u32,
}

/// One noted verdict and the packet it is about.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Note {
    pub dir: u8,
    pub action: u8,
    pub proto: u8,
    pub family: u8,
    pub endpoint_id: u32,
    pub policy: u32,
    pub rule: u32,
    pub sport: u16,
    pub dport: u16,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

/// Most verdicts one packet gets (host XDP: untracked + preDNAT; host TC: untracked +
/// tracked; pod ingress: a deferred egress + ingress).
pub const NOTES_MAX: usize = 4;

/// `ENF_DEBUG_NOTES[0]`, per CPU: the verdicts of the packet this CPU is judging. A
/// program and the log program it tail-calls run on one CPU without preemption.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Notes {
    /// The program's return value, for the log program to return.
    pub verdict: i32,
    /// Notes used.
    pub count: u32,
    pub taken: [Note; NOTES_MAX],
}

#[map]
pub static ENF_DEBUG_NOTES: PerCpuArray<Notes> = PerCpuArray::with_max_entries(1, 0);

/// The log programs, `enf_log_tc_d` and `enf_log_xdp_d` at index 0: one array per
/// program type, as the kernel requires. Filled by the agent when it loads the
/// debug-log variants.
#[map]
pub static ENF_DEBUG_TC: ProgramArray = ProgramArray::with_max_entries(1, 0);
#[map]
pub static ENF_DEBUG_XDP: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// The agent asked for the debug log.
#[inline(always)]
pub fn enabled(cfg: &Config) -> bool {
    cfg.flags & CONFIG_F_DEBUG_LOG != 0
}

/// Notes `pkt`'s verdict (beyond [`NOTES_MAX`] per packet, it is not recorded).
#[inline(always)]
pub fn note(pkt: &Packet, v: &VerdictLog) {
    let Some(notes) = ENF_DEBUG_NOTES.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's element of a per-CPU array; nothing else runs on this CPU
    // while the program does.
    let notes = unsafe { &mut *notes };
    let i = notes.count as usize;
    if i >= NOTES_MAX {
        return;
    }
    notes.taken[i] = Note {
        dir: v.dir,
        action: v.action,
        proto: pkt.proto,
        family: pkt.family,
        endpoint_id: v.endpoint_id,
        policy: v.policy,
        rule: v.rule,
        sport: pkt.sport,
        dport: pkt.dport,
        src: pkt.src,
        dst: pkt.dst,
    };
    notes.count += 1;
}

/// With notes taken, hands the verdict to the log program in `tail`; returns the verdict
/// when there is nothing to log or the tail call fails.
#[inline(always)]
pub fn finish<C: EbpfContext>(ctx: &C, verdict: i32, tail: &ProgramArray) -> i32 {
    let Some(notes) = ENF_DEBUG_NOTES.get_ptr_mut(0) else {
        return verdict;
    };
    // SAFETY: as in `note`.
    let notes = unsafe { &mut *notes };
    if notes.count == 0 {
        return verdict;
    }
    notes.verdict = verdict;
    // SAFETY: the log program returns `notes.verdict`, the value this program would
    // have returned; on success control never comes back here.
    unsafe { tail.tail_call(ctx, 0) };
    notes.count = 0;
    verdict
}

/// The log program's body: writes the noted records, returns the noted verdict (the
/// fallback if the notes are missing: drop).
#[inline(always)]
pub fn write_notes(xdp: bool) -> i32 {
    let fallback = if xdp {
        xdp_action::XDP_DROP.cast_signed()
    } else {
        aya_ebpf::bindings::TC_ACT_SHOT
    };
    let Some(notes) = ENF_DEBUG_NOTES.get_ptr_mut(0) else {
        return fallback;
    };
    // SAFETY: as in `note`.
    let notes = unsafe { &mut *notes };
    let count = notes.count as usize;
    for i in 0..NOTES_MAX {
        if i >= count {
            break;
        }
        record(&notes.taken[i]);
    }
    notes.count = 0;
    notes.verdict
}

#[inline(never)]
fn record(n: &Note) {
    if n.family == FAMILY_V4 {
        record_v4(n);
    } else {
        record_v6(n);
    }
}

// One record function per family, each out of line: aya-log keeps every argument of a
// record on the stack, and one function holding both families' addresses would not
// fit in BPF's 512 bytes. The macros only evaluate their context argument (no program
// context is read), so `&()` stands in for one.

#[inline(never)]
fn record_v4(n: &Note) {
    info!(
        &(),
        "verdict dir={} action={} endpoint={} policy={} rule={} proto={} {:i}:{} -> {:i}:{}",
        n.dir,
        n.action,
        n.endpoint_id,
        n.policy,
        n.rule,
        n.proto,
        v4(&n.src),
        n.sport,
        v4(&n.dst),
        n.dport
    );
}

#[inline(never)]
fn record_v6(n: &Note) {
    info!(
        &(),
        "verdict dir={} action={} endpoint={} policy={} rule={} proto={} {:i}:{} -> {:i}:{}",
        n.dir,
        n.action,
        n.endpoint_id,
        n.policy,
        n.rule,
        n.proto,
        n.src,
        n.sport,
        n.dst,
        n.dport
    );
}

/// The IPv4 address in the first four bytes, as the `u32` aya-log prints dotted.
#[inline(always)]
fn v4(a: &[u8; 16]) -> u32 {
    u32::from_be_bytes([a[0], a[1], a[2], a[3]])
}
