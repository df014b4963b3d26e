//! The reference evaluator: Calico's evaluation written directly over the
//! [`Cluster`], with no classes and no maps. It is the spec the compiler is tested
//! against (`compile::simulate` + the differential property test).
//!
//! Per endpoint and direction: tiers in order; in a tier, the policies that select the
//! endpoint for that direction, in order; in a policy, rules in order, first match
//! decides (Allow/Deny final, Pass = go to the next tier, Log = record and continue);
//! a tier with a selecting policy and no decision ends in its default action (Deny, or
//! Pass to the next tier); after the tiers the namespace profile `kns.<ns>` allows.

use std::net::IpAddr;
use std::sync::Arc;

use crate::model::PolicyName;
use crate::policy::{
    Cluster, Direction, Endpoint, EntityMatch, PortMatch, Rule, RuleAction, TierAction, has_ports,
    is_icmp,
};

/// A packet (the first of a flow) as policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    /// TCP/UDP/SCTP/UDPLite only.
    pub src_port: u16,
    pub dst_port: u16,
    /// ICMP/ICMPv6 only.
    pub icmp_type: u8,
    pub icmp_code: u8,
}

impl Packet {
    /// The value a rule's destination port (or ICMP type/code) is tested against, as
    /// the dataplane keys it: the destination port, or `type << 8 | code` for ICMP.
    pub fn dst_port_key(&self) -> u16 {
        if is_icmp(self.proto) {
            u16::from(self.icmp_type) << 8 | u16::from(self.icmp_code)
        } else if has_ports(self.proto) {
            self.dst_port
        } else {
            0
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Allow,
    Deny,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecisionKind {
    /// An Allow or Deny rule.
    Rule,
    /// No rule matched in a tier that selected the endpoint.
    TierDefault,
    /// No tier decided; the namespace profile allows.
    Profile,
    /// No tier decided and no profile allows.
    NoProfile,
}

/// A Log rule that matched on the way to the decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRule {
    pub policy: Arc<PolicyName>,
    /// Index into [`Cluster::policies`].
    pub policy_index: usize,
    pub rule_index: usize,
}

/// The decision for one leg (one endpoint, one direction).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegDecision {
    pub action: Action,
    pub tier: Option<String>,
    pub policy: Option<Arc<PolicyName>>,
    /// Index into [`Cluster::policies`].
    pub policy_index: Option<usize>,
    /// Index of the deciding rule inside the policy's rules for this direction.
    pub rule_index: Option<usize>,
    pub kind: DecisionKind,
    pub logged: Vec<LoggedRule>,
}

/// Both legs of a flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowDecision {
    /// The source endpoint's egress, when the source is an endpoint.
    pub egress: Option<LegDecision>,
    /// The destination endpoint's ingress, when the destination is an endpoint.
    pub ingress: Option<LegDecision>,
    pub allowed: bool,
}

/// Judges a flow's first packet: the source's egress and the destination's ingress.
pub fn evaluate(cluster: &Cluster, packet: &Packet) -> FlowDecision {
    let egress = cluster
        .endpoint_at(packet.src)
        .map(|ep| evaluate_leg(cluster, ep, Direction::Egress, packet));
    let ingress = cluster
        .endpoint_at(packet.dst)
        .map(|ep| evaluate_leg(cluster, ep, Direction::Ingress, packet));
    let allowed = [&egress, &ingress]
        .into_iter()
        .all(|leg| leg.as_ref().is_none_or(|l| l.action == Action::Allow));
    FlowDecision {
        egress,
        ingress,
        allowed,
    }
}

/// Judges one leg: `endpoint`'s policy for `dir` (ingress: the packet is to it;
/// egress: from it).
pub(crate) fn evaluate_leg(
    cluster: &Cluster,
    endpoint: &Endpoint,
    dir: Direction,
    packet: &Packet,
) -> LegDecision {
    let applicable = applicable_policies(cluster, endpoint, dir);
    decide(cluster, &applicable, dir, packet)
}

