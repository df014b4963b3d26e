//! Packet parsing: the only module that reads the packet or the `__sk_buff`.
//!
//! Every read goes through [`load`], which copies bytes with `bpf_skb_load_bytes`: the
//! helper checks the offset against the packet length (linear and paged parts alike)
//! and fails on a short packet, so a truncated header is an error here, never a read
//! past the end. Offsets are computed from the headers themselves: the IPv4 L4 offset
//! from IHL (options work), the IPv6 L4 offset by walking a bounded number of
//! extension headers.

use aya_ebpf::{
    helpers::generated::bpf_xdp_load_bytes,
    programs::{TcContext, XdpContext},
};
use enforcer_common::{FAMILY_V4, FAMILY_V6};

use crate::Drop;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
/// VLAN tags skipped on host interfaces (802.1ad outer + 802.1Q inner at most).
const MAX_VLAN_TAGS: usize = 2;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_SCTP: u8 = 132;
pub const IPPROTO_UDPLITE: u8 = 136;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_DSTOPTS: u8 = 60;

/// Extension headers walked before giving up (the packet is then malformed for us).
/// Real traffic carries zero to two; the bound keeps the verifier's loop finite.
const IPV6_MAX_EXT_HEADERS: u32 = 6;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_ECHO_REPLY: u8 = 129;
/// ICMPv6 neighbor discovery: router solicitation/advertisement, neighbor
/// solicitation/advertisement, redirect.
const ICMPV6_NDP_FIRST: u8 = 133;
const ICMPV6_NDP_LAST: u8 = 137;

/// What the programs need to know about an IP packet. Addresses are in network order
/// (IPv4 in the first 4 bytes, the rest zero), ports in host order.
pub struct Packet {
    pub family: u8,
    /// L4 protocol (after IPv6 extension headers).
    pub proto: u8,
    /// TCP flags (0 for other protocols).
    pub tcp_flags: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// TCP/UDP/UDPLite/SCTP source port; 0 otherwise.
    pub sport: u16,
    /// TCP/UDP/UDPLite/SCTP destination port; 0 otherwise.
    pub dport: u16,
    /// ICMP/ICMPv6 type and code (0 otherwise).
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// ICMP/ICMPv6 echo identifier (0 for other messages).
    pub icmp_id: u16,
}

/// What the Ethernet frame carries.
pub enum Frame {
    Arp,
    Ip(Packet),
}

impl Packet {
    pub fn is_tcp_syn_only(&self) -> bool {
        self.proto == IPPROTO_TCP && self.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
    }

    pub fn is_tcp_fin_or_rst(&self) -> bool {
        self.proto == IPPROTO_TCP && self.tcp_flags & (TCP_FIN | TCP_RST) != 0
    }

    pub fn is_icmpv6(&self) -> bool {
        self.family == FAMILY_V6 && self.proto == IPPROTO_ICMPV6
    }

    /// ICMPv6 neighbor discovery, which Calico always allows.
    pub fn is_ndp(&self) -> bool {
        self.is_icmpv6() && (ICMPV6_NDP_FIRST..=ICMPV6_NDP_LAST).contains(&self.icmp_type)
    }

    /// `fe80::/10` source.
    pub fn src_is_link_local_v6(&self) -> bool {
        self.family == FAMILY_V6 && self.src[0] == 0xfe && self.src[1] & 0xc0 == 0x80
    }

    /// The "port" the `ENF_PORTS` trie is keyed by: the destination port for protocols
    /// with ports, `type << 8 | code` for ICMP and ICMPv6, 0 for anything else.
    #[inline(always)]
    pub fn cell_port(&self) -> u16 {
        match self.proto {
            IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_UDPLITE => self.dport,
            IPPROTO_ICMP | IPPROTO_ICMPV6 => {
                u16::from(self.icmp_type) << 8 | u16::from(self.icmp_code)
            }
            _ => 0,
        }
    }

    /// The (sport, dport) of the conntrack tuple. ICMP echo requests use
    /// `(id, 0)` and replies `(0, id)`, so a reply's reversed tuple is its request's;
    /// other ICMP messages use `(0, 0)`.
    #[inline(always)]
    pub fn ct_ports(&self) -> (u16, u16) {
        match (self.family, self.proto) {
            (_, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_UDPLITE) => {
                (self.sport, self.dport)
            }
            (FAMILY_V4, IPPROTO_ICMP) | (FAMILY_V6, IPPROTO_ICMPV6) => match self.icmp_type {
                ICMP_ECHO_REQUEST | ICMPV6_ECHO_REQUEST => (self.icmp_id, 0),
                ICMP_ECHO_REPLY | ICMPV6_ECHO_REPLY => (0, self.icmp_id),
                _ => (0, 0),
            },
            _ => (0, 0),
        }
    }
}

