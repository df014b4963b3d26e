//! The unified, ordered Calico policy model.
//!
//! Everything the evaluator and the compiler need, resolved once: endpoints with their
//! effective labels, namespaces, network sets, tiers in evaluation order and policies
//! in evaluation order, Kubernetes `NetworkPolicies` converted exactly as Calico converts
//! them (tier `default`, order 1000, all-Allow rules, selector combined (&&) with
//! `projectcalico.org/orchestrator == 'k8s'` and the namespace).

pub mod convert;
mod error;
pub mod live;
pub mod standin;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::model::{Labels, ObjectId, PolicyName, Source};
use crate::selector::Selector;

pub use error::{PolicyError, PolicyProblem, Warning};

pub(crate) const LABEL_NAMESPACE: &str = "projectcalico.org/namespace";
pub(crate) const LABEL_ORCHESTRATOR: &str = "projectcalico.org/orchestrator";
pub(crate) const LABEL_SERVICE_ACCOUNT: &str = "projectcalico.org/serviceaccount";
/// Label Calico gives a service account's own label set (`pcsa.` side).
pub(crate) const LABEL_SA_NAME: &str = "projectcalico.org/name";
pub(crate) const LABEL_NAMESPACE_NAME: &str = "kubernetes.io/metadata.name";

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_SCTP: u8 = 132;
pub(crate) const PROTO_UDPLITE: u8 = 136;

/// Protocols whose packets carry ports.
pub fn has_ports(proto: u8) -> bool {
    matches!(proto, PROTO_TCP | PROTO_UDP | PROTO_SCTP | PROTO_UDPLITE)
}

pub fn is_icmp(proto: u8) -> bool {
    matches!(proto, PROTO_ICMP | PROTO_ICMPV6)
}

/// Direction of a leg, from the judging endpoint's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Ingress,
    Egress,
}

/// The whole cluster as the dataplane sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cluster {
    /// Name → namespace (including namespaces only referenced by pods).
    pub namespaces: BTreeMap<String, NamespaceInfo>,
    /// Pods with at least one address, sorted by namespace/name.
    pub endpoints: Vec<Endpoint>,
    pub services: Vec<ServiceInfo>,
    /// Every Service's backends (headless ones included), by (namespace, name): what a
    /// rule's `services` match resolves to.
    pub service_backends: ServiceBackends,
    pub network_sets: Vec<NetworkSetInfo>,
    pub host_endpoints: Vec<HostEndpointInfo>,
    /// Kubernetes `Node` objects: what an `AdminNetworkPolicy` `nodes` peer selects.
    pub nodes: Vec<NodeInfo>,
    /// In evaluation order: by order (missing last), then name.
    pub tiers: Vec<Tier>,
    /// In evaluation order: by tier, then order (missing = +∞), then name.
    pub policies: Vec<Policy>,
    /// Address → endpoints / host endpoints with that address.
    by_addr: HashMap<IpAddr, Vec<EntityIndex>>,
}

/// What the address index points at (network sets are found by their CIDRs instead).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum EntityIndex {
    Endpoint(usize),
    HostEndpoint(usize),
    Node(usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceInfo {
    pub name: String,
    /// With `kubernetes.io/metadata.name`.
    pub labels: Labels,
}

/// A workload endpoint (a pod with an address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub id: ObjectId,
    pub namespace: String,
    pub name: String,
    /// Pod labels plus Calico's built-ins (namespace, orchestrator, service account).
    pub labels: Labels,
    pub ips: Vec<IpAddr>,
    pub named_ports: Vec<NamedPort>,
    /// `(protocol, port)` of every container `hostPort`: front-ends on the addresses of
    /// the pod's node, translated to the pod.
    pub host_ports: Vec<(u8, u16)>,
    pub service_account: String,
    /// Host-side interface (`cali…`).
    pub iface: String,
    pub node: Option<String>,
}

impl Endpoint {
    /// Whether the endpoint runs on `node` (`None`: every endpoint is local; a pod
    /// without a node name counts as local on every node).
    pub(crate) fn runs_on(&self, node: Option<&str>) -> bool {
        match (node, &self.node) {
            (Some(node), Some(ep_node)) => node == ep_node,
            _ => true,
        }
    }

    pub fn ipv4(&self) -> Option<IpAddr> {
        self.ips.iter().copied().find(IpAddr::is_ipv4)
    }

