//! Host endpoints → verdict entries in the host directions (`DIR_UNTRACKED_*`,
//! `DIR_PREDNAT_INGRESS`, `DIR_HOST_*`), endpoint entries flagged `EP_F_HOST`, and the
//! peers' host classes. The reference is `eval::host`.
//!
//! A host endpoint's rules may test its *local* address (a preDNAT rule's destination
//! selector matches the node's `expectedIPs`; forwarded traffic has a pod there), so
//! its verdicts are keyed by `host_profile(endpoint profile, host class of the local
//! address)`. Host classes partition addresses by what every host-endpoint rule's
//! local side says about them, plus whether the address is the node's own: usually a
//! handful. Per (host endpoint, direction, host class) the evaluator runs on one
//! representative per (peer class, cell) and the matrix is written with the same
//! wildcard compression as pod verdicts.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use enforcer_common::{
    ACTION_CONTINUE, DIR_HOST_EGRESS, DIR_HOST_INGRESS, DIR_PREDNAT_INGRESS, DIR_UNTRACKED_EGRESS,
    DIR_UNTRACKED_INGRESS, EP_F_HAS_V4, EP_F_HAS_V6, EP_F_HOST, EndpointInfo, HOST_PROFILE_BITS,
    NO_INDEX, PEER_F_HOST, VERDICT_KIND_PROFILE, Verdict, host_profile,
};

use super::spec::{SpecEndpoint, SpecPeer, SpecVerdictKey};
use super::{Cell, CompileError, Compiler, Region, emit_compressed, verdict_of};
use crate::eval::host::{self as ehost, HostKind, NodeView};
use crate::eval::{self, SideFacts};
use crate::policy::{Cluster, Direction};

/// Endpoint ids of host endpoints: this bit set, the host endpoint's index below.
pub const HOST_ENDPOINT_ID_BIT: u32 = 1 << 31;

/// `interfaceName` that means every host interface.
pub const ALL_INTERFACES: &str = "*";

/// The host directions, with the kind walk each one stands for.
const DIRECTIONS: [(u8, Direction); 5] = [
    (DIR_UNTRACKED_INGRESS, Direction::Ingress),
    (DIR_UNTRACKED_EGRESS, Direction::Egress),
    (DIR_PREDNAT_INGRESS, Direction::Ingress),
    (DIR_HOST_INGRESS, Direction::Ingress),
    (DIR_HOST_EGRESS, Direction::Egress),
];

/// Cuts the port space at every Service `NodePort`, so that a `NodePort` is a cell of its
/// own: inbound to the node's address it is forwarded traffic, not the node's.
pub(super) fn cut_node_ports(cluster: &Cluster, protos: &mut BTreeMap<u8, BTreeSet<u32>>) {
    for (proto, port) in NodeView::new(cluster, None).node_ports {
        let cuts = protos.entry(proto).or_default();
        cuts.insert(0);
        cuts.insert(u32::from(port));
        cuts.insert(u32::from(port) + 1);
    }
}

/// What the pod compiler hands over.
pub(super) struct Classes<'a> {
    pub regions: &'a [Region],
    /// `(is_v4, facts)` per peer class.
    pub class_sigs: &'a [super::ClassSignature],
    pub class_rep: &'a [IpAddr],
    pub cells: &'a [Cell],
}

fn verdict_continue() -> Verdict {
    Verdict {
        action: ACTION_CONTINUE,
        kind: VERDICT_KIND_PROFILE,
        flags: 0,
        _pad: 0,
        policy: NO_INDEX,
        rule: NO_INDEX,
        log_policy: NO_INDEX,
        log_rule: NO_INDEX,
    }
}

/// The map verdict of one host direction for a packet, as the BPF side reads it.
pub fn direction_verdict(
    cluster: &Cluster,
    view: &NodeView,
    hep: &crate::policy::HostEndpointInfo,
    dir_code: u8,
    packet: &eval::Packet,
) -> Verdict {
    let kind = match dir_code {
        DIR_UNTRACKED_INGRESS | DIR_UNTRACKED_EGRESS => Some(HostKind::Untracked),
        DIR_PREDNAT_INGRESS => Some(HostKind::PreDnat),
        _ => None,
    };
    let dir = if matches!(dir_code, DIR_UNTRACKED_EGRESS | DIR_HOST_EGRESS) {
        Direction::Egress
    } else {
        Direction::Ingress
    };
    match kind {
        Some(kind) => ehost::evaluate_kind(cluster, hep, kind, dir, packet)
            .as_ref()
            .map_or_else(verdict_continue, verdict_of),
        None => verdict_of(&ehost::evaluate_tracked(cluster, view, hep, dir, packet)),
    }
}

