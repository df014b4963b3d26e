//! What every compile phase reads: the cluster, the node compiled for, and the table
//! of rules (every rule of every policy, with the numbers its named ports can take).

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::memo::PolicyMemo;
use super::prefixes::NamedPrefix;
use crate::eval::host::NodeAddresses;
use crate::model::{Labels, ObjectId};
use crate::policy::{Cluster, Direction, Entity, EntityMatch, NamedPort, Rule};

/// A rule of a policy, as the compiler walks them.
pub(super) struct RuleRef<'a> {
    pub(super) dir: Direction,
    pub(super) rule: &'a Rule,
}

impl<'a> RuleRef<'a> {
    /// The side that tests the remote address.
    pub(super) fn peer_side(&self) -> &'a EntityMatch {
        self.rule.peer_side(self.dir)
    }

    /// The side that tests the local endpoint's own address.
    pub(super) fn local_side(&self) -> &'a EntityMatch {
        self.rule.local_side(self.dir)
    }
}

/// The cluster, the node, and the rule table.
pub(super) struct Input<'a> {
    pub(super) cluster: &'a Cluster,
    /// `None`: every endpoint is local.
    pub(super) node: Option<&'a str>,
    /// Per endpoint: whether it runs on the node (from the memo).
    local: Arc<[bool]>,
    /// The node's own addresses (to the host vs forwarded at a host endpoint).
    pub(super) addresses: &'a NodeAddresses,
    /// Every rule of every policy, by policy, direction (ingress first), index.
    pub(super) rules: Vec<RuleRef<'a>>,
    /// Per policy of the cluster: the position in `rules` of its first ingress and
    /// first egress rule (its rules of a direction follow in order); `None` for a
    /// policy that is not relevant (none of its rules is in the table).
    first_rule: Vec<Option<[usize; 2]>>,
    /// Per rule: `hashing::atom_order` of its peer side and protocol (0 when the side
    /// tests nothing about the address), from the memo.
    pub(super) peer_side_order: Vec<u64>,
    /// The prefixes the cluster's objects other than policies name
    /// (`prefixes::entity_prefixes`), from the memo.
    pub(super) entity_prefixes: Arc<[NamedPrefix]>,
    /// Per rule (as `rules`): every number its named destination ports can resolve to.
    pub(super) named_values: Vec<Vec<u16>>,
    /// Per rule: every number its named source ports can resolve to.
    pub(super) named_src_values: Vec<Vec<u16>>,
    /// Per rule: every (protocol, port) its destination `services` match can match.
    pub(super) service_values: Vec<Vec<(u8, u16)>>,
}

impl<'a> Input<'a> {
    /// `memo`: what earlier compiles learnt of the policy versions and of the other
    /// objects (`memo.rs`), answered from where it still holds; a fresh memo finds
    /// everything.
    pub(super) fn new(
        cluster: &'a Cluster,
        node: Option<&'a str>,
        addresses: &'a NodeAddresses,
        memo: &mut PolicyMemo,
    ) -> Self {
        let mut rules = Vec::new();
        let mut peer_side_order = Vec::new();
        let mut first_rule = vec![None; cluster.policies.len()];
        let relevant = memo.relevant_policies(cluster, node);
        // The rules of every policy that applies here shape the classes and cells,
        // host-endpoint-only kinds (preDNAT, doNotTrack) included: `compile::host`
        // needs them; pod verdicts only group by the rules that apply to the pod.
        // A policy that applies to no endpoint of this node cannot change any of its
        // verdicts: its rules would only split classes and cells for nothing.
        for (p, policy) in cluster.policies.iter().enumerate() {
            if !relevant[p] {
                continue;
            }
            let ingress = rules.len();
            rules.extend(policy.ingress.iter().map(|rule| RuleRef {
                dir: Direction::Ingress,
                rule,
            }));
            let egress = rules.len();
            rules.extend(policy.egress.iter().map(|rule| RuleRef {
                dir: Direction::Egress,
                rule,
            }));
            first_rule[p] = Some([ingress, egress]);
            peer_side_order.extend_from_slice(memo.peer_side_orders(policy));
        }
        let local = memo.local_endpoints(cluster, node);
        let entity_prefixes = memo.entity_prefixes(cluster);
        let declared = memo.declared_ports(cluster);
        let named_values = rules
            .iter()
            .map(|r| declared.values(r.rule, &r.rule.destination))
            .collect();
        let named_src_values = rules
            .iter()
            .map(|r| declared.values(r.rule, &r.rule.source))
            .collect();
        let service_values = rules
            .iter()
            .map(|r| {
                if r.rule.destination.services.is_none() {
                    return Vec::new();
                }
                let mut out: Vec<(u8, u16)> = r
                    .rule
                    .destination
                    .services
                    .iter()
                    .flat_map(|s| cluster.backends(s))
                    .map(|b| (b.protocol, b.port))
                    .collect();
                out.sort_unstable();
                out.dedup();
                out
            })
            .collect();
        Input {
            cluster,
            node,
            local,
            addresses,
            rules,
            first_rule,
            peer_side_order,
            entity_prefixes,
            named_values,
            named_src_values,
            service_values,
        }
    }

    /// The policies that apply to an endpoint of the node (see `relevance.rs`:
    /// those whose rules are in the table), ascending: the only ones a local
    /// endpoint's applicable policies can come from.
    pub(super) fn relevant(&self) -> impl Iterator<Item = usize> + '_ {
        self.first_rule
            .iter()
            .enumerate()
            .filter_map(|(p, first)| first.map(|_| p))
    }

    /// Position in [`Input::rules`] of rule `index` of `policy` in `dir`.
    pub(super) fn rule_position(&self, policy: usize, dir: Direction, index: usize) -> usize {
        let Some([ingress, egress]) = self.first_rule[policy] else {
            panic!("rule position asked of policy {policy}, which is not relevant here");
        };
        index
            + match dir {
                Direction::Ingress => ingress,
                Direction::Egress => egress,
            }
    }

    /// Whether an endpoint runs on the node compiled for (pods without a node name do).
    pub(super) fn is_local(&self, endpoint: usize) -> bool {
        self.local[endpoint]
    }

    /// Everything about an endpoint's address that a rule can see (see
    /// [`AddressFingerprint`]); `parent`: the most specific named prefix around it.
    pub(super) fn fingerprint(
        &self,
        endpoint: usize,
        addr: IpAddr,
        parent: Option<IpNet>,
    ) -> AddressFingerprint<'a> {
        let ep = &self.cluster.endpoints[endpoint];
        let others = self
            .cluster
            .entities_at(addr)
            .into_iter()
            .filter_map(|e| match e {
                Entity::HostEndpoint(h) => Some(&h.id),
                Entity::Node(n) => Some(&n.id),
                _ => None,
            })
            .collect();
        AddressFingerprint {
            labels: &ep.labels,
            named_ports: &ep.named_ports,
            is_v4: addr.is_ipv4(),
            parent,
            others,
        }
    }
}

/// Everything about an endpoint's address that a rule can see: labels (which include
/// namespace and service account), named ports, family, the most specific named CIDR
/// containing the address, and the other entities there (host endpoints, nodes).
/// Addresses with equal fingerprints get equal facts from every rule side.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct AddressFingerprint<'a> {
    labels: &'a Labels,
    named_ports: &'a [NamedPort],
    is_v4: bool,
    parent: Option<IpNet>,
    others: Vec<&'a ObjectId>,
}