    pub fn ipv6(&self) -> Option<IpAddr> {
        self.ips.iter().copied().find(IpAddr::is_ipv6)
    }

    /// The endpoint's address of the same family as `other`.
    pub(crate) fn address_like(&self, other: IpAddr) -> Option<IpAddr> {
        if other.is_ipv4() {
            self.ipv4()
        } else {
            self.ipv6()
        }
    }

    /// `workload` string of the dataplane spec.
    pub fn workload(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamedPort {
    pub name: String,
    pub protocol: u8,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    pub id: ObjectId,
    pub vips: Vec<IpAddr>,
    pub ports: Vec<crate::model::workload::ServicePort>,
    /// The backends of each port, in the order of `ports`: the selected pods, or the
    /// Service's `EndpointSlices` and `Endpoints` (see [`crate::model::endpoints`]).
    pub backends: Vec<crate::model::endpoints::PortEndpoints>,
    /// `externalTrafficPolicy: Local`: a node forwards its `NodePorts` only to its own
    /// backends, without SNAT.
    pub external_traffic_local: bool,
}

/// One backend of a Service as a rule's `services` match sees it: an address of one of
/// its endpoints and a port that endpoint serves (after DNAT), with its protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Backend {
    pub ip: IpAddr,
    pub protocol: u8,
    pub port: u16,
}

/// Every Service's backends by (namespace, name).
pub type ServiceBackends = BTreeMap<(String, String), Vec<Backend>>;

/// A rule side's `services` match: the Service's endpoints (Calico's
/// `source.services`/`destination.services`). As a destination it matches the
/// endpoints' addresses *and* the ports they serve; as a source, their addresses.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkSetInfo {
    pub id: ObjectId,
    /// `None` for a `GlobalNetworkSet`.
    pub namespace: Option<String>,
    pub labels: Labels,
    pub nets: Vec<IpNet>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostEndpointInfo {
    pub id: ObjectId,
    pub node: Option<String>,
    pub iface: Option<String>,
    pub labels: Labels,
    pub ips: Vec<IpAddr>,
    pub named_ports: Vec<NamedPort>,
    /// `spec.profiles` (see `eval::host` for what a profile name means here).
    pub profiles: Vec<String>,
}

/// A Kubernetes node, as an `AdminNetworkPolicy` `nodes` peer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: ObjectId,
    pub labels: Labels,
    /// `status.addresses` (internal and external IPs).
    pub ips: Vec<IpAddr>,
}

