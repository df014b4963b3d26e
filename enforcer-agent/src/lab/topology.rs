//! The shape of a lab: how many nodes, how they reach each other, and the names and
//! places each node's things get.
//!
//! One node keeps the names a single-node lab always had: the node netns
//! `enf-<lab>-node`, the agent's pins under `/sys/fs/bpf/enforcer/<lab>`, its log
//! `agent.log` and its status `status.json`. With several nodes, node `nodeK` gets the
//! netns `enf-<lab>-nodeK`, pins under `/sys/fs/bpf/enforcer/<lab>/nodeK`, `agent-nodeK.log`,
//! `status-nodeK.json` and `flows-nodeK.jsonl` in the datastore, and the nodes' `eth0`s
//! share a bridge in `enf-<lab>-fabric` with the external client ([`super::fabric`]).

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cluster::PlanError;
use crate::cluster::nodes::{self, Node};

use super::paths::{LabName, LabPaths};

/// How pod traffic crosses between nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encap {
    /// Plain routing: each node routes the other nodes' pod blocks via their address,
    /// as Calico's BGP mode installs them.
    #[default]
    None,
    /// VXLAN (VNI 4096, UDP 4789) between the nodes' addresses, as Calico's VXLAN mode.
    Vxlan,
}

impl std::fmt::Display for Encap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encap::None => "none",
            Encap::Vxlan => "vxlan",
        })
    }
}

/// A lab's nodes and where their things live.
#[derive(Clone, Debug)]
pub struct Topology {
    lab: LabName,
    nodes: Vec<Node>,
    pub encap: Encap,
}

impl Topology {
    pub fn new(lab: &LabName, count: u32, encap: Encap) -> Result<Self, PlanError> {
        Ok(Self {
            lab: lab.clone(),
            nodes: nodes::cluster_nodes(count)?,
            encap,
        })
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// One node: the single-node names (module doc).
    pub fn single(&self) -> bool {
        self.nodes.len() == 1
    }

    /// The first node (`node1`): where `--from node` and `node:PORT` point.
    pub fn first(&self) -> &Node {
        &self.nodes[0]
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The node a probe source or target names: `node` (the first) or a node's name.
    pub fn node_named(&self, value: &str) -> Option<&Node> {
        if value == "node" {
            Some(self.first())
        } else {
            self.node(value)
        }
    }

    /// The node whose address `ip` is.
    pub fn node_with_address(&self, ip: IpAddr) -> Option<&Node> {
        self.nodes
            .iter()
            .find(|n| IpAddr::V4(n.ipv4) == ip || IpAddr::V6(n.ipv6) == ip)
    }

    /// The node's netns: its host interfaces, pods' host-side veths, routes, Service
    /// NAT and agent.
    pub fn netns(&self, node: &str) -> String {
        if self.single() {
            self.lab.node_netns()
        } else {
            format!("{}{node}", self.lab.netns_prefix())
        }
    }

    /// The netns holding the bridge between the nodes and the external client.
    pub fn fabric_netns(&self) -> String {
        format!("{}fabric", self.lab.netns_prefix())
    }

    /// Where the node's agent pins its maps and links.
    pub fn bpffs(&self, node: &str) -> PathBuf {
        if self.single() {
            self.lab.bpffs_dir()
        } else {
            self.lab.bpffs_dir().join(node)
        }
    }

    /// The node agent's status file name under the datastore directory.
    pub fn status_file(&self, node: &str) -> String {
        if self.single() {
            "status.json".to_owned()
        } else {
            format!("status-{node}.json")
        }
    }

    /// The node agent's flow log (`None`: the agent's default, `flows.jsonl` in the
    /// datastore).
    pub fn flow_log(&self, paths: &LabPaths, node: &str) -> Option<PathBuf> {
        (!self.single()).then(|| paths.datastore().join(format!("flows-{node}.jsonl")))
    }

    /// The last Service NAT ruleset loaded into the node's netns.
    pub fn nft_file(&self, paths: &LabPaths, node: &str) -> PathBuf {
        if self.single() {
            paths.nft_file()
        } else {
            paths.root.join(format!("services-{node}.nft"))
        }
    }

    pub fn agent_log(&self, paths: &LabPaths, node: &str) -> PathBuf {
        if self.single() {
            paths.agent_log()
        } else {
            paths.logs().join(format!("agent-{node}.log"))
        }
    }
}

#[cfg(test)]
#[expect(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
mod tests {
    use super::*;

    #[test]
    fn one_node_keeps_the_single_node_names() {
        let lab = LabName::new("x").unwrap();
        let one = Topology::new(&lab, 1, Encap::None).unwrap();
        assert_eq!(one.netns("node1"), "enf-x-node");
        assert_eq!(one.bpffs("node1"), PathBuf::from("/sys/fs/bpf/enforcer/x"));
        assert_eq!(one.status_file("node1"), "status.json");
        assert_eq!(one.flow_log(&lab.paths(), "node1"), None);
        let two = Topology::new(&lab, 2, Encap::Vxlan).unwrap();
        assert_eq!(two.netns("node2"), "enf-x-node2");
        assert_eq!(two.fabric_netns(), "enf-x-fabric");
        assert_eq!(
            two.bpffs("node2"),
            PathBuf::from("/sys/fs/bpf/enforcer/x/node2")
        );
        assert_eq!(two.status_file("node1"), "status-node1.json");
        assert_eq!(two.node_named("node").unwrap().name, "node1");
        assert_eq!(two.node_named("node2").unwrap().name, "node2");
        assert!(two.node_named("node3").is_none());
        assert!(Topology::new(&lab, 9, Encap::None).is_err());
    }
}
