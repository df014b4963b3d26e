//! Per-rule counters as people and monitoring read them: `ENF_RULE_COUNTERS` summed
//! over the CPUs, each row named through `ENF_POLICY_NAMES` (both pinned, so this
//! works from any process: `enforcer inspect rules`, the metrics endpoint).
//!
//! Only packets that policy judges are counted (new flows, denied packets, untracked
//! traffic), as Calico's per-rule counters: established packets pass on conntrack.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use aya::maps::{HashMap as BpfHashMap, Map, MapData, MapError, PerCpuHashMap};
use serde::Serialize;

use enforcer_common::{
    MAP_POLICY_NAMES, MAP_RULE_COUNTERS, NO_INDEX, PolicyNameEntry, RuleCounter, RuleCounterKey,
};

use super::names;
use super::policy_ids::name_of;
use crate::model::PolicyName;

#[derive(Debug, thiserror::Error)]
pub enum RuleCountersError {
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
}

/// One counter: a (policy, rule, direction, action) and its packets and bytes.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RuleCounterSample {
    /// Stable policy id (`None`: no policy decided, the profile did).
    pub policy_id: Option<u32>,
    /// The policy's name (`None` for profile decisions, or a retired id).
    pub policy: Option<PolicyName>,
    /// Index of the rule in the policy's rules of this direction; `None`: the tier's
    /// end-of-tier default (attributed to its last policy) or a profile.
    pub rule: Option<u32>,
    /// `ingress`, `egress`, `host-ingress`, ...
    pub direction: &'static str,
    /// `allow`, `deny`, or `log` (a Log rule's hits).
    pub action: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

fn open(pin_dir: &Path, name: &'static str) -> Result<Map, RuleCountersError> {
    let path = pin_dir.join(name);
    let data = MapData::from_pin(&path).map_err(|source| RuleCountersError::Open {
        path: path.clone(),
        source,
    })?;
    Map::from_map_data(data).map_err(|source| RuleCountersError::Open { path, source })
}

/// The id table of a node's pinned maps.
pub fn policy_names(pin_dir: &Path) -> Result<BTreeMap<u32, PolicyNameEntry>, RuleCountersError> {
    let read = |source| RuleCountersError::Read {
        map: MAP_POLICY_NAMES,
        source,
    };
    let map: BpfHashMap<MapData, u32, PolicyNameEntry> =
        BpfHashMap::try_from(open(pin_dir, MAP_POLICY_NAMES)?).map_err(read)?;
    Ok(map.iter().filter_map(Result::ok).collect())
}

/// Every counter of a node, summed over the CPUs, by key.
pub fn read_raw(pin_dir: &Path) -> Result<HashMap<RuleCounterKey, RuleCounter>, RuleCountersError> {
    let read = |source| RuleCountersError::Read {
        map: MAP_RULE_COUNTERS,
        source,
    };
    let map: PerCpuHashMap<MapData, RuleCounterKey, RuleCounter> =
        PerCpuHashMap::try_from(open(pin_dir, MAP_RULE_COUNTERS)?).map_err(read)?;
    let mut out = HashMap::new();
    for item in &map {
        let (key, per_cpu) = item.map_err(read)?;
        let total = per_cpu
            .iter()
            .fold(RuleCounter::default(), |a, c| RuleCounter {
                packets: a.packets.wrapping_add(c.packets),
                bytes: a.bytes.wrapping_add(c.bytes),
            });
        out.insert(key, total);
    }
    Ok(out)
}

/// Every counter of a node, sorted by policy id, direction, rule and action.
pub fn read(pin_dir: &Path) -> Result<Vec<RuleCounterSample>, RuleCountersError> {
    let names = policy_names(pin_dir)?;
    let mut keyed: Vec<(RuleCounterKey, RuleCounter)> = read_raw(pin_dir)?.into_iter().collect();
    keyed.sort_by_key(|(k, _)| (k.policy, k.dir, k.rule, k.action));
    Ok(keyed
        .into_iter()
        .map(|(k, v)| sample(&k, v, &names))
        .collect())
}

