//! The policy model in force, kept per object: the object cache, the version of each
//! object that is compiled (per-object refusal, as `selection.rs` defines it) and the
//! cluster those versions convert to ([`LiveCluster`]), all updated one object at a
//! time. A datastore change to one object converts that object alone (and, for pods,
//! Services and their endpoint objects, re-resolves the Services); the rest of the
//! cluster is left as it is, and [`Touched`] says what changed for the compiler.
//!
//! Tiers place every policy, so a change to a Tier (like a relist) converts everything
//! again: tiers first, then each other object against them — the same outcome as
//! [`super::selection::select`] (checked by the tests).

use std::borrow::Cow;
#[cfg(test)]
use std::collections::BTreeMap;
use std::collections::{BTreeSet, HashMap};

use super::cache::{Entry, ObjectCache};
use super::selection::{Level, next_level, stand_in};
use super::version::Version;
use crate::datastore::status::{Fallback, Refused};
use crate::datastore::{Change, Snapshot};
use crate::model::{Loaded, Object, ObjectId};
use crate::policy::convert::parts::{
    Part, convert_entity, convert_policy, feeds_services, is_policy, services_of,
};
use crate::policy::live::{LiveCluster, Order, Touched};
use crate::policy::{Cluster, Tier, Warning};

/// The version of one object that is compiled, and why not the latest.
#[derive(Clone, Debug)]
struct Chosen {
    level: Level,
    /// Why the latest version is not compiled (when `level` is not `Latest`).
    reason: Option<String>,
}

/// The compiled version of every object, with the objects not compiled at their
/// latest version kept apart: [`Model::refused`] lists those on every revision, and
/// walking all 15,000 objects to find none took 5 ms of a policy change at 10k/5k
/// (a profile of the agent under the `p5` flood).
#[derive(Debug, Default)]
struct ChosenVersions {
    by_id: HashMap<ObjectId, Chosen>,
    not_latest: BTreeSet<ObjectId>,
}

impl ChosenVersions {
    fn get(&self, id: &ObjectId) -> Option<&Chosen> {
        self.by_id.get(id)
    }

    fn insert(&mut self, id: &ObjectId, chosen: Chosen) {
        if chosen.level == Level::Latest {
            self.not_latest.remove(id);
        } else {
            self.not_latest.insert(id.clone());
        }
        self.by_id.insert(id.clone(), chosen);
    }

    fn remove(&mut self, id: &ObjectId) {
        self.by_id.remove(id);
        self.not_latest.remove(id);
    }

    fn clear(&mut self) {
        self.by_id.clear();
        self.not_latest.clear();
    }

    /// The objects not compiled at their latest version, in id order.
    fn not_latest(&self) -> impl Iterator<Item = (&ObjectId, &Chosen)> {
        self.not_latest
            .iter()
            .filter_map(|id| self.by_id.get(id).map(|chosen| (id, chosen)))
    }
}

#[derive(Debug, Default)]
pub struct Model {
    cache: ObjectCache,
    live: LiveCluster,
    chosen: ChosenVersions,
    /// Objects compiled at their latest version since they were last marked enforced.
    pending: BTreeSet<ObjectId>,
}

/// One object's compiled version: its level, part and the warnings converting it gave.
struct Pick {
    level: Level,
    part: Option<Part>,
    reason: Option<String>,
    warnings: Vec<Warning>,
}

impl Model {
    pub fn cache(&self) -> &ObjectCache {
        &self.cache
    }

