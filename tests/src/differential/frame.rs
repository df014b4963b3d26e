//! The Ethernet frame of a generated packet: the details the evaluator does not see
//! (TCP flags, ICMP echo id, IPv4 options, IPv6 extension headers, the packet an ICMP
//! error quotes) come from a stable hash of the packet, so a packet always makes the
//! same frame and a shrunk reproducer replays exactly.

use std::net::IpAddr;

use enforcer::eval::Packet;
use enforcer::policy::is_icmp;
use enforcer_common::CtKey;

use crate::bpf::dataplane::ct_key;
use crate::bpf::packet::{ACK, Ext, FIN, PSH, SYN, V4, icmp, sctp, tcp, udp, v6};

/// A stable hash of the packet.
pub(super) fn mix(packet: &Packet) -> u64 {
    let text = format!("{packet:?}");
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

const TCP_FLAGS: [u8; 8] = [SYN, SYN, SYN, SYN, ACK, PSH | ACK, SYN | ACK, FIN | ACK];

/// An ICMP message that quotes the packet that caused it: ICMP destination unreachable,
/// time exceeded, parameter problem; `ICMPv6` destination unreachable, packet too big,
/// time exceeded, parameter problem (what the programs' related check parses).
pub fn is_icmp_error(packet: &Packet) -> bool {
    match packet.proto {
        1 => matches!(packet.icmp_type, 3 | 11 | 12),
        58 => (1..=4).contains(&packet.icmp_type),
        _ => false,
    }
}

pub(super) fn is_echo_request(packet: &Packet) -> bool {
    is_icmp(packet.proto) && packet.icmp_type == if packet.src.is_ipv4() { 8 } else { 128 }
}

fn is_echo_reply(packet: &Packet) -> bool {
    is_icmp(packet.proto) && packet.icmp_type == if packet.src.is_ipv4() { 0 } else { 129 }
}

/// The echo id of an echo request or reply.
pub(super) fn echo_id(packet: &Packet) -> u16 {
    (mix(packet) >> 8) as u16
}

/// The extension headers the IPv6 frame of a packet carries.
pub(super) fn v6_exts(packet: &Packet) -> &'static [Ext] {
    match (mix(packet) >> 24) % 6 {
        0 => &[Ext::HopByHop],
        1 => &[Ext::Fragment {
            offset_units: 0,
            more: true,
        }],
        2 => &[Ext::DstOpts, Ext::Routing],
        _ => &[],
    }
}

/// The Ethernet frame of a packet and the conntrack tuple the programs key it by.
pub fn frame(packet: &Packet) -> (Vec<u8>, CtKey) {
    let h = mix(packet);
    let (l4, sport, dport) = match packet.proto {
        6 => (
            tcp(
                packet.src_port,
                packet.dst_port,
                TCP_FLAGS[(h % 8) as usize],
            ),
            packet.src_port,
            packet.dst_port,
        ),
        17 | 136 => (
            udp(packet.src_port, packet.dst_port),
            packet.src_port,
            packet.dst_port,
        ),
        132 => (
            sctp(packet.src_port, packet.dst_port),
            packet.src_port,
            packet.dst_port,
        ),
        p if is_icmp(p) => {
            let message = u16::from(packet.icmp_type) << 8 | u16::from(packet.icmp_code);
            let id = echo_id(packet);
            if is_echo_request(packet) {
                (icmp(packet.icmp_type, packet.icmp_code, id), id, 0)
            } else if is_echo_reply(packet) {
                (icmp(packet.icmp_type, packet.icmp_code, id), 0, id)
            } else if is_icmp_error(packet) {
                let quote = unrelated_quote(packet, h);
                (
                    icmp_error(packet.icmp_type, packet.icmp_code, &quote),
                    message,
                    message,
                )
            } else {
                (
                    icmp(packet.icmp_type, packet.icmp_code, id),
                    message,
                    message,
                )
            }
        }
        _ => (vec![0; 8], 0, 0),
    };
    let bytes = match (packet.src, packet.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut header = V4::new(s, d, packet.proto);
            if (h >> 24).is_multiple_of(4) {
                // NOP, NOP, NOP, end of options: the L4 offset comes from IHL.
                header = header.options(&[1, 1, 1, 0]);
            }
            header.frame(&l4)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => v6(s, d, v6_exts(packet), packet.proto, &l4),
        _ => panic!("mixed-family packet {packet:?}"),
    };
    (
        bytes,
        ct_key(packet.src, packet.dst, sport, dport, packet.proto),
    )
}

