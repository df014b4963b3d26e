//! Per flow, per interval: events become one line per flow and interval with the
//! flow's packet and byte counts.
//!
//! The programs send at most one event per flow, CPU and second, carrying that CPU's
//! cumulative counts of the flow (`FlowEvent::packets`, `bytes`, `cpu`); packets in
//! between only add to the flow's per-CPU `ENF_FLOW_REPORTS` entry. When an interval
//! closes, the aggregator reads that entry (`harvest`: one report per CPU) for every
//! flow seen in it or in the interval before (a flow's last packets may follow its last
//! event by up to a second), and writes the growth since the flow's last line, summed
//! over the CPUs. A recycled entry (LRU eviction) counts from zero again.

use std::collections::HashMap;
use std::time::SystemTime;

use enforcer_common::{FlowReport, FlowReportKey};

use super::record::{FlowRecord, rfc3339};

/// Flows remembered after their last line, so later lines count only the growth.
const REMEMBERED_INTERVALS: u64 = 120;
/// At most this many remembered flows; beyond it only the last interval's are kept.
const REMEMBERED_MAX: usize = 100_000;

/// One decoded, named event.
#[derive(Clone, Debug)]
pub struct Observed {
    pub key: FlowReportKey,
    pub at: SystemTime,
    /// The CPU that queued the event, and its cumulative counts of the flow report.
    pub cpu: u32,
    pub packets: u64,
    pub bytes: u64,
    /// The line, named, without times and counts.
    pub record: FlowRecord,
}

/// Cumulative (packets, bytes) per CPU that counted the flow, by CPU. A sorted vector:
/// a flow is counted on one CPU or a few, and a flood remembers up to
/// [`REMEMBERED_MAX`] flows (a `BTreeMap`'s first node is ~240 bytes).
#[derive(Clone, Debug, Default)]
struct PerCpu(Vec<(u32, (u64, u64))>);

impl PerCpu {
    fn get(&self, cpu: u32) -> Option<(u64, u64)> {
        self.0
            .binary_search_by_key(&cpu, |&(c, _)| c)
            .ok()
            .map(|i| self.0[i].1)
    }

    /// The counts of `cpu`, zero when it has none yet.
    fn entry(&mut self, cpu: u32) -> &mut (u64, u64) {
        let i = match self.0.binary_search_by_key(&cpu, |&(c, _)| c) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (cpu, (0, 0)));
                i
            }
        };
        &mut self.0[i].1
    }

    fn iter(&self) -> impl Iterator<Item = (u32, (u64, u64))> + '_ {
        self.0.iter().copied()
    }
}

struct Open {
    first: SystemTime,
    record: FlowRecord,
    counts: PerCpu,
    events: u64,
}

struct Logged {
    counts: PerCpu,
    interval: u64,
    /// The flow's last line, while it may still get a line without events (in the
    /// close after it); dropped after: a remembered flow then costs its key and
    /// counts only, not a named record (a few hundred bytes of strings and labels,
    /// times every flow of the last [`REMEMBERED_INTERVALS`] intervals after a flood).
    /// Boxed: inline, the record's ~800 bytes were in every remembered flow's slot of
    /// the table, named or not.
    record: Option<Box<FlowRecord>>,
}

/// Per-CPU counts from a harvested report (index = CPU).
fn per_cpu(reports: &[FlowReport]) -> PerCpu {
    PerCpu(
        reports
            .iter()
            .enumerate()
            .filter(|(_, r)| r.packets > 0)
            .map(|(cpu, r)| (cpu as u32, (r.packets, r.bytes)))
            .collect(),
    )
}

#[derive(Default)]
pub struct Aggregator {
    open: HashMap<FlowReportKey, Open>,
    logged: HashMap<FlowReportKey, Logged>,
    /// Intervals closed so far.
    interval: u64,
    /// When the last interval closed (the start of a line for a flow without events).
    last_close: Option<SystemTime>,
}

impl Aggregator {
    pub fn add(&mut self, o: Observed) {
        let entry = self.open.entry(o.key).or_insert_with(|| Open {
            first: o.at,
            record: o.record.clone(),
            counts: PerCpu::default(),
            events: 0,
        });
        // The newest naming wins (a policy change within the interval).
        entry.record = o.record;
        entry.events += 1;
        let cpu = entry.counts.entry(o.cpu);
        if o.packets >= cpu.0 {
            *cpu = (o.packets, o.bytes);
        }
    }

