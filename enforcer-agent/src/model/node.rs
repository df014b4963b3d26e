//! Core `v1` `Node`: its labels and addresses, which an `AdminNetworkPolicy` egress
//! peer (`nodes`) selects. Only those fields are modelled; the rest of a node object
//! (capacity, conditions, images…) is ignored.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::workload::ObjectMeta;

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub status: NodeStatus,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeAddress {
    /// `InternalIP`, `ExternalIP`, `Hostname`, …
    #[serde(rename = "type")]
    pub address_type: String,
    pub address: String,
}

impl Node {
    /// The node's IP addresses (`InternalIP` and `ExternalIP` entries that parse), as
    /// the network-policy-api `nodes` peer reads `status.addresses`.
    pub fn ips(&self) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = self
            .status
            .addresses
            .iter()
            .filter(|a| a.address_type == "InternalIP" || a.address_type == "ExternalIP")
            .filter_map(|a| a.address.parse().ok())
            .collect();
        ips.sort_unstable();
        ips.dedup();
        ips
    }
}
