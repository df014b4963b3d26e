//! Per-object refusal (security item 5): which version of each cached object goes
//! into the compile, so that one object the agent cannot enforce never opens traffic
//! and never holds up the others.
//!
//! Each object starts at its latest version. An object whose version does not load,
//! or convert (validation) steps down, alone:
//!
//! 1. its **last enforced version** (the one in the policy in force), if it has one
//!    and it is another version;
//! 2. for a policy that was never enforced, its **fail-closed stand-in**
//!    ([`crate::policy::standin`]): deny-all for what its selector selects, in its tier
//!    position — when the selector and placement can be read;
//! 3. otherwise it is **left out** (as Calico's API would never have stored it).
//!
//! Every object not at its latest version is reported with the reason its latest
//! version was refused. Pods, Services and every other object keep flowing. Only what
//! belongs to no single object (map capacity) refuses the whole change, and the
//! caller keeps the policy in force.

use std::collections::BTreeMap;
use std::path::Path;

use super::cache::{Entry, ObjectCache};
use super::version::Version;
pub use crate::datastore::status::{Fallback, Refused};
use crate::model::{LoadError, Loaded, ObjectId};
use crate::policy::{Cluster, Warning, standin};

/// The cluster to compile, with what was refused.
pub struct Selection {
    pub cluster: Cluster,
    pub warnings: Vec<Warning>,
    /// Sorted by object.
    pub refused: Vec<Refused>,
    /// Objects compiled at their latest version (to record as enforced once written).
    pub latest: Vec<ObjectId>,
}

/// Which version of an object is compiled, from best to last resort.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Level {
    Latest,
    LastGood,
    StandIn,
    Ignored,
}

/// Picks a version of every object in `cache` so that the cluster converts.
pub fn select(cache: &ObjectCache) -> Selection {
    let mut levels: BTreeMap<&ObjectId, Level> = BTreeMap::new();
    let mut reasons: BTreeMap<&ObjectId, String> = BTreeMap::new();
    let mut stand_ins: BTreeMap<&ObjectId, Option<Loaded>> = BTreeMap::new();
    for (id, entry) in cache.entries() {
        let level = match &entry.latest {
            Ok(_) => Level::Latest,
            Err(error) => {
                reasons.insert(id, error.to_string());
                next_level(entry, Level::Latest)
            }
        };
        levels.insert(id, level);
    }
    // Each round moves every object that failed one level down (tiers first: a
    // policy fails with its tier), so this ends within a few rounds.
    loop {
        let mut objects: Vec<(&ObjectId, Loaded)> = Vec::new();
        let mut unreadable: Vec<(ObjectId, String)> = Vec::new();
        for (id, entry) in cache.entries() {
            let level = levels[id];
            let version = match level {
                Level::Latest => entry.latest.as_deref().ok().map(read_back),
                Level::LastGood => entry.enforced.as_deref().map(read_back),
                Level::StandIn => stand_ins
                    .entry(id)
                    .or_insert_with(|| stand_in(entry))
                    .clone()
                    .map(Ok),
                Level::Ignored => None,
            };
            match version {
                Some(Ok(loaded)) => objects.push((id, loaded)),
                Some(Err(reason)) => unreadable.push((id.clone(), reason)),
                None if level == Level::StandIn => {
                    levels.insert(id, Level::Ignored);
                }
                None => {}
            }
        }
        // The datastore's own order (file, then document): the order a directory
        // listing gave before, so classes and ids come out the same.
        objects.sort_by(|a, b| {
            (&a.1.source.file, a.1.source.document).cmp(&(&b.1.source.file, b.1.source.document))
        });
        let loaded: Vec<Loaded> = objects.iter().map(|(_, l)| l.clone()).collect();
        let (cluster, warnings, errors) = Cluster::from_objects_each(&loaded);
        let mut failed: BTreeMap<ObjectId, String> = unreadable.into_iter().collect();
        let invalid = errors
            .into_iter()
            .map(|e| (e.object.clone(), e.to_string()));
        for (id, reason) in invalid {
            failed.entry(id).or_insert(reason);
        }
        if failed.keys().any(|id| id.kind == "Tier") {
            failed.retain(|id, _| id.kind == "Tier");
        }
        let mut moved = false;
        for (id, reason) in failed {
            let Some((&key, &level)) = levels.get_key_value(&id) else {
                continue;
            };
            let Some(entry) = cache.get(key) else {
                continue;
            };
            if level == Level::Ignored {
                continue;
            }
            reasons.entry(key).or_insert(reason);
            levels.insert(key, next_level(entry, level));
            moved = true;
        }
        if !moved {
            return finish(cache, cluster, warnings, &levels, &reasons);
        }
    }
}

/// A kept version as an object of its own; `Err`: why it does not read back.
fn read_back(version: &Version) -> Result<Loaded, String> {
    version.read_back().map(std::borrow::Cow::into_owned)
}

/// The level after `level` for this object.
pub(super) fn next_level(entry: &Entry, level: Level) -> Level {
    match level {
        Level::Latest => {
            let other = match (&entry.enforced, &entry.latest) {
                (Some(enforced), Ok(latest)) => **enforced != **latest,
                (Some(_), Err(_)) => true,
                (None, _) => false,
            };
            if other {
                Level::LastGood
            } else {
                Level::StandIn
            }
        }
        Level::LastGood => Level::StandIn,
        Level::StandIn | Level::Ignored => Level::Ignored,
    }
}

/// The fail-closed stand-in of a never-enforced policy, from its latest version (a
/// document that did not load keeps its content in the error).
pub(super) fn stand_in(entry: &Entry) -> Option<Loaded> {
    let document = match &entry.latest {
        Ok(version) => match version.loaded() {
            Ok(loaded) => standin::document_of(&loaded.object)?,
            Err(_) => version.document()?,
        },
        Err(error) => match error.as_ref() {
            LoadError::Object(e) => e.content.as_deref()?.clone(),
            LoadError::Read { .. } | LoadError::Syntax { .. } => return None,
        },
    };
    let origin = match &entry.latest {
        Ok(version) => version.source().file.clone(),
        Err(_) => Path::new(&entry.origin).to_path_buf(),
    };
    standin::stand_in(&document, &origin)
}

fn finish(
    cache: &ObjectCache,
    cluster: Cluster,
    warnings: Vec<Warning>,
    levels: &BTreeMap<&ObjectId, Level>,
    reasons: &BTreeMap<&ObjectId, String>,
) -> Selection {
    let mut refused = Vec::new();
    let mut latest = Vec::new();
    for (id, entry) in cache.entries() {
        let fallback = match levels[id] {
            Level::Latest => {
                latest.push(id.clone());
                continue;
            }
            Level::LastGood => Fallback::LastGood,
            Level::StandIn => Fallback::DenyAll,
            Level::Ignored => Fallback::Ignored,
        };
        let reason = reasons
            .get(id)
            .cloned()
            .unwrap_or_else(|| "refused".to_owned());
        tracing::warn!(object = %id, origin = %entry.origin, ?fallback, %reason, "object refused");
        refused.push(Refused {
            object: id.to_string(),
            origin: entry.origin.clone(),
            reason,
            fallback,
        });
    }
    Selection {
        cluster,
        warnings,
        refused,
        latest,
    }
}

#[cfg(test)]
mod tests;