    /// Flows with events in the open interval.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Closes the interval at `end`: one line per flow that grew.
    pub fn close(
        &mut self,
        end: SystemTime,
        mut harvest: impl FnMut(&FlowReportKey) -> Option<Vec<FlowReport>>,
    ) -> Vec<FlowRecord> {
        self.interval += 1;
        let interval = self.interval;
        let mut lines = Vec::new();
        let open = std::mem::take(&mut self.open);
        for (key, o) in open {
            let mut counts = o.counts;
            if let Some(reports) = harvest(&key) {
                for (cpu, (p, b)) in per_cpu(&reports).iter() {
                    let c = counts.entry(cpu);
                    if p >= c.0 {
                        *c = (p, b);
                    }
                }
            }
            let (dp, db) = self.grow(&key, &counts);
            let mut record = o.record;
            record.start = rfc3339(o.first);
            record.end = rfc3339(end);
            record.packets = dp;
            record.bytes = db;
            record.events = o.events;
            self.logged.insert(
                key,
                Logged {
                    counts,
                    interval,
                    record: Some(Box::new(record.clone())),
                },
            );
            lines.push(record);
        }
        // Flows of the interval before without events in this one: packets after
        // their last event.
        let quiet: Vec<FlowReportKey> = self
            .logged
            .iter()
            .filter(|(_, l)| l.interval + 1 == interval)
            .map(|(k, _)| *k)
            .collect();
        for key in quiet {
            let Some(reports) = harvest(&key) else {
                continue;
            };
            let counts = per_cpu(&reports);
            let (dp, db) = self.grow(&key, &counts);
            if dp == 0 {
                continue;
            }
            if let Some(l) = self.logged.get_mut(&key)
                && let Some(last) = &l.record
            {
                l.counts = counts;
                l.interval = interval;
                let mut record = FlowRecord::clone(last);
                record.start = self.last_close.map(rfc3339).unwrap_or_default();
                record.end = rfc3339(end);
                record.packets = dp;
                record.bytes = db;
                record.events = 0;
                lines.push(record);
            }
        }
        self.forget_old();
        self.last_close = Some(end);
        lines.sort_by(|a, b| (&a.start, &a.src, &a.dst).cmp(&(&b.start, &b.src, &b.dst)));
        lines
    }

    /// The growth of a flow's per-CPU cumulative counts since its last line, summed.
    fn grow(&self, key: &FlowReportKey, counts: &PerCpu) -> (u64, u64) {
        let before = self.logged.get(key).map(|l| &l.counts);
        counts.iter().fold((0, 0), |(dp, db), (cpu, (p, b))| {
            let (p0, b0) = before.and_then(|c| c.get(cpu)).unwrap_or((0, 0));
            if p >= p0 {
                (dp + (p - p0), db + b.saturating_sub(b0))
            } else {
                // The entry was recycled: it counts from zero.
                (dp + p, db + b)
            }
        })
    }

    fn forget_old(&mut self) {
        let now = self.interval;
        let horizon = if self.logged.len() > REMEMBERED_MAX {
            1
        } else {
            REMEMBERED_INTERVALS
        };
        self.logged.retain(|_, l| now - l.interval < horizon);
        for l in self.logged.values_mut() {
            if l.interval != now {
                l.record = None;
            }
        }
        // A flood's table is given back once its flows are forgotten.
        if self.logged.capacity() > 4 * self.logged.len() + 1024 {
            self.logged.shrink_to_fit();
        }
    }

