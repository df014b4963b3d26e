//! Cells: per protocol, the port space cut at every port, range and resolved named
//! port boundary a rule names (ICMP: `type << 8 | code`), and at every Service
//! `NodePort`. A cell is the `cell` of the `ENF_PORTS` entries covering it; every port
//! of a cell is alike for every rule's protocol and port predicates. Protocols no rule
//! names share `CELL_UNLISTED`.
//!
//! A protocol whose rules test source ports (`source.ports`/`notPorts`) has its source
//! port space cut the same way, and its cells are pairs: (destination port range,
//! source port range). Its `ENF_PORTS` entries then hold the destination range's id
//! with `CELL_F_BY_SOURCE`, and `ENF_SOURCE_PORTS` maps (that value, source port) to
//! the pair's cell. Other protocols pay nothing for it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use enforcer_common::{CELL_F_BY_SOURCE, CELL_UNLISTED};

use super::input::Input;
use super::spec::{SpecPort, SpecSourcePort};
use crate::eval::host::NodeView;
use crate::eval::{self, Packet};
use crate::policy::{Cluster, Direction, IcmpMatch, PortMatch, Rule, has_ports, is_icmp};

/// A cell: from `lo` to the next cell's start, of one protocol (and, for a protocol
/// cut by source port, from `src_lo` to the next source cut).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Cell {
    pub(super) id: u32,
    pub(super) proto: u8,
    /// The cell's first port, its representative.
    pub(super) lo: u16,
    /// The cell's first source port, its representative (0 when the protocol is not
    /// cut by source port: no rule of it tests one).
    pub(super) src_lo: u16,
}

/// The cells and their `ENF_PORTS` and `ENF_SOURCE_PORTS` entries.
pub(super) struct Cells {
    /// Every cell, `CELL_UNLISTED` (with a protocol no rule names) last when there is
    /// such a protocol.
    pub(super) all: Vec<Cell>,
    pub(super) ports: Vec<SpecPort>,
    pub(super) source_ports: Vec<SpecSourcePort>,
}

/// What one rule's protocol and port predicates say about a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct CellKey {
    /// The protocol predicates (`ipVersion`, `protocol`, `notProtocol`, `icmp`,
    /// `notICMP`) match an IPv4 packet of the cell.
    protocol_v4: bool,
    /// … an IPv6 packet.
    protocol_v6: bool,
    /// The cell is in the numeric `ports` of the destination.
    in_ports: bool,
    /// The cell is in the numeric `notPorts`.
    in_not_ports: bool,
    /// The cell's port, when a named port of the rule can resolve to it.
    named_port: Option<u16>,
    /// The cell's port, when an endpoint of the rule's destination `services` match
    /// serves it (with the cell's protocol).
    service_port: Option<u16>,
    /// The cell's source port is in the numeric `ports` of the source.
    in_src_ports: bool,
    /// … in the numeric source `notPorts`.
    in_src_not_ports: bool,
    /// The cell's source port, when a named source port of the rule can resolve to it.
    named_src_port: Option<u16>,
}

/// The cells of every protocol a rule names.
pub(super) fn cells(input: &Input<'_>) -> Cells {
    let protos = cut_points(input);
    let by_source = source_cut_points(input);
    let mut cells = Vec::new();
    let mut ports = Vec::new();
    let mut source_ports = Vec::new();
    let mut next_id = CELL_UNLISTED + 1;
    for (&proto, cuts) in &protos {
        let source_ranges = by_source.get(&proto).map(ranges);
        for (lo, hi) in ranges(cuts) {
            let id = next_id;
            next_id += 1;
            let value = match &source_ranges {
                None => {
                    cells.push(Cell {
                        id,
                        proto,
                        lo: lo as u16,
                        src_lo: 0,
                    });
                    id
                }
                Some(source_ranges) => {
                    let dst_cell = id | CELL_F_BY_SOURCE;
                    for &(src_lo, src_hi) in source_ranges {
                        let pair = next_id;
                        next_id += 1;
                        cells.push(Cell {
                            id: pair,
                            proto,
                            lo: lo as u16,
                            src_lo: src_lo as u16,
                        });
                        for (port, prefix_len) in range_prefixes(src_lo, src_hi) {
                            source_ports.push(SpecSourcePort {
                                dst_cell,
                                port,
                                prefix_len,
                                cell: pair,
                            });
                        }
                    }
                    dst_cell
                }
            };
            for (port, prefix_len) in range_prefixes(lo, hi) {
                ports.push(SpecPort {
                    proto,
                    port,
                    prefix_len,
                    cell: value,
                });
            }
        }
    }
    if let Some(proto) = (0..=255u8).find(|p| !protos.contains_key(p)) {
        cells.push(Cell {
            id: CELL_UNLISTED,
            proto,
            lo: 0,
            src_lo: 0,
        });
    }
    Cells {
        all: cells,
        ports,
        source_ports,
    }
}

