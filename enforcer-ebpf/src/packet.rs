//! Packet parsing: the only module that reads the packet or the `__sk_buff`.
//!
//! Header layouts come from `network-types` (Ethernet, VLAN, IPv4, IPv6, TCP, UDP, SCTP,
//! ICMP, ICMPv6); the IPv6 extension headers, which it does not define, have minimal
//! layouts here. Every read goes through [`load`], which copies one whole header with
//! `bpf_skb_load_bytes` / `bpf_xdp_load_bytes`: the helper checks the offset against
//! the packet length (linear and paged parts alike) and fails on a short packet, so a
//! truncated header is an error here, never a read past the end. Offsets are computed
//! from the headers themselves: the IPv4 L4 offset from IHL (options work), the IPv6
//! L4 offset by walking a bounded number of extension headers.

use core::{ffi::c_void, mem::size_of};

use aya_ebpf::{
    bindings::{
        __sk_buff, bpf_sock, bpf_sock_tuple, bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1,
        bpf_sock_tuple__bindgen_ty_1__bindgen_ty_2,
    },
    helpers::generated::{bpf_sk_fullsock, bpf_sk_lookup_tcp, bpf_sk_release},
    programs::TcContext,
};
use enforcer_common::{FAMILY_V4, FAMILY_V6};
use network_types::{
    eth::{EthHdr, EtherType},
    icmp::{Icmpv4Hdr, Icmpv6Hdr},
    ip::{IpProto, Ipv4Hdr, Ipv6Hdr},
    sctp::SctpHdr,
    tcp::TcpHdr,
    udp::UdpHdr,
    vlan::VlanHdr,
};

use crate::Drop;

mod bytes;
mod quoted;
pub use bytes::{Bytes, NetBytes, RawContext};
use bytes::{advance, load};
pub use quoted::quoted_key;

// Ethertypes as they sit in the frame (network order), as `network-types` spells them.
const ETH_P_IP: u16 = EtherType::Ipv4 as u16;
const ETH_P_ARP: u16 = EtherType::Arp as u16;
const ETH_P_IPV6: u16 = EtherType::Ipv6 as u16;
const ETH_P_8021Q: u16 = EtherType::Ieee8021q as u16;
const ETH_P_8021AD: u16 = EtherType::Ieee8021ad as u16;
/// VLAN tags skipped on host interfaces (802.1ad outer + 802.1Q inner at most).
const MAX_VLAN_TAGS: usize = 2;

pub const IPPROTO_ICMP: u8 = IpProto::Icmp as u8;
pub const IPPROTO_TCP: u8 = IpProto::Tcp as u8;
pub const IPPROTO_UDP: u8 = IpProto::Udp as u8;
pub const IPPROTO_ICMPV6: u8 = IpProto::Ipv6Icmp as u8;
pub const IPPROTO_SCTP: u8 = IpProto::Sctp as u8;
pub const IPPROTO_UDPLITE: u8 = IpProto::UdpLite as u8;

const IPPROTO_HOPOPTS: u8 = IpProto::HopOpt as u8;
const IPPROTO_ROUTING: u8 = IpProto::Ipv6Route as u8;
const IPPROTO_FRAGMENT: u8 = IpProto::Ipv6Frag as u8;
const IPPROTO_DSTOPTS: u8 = IpProto::Ipv6Opts as u8;

/// Extension headers walked before giving up (the packet is then malformed for us).
/// Real traffic carries zero to two; the bound keeps the verifier's loop finite.
const IPV6_MAX_EXT_HEADERS: u32 = 6;

/// The first two bytes of the hop-by-hop, routing and destination options headers
/// (RFC 8200 4.3-4.6), all the walk needs of them. `network-types` 0.2 has no IPv6
/// extension headers.
#[repr(C)]
#[derive(Clone, Copy)]
struct Ipv6ExtHdr {
    next_hdr: u8,
    /// Length in 8-byte units, not counting the first 8 bytes.
    hdr_ext_len: u8,
}

/// The IPv6 fragment header (RFC 8200 4.5); not in `network-types` 0.2 either.
#[repr(C)]
#[derive(Clone, Copy)]
struct Ipv6FragHdr {
    next_hdr: u8,
    _reserved: u8,
    /// Fragment offset (13 bits, 8-byte units), 2 reserved bits, the M flag.
    offset_flags: [u8; 2],
    _identification: [u8; 4],
}

const _: () = assert!(size_of::<Ipv6ExtHdr>() == 2 && size_of::<Ipv6FragHdr>() == 8);

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
/// The hop limit every neighbor discovery message is sent with (RFC 4861 6.1, 7.1).
const NDP_HOP_LIMIT: u8 = 255;

