//! Metrics read from the pinned maps at scrape time: packets by hook and reason (the
//! counters map, the same numbers `enforcer inspect counters` prints), packets and
//! bytes per policy rule (`enforcer inspect rules`), conntrack entries, and how full
//! each bounded map is. Reading pins (rather than the agent's
//! own handles) keeps the scrape off the agent's loop and shows what the programs see,
//! also across agent restarts.

use std::fmt;
use std::path::{Path, PathBuf};

use aya::maps::lpm_trie::LpmTrie;
use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::dataplane::rule_counters::{self, RuleCounterSample};

use enforcer_common::{
    CtKey, CtValue, EndpointInfo, EndpointKey, MAP_CONNTRACK, MAP_ENDPOINTS, MAP_PEERS_V4,
    MAP_PEERS_V6, MAP_PENDING, MAP_PORTS, MAP_SOURCE_PORTS, MAP_VERDICTS, PeerInfo, PeerKeyV4,
    PeerKeyV6, PendingKey, PendingValue, PortKey, SourcePortKey, Verdict, VerdictKey,
};

/// How many entries a pinned map holds, and how many it can.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fill {
    pub map: &'static str,
    pub entries: u64,
    pub max_entries: u64,
}

fn open(pin_dir: &Path, name: &str) -> Option<(Map, u64)> {
    let data = MapData::from_pin(pin_dir.join(name)).ok()?;
    let max = data.info().ok().map_or(0, |i| u64::from(i.max_entries()));
    Some((Map::from_map_data(data).ok()?, max))
}

fn hash_entries<K: aya::Pod, V: aya::Pod>(map: Map) -> Option<u64> {
    let map: BpfHashMap<MapData, K, V> = BpfHashMap::try_from(map).ok()?;
    Some(map.keys().flatten().count() as u64)
}

fn lpm_entries<K: aya::Pod, V: aya::Pod>(map: Map) -> Option<u64> {
    let map: LpmTrie<MapData, K, V> = LpmTrie::try_from(map).ok()?;
    Some(map.keys().flatten().count() as u64)
}

/// The fill of every bounded map under `pin_dir` that can be opened.
pub fn fill(pin_dir: &Path) -> Vec<Fill> {
    type Count = fn(Map) -> Option<u64>;
    let maps: [(&'static str, Count); 8] = [
        (MAP_ENDPOINTS, hash_entries::<EndpointKey, EndpointInfo>),
        (MAP_VERDICTS, hash_entries::<VerdictKey, Verdict>),
        (MAP_CONNTRACK, hash_entries::<CtKey, CtValue>),
        (MAP_PENDING, hash_entries::<PendingKey, PendingValue>),
        (MAP_PEERS_V4, lpm_entries::<PeerKeyV4, PeerInfo>),
        (MAP_PEERS_V6, lpm_entries::<PeerKeyV6, PeerInfo>),
        (MAP_PORTS, lpm_entries::<PortKey, u32>),
        (MAP_SOURCE_PORTS, lpm_entries::<SourcePortKey, u32>),
    ];
    maps.into_iter()
        .filter_map(|(name, count)| {
            let (map, max_entries) = open(pin_dir, name)?;
            Some(Fill {
                map: name,
                entries: count(map)?,
                max_entries,
            })
        })
        .collect()
}

/// The collector of what the programs count.
#[derive(Debug)]
pub struct BpfStats {
    pub pin_dir: PathBuf,
}

impl Collector for BpfStats {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        // A map that cannot be read (no agent ever ran here) gives no samples.
        let counters = crate::inspect::counters(&self.pin_dir).unwrap_or_default();
        let mut packets = encoder.encode_descriptor(
            "packets",
            "Packets judged by the programs, by hook and reason (enforcer inspect counters)",
            None,
            MetricType::Counter,
        )?;
        for c in &counters {
            let labels = [("hook", c.hook), ("reason", c.reason)];
            ConstCounter::new(c.packets).encode(packets.encode_family(&labels)?)?;
        }
        encode_rules(&mut encoder, &self.pin_dir)?;
        let fills = fill(&self.pin_dir);
        if let Some(ct) = fills.iter().find(|f| f.map == MAP_CONNTRACK) {
            let gauge = encoder.encode_descriptor(
                "conntrack_entries",
                "Entries in the conntrack map",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(i64::try_from(ct.entries).unwrap_or(i64::MAX)).encode(gauge)?;
        }
        let mut entries = encoder.encode_descriptor(
            "map_entries",
            "Entries in each bounded map",
            None,
            MetricType::Gauge,
        )?;
        for f in &fills {
            let labels = [("map", f.map)];
            ConstGauge::new(i64::try_from(f.entries).unwrap_or(i64::MAX))
                .encode(entries.encode_family(&labels)?)?;
        }
        let mut ratio = encoder.encode_descriptor(
            "map_fill_ratio",
            "Entries over capacity of each bounded map (0 to 1)",
            None,
            MetricType::Gauge,
        )?;
        for f in &fills {
            let labels = [("map", f.map)];
            let value = if f.max_entries == 0 {
                0.0
            } else {
                f.entries as f64 / f.max_entries as f64
            };
            ConstGauge::new(value).encode(ratio.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// A counter family: name, help, and the sample's value.
type Family = (&'static str, &'static str, fn(&RuleCounterSample) -> u64);

/// The per-rule counters (`enforcer inspect rules`): packets and bytes by tier, kind,
/// namespace and name of the policy, rule index (`default`: the end of its tier, or a
/// profile), direction and action.
fn encode_rules(encoder: &mut DescriptorEncoder, pin_dir: &Path) -> Result<(), fmt::Error> {
    // Maps pinned by an agent older than the rule counters have none: no samples.
    let samples = rule_counters::read(pin_dir).unwrap_or_default();
    let families: [Family; 2] = [
        (
            "rule_packets",
            "Packets judged by a policy rule (new flows and denied packets; enforcer inspect rules)",
            |s| s.packets,
        ),
        (
            "rule_bytes",
            "Bytes of the packets judged by a policy rule",
            |s| s.bytes,
        ),
    ];
    for (name, help, value) in families {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for s in &samples {
            let (tier, kind, namespace, policy) =
                s.policy.as_ref().map_or(("", "Profile", "", ""), |p| {
                    (
                        p.tier.as_str(),
                        p.kind.as_str(),
                        p.namespace.as_str(),
                        p.name.as_str(),
                    )
                });
            let rule = s
                .rule
                .map_or_else(|| "default".to_owned(), |r| r.to_string());
            let labels = [
                ("tier", tier),
                ("kind", kind),
                ("namespace", namespace),
                ("policy", policy),
                ("rule", rule.as_str()),
                ("direction", s.direction),
                ("action", s.action),
            ];
            ConstCounter::new(value(s)).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}