/// Indices of the policies that take part in `endpoint`'s evaluation for `dir`, in
/// evaluation order.
pub fn applicable_policies(cluster: &Cluster, endpoint: &Endpoint, dir: Direction) -> Vec<usize> {
    (0..cluster.policies.len())
        .filter(|&i| cluster.policies[i].applies_to_endpoint(cluster, endpoint, dir))
        .collect()
}

/// The tier walk over already-selected policies (`applicable`, in evaluation order).
pub(crate) fn decide(
    cluster: &Cluster,
    applicable: &[usize],
    dir: Direction,
    packet: &Packet,
) -> LegDecision {
    let entities = PacketEntities::of(cluster, packet);
    decide_with(cluster, applicable, dir, |_, _, rule| {
        rule_matches_among(cluster, rule, packet, &entities)
    })
}

/// [`decide`] with rule matching left to `matches(position in applicable, rule index,
/// rule)`: every rule of every applicable policy is a candidate.
pub(crate) fn decide_with(
    cluster: &Cluster,
    applicable: &[usize],
    dir: Direction,
    matches: impl FnMut(usize, usize, &Rule) -> bool,
) -> LegDecision {
    let every_rule = applicable
        .iter()
        .enumerate()
        .flat_map(|(pos, &p)| (0..cluster.policies[p].rules(dir).len()).map(move |r| (pos, r)));
    let spans = tier_spans(cluster, applicable);
    walk(cluster, applicable, &spans, dir, every_rule, matches).named(cluster)
}

/// One tier among the applicable policies: its policies are contiguous (evaluation
/// order is tier first) and end before position `end` of `applicable`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TierSpan {
    /// Index into [`Cluster::tiers`].
    pub tier: usize,
    pub end: usize,
}

/// The tiers of `applicable`, in order.
pub(crate) fn tier_spans(cluster: &Cluster, applicable: &[usize]) -> Vec<TierSpan> {
    let mut spans: Vec<TierSpan> = Vec::new();
    for (pos, &p) in applicable.iter().enumerate() {
        let tier = cluster.policies[p].tier;
        match spans.last_mut() {
            Some(span) if span.tier == tier => span.end = pos + 1,
            _ => spans.push(TierSpan { tier, end: pos + 1 }),
        }
    }
    spans
}

/// How many of `applicable` (in evaluation order) a packet can reach in `dir`: up to
/// the end of the first tier that decides every packet reaching it, all of them if
/// none does. A tier decides every packet when its default action is Deny and none of
/// its applicable policies has a Pass rule in `dir`: [`walk`] then returns within it
/// (an Allow or Deny rule, or the end-of-tier drop), so no later rule can decide or
/// log anything.
pub(crate) fn reachable(cluster: &Cluster, applicable: &[usize], dir: Direction) -> usize {
    let mut start = 0;
    for span in tier_spans(cluster, applicable) {
        let passes = applicable[start..span.end].iter().any(|&p| {
            cluster.policies[p]
                .rules(dir)
                .iter()
                .any(|r| r.action == RuleAction::Pass)
        });
        if !passes && cluster.tiers[span.tier].default_action == TierAction::Deny {
            return span.end;
        }
        start = span.end;
    }
    applicable.len()
}

/// A decision by indices only (what the compiler writes); [`Walked::named`] adds the
/// names of [`LegDecision`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Walked {
    pub action: Action,
    pub kind: DecisionKind,
    /// Index into [`Cluster::tiers`] of the deciding tier.
    pub tier: Option<usize>,
    /// Index into [`Cluster::policies`].
    pub policy_index: Option<usize>,
    pub rule_index: Option<usize>,
    /// (policy index, rule index) of each Log rule that matched on the way.
    pub logged: Vec<(usize, usize)>,
}