/// An ICMP error's L4 bytes: type, code, checksum (not checked), 4 bytes of unused /
/// next-hop MTU / pointer (MTU 1280), and the quoted packet (IP header onwards).
pub(super) fn icmp_error(kind: u8, code: u8, quote: &[u8]) -> Vec<u8> {
    let mut l4 = vec![kind, code, 0, 0, 0, 0, 0x05, 0x00];
    l4.extend_from_slice(quote);
    l4
}

/// An IP packet without Ethernet header, no options or extension headers.
pub(super) fn ip_packet(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> Vec<u8> {
    let frame = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => V4::new(s, d, proto).frame(l4),
        (IpAddr::V6(s), IpAddr::V6(d)) => v6(s, d, &[], proto, l4),
        _ => panic!("mixed-family quote {src} → {dst}"),
    };
    frame[14..].to_vec()
}

/// What a new-traffic ICMP error (conntrack is empty, so it relates to nothing) quotes:
/// a packet its destination sent (TCP or UDP to its source or to a third address, or
/// an echo request), the same packet cut short, or a packet its source sent (the wrong
/// way round).
fn unrelated_quote(packet: &Packet, h: u64) -> Vec<u8> {
    let (me, them) = (packet.dst, packet.src);
    let third: IpAddr = if me.is_ipv4() {
        [198, 18, 9, 9].into()
    } else {
        [0x2001, 2, 0, 9, 0, 0, 0, 9].into()
    };
    let (sport, dport) = ((h >> 32) as u16, (h >> 48) as u16);
    let (icmp_proto, echo) = if me.is_ipv4() { (1, 8) } else { (58, 128) };
    match (h >> 40) % 5 {
        0 => ip_packet(me, them, 6, &tcp(sport, dport, SYN)),
        1 => ip_packet(me, third, 17, &udp(sport, dport)),
        2 => ip_packet(me, them, icmp_proto, &icmp(echo, 0, sport)),
        3 => {
            // The IP header and only half of the 8 bytes a router must quote.
            let mut q = ip_packet(me, them, 17, &udp(sport, dport));
            q.truncate(q.len() - 4);
            q
        }
        _ => ip_packet(them, me, 6, &tcp(sport, dport, ACK)),
    }
}

/// The frame details of [`frame`], for reproducers.
pub fn describe_frame(packet: &Packet) -> String {
    let h = mix(packet);
    let mut parts = Vec::new();
    if packet.proto == 6 {
        parts.push(format!("TCP flags {:#04x}", TCP_FLAGS[(h % 8) as usize]));
    }
    if is_icmp_error(packet) {
        parts.push(
            match (h >> 40) % 5 {
                0 => "quoting a TCP SYN from its destination",
                1 => "quoting UDP from its destination to a third address",
                2 => "quoting an echo request from its destination",
                3 => "quoting a truncated UDP header",
                _ => "quoting a TCP packet from its source (the wrong way)",
            }
            .to_owned(),
        );
    } else if is_icmp(packet.proto) {
        parts.push(format!("ICMP id {}", echo_id(packet)));
    }
    let extra = (h >> 24) % if packet.src.is_ipv4() { 4 } else { 6 };
    match (packet.src.is_ipv4(), extra) {
        (true, 0) => parts.push("IPv4 options".to_owned()),
        (false, 0) => parts.push("hop-by-hop header".to_owned()),
        (false, 1) => parts.push("first-fragment header".to_owned()),
        (false, 2) => parts.push("destination options + routing headers".to_owned()),
        _ => {}
    }
    if parts.is_empty() {
        "plain frame".to_owned()
    } else {
        parts.join(", ")
    }
}