/// Adds the host endpoints of the compiler's node: endpoint entries, host classes on
/// `peers` (in region order, as the pod compiler emitted them) and verdicts.
pub(super) fn compile_host(
    compiler: &Compiler<'_>,
    classes: &Classes<'_>,
    peers: &mut [SpecPeer],
    endpoints: &mut Vec<SpecEndpoint>,
    verdicts: &mut BTreeMap<SpecVerdictKey, Verdict>,
) -> Result<(), CompileError> {
    let cluster = compiler.cluster;
    let view = NodeView::new(cluster, compiler.node);
    let heps: Vec<&crate::policy::HostEndpointInfo> =
        ehost::host_endpoints_of(cluster, compiler.node)
            .filter(|h| h.iface.is_some())
            .collect();
    if heps.is_empty() {
        return Ok(());
    }
    // Host classes over the local sides of every rule of a policy selecting a host
    // endpoint here.
    let mut host_policies: BTreeSet<usize> = BTreeSet::new();
    for hep in &heps {
        for kind in [
            HostKind::Untracked,
            HostKind::PreDnat,
            HostKind::Normal,
            HostKind::Forward,
        ] {
            for dir in [Direction::Ingress, Direction::Egress] {
                host_policies.extend(ehost::applicable(cluster, hep, kind, dir));
            }
        }
    }
    let mut class_of_sig: HashMap<(bool, bool, Vec<SideFacts>), u32> = HashMap::new();
    let mut host_class_rep: Vec<IpAddr> = Vec::new();
    let local_sig = |addr: IpAddr| {
        let mut facts = Vec::new();
        for &p in &host_policies {
            let policy = &cluster.policies[p];
            for rule in &policy.ingress {
                facts.push(eval::side_facts(
                    cluster,
                    &rule.destination,
                    rule.protocol,
                    addr,
                ));
            }
            for rule in &policy.egress {
                facts.push(eval::side_facts(cluster, &rule.source, rule.protocol, addr));
            }
        }
        (addr.is_ipv4(), view.host_ips.contains(&addr), facts)
    };
    let reps = classes.regions.iter().filter_map(|r| r.rep);
    for (peer, rep) in peers.iter_mut().zip(reps) {
        let sig = local_sig(rep);
        let next = host_class_rep.len() as u32;
        let class = *class_of_sig.entry(sig).or_insert_with(|| {
            host_class_rep.push(rep);
            next
        });
        peer.host_class = class;
        if view.host_ips.contains(&rep) && peer.net.prefix_len() == peer.net.max_prefix_len() {
            peer.flags |= PEER_F_HOST;
        }
    }
    let limit = 1usize << HOST_PROFILE_BITS;
    if heps.len() > limit || host_class_rep.len() > limit {
        return Err(CompileError::Capacity {
            what: "host endpoints or host classes",
            count: heps.len().max(host_class_rep.len()),
            max: limit as u32,
        });
    }
    let cell_groups: Vec<Vec<Cell>> = classes.cells.iter().map(|c| vec![*c]).collect();
    for (h, hep) in heps.iter().enumerate() {
        let profile = h as u32;
        let mut info = EndpointInfo {
            profile,
            endpoint_id: HOST_ENDPOINT_ID_BIT | h as u32,
            flags: EP_F_HOST,
            ..EndpointInfo::default()
        };
        if let Some(IpAddr::V4(a)) = hep.ips.iter().find(|a| a.is_ipv4()) {
            info.flags |= EP_F_HAS_V4;
            info.ipv4 = a.octets();
        }
        if let Some(IpAddr::V6(a)) = hep.ips.iter().find(|a| a.is_ipv6()) {
            info.flags |= EP_F_HAS_V6;
            info.ipv6 = a.octets();
        }
        endpoints.push(SpecEndpoint {
            iface: hep.iface.clone().unwrap_or_default(),
            workload: format!("hostendpoint/{}", hep.id.name),
            info,
        });
        for (hc, &local) in host_class_rep.iter().enumerate() {
            let key_profile = host_profile(profile, hc as u32);
            let peer_groups: Vec<Vec<u32>> = classes
                .class_sigs
                .iter()
                .enumerate()
                .filter(|(_, (v4, _))| *v4 == local.is_ipv4())
                .map(|(c, _)| vec![c as u32])
                .collect();
            for (dir_code, dir) in DIRECTIONS {
                let matrix: Vec<Vec<Verdict>> = peer_groups
                    .iter()
                    .map(|g| {
                        let peer = classes.class_rep[g[0] as usize];
                        classes
                            .cells
                            .iter()
                            .map(|cell| {
                                let packet = super::leg_packet(dir, local, peer, Some(cell));
                                direction_verdict(cluster, &view, hep, dir_code, &packet)
                            })
                            .collect()
                    })
                    .collect();
                let key = |peer_class, cell| SpecVerdictKey {
                    dir: dir_code,
                    profile: key_profile,
                    peer_class,
                    cell,
                };
                emit_compressed(&peer_groups, &cell_groups, &matrix, |peer, cell, v| {
                    verdicts.insert(key(peer, cell), v);
                });
                let default_key = key(enforcer_common::ANY_PEER, enforcer_common::ANY_CELL);
                verdicts.entry(default_key).or_insert_with(|| {
                    let packet = super::leg_packet(dir, local, local, classes.cells.first());
                    direction_verdict(cluster, &view, hep, dir_code, &packet)
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
