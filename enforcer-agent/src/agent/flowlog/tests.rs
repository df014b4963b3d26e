use std::net::IpAddr;

use enforcer_common::{
    ACTION_ALLOW, ACTION_DENY, DIR_EGRESS, DIR_HOST_INGRESS, EVENT_KIND_DENY, EVENT_KIND_LOG,
    FAMILY_V4, FlowEvent, HOOK_HOST_INGRESS, HOOK_POD_EGRESS, NO_INDEX, REASON_DENY_POLICY,
    VERDICT_KIND_RULE, VERDICT_KIND_TIER_DEFAULT,
};

use super::names::Peer;
use super::{FlowNames, record};
use crate::model::PolicyName;

struct Names;

impl FlowNames for Names {
    fn node(&self) -> &'static str {
        "node1"
    }
    fn peer(&self, ip: IpAddr, port: Option<u16>) -> Peer {
        if ip.to_string() == "198.18.0.10" {
            Peer {
                kind: "pod".into(),
                namespace: "dev-app".into(),
                name: "frontend-0".into(),
                labels: std::sync::Arc::new([("app".to_owned(), "frontend".to_owned())].into()),
                ip: ip.to_string(),
                port,
            }
        } else {
            Peer {
                kind: "world".into(),
                ip: ip.to_string(),
                port,
                ..Peer::default()
            }
        }
    }
    fn endpoint(&self, ifindex: u32, _endpoint_id: u32) -> Option<String> {
        match ifindex {
            9 => Some("dev-app/frontend-0".into()),
            2 => Some("node1-eth0".into()),
            _ => None,
        }
    }
    fn policy(&self, id: u32) -> Option<PolicyName> {
        (id == 12).then(|| PolicyName {
            tier: "security".into(),
            kind: "GlobalNetworkPolicy".into(),
            namespace: String::new(),
            name: "audit".into(),
        })
    }
    fn revision(&self, generation: u8) -> Option<u64> {
        (generation == 1).then_some(7)
    }
}

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&a);
    out
}

#[test]
fn a_log_event_names_its_policy_rule_endpoint_and_both_ends() {
    let event = FlowEvent {
        src: v4([198, 18, 0, 10]),
        dst: v4([203, 0, 113, 5]),
        sport: 40000,
        dport: 80,
        proto: 6,
        family: FAMILY_V4,
        dir: DIR_EGRESS,
        action: ACTION_DENY,
        kind: EVENT_KIND_LOG,
        ifindex: 9,
        endpoint_id: 7,
        policy: 12,
        rule: 2,
        hook: HOOK_POD_EGRESS as u8,
        verdict_kind: VERDICT_KIND_RULE,
        generation: 1,
        reason: REASON_DENY_POLICY,
        ..FlowEvent::default()
    };
    let r = record(&event, &Names);
    assert_eq!(r.event, "log");
    assert_eq!((r.verdict.as_str(), r.action.as_str()), ("denied", "deny"));
    assert_eq!(r.reason, "deny_policy");
    assert_eq!(r.decided_by, "rule");
    assert_eq!(
        (r.hook.as_str(), r.direction.as_str()),
        ("pod-egress", "egress")
    );
    assert_eq!(r.node, "node1");
    assert_eq!(r.endpoint.as_deref(), Some("dev-app/frontend-0"));
    assert_eq!(
        r.policy.as_deref(),
        Some("security/GlobalNetworkPolicy audit")
    );
    let p = r
        .policy_ref
        .as_ref()
        .unwrap_or_else(|| panic!("no policy_ref"));
    assert_eq!(
        (p.tier.as_str(), p.name.as_str(), p.id),
        ("security", "audit", 12)
    );
    assert_eq!(r.rule, Some(2));
    assert_eq!((r.src.as_str(), r.sport), ("198.18.0.10", 40000));
    assert_eq!((r.dst.as_str(), r.dport), ("203.0.113.5", 80));
    assert_eq!(r.protocol, "TCP");
    assert_eq!(r.source.display_name(), "dev-app/frontend-0");
    assert_eq!(
        r.source.labels.get("app").map(String::as_str),
        Some("frontend")
    );
    assert_eq!(r.source.port, Some(40000));
    assert_eq!(
        (r.destination.kind.as_str(), r.destination.port),
        ("world", Some(80))
    );
    assert_eq!((r.generation, r.revision), (1, Some(7)));
    let none = FlowEvent {
        policy: NO_INDEX,
        rule: NO_INDEX,
        ..event
    };
    let r = record(&none, &Names);
    assert_eq!((r.policy, r.policy_ref, r.rule), (None, None, None));
}

