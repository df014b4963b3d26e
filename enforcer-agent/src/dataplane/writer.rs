//! Writes policy generations into the BPF maps and switches between them atomically.
//!
//! A change is: check that every map can hold the new content next to the other
//! slot's (a refusal changes nothing: the generation in force stays); take the slot
//! that is not active out of `Config::live_gens` and wait until no program that saw
//! it live still runs (an RCU grace period, [`rcu`](super::rcu)); write the new
//! content into it (as a diff against what it held, removals first: the slot is not
//! live); flip `Config` to it with the next epoch. The previous generation stays live
//! for a grace period only, so the second leg of a flow that began under it is judged
//! by the same version (see `CtValue::generation`); the agent's timer then ends it
//! ([`GenerationWriter::retire_previous`]), and such a leg is judged by the active
//! generation. A change that comes within that grace period ends it at once, and
//! the agent starts that wait before it compiles ([`GenerationWriter::prepare`]), so
//! the RCU grace period passes while the compiler runs. Epochs are never reused, so a
//! rewritten slot never judges a flow stamped by what the slot held before.

use aya::maps::lpm_trie::{Key as LpmKey, LpmTrie};
use aya::maps::{Array, HashMap as BpfHashMap, IterableMap, Map, MapData, MapError};

use enforcer_common::{
    Config, EndpointInfo, EndpointKey, FrontendKey, GENERATIONS, PeerInfo, PeerKeyV4, PeerKeyV6,
    PortKey, SOURCE_PORT_KEY_FIXED_BITS, SourcePortKey, Verdict, VerdictKey,
};

use super::content::{GenerationContent, diff};
use super::rcu::{Barrier, BarrierThread, RcuBarrier};

#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error(
        "map {map} cannot hold the new policy next to the one kept beside it: {need} \
         entries needed, {max} at most (the policy in force stays)"
    )]
    Capacity {
        map: &'static str,
        need: usize,
        max: u32,
    },
    #[error("waiting for running BPF programs (RCU grace period): {source}")]
    Barrier {
        #[source]
        source: std::io::Error,
    },
    #[error("map {map} is missing from the BPF object")]
    MissingMap { map: &'static str },
    #[error("map {map}: {op}: {source}")]
    Map {
        map: &'static str,
        op: &'static str,
        #[source]
        source: MapError,
    },
}

fn barrier_failed(source: std::io::Error) -> WriterError {
    WriterError::Barrier { source }
}

fn map_err(map: &'static str, op: &'static str) -> impl FnOnce(MapError) -> WriterError {
    move |source| WriterError::Map { map, op, source }
}

/// The policy maps, owned.
pub struct PolicyMaps {
    config: Array<MapData, Config>,
    endpoints: BpfHashMap<MapData, EndpointKey, EndpointInfo>,
    peers_v4: LpmTrie<MapData, PeerKeyV4, PeerInfo>,
    peers_v6: LpmTrie<MapData, PeerKeyV6, PeerInfo>,
    ports: LpmTrie<MapData, PortKey, u32>,
    source_ports: LpmTrie<MapData, SourcePortKey, u32>,
    verdicts: BpfHashMap<MapData, VerdictKey, Verdict>,
    frontends: BpfHashMap<MapData, FrontendKey, u32>,
}

/// Takes a map out of the loaded object by name and types it.
pub fn take<T>(ebpf: &mut aya::Ebpf, name: &'static str) -> Result<T, WriterError>
where
    T: TryFrom<Map, Error = MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or(WriterError::MissingMap { map: name })?;
    T::try_from(map).map_err(map_err(name, "open"))
}

/// Generation bit in `Config::live_gens`.
const fn bit(generation: u32) -> u32 {
    1 << generation
}

pub struct GenerationWriter {
    maps: PolicyMaps,
    /// What each generation slot holds, as far as this process wrote it. `None`: unknown
    /// (maps reused from a previous agent, or a write that failed half-way): the slot
    /// is cleared before it is written.
    slots: [Option<GenerationContent>; GENERATIONS as usize],
    config: Config,
    /// Slots live in a `Config` written since the last barrier: a program that read it
    /// may still be judging in them.
    unsettled: u32,
    barrier: BarrierThread,
    /// A wait [`GenerationWriter::prepare`] started and nobody collected yet: the
    /// `live_gens` of the `Config` it waits after.
    ahead: Option<u32>,
}