    pub fn cluster(&self) -> &Cluster {
        self.live.cluster()
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// Replaces everything with a snapshot and converts every object.
    pub fn reset(&mut self, snapshot: Snapshot) -> Touched {
        for stored in &snapshot.objects {
            self.pending.insert(stored.id.clone());
        }
        self.cache.reset(snapshot);
        self.rebuild();
        Touched::everything()
    }

    /// Applies datastore changes: each changed object converted alone, unless a Tier
    /// changed (then everything is converted again).
    pub fn apply(&mut self, changes: Vec<Change>) -> Touched {
        let ids: Vec<ObjectId> = changes
            .iter()
            .map(|c| match c {
                Change::Upsert(s) => s.id.clone(),
                Change::Delete(id) => id.clone(),
            })
            .collect();
        let tiers_changed = ids.iter().any(|id| id.kind == "Tier" || self.live.is_tier(id))
            || changes.iter().any(|c| {
                matches!(c, Change::Upsert(s) if matches!(s.object.as_ref().map(|l| &l.object), Ok(Object::Tier(_))))
            });
        self.cache.apply(changes);
        self.pending.extend(ids.iter().cloned());
        if tiers_changed {
            self.rebuild();
            return Touched::everything();
        }
        let mut touched = Touched::default();
        let mut services = false;
        let tiers = self.live.tiers().to_vec();
        for id in &ids {
            let Some(entry) = self.cache.get(id) else {
                // Deleted.
                services |= was_service_source(id);
                self.chosen.remove(id);
                self.live.remove(id, &mut touched);
                continue;
            };
            let pick = pick(entry, &tiers);
            log_warnings(&pick.warnings);
            services |= feeds(entry) || was_service_source(id);
            let order = order_of(entry);
            self.chosen.insert(
                id,
                Chosen {
                    level: pick.level,
                    reason: pick.reason,
                },
            );
            match pick.part {
                Some(part) => {
                    self.live.upsert(id, order, part, &mut touched);
                }
                None => {
                    self.live.remove(id, &mut touched);
                }
            }
        }
        if services {
            let resolved = self.services();
            self.live.set_services(resolved, &mut touched);
        }
        touched
    }

    /// Converts every object again: tiers first (a policy is placed by its tier), then
    /// the others against them.
    fn rebuild(&mut self) {
        self.chosen.clear();
        let mut parts: Vec<(ObjectId, Order, Part)> = Vec::new();
        let mut tiers: Vec<Tier> = Vec::new();
        for (id, entry) in self.cache.entries() {
            if !is_tier(entry) {
                continue;
            }
            let pick = pick(entry, &[]);
            if let Some(Part::Tier(tier)) = &pick.part {
                tiers.push(tier.clone());
            }
            keep(&mut self.chosen, id, entry, pick, &mut parts);
        }
        let tiers = crate::policy::convert::parts::tiers_with(&tiers);
        for (id, entry) in self.cache.entries() {
            if is_tier(entry) {
                continue;
            }
            let pick = pick(entry, &tiers);
            keep(&mut self.chosen, id, entry, pick, &mut parts);
        }
        self.live = LiveCluster::build(parts, self.services());
    }

    /// The Services, resolved from the compiled versions of the pods, Services and
    /// their endpoint objects.
    fn services(
        &self,
    ) -> (
        Vec<crate::policy::ServiceInfo>,
        crate::policy::ServiceBackends,
    ) {
        let mut sources: Vec<&Loaded> = Vec::new();
        for (id, entry) in self.cache.entries() {
            if !feeds(entry) && !was_service_source(id) {
                continue;
            }
            // Pods, Services and their endpoint objects are kept typed.
            if let Some(loaded) = self.compiled_version(id, entry).and_then(Version::typed)
                && feeds_services(&loaded.object)
            {
                sources.push(loaded);
            }
        }
        sources.sort_by(|a, b| {
            (&a.source.file, a.source.document).cmp(&(&b.source.file, b.source.document))
        });
        services_of(&sources)
    }

    /// The version of an object that is compiled (stand-ins are policies only).
    fn compiled_version<'e>(&self, id: &ObjectId, entry: &'e Entry) -> Option<&'e Version> {
        match self.chosen.get(id).map(|c| c.level) {
            Some(Level::Latest) => entry.latest.as_deref().ok(),
            Some(Level::LastGood) => entry.enforced.as_deref(),
            _ => None,
        }
    }

    /// Every object not compiled at its latest version, with why and what instead.
    pub fn refused(&self) -> Vec<Refused> {
        let mut out = Vec::new();
        for (id, chosen) in self.chosen.not_latest() {
            let Some(entry) = self.cache.get(id) else {
                continue;
            };
            let fallback = match chosen.level {
                Level::Latest => continue,
                Level::LastGood => Fallback::LastGood,
                Level::StandIn => Fallback::DenyAll,
                Level::Ignored => Fallback::Ignored,
            };
            out.push(Refused {
                object: id.to_string(),
                origin: entry.origin.clone(),
                reason: chosen
                    .reason
                    .clone()
                    .unwrap_or_else(|| "refused".to_owned()),
                fallback,
            });
        }
        out
    }

    /// Records that the compiled versions are now in force: the latest version of
    /// every object compiled at it since the last call.
    pub fn enforced(&mut self) {
        let pending: Vec<ObjectId> = std::mem::take(&mut self.pending)
            .into_iter()
            .filter(|id| {
                self.chosen
                    .get(id)
                    .is_some_and(|c| c.level == Level::Latest)
            })
            .collect();
        self.cache.mark_enforced(&pending);
    }
}

