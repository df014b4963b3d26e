//! The opt-in debug log of verdicts: one aya-log record per policy verdict, written to
//! aya-log's `AYA_LOGS` ring buffer and forwarded to the agent's log by
//! `enforcer::dataplane::bpf_log`.
//!
//! Only the debug-log program variants (`enf_*_d`, `DEBUG = true`) contain this code;
//! the production programs have none of it. In those variants it is off unless
//! `Config.flags` has [`CONFIG_F_DEBUG_LOG`]: one bit test per verdict. The record
//! is built in one function kept out of line, so its code exists once per program
//! rather than once per call site, and its stack frame is its own.

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

/// The agent asked for the debug log.
#[inline(always)]
pub fn enabled(cfg: &Config) -> bool {
    cfg.flags & CONFIG_F_DEBUG_LOG != 0
}

/// Writes one record for `pkt`'s verdict (a full ring buffer drops it).
#[inline(always)]
pub fn verdict(pkt: &Packet, v: &VerdictLog) {
    if pkt.family == FAMILY_V4 {
        verdict_v4(pkt, v);
    } else {
        verdict_v6(pkt, v);
    }
}

// One record function per family, each out of line: aya-log keeps every argument of a
// record on the stack, and one function holding both families' addresses would not
// fit next to the programs' own frames in BPF's 512 bytes. The macros only evaluate
// their context argument (no program context is read), so `&()` stands in for one.

#[inline(never)]
fn verdict_v4(pkt: &Packet, v: &VerdictLog) {
    info!(
        &(),
        "verdict dir={} action={} endpoint={} policy={} rule={} proto={} {:i}:{} -> {:i}:{}",
        v.dir,
        v.action,
        v.endpoint_id,
        v.policy,
        v.rule,
        pkt.proto,
        v4(&pkt.src),
        pkt.sport,
        v4(&pkt.dst),
        pkt.dport
    );
}

#[inline(never)]
fn verdict_v6(pkt: &Packet, v: &VerdictLog) {
    info!(
        &(),
        "verdict dir={} action={} endpoint={} policy={} rule={} proto={} {:i}:{} -> {:i}:{}",
        v.dir,
        v.action,
        v.endpoint_id,
        v.policy,
        v.rule,
        pkt.proto,
        pkt.src,
        pkt.sport,
        pkt.dst,
        pkt.dport
    );
}

/// The IPv4 address in the first four bytes, as the `u32` aya-log prints dotted.
#[inline(always)]
fn v4(a: &[u8; 16]) -> u32 {
    u32::from_be_bytes([a[0], a[1], a[2], a[3]])
}
