//! Which policies can decide a verdict on a node: those that apply, in some direction,
//! to one of its workload endpoints or host endpoints with an interface. The compiler's
//! table of rules holds only theirs (`input.rs`), and its memo keeps the answer per
//! policy version (`memo.rs`).

use crate::eval::host::host_endpoints_of;
use crate::policy::{Cluster, Direction, Endpoint, Entity, HostEndpointInfo, Policy};

/// Whether a policy applies, in some direction, to a workload endpoint of a node or
/// (as any kind of host policy) to one of its host endpoints with an interface. Only
/// those policies' rules can decide a verdict there.
pub(crate) struct Relevance<'a> {
    cluster: &'a Cluster,
    locals: Vec<&'a Endpoint>,
    heps: Vec<&'a HostEndpointInfo>,
}

impl<'a> Relevance<'a> {
    pub(crate) fn new(cluster: &'a Cluster, node: Option<&'a str>) -> Self {
        Relevance {
            cluster,
            locals: cluster
                .endpoints
                .iter()
                .filter(|ep| ep.runs_on(node))
                .collect(),
            heps: host_endpoints_of(cluster, node)
                .filter(|h| h.iface.is_some())
                .collect(),
        }
    }

    pub(crate) fn of(&self, policy: &Policy) -> bool {
        let cluster = self.cluster;
        [Direction::Ingress, Direction::Egress]
            .into_iter()
            .any(|dir| {
                self.locals
                    .iter()
                    .any(|ep| policy.applies_to_endpoint(cluster, ep, dir))
                    || (policy.applies(dir)
                        && self
                            .heps
                            .iter()
                            .any(|h| policy.selects(cluster, &Entity::HostEndpoint(h))))
            })
    }
}

/// Per policy of `cluster`: whether it is relevant on `node` ([`Relevance`]), found
/// for each (what the compiler's memo must answer).
#[cfg(test)]
pub(crate) fn relevant_policies(cluster: &Cluster, node: Option<&str>) -> Vec<bool> {
    let relevance = Relevance::new(cluster, node);
    cluster.policies.iter().map(|p| relevance.of(p)).collect()
}