impl Walked {
    fn named(self, cluster: &Cluster) -> LegDecision {
        LegDecision {
            action: self.action,
            tier: self.tier.map(|t| cluster.tiers[t].name.clone()),
            policy: self.policy_index.map(|p| cluster.policies[p].name.clone()),
            policy_index: self.policy_index,
            rule_index: self.rule_index,
            kind: self.kind,
            logged: self
                .logged
                .into_iter()
                .map(|(p, r)| LoggedRule {
                    policy: cluster.policies[p].name.clone(),
                    policy_index: p,
                    rule_index: r,
                })
                .collect(),
        }
    }
}

/// The tier walk. `spans` are `applicable`'s tiers ([`tier_spans`]); `candidates` the
/// (position in `applicable`, rule index) of every rule that may match, in evaluation
/// order: a rule left out is taken as not matching (the compiler leaves out the rules
/// whose address predicates already fail, so a walk visits a handful of rules rather
/// than every rule of every policy). Per tier: candidates in order, first match
/// decides (Allow/Deny final, Pass = the next tier, Log = record and go on); a tier
/// without a decision ends in its default action; after the tiers the namespace
/// profile allows.
pub(crate) fn walk(
    cluster: &Cluster,
    applicable: &[usize],
    spans: &[TierSpan],
    dir: Direction,
    candidates: impl Iterator<Item = (usize, usize)>,
    mut matches: impl FnMut(usize, usize, &Rule) -> bool,
) -> Walked {
    let mut candidates = candidates.peekable();
    let mut logged = Vec::new();
    for span in spans {
        let mut passed = false;
        while let Some((pos, r)) = candidates.next_if(|&(pos, _)| pos < span.end) {
            let p = applicable[pos];
            let rule = &cluster.policies[p].rules(dir)[r];
            if !matches(pos, r, rule) {
                continue;
            }
            let decided = |action, logged| Walked {
                action,
                kind: DecisionKind::Rule,
                tier: Some(span.tier),
                policy_index: Some(p),
                rule_index: Some(r),
                logged,
            };
            match rule.action {
                RuleAction::Allow => return decided(Action::Allow, logged),
                RuleAction::Deny => return decided(Action::Deny, logged),
                RuleAction::Pass => {
                    passed = true;
                    break;
                }
                RuleAction::Log => logged.push((p, r)),
            }
        }
        if passed {
            // The rest of the tier is not evaluated.
            while candidates.next_if(|&(pos, _)| pos < span.end).is_some() {}
        } else if cluster.tiers[span.tier].default_action == TierAction::Deny {
            // Calico attributes the end-of-tier drop to the tier's last policy.
            return Walked {
                action: Action::Deny,
                kind: DecisionKind::TierDefault,
                tier: Some(span.tier),
                policy_index: Some(applicable[span.end - 1]),
                rule_index: None,
                logged,
            };
        }
    }
    // Every workload endpoint has its namespace profile `kns.<ns>`, which allows all.
    Walked {
        action: Action::Allow,
        kind: DecisionKind::Profile,
        tier: None,
        policy_index: None,
        rule_index: None,
        logged,
    }
}

/// Whether a rule matches the packet.
pub(crate) fn rule_matches(cluster: &Cluster, rule: &Rule, packet: &Packet) -> bool {
    rule_matches_among(cluster, rule, packet, &PacketEntities::of(cluster, packet))
}

/// The entities at a packet's source and destination addresses, looked up once per
/// packet: a walk over 10k rules asked for them at every rule that tests an address
/// (an allocation and a pass over the network sets each time).
pub(crate) struct PacketEntities<'c> {
    src: Vec<crate::policy::Entity<'c>>,
    dst: Vec<crate::policy::Entity<'c>>,
}

impl<'c> PacketEntities<'c> {
    pub(crate) fn of(cluster: &'c Cluster, packet: &Packet) -> Self {
        Self {
            src: cluster.entities_at(packet.src),
            dst: cluster.entities_at(packet.dst),
        }
    }
}

