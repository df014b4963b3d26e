//! Which peer atoms can say anything but their default about a region.
//!
//! A peer class is the list of every atom's [`SideFacts`] at a region. Evaluating every
//! atom at every region is quadratic (10k atoms × 10k regions at scale), yet almost
//! every atom says the same thing at almost every region: what it says about an
//! address with no entity and in none of its nets (its *default*, [`default_facts`]).
//! A fact can only differ from that default when
//!
//! - the region's address is in one of the atom's `nets`/`notNets`, or
//! - an entity at the address can satisfy the atom's selector / service accounts (or,
//!   with neither, exists at all: named ports then resolve on any entity), or its
//!   notSelector.
//!
//! This index answers "which atoms might" per region: per atom, a *necessary*
//! condition on an entity (a label `k == v`, one of several, a label key, or a
//! namespace) drawn from its selectors, inverted into feature → atoms. Atoms whose
//! selectors give no such condition (`!=`, `not in`, `!`, …) are candidates for every
//! entity. The compiler then evaluates exactly (`side_facts_among`) only the
//! candidates; a superset of candidates is always correct, only slower.

use ipnet::IpNet;

use crate::eval::SideFacts;
use crate::policy::{Cluster, Entity, EntityMatch, NamespaceScope};
use crate::selector::Selector;

use super::hashing::{HashMap, HashSet};
use super::regions::Region;

/// What a side says about an address with no entity, outside all its nets (what
/// `side_facts_among` gives with no entities there).
pub(super) fn default_facts(side: &EntityMatch) -> SideFacts {
    SideFacts {
        selected: side.selector.is_none()
            && side.service_accounts.is_none()
            && side.services.is_none(),
        not_selected: false,
        in_nets: side.nets.is_empty(),
        in_not_nets: false,
        named_ports: Vec::new(),
        named_not_ports: Vec::new(),
        service_ports: Vec::new(),
    }
}

/// A property an entity must have for a selector to match it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Feature<'a> {
    Label(&'a str, &'a str),
    Key(&'a str),
    Namespace(&'a str),
}

/// How many entities have each feature, to pick the most selective condition.
struct Census<'a> {
    counts: HashMap<Feature<'a>, usize>,
    /// Namespace names entities are in (also those without a Namespace object).
    namespaces: HashSet<&'a str>,
    /// Namespace selector → the namespaces it matches, as features.
    by_namespace_selector: HashMap<&'a Selector, Vec<Feature<'a>>>,
}

impl<'a> Census<'a> {
    fn new(cluster: &'a Cluster) -> Self {
        let mut census = Census {
            counts: HashMap::default(),
            namespaces: HashSet::default(),
            by_namespace_selector: HashMap::default(),
        };
        let entities = cluster
            .endpoints
            .iter()
            .map(Entity::Endpoint)
            .chain(cluster.network_sets.iter().map(Entity::NetworkSet))
            .chain(cluster.host_endpoints.iter().map(Entity::HostEndpoint))
            .chain(cluster.nodes.iter().map(Entity::Node));
        for e in entities {
            for_each_feature(&e, |f| {
                if let Feature::Namespace(ns) = f {
                    census.namespaces.insert(ns);
                }
                *census.counts.entry(f).or_default() += 1;
            });
        }
        census
    }

    fn cost(&self, alternatives: &[Feature<'a>]) -> usize {
        alternatives
            .iter()
            .map(|f| self.counts.get(f).copied().unwrap_or(0))
            .sum()
    }

    /// The cheaper of two conditions (`None`: no condition).
    fn best(
        &self,
        a: Option<Vec<Feature<'a>>>,
        b: Option<Vec<Feature<'a>>>,
    ) -> Option<Vec<Feature<'a>>> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if self.cost(&b) < self.cost(&a) { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// Features one of which every entity the selector matches has (`None`: none
    /// such; an empty list: the selector matches nothing).
    fn required(&self, selector: &'a Selector) -> Option<Vec<Feature<'a>>> {
        match selector {
            Selector::Eq(k, v) => Some(vec![Feature::Label(k, v)]),
            Selector::In(k, vs) => Some(vs.iter().map(|v| Feature::Label(k, v)).collect()),
            // Absent labels are false for all of these.
            Selector::Has(k)
            | Selector::Contains(k, _)
            | Selector::StartsWith(k, _)
            | Selector::EndsWith(k, _) => Some(vec![Feature::Key(k)]),
            Selector::And(es) => es
                .iter()
                .fold(None, |best, e| self.best(best, self.required(e))),
            Selector::Or(es) => {
                let mut out = Vec::new();
                for e in es {
                    out.extend(self.required(e)?);
                }
                Some(out)
            }
            Selector::All
            | Selector::Global
            | Selector::Ne(..)
            | Selector::NotIn(..)
            | Selector::Not(_) => None,
        }
    }

    /// Features one of which every entity the side's selector and service accounts
    /// pick has (`None`: no condition, or no selector at all).
    fn side_required(
        &mut self,
        cluster: &'a Cluster,
        side: &'a EntityMatch,
    ) -> Option<Vec<Feature<'a>>> {
        let mut best = None;
        if let Some(sel) = &side.selector {
            best = self.required(&sel.selector);
            let scope = match &sel.namespace {
                NamespaceScope::Named(ns) => Some(vec![Feature::Namespace(ns.as_str())]),
                NamespaceScope::Selector(ns_sel) => {
                    // Many rules share a namespace selector: match the namespaces once.
                    let namespaces = &self.namespaces;
                    let matched = self.by_namespace_selector.entry(ns_sel).or_insert_with(|| {
                        namespaces
                            .iter()
                            .filter(|ns| cluster.namespace_labels(ns, |l| ns_sel.matches(l)))
                            .map(|ns| Feature::Namespace(ns))
                            .collect()
                    });
                    Some(matched.clone())
                }
                NamespaceScope::Any
                | NamespaceScope::AllNamespaced
                | NamespaceScope::NonNamespaced
                | NamespaceScope::Nodes => None,
            };
            best = self.best(best, scope);
        }
        if let Some(ns) = side
            .service_accounts
            .as_ref()
            .and_then(|sa| sa.namespace.as_deref())
        {
            best = self.best(best, Some(vec![Feature::Namespace(ns)]));
        }
        best
    }
}

fn for_each_feature<'a>(e: &Entity<'a>, mut f: impl FnMut(Feature<'a>)) {
    let labels = match e {
        Entity::Endpoint(x) => &x.labels,
        Entity::NetworkSet(x) => &x.labels,
        Entity::HostEndpoint(x) => &x.labels,
        Entity::Node(x) => &x.labels,
    };
    for (k, v) in labels {
        f(Feature::Label(k, v));
        f(Feature::Key(k));
    }
    let ns = match e {
        Entity::Endpoint(x) => Some(x.namespace.as_str()),
        Entity::NetworkSet(x) => x.namespace.as_deref(),
        Entity::HostEndpoint(_) | Entity::Node(_) => None,
    };
    if let Some(ns) = ns {
        f(Feature::Namespace(ns));
    }
}

/// Per atom: the conditions under which it may differ from its default.
pub(super) struct AtomIndex<'a> {
    by_feature: HashMap<Feature<'a>, Vec<u32>>,
    /// Atoms that may differ wherever there is any entity.
    any_entity: Vec<u32>,
    /// Per region: atoms with a net or notNet containing its representative.
    by_region: Vec<Vec<u32>>,
    /// Marks for deduplicating candidates: `seen[atom] == stamp`.
    seen: Vec<u32>,
    stamp: u32,
}