/// The ranges `cuts` (starting at 0) cut the 16-bit port space into.
fn ranges(cuts: &BTreeSet<u32>) -> Vec<(u32, u32)> {
    let bounds: Vec<u32> = cuts.iter().copied().filter(|c| *c <= 0xffff).collect();
    bounds
        .iter()
        .enumerate()
        .map(|(i, &lo)| (lo, bounds.get(i + 1).map_or(0xffff, |next| next - 1)))
        .collect()
}

/// Per protocol with ports whose rules test the source port, where its source port
/// ranges start.
fn source_cut_points(input: &Input<'_>) -> BTreeMap<u8, BTreeSet<u32>> {
    let mut protos: BTreeMap<u8, BTreeSet<u32>> = BTreeMap::new();
    for (n, r) in input.rules.iter().enumerate() {
        let side = &r.rule.source;
        let Some(proto) = r.rule.protocol.filter(|p| has_ports(*p)) else {
            continue;
        };
        if !side.has_ports() {
            continue;
        }
        let cuts = protos.entry(proto).or_default();
        cuts.insert(0);
        for p in side.ports.iter().chain(&side.not_ports) {
            if let PortMatch::Range(a, b) = p {
                cuts.insert(u32::from(*a));
                cuts.insert(u32::from(*b) + 1);
            }
        }
        for &v in &input.named_src_values[n] {
            cuts.insert(u32::from(v));
            cuts.insert(u32::from(v) + 1);
        }
    }
    protos
}

/// Per protocol a rule names, where its cells start.
fn cut_points(input: &Input<'_>) -> BTreeMap<u8, BTreeSet<u32>> {
    let mut protos: BTreeMap<u8, BTreeSet<u32>> = BTreeMap::new();
    for r in &input.rules {
        for p in [r.rule.protocol, r.rule.not_protocol].into_iter().flatten() {
            protos.entry(p).or_default().insert(0);
        }
    }
    for (n, r) in input.rules.iter().enumerate() {
        let Some(proto) = r.rule.protocol else {
            continue;
        };
        let cuts = protos.entry(proto).or_default();
        let mut cut = |lo: u32, hi: u32| {
            cuts.insert(lo);
            cuts.insert(hi + 1);
        };
        for p in r
            .rule
            .destination
            .ports
            .iter()
            .chain(&r.rule.destination.not_ports)
        {
            if let PortMatch::Range(a, b) = p {
                cut(u32::from(*a), u32::from(*b));
            }
        }
        for icmp in [r.rule.icmp, r.rule.not_icmp].into_iter().flatten() {
            let base = u32::from(icmp.icmp_type) << 8;
            match icmp.code {
                Some(c) => cut(base | u32::from(c), base | u32::from(c)),
                None => cut(base, base | 0xff),
            }
        }
        for &v in &input.named_values[n] {
            cut(u32::from(v), u32::from(v));
        }
    }
    // Service endpoint ports carry their own protocol (the rule may name none).
    for values in &input.service_values {
        for &(proto, port) in values {
            let cuts = protos.entry(proto).or_default();
            cuts.insert(0);
            cuts.insert(u32::from(port));
            cuts.insert(u32::from(port) + 1);
        }
    }
    cut_node_ports(input.cluster, &mut protos);
    protos
}

/// Cuts the port space at every Service `NodePort`, so that a `NodePort` is a cell of its
/// own: inbound to the node's address it is forwarded traffic, not the node's.
fn cut_node_ports(cluster: &Cluster, protos: &mut BTreeMap<u8, BTreeSet<u32>>) {
    for (proto, port) in NodeView::new(cluster, None).node_ports {
        let cuts = protos.entry(proto).or_default();
        cuts.insert(0);
        cuts.insert(u32::from(port));
        cuts.insert(u32::from(port) + 1);
    }
}