/// Something a rule selector can match: an endpoint, a network set or a host endpoint
/// (Calico's entities), or a node (only `NamespaceScope::Nodes` sees nodes: the
/// `nodes` peer of an `AdminNetworkPolicy`; Calico selectors never match them).
#[derive(Clone, Copy, Debug)]
pub enum Entity<'a> {
    Endpoint(&'a Endpoint),
    NetworkSet(&'a NetworkSetInfo),
    HostEndpoint(&'a HostEndpointInfo),
    Node(&'a NodeInfo),
}

impl<'a> Entity<'a> {
    pub fn labels(&self) -> &'a Labels {
        match *self {
            Entity::Endpoint(e) => &e.labels,
            Entity::NetworkSet(n) => &n.labels,
            Entity::HostEndpoint(h) => &h.labels,
            Entity::Node(n) => &n.labels,
        }
    }

    pub fn namespace(&self) -> Option<&'a str> {
        match *self {
            Entity::Endpoint(e) => Some(&e.namespace),
            Entity::NetworkSet(n) => n.namespace.as_deref(),
            Entity::HostEndpoint(_) | Entity::Node(_) => None,
        }
    }

    /// Whether Calico's selectors see the entity (every entity but a node).
    pub(crate) fn is_calico_entity(&self) -> bool {
        !matches!(self, Entity::Node(_))
    }

    pub(crate) fn service_account(&self) -> Option<&str> {
        match self {
            Entity::Endpoint(e) => Some(&e.service_account),
            _ => None,
        }
    }

    pub(crate) fn named_port(&self, name: &str, protocol: u8) -> Option<u16> {
        let ports = match self {
            Entity::Endpoint(e) => &e.named_ports,
            Entity::HostEndpoint(h) => &h.named_ports,
            Entity::NetworkSet(_) | Entity::Node(_) => return None,
        };
        ports
            .iter()
            .find(|p| p.name == name && p.protocol == protocol)
            .map(|p| p.port)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tier {
    pub name: String,
    pub order: Option<f64>,
    pub default_action: TierAction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TierAction {
    Deny,
    Pass,
}

/// Which namespaces an entity selector ranges over.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NamespaceScope {
    /// Every entity, namespaced or not.
    Any,
    /// Only entities of this namespace (a namespaced policy's own namespace).
    Named(String),
    /// Entities of namespaces whose labels match.
    Selector(Selector),
    /// `namespaceSelector: all()`: every namespaced entity.
    AllNamespaced,
    /// `namespaceSelector: global()`: only non-namespaced entities (host endpoints,
    /// `GlobalNetworkSets`).
    NonNamespaced,
    /// Kubernetes nodes only (an `AdminNetworkPolicy` `nodes` peer: its selector is
    /// over node labels and matches the nodes' addresses).
    Nodes,
}

/// A selector over entities together with its namespace scope.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EntitySelector {
    pub selector: Selector,
    pub namespace: NamespaceScope,
}

impl EntitySelector {
    pub fn matches(&self, cluster: &Cluster, entity: &Entity<'_>) -> bool {
        if matches!(self.namespace, NamespaceScope::Nodes) != matches!(entity, Entity::Node(_)) {
            return false;
        }
        let ns_ok = match &self.namespace {
            NamespaceScope::Any | NamespaceScope::Nodes => true,
            NamespaceScope::Named(ns) => entity.namespace() == Some(ns.as_str()),
            NamespaceScope::AllNamespaced => entity.namespace().is_some(),
            NamespaceScope::NonNamespaced => entity.namespace().is_none(),
            NamespaceScope::Selector(sel) => entity
                .namespace()
                .is_some_and(|ns| cluster.namespace_labels(ns, |labels| sel.matches(labels))),
        };
        ns_ok && self.selector.matches(entity.labels())
    }
}

/// `serviceAccounts` of a rule side (or a policy's `serviceAccountSelector`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServiceAccountMatch {
    /// Empty: any name.
    pub names: Vec<String>,
    /// Over the account's labels (Calico gives each account `projectcalico.org/name`).
    pub selector: Option<Selector>,
    /// For namespaced policies: accounts of this namespace only.
    pub namespace: Option<String>,
}

impl ServiceAccountMatch {
    pub fn matches(&self, entity: &Entity<'_>) -> bool {
        let Some(sa) = entity.service_account() else {
            return false;
        };
        if let Some(ns) = &self.namespace
            && entity.namespace() != Some(ns.as_str())
        {
            return false;
        }
        if !self.names.is_empty() && !self.names.iter().any(|n| n == sa) {
            return false;
        }
        self.selector
            .as_ref()
            .is_none_or(|sel| sel.matches_with(&|k: &str| (k == LABEL_SA_NAME).then_some(sa)))
    }
}

/// A port or range in a rule (inclusive), or a named port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PortMatch {
    Range(u16, u16),
    Named(String),
}

/// One side (source or destination) of a rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct EntityMatch {
    pub nets: Vec<IpNet>,
    pub not_nets: Vec<IpNet>,
    /// Effective selector (already scoped to namespaces as Calico scopes rule
    /// selectors); `None`: no selector constraint.
    pub selector: Option<EntitySelector>,
    /// Unscoped: also matches addresses that are no entity at all when they lack it.
    pub not_selector: Option<Selector>,
    /// Boxed, as `services`: rare, and a rule has two sides of every kept policy.
    pub service_accounts: Option<Box<ServiceAccountMatch>>,
    /// The side matches the Service's endpoints (a destination also their ports).
    pub services: Option<Box<ServiceRef>>,
    pub ports: Vec<PortMatch>,
    pub not_ports: Vec<PortMatch>,
}

impl EntityMatch {
    /// Whether the side tests anything about the address (not the port).
    pub(crate) fn tests_address(&self) -> bool {
        !self.nets.is_empty()
            || !self.not_nets.is_empty()
            || self.selector.is_some()
            || self.not_selector.is_some()
            || self.service_accounts.is_some()
            || self.services.is_some()
            || self
                .ports
                .iter()
                .chain(&self.not_ports)
                .any(|p| matches!(p, PortMatch::Named(_)))
    }

