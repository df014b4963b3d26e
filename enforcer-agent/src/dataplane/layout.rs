//! The layout of the pinned maps, and upgrades between layouts without a gap.
//!
//! A node's pins (`/sys/fs/bpf/enforcer/<node>/ENF_*`) are reused by the next agent,
//! so policy and conntrack survive restarts. That is only right when the next agent's
//! programs read the maps the way the pinned ones were written. So the pins carry
//! their layout: a marker directory `layout-<id>` beside them, where `<id>` is a hash
//! of every map definition of the BPF object (type, key and value sizes, capacity,
//! flags) and of [`LAYOUT_EPOCH`] (bumped by hand when a map's *meaning* changes at
//! the same sizes). Pins without a marker are the unversioned layout of earlier
//! agents.
//!
//! An agent whose layout differs never reuses those pins. It:
//! 1. loads its object with fresh maps pinned under `staging-<id>/`;
//! 2. writes its policy there (the agent's first apply) and copies the conntrack and
//!    pending-Service tables from the old maps (when their entry sizes match, which a
//!    conversion would otherwise need);
//! 3. swaps the programs on every interface atomically (TCX links and XDP links are
//!    updated in place, `tc` filters replaced), the old programs judging every packet
//!    until their link moves;
//! 4. copies the conntrack entries the old programs made in between, adds the old
//!    counters to the new, removes the old links nobody took over and the old map
//!    pins, and moves its own pins into place with the new marker.
//!
//! Established flows survive (their conntrack entries moved before their packets
//! reached the new programs), and no packet is judged by a program without policy.

use std::path::{Path, PathBuf};

use aya::maps::{HashMap as BpfHashMap, Map, MapData, PerCpuArray, PerCpuValues};

use enforcer_common::{
    CtKey, CtValue, HOOKS, MAP_CONNTRACK, MAP_COUNTERS, MAP_PENDING, PendingKey, PendingValue,
    REASONS,
};

/// Bumped when a map's meaning changes without a change of its definition. 2: the
/// conntrack flags' high 16 bits hold the tuple's tag (`enforcer_common::ct_tag`).
pub const LAYOUT_EPOCH: u32 = 2;

/// Mixed into the layout id: lets a test stand for an agent of another layout (the
/// upgrade test); never set in production.
pub const TEST_SALT_ENV: &str = "ENFORCER_TEST_LAYOUT_SALT";

const MARKER_PREFIX: &str = "layout-";
const STAGING_PREFIX: &str = "staging-";

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("reading the BPF object's map definitions: {0}")]
    Parse(String),
    #[error("pins {path}: {op}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The layout id of an object's maps.
pub fn layout_id(object: &[u8]) -> Result<String, LayoutError> {
    let parsed = aya_obj::Object::parse(object).map_err(|e| LayoutError::Parse(e.to_string()))?;
    let mut maps: Vec<String> = parsed
        .maps
        .iter()
        .filter(|(name, _)| name.starts_with("ENF_"))
        .map(|(name, m)| {
            format!(
                "{name}:{}:{}:{}:{}:{}",
                m.map_type(),
                m.key_size(),
                m.value_size(),
                m.max_entries(),
                m.map_flags()
            )
        })
        .collect();
    maps.sort();
    Ok(id_of(
        &maps,
        &std::env::var(TEST_SALT_ENV).unwrap_or_default(),
    ))
}

/// The id of sorted map definitions.
fn id_of(maps: &[String], salt: &str) -> String {
    let text = format!("epoch {LAYOUT_EPOCH}\nsalt {salt}\n{}", maps.join("\n"));
    let digest = sha1_smol::Sha1::from(text).digest().to_string();
    digest[..16].to_owned()
}

/// What a node's pin directory holds, for an agent of layout `id`.
#[derive(Debug, PartialEq, Eq)]
pub enum Pins {
    /// No maps: a first start.
    Fresh,
    /// Maps of this layout: reuse them.
    Same,
    /// Maps of another layout (`None`: the unversioned one): upgrade.
    Other { marker: Option<String> },
}

fn markers(pin_dir: &Path) -> Vec<String> {
    std::fs::read_dir(pin_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| n.starts_with(MARKER_PREFIX))
        .collect()
}

/// Reads the pin directory.
pub fn pins(pin_dir: &Path, id: &str) -> Pins {
    let found = markers(pin_dir);
    let has_maps = pin_dir.join(enforcer_common::MAP_CONFIG).exists();
    let mine = format!("{MARKER_PREFIX}{id}");
    match (has_maps, found.contains(&mine)) {
        (false, _) => Pins::Fresh,
        (true, true) => Pins::Same,
        (true, false) => Pins::Other {
            marker: found.into_iter().next(),
        },
    }
}

/// Where an upgrading agent pins its new maps.
pub fn staging_dir(pin_dir: &Path, id: &str) -> PathBuf {
    pin_dir.join(format!("{STAGING_PREFIX}{id}"))
}

