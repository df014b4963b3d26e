//! Bytes on the wire, for raw sockets and hand-made encapsulation: the Internet
//! checksum (RFC 1071) and IPv4/UDP datagrams with a valid header checksum.

use std::net::Ipv4Addr;

/// The Internet checksum of `data` (an odd last byte is padded with zero).
pub fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 datagram (TTL 64, don't-fragment, header checksum set) carrying a UDP
/// datagram from `sport` to `dport` with `payload` (UDP checksum 0: none).
pub fn ipv4_udp(
    (src, sport): (Ipv4Addr, u16),
    (dst, dport): (Ipv4Addr, u16),
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let sum = internet_checksum(&p);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}
