//! The network between the nodes and the world outside the cluster.
//!
//! Every node netns gets `eth0` with the node's addresses from the cluster plan
//! (`node1`: 198.18.255.1/24, `2001:2:0:ff::1/64`); the external client
//! `enf-<lab>-ext` has `eth0` at 198.18.255.2 (`2001:2:0:ff::2`).
//!
//! - One node: the node's `eth0` is a veth whose peer is the external client's `eth0`,
//!   and the client routes the pod range (198.18.0.0/17, `2001:2::/112`) via the node.
//! - Several nodes: every `eth0` (the nodes' and the client's) is a veth whose peer is
//!   a port of the bridge `br0` in `enf-<lab>-fabric`: one layer-2 segment, like the
//!   nodes' rack. Pod traffic between nodes is routed as Calico routes it: with
//!   [`Encap::None`] each node has a route to every other node's pod blocks via that
//!   node's address (`proto bird`, what Calico's BGP mode installs); with
//!   [`Encap::Vxlan`] each node has `vxlan.calico` (VNI 4096, UDP 4789, no learning)
//!   with a tunnel address from its own block (index 1), and, per other node, the
//!   route to its blocks via its tunnel address (`onlink`), a permanent neighbour
//!   entry for that address and a forwarding entry sending the node's VTEP MAC to its
//!   `eth0` address — the entries Calico's Felix programs. Both IPv4 and IPv6 pod
//!   traffic ride the one device over IPv4 (Calico has a second device for IPv6).
//!   The client routes each node's blocks via that node (a router peering with the
//!   nodes would learn the same routes).

use std::net::IpAddr;

use crate::cluster::nodes::Node;

use super::command::{ip_in, run, sysctl_in};
use super::netns::NetnsError;
use super::topology::{Encap, Topology};

pub const HOST_IFACE: &str = "eth0";
/// The bridge joining the nodes and the external client.
pub const BRIDGE: &str = "br0";
/// Calico's VXLAN device name, VNI and port.
pub const VXLAN_IFACE: &str = "vxlan.calico";
pub const VXLAN_VNI: &str = "4096";
pub const VXLAN_PORT: &str = "4789";
/// Pod block index of a node's tunnel address.
const TUNNEL_INDEX: u32 = 1;

fn addresses(netns: &str, v4: IpAddr, v6: IpAddr) -> Result<(), NetnsError> {
    ip_in(
        netns,
        &["addr", "add", &format!("{v4}/24"), "dev", HOST_IFACE],
    )?;
    ip_in(
        netns,
        &[
            "addr",
            "add",
            &format!("{v6}/64"),
            "dev",
            HOST_IFACE,
            "nodad",
        ],
    )?;
    ip_in(netns, &["link", "set", HOST_IFACE, "up"])?;
    Ok(())
}

/// Creates the external client's netns and joins it and every node (whose netns
/// exist) as the module doc says.
pub fn create(topo: &Topology, ext: &str, external: (IpAddr, IpAddr)) -> Result<(), NetnsError> {
    run("ip", &["netns", "add", ext])?;
    ip_in(ext, &["link", "set", "lo", "up"])?;
    // No duplicate address detection, as in the nodes (see `netns::create_node`).
    sysctl_in(
        ext,
        &[
            "net.ipv6.conf.all.accept_dad=0".to_owned(),
            "net.ipv6.conf.default.accept_dad=0".to_owned(),
        ],
    )?;
    if topo.single() {
        let node = topo.first();
        let netns = topo.netns(&node.name);
        ip_in(
            &netns,
            &[
                "link", "add", HOST_IFACE, "type", "veth", "peer", "name", HOST_IFACE, "netns", ext,
            ],
        )?;
        addresses(&netns, node.ipv4.into(), node.ipv6.into())?;
        addresses(ext, external.0, external.1)?;
        // The external client reaches pods (forwarded traffic) through the node.
        ip_in(
            ext,
            &[
                "route",
                "add",
                "198.18.0.0/17",
                "via",
                &node.ipv4.to_string(),
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
                &node.ipv6.to_string(),
            ],
        )?;
        return Ok(());
    }
    let fabric = topo.fabric_netns();
    run("ip", &["netns", "add", &fabric])?;
    ip_in(&fabric, &["link", "set", "lo", "up"])?;
    ip_in(
        &fabric,
        &[
            "link",
            "add",
            BRIDGE,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
            "mcast_snooping",
            "0",
        ],
    )?;
    ip_in(&fabric, &["link", "set", BRIDGE, "up"])?;
    let mut ports: Vec<(String, String, IpAddr, IpAddr)> = topo
        .nodes()
        .iter()
        .map(|n| {
            (
                topo.netns(&n.name),
                n.name.clone(),
                n.ipv4.into(),
                n.ipv6.into(),
            )
        })
        .collect();
    ports.push((ext.to_owned(), "ext".to_owned(), external.0, external.1));
    for (netns, port, v4, v6) in &ports {
        ip_in(
            netns,
            &[
                "link", "add", HOST_IFACE, "type", "veth", "peer", "name", port, "netns", &fabric,
            ],
        )?;
        ip_in(&fabric, &["link", "set", port, "master", BRIDGE, "up"])?;
        addresses(netns, *v4, *v6)?;
    }
    for node in topo.nodes() {
        let via = [node.ipv4.to_string(), node.ipv6.to_string()];
        let nets = [
            node.pod_block.v4_net().to_string(),
            node.pod_block.v6_net().to_string(),
        ];
        ip_in(ext, &["route", "add", &nets[0], "via", &via[0]])?;
        ip_in(ext, &["-6", "route", "add", &nets[1], "via", &via[1]])?;
    }
    match topo.encap {
        Encap::None => {
            for node in topo.nodes() {
                bgp_routes(&topo.netns(&node.name), node, topo.nodes())?;
            }
        }
        Encap::Vxlan => {
            for node in topo.nodes() {
                vxlan(&topo.netns(&node.name), node, topo.nodes())?;
            }
        }
    }
    Ok(())
}

