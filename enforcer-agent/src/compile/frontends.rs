//! Service front-ends by port on the node's own addresses (`ENF_FRONTENDS`): every
//! Service `nodePort` (kube-proxy translates it on every node) and the `hostPort`s of
//! the pods of the compiled node (the CNI translates them on the pod's node only).
//! Egress to the node's own address on such a port is judged after the translation,
//! like egress to a Service VIP.

use std::collections::BTreeMap;

use enforcer_common::{FRONTEND_F_HOST_PORT, FRONTEND_F_NODE_PORT};

use super::input::Input;
use super::spec::SpecFrontend;
use crate::policy::parse_protocol;

pub(super) fn frontends(input: &Input<'_>) -> Vec<SpecFrontend> {
    let cluster = input.cluster;
    let mut flags: BTreeMap<(u8, u16), u32> = BTreeMap::new();
    for port in cluster.services.iter().flat_map(|s| &s.ports) {
        if let (Some(node_port), Some(proto)) = (port.node_port, parse_protocol(port.protocol())) {
            *flags.entry((proto, node_port)).or_default() |= FRONTEND_F_NODE_PORT;
        }
    }
    for (i, endpoint) in cluster.endpoints.iter().enumerate() {
        if input.is_local(i) {
            for &key in &endpoint.host_ports {
                *flags.entry(key).or_default() |= FRONTEND_F_HOST_PORT;
            }
        }
    }
    flags
        .into_iter()
        .map(|((proto, port), flags)| SpecFrontend { proto, port, flags })
        .collect()
}