#[test]
fn a_host_endpoint_deny_is_named_with_its_host_direction() {
    let event = FlowEvent {
        src: v4([198, 18, 255, 2]),
        dst: v4([198, 18, 255, 1]),
        sport: 5000,
        dport: 8000,
        proto: 17,
        family: FAMILY_V4,
        dir: DIR_HOST_INGRESS,
        action: ACTION_DENY,
        kind: EVENT_KIND_DENY,
        ifindex: 2,
        policy: 12,
        rule: NO_INDEX,
        hook: HOOK_HOST_INGRESS as u8,
        verdict_kind: VERDICT_KIND_TIER_DEFAULT,
        reason: REASON_DENY_POLICY,
        ..FlowEvent::default()
    };
    let r = record(&event, &Names);
    assert_eq!(
        (r.hook.as_str(), r.direction.as_str()),
        ("host-ingress", "host-ingress")
    );
    assert_eq!(r.endpoint.as_deref(), Some("node1-eth0"));
    assert_eq!(
        (r.event.as_str(), r.decided_by.as_str()),
        ("deny", "tier-default")
    );
    assert_eq!(r.protocol, "UDP");
    assert_eq!(r.rule, None);
    assert!(r.policy.is_some());
    let allowed = FlowEvent {
        action: ACTION_ALLOW,
        ..event
    };
    assert_eq!(record(&allowed, &Names).verdict, "allowed");
}

/// The writer thread (`writer.rs`) aggregates the events handed to it and writes each
/// interval at its close, in order, also what is still queued when it is dropped (the
/// agent's shutdown); the log's counters follow. Events handed over before a close are
/// in that interval.
#[test]
#[expect(clippy::unwrap_used, reason = "a failing test panics with context")]
fn the_writer_thread_writes_each_interval_in_order_and_on_drop() {
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use super::file::{LogFile, Rotation};
    use super::record::FlowRecord;
    use super::writer::LineWriter;
    use super::{Clock, FlowLogStats, observe};

    let dir = crate::testkit::TempDir::new("flowlog-writer");
    let path = dir.path().join("flows.jsonl");
    let stats = Arc::new(FlowLogStats::default());
    let writer = LineWriter::spawn(
        LogFile::new(&path, Rotation::default()),
        None,
        Arc::clone(&stats),
    )
    .unwrap();
    let clock = Clock::now();
    let mut ports = Vec::new();
    for interval in 0..5u16 {
        let events: Vec<_> = (0..3u16)
            .map(|n| {
                let sport = 40_000 + interval * 10 + n;
                ports.push(sport);
                let event = FlowEvent {
                    src: v4([198, 18, 0, 10]),
                    dst: v4([198, 18, 0, 20]),
                    sport,
                    dport: 80,
                    proto: 6,
                    family: FAMILY_V4,
                    action: ACTION_ALLOW,
                    policy: NO_INDEX,
                    rule: NO_INDEX,
                    packets: 2,
                    ..FlowEvent::default()
                };
                observe(&event, &Names, &clock)
            })
            .collect();
        writer.events(events);
        writer.close(UNIX_EPOCH + Duration::from_secs(u64::from(interval) + 1));
    }
    drop(writer);
    let text = std::fs::read_to_string(&path).unwrap();
    let written: Vec<FlowRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Within an interval, lines of flows that started together come in any order.
    let mut by_interval: Vec<u16> = written.iter().map(|r| r.sport).collect();
    for interval in by_interval.chunks_mut(3) {
        interval.sort_unstable();
    }
    assert_eq!(
        by_interval, ports,
        "one line per flow, interval after interval"
    );
    assert!(written.iter().all(|r| r.packets == 2), "{written:?}");
    let ends: Vec<&str> = written.iter().map(|r| r.end.as_str()).collect();
    assert_eq!(ends[0], "1970-01-01T00:00:01.000000Z");
    assert_eq!(ends[14], "1970-01-01T00:00:05.000000Z");
    let counts = stats.counts();
    assert_eq!(
        (counts.lines, counts.write_errors, counts.lines_lost),
        (15, 0, 0)
    );
}