/// Epochs fit in 31 bits (`enforcer_common::ct_stamp` keeps the slot in bit 0).
const EPOCH_MAX: u32 = u32::MAX >> 1;

/// The epoch after `epoch`: never 0 (no epochs), wrapping after 31 bits.
const fn next_epoch(epoch: u32) -> u32 {
    if epoch >= EPOCH_MAX { 1 } else { epoch + 1 }
}

/// Refuses a map write that would need more than the map holds.
fn check_capacity(map: &'static str, held: usize, new: usize, max: u32) -> Result<(), WriterError> {
    let need = held + new;
    if need > max as usize {
        return Err(WriterError::Capacity { map, need, max });
    }
    Ok(())
}

/// What one `apply` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyStats {
    pub generation: u32,
    pub removed: usize,
    pub upserted: usize,
}

impl GenerationWriter {
    pub fn new(ebpf: &mut aya::Ebpf) -> Result<Self, WriterError> {
        use enforcer_common::{
            MAP_CONFIG, MAP_ENDPOINTS, MAP_FRONTENDS, MAP_PEERS_V4, MAP_PEERS_V6, MAP_PORTS,
            MAP_SOURCE_PORTS, MAP_VERDICTS,
        };
        let maps = PolicyMaps {
            config: take(ebpf, MAP_CONFIG)?,
            endpoints: take(ebpf, MAP_ENDPOINTS)?,
            peers_v4: take(ebpf, MAP_PEERS_V4)?,
            peers_v6: take(ebpf, MAP_PEERS_V6)?,
            ports: take(ebpf, MAP_PORTS)?,
            source_ports: take(ebpf, MAP_SOURCE_PORTS)?,
            verdicts: take(ebpf, MAP_VERDICTS)?,
            frontends: take(ebpf, MAP_FRONTENDS)?,
        };
        let config = maps
            .config
            .get(&0, 0)
            .map_err(map_err(MAP_CONFIG, "read"))?;
        let barrier = RcuBarrier::new().map_err(|source| WriterError::Barrier { source })?;
        Ok(Self {
            maps,
            slots: [None, None],
            config,
            unsettled: config.live_gens,
            barrier: BarrierThread::spawn(Box::new(barrier)).map_err(barrier_failed)?,
            ahead: None,
        })
    }

    /// Waits for running programs with `barrier` instead of an RCU grace period
    /// (tests: a barrier that records when it is called).
    pub fn set_barrier(&mut self, barrier: Box<dyn Barrier>) -> Result<(), WriterError> {
        self.join_ahead()?;
        self.barrier = BarrierThread::spawn(barrier).map_err(barrier_failed)?;
        Ok(())
    }

    /// A policy change is coming (the agent calls this before it compiles): when the
    /// slot the next [`apply`](Self::apply) writes is still live (the previous
    /// generation's grace period runs), that grace ends now, and the wait for the
    /// programs that may still judge in it (an RCU grace period, ~14 ms on the
    /// development machine) runs while the agent compiles instead of after. `apply`
    /// collects it before it writes the slot. Without a change to follow (a refused
    /// compile), this only ends the grace period early, as the next `apply` would.
    pub fn prepare(&mut self) -> Result<(), WriterError> {
        self.join_ahead()?;
        if self.config.live_gens == 0 {
            return Ok(());
        }
        let target = 1 - self.config.active_gen;
        if self.config.live_gens & bit(target) != 0 {
            self.write_config(Config {
                live_gens: self.config.live_gens & !bit(target),
                ..self.config
            })?;
        }
        if self.unsettled & bit(target) & !self.config.live_gens == 0 {
            return Ok(());
        }
        self.barrier.start(self.config).map_err(barrier_failed)?;
        self.ahead = Some(self.config.live_gens);
        Ok(())
    }

