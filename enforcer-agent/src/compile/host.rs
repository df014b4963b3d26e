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

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use enforcer_common::{
    ACTION_CONTINUE, ANY_CELL, ANY_PEER, DIR_HOST_EGRESS, DIR_HOST_INGRESS, DIR_PREDNAT_INGRESS,
    DIR_UNTRACKED_EGRESS, DIR_UNTRACKED_INGRESS, EP_F_HAS_V4, EP_F_HAS_V6, EP_F_HOST, EndpointInfo,
    HOST_PROFILE_BITS, NO_INDEX, VERDICT_KIND_PROFILE, Verdict, host_profile,
};

use super::cells::{Cell, leg_packet};
use super::classes::PeerClasses;
use super::compress::emit_compressed;
use super::error::CompileError;
use super::hashing::HashMap;
use super::input::Input;
use super::regions::Region;
use super::spec::{SpecEndpoint, SpecPeer, SpecVerdictKey};
use super::verdicts::verdict_of;
use crate::eval::host::{self as ehost, HostKind, NodeView};
use crate::eval::{self, SideFacts};
use crate::policy::{Cluster, Direction, HostEndpointInfo};

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

/// What the pod compiler hands over.
pub(super) struct Handover<'a> {
    pub(super) regions: &'a [Region],
    pub(super) classes: &'a PeerClasses,
    pub(super) cells: &'a [Cell],
}

/// What every host-endpoint rule's local side says about an address, and whether it
/// is one of the node's own: addresses with equal signatures share a host class.
#[derive(PartialEq, Eq, Hash)]
struct HostClassSignature {
    is_v4: bool,
    is_host: bool,
    facts: Vec<SideFacts>,
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
    hep: &HostEndpointInfo,
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

/// Adds the host endpoints of the compiled node: endpoint entries, host classes on
/// `peers` (in region order, as the pod compiler emitted them) and verdicts.
pub(super) fn compile_host(
    input: &Input<'_>,
    from_pods: &Handover<'_>,
    peers: &mut [SpecPeer],
    endpoints: &mut Vec<SpecEndpoint>,
    verdicts: &mut BTreeMap<SpecVerdictKey, Verdict>,
) -> Result<(), CompileError> {
    let cluster = input.cluster;
    let view = NodeView::with_addresses(cluster, input.addresses.clone());
    let heps: Vec<&HostEndpointInfo> = ehost::host_endpoints_of(cluster, input.node)
        .filter(|h| h.iface.is_some())
        .collect();
    if heps.is_empty() {
        return Ok(());
    }
    let host_class_rep = host_classes(cluster, &view, &heps, from_pods.regions, peers);
    let limit = 1usize << HOST_PROFILE_BITS;
    if heps.len() > limit || host_class_rep.len() > limit {
        return Err(CompileError::Capacity {
            what: "host endpoints or host classes",
            count: heps.len().max(host_class_rep.len()),
            max: limit as u32,
        });
    }
    for (h, hep) in heps.iter().enumerate() {
        let profile = h as u32;
        endpoints.push(host_endpoint_entry(profile, hep));
        for (hc, &local) in host_class_rep.iter().enumerate() {
            let judged = Judged {
                cluster,
                view: &view,
                hep,
                key_profile: host_profile(profile, hc as u32),
                local,
            };
            judged.verdicts(from_pods, verdicts);
        }
    }
    Ok(())
}

/// Host classes over the local sides of every rule of a policy selecting a host
/// endpoint here: sets each peer's `host_class` and returns a representative address
/// per host class (`PEER_F_HOST` is set with the peer entries, `classes::peer_entries`).
fn host_classes(
    cluster: &Cluster,
    view: &NodeView,
    heps: &[&HostEndpointInfo],
    regions: &[Region],
    peers: &mut [SpecPeer],
) -> Vec<IpAddr> {
    let mut host_policies: BTreeSet<usize> = BTreeSet::new();
    for hep in heps {
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
    let mut class_of: HashMap<HostClassSignature, u32> = HashMap::default();
    let mut host_class_rep: Vec<IpAddr> = Vec::new();
    let signature = |addr: IpAddr| {
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
        HostClassSignature {
            is_v4: addr.is_ipv4(),
            is_host: view.is_own(addr),
            facts,
        }
    };
    let reps = regions.iter().filter_map(|r| r.rep);
    for (peer, rep) in peers.iter_mut().zip(reps) {
        let next = host_class_rep.len() as u32;
        let class = *class_of.entry(signature(rep)).or_insert_with(|| {
            host_class_rep.push(rep);
            next
        });
        peer.host_class = class;
    }
    host_class_rep
}

/// The `ENF_ENDPOINTS` entry of the host endpoint with profile `profile`.
fn host_endpoint_entry(profile: u32, hep: &HostEndpointInfo) -> SpecEndpoint {
    let mut info = EndpointInfo {
        profile,
        endpoint_id: HOST_ENDPOINT_ID_BIT | profile,
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
    SpecEndpoint {
        iface: hep.iface.clone().unwrap_or_default(),
        workload: format!("hostendpoint/{}", hep.id.name),
        info,
    }
}

/// A host endpoint judging packets whose local address is of one host class.
struct Judged<'a> {
    cluster: &'a Cluster,
    view: &'a NodeView,
    hep: &'a HostEndpointInfo,
    /// `host_profile(endpoint profile, host class)`.
    key_profile: u32,
    /// The host class's representative address.
    local: IpAddr,
}

impl Judged<'_> {
    /// The verdicts of every host direction: the evaluator on one representative per
    /// (peer class of the local address's family, cell), wildcard-compressed.
    fn verdicts(&self, from_pods: &Handover<'_>, verdicts: &mut BTreeMap<SpecVerdictKey, Verdict>) {
        let peer_groups: Vec<Vec<u32>> = from_pods
            .classes
            .signatures
            .iter()
            .enumerate()
            .filter(|(_, signature)| signature.is_v4 == self.local.is_ipv4())
            .map(|(c, _)| vec![c as u32])
            .collect();
        let cell_groups: Vec<Vec<Cell>> = from_pods.cells.iter().map(|c| vec![*c]).collect();
        for (dir_code, dir) in DIRECTIONS {
            let matrix: Vec<Vec<Verdict>> = peer_groups
                .iter()
                .map(|g| {
                    let peer = from_pods.classes.reps[g[0] as usize];
                    from_pods
                        .cells
                        .iter()
                        .map(|cell| self.verdict(dir_code, dir, peer, Some(cell)))
                        .collect()
                })
                .collect();
            let key = |peer_class, cell| SpecVerdictKey {
                dir: dir_code,
                profile: self.key_profile,
                peer_class,
                cell,
            };
            emit_compressed(&peer_groups, &cell_groups, &matrix, |peer, cell, v| {
                verdicts.insert(key(peer, cell), v);
            });
            verdicts.entry(key(ANY_PEER, ANY_CELL)).or_insert_with(|| {
                self.verdict(dir_code, dir, self.local, from_pods.cells.first())
            });
        }
    }

    fn verdict(&self, dir_code: u8, dir: Direction, peer: IpAddr, cell: Option<&Cell>) -> Verdict {
        let packet = leg_packet(dir, self.local, peer, cell);
        direction_verdict(self.cluster, self.view, self.hep, dir_code, &packet)
    }
}

#[cfg(test)]
mod tests;
