//! Connection tracking: one `ENF_CONNTRACK` entry per flow, under the tuple of its first
//! packet (the forward tuple). Each hook records its own leg's approval
//! (`CT_F_EGRESS_OK` at the source's egress, `CT_F_INGRESS_OK` at the destination's
//! ingress); a packet whose *reversed* tuple has both bits is a reply.
//!
//! Entries expire by idle time (`CT_TIMEOUT_*`): the LRU map evicts under pressure, the
//! timeouts make a stale entry useless even before it is evicted.

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use enforcer_common::{
    CT_F_CLOSING, CT_F_ESTABLISHED, CT_F_FIN_FORWARD, CT_F_FIN_REVERSE, CT_F_REPLIED,
    CT_TIMEOUT_ICMP_NS, CT_TIMEOUT_OTHER_NS, CT_TIMEOUT_TCP_CLOSING_NS,
    CT_TIMEOUT_TCP_ESTABLISHED_NS, CT_TIMEOUT_TCP_SYN_NS, CT_TIMEOUT_UDP_NS, CtKey, CtValue,
    ct_stamp, ct_tag,
};

use crate::{
    maps::{ENF_CONFIG, ENF_CONNTRACK},
    packet::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, Packet},
};

/// `CLOCK_MONOTONIC_COARSE`: the monotonic clock as of the last tick (1-4 ms behind),
/// read without the TSC. Every time the programs take (conntrack idle timeouts of 5 s
/// and more, flow-report intervals and the event token bucket) is far coarser than a
/// tick; `bpf_ktime_get_ns` cost ~10 ns per call, two calls per judged packet.
/// Comparisons with a finer time written elsewhere saturate (`saturating_sub`).
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// The packet's own (forward) tuple.
#[inline(always)]
pub fn forward_key(pkt: &Packet) -> CtKey {
    let (sport, dport) = pkt.ct_ports();
    CtKey {
        src: pkt.src,
        dst: pkt.dst,
        sport,
        dport,
        proto: pkt.proto,
        family: pkt.family,
        _pad: [0; 2],
    }
}

/// The tuple a reply to this packet's flow was stored under.
#[inline(always)]
pub fn reverse_key(key: &CtKey) -> CtKey {
    CtKey {
        src: key.dst,
        dst: key.src,
        sport: key.dport,
        dport: key.sport,
        proto: key.proto,
        family: key.family,
        _pad: [0; 2],
    }
}

/// Idle timeout of an entry, by protocol and state.
#[inline(always)]
fn timeout_ns(proto: u8, flags: u32) -> u64 {
    match proto {
        IPPROTO_TCP if flags & CT_F_CLOSING != 0 => CT_TIMEOUT_TCP_CLOSING_NS,
        // Until both legs approved and the peer answered, a TCP flow is in its
        // handshake.
        IPPROTO_TCP
            if flags & (CT_F_ESTABLISHED | CT_F_REPLIED) == CT_F_ESTABLISHED | CT_F_REPLIED =>
        {
            CT_TIMEOUT_TCP_ESTABLISHED_NS
        }
        IPPROTO_TCP => CT_TIMEOUT_TCP_SYN_NS,
        IPPROTO_UDP | IPPROTO_UDPLITE => CT_TIMEOUT_UDP_NS,
        IPPROTO_ICMP | IPPROTO_ICMPV6 => CT_TIMEOUT_ICMP_NS,
        _ => CT_TIMEOUT_OTHER_NS,
    }
}

/// The result of a lookup: a live (not expired) entry, a pointer into the map and a
/// copy of its value; or, when absent or expired, a null pointer and an all-zero value
/// (no flag set).
///
/// Not an `Option`: the payload of a `None` is undefined, and LLVM may then spill an
/// uninitialised register on the path where the entry is absent, which the verifier
/// refuses (`!read_ok`). Every field here is defined on every path.
pub struct Entry {
    ptr: *mut CtValue,
    pub value: CtValue,
}

/// Looks `key` up; an expired entry counts as absent.
#[inline(always)]
pub fn lookup(key: &CtKey, now: u64) -> Entry {
    let absent = Entry {
        ptr: core::ptr::null_mut(),
        value: CtValue::default(),
    };
    let Some(ptr) = ENF_CONNTRACK.get_ptr_mut(key) else {
        return absent;
    };
    // SAFETY: the pointer is a live map value of type CtValue; the copy is a plain read
    // (another CPU may update it concurrently, which at worst yields a stale copy).
    let value = unsafe { *ptr };
    // An element given to another tuple since the lookup (`ct_tag`), or written by a
    // stale pointer for another tuple, is not this flow's entry: its age is pushed past
    // every timeout (2^47 ns is 39 hours). Arithmetic, not a branch: a test of its own
    // doubled the paths the verifier walks through every lookup, and `enf_host_eg`
    // went over its budget.
    let foreign = u64::from((value.flags ^ ct_tag(key)) >> 16);
    let age = now.saturating_sub(value.last_seen_ns) | foreign << 47;
    if age > timeout_ns(key.proto, value.flags) {
        return absent;
    }
    Entry { ptr, value }
}

