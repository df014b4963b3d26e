//! The persisted lab state (`/run/enforcer/lab/<name>/state.json`): which pods exist,
//! their addresses, netns and interface names, and the processes the lab started.
//!
//! Objects themselves live in the datastore; this file holds only what the datastore
//! does not say: the lab's shape (nodes, encapsulation), and with the records'
//! addresses, nodes and `next_pod_index`, the lab's [`Allocation`] (the cluster
//! planner's input and output; `ClusterIPs` are in the Service objects). It is replaced
//! by rename, so a reader sees the old or the new file.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cluster::nodes::DEFAULT_NODE;
use crate::cluster::{Allocation, PodAddresses, pod_key};

use super::process::ProcessRecord;
use super::program::PodProgram;
use super::topology::Encap;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("lab state {path}: {op}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("lab state {path} is unreadable ({source}); run `enforcer lab down` to clean up")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LabState {
    pub name: String,
    /// The `enforcer` binary that runs the pod processes and the agent.
    pub binary: PathBuf,
    /// Whether the lab runs node agents (false with `--no-agent`).
    pub agent: bool,
    /// Number of nodes (`lab up --nodes`).
    #[serde(default = "one")]
    pub nodes: u32,
    /// How pod traffic crosses between nodes (`lab up --encap`).
    #[serde(default)]
    pub encap: Encap,
    /// The agent process of each node.
    #[serde(default)]
    pub agents: BTreeMap<String, ProcessRecord>,
    /// Next pod address index to try in each node's block (pods keep their address
    /// for life).
    #[serde(default)]
    pub next_pod_index: BTreeMap<String, u32>,
    /// Pods by `namespace/name`.
    pub pods: BTreeMap<String, PodRecord>,
    /// Where the agents read objects: the lab's datastore directory, or the lab's
    /// Kubernetes API server (`lab up --datastore kubernetes`).
    #[serde(default)]
    pub kubernetes: bool,
    /// The lab's API server process (kubernetes labs).
    #[serde(default)]
    pub apiserver_process: Option<ProcessRecord>,
    /// `--attach` given to the agents (`tcx` or `tc`; default: the agent's choice).
    #[serde(default)]
    pub attach: Option<String>,
    /// Extra arguments of every node agent (`lab up --agent-arg`), kept for restarts.
    #[serde(default)]
    pub agent_args: Vec<String>,
    /// `lab up --kube-proxy-masquerade`: `externalTrafficPolicy: Cluster` `NodePort`
    /// traffic is masqueraded to a backend of the same node too, as kube-proxy does.
    #[serde(default)]
    pub kube_proxy_masquerade: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PodRecord {
    pub namespace: String,
    pub name: String,
    /// The node it runs on.
    #[serde(default = "default_node")]
    pub node: String,
    /// Its netns: its own, or its node's for a `hostNetwork` pod.
    pub netns: String,
    /// Host-side veth in the node netns (empty for a `hostNetwork` pod).
    pub host_iface: String,
    /// `spec.hostNetwork`: it runs in its node's netns, with the node's addresses.
    #[serde(default)]
    pub host_network: bool,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    /// The Deployment that made this pod, if any.
    pub owner: Option<String>,
    pub program: PodProgram,
    pub process: Option<ProcessRecord>,
}

fn one() -> u32 {
    1
}

fn default_node() -> String {
    DEFAULT_NODE.to_owned()
}

impl PodRecord {
    pub fn key(&self) -> String {
        pod_key(&self.namespace, &self.name)
    }
}

impl LabState {
    pub fn new(name: &str, binary: PathBuf, agent: bool, nodes: u32, encap: Encap) -> Self {
        Self {
            name: name.to_owned(),
            binary,
            agent,
            nodes,
            encap,
            agents: BTreeMap::new(),
            next_pod_index: BTreeMap::new(),
            pods: BTreeMap::new(),
            kubernetes: false,
            apiserver_process: None,
            attach: None,
            agent_args: Vec::new(),
            kube_proxy_masquerade: false,
        }
    }

    /// What is handed out: the pods' addresses and nodes and the next indices.
    /// `cluster_ips` are the caller's to add (the Services in the datastore hold them).
    pub fn allocation(&self) -> Allocation {
        Allocation {
            next_pod_index: self.next_pod_index.clone(),
            nodes: self
                .pods
                .iter()
                .map(|(key, r)| (key.clone(), r.node.clone()))
                .collect(),
            pods: self
                .pods
                .iter()
                .filter(|(_, r)| !r.host_network)
                .map(|(key, r)| {
                    (
                        key.clone(),
                        PodAddresses {
                            ipv4: r.ipv4,
                            ipv6: r.ipv6,
                        },
                    )
                })
                .collect(),
            cluster_ips: BTreeMap::new(),
        }
    }

    /// Reads the state; `Ok(None)` when there is no state file.
    pub fn load(path: &Path) -> Result<Option<Self>, StateError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|source| StateError::Corrupt {
                        path: path.to_path_buf(),
                        source,
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Io {
                op: "read",
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let io = |op, source| StateError::Io {
            op,
            path: path.to_path_buf(),
            source,
        };
        let text = serde_json::to_vec_pretty(self).map_err(|e| io("encode", e.into()))?;
        write_atomic(path, &text).map_err(|e| io("write", e))
    }
}

/// Writes a file by rename so readers never see half of it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
#[expect(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_torn_file() {
        let dir = crate::testkit::TempDir::new("lab-state");
        let path = dir.path().join("state.json");
        assert_eq!(LabState::load(&path).unwrap(), None);
        let mut state = LabState::new("t", PathBuf::from("/bin/enforcer"), false, 2, Encap::Vxlan);
        state.pods.insert(
            "a/b".into(),
            PodRecord {
                namespace: "a".into(),
                name: "b".into(),
                node: "node2".into(),
                netns: "enf-t-a.b".into(),
                host_iface: "cali0".into(),
                host_network: false,
                ipv4: Ipv4Addr::new(198, 18, 0, 10),
                ipv6: "2001:2::a".parse().unwrap(),
                owner: None,
                program: PodProgram::Responder {
                    text: "b".into(),
                    ports: vec![80],
                },
                process: None,
            },
        );
        state.save(&path).unwrap();
        assert_eq!(LabState::load(&path).unwrap(), Some(state));
        std::fs::write(&path, b"{\"name\": ").unwrap();
        assert!(matches!(
            LabState::load(&path),
            Err(StateError::Corrupt { .. })
        ));
    }
}
