//! `enf_bench_floor`: the least any stateful enforcer must do per packet, for the
//! benchmark suite's floor ratio (`cargo xtask bench`, metric `p2_*`). It is never
//! attached by the agent.
//!
//! Per packet: parse Ethernet, IP and L4 with the same [`packet`] module as the real
//! programs, build the same conntrack tuple, and do one hash lookup in
//! [`ENF_BENCH_FLOOR`], a hash map of `CONNTRACK_MAX` entries when benchmarking. Found: pass; not found:
//! drop. No config, endpoint, policy or counter.
//!
//! The object declares the map with one entry, so the agent (which loads the object
//! but never pins, fills or runs any of this) pays next to nothing for it; the
//! benchmark loads the object with `max_entries = CONNTRACK_MAX`
//! (`EbpfLoader::set_max_entries`), the size of the real conntrack. It is a plain hash
//! created with `BPF_F_NO_PREALLOC` (elements allocated on insert, the bucket array
//! sized by `max_entries` as in any hash): lookups cost what they cost in a
//! preallocated hash; an LRU hash (the real conntrack) adds a reference-bit write.

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, TC_ACT_OK, TC_ACT_SHOT},
    btf_maps::HashMap,
    macros::btf_map,
    programs::TcContext,
};
use enforcer_common::{CtKey, CtValue};

use crate::{
    conntrack,
    packet::{self, Frame},
};

#[btf_map]
pub static ENF_BENCH_FLOOR: HashMap<CtKey, CtValue, 1, { BPF_F_NO_PREALLOC as usize }> =
    HashMap::new();

#[inline(always)]
pub fn run(ctx: &TcContext) -> i32 {
    let Ok(Frame::Ip(pkt)) = packet::parse(ctx) else {
        return TC_ACT_SHOT;
    };
    let key = conntrack::forward_key(&pkt);
    // SAFETY: the value is only tested for presence, never read.
    if unsafe { ENF_BENCH_FLOOR.get(key) }.is_some() {
        TC_ACT_OK
    } else {
        TC_ACT_SHOT
    }
}