/// Marks `pin_dir` as holding maps of layout `id` (and no other).
pub fn mark(pin_dir: &Path, id: &str) -> Result<(), LayoutError> {
    let mine = format!("{MARKER_PREFIX}{id}");
    for other in markers(pin_dir).into_iter().filter(|m| *m != mine) {
        let path = pin_dir.join(other);
        std::fs::remove_dir(&path).map_err(|source| LayoutError::Io {
            op: "remove marker",
            path,
            source,
        })?;
    }
    let path = pin_dir.join(mine);
    match std::fs::create_dir(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(LayoutError::Io {
            op: "create marker",
            path,
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Prepares a clean staging directory for an upgrade (a crashed upgrade left one:
/// its programs, if any took a link over, keep their maps alive through the link).
pub fn fresh_staging(pin_dir: &Path, id: &str) -> Result<PathBuf, LayoutError> {
    for entry in std::fs::read_dir(pin_dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(STAGING_PREFIX) {
            let _ = remove_pins(&entry.path());
        }
    }
    let staging = staging_dir(pin_dir, id);
    std::fs::create_dir_all(&staging).map_err(|source| LayoutError::Io {
        op: "create",
        path: staging.clone(),
        source,
    })?;
    Ok(staging)
}

/// Removes every pin in `dir`, then `dir`.
fn remove_pins(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)?.flatten() {
        std::fs::remove_file(entry.path())?;
    }
    std::fs::remove_dir(dir)
}

fn open(path: &Path) -> Option<Map> {
    Map::from_map_data(MapData::from_pin(path).ok()?).ok()
}

/// Copies the entries of the old pinned table `name` into the new one: all of them
/// (`missing_only` false), or those the new one lacks. Entries of another size are
/// not copied (their flows are judged again as new ones). Each value goes through
/// `convert` (the old layout's meaning to the new one's). Returns how many.
fn copy_table<K: aya::Pod + Eq, V: aya::Pod>(
    old_dir: &Path,
    new_dir: &Path,
    name: &str,
    missing_only: bool,
    convert: impl Fn(&K, V) -> V,
) -> usize {
    let (Some(old), Some(new)) = (open(&old_dir.join(name)), open(&new_dir.join(name))) else {
        return 0;
    };
    let (Ok(old), Ok(mut new)) = (
        BpfHashMap::<MapData, K, V>::try_from(old),
        BpfHashMap::<MapData, K, V>::try_from(new),
    ) else {
        tracing::warn!(
            map = name,
            "the old layout's entries differ in size: not copied (their flows are judged again)"
        );
        return 0;
    };
    let mut copied = 0;
    for (key, value) in old.iter().flatten() {
        if missing_only && new.get(&key, 0).is_ok() {
            continue;
        }
        if new.insert(key, convert(&key, value), 0).is_ok() {
            copied += 1;
        }
    }
    copied
}

/// A conntrack entry of an older layout as this one's programs read it. Layouts before
/// epoch 2 kept no tag in the flags' high bits (`enforcer_common::ct_tag`): the programs
/// would take every such entry for another tuple's, and the flow would be judged again.
/// A no-op for an entry that has its tag.
fn retagged(key: &CtKey, value: CtValue) -> CtValue {
    CtValue::for_key(key, value.last_seen_ns, value.flags, value.generation)
}

/// Copies conntrack and pending entries from the old maps (step 2, or step 4 with
/// `missing_only`).
pub fn copy_flows(old_dir: &Path, new_dir: &Path, missing_only: bool) -> (usize, usize) {
    (
        copy_table::<CtKey, CtValue>(old_dir, new_dir, MAP_CONNTRACK, missing_only, retagged),
        copy_table::<PendingKey, PendingValue>(
            old_dir,
            new_dir,
            MAP_PENDING,
            missing_only,
            |_, v| v,
        ),
    )
}

/// Adds the old counters to the new ones, so that counts go on across the upgrade.
/// The old map may have fewer reasons per hook (reasons are only ever appended): each
/// slot moves to the same (hook, reason) in the new layout ([`new_counter_index`]).
pub fn add_counters(old_dir: &Path, new_dir: &Path) {
    let Ok(old_data) = MapData::from_pin(old_dir.join(MAP_COUNTERS)) else {
        return;
    };
    let old_len = old_data.info().map_or(0, |i| i.max_entries());
    let (Ok(old), Some(new)) = (
        Map::from_map_data(old_data),
        open(&new_dir.join(MAP_COUNTERS)),
    ) else {
        return;
    };
    let (Ok(old), Ok(mut new)) = (
        PerCpuArray::<MapData, u64>::try_from(old),
        PerCpuArray::<MapData, u64>::try_from(new),
    ) else {
        return;
    };
    for old_index in 0..old_len {
        let Some(index) = new_counter_index(old_len, old_index) else {
            continue;
        };
        let (Ok(before), Ok(now)) = (old.get(&old_index, 0), new.get(&index, 0)) else {
            continue;
        };
        let sums: Vec<u64> = now
            .iter()
            .zip(before.iter())
            .map(|(a, b)| a.saturating_add(*b))
            .collect();
        if let Ok(values) = PerCpuValues::try_from(sums) {
            let _ = new.set(index, values, 0);
        }
    }
}

/// Where slot `old_index` of an old counters map of `old_len` slots (`HOOKS` hooks, of
/// `old_len / HOOKS` reasons each) goes in the current layout; `None` for a slot the
/// current layout does not have.
fn new_counter_index(old_len: u32, old_index: u32) -> Option<u32> {
    let old_reasons = old_len / HOOKS;
    if old_reasons == 0 {
        return None;
    }
    let (hook, reason) = (old_index / old_reasons, old_index % old_reasons);
    (hook < HOOKS && reason < REASONS).then_some(hook * REASONS + reason)
}

/// Step 4's end: the old map pins go, the new ones move from `staging` into
/// `pin_dir`, and the marker says the new layout.
pub fn promote(pin_dir: &Path, staging: &Path, id: &str, maps: &[&str]) -> Result<(), LayoutError> {
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| LayoutError::Io { op, path, source }
    };
    for name in maps {
        let old = pin_dir.join(name);
        match std::fs::remove_file(&old) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("remove old pin", &old)(e));
            }
            _ => {}
        }
        let new = staging.join(name);
        let data = MapData::from_pin(&new)
            .map_err(|e| io("open new pin", &new)(std::io::Error::other(e)))?;
        data.pin(&old)
            .map_err(|e| io("pin", &old)(std::io::Error::other(e)))?;
    }
    remove_pins(staging).map_err(io("remove staging", staging))?;
    mark(pin_dir, id)
}