    /// Remembered flows still holding their last line.
    pub fn records_kept(&self) -> usize {
        self.logged.values().filter(|l| l.record.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn record() -> FlowRecord {
        serde_json::from_value(serde_json::json!({
            "start": "", "end": "", "ts_ns": 0, "node": "node1", "hook": "pod-ingress",
            "event": "deny", "verdict": "denied", "action": "deny", "reason": "deny_policy",
            "decided_by": "tier-default", "direction": "ingress", "endpoint": "ns/b",
            "protocol": "UDP", "proto": 17, "src": "198.18.0.1", "sport": 1,
            "dst": "198.18.0.2", "dport": 53,
            "source": {"kind": "world", "ip": "198.18.0.1"},
            "destination": {"kind": "world", "ip": "198.18.0.2"},
            "policy": null, "policy_ref": null, "rule": null, "generation": 0,
            "revision": null, "packets": 0, "bytes": 0, "events": 0
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn observed(key: FlowReportKey, packets: u64) -> Observed {
        let mut record = record();
        record.sport = key.sport;
        Observed {
            key,
            at: UNIX_EPOCH + Duration::from_secs(packets),
            cpu: 0,
            packets,
            bytes: packets * 100,
            record,
        }
    }

    /// A flood remembers up to `REMEMBERED_MAX` flows: each must cost its key and
    /// counts, not a record's worth of slot (an inline record made it ~800 bytes).
    #[test]
    fn a_remembered_flow_is_small_and_counts_per_cpu_stay_sorted() {
        assert!(size_of::<Logged>() <= 48, "{}", size_of::<Logged>());
        let mut counts = PerCpu::default();
        *counts.entry(3) = (3, 300);
        *counts.entry(1) = (1, 100);
        counts.entry(3).0 += 1;
        assert_eq!(
            counts.iter().collect::<Vec<_>>(),
            [(1, (1, 100)), (3, (4, 300))]
        );
        assert_eq!((counts.get(1), counts.get(2)), (Some((1, 100)), None));
    }

    #[test]
    fn one_line_per_flow_and_interval_with_exact_counts() {
        let a = FlowReportKey {
            sport: 1,
            ..FlowReportKey::default()
        };
        let b = FlowReportKey {
            sport: 2,
            ..FlowReportKey::default()
        };
        let mut agg = Aggregator::default();
        // Interval 1: a reported once (1 packet), then 9 more packets held back; b once.
        agg.add(observed(a, 1));
        agg.add(observed(b, 1));
        let reports: HashMap<FlowReportKey, u64> = [(a, 10), (b, 1)].into();
        let harvest = |reports: &HashMap<FlowReportKey, u64>| {
            let reports = reports.clone();
            move |k: &FlowReportKey| {
                reports.get(k).map(|&p| {
                    vec![FlowReport {
                        last_report_ns: 0,
                        packets: p,
                        bytes: p * 100,
                    }]
                })
            }
        };
        let lines = agg.close(UNIX_EPOCH + Duration::from_secs(5), harvest(&reports));
        let counts: Vec<(u16, u64, u64, u64)> = lines
            .iter()
            .map(|l| (l.sport, l.packets, l.bytes, l.events))
            .collect();
        assert_eq!(counts.len(), 2, "{counts:?}");
        assert!(counts.contains(&(1, 10, 1000, 1)), "{counts:?}");
        assert!(counts.contains(&(2, 1, 100, 1)), "{counts:?}");
        assert!(lines.iter().all(|l| l.end == "1970-01-01T00:00:05.000000Z"));
        // Interval 2: a's last packets came after its last event (no event now).
        let reports: HashMap<FlowReportKey, u64> = [(a, 14), (b, 1)].into();
        let lines = agg.close(UNIX_EPOCH + Duration::from_secs(6), harvest(&reports));
        let got: Vec<(u64, u64)> = lines.iter().map(|l| (l.packets, l.events)).collect();
        assert_eq!(got, vec![(4, 0)], "only a grew");
        // Interval 3: a reports again with its cumulative count; growth only.
        agg.add(observed(a, 20));
        let lines = agg.close(
            UNIX_EPOCH + Duration::from_secs(7),
            harvest(&HashMap::new()),
        );
        assert_eq!(lines.iter().map(|l| l.packets).collect::<Vec<_>>(), vec![6]);
        // A recycled report (counts restarted) counts from zero.
        agg.add(observed(a, 3));
        let lines = agg.close(
            UNIX_EPOCH + Duration::from_secs(8),
            harvest(&HashMap::new()),
        );
        assert_eq!(lines.iter().map(|l| l.packets).collect::<Vec<_>>(), vec![3]);
    }

    #[test]
    fn remembered_flows_keep_their_counts_not_their_lines() {
        let mut agg = Aggregator::default();
        let keys: Vec<FlowReportKey> = (0..2_000)
            .map(|sport| FlowReportKey {
                sport,
                ..FlowReportKey::default()
            })
            .collect();
        // A flood of one-packet flows, then intervals without events.
        for &key in &keys {
            agg.add(observed(key, 1));
        }
        let end = |s| UNIX_EPOCH + Duration::from_secs(s);
        let lines = agg.close(end(1), |_| None);
        assert_eq!(lines.len(), keys.len());
        assert_eq!(agg.records_kept(), keys.len(), "each may still get a line");
        // The close after: a flow whose packets grew after its event gets its line.
        let grown = keys[7];
        let lines = agg.close(end(2), |k| {
            (*k == grown).then(|| {
                vec![FlowReport {
                    last_report_ns: 0,
                    packets: 5,
                    bytes: 500,
                }]
            })
        });
        assert_eq!(lines.iter().map(|l| l.packets).collect::<Vec<_>>(), vec![4]);
        assert_eq!(agg.records_kept(), 1, "only the flow that just got a line");
        agg.close(end(3), |_| None);
        assert_eq!(agg.records_kept(), 0, "no flow can get a line any more");
        // Still remembered: a later event counts from the last line's counts.
        agg.add(observed(grown, 6));
        let lines = agg.close(end(4), |_| None);
        assert_eq!(lines.iter().map(|l| l.packets).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn counts_of_several_cpus_add_up() {
        use std::time::{Duration, UNIX_EPOCH};
        let key = FlowReportKey::default();
        let record: FlowRecord = record();
        let mut agg = Aggregator::default();
        for (cpu, packets) in [(0, 1), (1, 1), (1, 3)] {
            agg.add(Observed {
                key,
                at: UNIX_EPOCH,
                cpu,
                packets,
                bytes: packets * 10,
                record: record.clone(),
            });
        }
        // The reports say CPU 0 saw 2 packets, CPU 1 four.
        let reports = vec![
            FlowReport {
                last_report_ns: 0,
                packets: 2,
                bytes: 20,
            },
            FlowReport {
                last_report_ns: 0,
                packets: 4,
                bytes: 40,
            },
        ];
        let lines = agg.close(UNIX_EPOCH + Duration::from_secs(1), |_| {
            Some(reports.clone())
        });
        assert_eq!(lines.len(), 1);
        assert_eq!(
            (lines[0].packets, lines[0].bytes, lines[0].events),
            (6, 60, 3)
        );
    }
}
