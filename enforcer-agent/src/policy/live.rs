//! A [`Cluster`] kept up to date one object at a time: each object's converted part
//! ([`Part`]) is put in its place (policies in evaluation order, endpoints by
//! namespace/name, network sets, host endpoints and nodes in the datastore's order), so that
//! a change to one object costs about that object, and says what it touched
//! ([`Touched`]) for an incremental compiler. The result equals
//! [`Cluster::from_objects_each`] of the same objects (checked by the tests).
//!
//! Tiers are not changed here one by one: every policy's place depends on them, so a
//! caller rebuilds ([`LiveCluster::build`]) when a tier changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use super::convert::parts::{Part, implied_namespace, policy_order};
use super::{Cluster, NamespaceInfo, ServiceBackends, ServiceInfo, Tier};
use crate::model::ObjectId;

/// Where an object comes in the datastore's order: (file, document).
pub type Order = (PathBuf, usize);

/// What a change touched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Touched {
    /// Policies added, removed or changed.
    pub policies: BTreeSet<ObjectId>,
    /// Workload endpoints added, removed or changed.
    pub endpoints: BTreeSet<ObjectId>,
    /// Anything else: namespaces, network sets, host endpoints, nodes, Services, tiers.
    pub other: bool,
}

impl Touched {
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty() && self.endpoints.is_empty() && !self.other
    }

    /// Adds what `other` touched.
    pub fn merge(&mut self, other: Touched) {
        self.policies.extend(other.policies);
        self.endpoints.extend(other.endpoints);
        self.other |= other.other;
    }

    /// Everything (after a rebuild).
    pub fn everything() -> Self {
        Self {
            other: true,
            ..Self::default()
        }
    }
}

/// Which vector of the cluster an object's part is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Namespace,
    Endpoint,
    NetworkSet,
    HostEndpoint,
    Node,
    Tier,
    Policy,
    Nothing,
}

/// The cluster and where each object's part sits in it.
#[derive(Clone, Debug, Default)]
pub struct LiveCluster {
    cluster: Cluster,
    /// Every object: its order and slot.
    objects: HashMap<ObjectId, (Order, Slot)>,
    /// Namespace objects (an implied namespace exists for the others with pods).
    namespace_objects: BTreeMap<String, NamespaceInfo>,
    /// Endpoints per namespace.
    pods_in: BTreeMap<String, usize>,
    /// Orders of `cluster.network_sets`, `cluster.host_endpoints` and
    /// `cluster.nodes`, index by index.
    network_set_orders: Vec<Order>,
    host_endpoint_orders: Vec<Order>,
    node_orders: Vec<Order>,
}