    /// Collects the wait [`prepare`](Self::prepare) started, if any; once it is over,
    /// only the slots live in the `Config` it waited after can still be judged in
    /// (nothing wrote the `Config` meanwhile: every write collects it first).
    fn join_ahead(&mut self) -> Result<(), WriterError> {
        let Some(live_gens) = self.ahead.take() else {
            return Ok(());
        };
        self.barrier.finish().map_err(barrier_failed)?;
        self.unsettled = live_gens;
        Ok(())
    }

    /// Ends the grace period of the previous generation: it stops judging the second
    /// legs of flows that began under it, and once this returns no program judges in it
    /// any more. Whether there was one.
    pub fn retire_previous(&mut self) -> Result<bool, WriterError> {
        // A grace period `prepare` ended early is over once its wait is.
        self.join_ahead()?;
        let previous = self.config.live_gens & !bit(self.config.active_gen);
        if previous == 0 {
            return Ok(false);
        }
        self.write_config(Config {
            live_gens: self.config.live_gens & !previous,
            ..self.config
        })?;
        self.settle(previous)?;
        Ok(true)
    }

    /// Writes the active generation's content into the idle slot when what that slot
    /// holds is unknown (after the agent starts: its first write, or maps kept from
    /// the agent before), so that the next change is a diff, not a full write (at
    /// 10k policies / 5k pods, a full write took ~70 ms of the first change after a
    /// start). The slot stays out of `live_gens`: no program judges by it until an
    /// [`apply`](Self::apply) switches to it, and the switch gives it a new epoch.
    /// Nothing is written while the slot is live (a grace period runs), or when the
    /// maps cannot hold the copy beside the generation in force (the next change
    /// then clears the slot and writes it in full, as before). Whether it wrote.
    pub fn fill_idle(&mut self) -> Result<bool, WriterError> {
        self.join_ahead()?;
        if self.config.live_gens == 0 {
            return Ok(false);
        }
        let active = self.config.active_gen;
        let idle = 1 - active;
        if self.config.live_gens & bit(idle) != 0 || self.slots[idle as usize].is_some() {
            return Ok(false);
        }
        let Some(content) = self.slots[active as usize].clone() else {
            return Ok(false);
        };
        if self.check_room(active, &content).is_err() {
            return Ok(false);
        }
        self.settle(bit(idle))?;
        self.clear_generation(idle)?;
        let mut stats = ApplyStats {
            generation: idle,
            ..ApplyStats::default()
        };
        // Until it is all written, the slot stays unknown (`None`): a failure half-way
        // leaves it to be cleared by the next write.
        self.write_diff(idle, &GenerationContent::default(), &content, &mut stats)?;
        self.slots[idle as usize] = Some(content);
        Ok(true)
    }

    /// Returns once no program judges in a slot of `slots` that `Config` no longer
    /// names live.
    fn settle(&mut self, slots: u32) -> Result<(), WriterError> {
        self.join_ahead()?;
        if self.unsettled & slots & !self.config.live_gens == 0 {
            return Ok(());
        }
        self.barrier.start(self.config).map_err(barrier_failed)?;
        self.barrier.finish().map_err(barrier_failed)?;
        self.unsettled = self.config.live_gens;
        Ok(())
    }

    /// The configuration the programs see now.
    pub fn config(&self) -> Config {
        self.config
    }

    /// Makes `content` the policy of every new flow, atomically.
    pub fn apply(&mut self, content: GenerationContent) -> Result<ApplyStats, WriterError> {
        let nothing_live = self.config.live_gens == 0;
        let target = if nothing_live {
            self.config.active_gen
        } else {
            1 - self.config.active_gen
        };
        // Refused before anything changes: the generation in force stays.
        self.check_room(1 - target, &content)?;
        // The target slot stops being live, and no program that saw it live still
        // runs, before we overwrite it.
        if self.config.live_gens & bit(target) != 0 {
            self.write_config(Config {
                live_gens: self.config.live_gens & !bit(target),
                ..self.config
            })?;
        }
        self.settle(bit(target))?;
        let mut stats = ApplyStats {
            generation: target,
            ..ApplyStats::default()
        };
        let old = if let Some(old) = self.slots[target as usize].take() {
            old
        } else {
            self.clear_generation(target)?;
            GenerationContent::default()
        };
        self.write_diff(target, &old, &content, &mut stats)?;
        let live_gens = if nothing_live {
            bit(target)
        } else {
            bit(target) | bit(self.config.active_gen)
        };
        self.write_config(Config {
            active_gen: target,
            live_gens,
            epoch: next_epoch(self.config.epoch),
            ..self.config
        })?;
        self.unsettled |= live_gens;
        self.slots[target as usize] = Some(content);
        Ok(stats)
    }

