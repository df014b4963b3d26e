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

use std::net::IpAddr;

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

/// How many entities have each feature, to pick the most selective condition: counted
/// for every feature of every entity at once (for all the atoms of a compile), or on
/// demand for the features asked about (for the few atoms an update adds).
struct Census<'a> {
    cluster: &'a Cluster,
    /// `None`: counted on demand.
    counts: Option<HashMap<Feature<'a>, usize>>,
    /// Namespace names entities are in (also those without a Namespace object), found
    /// when first needed.
    namespaces: Option<HashSet<&'a str>>,
    /// Namespace selector → the namespaces it matches, as features.
    by_namespace_selector: HashMap<&'a Selector, Vec<Feature<'a>>>,
}

impl<'a> Census<'a> {
    /// Every feature of every entity counted.
    fn full(cluster: &'a Cluster) -> Self {
        let mut counts: HashMap<Feature<'a>, usize> = HashMap::default();
        let mut namespaces = HashSet::default();
        for e in cluster.entities() {
            for_each_feature(&e, |f| {
                if let Feature::Namespace(ns) = f {
                    namespaces.insert(ns);
                }
                *counts.entry(f).or_default() += 1;
            });
        }
        Census {
            cluster,
            counts: Some(counts),
            namespaces: Some(namespaces),
            by_namespace_selector: HashMap::default(),
        }
    }

    /// Nothing counted yet: each count asked for is a pass over the entities.
    fn on_demand(cluster: &'a Cluster) -> Self {
        Census {
            cluster,
            counts: None,
            namespaces: None,
            by_namespace_selector: HashMap::default(),
        }
    }

    fn count(&self, feature: Feature<'a>) -> usize {
        match &self.counts {
            Some(counts) => counts.get(&feature).copied().unwrap_or(0),
            None => self
                .cluster
                .entities()
                .filter(|e| has_feature(e, feature))
                .count(),
        }
    }