/// Where packet bytes come from: an skb (TC) or an XDP buffer. Both copy through a
/// helper that checks the offset against the packet length.
pub trait Bytes {
    /// Copies `N` bytes at `offset` out of the packet; fails if the packet is shorter.
    fn load<const N: usize>(&self, offset: usize) -> Result<[u8; N], Drop>;
}

impl Bytes for TcContext {
    #[inline(always)]
    fn load<const N: usize>(&self, offset: usize) -> Result<[u8; N], Drop> {
        TcContext::load::<[u8; N]>(self, offset).map_err(|_| Drop::Malformed)
    }
}

impl Bytes for XdpContext {
    #[inline(always)]
    fn load<const N: usize>(&self, offset: usize) -> Result<[u8; N], Drop> {
        let mut buf = [0u8; N];
        let offset = u32::try_from(offset).map_err(|_| Drop::Malformed)?;
        // SAFETY: `buf` is a valid N-byte buffer on our stack; the helper checks
        // offset + N against the XDP buffer (linear and fragments) and fails otherwise.
        let ret =
            unsafe { bpf_xdp_load_bytes(self.ctx, offset, buf.as_mut_ptr().cast(), N as u32) };
        if ret == 0 {
            Ok(buf)
        } else {
            Err(Drop::Malformed)
        }
    }
}

#[inline(always)]
fn load<const N: usize, C: Bytes>(ctx: &C, offset: usize) -> Result<[u8; N], Drop> {
    ctx.load::<N>(offset)
}

/// `off + delta`, an error instead of an overflow (offsets come from the packet).
#[inline(always)]
fn advance(off: usize, delta: usize) -> Result<usize, Drop> {
    off.checked_add(delta).ok_or(Drop::Malformed)
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// Parses the frame: Ethernet, then ARP, IPv4 or IPv6, then the L4 header. VLAN tags
/// are not expected on pod interfaces: such frames are an unsupported L3.
#[inline(always)]
pub fn parse(ctx: &TcContext) -> Result<Frame, Drop> {
    parse_at(ctx, 12, be16(load::<2, _>(ctx, 12)?))
}

/// Parses a frame seen on a host interface: like [`parse`], after up to
/// [`MAX_VLAN_TAGS`] 802.1Q/802.1ad tags (the policy is the host endpoint's whatever
/// the VLAN).
#[inline(always)]
pub fn parse_host<C: Bytes>(ctx: &C) -> Result<Frame, Drop> {
    let mut type_off = 12;
    let mut ethertype = be16(load::<2, _>(ctx, type_off)?);
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        // [TCI:2][inner ethertype:2]
        type_off = advance(type_off, 4)?;
        ethertype = be16(load::<2, _>(ctx, type_off)?);
    }
    parse_at(ctx, type_off, ethertype)
}

/// The frame's L3 starts right after the ethertype at `type_off`.
#[inline(always)]
fn parse_at<C: Bytes>(ctx: &C, type_off: usize, ethertype: u16) -> Result<Frame, Drop> {
    let l3 = advance(type_off, 2)?;
    let mut pkt = Packet {
        family: 0,
        proto: 0,
        tcp_flags: 0,
        src: [0; 16],
        dst: [0; 16],
        sport: 0,
        dport: 0,
        icmp_type: 0,
        icmp_code: 0,
        icmp_id: 0,
    };
    let l4 = match ethertype {
        ETH_P_ARP => return Ok(Frame::Arp),
        ETH_P_IP => parse_ipv4(ctx, l3, &mut pkt)?,
        ETH_P_IPV6 => parse_ipv6(ctx, l3, &mut pkt)?,
        _ => return Err(Drop::UnsupportedL3),
    };
    parse_l4(ctx, &mut pkt, l4)?;
    Ok(Frame::Ip(pkt))
}

/// Fills the IPv4 fields; returns the L4 offset (from IHL, so options are skipped).
#[inline(always)]
fn parse_ipv4<C: Bytes>(ctx: &C, l3: usize, pkt: &mut Packet) -> Result<usize, Drop> {
    let h = load::<20, _>(ctx, l3)?;
    if h[0] >> 4 != 4 {
        return Err(Drop::Malformed);
    }
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if ihl < 20 {
        return Err(Drop::Malformed);
    }
    if ihl > 20 {
        // The options must be there too, even for protocols whose L4 header we do not read.
        load::<1, _>(ctx, advance(l3, ihl - 1)?)?;
    }
    // Fragment offset in 8-byte units; non-zero = not the first fragment (no L4 header).
    if be16([h[6], h[7]]) & 0x1fff != 0 {
        return Err(Drop::Fragment);
    }
    pkt.family = FAMILY_V4;
    pkt.proto = h[9];
    pkt.src[..4].copy_from_slice(&h[12..16]);
    pkt.dst[..4].copy_from_slice(&h[16..20]);
    advance(l3, ihl)
}