    /// Refuses `content` when a map cannot hold it next to what slot `other` holds
    /// (live or not, its entries stay in the maps while the new ones are written; the
    /// target slot's old entries go first).
    fn check_room(&self, other: u32, content: &GenerationContent) -> Result<(), WriterError> {
        use enforcer_common::{
            MAP_ENDPOINTS, MAP_FRONTENDS, MAP_PEERS_V4, MAP_PEERS_V6, MAP_PORTS, MAP_SOURCE_PORTS,
            MAP_VERDICTS,
        };
        let maps = &self.maps;
        let known = self.slots[other as usize].as_ref();
        let g8 = other as u8;
        let held = |in_content: fn(&GenerationContent) -> usize, in_map: &dyn Fn() -> usize| {
            known.map_or_else(in_map, in_content)
        };
        let checks = [
            (
                MAP_ENDPOINTS,
                held(|c| c.endpoints.len(), &|| {
                    count(&maps.endpoints, |k| k.generation == other)
                }),
                content.endpoints.len(),
                max_entries(&maps.endpoints),
            ),
            (
                MAP_PEERS_V4,
                held(|c| c.peers_v4.len(), &|| {
                    count(&maps.peers_v4, |k| k.data().generation == g8)
                }),
                content.peers_v4.len(),
                max_entries(&maps.peers_v4),
            ),
            (
                MAP_PEERS_V6,
                held(|c| c.peers_v6.len(), &|| {
                    count(&maps.peers_v6, |k| k.data().generation == g8)
                }),
                content.peers_v6.len(),
                max_entries(&maps.peers_v6),
            ),
            (
                MAP_PORTS,
                held(|c| c.ports.len(), &|| {
                    count(&maps.ports, |k| k.data().generation == g8)
                }),
                content.ports.len(),
                max_entries(&maps.ports),
            ),
            (
                MAP_SOURCE_PORTS,
                held(|c| c.source_ports.len(), &|| {
                    count(&maps.source_ports, |k| k.data().generation == g8)
                }),
                content.source_ports.len(),
                max_entries(&maps.source_ports),
            ),
            (
                MAP_VERDICTS,
                held(|c| c.verdicts.len(), &|| {
                    count(&maps.verdicts, |k| k.generation == g8)
                }),
                content.verdicts.len(),
                max_entries(&maps.verdicts),
            ),
            (
                MAP_FRONTENDS,
                held(|c| c.frontends.len(), &|| {
                    count(&maps.frontends, |k| k.generation == g8)
                }),
                content.frontends.len(),
                max_entries(&maps.frontends),
            ),
        ];
        for (map, held, new, max) in checks {
            check_capacity(map, held, new, max.map_err(map_err(map, "info"))?)?;
        }
        Ok(())
    }

    /// Sets `Config::netns_cookie`: the namespace whose packets the cgroup program judges.
    pub fn set_netns_cookie(&mut self, netns_cookie: u64) -> Result<(), WriterError> {
        self.write_config(Config {
            netns_cookie,
            ..self.config
        })
    }

    /// Sets `Config::flags` (e.g. events on deny), keeping the generations.
    pub fn set_flags(&mut self, flags: u32) -> Result<(), WriterError> {
        self.write_config(Config {
            flags,
            ..self.config
        })
    }

    fn write_config(&mut self, config: Config) -> Result<(), WriterError> {
        // A wait running ahead proves something about the `Config` it was given, not
        // about a newer one.
        self.join_ahead()?;
        self.maps
            .config
            .set(0, config, 0)
            .map_err(map_err(enforcer_common::MAP_CONFIG, "write"))?;
        self.config = config;
        Ok(())
    }