    fn cost(&self, alternatives: &[Feature<'a>]) -> usize {
        alternatives.iter().map(|f| self.count(*f)).sum()
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
    fn side_required(&mut self, side: &'a EntityMatch) -> Option<Vec<Feature<'a>>> {
        let cluster = self.cluster;
        let mut best = None;
        if let Some(sel) = &side.selector {
            best = self.required(&sel.selector);
            let scope = match &sel.namespace {
                NamespaceScope::Named(ns) => Some(vec![Feature::Namespace(ns.as_str())]),
                NamespaceScope::Selector(ns_sel) => {
                    // Many rules share a namespace selector: match the namespaces once.
                    let namespaces = self.namespaces.get_or_insert_with(|| {
                        cluster.entities().filter_map(|e| e.namespace()).collect()
                    });
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
    for (k, v) in e.labels() {
        f(Feature::Label(k, v));
        f(Feature::Key(k));
    }
    if let Some(ns) = e.namespace() {
        f(Feature::Namespace(ns));
    }
}

/// Whether the entity has the feature ([`for_each_feature`] gives it).
fn has_feature(e: &Entity<'_>, feature: Feature<'_>) -> bool {
    match feature {
        Feature::Label(k, v) => e.labels().get(k).is_some_and(|x| x == v),
        Feature::Key(k) => e.labels().contains_key(k),
        Feature::Namespace(ns) => e.namespace() == Some(ns),
    }
}

/// The entity conditions under which a side may differ from its default: each either
/// features one of which the entity has, or `None` (any entity).
fn conditions<'a>(census: &mut Census<'a>, side: &'a EntityMatch) -> Vec<Option<Vec<Feature<'a>>>> {
    let mut conditions = Vec::new();
    if side.selector.is_some() || side.service_accounts.is_some() {
        conditions.push(census.side_required(side));
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
    conditions
}

/// The regions where a side may differ from its default whatever the entities there:
/// its Services' endpoint addresses and the regions inside its nets and notNets.
fn for_each_region_of_side(
    cluster: &Cluster,
    side: &EntityMatch,
    regions: &[Region],
    mut f: impl FnMut(usize),
) {
    // A `services` match differs from its default only at the Service's endpoint
    // addresses, each a region of its own (`regions.rs`).
    for backend in side.services.iter().flat_map(|s| cluster.backends(s)) {
        if let Some(i) = exact_region(regions, IpNet::from(backend.ip)) {
            f(i);
        }
    }
    for net in side.nets.iter().chain(&side.not_nets) {
        for_each_region_inside(*net, regions, &mut f);
    }
}

/// The region whose entry is `net` itself.
fn exact_region(regions: &[Region], net: IpNet) -> Option<usize> {
    regions.binary_search_by(|r| r.net.cmp(&net)).ok()
}

/// The regions whose representative is in `net`.
fn for_each_region_inside(net: IpNet, regions: &[Region], mut f: impl FnMut(usize)) {
    let net = net.trunc();
    // Regions are sorted; those inside `net` start at `net` itself.
    let start = regions.partition_point(|r| r.net < net);
    for (i, r) in regions.iter().enumerate().skip(start) {
        if r.net.addr().is_ipv4() != net.addr().is_ipv4() || r.net.network() > net.broadcast() {
            break;
        }
        if r.rep.is_some_and(|rep| net.contains(&rep)) {
            f(i);
        }
    }
}

/// The regions whose representative sees the entity (`Cluster::entities_at`): an
/// address of an endpoint, host endpoint or node is an entry of its own (`regions.rs`);
/// a network set is seen inside its nets.
fn for_each_region_of_entity(entity: &Entity<'_>, regions: &[Region], mut f: impl FnMut(usize)) {
    let ips = match entity {
        Entity::Endpoint(e) => &e.ips,
        Entity::HostEndpoint(h) => &h.ips,
        Entity::Node(n) => &n.ips,
        Entity::NetworkSet(set) => {
            for net in &set.nets {
                for_each_region_inside(*net, regions, &mut f);
            }
            return;
        }
    };
    for ip in ips {
        if let Some(i) = exact_region(regions, IpNet::from(*ip)) {
            f(i);
        }
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
        let mut census = Census::full(cluster);
        let mut by_feature: HashMap<Feature<'a>, Vec<u32>> = HashMap::default();
        let mut any_entity = Vec::new();
        let mut by_region = vec![Vec::new(); regions.len()];
        for (a, side) in sides.iter().enumerate() {
            let a = a as u32;
            for condition in conditions(&mut census, side) {
                match condition {
                    None => any_entity.push(a),
                    Some(features) => {
                        for f in features {
                            by_feature.entry(f).or_default().push(a);
                        }
                    }
                }
            }
            for_each_region_of_side(cluster, side, regions, |i| by_region[i].push(a));
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

/// At most this many atoms are placed by [`AtomRegions::listed`]: each costs passes
/// over the entities, where the [`AtomIndex`] costs one census of all of them.
const LISTED_ATOMS_MAX: usize = 16;

/// Where the atoms a policy change adds may differ from their defaults, region by
/// region in increasing order: listed from the entities that have their features (a
/// few atoms: proportional to what they select, no census and no look at the other
/// regions), or asked of an [`AtomIndex`] at every region (many atoms).
pub(super) enum AtomRegions<'a> {
    /// Sorted, distinct (region, atom) pairs, and how far the walk has come.
    Listed {
        pairs: Vec<(usize, u32)>,
        next: usize,
    },
    Indexed(AtomIndex<'a>),
}

impl<'a> AtomRegions<'a> {
    pub(super) fn new(cluster: &'a Cluster, sides: &[&'a EntityMatch], regions: &[Region]) -> Self {
        if sides.len() <= LISTED_ATOMS_MAX {
            Self::listed(cluster, sides, regions)
        } else {
            Self::Indexed(AtomIndex::new(cluster, sides, regions))
        }
    }

    pub(super) fn listed(
        cluster: &'a Cluster,
        sides: &[&'a EntityMatch],
        regions: &[Region],
    ) -> Self {
        let mut census = Census::on_demand(cluster);
        let mut pairs = Vec::new();
        for (a, side) in sides.iter().enumerate() {
            let a = a as u32;
            for condition in conditions(&mut census, side) {
                for e in cluster.entities() {
                    let may_differ = match &condition {
                        None => true,
                        Some(features) => features.iter().any(|f| has_feature(&e, *f)),
                    };
                    if may_differ {
                        for_each_region_of_entity(&e, regions, |i| pairs.push((i, a)));
                    }
                }
            }
            for_each_region_of_side(cluster, side, regions, |i| pairs.push((i, a)));
        }
        pairs.sort_unstable();
        pairs.dedup();
        Self::Listed { pairs, next: 0 }
    }

    /// The atoms that may differ at `region` and the entities its representative `rep`
    /// sees (not looked up where no atom may differ); regions asked in increasing order.
    pub(super) fn at(
        &mut self,
        cluster: &'a Cluster,
        region: usize,
        rep: IpAddr,
    ) -> (Vec<Entity<'a>>, Vec<u32>) {
        match self {
            Self::Listed { pairs, next } => {
                let start = *next + pairs[*next..].partition_point(|&(r, _)| r < region);
                let end = start + pairs[start..].partition_point(|&(r, _)| r == region);
                *next = end;
                if start == end {
                    return (Vec::new(), Vec::new());
                }
                let atoms = pairs[start..end].iter().map(|&(_, a)| a).collect();
                (cluster.entities_at(rep), atoms)
            }
            Self::Indexed(index) => {
                let entities = cluster.entities_at(rep);
                let atoms = index.candidates(region, &entities);
                (entities, atoms)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{AtomIndex, AtomRegions};
    use crate::compile::classes::PeerAtoms;
    use crate::compile::input::Input;
    use crate::compile::regions::regions;
    use crate::eval::host::NodeAddresses;
    use crate::policy::EntityMatch;
    use crate::testkit::arbitrary::{build, generate};

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]
        /// Listing the regions from the entities (an update's few atoms) names, at
        /// every region, exactly the candidates the index names there.
        #[test]
        fn listed_regions_are_the_index_candidates(seed in any::<u64>()) {
            let Some(cluster) = build(&generate(seed).objects) else {
                return Ok(());
            };
            let addresses = NodeAddresses::declared(&cluster, None);
            let mut memo = crate::compile::memo::PolicyMemo::default();
            let input = Input::new(&cluster, None, &addresses, &mut memo);
            let regions = regions(&input);
            let atoms = PeerAtoms::new(&input);
            let sides: Vec<&EntityMatch> = atoms.sides.iter().map(|(s, _)| *s).collect();
            let mut index = AtomIndex::new(&cluster, &sides, &regions);
            let mut listed = AtomRegions::listed(&cluster, &sides, &regions);
            for (i, region) in regions.iter().enumerate() {
                let Some(rep) = region.rep else { continue };
                let entities = cluster.entities_at(rep);
                let (_, from_list) = listed.at(&cluster, i, rep);
                prop_assert_eq!(from_list, index.candidates(i, &entities), "region {}", region.net);
            }
        }
    }
}
