//! What a compile learnt of each policy version, kept for the next one by
//! [`super::Reuse`]: whether the policy is relevant on the node
//! ([`Relevance`]) and its fingerprint
//! ([`spec::policy_fingerprint`](super::spec::policy_fingerprint)); and the named
//! ports and prefixes the entities declare ([`DeclaredPorts`], [`entity_prefixes`]),
//! and which endpoints run on the node.
//! At 10k policies these were half of a compile after one policy changed: every
//! subject selector against the node's endpoints, the rules of the ~100 policies a
//! verdict names hashed, the named ports of 5,000 pods gathered and their 10,000
//! addresses sorted, each rule's peer side hashed.
//!
//! A version is its converted `Arc<PolicyName>`: every conversion makes a new one (a
//! policy changed, or replaced by its stand-in, is a new key), and the memo holds the
//! `Arc`, so no other policy can be given the address while the entry lives. The
//! fingerprint depends on the version's content only. Relevance also depends on the
//! node's endpoints, host endpoints and namespaces: it is forgotten, with the named
//! ports and the prefixes, on every change that is not a policy's
//! ([`PolicyMemo::entities_changed`], called by `Reuse::follow`), and when the node
//! compiled for is another one.

use std::sync::Arc;

use super::hashing::{HashMap, HashSet, atom_order};
use super::named_ports::DeclaredPorts;
use super::prefixes::{NamedPrefix, entity_prefixes};
use super::relevance::Relevance;
use super::spec::policy_fingerprint;
use crate::model::PolicyName;
use crate::policy::{Cluster, Direction, Policy};

/// Per policy version, what a compile learnt of it (see the module); and, forgotten
/// with the relevance, the named ports the cluster's entities declare and the prefixes
/// they name.
#[derive(Debug, Default)]
pub(super) struct PolicyMemo {
    /// The node the relevance was found for.
    node: Option<String>,
    declared: Option<DeclaredPorts>,
    entity_prefixes: Option<Arc<[NamedPrefix]>>,
    /// Per endpoint of the cluster: whether it runs on the node.
    local_endpoints: Option<Arc<[bool]>>,
    /// By the address of the version's `Arc<PolicyName>` (held in the entry).
    by_version: HashMap<usize, Learnt>,
}

#[derive(Debug)]
struct Learnt {
    /// Keeps the key's address taken while the entry lives.
    _version: Arc<PolicyName>,
    relevant: Option<bool>,
    fingerprint: Option<u64>,
    /// Per rule, ingress then egress: `hashing::atom_order` of its peer side.
    peer_side_orders: Option<Vec<u64>>,
}

impl PolicyMemo {
    /// An object other than a policy changed (an endpoint, a host endpoint, a
    /// namespace, ...): forgets what depends on them, every relevance found, the named
    /// ports and the prefixes; what depends on a version's content alone stays.
    pub(super) fn entities_changed(&mut self) {
        self.declared = None;
        self.entity_prefixes = None;
        self.local_endpoints = None;
        for learnt in self.by_version.values_mut() {
            learnt.relevant = None;
        }
    }

    /// Forgets everything.
    pub(super) fn clear(&mut self) {
        self.by_version.clear();
        self.declared = None;
        self.entity_prefixes = None;
        self.local_endpoints = None;
    }

    /// What is kept of the entities was found for `node`: forgets it when asked for
    /// another node.
    fn for_node(&mut self, node: Option<&str>) {
        if self.node.as_deref() != node {
            self.entities_changed();
            self.node = node.map(str::to_owned);
        }
    }

    /// Per endpoint of `cluster`: whether it runs on `node` (`Endpoint::runs_on`),
    /// found again only after a change that was not a policy's or of node. A peer
    /// entry per pod address asked it, reading every endpoint's node name each
    /// compile.
    pub(super) fn local_endpoints(&mut self, cluster: &Cluster, node: Option<&str>) -> Arc<[bool]> {
        self.for_node(node);
        let local = self
            .local_endpoints
            .take()
            .filter(|local| local.len() == cluster.endpoints.len())
            .unwrap_or_else(|| {
                cluster
                    .endpoints
                    .iter()
                    .map(|ep| ep.runs_on(node))
                    .collect()
            });
        self.local_endpoints = Some(Arc::clone(&local));
        local
    }

    /// The prefixes the cluster's objects other than policies name
    /// ([`entity_prefixes`]), gathered and sorted again only after a change that was
    /// not a policy's.
    pub(super) fn entity_prefixes(&mut self, cluster: &Cluster) -> Arc<[NamedPrefix]> {
        Arc::clone(
            self.entity_prefixes
                .get_or_insert_with(|| entity_prefixes(cluster).into()),
        )
    }

    /// The named ports the cluster's entities declare ([`DeclaredPorts`]), gathered
    /// again only after a change that was not a policy's.
    pub(super) fn declared_ports(&mut self, cluster: &Cluster) -> &DeclaredPorts {
        self.declared
            .get_or_insert_with(|| DeclaredPorts::new(cluster))
    }