    fn write_diff(
        &mut self,
        generation: u32,
        old: &GenerationContent,
        new: &GenerationContent,
        stats: &mut ApplyStats,
    ) -> Result<(), WriterError> {
        use enforcer_common::{
            MAP_ENDPOINTS, MAP_FRONTENDS, MAP_PEERS_V4, MAP_PEERS_V6, MAP_PORTS, MAP_SOURCE_PORTS,
            MAP_VERDICTS,
        };
        let g8 = generation as u8;
        let maps = &mut self.maps;
        sync(
            &mut maps.endpoints,
            MAP_ENDPOINTS,
            &old.endpoints,
            &new.endpoints,
            stats,
            |ifindex| EndpointKey {
                generation,
                ifindex: *ifindex,
            },
        )?;
        sync(
            &mut maps.peers_v4,
            MAP_PEERS_V4,
            &old.peers_v4,
            &new.peers_v4,
            stats,
            |(addr, len)| LpmKey::new(8 + u32::from(*len), PeerKeyV4::new(g8, *addr)),
        )?;
        sync(
            &mut maps.peers_v6,
            MAP_PEERS_V6,
            &old.peers_v6,
            &new.peers_v6,
            stats,
            |(addr, len)| LpmKey::new(8 + u32::from(*len), PeerKeyV6::new(g8, *addr)),
        )?;
        sync(
            &mut maps.ports,
            MAP_PORTS,
            &old.ports,
            &new.ports,
            stats,
            |(proto, port, len)| {
                let data = PortKey {
                    generation: g8,
                    proto: *proto,
                    port: port.to_be_bytes(),
                };
                LpmKey::new(16 + u32::from(*len), data)
            },
        )?;
        sync(
            &mut maps.source_ports,
            MAP_SOURCE_PORTS,
            &old.source_ports,
            &new.source_ports,
            stats,
            |(dst_cell, port, len)| {
                let data = SourcePortKey {
                    generation: g8,
                    _pad: [0; 3],
                    dst_cell: *dst_cell,
                    port: port.to_be_bytes(),
                    _pad2: [0; 2],
                };
                LpmKey::new(SOURCE_PORT_KEY_FIXED_BITS + u32::from(*len), data)
            },
        )?;
        sync(
            &mut maps.verdicts,
            MAP_VERDICTS,
            &old.verdicts,
            &new.verdicts,
            stats,
            |k| VerdictKey {
                generation: g8,
                dir: k.dir,
                _pad: [0; 2],
                profile: k.profile,
                peer_class: k.peer_class,
                cell: k.cell,
            },
        )?;
        sync(
            &mut maps.frontends,
            MAP_FRONTENDS,
            &old.frontends,
            &new.frontends,
            stats,
            |(proto, port)| FrontendKey {
                generation: g8,
                proto: *proto,
                port: *port,
            },
        )?;
        Ok(())
    }

    /// Deletes every entry of one generation (slot content unknown).
    fn clear_generation(&mut self, generation: u32) -> Result<(), WriterError> {
        use enforcer_common::{
            MAP_ENDPOINTS, MAP_FRONTENDS, MAP_PEERS_V4, MAP_PEERS_V6, MAP_PORTS, MAP_SOURCE_PORTS,
            MAP_VERDICTS,
        };
        let g8 = generation as u8;
        let maps = &mut self.maps;
        clear(&mut maps.endpoints, MAP_ENDPOINTS, |k| {
            k.generation == generation
        })?;
        clear(&mut maps.peers_v4, MAP_PEERS_V4, |k| {
            k.data().generation == g8
        })?;
        clear(&mut maps.peers_v6, MAP_PEERS_V6, |k| {
            k.data().generation == g8
        })?;
        clear(&mut maps.ports, MAP_PORTS, |k| k.data().generation == g8)?;
        clear(&mut maps.source_ports, MAP_SOURCE_PORTS, |k| {
            k.data().generation == g8
        })?;
        clear(&mut maps.verdicts, MAP_VERDICTS, |k| k.generation == g8)?;
        clear(&mut maps.frontends, MAP_FRONTENDS, |k| k.generation == g8)?;
        Ok(())
    }
}