/// Fills the IPv6 fields; returns the L4 offset after the extension headers.
#[inline(always)]
fn parse_ipv6<C: Bytes>(ctx: &C, l3: usize, pkt: &mut Packet) -> Result<usize, Drop> {
    let h = load::<8, _>(ctx, l3)?;
    if h[0] >> 4 != 6 {
        return Err(Drop::Malformed);
    }
    pkt.family = FAMILY_V6;
    pkt.src = load::<16, _>(ctx, advance(l3, 8)?)?;
    pkt.dst = load::<16, _>(ctx, advance(l3, 24)?)?;
    let mut next = h[6];
    let mut off = advance(l3, 40)?;
    let mut walked = 0;
    loop {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                // [next header, length in 8-byte units not counting the first 8]
                let e = load::<2, _>(ctx, off)?;
                next = e[0];
                off = advance(off, (usize::from(e[1]) + 1) * 8)?;
            }
            IPPROTO_FRAGMENT => {
                // [next header, reserved, offset:13 res:2 M:1, identification:32]
                let e = load::<8, _>(ctx, off)?;
                if be16([e[2], e[3]]) >> 3 != 0 {
                    return Err(Drop::Fragment);
                }
                next = e[0];
                off = advance(off, 8)?;
            }
            // Anything else (TCP, UDP, ICMPv6, AH, ESP, no-next-header...) ends the walk:
            // AH and ESP are judged as protocols of their own.
            _ => break,
        }
        walked += 1;
        if walked >= IPV6_MAX_EXT_HEADERS {
            return Err(Drop::Malformed);
        }
    }
    pkt.proto = next;
    Ok(off)
}

/// Fills ports, TCP flags or ICMP type/code/id from the L4 header at `off`.
#[inline(always)]
fn parse_l4<C: Bytes>(ctx: &C, pkt: &mut Packet, off: usize) -> Result<(), Drop> {
    match pkt.proto {
        IPPROTO_TCP => {
            let t = load::<20, _>(ctx, off)?;
            if t[12] >> 4 < 5 {
                return Err(Drop::Malformed);
            }
            pkt.sport = be16([t[0], t[1]]);
            pkt.dport = be16([t[2], t[3]]);
            pkt.tcp_flags = t[13];
        }
        IPPROTO_UDP | IPPROTO_UDPLITE => {
            let u = load::<8, _>(ctx, off)?;
            pkt.sport = be16([u[0], u[1]]);
            pkt.dport = be16([u[2], u[3]]);
        }
        IPPROTO_SCTP => {
            // Common header: ports, verification tag, checksum.
            let s = load::<12, _>(ctx, off)?;
            pkt.sport = be16([s[0], s[1]]);
            pkt.dport = be16([s[2], s[3]]);
        }
        IPPROTO_ICMP if pkt.family == FAMILY_V4 => {
            // type, code, checksum, then 4 bytes (id and sequence for echo).
            let i = load::<8, _>(ctx, off)?;
            pkt.icmp_type = i[0];
            pkt.icmp_code = i[1];
            if matches!(i[0], ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY) {
                pkt.icmp_id = be16([i[4], i[5]]);
            }
        }
        IPPROTO_ICMPV6 if pkt.family == FAMILY_V6 => {
            let i = load::<4, _>(ctx, off)?;
            pkt.icmp_type = i[0];
            pkt.icmp_code = i[1];
            if matches!(i[0], ICMPV6_ECHO_REQUEST | ICMPV6_ECHO_REPLY) {
                pkt.icmp_id = be16(load::<2, _>(ctx, advance(off, 4)?)?);
            }
        }
        _ => {}
    }
    Ok(())
}

/// The interface the program runs on.
#[inline(always)]
pub fn ifindex(ctx: &TcContext) -> u32 {
    // SAFETY: `skb` is the context pointer the kernel passed to the program; reading
    // `ifindex` from a TC program's `__sk_buff` is allowed by the verifier.
    unsafe { (*ctx.skb.skb).ifindex }
}

/// The skb mark.
#[inline(always)]
pub fn mark(ctx: &TcContext) -> u32 {
    // SAFETY: as in `ifindex`; `mark` is readable (and writable) from TC programs.
    unsafe { (*ctx.skb.skb).mark }
}

/// Sets the skb mark.
#[inline(always)]
pub fn set_mark(ctx: &TcContext, mark: u32) {
    ctx.set_mark(mark);
}

/// Address equality without `memcmp` (the BPF target has none): four word compares.
#[inline(always)]
pub fn addr_eq(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let w = |x: &[u8; 16], i: usize| u32::from_ne_bytes([x[i], x[i + 1], x[i + 2], x[i + 3]]);
    w(a, 0) == w(b, 0) && w(a, 4) == w(b, 4) && w(a, 8) == w(b, 8) && w(a, 12) == w(b, 12)
}