    fn learnt(&mut self, policy: &Policy) -> &mut Learnt {
        self.by_version
            .entry(Arc::as_ptr(&policy.name).addr())
            .or_insert_with(|| Learnt {
                _version: Arc::clone(&policy.name),
                relevant: None,
                fingerprint: None,
                peer_side_orders: None,
            })
    }

    /// Per policy of `cluster`: whether it is relevant on `node`
    /// ([`Relevance::of`]), found again only for the versions not seen since the last
    /// change that was not a policy's. Entries of versions no longer in the cluster
    /// are dropped once they outnumber the policies.
    pub(super) fn relevant_policies(&mut self, cluster: &Cluster, node: Option<&str>) -> Vec<bool> {
        self.for_node(node);
        if self.by_version.len() > 2 * cluster.policies.len() + 64 {
            let current: HashSet<usize> = cluster
                .policies
                .iter()
                .map(|p| Arc::as_ptr(&p.name).addr())
                .collect();
            self.by_version.retain(|at, _| current.contains(at));
        }
        let mut relevance: Option<Relevance<'_>> = None;
        cluster
            .policies
            .iter()
            .map(|policy| {
                *self.learnt(policy).relevant.get_or_insert_with(|| {
                    relevance
                        .get_or_insert_with(|| Relevance::new(cluster, node))
                        .of(policy)
                })
            })
            .collect()
    }

    /// Per rule of the policy, ingress then egress: the hash its peer side's atom is
    /// numbered by ([`atom_order`]; 0 for a side that tests nothing about the
    /// address), hashed once per version.
    pub(super) fn peer_side_orders(&mut self, policy: &Policy) -> &[u64] {
        self.learnt(policy).peer_side_orders.get_or_insert_with(|| {
            let ingress = policy
                .ingress
                .iter()
                .map(|r| (r.peer_side(Direction::Ingress), r.protocol));
            let egress = policy
                .egress
                .iter()
                .map(|r| (r.peer_side(Direction::Egress), r.protocol));
            ingress
                .chain(egress)
                .map(|(side, protocol)| {
                    if side.tests_address() {
                        atom_order(side, protocol)
                    } else {
                        0
                    }
                })
                .collect()
        })
    }

    /// [`policy_fingerprint`] of the policy, hashed once per version.
    pub(super) fn fingerprint(&mut self, policy: &Policy) -> u64 {
        *self
            .learnt(policy)
            .fingerprint
            .get_or_insert_with(|| policy_fingerprint(policy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::relevance::relevant_policies;
    use crate::testkit::arbitrary::{build, generate};

    /// The memo answers what finding again answers, for the versions it holds and for
    /// new ones, across a change of node, and after its relevance was forgotten; a
    /// changed policy (a new version) is found again, not answered from its old
    /// version.
    #[test]
    fn memo_answers_what_finding_again_answers() {
        let (mut relevant, mut irrelevant) = (0, 0);
        for seed in 1..60 {
            let Some(mut cluster) = build(&generate(seed).objects) else {
                continue;
            };
            let mut memo = PolicyMemo::default();
            for node in [Some("node1"), None, Some("node1")] {
                let fresh = relevant_policies(&cluster, node);
                relevant += fresh.iter().filter(|&&r| r).count();
                irrelevant += fresh.iter().filter(|&&r| !r).count();
                assert_eq!(memo.relevant_policies(&cluster, node), fresh, "seed {seed}");
                assert_eq!(memo.relevant_policies(&cluster, node), fresh, "seed {seed}");
                let local: Vec<bool> = cluster.endpoints.iter().map(|e| e.runs_on(node)).collect();
                assert_eq!(*memo.local_endpoints(&cluster, node), *local, "seed {seed}");
                memo.entities_changed();
            }
            for policy in &cluster.policies {
                assert_eq!(memo.fingerprint(policy), policy_fingerprint(policy));
            }
            // A new version of a relevant policy that applies in no direction any more.
            let Some(at) = relevant_policies(&cluster, None).iter().position(|&r| r) else {
                continue;
            };
            memo.relevant_policies(&cluster, None);
            let policy = &mut cluster.policies[at];
            policy.name = Arc::new((*policy.name).clone());
            policy.applies_ingress = false;
            policy.applies_egress = false;
            policy.ingress.clear();
            let fresh = relevant_policies(&cluster, None);
            assert!(!fresh[at]);
            assert_eq!(memo.relevant_policies(&cluster, None), fresh, "seed {seed}");
            let changed = &cluster.policies[at];
            assert_eq!(memo.fingerprint(changed), policy_fingerprint(changed));
        }
        assert!(
            relevant > 100 && irrelevant > 100,
            "{relevant} relevant, {irrelevant} irrelevant policies seen"
        );
    }
}
