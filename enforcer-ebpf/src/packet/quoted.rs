//! The packet an ICMP error quotes (related ICMP, see `related`): part of the packet
//! parser, its reads bounds-checked the same way.

use enforcer_common::{CtKey, FAMILY_V4, FAMILY_V6};

use super::{
    Bytes, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST,
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, Packet,
    advance, ipv6_upper_layer, load,
};
use crate::Drop;

/// The lengths of an IPv4 header without options and of an IPv6 header.
const IPV4_HDR_LEN: usize = 20;
const IPV6_HDR_LEN: usize = 40;

/// ICMP error types that quote the packet that caused them ([`Packet::is_icmp_error`]).
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAMETER_PROB: u8 = 12;
/// ICMPv6 errors: destination unreachable (1), packet too big (2), time exceeded (3),
/// parameter problem (4).
const ICMPV6_DEST_UNREACH: u8 = 1;
const ICMPV6_PARAM_PROB: u8 = 4;
/// The ICMP/ICMPv6 header before an error's quoted packet (type, code, checksum, 4
/// bytes of unused / MTU / pointer).
const ICMP_HDR_LEN: usize = 8;

impl Packet {
    /// An ICMP error that quotes the packet that caused it ([`quoted_key`]): destination
    /// unreachable (fragmentation needed included), time exceeded, parameter problem
    /// (ICMP types 3, 11, 12); destination unreachable, packet too big, time exceeded,
    /// parameter problem (ICMPv6 types 1-4).
    #[inline(always)]
    pub fn is_icmp_error(&self) -> bool {
        match (self.family, self.proto) {
            (FAMILY_V4, IPPROTO_ICMP) => matches!(
                self.icmp_type,
                ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROB
            ),
            (FAMILY_V6, IPPROTO_ICMPV6) => {
                (ICMPV6_DEST_UNREACH..=ICMPV6_PARAM_PROB).contains(&self.icmp_type)
            }
            _ => false,
        }
    }
}

/// The conntrack tuple (as [`Packet::ct_ports`] builds it) of the packet an ICMP
/// error (`outer`, [`Packet::is_icmp_error`]) quotes after its 8-byte header: its IP
/// header (same family as the error; IPv6 extension headers walked as the packet's own
/// are) and the first 8 bytes of its L4 header, all a router must quote (RFC 792,
/// RFC 4443 2.4): ports, or an echo type and id. Written into `key` (all zero on
/// entry). A truncated or malformed quote, a quoted non-first fragment, or a quoted
/// ICMP message other than an echo is an error: the error is then judged as new
/// traffic.
///
/// The addresses are copied straight into `key` (map memory, see `related`), no stack
/// copy.
#[inline(always)]
pub fn quoted_key<C: Bytes>(ctx: &C, outer: &Packet, key: &mut CtKey) -> Result<(), Drop> {
    let l3 = advance(outer.l4_off as usize, ICMP_HDR_LEN)?;
    let l4 = if outer.family == FAMILY_V4 {
        // Version and IHL (byte 0), flags and fragment offset (6-7), protocol (9),
        // addresses (12-19): read one by one, the addresses straight into `key`.
        let vihl = load::<u8, _>(ctx, l3)?;
        let ihl = usize::from(vihl & 0x0f) * 4;
        let frag_hi = load::<u8, _>(ctx, advance(l3, 6)?)?;
        let frag_lo = load::<u8, _>(ctx, advance(l3, 7)?)?;
        if vihl >> 4 != 4 || ihl < IPV4_HDR_LEN || frag_hi & 0x1f != 0 || frag_lo != 0 {
            return Err(Drop::Malformed);
        }
        key.proto = load::<u8, _>(ctx, advance(l3, 9)?)?;
        let src = key.src.first_chunk_mut::<4>().ok_or(Drop::Malformed)?;
        ctx.load_into(advance(l3, 12)?, src)?;
        let dst = key.dst.first_chunk_mut::<4>().ok_or(Drop::Malformed)?;
        ctx.load_into(advance(l3, 16)?, dst)?;
        // Loading the L4 bytes below proves the options are there.
        advance(l3, ihl)?
    } else {
        // Version (first nibble), next header (byte 6), addresses (bytes 8-39).
        if load::<u8, _>(ctx, l3)? >> 4 != 6 {
            return Err(Drop::Malformed);
        }
        let next = load::<u8, _>(ctx, advance(l3, 6)?)?;
        ctx.load_into(advance(l3, 8)?, &mut key.src)?;
        ctx.load_into(advance(l3, 24)?, &mut key.dst)?;
        let (proto, l4) = ipv6_upper_layer(ctx, next, advance(l3, IPV6_HDR_LEN)?)?;
        key.proto = proto;
        l4
    };
    key.family = outer.family;
    let b = load::<[u8; 8], _>(ctx, l4)?;
    let port = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let (sport, dport) = match (key.family, key.proto) {
        (_, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_UDPLITE) => (port(0), port(2)),
        (FAMILY_V4, IPPROTO_ICMP) | (FAMILY_V6, IPPROTO_ICMPV6) => {
            let (request, reply) = if key.family == FAMILY_V4 {
                (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY)
            } else {
                (ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY)
            };
            if b[0] == request {
                (port(4), 0)
            } else if b[0] == reply {
                (0, port(4))
            } else {
                return Err(Drop::Malformed);
            }
        }
        _ => (0, 0),
    };
    key.sport = sport;
    key.dport = dport;
    Ok(())
}
