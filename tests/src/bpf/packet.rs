//! Ethernet frames for `BPF_PROG_TEST_RUN`, built byte by byte. Checksums are left zero:
//! the programs never check them.

use std::net::{Ipv4Addr, Ipv6Addr};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_GRE: u8 = 47;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_SCTP: u8 = 132;

pub const NH_HOPOPTS: u8 = 0;
pub const NH_ROUTING: u8 = 43;
pub const NH_FRAGMENT: u8 = 44;
pub const NH_DSTOPTS: u8 = 60;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// An Ethernet header with fixed locally administered MACs, then `payload`.
pub fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An ARP request (who has 198.18.0.1).
pub fn arp() -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
    a.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 198, 18, 0, 10]);
    a.extend_from_slice(&[0, 0, 0, 0, 0, 0, 198, 18, 0, 1]);
    eth(ETH_P_ARP, &a)
}

/// IPv4 header fields a test may vary.
#[derive(Clone)]
pub struct V4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    /// Options, padded by the caller to a multiple of 4 bytes.
    pub options: Vec<u8>,
    /// Flags and fragment offset field (bit 13 = MF, low 13 bits = offset / 8).
    pub frag: u16,
}

impl V4 {
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> Self {
        Self {
            src,
            dst,
            proto,
            options: Vec::new(),
            frag: 0x4000, // DF
        }
    }

    #[must_use]
    pub fn options(mut self, options: &[u8]) -> Self {
        assert!(
            options.len().is_multiple_of(4) && options.len() <= 40,
            "IPv4 options length"
        );
        self.options = options.to_vec();
        self
    }

    #[must_use]
    pub fn frag(mut self, more: bool, offset_units: u16) -> Self {
        self.frag = (u16::from(more) << 13) | (offset_units & 0x1fff);
        self
    }

    /// The frame: Ethernet, this header (IHL from the options), `l4`.
    pub fn frame(&self, l4: &[u8]) -> Vec<u8> {
        let ihl = 5 + self.options.len() / 4;
        let total = (ihl * 4 + l4.len()) as u16;
        let mut h = vec![0x40 | ihl as u8, 0];
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&[0x12, 0x34]);
        h.extend_from_slice(&self.frag.to_be_bytes());
        h.extend_from_slice(&[64, self.proto, 0, 0]);
        h.extend_from_slice(&self.src.octets());
        h.extend_from_slice(&self.dst.octets());
        h.extend_from_slice(&self.options);
        h.extend_from_slice(l4);
        eth(ETH_P_IP, &h)
    }
}

/// An IPv6 extension header in a chain.
#[derive(Clone, Copy)]
pub enum Ext {
    HopByHop,
    DstOpts,
    /// A routing header (type 0 with no addresses: the walk only needs its length).
    Routing,
    /// A fragment header: offset in 8-byte units, more-fragments flag.
    Fragment {
        offset_units: u16,
        more: bool,
    },
}

impl Ext {
    fn code(self) -> u8 {
        match self {
            Self::HopByHop => NH_HOPOPTS,
            Self::DstOpts => NH_DSTOPTS,
            Self::Routing => NH_ROUTING,
            Self::Fragment { .. } => NH_FRAGMENT,
        }
    }

    fn bytes(self, next: u8) -> Vec<u8> {
        match self {
            // 16 bytes (length field 1): next, len, PadN option of 12 bytes.
            Self::HopByHop | Self::DstOpts => {
                let mut b = vec![next, 1, 1, 12];
                b.extend_from_slice(&[0; 12]);
                b
            }
            Self::Routing => vec![next, 0, 0, 0, 0, 0, 0, 0],
            Self::Fragment { offset_units, more } => {
                let field = (offset_units << 3) | u16::from(more);
                let mut b = vec![next, 0];
                b.extend_from_slice(&field.to_be_bytes());
                b.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
                b
            }
        }
    }
}

/// An IPv6 frame: fixed header (hop limit 64), the extension header chain, then `l4` of
/// protocol `proto`.
pub fn v6(src: Ipv6Addr, dst: Ipv6Addr, exts: &[Ext], proto: u8, l4: &[u8]) -> Vec<u8> {
    v6_hops(src, dst, 64, exts, proto, l4)
}

/// [`v6`] with the hop limit `hops`.
pub fn v6_hops(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hops: u8,
    exts: &[Ext],
    proto: u8,
    l4: &[u8],
) -> Vec<u8> {
    let mut chain = Vec::new();
    for (i, ext) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map_or(proto, |e| e.code());
        chain.extend_from_slice(&ext.bytes(next));
    }
    chain.extend_from_slice(l4);
    let first = exts.first().map_or(proto, |e| e.code());
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(chain.len() as u16).to_be_bytes());
    h.extend_from_slice(&[first, hops]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(&chain);
    eth(ETH_P_IPV6, &h)
}

/// A 20-byte TCP header.
pub fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = Vec::with_capacity(20);
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
    t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t
}

/// A UDP header and 4 bytes of payload.
pub fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut u = Vec::with_capacity(12);
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&12u16.to_be_bytes());
    u.extend_from_slice(&[0, 0, b'p', b'i', b'n', b'g']);
    u
}

/// An SCTP common header (ports, verification tag, checksum).
pub fn sctp(sport: u16, dport: u16) -> Vec<u8> {
    let mut s = Vec::with_capacity(12);
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&[0; 8]);
    s
}

/// SCTP chunk types (RFC 9260).
pub const SCTP_INIT: u8 = 1;
pub const SCTP_INIT_ACK: u8 = 2;

/// An SCTP packet opening or answering an association: the common header (the
/// verification tag is 0 in an INIT, as RFC 9260 requires, else `tag`), then one
/// INIT or INIT ACK chunk (initiate tag, `a_rwnd`, 1 outbound and 1 inbound stream,
/// initial TSN; no parameters).
pub fn sctp_chunk(sport: u16, dport: u16, kind: u8, tag: u32) -> Vec<u8> {
    let mut s = Vec::with_capacity(32);
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    let vtag = if kind == SCTP_INIT { 0 } else { tag };
    s.extend_from_slice(&vtag.to_be_bytes());
    s.extend_from_slice(&[0; 4]); // CRC32c, unchecked by the programs
    s.extend_from_slice(&[kind, 0]);
    s.extend_from_slice(&20u16.to_be_bytes()); // chunk length
    s.extend_from_slice(&tag.wrapping_add(1).to_be_bytes()); // initiate tag
    s.extend_from_slice(&65_535u32.to_be_bytes()); // a_rwnd
    s.extend_from_slice(&1u16.to_be_bytes());
    s.extend_from_slice(&1u16.to_be_bytes());
    s.extend_from_slice(&tag.to_be_bytes()); // initial TSN
    s
}

/// An `ICMP` or `ICMPv6` header: type, code, checksum, then the id and a sequence number.
pub fn icmp(kind: u8, code: u8, id: u16) -> Vec<u8> {
    let mut i = vec![kind, code, 0, 0];
    i.extend_from_slice(&id.to_be_bytes());
    i.extend_from_slice(&[0, 1]);
    i
}

/// The first `len` bytes of `frame`.
pub fn truncated(mut frame: Vec<u8>, len: usize) -> Vec<u8> {
    assert!(len < frame.len(), "truncation must cut something");
    frame.truncate(len);
    frame
}
