//! The nodes of a cluster and which pods run on them.
//!
//! A node has a name (what `spec.nodeName` says), its own addresses (the host
//! interface, from 198.18.255.0/24) and a pod address block. A pod runs on the node its
//! `spec.nodeName` names; one without `nodeName` runs on the first node. A pod naming a
//! node that is not in the plan is a remote pod: it is stored as declared (with the
//! addresses its own `status` gives) and never runs here.
//!
//! Today a cluster has one node, `node1` ([`default_nodes`]). Several nodes (issue 11)
//! add entries here, each with its own block; placement stays this module's business.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::model::Pod;

use super::addresses::{DEFAULT_POD_BLOCK, PodBlock};

/// The one node of a single-node cluster, as written into `spec.nodeName`.
pub const DEFAULT_NODE: &str = "node1";
/// `node1`'s host interface addresses.
pub const NODE_IP_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 255, 1);
pub const NODE_IP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0xff, 0, 0, 0, 1);

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

/// Where a pod runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement<'a> {
    /// On this node of the plan.
    Node(&'a Node),
    /// On a node the plan does not have: stored, never run.
    Remote,
}

/// The node a pod runs on: the one `spec.nodeName` names, else the first.
pub fn place<'a>(nodes: &'a [Node], pod: &Pod) -> Placement<'a> {
    match pod.spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        None => nodes.first().map_or(Placement::Remote, Placement::Node),
        Some(name) => nodes
            .iter()
            .find(|n| n.name == name)
            .map_or(Placement::Remote, Placement::Node),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::workload::PodSpec;

    fn pod(node: Option<&str>) -> Pod {
        Pod {
            metadata: crate::model::ObjectMeta::default(),
            spec: PodSpec {
                node_name: node.map(str::to_owned),
                ..PodSpec::default()
            },
            status: None,
        }
    }

    #[test]
    fn placement_by_node_name() {
        let nodes = default_nodes();
        assert_eq!(place(&nodes, &pod(None)), Placement::Node(&nodes[0]));
        assert_eq!(place(&nodes, &pod(Some(""))), Placement::Node(&nodes[0]));
        assert_eq!(
            place(&nodes, &pod(Some("node1"))),
            Placement::Node(&nodes[0])
        );
        assert_eq!(place(&nodes, &pod(Some("node2"))), Placement::Remote);
    }
}