/// `lo..=hi` as aligned prefixes of the 16-bit port space.
pub(super) fn range_prefixes(lo: u32, hi: u32) -> Vec<(u16, u8)> {
    let mut out = Vec::new();
    let mut start = lo;
    while start <= hi {
        let mut size_bits = if start == 0 {
            16
        } else {
            start.trailing_zeros().min(16)
        };
        while size_bits > 0 && start + (1 << size_bits) - 1 > hi {
            size_bits -= 1;
        }
        out.push((start as u16, (16 - size_bits) as u8));
        start += 1 << size_bits;
    }
    out
}

/// A packet of the leg `dir` between the local address and the peer, in `cell`.
pub(super) fn leg_packet(
    dir: Direction,
    local: IpAddr,
    peer: IpAddr,
    cell: Option<&Cell>,
) -> Packet {
    let (proto, port, src_port) = cell.map_or((0, 0, 0), |c| (c.proto, c.lo, c.src_lo));
    let (src, dst) = match dir {
        Direction::Ingress => (peer, local),
        Direction::Egress => (local, peer),
    };
    Packet {
        src,
        dst,
        proto,
        src_port: if has_ports(proto) { src_port } else { 0 },
        dst_port: if has_ports(proto) { port } else { 0 },
        icmp_type: if is_icmp(proto) { (port >> 8) as u8 } else { 0 },
        icmp_code: if is_icmp(proto) {
            (port & 0xff) as u8
        } else {
            0
        },
    }
}

/// Everything of rule `n` of `input` that [`cell_key`] reads: rules with equal inputs
/// tell the same cells apart.
#[derive(PartialEq, Eq, Hash)]
pub(super) struct CellKeyInputs<'a> {
    ip_version: Option<u8>,
    protocol: Option<u8>,
    not_protocol: Option<u8>,
    icmp: Option<IcmpMatch>,
    not_icmp: Option<IcmpMatch>,
    ports: &'a [PortMatch],
    not_ports: &'a [PortMatch],
    src_ports: &'a [PortMatch],
    src_not_ports: &'a [PortMatch],
    named: &'a [u16],
    named_src: &'a [u16],
    services: &'a [(u8, u16)],
}

impl<'a> CellKeyInputs<'a> {
    pub(super) fn of(input: &'a Input<'a>, n: usize) -> Self {
        let rule = input.rules[n].rule;
        Self {
            ip_version: rule.ip_version,
            protocol: rule.protocol,
            not_protocol: rule.not_protocol,
            icmp: rule.icmp,
            not_icmp: rule.not_icmp,
            ports: &rule.destination.ports,
            not_ports: &rule.destination.not_ports,
            src_ports: &rule.source.ports,
            src_not_ports: &rule.source.not_ports,
            named: &input.named_values[n],
            named_src: &input.named_src_values[n],
            services: &input.service_values[n],
        }
    }
}

/// What a rule's protocol/port predicates say about a cell (`named`, `named_src`: the
/// numbers the rule's named destination and source ports can resolve to).
pub(super) fn cell_key(
    rule: &Rule,
    cell: Cell,
    (named, named_src): (&[u16], &[u16]),
    services: &[(u8, u16)],
) -> CellKey {
    let v4 = leg_packet(
        Direction::Ingress,
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some(&cell),
    );
    let mut v6 = v4;
    v6.src = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    v6.dst = v6.src;
    let port = v4.dst_port_key();
    let side = &rule.destination;
    let named_hit =
        (rule.protocol == Some(cell.proto) && named.binary_search(&port).is_ok()).then_some(port);
    let src_port = v4.src_port;
    let named_src_hit = (rule.protocol == Some(cell.proto)
        && named_src.binary_search(&src_port).is_ok())
    .then_some(src_port);
    CellKey {
        protocol_v4: eval::protocol_matches(rule, &v4),
        protocol_v6: eval::protocol_matches(rule, &v6),
        in_ports: eval::numeric_port_in(&side.ports, port),
        in_not_ports: eval::numeric_port_in(&side.not_ports, port),
        named_port: named_hit,
        service_port: services
            .binary_search(&(cell.proto, port))
            .is_ok()
            .then_some(port),
        in_src_ports: eval::numeric_port_in(&rule.source.ports, src_port),
        in_src_not_ports: eval::numeric_port_in(&rule.source.not_ports, src_port),
        named_src_port: named_src_hit,
    }
}