/// [`rule_matches`] with the packet's entities already looked up.
pub(crate) fn rule_matches_among(
    cluster: &Cluster,
    rule: &Rule,
    packet: &Packet,
    entities: &PacketEntities<'_>,
) -> bool {
    if !protocol_matches(rule, packet) {
        return false;
    }
    // Numeric ports decide without the entities, and cost less than the selectors: a
    // policy of thousands of rules on other ports is passed over at this test.
    if numeric_ports_exclude(&rule.source, packet.src_port)
        || numeric_ports_exclude(&rule.destination, packet.dst_port_key())
    {
        return false;
    }
    let src = side_facts_at(
        cluster,
        &rule.source,
        rule.protocol,
        packet.src,
        &entities.src,
    );
    if !src.address_matches() {
        return false;
    }
    let dst = side_facts_at(
        cluster,
        &rule.destination,
        rule.protocol,
        packet.dst,
        &entities.dst,
    );
    dst.address_matches()
        && src.port_matches(&rule.source, packet.src_port)
        && dst.port_matches(&rule.destination, packet.dst_port_key())
        && dst.service_port_matches(&rule.destination, packet.proto, packet.dst_port_key())
}

/// The parts of a rule that depend only on the packet's family, protocol and
/// ICMP type/code: `ipVersion`, `protocol`, `notProtocol`, `icmp`, `notICMP`.
pub(crate) fn protocol_matches(rule: &Rule, packet: &Packet) -> bool {
    let family = if packet.src.is_ipv4() { 4 } else { 6 };
    if rule.ip_version.is_some_and(|v| v != family) {
        return false;
    }
    if rule.protocol.is_some_and(|p| p != packet.proto) || rule.not_protocol == Some(packet.proto) {
        return false;
    }
    if let Some(icmp) = &rule.icmp
        && !(is_icmp(packet.proto) && icmp.matches(packet.icmp_type, packet.icmp_code))
    {
        return false;
    }
    if let Some(icmp) = &rule.not_icmp
        && is_icmp(packet.proto)
        && icmp.matches(packet.icmp_type, packet.icmp_code)
    {
        return false;
    }
    true
}

/// Everything a rule side tests about one address: what the compiler's peer classes
/// and profiles must keep apart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SideFacts {
    /// The side's selector/serviceAccounts match an entity at the address (true when
    /// the side has neither).
    pub selected: bool,
    /// An entity at the address matches the side's notSelector.
    pub not_selected: bool,
    /// The address is in one of `nets` (true when `nets` is empty).
    pub in_nets: bool,
    pub in_not_nets: bool,
    /// Numbers of the side's named `ports` on the selected entities at the address.
    pub named_ports: Vec<u16>,
    /// Numbers of the side's named `notPorts` there.
    pub named_not_ports: Vec<u16>,
    /// For a side with a `services` match: the (protocol, port) pairs the Service's
    /// endpoints at the address serve (what a destination match also tests).
    pub service_ports: Vec<(u8, u16)>,
}

impl SideFacts {
    /// The facts of a side that tests nothing about the address: it matches anywhere.
    pub(crate) const fn untested() -> Self {
        SideFacts {
            selected: true,
            not_selected: false,
            in_nets: true,
            in_not_nets: false,
            named_ports: Vec::new(),
            named_not_ports: Vec::new(),
            service_ports: Vec::new(),
        }
    }

    pub fn address_matches(&self) -> bool {
        self.selected && !self.not_selected && self.in_nets && !self.in_not_nets
    }

    /// `ports`/`notPorts` against a port (named ports through the resolved numbers).
    pub fn port_matches(&self, side: &EntityMatch, port: u16) -> bool {
        let in_ports = side.ports.is_empty()
            || numeric_port_in(&side.ports, port)
            || self.named_ports.contains(&port);
        let in_not_ports =
            numeric_port_in(&side.not_ports, port) || self.named_not_ports.contains(&port);
        in_ports && !in_not_ports
    }

    /// A destination `services` match: the packet's protocol and port are one an
    /// endpoint of the Service at the address serves (true without a `services`).
    pub fn service_port_matches(&self, side: &EntityMatch, proto: u8, port: u16) -> bool {
        side.services.is_none() || self.service_ports.contains(&(proto, port))
    }
}