fn sample(
    key: &RuleCounterKey,
    value: RuleCounter,
    names: &BTreeMap<u32, PolicyNameEntry>,
) -> RuleCounterSample {
    let policy_id = (key.policy != NO_INDEX).then_some(key.policy);
    RuleCounterSample {
        policy_id,
        policy: policy_id.and_then(|id| names.get(&id)).map(name_of),
        rule: (key.rule != NO_INDEX).then_some(key.rule),
        direction: names::direction(key.dir),
        action: names::action(key.action),
        packets: value.packets,
        bytes: value.bytes,
    }
}

/// The counters in the Prometheus text exposition format (two counter families,
/// `enforcer_rule_packets_total` and `enforcer_rule_bytes_total`), for a metrics
/// endpoint to serve as they are.
pub fn prometheus_text(samples: &[RuleCounterSample]) -> String {
    let mut out = String::new();
    for (family, help, value) in [
        (
            "enforcer_rule_packets_total",
            "Packets judged by a policy rule (new flows and denied packets).",
            (|s: &RuleCounterSample| s.packets) as fn(&RuleCounterSample) -> u64,
        ),
        (
            "enforcer_rule_bytes_total",
            "Bytes of the packets judged by a policy rule.",
            |s: &RuleCounterSample| s.bytes,
        ),
    ] {
        let _ = writeln!(out, "# HELP {family} {help}");
        let _ = writeln!(out, "# TYPE {family} counter");
        for s in samples {
            let (tier, kind, namespace, name) =
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
            let _ = writeln!(
                out,
                "{family}{{tier=\"{}\",kind=\"{}\",namespace=\"{}\",policy=\"{}\",rule=\"{}\",direction=\"{}\",action=\"{}\"}} {}",
                escape(tier),
                escape(kind),
                escape(namespace),
                escape(name),
                rule,
                s.direction,
                s.action,
                value(s)
            );
        }
    }
    out
}

/// Label value escaping of the text format: backslash, double quote, newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::policy_ids::entry_of;
    use enforcer_common::{ACTION_DENY, COUNTED_LOG, DIR_INGRESS};

    #[test]
    fn samples_are_named_and_exported_as_prometheus_counters() {
        let name = PolicyName {
            tier: "default".into(),
            kind: "NetworkPolicy".into(),
            namespace: "dev-app".into(),
            name: "deny \"all\"".into(),
        };
        let names: BTreeMap<u32, PolicyNameEntry> = [(3, entry_of(&name, 7))].into();
        let deny = sample(
            &RuleCounterKey {
                policy: 3,
                rule: NO_INDEX,
                dir: DIR_INGRESS,
                action: ACTION_DENY,
                _pad: [0; 2],
            },
            RuleCounter {
                packets: 4,
                bytes: 296,
            },
            &names,
        );
        assert_eq!(deny.policy.as_ref(), Some(&name));
        assert_eq!(
            (deny.rule, deny.direction, deny.action),
            (None, "ingress", "deny")
        );
        let log = sample(
            &RuleCounterKey {
                policy: NO_INDEX,
                rule: NO_INDEX,
                dir: DIR_INGRESS,
                action: COUNTED_LOG,
                _pad: [0; 2],
            },
            RuleCounter::default(),
            &names,
        );
        assert_eq!((log.policy_id, log.action), (None, "log"));
        let text = prometheus_text(&[deny]);
        assert!(
            text.contains("# TYPE enforcer_rule_packets_total counter"),
            "{text}"
        );
        assert!(
            text.contains(
                "enforcer_rule_packets_total{tier=\"default\",kind=\"NetworkPolicy\",namespace=\"dev-app\",policy=\"deny \\\"all\\\"\",rule=\"default\",direction=\"ingress\",action=\"deny\"} 4"
            ),
            "{text}"
        );
        assert!(text.contains("action=\"deny\"} 296"), "{text}");
    }
}