impl LiveCluster {
    /// The cluster of `parts` (each object with its order) and `services`, built
    /// whole.
    pub fn build(
        parts: Vec<(ObjectId, Order, Part)>,
        services: (Vec<ServiceInfo>, ServiceBackends),
    ) -> Self {
        let mut live = LiveCluster::default();
        let mut tiers: Vec<Tier> = Vec::new();
        let mut parts = parts;
        parts.sort_by(|a, b| a.1.cmp(&b.1));
        let mut policies = Vec::new();
        for (id, order, part) in parts {
            let slot = match part {
                Part::Namespace(ns) => {
                    live.namespace_objects.insert(ns.name.clone(), ns);
                    Slot::Namespace
                }
                Part::Endpoint(ep) => {
                    *live.pods_in.entry(ep.namespace.clone()).or_default() += 1;
                    live.cluster.endpoints.push(*ep);
                    Slot::Endpoint
                }
                Part::NetworkSet(set) => {
                    live.cluster.network_sets.push(*set);
                    live.network_set_orders.push(order.clone());
                    Slot::NetworkSet
                }
                Part::HostEndpoint(hep) => {
                    live.cluster.host_endpoints.push(*hep);
                    live.host_endpoint_orders.push(order.clone());
                    Slot::HostEndpoint
                }
                Part::Node(node) => {
                    live.cluster.nodes.push(*node);
                    live.node_orders.push(order.clone());
                    Slot::Node
                }
                Part::Tier(tier) => {
                    tiers.push(tier);
                    Slot::Tier
                }
                Part::Policy(policy) => {
                    policies.push(*policy);
                    Slot::Policy
                }
                Part::Nothing => Slot::Nothing,
            };
            live.objects.insert(id, (order, slot));
        }
        live.cluster.tiers = super::convert::parts::tiers_with(&tiers);
        policies.sort_by(policy_order);
        live.cluster.policies = policies;
        live.cluster
            .endpoints
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        (live.cluster.services, live.cluster.service_backends) = services;
        live.refresh_namespaces();
        live.cluster.reindex();
        live
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The tiers in evaluation order (what a policy is converted against).
    pub fn tiers(&self) -> &[Tier] {
        &self.cluster.tiers
    }

    /// Whether `id` is a Tier object here (tiers are changed by [`Self::build`]).
    pub fn is_tier(&self, id: &ObjectId) -> bool {
        self.objects.get(id).is_some_and(|(_, s)| *s == Slot::Tier)
    }

    /// Puts `part` in place of whatever `id` contributed. A tier part is refused
    /// (`false`): tiers change by rebuilding.
    pub fn upsert(
        &mut self,
        id: &ObjectId,
        order: Order,
        part: Part,
        touched: &mut Touched,
    ) -> bool {
        if matches!(part, Part::Tier(_)) || self.is_tier(id) {
            return false;
        }
        self.remove(id, touched);
        let slot = match part {
            Part::Namespace(ns) => {
                self.namespace_objects.insert(ns.name.clone(), ns);
                self.refresh_namespaces();
                touched.other = true;
                Slot::Namespace
            }
            Part::Endpoint(ep) => {
                *self.pods_in.entry(ep.namespace.clone()).or_default() += 1;
                let at = self
                    .cluster
                    .endpoints
                    .partition_point(|e| (&e.namespace, &e.name) < (&ep.namespace, &ep.name));
                let new_namespace = !self.cluster.namespaces.contains_key(&ep.namespace);
                self.cluster.endpoints.insert(at, *ep);
                if new_namespace {
                    self.refresh_namespaces();
                }
                self.cluster.reindex();
                touched.endpoints.insert(id.clone());
                Slot::Endpoint
            }
            Part::NetworkSet(set) => {
                let at = self.network_set_orders.partition_point(|o| *o < order);
                self.network_set_orders.insert(at, order.clone());
                self.cluster.network_sets.insert(at, *set);
                touched.other = true;
                Slot::NetworkSet
            }
            Part::HostEndpoint(hep) => {
                let at = self.host_endpoint_orders.partition_point(|o| *o < order);
                self.host_endpoint_orders.insert(at, order.clone());
                self.cluster.host_endpoints.insert(at, *hep);
                self.cluster.reindex();
                touched.other = true;
                Slot::HostEndpoint
            }
            Part::Node(node) => {
                let at = self.node_orders.partition_point(|o| *o < order);
                self.node_orders.insert(at, order.clone());
                self.cluster.nodes.insert(at, *node);
                self.cluster.reindex();
                touched.other = true;
                Slot::Node
            }
            Part::Policy(policy) => {
                let at = self
                    .cluster
                    .policies
                    .partition_point(|p| policy_order(p, &policy).is_lt());
                self.cluster.policies.insert(at, *policy);
                touched.policies.insert(id.clone());
                Slot::Policy
            }
            Part::Tier(_) => return false,
            Part::Nothing => Slot::Nothing,
        };
        self.objects.insert(id.clone(), (order, slot));
        true
    }

    /// Takes out whatever `id` contributed. A tier is refused (`false`).
    pub fn remove(&mut self, id: &ObjectId, touched: &mut Touched) -> bool {
        let Some((_, slot)) = self.objects.get(id).cloned() else {
            return true;
        };
        match slot {
            Slot::Tier => return false,
            Slot::Namespace => {
                self.namespace_objects.remove(&id.name);
                self.refresh_namespaces();
                touched.other = true;
            }
            Slot::Endpoint => {
                let key = (&id.namespace, &id.name);
                if let Ok(at) = self
                    .cluster
                    .endpoints
                    .binary_search_by(|e| (&e.namespace, &e.name).cmp(&key))
                {
                    let ep = self.cluster.endpoints.remove(at);
                    if let Some(n) = self.pods_in.get_mut(&ep.namespace) {
                        *n -= 1;
                        if *n == 0 {
                            self.pods_in.remove(&ep.namespace);
                            self.refresh_namespaces();
                        }
                    }
                    self.cluster.reindex();
                }
                touched.endpoints.insert(id.clone());
            }
            Slot::NetworkSet => {
                if let Some(at) = self.cluster.network_sets.iter().position(|s| s.id == *id) {
                    self.cluster.network_sets.remove(at);
                    self.network_set_orders.remove(at);
                }
                touched.other = true;
            }
            Slot::HostEndpoint => {
                if let Some(at) = self.cluster.host_endpoints.iter().position(|h| h.id == *id) {
                    self.cluster.host_endpoints.remove(at);
                    self.host_endpoint_orders.remove(at);
                    self.cluster.reindex();
                }
                touched.other = true;
            }
            Slot::Node => {
                if let Some(at) = self.cluster.nodes.iter().position(|n| n.id == *id) {
                    self.cluster.nodes.remove(at);
                    self.node_orders.remove(at);
                    self.cluster.reindex();
                }
                touched.other = true;
            }
            Slot::Policy => {
                if let Some(at) = self.cluster.policies.iter().position(|p| p.id == *id) {
                    self.cluster.policies.remove(at);
                }
                touched.policies.insert(id.clone());
            }
            Slot::Nothing => {}
        }
        self.objects.remove(id);
        true
    }

    /// Replaces the Services and every Service's backends (resolved together by the
    /// caller).
    pub fn set_services(
        &mut self,
        (services, backends): (Vec<ServiceInfo>, ServiceBackends),
        touched: &mut Touched,
    ) {
        if services != self.cluster.services || backends != self.cluster.service_backends {
            self.cluster.services = services;
            self.cluster.service_backends = backends;
            touched.other = true;
        }
    }

    /// Namespace objects, plus an implied namespace for every other namespace with
    /// an endpoint.
    fn refresh_namespaces(&mut self) {
        let mut namespaces = self.namespace_objects.clone();
        for ns in self.pods_in.keys() {
            namespaces
                .entry(ns.clone())
                .or_insert_with(|| implied_namespace(ns));
        }
        self.cluster.namespaces = namespaces;
    }
}

#[cfg(test)]
mod tests;