/// The operations `sync` and `clear` need from a hash map or an LPM trie.
trait KeyValueMap<K, V> {
    fn put(&mut self, key: &K, value: V) -> Result<(), MapError>;
    fn delete(&mut self, key: &K) -> Result<(), MapError>;
    fn all_keys(&self) -> Vec<K>;
}

impl<K: aya::Pod, V: aya::Pod> KeyValueMap<K, V> for BpfHashMap<MapData, K, V> {
    fn put(&mut self, key: &K, value: V) -> Result<(), MapError> {
        self.insert(*key, value, 0)
    }
    fn delete(&mut self, key: &K) -> Result<(), MapError> {
        self.remove(key)
    }
    fn all_keys(&self) -> Vec<K> {
        self.keys().filter_map(Result::ok).collect()
    }
}

impl<K: aya::Pod, V: aya::Pod> KeyValueMap<LpmKey<K>, V> for LpmTrie<MapData, K, V> {
    fn put(&mut self, key: &LpmKey<K>, value: V) -> Result<(), MapError> {
        self.insert(key, value, 0)
    }
    fn delete(&mut self, key: &LpmKey<K>) -> Result<(), MapError> {
        self.remove(key)
    }
    fn all_keys(&self) -> Vec<LpmKey<K>> {
        self.keys().filter_map(Result::ok).collect()
    }
}

/// Turns a map slot holding `old` into one holding `new`. Removals go first, so the
/// map never holds more than `new` for this slot (the slot is not live: a hole in it
/// is seen by no program).
fn sync<C, V, K>(
    map: &mut impl KeyValueMap<K, V>,
    name: &'static str,
    old: &std::collections::HashMap<C, V>,
    new: &std::collections::HashMap<C, V>,
    stats: &mut ApplyStats,
    to_key: impl Fn(&C) -> K,
) -> Result<(), WriterError>
where
    C: Eq + std::hash::Hash,
    V: PartialEq + Copy,
{
    let d = diff(old, new);
    for k in &d.removed {
        remove_ok(map.delete(&to_key(k))).map_err(map_err(name, "remove"))?;
    }
    for (k, v) in &d.upserted {
        map.put(&to_key(k), **v).map_err(map_err(name, "insert"))?;
    }
    stats.upserted += d.upserted.len();
    stats.removed += d.removed.len();
    Ok(())
}

/// The number of keys for which `belongs` holds.
fn count<K, V>(map: &impl KeyValueMap<K, V>, belongs: impl Fn(&K) -> bool) -> usize {
    map.all_keys().iter().filter(|k| belongs(k)).count()
}

/// The capacity the kernel gave a map.
fn max_entries<K: aya::Pod, V>(map: &impl IterableMap<K, V>) -> Result<u32, MapError> {
    Ok(map.map().info()?.max_entries())
}

/// Removes every key for which `belongs` holds.
fn clear<K, V>(
    map: &mut impl KeyValueMap<K, V>,
    name: &'static str,
    belongs: impl Fn(&K) -> bool,
) -> Result<(), WriterError> {
    for key in map.all_keys().into_iter().filter(|k| belongs(k)) {
        remove_ok(map.delete(&key)).map_err(map_err(name, "remove"))?;
    }
    Ok(())
}

/// A removal of an entry that is already gone is not an error.
fn remove_ok(result: Result<(), MapError>) -> Result<(), MapError> {
    match result {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::{EPOCH_MAX, WriterError, check_capacity, next_epoch};

    #[test]
    fn capacity_counts_both_generations() {
        assert!(check_capacity("m", 30, 20, 50).is_ok());
        match check_capacity("m", 30, 21, 50) {
            Err(WriterError::Capacity {
                map: "m",
                need: 51,
                max: 50,
            }) => {}
            other => panic!("expected a capacity refusal, got {other:?}"),
        }
    }

    #[test]
    fn epochs_are_never_zero_and_fit_31_bits() {
        assert_eq!(next_epoch(0), 1);
        assert_eq!(next_epoch(41), 42);
        assert_eq!(next_epoch(EPOCH_MAX), 1);
        assert_eq!(next_epoch(u32::MAX), 1);
    }
}
