//! The nodes of a cluster and which pods run on them.
//!
//! A node has a name (what `spec.nodeName` says), its own addresses (the host
//! interface, from 198.18.255.0/24) and a pod address block. One node ([`default_nodes`])
//! is `node1` at 198.18.255.1 with the whole pod range (198.18.0.10 and up). With
//! several ([`cluster_nodes`], up to [`MAX_NODES`]), node `K` is at 198.18.255.(K+1)
//! for K ≥ 2 (`node1` keeps .1; .2 is the client outside the cluster) and owns the
//! `K`-th eighth of the pod range: a /19 and the IPv6 /115 with the same offsets
//! (`node2`: 198.18.32.0/19 and `2001:2::2000/115`), as Calico gives each node its
//! own blocks.
//!
//! A pod runs on the node its `spec.nodeName` names; one without runs where it ran
//! before, else on the node with the fewest pods (a Deployment's replica: the fewest
//! replicas of its Deployment first, so replicas spread as the scheduler spreads
//! them). A pod naming a node that is not in the plan is a remote pod: it is stored as
//! declared (with the addresses its own `status` gives) and never runs here.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::addresses::{DEFAULT_POD_BLOCK, POD_NET_V4, POD_NET_V6, PodBlock};
use super::error::PlanError;

/// The one node of a single-node cluster, as written into `spec.nodeName`.
pub const DEFAULT_NODE: &str = "node1";
/// `node1`'s host interface addresses.
pub const NODE_IP_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 255, 1);
pub const NODE_IP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0xff, 0, 0, 0, 1);
/// Most nodes a cluster can have (the pod range is cut in eighths).
pub const MAX_NODES: u32 = 8;
/// Pod indices per node block when there are several nodes (a /19, an IPv6 /115).
const BLOCK_SPAN: u32 = 0x2000;
/// Prefix lengths of a node block when there are several nodes.
pub const BLOCK_PREFIX_V4: u8 = 19;
pub const BLOCK_PREFIX_V6: u8 = 115;

/// One node of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// The node's own (host interface) addresses.
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    /// Where its pods' addresses come from.
    pub pod_block: PodBlock,
}

/// One node, `node1`, with the default pod block.
pub fn default_nodes() -> Vec<Node> {
    vec![Node {
        name: DEFAULT_NODE.to_owned(),
        ipv4: NODE_IP_V4,
        ipv6: NODE_IP_V6,
        pod_block: DEFAULT_POD_BLOCK,
    }]
}

/// The last byte of node `k`'s (1-based) host addresses: 1 for `node1`, `k + 1` after
/// (198.18.255.2 is the external client's).
fn host_byte(k: u32) -> u8 {
    if k == 1 { 1 } else { (k + 1) as u8 }
}

/// `count` nodes `node1..node<count>` (see the module doc); one is [`default_nodes`].
pub fn cluster_nodes(count: u32) -> Result<Vec<Node>, PlanError> {
    if !(1..=MAX_NODES).contains(&count) {
        return Err(PlanError::NodeCount { count });
    }
    if count == 1 {
        return Ok(default_nodes());
    }
    Ok((1..=count)
        .map(|k| {
            let offset = (k - 1) * BLOCK_SPAN;
            let byte = host_byte(k);
            Node {
                name: format!("node{k}"),
                ipv4: Ipv4Addr::new(198, 18, 255, byte),
                ipv6: Ipv6Addr::new(0x2001, 2, 0, 0xff, 0, 0, 0, u16::from(byte)),
                pod_block: PodBlock {
                    v4_base: Ipv4Addr::from(u32::from(POD_NET_V4) + offset),
                    v6_base: Ipv6Addr::from(u128::from(POD_NET_V6) + u128::from(offset)),
                    first_index: DEFAULT_POD_BLOCK.first_index,
                    // The last block stops below 198.18.255.0/24 (node and client
                    // addresses).
                    last_index: (BLOCK_SPAN - 1)
                        .min(DEFAULT_POD_BLOCK.last_index.saturating_sub(offset)),
                    prefix_v4: BLOCK_PREFIX_V4,
                    prefix_v6: BLOCK_PREFIX_V6,
                },
            }
        })
        .collect())
}

/// Where a pod runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement<'a> {
    /// On this node of the plan.
    Node(&'a Node),
    /// On a node the plan does not have: stored, never run.
    Remote,
    /// No `nodeName` and no earlier node: the planner picks one.
    Unplaced,
}

