//! The BPF lookup procedure, in Rust, over a compiled [`DataplaneSpec`]: what the TC
//! programs do for a new flow (endpoint → peer class by LPM → cell by LPM, refined by
//! source port where the value says so → verdict with the 4-step wildcard precedence). Used by the differential test against the
//! reference evaluator and by `enforcer explain`.
//!
//! Service VIP deferral is out of scope here: give it pod or external addresses.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use enforcer_common::{
    ANY_CELL, ANY_PEER, CELL_F_BY_SOURCE, CELL_UNLISTED, DIR_EGRESS, DIR_INGRESS,
    PEER_F_LOCAL_ENDPOINT, Verdict,
};

use super::spec::{DataplaneSpec, SpecEndpoint, SpecPeer, SpecVerdictKey};
use crate::eval::Packet;

/// How a leg was looked up, for explanations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimLeg {
    pub iface: String,
    pub profile: u32,
    pub peer_class: u32,
    pub cell: u32,
    /// Which of the 4 lookup steps hit (1 = exact … 4 = default); 0 = none (a broken
    /// spec: the programs would drop).
    pub step: u8,
    pub verdict: Option<Verdict>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimFlow {
    /// The source's egress leg, when the source is a local endpoint.
    pub egress: Option<SimLeg>,
    /// The destination's ingress leg, when the destination is a local endpoint.
    pub ingress: Option<SimLeg>,
}

/// A spec indexed for lookups the way the maps are.
pub struct Dataplane<'a> {
    endpoints: HashMap<&'a str, &'a SpecEndpoint>,
    peers: HashMap<IpNet, &'a SpecPeer>,
    ports: HashMap<(u8, u16, u8), u32>,
    source_ports: HashMap<(u32, u16, u8), u32>,
    verdicts: HashMap<SpecVerdictKey, Verdict>,
}

impl<'a> Dataplane<'a> {
    pub fn new(spec: &'a DataplaneSpec) -> Self {
        Dataplane {
            endpoints: spec
                .endpoints
                .iter()
                .map(|e| (e.iface.as_str(), e))
                .collect(),
            peers: spec.peers.iter().map(|p| (p.net, p)).collect(),
            ports: spec
                .ports
                .iter()
                .map(|p| ((p.proto, p.port, p.prefix_len), p.cell))
                .collect(),
            source_ports: spec
                .source_ports
                .iter()
                .map(|p| ((p.dst_cell, p.port, p.prefix_len), p.cell))
                .collect(),
            verdicts: spec.verdicts.iter().copied().collect(),
        }
    }

    /// `ENF_PEERS_V4`/`V6`: longest prefix match.
    pub fn peer(&self, addr: IpAddr) -> Option<&'a SpecPeer> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (0..=max)
            .rev()
            .filter_map(|len| IpNet::new(addr, len).ok().map(|n| n.trunc()))
            .find_map(|net| self.peers.get(&net).copied())
    }

    /// `ENF_PORTS`: longest prefix match of `(proto, port)`; no match → `CELL_UNLISTED`.
    /// A value with `CELL_F_BY_SOURCE` is refined by `ENF_SOURCE_PORTS` on `src_port`;
    /// `None`: that entry is missing (the programs drop).
    pub fn cell(&self, proto: u8, port: u16, src_port: u16) -> Option<u32> {
        let dst_cell = longest_prefix(port, |p, len| self.ports.get(&(proto, p, len)))
            .unwrap_or(CELL_UNLISTED);
        if dst_cell & CELL_F_BY_SOURCE == 0 {
            return Some(dst_cell);
        }
        longest_prefix(src_port, |p, len| {
            self.source_ports.get(&(dst_cell, p, len))
        })
    }

    /// `ENF_VERDICTS` with the 4-step precedence of `enforcer_common::VerdictKey`.
    pub fn verdict(
        &self,
        dir: u8,
        profile: u32,
        peer_class: u32,
        cell: u32,
    ) -> (u8, Option<Verdict>) {
        let steps = [
            (peer_class, cell),
            (peer_class, ANY_CELL),
            (ANY_PEER, cell),
            (ANY_PEER, ANY_CELL),
        ];
        for (step, (peer_class, cell)) in steps.into_iter().enumerate() {
            let key = SpecVerdictKey {
                dir,
                profile,
                peer_class,
                cell,
            };
            if let Some(v) = self.verdicts.get(&key) {
                return (step as u8 + 1, Some(*v));
            }
        }
        (0, None)
    }

    /// One leg as the program on `iface` judges it (`dir` = `DIR_INGRESS`: the packet
    /// goes to the endpoint; `DIR_EGRESS`: it comes from it). `None`: no endpoint entry
    /// (the program drops).
    pub fn leg(&self, iface: &str, dir: u8, packet: &Packet) -> Option<SimLeg> {
        let endpoint = self.endpoints.get(iface)?;
        let peer_addr = if dir == DIR_INGRESS {
            packet.src
        } else {
            packet.dst
        };
        let peer_class = self.peer(peer_addr).map_or(ANY_PEER, |p| p.class);
        let (cell, (step, verdict)) =
            match self.cell(packet.proto, packet.dst_port_key(), packet.src_port) {
                Some(cell) => (
                    cell,
                    self.verdict(dir, endpoint.info.profile, peer_class, cell),
                ),
                None => (CELL_UNLISTED, (0, None)),
            };
        Some(SimLeg {
            iface: iface.to_owned(),
            profile: endpoint.info.profile,
            peer_class,
            cell,
            step,
            verdict,
        })
    }

    /// Both legs of a new flow between local endpoints and/or external addresses.
    pub fn flow(&self, packet: &Packet) -> SimFlow {
        let local = |addr: IpAddr| {
            self.peer(addr)
                .filter(|p| p.flags & PEER_F_LOCAL_ENDPOINT != 0)
                .and_then(|p| p.local_iface.as_deref())
        };
        SimFlow {
            egress: local(packet.src).and_then(|iface| self.leg(iface, DIR_EGRESS, packet)),
            ingress: local(packet.dst).and_then(|iface| self.leg(iface, DIR_INGRESS, packet)),
        }
    }
}

/// The value of the longest of the 17 port prefixes of `port` that `get` holds.
fn longest_prefix<'m>(port: u16, get: impl Fn(u16, u8) -> Option<&'m u32>) -> Option<u32> {
    (0..=16u8).rev().find_map(|len| {
        let mask = if len == 0 { 0 } else { u16::MAX << (16 - len) };
        get(port & mask, len).copied()
    })
}