/// `fe80::/10`.
#[inline(always)]
fn is_link_local_v6(a: &[u8; 16]) -> bool {
    a[0] == 0xfe && a[1] & 0xc0 == 0x80
}

/// `ff02::/16`: link-scope multicast (all-nodes, all-routers, solicited-node).
#[inline(always)]
fn is_link_scope_multicast_v6(a: &[u8; 16]) -> bool {
    a[0] == 0xff && a[1] == 0x02
}

/// What the programs need to know about an IP packet. Addresses are in network order
/// (IPv4 in the first 4 bytes, the rest zero), ports in host order.
pub struct Packet {
    pub family: u8,
    /// L4 protocol (after IPv6 extension headers).
    pub proto: u8,
    /// TCP flags: the FIN, SYN, RST and ACK bits, the ones the programs test (0 for other
    /// protocols).
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
    /// IPv4 TTL / IPv6 hop limit as the packet arrived.
    pub hop_limit: u8,
    /// Length of the frame (L2 included), for byte counters.
    pub len: u32,
    /// Offset of the L4 header in the bytes the packet was parsed from (for the
    /// packet an ICMP error quotes, [`quoted_key`]).
    pub l4_off: u32,
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

    pub fn is_icmpv6(&self) -> bool {
        self.family == FAMILY_V6 && self.proto == IPPROTO_ICMPV6
    }

    /// Valid ICMPv6 neighbor discovery, which passes every hook without policy (as
    /// in Calico, which allows NDP to and from the host): a message of types 133-137
    /// with hop limit 255 (RFC 4861: receivers drop anything else, and a forwarded
    /// packet has lost at least one) that stays on the link: its destination is
    /// link-local unicast or link-scope multicast (`ff02::/16`: all-nodes, all-routers,
    /// solicited-node), or its source is link-local (never forwarded by the kernel).
    /// Anything else of those types is judged by policy as the `ICMPv6` it is, so
    /// neighbor-discovery types cannot carry data past policy to a routed address.
    pub fn is_ndp(&self) -> bool {
        self.is_ndp_message()
            && (is_link_local_v6(&self.dst)
                || is_link_scope_multicast_v6(&self.dst)
                || is_link_local_v6(&self.src))
    }

    /// A neighbor discovery type with the hop limit only a neighbor can send; whether
    /// it may pass also depends on its addresses ([`Packet::is_ndp`], and on host
    /// interfaces: to or from the node's own address).
    pub fn is_ndp_message(&self) -> bool {
        self.is_icmpv6()
            && (ICMPV6_NDP_FIRST..=ICMPV6_NDP_LAST).contains(&self.icmp_type)
            && self.hop_limit == NDP_HOP_LIMIT
    }

    /// `fe80::/10` source.
    pub fn src_is_link_local_v6(&self) -> bool {
        self.family == FAMILY_V6 && is_link_local_v6(&self.src)
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
    /// other ICMP messages use `(type << 8 | code, type << 8 | code)`, so that one type
    /// never passes on another's entry.
    #[inline(always)]
    pub fn ct_ports(&self) -> (u16, u16) {
        match (self.family, self.proto) {
            (_, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_UDPLITE) => {
                (self.sport, self.dport)
            }
            (FAMILY_V4, IPPROTO_ICMP) | (FAMILY_V6, IPPROTO_ICMPV6) => {
                let v4 = self.family == FAMILY_V4;
                let (request, reply) = if v4 {
                    (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY)
                } else {
                    (ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY)
                };
                if self.icmp_type == request {
                    (self.icmp_id, 0)
                } else if self.icmp_type == reply {
                    (0, self.icmp_id)
                } else {
                    let message = self.cell_port();
                    (message, message)
                }
            }
            _ => (0, 0),
        }
    }

    /// Whether the packet may be a reply (its reversed tuple an approved flow): any
    /// packet of a protocol with ports or of an unknown protocol, an ICMP echo reply;
    /// never an echo request or another ICMP message (an echo request always opens
    /// its own flow, whatever replies went the other way before).
    #[inline(always)]
    pub fn may_be_reply(&self) -> bool {
        match (self.family, self.proto) {
            (FAMILY_V4, IPPROTO_ICMP) => self.icmp_type == ICMP_ECHO_REPLY,
            (FAMILY_V6, IPPROTO_ICMPV6) => self.icmp_type == ICMPV6_ECHO_REPLY,
            _ => true,
        }
    }

    pub fn is_tcp_fin(&self) -> bool {
        self.proto == IPPROTO_TCP && self.tcp_flags & TCP_FIN != 0
    }

    pub fn is_tcp_rst(&self) -> bool {
        self.proto == IPPROTO_TCP && self.tcp_flags & TCP_RST != 0
    }
}

/// Parses the frame: Ethernet, then ARP, IPv4 or IPv6, then the L4 header. VLAN tags
/// are not expected on pod interfaces: such frames are an unsupported L3.
#[inline(always)]
pub fn parse(ctx: &TcContext) -> Result<Frame, Drop> {
    let eth = load::<EthHdr, _>(ctx, 0)?;
    parse_l3(ctx, EthHdr::LEN, eth.ether_type)
}

/// Parses a frame seen on a host interface: like [`parse`], after up to
/// [`MAX_VLAN_TAGS`] 802.1Q/802.1ad tags (the policy is the host endpoint's whatever
/// the VLAN).
#[inline(always)]
pub fn parse_host<C: Bytes>(ctx: &C) -> Result<Frame, Drop> {
    let mut ethertype = load::<EthHdr, _>(ctx, 0)?.ether_type;
    let mut l3 = EthHdr::LEN;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        // The tag (TCI, inner ethertype) sits where the L3 header would.
        ethertype = load::<VlanHdr, _>(ctx, l3)?.ether_type;
        l3 = advance(l3, VlanHdr::LEN)?;
    }
    parse_l3(ctx, l3, ethertype)
}

