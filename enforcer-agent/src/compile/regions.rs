//! The peer LPM entries and their regions.
//!
//! Every prefix a rule or network set names, every pod, host endpoint and node address, every
//! Service VIP, every address of the node and `/0` per family is an entry of `ENF_PEERS_V4`/`V6`. The addresses
//! whose longest match is an entry form its *region*. CIDRs nest or are disjoint, so
//! all addresses of a region are alike for every net predicate and see the same
//! entities: one representative address per region stands for all of them.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::hashing::HashSet;
use super::input::Input;
use super::prefixes::NamedPrefix;

/// One peer LPM entry and its region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Region {
    pub(super) net: IpNet,
    /// An address whose longest match is `net`; `None`: fully covered, not emitted.
    pub(super) rep: Option<IpAddr>,
    /// The endpoint whose address `net` is.
    pub(super) endpoint: Option<usize>,
    /// A Service VIP (and no endpoint's address).
    pub(super) vip: bool,
    /// Named by a rule, a network set or a host endpoint (also when it is a pod's /32).
    pub(super) named: bool,
}

/// What the entries at one prefix come from.
#[derive(Default)]
struct Origins {
    endpoint: Option<usize>,
    vip: bool,
    named: bool,
}

/// All peer LPM entries with their representative addresses, sorted by prefix: the
/// input's entity prefixes (`prefixes.rs`) and what the rules and the node name.
pub(super) fn regions(input: &Input<'_>) -> Vec<Region> {
    let cluster = input.cluster;
    // What the rules and the node name, sorted (stably) and merged with the entities'
    // prefixes below: a few hundred prefixes at scale, not the ~10k endpoints' again.
    let mut named: Vec<NamedPrefix> = Vec::new();
    let mut add = |net: IpNet, endpoint: Option<usize>, vip: bool| {
        named.push((net.trunc(), endpoint, vip));
    };
    add(IpNet::V4(Ipv4Net::default()), None, false);
    add(IpNet::V6(Ipv6Net::default()), None, false);
    // Every net a rule names, and the endpoints of every Service it matches by name.
    for r in &input.rules {
        for side in [&r.rule.source, &r.rule.destination] {
            for net in side.nets.iter().chain(&side.not_nets) {
                add(*net, None, false);
            }
            for backend in side.services.iter().flat_map(|s| cluster.backends(s)) {
                add(IpNet::from(backend.ip), None, false);
            }
        }
    }
    // The node's own addresses: their host class says "the node's" (compile::host).
    for net in input.addresses.nets() {
        add(*net, None, false);
    }
    named.sort_by_key(|&(net, _, _)| net);
    // Equal prefixes from both lists fold into one entry whichever comes first: only
    // the entities' list names endpoints, and the other origins are unions.
    let merged = Merged {
        a: input.entity_prefixes.iter().copied().peekable(),
        b: named.into_iter().peekable(),
    };
    let mut entries: Vec<(IpNet, Origins)> = Vec::new();
    for (net, endpoint, vip) in merged {
        if entries.last().is_none_or(|(last, _)| *last != net) {
            entries.push((net, Origins::default()));
        }
        if let Some((_, e)) = entries.last_mut() {
            // The last endpoint named at an address is the one: the endpoints are
            // named in the cluster's order, which the stable sort keeps.
            if endpoint.is_some() {
                e.endpoint = endpoint;
            }
            e.vip |= vip;
            e.named |= endpoint.is_none() && !vip;
        }
    }
    let set: Vec<IpNet> = entries.iter().map(|(net, _)| *net).collect();
    entries
        .into_iter()
        .map(|(net, origins)| Region {
            net,
            rep: if net.prefix_len() == net.max_prefix_len() {
                Some(net.addr())
            } else {
                free_address(net, net, &set)
            },
            endpoint: origins.endpoint,
            vip: origins.vip && origins.endpoint.is_none(),
            named: origins.named,
        })
        .collect()
}

/// Two lists sorted by prefix, in one sorted sequence.
struct Merged<A: Iterator<Item = NamedPrefix>, B: Iterator<Item = NamedPrefix>> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<A: Iterator<Item = NamedPrefix>, B: Iterator<Item = NamedPrefix>> Iterator for Merged<A, B> {
    type Item = NamedPrefix;

    fn next(&mut self) -> Option<NamedPrefix> {
        match (self.a.peek(), self.b.peek()) {
            (Some(a), Some(b)) if b.0 < a.0 => self.b.next(),
            (Some(_), _) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

/// The prefixes rules, network sets and host endpoints name (what an endpoint's
/// fingerprint looks up).
pub(super) fn named_nets(regions: &[Region]) -> NamedNets {
    let nets: HashSet<IpNet> = regions.iter().filter(|r| r.named).map(|r| r.net).collect();
    let mut lens: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    for net in &nets {
        lens[usize::from(net.addr().is_ipv6())].push(net.prefix_len());
    }
    for l in &mut lens {
        l.sort_unstable_by(|a, b| b.cmp(a));
        l.dedup();
    }
    NamedNets { nets, lens }
}

/// The prefixes a rule, a network set or a host endpoint names, and the prefix lengths
/// among them per family: the most specific one around an address is found by probing
/// only those lengths (a handful), not every length of the family.
pub(super) struct NamedNets {
    nets: HashSet<IpNet>,
    /// Per family (IPv4, IPv6): the prefix lengths present, longest first.
    lens: [Vec<u8>; 2],
}

impl NamedNets {
    /// The most specific named prefix containing `addr`.
    pub(super) fn around(&self, addr: IpAddr) -> Option<IpNet> {
        self.lens[usize::from(addr.is_ipv6())]
            .iter()
            .filter_map(|&len| IpNet::new(addr, len).ok().map(|n| n.trunc()))
            .find(|n| self.nets.contains(n))
    }
}

/// An address in `net` that no other entry of `set` (sorted, distinct) covers more
/// specifically.
fn free_address(net: IpNet, owner: IpNet, set: &[IpNet]) -> Option<IpAddr> {
    if net != owner && set.binary_search(&net).is_ok() {
        return None;
    }
    let from = IpNet::new(net.network(), 0).map_or(net, |n| n);
    let inside = set[set.partition_point(|n| *n < from)..]
        .iter()
        .take_while(|n| n.network() <= net.broadcast())
        .any(|n| n.prefix_len() > net.prefix_len() && net.contains(n));
    if !inside {
        return Some(net.network());
    }
    if net.prefix_len() == net.max_prefix_len() {
        return None;
    }
    let halves = net.subnets(net.prefix_len() + 1).ok()?;
    for half in halves {
        if let Some(a) = free_address(half, owner, set) {
            return Some(a);
        }
    }
    None
}