#[cfg(test)]
#[expect(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_id_follows_the_map_definitions_and_the_salt() {
        let id = layout_id(crate::dataplane::object::BPF_OBJECT).unwrap();
        assert_eq!(id.len(), 16);
        let maps = vec!["ENF_CONNTRACK:9:48:16:262144:0".to_owned()];
        let base = id_of(&maps, "");
        assert_eq!(id_of(&maps, ""), base, "deterministic");
        assert_ne!(id_of(&maps, "test"), base);
        let bigger = vec!["ENF_CONNTRACK:9:48:24:262144:0".to_owned()];
        assert_ne!(
            id_of(&bigger, ""),
            base,
            "a value size change is a new layout"
        );
    }

    #[test]
    fn counters_keep_their_hook_and_reason_across_a_reason_added() {
        use enforcer_common::COUNTERS_LEN;
        let old_reasons = REASONS - 1;
        let old_len = HOOKS * old_reasons;
        // Hook 1, reason 0 was slot `old_reasons`; it stays hook 1, reason 0.
        assert_eq!(new_counter_index(old_len, old_reasons), Some(REASONS));
        assert_eq!(
            new_counter_index(old_len, 3 * old_reasons + 5),
            Some(3 * REASONS + 5)
        );
        // The same layout maps every slot to itself.
        assert!((0..COUNTERS_LEN).all(|i| new_counter_index(COUNTERS_LEN, i) == Some(i)));
        // A layout with more reasons than ours: the extra ones have no slot here.
        let newer = HOOKS * (REASONS + 1);
        assert_eq!(new_counter_index(newer, REASONS), None);
        assert_eq!(new_counter_index(0, 0), None);
    }

    #[test]
    fn pins_are_read_as_fresh_same_or_other() {
        let tmp = crate::testkit::TempDir::new("layout-pins");
        let dir = tmp.path().to_owned();
        assert_eq!(pins(&dir, "a"), Pins::Fresh);
        // A stand-in for a pinned map: only its name matters here.
        std::fs::write(dir.join(enforcer_common::MAP_CONFIG), b"").unwrap();
        assert_eq!(pins(&dir, "a"), Pins::Other { marker: None });
        mark(&dir, "b").unwrap();
        assert_eq!(
            pins(&dir, "a"),
            Pins::Other {
                marker: Some("layout-b".into())
            }
        );
        mark(&dir, "a").unwrap();
        assert_eq!(pins(&dir, "a"), Pins::Same);
        assert_eq!(markers(&dir), ["layout-a"]);
        let staging = fresh_staging(&dir, "a").unwrap();
        assert!(staging.ends_with("staging-a") && staging.is_dir());
    }

    #[test]
    fn conntrack_entries_of_an_untagged_layout_are_retagged_for_their_tuple() {
        use enforcer_common::{CT_F_ESTABLISHED, CT_F_REPLIED};
        let key = CtKey {
            sport: 40_000,
            dport: 80,
            proto: 6,
            family: 4,
            ..CtKey::default()
        };
        // What an agent before epoch 2 wrote: flags only.
        let old = CtValue {
            last_seen_ns: 11,
            flags: CT_F_ESTABLISHED | CT_F_REPLIED,
            generation: 5,
        };
        assert!(
            !old.is_for(&key),
            "no tag: this layout's programs would not honour it"
        );
        let new = retagged(&key, old);
        assert!(new.is_for(&key));
        assert_eq!(new.ct_flags(), old.flags);
        assert_eq!((new.last_seen_ns, new.generation), (11, 5));
        assert_eq!(retagged(&key, new), new, "idempotent");
    }
}
