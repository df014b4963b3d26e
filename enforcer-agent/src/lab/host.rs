//! The nodes and the world outside the cluster, as probe sources and targets.
//!
//! Every node runs a responder on [`NODE_PORTS`] (a node-local service, and port 22 for
//! the failsafe), the external client `enf-<lab>-ext` (198.18.255.2, `2001:2:0:ff::2`)
//! one on [`EXTERNAL_PORTS`] (so the nodes and pods have something outside to reach);
//! how they are wired is [`super::fabric`]'s. `lab probe --from external|node|nodeK`
//! and `--to node:PORT[/udp]` or `nodeK:PORT[/udp]` probe through them (see
//! [`node_jobs`]); `node` is the first node.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::connectivity::Protocol;

use super::paths::LabName;
use super::prober::ProbeJob;
use super::state::PodRecord;
use super::topology::Topology;

pub const EXTERNAL_IP_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 255, 2);
pub const EXTERNAL_IP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0xff, 0, 0, 0, 2);
/// Ports the node's own responder listens on (TCP and UDP): 22 (failsafe) and 8000.
pub const NODE_PORTS: [u16; 2] = [22, 8000];
/// Ports the external client's responder listens on.
pub const EXTERNAL_PORTS: [u16; 1] = [80];

/// Source names `lab probe --from` accepts besides pods (and node names).
pub const FROM_EXTERNAL: &str = "external";
pub const FROM_NODE: &str = "node";

/// `enf-<lab>-ext`.
pub fn external_netns(lab: &LabName) -> String {
    format!("{}ext", lab.netns_prefix())
}

/// Whether a `--from` value names a non-pod source: `external`, `node` or a node.
pub fn is_special_source(topo: &Topology, value: &str) -> bool {
    value == FROM_EXTERNAL || topo.node_named(value).is_some()
}

/// A node target: `node:PORT[/udp]` or `nodeK:PORT[/udp]` → (node name, port,
/// protocol).
pub fn parse_node_target(topo: &Topology, value: &str) -> Option<(String, u16, Option<Protocol>)> {
    let (node, rest) = value.split_once(':')?;
    let node = topo.node_named(node)?;
    let (port, proto) = match rest.split_once('/') {
        Some((p, proto)) => (p, Some(Protocol::parse(proto)?)),
        None => (rest, None),
    };
    Some((node.name.clone(), port.parse().ok()?, proto))
}

/// The netns of a special source.
pub fn source_netns(lab: &LabName, topo: &Topology, value: &str) -> String {
    match topo.node_named(value) {
        Some(node) if value != FROM_EXTERNAL => topo.netns(&node.name),
        _ => external_netns(lab),
    }
}

/// Probe jobs towards node targets from pods (`NS/POD`, `NS/*`, `*`) and special
/// sources. A target is labelled as written (`node` or `nodeK`).
pub fn node_jobs(
    lab: &LabName,
    topo: &Topology,
    pods: &std::collections::BTreeMap<String, PodRecord>,
    from: &[String],
    targets: &[(String, u16, Option<Protocol>)],
    default_protocol: Option<Protocol>,
    ipv6: bool,
) -> Vec<ProbeJob> {
    let mut sources: Vec<(String, String)> = Vec::new();
    for value in from {
        if is_special_source(topo, value) {
            sources.push((value.clone(), source_netns(lab, topo, value)));
            continue;
        }
        let (ns, name) = value.split_once('/').unwrap_or(("*", "*"));
        for p in pods.values() {
            if value == "*" || (p.namespace == ns && (name == "*" || p.name == name)) {
                sources.push((p.key(), p.netns.clone()));
            }
        }
    }
    let mut jobs = Vec::new();
    for (from, netns) in &sources {
        for (node, port, proto) in targets {
            let Some(n) = topo.node(node) else { continue };
            let addr: IpAddr = if ipv6 { n.ipv6.into() } else { n.ipv4.into() };
            // Single-node labs label the target `node`, as they always did.
            let label = if topo.single() {
                FROM_NODE.to_owned()
            } else {
                node.clone()
            };
            jobs.push(ProbeJob {
                from: from.clone(),
                netns: netns.clone(),
                to: label,
                addr: SocketAddr::new(addr, *port),
                protocol: proto.or(default_protocol).unwrap_or(Protocol::Tcp),
            });
        }
    }
    jobs
}
