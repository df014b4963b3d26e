//! The node's host interface and the world outside the cluster.
//!
//! The node netns gets `eth0` with the node's addresses from the cluster plan
//! (198.18.255.1/24, `2001:2:0:ff::1/64`), a veth whose peer
//! is `eth0` of the `enf-<lab>-ext` netns (198.18.255.2, `2001:2:0:ff::2`): a client
//! outside the cluster, routed to the pod range through the node. Both run a responder:
//! the node on [`NODE_PORTS`] (a node-local service, and port 22 for the failsafe), the
//! external client on [`EXTERNAL_PORTS`] (so the node and pods have something outside to
//! reach). `lab probe --from external|node` and `--to node:PORT[/udp]` probe through
//! them (see [`node_jobs`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::cluster::nodes::{NODE_IP_V4, NODE_IP_V6};
use crate::connectivity::Protocol;

use super::command::{self, ip_in};
use super::netns::NetnsError;
use super::paths::LabName;
use super::prober::ProbeJob;
use super::state::PodRecord;

pub const HOST_IFACE: &str = "eth0";
pub const EXTERNAL_IP_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 255, 2);
pub const EXTERNAL_IP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0xff, 0, 0, 0, 2);
/// Ports the node's own responder listens on (TCP and UDP): 22 (failsafe) and 8000.
pub const NODE_PORTS: [u16; 2] = [22, 8000];
/// Ports the external client's responder listens on.
pub const EXTERNAL_PORTS: [u16; 1] = [80];

/// Source names `lab probe --from` accepts besides pods.
pub const FROM_EXTERNAL: &str = "external";
pub const FROM_NODE: &str = "node";

/// `enf-<lab>-ext`.
pub fn external_netns(lab: &LabName) -> String {
    format!("{}ext", lab.netns_prefix())
}

/// Creates the external netns and the node's `eth0` joined to it.
pub fn create(node: &str, ext: &str) -> Result<(), NetnsError> {
    command::run("ip", &["netns", "add", ext])?;
    ip_in(ext, &["link", "set", "lo", "up"])?;
    ip_in(
        node,
        &[
            "link", "add", HOST_IFACE, "type", "veth", "peer", "name", HOST_IFACE, "netns", ext,
        ],
    )?;
    for (ns, v4, v6) in [
        (node, NODE_IP_V4, NODE_IP_V6),
        (ext, EXTERNAL_IP_V4, EXTERNAL_IP_V6),
    ] {
        ip_in(ns, &["addr", "add", &format!("{v4}/24"), "dev", HOST_IFACE])?;
        ip_in(
            ns,
            &[
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                HOST_IFACE,
                "nodad",
            ],
        )?;
        ip_in(ns, &["link", "set", HOST_IFACE, "up"])?;
    }
    // The external client reaches pods (forwarded traffic) through the node.
    ip_in(
        ext,
        &[
            "route",
            "add",
            "198.18.0.0/17",
            "via",
            &NODE_IP_V4.to_string(),
        ],
    )?;
    ip_in(
        ext,
        &[
            "-6",
            "route",
            "add",
            "2001:2::/112",
            "via",
            &NODE_IP_V6.to_string(),
        ],
    )?;
    Ok(())
}

/// Whether a `--from` value names a non-pod source.
pub fn is_special_source(value: &str) -> bool {
    value == FROM_EXTERNAL || value == FROM_NODE
}

/// `node:PORT` or `node:PORT/udp`.
pub fn parse_node_target(value: &str) -> Option<(u16, Option<Protocol>)> {
    let rest = value.strip_prefix("node:")?;
    let (port, proto) = match rest.split_once('/') {
        Some((p, proto)) => (p, Some(Protocol::parse(proto)?)),
        None => (rest, None),
    };
    Some((port.parse().ok()?, proto))
}

/// The netns of a special source.
pub fn source_netns(lab: &LabName, value: &str) -> String {
    if value == FROM_EXTERNAL {
        external_netns(lab)
    } else {
        lab.node_netns()
    }
}

/// Probe jobs towards `node:PORT` targets from pods (`NS/POD`, `NS/*`, `*`) and special
/// sources.
pub fn node_jobs(
    lab: &LabName,
    pods: &std::collections::BTreeMap<String, PodRecord>,
    from: &[String],
    targets: &[(u16, Option<Protocol>)],
    default_protocol: Option<Protocol>,
    ipv6: bool,
) -> Vec<ProbeJob> {
    let mut sources: Vec<(String, String)> = Vec::new();
    for value in from {
        if is_special_source(value) {
            sources.push((value.clone(), source_netns(lab, value)));
            continue;
        }
        let (ns, name) = value.split_once('/').unwrap_or(("*", "*"));
        for p in pods.values() {
            if value == "*" || (p.namespace == ns && (name == "*" || p.name == name)) {
                sources.push((p.key(), p.netns.clone()));
            }
        }
    }
    let addr: IpAddr = if ipv6 {
        NODE_IP_V6.into()
    } else {
        NODE_IP_V4.into()
    };
    let mut jobs = Vec::new();
    for (from, netns) in &sources {
        for (port, proto) in targets {
            jobs.push(ProbeJob {
                from: from.clone(),
                netns: netns.clone(),
                to: "node".to_owned(),
                addr: SocketAddr::new(addr, *port),
                protocol: proto.or(default_protocol).unwrap_or(Protocol::Tcp),
            });
        }
    }
    jobs
}