impl Entry {
    /// A live entry was found.
    #[inline(always)]
    pub fn exists(&self) -> bool {
        !self.ptr.is_null()
    }

    /// Records a packet of the flow: refreshes `last_seen_ns`; `reverse`: the packet
    /// goes the other way (a reply: the peer answered). The connection is closing on
    /// an RST, or once each side sent a FIN: a FIN from one side only (a half-closed
    /// stream) keeps the established timeout.
    #[inline(always)]
    pub fn touch(&self, pkt: &Packet, now: u64, reverse: bool) {
        if !self.exists() {
            return;
        }
        let mut add = if reverse { CT_F_REPLIED } else { 0 };
        if pkt.is_tcp_fin() {
            add |= if reverse {
                CT_F_FIN_REVERSE
            } else {
                CT_F_FIN_FORWARD
            };
        }
        let flags = self.value.flags | add;
        let fins = CT_F_FIN_FORWARD | CT_F_FIN_REVERSE;
        let closing = pkt.is_tcp_rst() || flags & fins == fins;
        let flags = if closing { flags | CT_F_CLOSING } else { flags };
        // Only the bits this packet adds (a reply, a FIN, closing) are ORed in, never the
        // approvals or the tag already read: the element may have gone to another tuple
        // since the lookup (see `update`), and these bits only shorten or lengthen its
        // idle timeout, they approve nothing.
        let added = flags & !self.value.flags;
        // SAFETY: a non-null pointer came from a lookup in this program run; map values
        // stay valid for the whole run (RCU).
        unsafe {
            (*self.ptr).last_seen_ns = now;
            if added != 0 {
                (*self.ptr).flags |= added;
            }
        }
    }

    /// Every bit of `flags` (non-zero) is set; never for an absent entry.
    pub fn has(&self, flags: u32) -> bool {
        self.value.flags & flags == flags
    }
}

/// Whether conntrack already lets the packet through at the hook whose leg bit is
/// `leg`: (a) this leg approved the flow (`fwd`, the forward entry), or (b) the packet
/// may be a reply ([`Packet::may_be_reply`]) and its flow is established. A TCP SYN
/// without ACK opens a connection and is always judged by policy. Refreshes the entry
/// that matched.
#[inline(always)]
pub fn passes(pkt: &Packet, key: &CtKey, fwd: &Entry, leg: u32, now: u64) -> bool {
    if pkt.is_tcp_syn_only() {
        return false;
    }
    if fwd.has(leg) {
        fwd.touch(pkt, now, false);
        return true;
    }
    if !pkt.may_be_reply() {
        return false;
    }
    let r = lookup(&reverse_key(key), now);
    if r.has(CT_F_ESTABLISHED) {
        r.touch(pkt, now, true);
        return true;
    }
    false
}

/// Writes the entry (creating or replacing it), for a flow judged in slot
/// `generation`: the entry records the slot with the epoch it holds
/// (`enforcer_common::ct_stamp`), read from `Config` now. A switch between the
/// caller's read of `Config` and this one moves the epoch of neither slot: the slot
/// the caller judged in is rewritten only after it stopped being live and every
/// program that saw it live has finished (the agent's RCU wait).
#[inline(always)]
pub fn upsert(key: &CtKey, flags: u32, generation: u32, now: u64) {
    let value = stamped(key, flags, generation, now);
    // A full LRU map evicts; an error here only costs the flow its fast path.
    let _ = ENF_CONNTRACK.insert(key, value, 0);
}

/// The value [`upsert`] and [`update`] write: `flags` with the key's tag, the slot
/// `generation` stamped with the epoch `Config` gives it now.
#[inline(always)]
fn stamped(key: &CtKey, flags: u32, generation: u32, now: u64) -> CtValue {
    let generation = match ENF_CONFIG.get(0) {
        Some(cfg) => ct_stamp(cfg, generation),
        None => generation,
    };
    CtValue::for_key(key, now, flags, generation)
}

/// [`upsert`] for a flow whose entry `entry` was looked up under `key` in this run:
/// a live entry is rewritten in place (no LRU node taken and given back, no second
/// hash of the tuple); an absent or expired one is inserted. The flags word (with the
/// tuple's tag, see `enforcer_common::ct_tag`) is written last and in one store, so a
/// write through a pointer whose element was meanwhile given to another tuple leaves
/// that tuple an entry with a foreign tag, which no program honours.
#[inline(always)]
pub fn update(key: &CtKey, entry: &Entry, flags: u32, generation: u32, now: u64) {
    if !entry.exists() {
        upsert(key, flags, generation, now);
        return;
    }
    let value = stamped(key, flags, generation, now);
    // SAFETY: a non-null pointer came from a lookup in this program run; map values
    // stay valid memory for the whole run (RCU), whoever owns them now (see above).
    unsafe {
        (*entry.ptr).last_seen_ns = value.last_seen_ns;
        (*entry.ptr).generation = value.generation;
        core::ptr::write_volatile(&raw mut (*entry.ptr).flags, value.flags);
    }
}

/// Forgets the flow (a re-opening SYN was denied: old approvals must not let the new
/// connection's later packets through).
#[inline(always)]
pub fn remove(key: &CtKey) {
    let _ = ENF_CONNTRACK.remove(key);
}
