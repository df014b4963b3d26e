//! `enforcer_bench_floor`: the least any stateful enforcer must do per packet, for the
//! benchmark suite's floor ratio (`cargo xtask bench`, metric `p2_*`). It is never
//! attached by the agent.
//!
//! Per packet: parse Ethernet, IP and L4 with the same [`packet`] module as the real
//! programs, build the same conntrack tuple, and do one hash lookup in
//! [`ENF_BENCH_FLOOR`], a hash map of `CONNTRACK_MAX` entries. Found: pass; not found:
//! drop. No config, endpoint, policy or counter.
//!
//! The map is created with `BPF_F_NO_PREALLOC`, so it costs no kernel memory while
//! unused (the agent loads the object with it but never pins or fills it). A
//! preallocated hash would have the same lookup cost; an LRU hash would add the LRU
//! reference bit write, which the real conntrack (LRU) pays.

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, TC_ACT_OK, TC_ACT_SHOT},
    macros::map,
    maps::HashMap,
    programs::TcContext,
};
use enforcer_common::{CONNTRACK_MAX, CtKey, CtValue};

use crate::{
    conntrack,
    packet::{self, Frame},
};

#[map]
pub static ENF_BENCH_FLOOR: HashMap<CtKey, CtValue> =
    HashMap::with_max_entries(CONNTRACK_MAX, BPF_F_NO_PREALLOC);

#[inline(always)]
pub fn run(ctx: &TcContext) -> i32 {
    let Ok(Frame::Ip(pkt)) = packet::parse(ctx) else {
        return TC_ACT_SHOT;
    };
    let key = conntrack::forward_key(&pkt);
    // SAFETY: the value is only tested for presence, never read.
    if unsafe { ENF_BENCH_FLOOR.get(&key) }.is_some() {
        TC_ACT_OK
    } else {
        TC_ACT_SHOT
    }
}