/// Parses an skb from its network header, the family from `skb->protocol`: for hooks
/// that may run on devices without an Ethernet header (the guard on every host
/// interface) or see no link layer at all (cgroup programs). Anything but IPv4 and
/// IPv6 (ARP included) is an unsupported L3 here.
#[inline(always)]
pub fn parse_net(skb: *mut __sk_buff) -> Result<Packet, Drop> {
    // SAFETY: `skb` is the context pointer the kernel passed to the program; reading
    // `protocol` from `__sk_buff` is allowed to TC and cgroup programs alike.
    let protocol = unsafe { (*skb).protocol } as u16;
    match protocol {
        ETH_P_IP | ETH_P_IPV6 => match parse_l3(&NetBytes(skb), 0, protocol)? {
            Frame::Ip(p) => Ok(p),
            Frame::Arp => Err(Drop::UnsupportedL3),
        },
        _ => Err(Drop::UnsupportedL3),
    }
}

/// Parses the L3 header at `l3` (an `ethertype` packet) and what follows it.
#[inline(always)]
fn parse_l3<C: Bytes>(ctx: &C, l3: usize, ethertype: u16) -> Result<Frame, Drop> {
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
        hop_limit: 0,
        len: ctx.frame_len(),
        l4_off: 0,
    };
    let l4 = match ethertype {
        ETH_P_ARP => return Ok(Frame::Arp),
        ETH_P_IP => parse_ipv4(ctx, l3, &mut pkt)?,
        ETH_P_IPV6 => parse_ipv6(ctx, l3, &mut pkt)?,
        _ => return Err(Drop::UnsupportedL3),
    };
    parse_l4(ctx, &mut pkt, l4)?;
    pkt.l4_off = u32::try_from(l4).map_err(|_| Drop::Malformed)?;
    Ok(Frame::Ip(pkt))
}

/// Fills the IPv4 fields; returns the L4 offset (from IHL, so options are skipped).
#[inline(always)]
fn parse_ipv4<C: Bytes>(ctx: &C, l3: usize, pkt: &mut Packet) -> Result<usize, Drop> {
    let h = load::<Ipv4Hdr, _>(ctx, l3)?;
    if h.version() != 4 {
        return Err(Drop::Malformed);
    }
    let ihl = usize::from(h.ihl());
    if ihl < Ipv4Hdr::LEN {
        return Err(Drop::Malformed);
    }
    if ihl > Ipv4Hdr::LEN {
        // The options must be there too, even for protocols whose L4 header we do not read.
        load::<u8, _>(ctx, advance(l3, ihl - 1)?)?;
    }
    // Non-zero offset = not the first fragment (no L4 header).
    if h.frag_offset() != 0 {
        return Err(Drop::Fragment);
    }
    pkt.family = FAMILY_V4;
    pkt.proto = h.proto;
    pkt.hop_limit = h.ttl;
    pkt.src[..4].copy_from_slice(&h.src_addr);
    pkt.dst[..4].copy_from_slice(&h.dst_addr);
    advance(l3, ihl)
}

