//! `enforcer inspect`: reads a node's pinned maps and decodes them: outcome counters,
//! conntrack, endpoints, config, per-rule counters (`dataplane::rule_counters`), and
//! the policy in force for one endpoint with its counters (`policy.rs`).

pub mod policy;

use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, MapError, PerCpuArray};
use serde::Serialize;

use enforcer_common::{
    COUNTERS_LEN, Config, CtKey, CtValue, EVENT_STAT_NAMES, EVENT_STATS_LEN, EndpointInfo,
    EndpointKey, FAMILY_V4, HOOKS, MAP_CONFIG, MAP_CONNTRACK, MAP_COUNTERS, MAP_ENDPOINTS,
    MAP_EVENT_STATS, REASON_NAMES, REASONS,
};

use crate::dataplane::rule_counters::{self, RuleCounterSample, RuleCountersError};

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("opening pinned map {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: MapError,
    },
    #[error("reading map {map}: {source}")]
    Read {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error(transparent)]
    RuleCounters(#[from] RuleCountersError),
}

fn open(pin_dir: &Path, name: &'static str) -> Result<Map, InspectError> {
    let path = pin_dir.join(name);
    let data = MapData::from_pin(&path).map_err(|source| InspectError::Open {
        path: path.clone(),
        source,
    })?;
    Map::from_map_data(data).map_err(|source| InspectError::Open { path, source })
}

fn read_err(map: &'static str) -> impl FnOnce(MapError) -> InspectError {
    move |source| InspectError::Read { map, source }
}

/// One non-zero counter, summed over CPUs.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Counter {
    pub hook: &'static str,
    pub reason: &'static str,
    pub packets: u64,
}

pub fn hook_name(hook: u32) -> &'static str {
    crate::dataplane::names::hook(hook)
}

/// Every non-zero counter: packets by hook and reason, then what became of flow
/// events (hook `events`: emitted, aggregated into a flow's report, lost to the
/// per-CPU budget or to a full ring buffer).
pub fn counters(pin_dir: &Path) -> Result<Vec<Counter>, InspectError> {
    let map: PerCpuArray<MapData, u64> =
        PerCpuArray::try_from(open(pin_dir, MAP_COUNTERS)?).map_err(read_err(MAP_COUNTERS))?;
    let mut out = Vec::new();
    for index in 0..COUNTERS_LEN.min(HOOKS * REASONS) {
        let values = map.get(&index, 0).map_err(read_err(MAP_COUNTERS))?;
        let packets: u64 = values.iter().sum();
        if packets > 0 {
            out.push(Counter {
                hook: hook_name(index / REASONS),
                reason: REASON_NAMES[(index % REASONS) as usize],
                packets,
            });
        }
    }
    // Maps pinned by an agent older than the event counters have none: no rows.
    if let Ok(map) = open(pin_dir, MAP_EVENT_STATS) {
        let stats: PerCpuArray<MapData, u64> =
            PerCpuArray::try_from(map).map_err(read_err(MAP_EVENT_STATS))?;
        for index in 0..EVENT_STATS_LEN {
            let values = stats.get(&index, 0).map_err(read_err(MAP_EVENT_STATS))?;
            let events: u64 = values.iter().sum();
            if events > 0 {
                out.push(Counter {
                    hook: "events",
                    reason: EVENT_STAT_NAMES[index as usize],
                    packets: events,
                });
            }
        }
    }
    Ok(out)
}

/// The per-rule counters, optionally of the policies named `policy` (`NAME` or
/// `NAMESPACE/NAME`).
pub fn rules(pin_dir: &Path, policy: Option<&str>) -> Result<Vec<RuleCounterSample>, InspectError> {
    let mut rows = rule_counters::read(pin_dir)?;
    if let Some(wanted) = policy {
        rows.retain(|r| {
            r.policy.as_ref().is_some_and(|p| {
                p.name == wanted || format!("{}/{}", p.namespace, p.name) == wanted
            })
        });
    }
    Ok(rows)
}

/// Sum of one (hook, reason) counter; 0 if absent.
pub fn counter(counters: &[Counter], hook: &str, reason: &str) -> u64 {
    counters
        .iter()
        .filter(|c| c.hook == hook && c.reason == reason)
        .map(|c| c.packets)
        .sum()
}

pub fn config(pin_dir: &Path) -> Result<Config, InspectError> {
    let map: Array<MapData, Config> =
        Array::try_from(open(pin_dir, MAP_CONFIG)?).map_err(read_err(MAP_CONFIG))?;
    map.get(&0, 0).map_err(read_err(MAP_CONFIG))
}

#[derive(Clone, Debug, Serialize)]
pub struct EndpointRow {
    pub generation: u32,
    pub ifindex: u32,
    pub endpoint_id: u32,
    pub profile: u32,
}

pub fn endpoints(pin_dir: &Path) -> Result<Vec<EndpointRow>, InspectError> {
    let map: BpfHashMap<MapData, EndpointKey, EndpointInfo> =
        BpfHashMap::try_from(open(pin_dir, MAP_ENDPOINTS)?).map_err(read_err(MAP_ENDPOINTS))?;
    let mut rows: Vec<EndpointRow> = map
        .iter()
        .filter_map(Result::ok)
        .map(|(k, v)| EndpointRow {
            generation: k.generation,
            ifindex: k.ifindex,
            endpoint_id: v.endpoint_id,
            profile: v.profile,
        })
        .collect();
    rows.sort_by_key(|r| (r.generation, r.ifindex));
    Ok(rows)
}

#[derive(Clone, Debug, Serialize)]
pub struct FlowRow {
    pub src: String,
    pub dst: String,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub flags: u32,
    pub generation: u32,
}

fn addr(bytes: [u8; 16], family: u8) -> String {
    if family == FAMILY_V4 {
        std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string()
    } else {
        std::net::Ipv6Addr::from(bytes).to_string()
    }
}

/// The conntrack table.
pub fn conntrack(pin_dir: &Path) -> Result<Vec<FlowRow>, InspectError> {
    let map: BpfHashMap<MapData, CtKey, CtValue> =
        BpfHashMap::try_from(open(pin_dir, MAP_CONNTRACK)?).map_err(read_err(MAP_CONNTRACK))?;
    Ok(map
        .iter()
        .filter_map(Result::ok)
        .map(|(k, v)| FlowRow {
            src: addr(k.src, k.family),
            dst: addr(k.dst, k.family),
            sport: k.sport,
            dport: k.dport,
            proto: k.proto,
            flags: v.ct_flags(),
            // The slot (the entry's stamp carries the slot's epoch above bit 0).
            generation: v.generation & 1,
        })
        .collect())
}
