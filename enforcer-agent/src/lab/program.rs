//! What runs inside a pod's netns in place of its containers: the cluster DNS server
//! for DNS pods, else a responder answering on every declared port.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::cluster::implied::is_dns_pod;
use crate::model::Pod;

/// A pod's program.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PodProgram {
    /// Answers with `text` on every port, TCP and UDP.
    Responder { text: String, ports: Vec<u16> },
    /// The cluster DNS server on every port, UDP and TCP.
    Dns { ports: Vec<u16> },
}

impl PodProgram {
    /// The program standing in for `pod`'s containers.
    pub fn for_pod(pod: &Pod) -> Self {
        if is_dns_pod(pod) {
            Self::Dns {
                ports: declared_ports(pod),
            }
        } else {
            Self::Responder {
                text: responder_text(pod),
                ports: declared_ports(pod),
            }
        }
    }

    pub fn ports(&self) -> &[u16] {
        let (Self::Responder { ports, .. } | Self::Dns { ports }) = self;
        ports
    }
}

/// The text a responder answers with: http-echo's `-text` argument if the pod has
/// one, else the pod name.
pub fn responder_text(pod: &Pod) -> String {
    for c in &pod.spec.containers {
        let args: Vec<&String> = c.command.iter().chain(&c.args).collect();
        for (i, arg) in args.iter().enumerate() {
            for flag in ["-text", "--text"] {
                if let Some(v) = arg.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
                    return v.to_owned();
                }
                if arg.as_str() == flag
                    && let Some(v) = args.get(i + 1)
                {
                    return (*v).clone();
                }
            }
        }
    }
    pod.metadata.name.clone()
}

/// Declared container ports, deduplicated and sorted.
pub fn declared_ports(pod: &Pod) -> Vec<u16> {
    let set: BTreeSet<u16> = pod
        .spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().map(|p| p.container_port))
        .collect();
    set.into_iter().collect()
}

#[cfg(test)]
#[expect(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
mod tests {
    use super::*;
    use crate::cluster::{self, Allocation, Declared};

    #[test]
    fn tutorial_programs() {
        let text = include_str!("../../../tests/fixtures/tutorial/dev-app-deployments.yaml");
        let loaded = crate::model::load_str(std::path::Path::new("t.yaml"), text).unwrap();
        let mut declared = cluster::declare(loaded.into_iter().map(|l| Declared {
            object: l.object,
            source: Some(l.source),
        }));
        cluster::implied::add_implied(&mut declared);
        let (plan, _) = cluster::plan(
            &declared,
            &cluster::nodes::default_nodes(),
            &Allocation::default(),
        )
        .unwrap();
        assert_eq!(
            PodProgram::for_pod(&plan.pods["dev-app/backend-0"].pod),
            PodProgram::Responder {
                text: "Hello from Backend!".into(),
                ports: vec![8080]
            }
        );
        assert_eq!(
            PodProgram::for_pod(&plan.pods["kube-system/coredns-0"].pod),
            PodProgram::Dns { ports: vec![53] }
        );
    }
}