fn keep(
    chosen: &mut ChosenVersions,
    id: &ObjectId,
    entry: &Entry,
    pick: Pick,
    parts: &mut Vec<(ObjectId, Order, Part)>,
) {
    log_warnings(&pick.warnings);
    if let Some(part) = pick.part {
        parts.push((id.clone(), order_of(entry), part));
    }
    chosen.insert(
        id,
        Chosen {
            level: pick.level,
            reason: pick.reason,
        },
    );
}

/// Whether an object of this kind takes part in resolving Services (by its id: a
/// deleted object has no version left to look at).
fn was_service_source(id: &ObjectId) -> bool {
    matches!(
        id.kind.as_str(),
        "Pod" | "Service" | "EndpointSlice" | "Endpoints"
    )
}

fn is_tier(entry: &Entry) -> bool {
    match &entry.latest {
        Ok(v) => v.is_tier(),
        Err(_) => entry.enforced.as_ref().is_some_and(|v| v.is_tier()),
    }
}

/// Whether a version of the object takes part in resolving Services (those kinds
/// are kept typed).
fn feeds(entry: &Entry) -> bool {
    let typed_feeds = |v: &Version| v.typed().is_some_and(|l| feeds_services(&l.object));
    entry.latest.as_deref().is_ok_and(typed_feeds)
        || entry.enforced.as_deref().is_some_and(typed_feeds)
}

/// The datastore order of an object: its latest version's, else its enforced one's,
/// else its origin's.
fn order_of(entry: &Entry) -> Order {
    let version = entry.latest.as_deref().ok().or(entry.enforced.as_deref());
    match version.map(Version::source) {
        Some(source) => (source.file.clone(), source.document),
        None => (entry.origin.clone().into(), 0),
    }
}

fn log_warnings(warnings: &[Warning]) {
    for warning in warnings {
        tracing::warn!(%warning, "policy warning");
    }
}

/// Converts one version of an object, as the compile would take it; `Err`: why not.
fn convert(loaded: &Loaded, tiers: &[Tier], warnings: &mut Vec<Warning>) -> Result<Part, String> {
    if is_policy(&loaded.object) {
        let policy = convert_policy(tiers, loaded, warnings).map_err(|e| e.to_string())?;
        return match policy {
            Some(p) => Ok(Part::Policy(Box::new(p))),
            None => Ok(Part::Nothing),
        };
    }
    convert_entity(loaded).map_err(|e| e.to_string())
}

/// The version of `entry` to compile, stepping down as `selection.rs` does: latest,
/// last enforced (if another), the stand-in of a never-enforced policy, nothing.
fn pick(entry: &Entry, tiers: &[Tier]) -> Pick {
    let mut warnings = Vec::new();
    let reason = match &entry.latest {
        Ok(latest) => match latest
            .read_back()
            .and_then(|l| convert(&l, tiers, &mut warnings))
        {
            Ok(part) => {
                return Pick {
                    level: Level::Latest,
                    part: Some(part),
                    reason: None,
                    warnings,
                };
            }
            Err(reason) => reason,
        },
        Err(error) => error.to_string(),
    };
    let mut level = next_level(entry, Level::Latest);
    loop {
        warnings.clear();
        let version: Option<Result<Cow<'_, Loaded>, String>> = match level {
            Level::Latest => entry.latest.as_deref().ok().map(Version::read_back),
            Level::LastGood => entry.enforced.as_deref().map(Version::read_back),
            Level::StandIn => stand_in(entry).map(|l| Ok(Cow::Owned(l))),
            Level::Ignored => None,
        };
        let Some(version) = version else {
            return Pick {
                level: Level::Ignored,
                part: None,
                reason: Some(reason),
                warnings: Vec::new(),
            };
        };
        match version.and_then(|l| convert(&l, tiers, &mut warnings)) {
            Ok(part) => {
                return Pick {
                    level,
                    part: Some(part),
                    reason: Some(reason),
                    warnings,
                };
            }
            Err(_) => level = next_level(entry, level),
        }
    }
}

/// The refused objects by id (for tests comparing with `selection::select`).
#[cfg(test)]
pub(super) fn refused_by_object(model: &Model) -> BTreeMap<String, (Fallback, String)> {
    model
        .refused()
        .into_iter()
        .map(|r| (r.object, (r.fallback, r.reason)))
        .collect()
}

#[cfg(test)]
mod tests;