    pub fn has_ports(&self) -> bool {
        !self.ports.is_empty() || !self.not_ports.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleAction {
    Allow,
    Deny,
    Pass,
    Log,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IcmpMatch {
    pub icmp_type: u8,
    pub code: Option<u8>,
}

impl IcmpMatch {
    pub fn matches(&self, icmp_type: u8, code: u8) -> bool {
        self.icmp_type == icmp_type && self.code.is_none_or(|c| c == code)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    pub action: RuleAction,
    /// Explicit `ipVersion`, or implied by the rule's CIDRs (Felix renders a rule with
    /// IPv4 CIDRs only into the IPv4 ruleset).
    pub ip_version: Option<u8>,
    pub protocol: Option<u8>,
    pub not_protocol: Option<u8>,
    pub icmp: Option<IcmpMatch>,
    pub not_icmp: Option<IcmpMatch>,
    pub source: EntityMatch,
    pub destination: EntityMatch,
    /// Where the rule was written, e.g. `spec.ingress[2]` (Kubernetes rules expand into
    /// several: `spec.ingress[0].from[1]`).
    pub field: String,
}

impl Rule {
    /// The side that tests the remote address when the rule is evaluated in `dir`:
    /// the source of an ingress rule, the destination of an egress rule.
    pub(crate) fn peer_side(&self, dir: Direction) -> &EntityMatch {
        match dir {
            Direction::Ingress => &self.source,
            Direction::Egress => &self.destination,
        }
    }

    /// The side that tests the local endpoint's own address in `dir`.
    pub(crate) fn local_side(&self, dir: Direction) -> &EntityMatch {
        match dir {
            Direction::Ingress => &self.destination,
            Direction::Egress => &self.source,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub name: Arc<PolicyName>,
    pub id: ObjectId,
    pub source: Option<Source>,
    /// Index into [`Cluster::tiers`].
    pub tier: usize,
    pub order: Option<f64>,
    /// Which endpoints the policy applies to.
    pub subject: EntitySelector,
    pub subject_service_accounts: Option<ServiceAccountMatch>,
    pub applies_ingress: bool,
    pub applies_egress: bool,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
    pub pre_dnat: bool,
    pub do_not_track: bool,
    pub apply_on_forward: bool,
}

impl Policy {
    /// Gives back the spare capacity of the rule lists a conversion grew. The agent
    /// keeps every converted policy: at 10k policies of one or two rules each, a
    /// vector's first growth (four rules of ~900 bytes) left ~20 MiB unused.
    pub fn shrink_to_fit(&mut self) {
        for rules in [&mut self.ingress, &mut self.egress] {
            rules.shrink_to_fit();
            for rule in rules.iter_mut() {
                rule.field.shrink_to_fit();
                for side in [&mut rule.source, &mut rule.destination] {
                    side.nets.shrink_to_fit();
                    side.not_nets.shrink_to_fit();
                    side.ports.shrink_to_fit();
                    side.not_ports.shrink_to_fit();
                }
            }
        }
    }

    pub fn rules(&self, dir: Direction) -> &[Rule] {
        match dir {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    pub fn applies(&self, dir: Direction) -> bool {
        match dir {
            Direction::Ingress => self.applies_ingress,
            Direction::Egress => self.applies_egress,
        }
    }

    /// Whether the policy takes part in a workload endpoint's evaluation in `dir`.
    /// preDNAT and doNotTrack policies only ever apply to host endpoints.
    pub(crate) fn applies_to_endpoint(
        &self,
        cluster: &Cluster,
        endpoint: &Endpoint,
        dir: Direction,
    ) -> bool {
        if self.pre_dnat || self.do_not_track || !self.applies(dir) {
            return false;
        }
        self.selects(cluster, &Entity::Endpoint(endpoint))
    }

    /// Whether the policy's subject (its selector, and Calico's `serviceAccountSelector`)
    /// picks `entity`, whatever the direction and kind.
    pub(crate) fn selects(&self, cluster: &Cluster, entity: &Entity<'_>) -> bool {
        self.subject.matches(cluster, entity)
            && self
                .subject_service_accounts
                .as_ref()
                .is_none_or(|sa| sa.matches(entity))
    }
}

impl Cluster {
    /// Calls `f` with a namespace's labels (a namespace only pods mention has just
    /// `kubernetes.io/metadata.name`).
    pub(crate) fn namespace_labels<R>(&self, ns: &str, f: impl FnOnce(&Labels) -> R) -> R {
        if let Some(info) = self.namespaces.get(ns) {
            f(&info.labels)
        } else {
            let labels: Labels = [(LABEL_NAMESPACE_NAME.to_owned(), ns.to_owned())].into();
            f(&labels)
        }
    }

    /// Every entity of the cluster: endpoints, network sets, host endpoints, nodes.
    pub(crate) fn entities(&self) -> impl Iterator<Item = Entity<'_>> {
        self.endpoints
            .iter()
            .map(Entity::Endpoint)
            .chain(self.network_sets.iter().map(Entity::NetworkSet))
            .chain(self.host_endpoints.iter().map(Entity::HostEndpoint))
            .chain(self.nodes.iter().map(Entity::Node))
    }

    /// Every entity a rule selector can see at `addr`: endpoints and host endpoints
    /// with that address, and network sets with a CIDR containing it.
    pub(crate) fn entities_at(&self, addr: IpAddr) -> Vec<Entity<'_>> {
        let mut out: Vec<Entity<'_>> = self
            .by_addr
            .get(&addr)
            .into_iter()
            .flatten()
            .filter_map(|i| self.entity(*i))
            .collect();
        for set in &self.network_sets {
            if set.nets.iter().any(|n| n.contains(&addr)) {
                out.push(Entity::NetworkSet(set));
            }
        }
        out
    }

    fn entity(&self, index: EntityIndex) -> Option<Entity<'_>> {
        Some(match index {
            EntityIndex::Endpoint(i) => Entity::Endpoint(self.endpoints.get(i)?),
            EntityIndex::HostEndpoint(i) => Entity::HostEndpoint(self.host_endpoints.get(i)?),
            EntityIndex::Node(i) => Entity::Node(self.nodes.get(i)?),
        })
    }

    /// The backends of the Service a `services` match names (none if it has none or
    /// does not exist).
    pub fn backends(&self, service: &ServiceRef) -> &[Backend] {
        self.service_backends
            .get(&(service.namespace.clone(), service.name.clone()))
            .map_or(&[], Vec::as_slice)
    }

    /// The endpoint with this address, if any.
    pub fn endpoint_at(&self, addr: IpAddr) -> Option<&Endpoint> {
        self.by_addr.get(&addr)?.iter().find_map(|i| match i {
            EntityIndex::Endpoint(e) => self.endpoints.get(*e),
            EntityIndex::HostEndpoint(_) | EntityIndex::Node(_) => None,
        })
    }

    /// Rebuilds the address index after changing `endpoints`, `host_endpoints` or
    /// `nodes`.
    pub fn reindex(&mut self) {
        self.by_addr.clear();
        for (i, e) in self.endpoints.iter().enumerate() {
            for ip in &e.ips {
                self.by_addr
                    .entry(*ip)
                    .or_default()
                    .push(EntityIndex::Endpoint(i));
            }
        }
        for (i, h) in self.host_endpoints.iter().enumerate() {
            for ip in &h.ips {
                self.by_addr
                    .entry(*ip)
                    .or_default()
                    .push(EntityIndex::HostEndpoint(i));
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            for ip in &n.ips {
                self.by_addr
                    .entry(*ip)
                    .or_default()
                    .push(EntityIndex::Node(i));
            }
        }
    }
}

/// Protocol name or number as Calico accepts it.
pub(crate) fn parse_protocol(text: &str) -> Option<u8> {
    match text.to_ascii_lowercase().as_str() {
        "tcp" => Some(PROTO_TCP),
        "udp" => Some(PROTO_UDP),
        "icmp" => Some(PROTO_ICMP),
        "icmpv6" => Some(PROTO_ICMPV6),
        "sctp" => Some(PROTO_SCTP),
        "udplite" => Some(PROTO_UDPLITE),
        other => other.parse::<u8>().ok().filter(|p| *p >= 1),
    }
}

pub(crate) fn protocol_name(proto: u8) -> String {
    match proto {
        PROTO_TCP => "TCP".to_owned(),
        PROTO_UDP => "UDP".to_owned(),
        PROTO_ICMP => "ICMP".to_owned(),
        PROTO_ICMPV6 => "ICMPv6".to_owned(),
        PROTO_SCTP => "SCTP".to_owned(),
        PROTO_UDPLITE => "UDPLite".to_owned(),
        n => n.to_string(),
    }
}
