//! One line of the flow log: one flow, as one judging point saw it, over one interval,
//! with everything named (the `enforcer flows` reader parses the same type).
//!
//! Fields, as operators of Calico flow logs and `hubble observe` expect them: wall-clock
//! interval (`start`, `end`), `node`, `hook` (the program), `direction`, `verdict` and
//! the drop or pass `reason`, what decided (`decided_by`: a rule, a tier's default,
//! the profile), the 5-tuple, both ends named (`source`, `destination`: pod with
//! labels, host endpoint, Service, network set, or world), the deciding policy and rule
//! (`policy_ref`: tier, kind, namespace, name, stable id; `rule`: its index), the policy
//! `generation` and datastore `revision` it came from, and the counts (`packets`,
//! `bytes`: every packet of the flow in the interval, not one line per packet).
//!
//! `ts_ns`, `event`, `action`, `endpoint`, `src`, `dst`, `sport`, `dport`, `proto` and
//! `policy` (as `tier/kind namespace/name`) are those of the first format, kept for
//! scripts written against it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::names::Peer;
use crate::model::PolicyName;

/// The policy that decided (or whose Log rule matched).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PolicyRef {
    pub tier: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
    /// The stable id in the maps (`enforcer inspect rules`).
    pub id: u32,
}

impl PolicyRef {
    pub fn new(name: &PolicyName, id: u32) -> Self {
        Self {
            tier: name.tier.clone(),
            kind: name.kind.clone(),
            namespace: name.namespace.clone(),
            name: name.name.clone(),
            id,
        }
    }

    /// `tier/kind namespace/name` (`tier/kind name` when not namespaced).
    pub fn legacy(&self) -> String {
        if self.namespace.is_empty() {
            format!("{}/{} {}", self.tier, self.kind, self.name)
        } else {
            format!(
                "{}/{} {}/{}",
                self.tier, self.kind, self.namespace, self.name
            )
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FlowRecord {
    /// RFC 3339 (UTC): the first packet of the flow in this interval.
    pub start: String,
    /// RFC 3339 (UTC): the end of the interval.
    pub end: String,
    /// The first packet's `CLOCK_MONOTONIC` time, in nanoseconds.
    pub ts_ns: u64,
    pub node: String,
    /// The program that judged: `pod-egress`, `pod-ingress`, `host-xdp`, ...
    pub hook: String,
    /// `log` (a Log rule matched), `deny` or `allow`.
    pub event: String,
    /// `allowed` or `denied`.
    pub verdict: String,
    /// `allow` or `deny`.
    pub action: String,
    /// The outcome's counter reason: `deny_policy`, `allow_policy`, `allow_untracked`.
    pub reason: String,
    /// `rule`, `tier-default`, `profile` or `no-profile`.
    pub decided_by: String,
    /// `ingress` / `egress` of a pod; `host-ingress`, `untracked-ingress`,
    /// `prednat-ingress`, ... of a host endpoint.
    pub direction: String,
    /// The judged endpoint: `namespace/pod` or the host endpoint's name.
    pub endpoint: Option<String>,
    /// `TCP`, `UDP`, `ICMP`, ... (`proto`: the number).
    pub protocol: String,
    pub proto: u8,
    pub src: String,
    pub sport: u16,
    pub dst: String,
    pub dport: u16,
    pub source: Peer,
    pub destination: Peer,
    /// `tier/kind namespace/name` of `policy_ref`.
    pub policy: Option<String>,
    pub policy_ref: Option<PolicyRef>,
    /// Index of the rule in the policy's rules of its direction (none: a default).
    pub rule: Option<u32>,
    /// Policy generation (map slot) the verdict was read from.
    pub generation: u8,
    /// Datastore revision that generation was compiled from, when known.
    pub revision: Option<u64>,
    /// Packets of the flow in the interval, and their bytes (L2 frame lengths).
    pub packets: u64,
    pub bytes: u64,
    /// Events the programs queued for it (at most one per flow and second).
    pub events: u64,
}

impl FlowRecord {
    pub fn denied(&self) -> bool {
        self.action == "deny"
    }
}

/// The name of an IP protocol number.
pub fn protocol_name(proto: u8) -> String {
    match proto {
        1 => "ICMP".to_owned(),
        6 => "TCP".to_owned(),
        17 => "UDP".to_owned(),
        58 => "ICMPv6".to_owned(),
        132 => "SCTP".to_owned(),
        136 => "UDPLite".to_owned(),
        other => other.to_string(),
    }
}

/// `2026-01-02T03:04:05.123456Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days.cast_signed());
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::from_micros(1_709_251_199_123_456);
        assert_eq!(rfc3339(t), "2024-02-29T23:59:59.123456Z");
        let t = UNIX_EPOCH + Duration::from_hours(1_139_568);
        assert_eq!(rfc3339(t), "2100-01-01T00:00:00.000000Z");
    }

    #[test]
    fn the_legacy_policy_string_is_kept() {
        let name = PolicyName {
            tier: "default".into(),
            kind: "GlobalNetworkPolicy".into(),
            namespace: String::new(),
            name: "audit".into(),
        };
        assert_eq!(
            PolicyRef::new(&name, 3).legacy(),
            "default/GlobalNetworkPolicy audit"
        );
    }
}