/// Whether `port` fails the side's `ports`/`notPorts` whatever the entities at the
/// address ([`SideFacts::port_matches`] is then false): `ports` are all numeric and
/// none holds it, or a numeric `notPorts` does. Named ports resolve per entity, so a
/// named `ports` entry leaves the answer to the facts.
fn numeric_ports_exclude(side: &EntityMatch, port: u16) -> bool {
    let outside_ports = !side.ports.is_empty()
        && side.ports.iter().all(|p| matches!(p, PortMatch::Range(..)))
        && !numeric_port_in(&side.ports, port);
    outside_ports || numeric_port_in(&side.not_ports, port)
}

pub(crate) fn numeric_port_in(ports: &[PortMatch], port: u16) -> bool {
    ports
        .iter()
        .any(|p| matches!(p, PortMatch::Range(a, b) if (*a..=*b).contains(&port)))
}

/// Evaluates a rule side's address predicates at `addr`. Named ports resolve on the
/// entities at the address that the side's selector picks (the port's owner: the
/// destination pod for egress, the local pod for ingress destinations).
pub fn side_facts(
    cluster: &Cluster,
    side: &EntityMatch,
    protocol: Option<u8>,
    addr: IpAddr,
) -> SideFacts {
    if !side.tests_address() {
        return SideFacts::untested();
    }
    side_facts_among(cluster, side, protocol, addr, &cluster.entities_at(addr))
}

/// [`side_facts`] given the entities at `addr`.
fn side_facts_at(
    cluster: &Cluster,
    side: &EntityMatch,
    protocol: Option<u8>,
    addr: IpAddr,
    entities: &[crate::policy::Entity<'_>],
) -> SideFacts {
    if !side.tests_address() {
        return SideFacts::untested();
    }
    side_facts_among(cluster, side, protocol, addr, entities)
}

/// [`side_facts`] with the entities at `addr` already looked up.
pub(crate) fn side_facts_among(
    cluster: &Cluster,
    side: &EntityMatch,
    protocol: Option<u8>,
    addr: IpAddr,
    entities: &[crate::policy::Entity<'_>],
) -> SideFacts {
    let picks = |e: &crate::policy::Entity<'_>| {
        side.selector.as_ref().is_none_or(|s| s.matches(cluster, e))
            && side
                .service_accounts
                .as_ref()
                .is_none_or(|sa| sa.matches(e))
    };
    let selected =
        (side.selector.is_none() && side.service_accounts.is_none()) || entities.iter().any(picks);
    // A `services` match: the address is one of the Service's endpoints.
    let backends = side.services.as_ref().map(|s| cluster.backends(s));
    let service_ports: Vec<(u8, u16)> = backends
        .into_iter()
        .flatten()
        .filter(|b| b.ip == addr)
        .map(|b| (b.protocol, b.port))
        .collect();
    let selected = selected && (side.services.is_none() || !service_ports.is_empty());
    let not_selected = side.not_selector.as_ref().is_some_and(|ns| {
        entities
            .iter()
            .any(|e| e.is_calico_entity() && ns.matches(e.labels()))
    });
    let resolve = |ports: &[PortMatch]| -> Vec<u16> {
        let mut out: Vec<u16> = ports
            .iter()
            .filter_map(|p| match p {
                PortMatch::Named(name) => Some(name),
                PortMatch::Range(..) => None,
            })
            .flat_map(|name| {
                entities
                    .iter()
                    .filter(|e| picks(e))
                    .filter_map(|e| protocol.and_then(|proto| e.named_port(name, proto)))
                    .collect::<Vec<u16>>()
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    };
    SideFacts {
        selected,
        not_selected,
        in_nets: side.nets.is_empty() || side.nets.iter().any(|n| n.contains(&addr)),
        in_not_nets: side.not_nets.iter().any(|n| n.contains(&addr)),
        named_ports: resolve(&side.ports),
        named_not_ports: resolve(&side.not_ports),
        service_ports,
    }
}

pub(crate) mod host;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod admin_tests;