/// Fills the IPv6 fields; returns the L4 offset after the extension headers.
#[inline(always)]
fn parse_ipv6<C: Bytes>(ctx: &C, l3: usize, pkt: &mut Packet) -> Result<usize, Drop> {
    let h = load::<Ipv6Hdr, _>(ctx, l3)?;
    if h.version() != 6 {
        return Err(Drop::Malformed);
    }
    pkt.family = FAMILY_V6;
    pkt.hop_limit = h.hop_limit;
    pkt.src = h.src_addr;
    pkt.dst = h.dst_addr;
    let (proto, off) = ipv6_upper_layer(ctx, h.next_hdr, advance(l3, Ipv6Hdr::LEN)?)?;
    pkt.proto = proto;
    Ok(off)
}

/// Walks the IPv6 extension headers from `next` at `off` (just past the fixed header):
/// the upper-layer protocol and its offset. A non-first fragment is an error (no L4
/// header), and so are more than [`IPV6_MAX_EXT_HEADERS`] headers.
#[inline(always)]
fn ipv6_upper_layer<C: Bytes>(ctx: &C, next: u8, off: usize) -> Result<(u8, usize), Drop> {
    let (mut next, mut off) = (next, off);
    let mut walked = 0;
    loop {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let e = load::<Ipv6ExtHdr, _>(ctx, off)?;
                next = e.next_hdr;
                off = advance(off, (usize::from(e.hdr_ext_len) + 1) * 8)?;
            }
            IPPROTO_FRAGMENT => {
                let e = load::<Ipv6FragHdr, _>(ctx, off)?;
                if u16::from_be_bytes(e.offset_flags) >> 3 != 0 {
                    return Err(Drop::Fragment);
                }
                next = e.next_hdr;
                off = advance(off, size_of::<Ipv6FragHdr>())?;
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
    Ok((next, off))
}

/// Fills ports, TCP flags or ICMP type/code/id from the L4 header at `off`.
#[inline(always)]
fn parse_l4<C: Bytes>(ctx: &C, pkt: &mut Packet, off: usize) -> Result<(), Drop> {
    match pkt.proto {
        IPPROTO_TCP => {
            let t = load::<TcpHdr, _>(ctx, off)?;
            if t.doff() < 5 {
                return Err(Drop::Malformed);
            }
            pkt.sport = u16::from_be_bytes(t.source);
            pkt.dport = u16::from_be_bytes(t.dest);
            pkt.tcp_flags = tcp_flags(&t);
        }
        // UDPLite's header has UDP's layout (the length field is its checksum coverage).
        IPPROTO_UDP | IPPROTO_UDPLITE => {
            let u = load::<UdpHdr, _>(ctx, off)?;
            pkt.sport = u.src_port();
            pkt.dport = u.dst_port();
        }
        IPPROTO_SCTP => {
            // The whole common header (ports, verification tag, checksum) must be there.
            let s = load::<SctpHdr, _>(ctx, off)?;
            pkt.sport = u16::from_be_bytes(s.src);
            pkt.dport = u16::from_be_bytes(s.dst);
        }
        IPPROTO_ICMP if pkt.family == FAMILY_V4 => {
            let i = load::<Icmpv4Hdr, _>(ctx, off)?;
            pkt.icmp_type = i.type_;
            pkt.icmp_code = i.code;
            if matches!(i.type_, ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY) {
                pkt.icmp_id = echo_id(i.data);
            }
        }
        // Every ICMPv6 message is at least this 8-byte header (RFC 4443 2.1: type, code,
        // checksum, and a 4-byte body that even error messages carry).
        IPPROTO_ICMPV6 if pkt.family == FAMILY_V6 => {
            let i = load::<Icmpv6Hdr, _>(ctx, off)?;
            pkt.icmp_type = i.type_;
            pkt.icmp_code = i.code;
            if matches!(i.type_, ICMPV6_ECHO_REQUEST | ICMPV6_ECHO_REPLY) {
                pkt.icmp_id = echo_id(i.data);
            }
        }
        _ => {}
    }
    Ok(())
}

/// The identifier of an echo request or reply: the first half of the header's `data`
/// (`network-types`' `IcmpIdSequence`). Read by hand: `Icmpv4Hdr::data()` is a call the
/// compiler keeps out of line, returning a pointer into our stack, which the verifier
/// refuses.
#[inline(always)]
fn echo_id(data: [u8; 4]) -> u16 {
    u16::from_be_bytes([data[0], data[1]])
}

/// The TCP flag byte (FIN = bit 0 ... CWR = bit 7) from `network-types`' bitfield.
#[inline(always)]
fn tcp_flags(t: &TcpHdr) -> u8 {
    let bit = |set: u16, flag: u8| if set != 0 { flag } else { 0 };
    bit(t.fin(), TCP_FIN) | bit(t.syn(), TCP_SYN) | bit(t.rst(), TCP_RST) | bit(t.ack(), TCP_ACK)
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
    skb_mark(ctx.skb.skb)
}

/// The mark of an skb (TC or cgroup program).
#[inline(always)]
pub fn skb_mark(skb: *mut __sk_buff) -> u32 {
    // SAFETY: `skb` is the context pointer the kernel passed to the program; `mark` is
    // readable from TC and cgroup programs.
    unsafe { (*skb).mark }
}

/// Sets the skb mark.
#[inline(always)]
pub fn set_mark(ctx: &TcContext, mark: u32) {
    ctx.set_mark(mark);
}

/// Linux TCP states of an established connection, closing ones included (`TCP_*` in
/// `include/net/tcp_states.h`): `ESTABLISHED`, `FIN_WAIT1`, `FIN_WAIT2`, `CLOSE_WAIT`,
/// `CLOSING`, `LAST_ACK`. Never `SYN_SENT`, `SYN_RECV`, `LISTEN`, `TIME_WAIT`, `CLOSE`.
#[inline(always)]
fn is_established_state(state: u32) -> bool {
    matches!(state, 1 | 4 | 5 | 8 | 9 | 11)
}

/// Whether the skb's own socket (`skb->sk`, host egress: the packet comes from a local
/// socket) is a full TCP stream socket (not a raw socket sending TCP) in an established
/// state: the pre-existing connection fallback, see `host_tc`.
#[inline(never)]
pub fn skb_tcp_established(skb: *mut __sk_buff) -> bool {
    // SAFETY: `skb` is the program's context; `sk` is readable from TC programs (may be
    // null); `bpf_sk_fullsock` takes a non-null socket pointer and returns a full
    // socket or null, whose fields below are readable; no reference is taken.
    unsafe {
        let sk: *mut bpf_sock = (*skb).__bindgen_anon_2.sk;
        if sk.is_null() {
            return false;
        }
        let full = bpf_sk_fullsock(sk);
        !full.is_null()
            && (*full).protocol == u32::from(IPPROTO_TCP)
            && (*full).type_ == 1 // SOCK_STREAM
            && is_established_state((*full).state)
    }
}

/// Whether the node's kernel holds an established TCP socket this packet goes to (host
/// ingress, TC or XDP: `ctx` is the program's context), looked up by the packet's exact
/// 4-tuple in the interface's netns (`bpf_sk_lookup_tcp`: full sockets only; a LISTEN
/// socket fails the state test). One helper call; the reference is released.
#[inline(never)]
pub fn local_tcp_established(ctx: *mut c_void, pkt: &Packet) -> bool {
    // SAFETY: an all-zero tuple is a valid value of this plain-data union.
    let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    let size = if pkt.family == FAMILY_V4 {
        let w = |a: &[u8; 16]| u32::from_ne_bytes([a[0], a[1], a[2], a[3]]);
        tuple.__bindgen_anon_1.ipv4 = bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1 {
            saddr: w(&pkt.src),
            daddr: w(&pkt.dst),
            sport: pkt.sport.to_be(),
            dport: pkt.dport.to_be(),
        };
        size_of::<bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1>()
    } else {
        let w = |a: &[u8; 16]| {
            let x = |i: usize| u32::from_ne_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]);
            [x(0), x(4), x(8), x(12)]
        };
        tuple.__bindgen_anon_1.ipv6 = bpf_sock_tuple__bindgen_ty_1__bindgen_ty_2 {
            saddr: w(&pkt.src),
            daddr: w(&pkt.dst),
            sport: pkt.sport.to_be(),
            dport: pkt.dport.to_be(),
        };
        size_of::<bpf_sock_tuple__bindgen_ty_1__bindgen_ty_2>()
    };
    // SAFETY: the tuple is initialised and `size` is its family's member size; the
    // netns -1 (BPF_F_CURRENT_NETNS) is the interface's; a non-null result holds a
    // reference, released before returning, after reading its state.
    unsafe {
        let sk = bpf_sk_lookup_tcp(ctx, &raw mut tuple, size as u32, u64::MAX, 0);
        if sk.is_null() {
            return false;
        }
        let state = (*sk).state;
        bpf_sk_release(sk.cast());
        is_established_state(state)
    }
}

/// Address equality without `memcmp` (the BPF target has none): four word compares.
#[inline(always)]
pub fn addr_eq(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let w = |x: &[u8; 16], i: usize| u32::from_ne_bytes([x[i], x[i + 1], x[i + 2], x[i + 3]]);
    w(a, 0) == w(b, 0) && w(a, 4) == w(b, 4) && w(a, 8) == w(b, 8) && w(a, 12) == w(b, 12)
}