/// Where a pod goes before any spreading: the node `spec.nodeName` names, else the node
/// it ran on before (`previous`), else [`Placement::Unplaced`].
pub fn place<'a>(
    nodes: &'a [Node],
    node_name: Option<&str>,
    previous: Option<&str>,
) -> Placement<'a> {
    let by_name = |name: &str| nodes.iter().find(|n| n.name == name);
    match node_name.filter(|n| !n.is_empty()) {
        Some(name) => by_name(name).map_or(Placement::Remote, Placement::Node),
        None => previous
            .and_then(by_name)
            .map_or(Placement::Unplaced, Placement::Node),
    }
}

/// The node for an unplaced pod: the fewest pods of its own group (its Deployment's
/// replicas; `None` for a lone pod), then the fewest pods overall, then the first.
pub fn spread(nodes: &[Node], load: impl Fn(&Node) -> (usize, usize)) -> Option<&Node> {
    nodes.iter().min_by_key(|n| load(n))
}

/// The `Node` object the kubelet of `node` registers: `kubernetes.io/hostname` and its
/// addresses as `InternalIP`s. A `Node` of that name the user declared keeps its labels
/// and addresses (status filled in only where it has none).
pub fn node_object(node: &Node, declared: Option<&crate::model::Object>) -> crate::model::Object {
    use crate::model::node::{Node as NodeObject, NodeAddress};
    let mut object = match declared {
        Some(crate::model::Object::Node(n)) => n.clone(),
        _ => NodeObject::default(),
    };
    object.metadata.name.clone_from(&node.name);
    object
        .metadata
        .labels
        .entry("kubernetes.io/hostname".to_owned())
        .or_insert_with(|| node.name.clone());
    if object.status.addresses.is_empty() {
        object.status.addresses = [node.ipv4.to_string(), node.ipv6.to_string()]
            .into_iter()
            .map(|address| NodeAddress {
                address_type: "InternalIP".to_owned(),
                address,
            })
            .collect();
    }
    crate::model::Object::Node(object)
}

#[cfg(test)]
#[expect(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
mod tests {
    use super::*;

    #[test]
    fn placement_by_node_name_then_previous_node() {
        let nodes = default_nodes();
        assert_eq!(place(&nodes, None, None), Placement::Unplaced);
        assert_eq!(place(&nodes, Some(""), None), Placement::Unplaced);
        assert_eq!(
            place(&nodes, Some("node1"), None),
            Placement::Node(&nodes[0])
        );
        assert_eq!(place(&nodes, Some("node2"), None), Placement::Remote);
        assert_eq!(
            place(&nodes, None, Some("node1")),
            Placement::Node(&nodes[0])
        );
        // A previous node that is gone: placed afresh.
        assert_eq!(place(&nodes, None, Some("node7")), Placement::Unplaced);
    }

    #[test]
    fn several_nodes_split_the_pod_range() {
        assert_eq!(cluster_nodes(1).unwrap(), default_nodes());
        assert!(cluster_nodes(0).is_err() && cluster_nodes(9).is_err());
        let nodes = cluster_nodes(8).unwrap();
        let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "node1", "node2", "node3", "node4", "node5", "node6", "node7", "node8"
            ]
        );
        assert_eq!(nodes[0].ipv4, NODE_IP_V4);
        assert_eq!(nodes[1].ipv4, Ipv4Addr::new(198, 18, 255, 3));
        assert_eq!(nodes[1].ipv6, "2001:2:0:ff::3".parse::<Ipv6Addr>().unwrap());
        assert_eq!(nodes[0].pod_block.v4(10), Ipv4Addr::new(198, 18, 0, 10));
        assert_eq!(nodes[1].pod_block.v4(10), Ipv4Addr::new(198, 18, 32, 10));
        assert_eq!(
            nodes[1].pod_block.v6(10),
            "2001:2::200a".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(nodes[1].pod_block.v4_net().to_string(), "198.18.32.0/19");
        assert_eq!(nodes[1].pod_block.v6_net().to_string(), "2001:2::2000/115");
        // The last block ends below the node addresses.
        let last = &nodes[7].pod_block;
        assert_eq!(last.v4(last.last_index), Ipv4Addr::new(198, 18, 254, 255));
        assert_eq!(
            nodes[0].pod_block.v4(nodes[0].pod_block.last_index),
            Ipv4Addr::new(198, 18, 31, 255)
        );
    }

    #[test]
    fn spreading_prefers_the_emptiest_node() {
        let nodes = cluster_nodes(3).unwrap();
        let picked = spread(&nodes, |n| match n.name.as_str() {
            "node1" => (1, 5),
            "node2" => (0, 9),
            _ => (1, 0),
        });
        assert_eq!(picked.unwrap().name, "node2");
        let picked = spread(&nodes, |n| if n.name == "node3" { (0, 1) } else { (0, 2) });
        assert_eq!(picked.unwrap().name, "node3");
        assert_eq!(spread(&nodes, |_| (0, 0)).unwrap().name, "node1");
    }
}