/// Routes to the other nodes' pod blocks via their addresses.
fn bgp_routes(netns: &str, me: &Node, nodes: &[Node]) -> Result<(), NetnsError> {
    for other in nodes.iter().filter(|n| n.name != me.name) {
        ip_in(
            netns,
            &[
                "route",
                "add",
                &other.pod_block.v4_net().to_string(),
                "via",
                &other.ipv4.to_string(),
                "dev",
                HOST_IFACE,
                "proto",
                "bird",
            ],
        )?;
        ip_in(
            netns,
            &[
                "-6",
                "route",
                "add",
                &other.pod_block.v6_net().to_string(),
                "via",
                &other.ipv6.to_string(),
                "dev",
                HOST_IFACE,
                "proto",
                "bird",
            ],
        )?;
    }
    Ok(())
}

/// A node's VTEP MAC: locally administered, from its host address.
pub fn vtep_mac(node_ipv4: std::net::Ipv4Addr) -> String {
    let o = node_ipv4.octets();
    format!("66:ee:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// `vxlan.calico` and the entries towards every other node.
fn vxlan(netns: &str, me: &Node, nodes: &[Node]) -> Result<(), NetnsError> {
    ip_in(
        netns,
        &[
            "link",
            "add",
            VXLAN_IFACE,
            "type",
            "vxlan",
            "id",
            VXLAN_VNI,
            "local",
            &me.ipv4.to_string(),
            "dev",
            HOST_IFACE,
            "dstport",
            VXLAN_PORT,
            "nolearning",
        ],
    )?;
    ip_in(
        netns,
        &[
            "link",
            "set",
            VXLAN_IFACE,
            "address",
            &vtep_mac(me.ipv4),
            "mtu",
            "1450",
            "up",
        ],
    )?;
    let my_v4 = format!("{}/32", me.pod_block.v4(TUNNEL_INDEX));
    let my_v6 = format!("{}/128", me.pod_block.v6(TUNNEL_INDEX));
    ip_in(netns, &["addr", "add", &my_v4, "dev", VXLAN_IFACE])?;
    ip_in(netns, &["addr", "add", &my_v6, "dev", VXLAN_IFACE, "nodad"])?;
    for other in nodes.iter().filter(|n| n.name != me.name) {
        let mac = vtep_mac(other.ipv4);
        let tunnel = [
            other.pod_block.v4(TUNNEL_INDEX).to_string(),
            other.pod_block.v6(TUNNEL_INDEX).to_string(),
        ];
        let nets = [
            other.pod_block.v4_net().to_string(),
            other.pod_block.v6_net().to_string(),
        ];
        for (family, tunnel, net) in [("-4", &tunnel[0], &nets[0]), ("-6", &tunnel[1], &nets[1])] {
            ip_in(
                netns,
                &[
                    family,
                    "neigh",
                    "add",
                    tunnel,
                    "lladdr",
                    &mac,
                    "dev",
                    VXLAN_IFACE,
                    "nud",
                    "permanent",
                ],
            )?;
            ip_in(
                netns,
                &[
                    family,
                    "route",
                    "add",
                    net,
                    "via",
                    tunnel,
                    "dev",
                    VXLAN_IFACE,
                    "onlink",
                ],
            )?;
        }
        run(
            "bridge",
            &[
                "-n",
                netns,
                "fdb",
                "append",
                &mac,
                "dev",
                VXLAN_IFACE,
                "dst",
                &other.ipv4.to_string(),
            ],
        )?;
    }
    Ok(())
}
