//! Related ICMP: an ICMP or ICMPv6 error (`Packet::is_icmp_error`) passes, counted
//! `allow_related`, when the packet it quotes belongs to a flow conntrack approves and
//! the error travels the way that flow allows; otherwise it is judged by policy as new
//! traffic, like any other ICMP message.
//!
//! The quoted packet was sent by the error's destination, so the error must go to the
//! quoted source (`dst == quoted src`). The quoted tuple is then either the flow's
//! forward tuple (the error travels back to the initiator: allowed as a reply would
//! be, `reply_legs`) or the reverse of it (the quoted packet was a reply; the error
//! travels to the responder: allowed as a forward packet at this hook, `forward_leg`).
//! Nothing is created or refreshed: an error never keeps a flow alive.

use core::ffi::c_void;

use enforcer_common::CtKey;

use crate::{
    conntrack,
    maps::ENF_RELATED_KEY,
    packet::{self, Packet, RawContext},
};

/// Whether `pkt` (the packet of `ctx`, an skb or an XDP buffer) is an error related
/// to an approved flow, see the module doc. Cheap for anything but an ICMP error; the
/// quote is parsed out of line (its tuples live in that frame, not the program's).
#[inline(always)]
pub fn passes<C: RawContext>(ctx: &C, pkt: &Packet, forward_leg: u32, reply_legs: u32) -> bool {
    pkt.is_icmp_error() && quote_approved::<C>(ctx.raw(), pkt, forward_leg, reply_legs)
}

#[inline(never)]
fn quote_approved<C: RawContext>(
    raw: *mut c_void,
    pkt: &Packet,
    forward_leg: u32,
    reply_legs: u32,
) -> bool {
    let ctx = C::from_raw(raw);
    let Some(slot) = ENF_RELATED_KEY.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's slot of a per-CPU array, valid for the whole run; a program
    // is not preempted by another on the same CPU, and nothing else writes it.
    let key = unsafe { &mut *slot };
    *key = CtKey {
        src: [0; 16],
        dst: [0; 16],
        sport: 0,
        dport: 0,
        proto: 0,
        family: 0,
        _pad: [0; 2],
    };
    if packet::quoted_key(&ctx, pkt, key).is_err() || !packet::addr_eq(&pkt.dst, &key.src) {
        return false;
    }
    let now = conntrack::now_ns();
    if conntrack::lookup(key, now).has(reply_legs) {
        return true;
    }
    // The reverse tuple, in place.
    core::mem::swap(&mut key.src, &mut key.dst);
    core::mem::swap(&mut key.sport, &mut key.dport);
    conntrack::lookup(key, now).has(forward_leg)
}