impl<'a> AtomIndex<'a> {
    /// `sides`: each atom's peer side.
    pub(super) fn new(cluster: &'a Cluster, sides: &[&'a EntityMatch], regions: &[Region]) -> Self {
        let mut census = Census::new(cluster);
        let mut by_feature: HashMap<Feature<'a>, Vec<u32>> = HashMap::default();
        let mut any_entity = Vec::new();
        let mut by_region = vec![Vec::new(); regions.len()];
        for (a, side) in sides.iter().enumerate() {
            let a = a as u32;
            let mut conditions: Vec<Option<Vec<Feature<'a>>>> = Vec::new();
            if side.selector.is_some() || side.service_accounts.is_some() {
                conditions.push(census.side_required(cluster, side));
            } else if side
                .ports
                .iter()
                .chain(&side.not_ports)
                .any(|p| matches!(p, crate::policy::PortMatch::Named(_)))
            {
                // Named ports resolve on every entity there.
                conditions.push(None);
            }
            if let Some(ns) = &side.not_selector {
                conditions.push(census.required(ns));
            }
            for condition in conditions {
                match condition {
                    None => any_entity.push(a),
                    Some(features) => {
                        for f in features {
                            by_feature.entry(f).or_default().push(a);
                        }
                    }
                }
            }
            // A `services` match differs from its default only at the Service's
            // endpoint addresses, each a region of its own (`regions.rs`).
            for backend in side.services.iter().flat_map(|s| cluster.backends(s)) {
                let net = IpNet::from(backend.ip);
                if let Ok(i) = regions.binary_search_by(|r| r.net.cmp(&net)) {
                    by_region[i].push(a);
                }
            }
            for net in side.nets.iter().chain(&side.not_nets) {
                let net = net.trunc();
                // Regions are sorted; those inside `net` start at `net` itself.
                let start = regions.partition_point(|r| r.net < net);
                for (i, r) in regions.iter().enumerate().skip(start) {
                    if r.net.addr().is_ipv4() != net.addr().is_ipv4()
                        || r.net.network() > net.broadcast()
                    {
                        break;
                    }
                    if r.rep.is_some_and(|rep| net.contains(&rep)) {
                        by_region[i].push(a);
                    }
                }
            }
        }
        for atoms in by_feature.values_mut() {
            atoms.sort_unstable();
            atoms.dedup();
        }
        AtomIndex {
            by_feature,
            any_entity,
            by_region,
            seen: vec![0; sides.len()],
            stamp: 0,
        }
    }

    /// The atoms that may differ from their default at `region` (whose representative
    /// sees `entities`), sorted.
    pub(super) fn candidates(&mut self, region: usize, entities: &[Entity<'a>]) -> Vec<u32> {
        self.stamp += 1;
        let stamp = self.stamp;
        let seen = &mut self.seen;
        let mut out = Vec::new();
        let mut add = |a: u32| {
            if seen[a as usize] != stamp {
                seen[a as usize] = stamp;
                out.push(a);
            }
        };
        self.by_region[region].iter().copied().for_each(&mut add);
        if !entities.is_empty() {
            self.any_entity.iter().copied().for_each(&mut add);
        }
        for e in entities {
            for_each_feature(e, |f| {
                if let Some(atoms) = self.by_feature.get(&f) {
                    atoms.iter().copied().for_each(&mut add);
                }
            });
        }
        out.sort_unstable();
        out
    }
}
