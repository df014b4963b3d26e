//! `p5`: update latency, at three cluster sizes (1,000, 10,000 and 50,000 policies,
//! half as many pods, as many rules on the server as policies), and the lab part of
//! `p6` at 10,000 / 5,000: the agent's RSS after the load, after the flips, and after
//! 1,000 more changes (100 in quick mode) compared with after a warm-up of 24, and its
//! BPF map memory.
//!
//! A lab with the agent at each size and a paced generator of one-packet UDP flows
//! client → server (one every 0.2 ms, each with a fresh (source port, destination
//! port) pair, sequence number and send time on `CLOCK_MONOTONIC`, the clock the bench
//! reads): every packet is a new flow, judged by the policy in force when it is sent
//! (established flows keep their conntrack approval across policy changes, as in
//! Calico). The receiver is a raw UDP socket in the server's netns. Changes
//! alternately add and delete a `GlobalNetworkPolicy` denying ingress to the server in
//! a tier ordered first (its default action denies everything else, so the server is
//! isolated while it exists), written straight to the datastore
//! (`FileDatastore::apply` / `delete`); t0 is taken before the write. For a deny, the
//! first packet judged by it is the one sent after the last arrival (in force once the
//! receiver has been silent 150 ms); for an allow, the first arrival sent after t0.
//! Latency = that packet's send time − t0 (resolution 0.2 ms).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use enforcer::datastore::file::FileDatastore;
use enforcer::model::{Object, ObjectId};
use serde_json::{Value, json};

use super::generators::{
    datagram, flow_ports, parse_generated, raw_socket, raw_udp_receiver, send_raw,
};
use super::lab::{LabGuard, map_memory, proc_status_kb};
use super::{
    BenchResult, Context as _, Goal, Line, Metric, Mode, Report, Series, quantile, scenario,
};
use crate::bpf::dataplane::monotonic_ns;
use crate::traffic::enter_netns;
use std::os::fd::AsRawFd as _;

const P5_INTERVAL: Duration = Duration::from_micros(200);
/// How long the receiver must stay silent before a deny counts as in force.
const SILENCE: Duration = Duration::from_millis(150);
const CHANGE_TIMEOUT: Duration = Duration::from_secs(20);
/// Changes after which the agent's RSS is measured again (no growth expected).
const MEMORY_CHANGES: usize = 1_000;
/// Changes of the mix before the RSS growth is measured from.
const WARMUP_CHANGES: usize = 24;
/// Two flow-log intervals (1 s each), and some: the flips' traffic is logged and its
/// interval closed before the growth is measured.
const FLOW_LOG_SETTLE: Duration = Duration::from_secs(3);

/// Arrivals: (seq, send time) of every generator packet the server received.
type Arrivals = Arc<Mutex<Vec<(u64, u64)>>>;

/// One cluster size: (rules on the server, policies, background pods).
#[derive(Clone, Copy, Debug)]
struct Size {
    rules: usize,
    policies: usize,
    pods: usize,
}

/// The sizes of a run; the one with [`Size::is_main`] carries the goal and `p6`.
fn sizes(mode: Mode) -> Vec<Size> {
    let size = |policies: usize| Size {
        rules: policies,
        policies,
        pods: policies / 2,
    };
    // `ENFORCER_P5_SIZES=1000,10000`: some of the sizes (to look into one).
    let chosen: Option<Vec<usize>> = std::env::var("ENFORCER_P5_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect());
    if let Some(chosen) = chosen {
        chosen.into_iter().map(size).collect()
    } else if mode.quick {
        vec![size(500)]
    } else {
        vec![size(1_000), size(10_000), size(50_000)]
    }
}

impl Size {
    fn is_main(self, mode: Mode) -> bool {
        mode.quick || self.policies == 10_000
    }

    /// Metric suffix: `_1k`, `_50k`; none for the main size.
    fn suffix(self, mode: Mode) -> String {
        if self.is_main(mode) {
            String::new()
        } else {
            format!("_{}k", self.policies / 1_000)
        }
    }
}

pub fn run(mode: Mode, report: &mut Report) -> BenchResult<()> {
    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    for size in sizes(mode) {
        let (l50, l99) = run_size(mode, size, report)?;
        p50.push((size.policies as f64, l50));
        p99.push((size.policies as f64, l99));
    }
    report.series(Series {
        name: "p5-latency-vs-size".to_owned(),
        title: "Policy change to enforcement (datastore write -> first packet judged)".to_owned(),
        x_label: "policies (pods = policies / 2)".to_owned(),
        y_label: "milliseconds".to_owned(),
        log_x: true,
        lines: vec![
            Line {
                label: "p50".to_owned(),
                points: p50,
            },
            Line {
                label: "p99".to_owned(),
                points: p99,
            },
        ],
    });
    Ok(())
}

/// KiB of a /proc/<pid>/status field as MiB.
fn rss_mb(pid: i32, field: &str) -> Option<f64> {
    proc_status_kb(pid, field).map(|kb| kb as f64 / 1024.0)
}

/// What `VmRSS` is made of: the heap and stacks (`RssAnon`), mapped files (`RssFile`:
/// the binary) and shared memory (`RssShmem`: the pages of BPF maps the agent mmaps,
/// such as the flow-event ring buffer, which count once touched).
fn rss_parts(pid: i32) -> String {
    let part = |field| rss_mb(pid, field).unwrap_or(f64::NAN);
    format!(
        "anon {:.1}, file {:.1}, shmem {:.1} MiB",
        part("RssAnon:"),
        part("RssFile:"),
        part("RssShmem:")
    )
}

/// One size: the lab, the flips, and (main size) the memory figures. Returns the
/// p50 and p99 latency.
fn run_size(mode: Mode, size: Size, report: &mut Report) -> BenchResult<(f64, f64)> {
    let Size {
        rules,
        policies,
        pods,
    } = size;
    let mut docs = scenario::scale(rules, policies, pods);
    docs.push(flip_tier());
    let started = Instant::now();
    let lab = LabGuard::up(&format!("benchu{}", std::process::id() % 1000), &docs, true)?;
    let up_s = started.elapsed().as_secs_f64();
    let client = lab.pod(scenario::CLIENT)?;
    let server = lab.pod(scenario::SERVER)?;
    let ds = FileDatastore::open(lab.name.paths().datastore()).ctx("datastore")?;
    let flip = objects(&flip_policy())?;
    let flip_ids: Vec<ObjectId> = flip.iter().map(Object::id).collect();
    let agent_pid = lab.agent_pid()?;
    let rss_loaded = rss_mb(agent_pid, "VmRSS:");

    let stop = Arc::new(AtomicBool::new(false));
    let arrivals: Arrivals = Arc::new(Mutex::new(Vec::new()));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let receiver = spawn_receiver(
        server.netns.clone(),
        Arc::clone(&arrivals),
        Arc::clone(&stop),
        ready_tx,
    );
    ready_rx.recv().map_err(|_| "receiver died".to_owned())??;
    let sender = spawn_sender(
        client.netns.clone(),
        client.ip.parse().ctx("client address")?,
        server.ip.parse().ctx("server address")?,
        Arc::clone(&stop),
    );
    let changes = if mode.quick { 6 } else { 50 };
    let result = measure_flips(&ds, &flip, &flip_ids, &arrivals, changes);
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().map_err(|_| "sender panicked".to_owned())??;
    let _ = receiver.join();
    let (lat, failed) = result?;
    let scale = format!(
        "{policies} policies / {} pods (+{rules} rules on the server)",
        pods + 2
    );
    let detail = format!(
        "datastore write -> first packet judged by the new policy, {} flips (add/delete of a Deny in a first tier) at {scale}, one-packet UDP flows every {} us ({sent} sent), {failed} flips timed out; lab up {up_s:.0} s",
        lat.len(),
        P5_INTERVAL.as_micros()
    );
    let suffix = size.suffix(mode);
    let (l50, l99) = (quantile(&lat, 0.5), quantile(&lat, 0.99));
    report.push(Metric::new(
        &format!("p5_update_latency_p50_ms{suffix}"),
        l50,
        "ms",
        detail.clone(),
    ));
    let p99 = Metric::new(
        &format!("p5_update_latency_p99_ms{suffix}"),
        l99,
        "ms",
        detail,
    );
    report.push(if size.is_main(mode) {
        p99.goal(Goal::AtMost(50.0))
    } else {
        p99
    });
    if size.is_main(mode) {
        memory(mode, &lab, &ds, &docs, &scale, rss_loaded, report)?;
    }
    Ok((l50, l99))
}

/// `p6_agent_rss_mb` (after the flips), the RSS after [`MEMORY_CHANGES`] more changes
/// and its growth, and the BPF map memory.
fn memory(
    mode: Mode,
    lab: &LabGuard,
    ds: &FileDatastore,
    docs: &[Value],
    scale: &str,
    rss_loaded: Option<f64>,
    report: &mut Report,
) -> BenchResult<()> {
    let pid = lab.agent_pid()?;
    let rss = rss_mb(pid, "VmRSS:");
    let hwm = rss_mb(pid, "VmHWM:");
    let parts_before = rss_parts(pid);
    match rss {
        Some(mb) => report.push(
            Metric::new(
                "p6_agent_rss_mb",
                mb,
                "MiB",
                format!(
                    "agent VmRSS after the flips at {scale} ({parts_before}); {:.1} MiB right after the load; peak VmHWM {:.1} MiB",
                    rss_loaded.unwrap_or(f64::NAN),
                    hwm.unwrap_or(f64::NAN)
                ),
            )
            .goal(Goal::AtMost(150.0)),
        ),
        None => report.push(Metric::missing(
            "p6_agent_rss_mb",
            "MiB",
            "agent process not readable",
        )),
    }
    match map_memory(pid) {
        Ok((bytes, detail)) => report.push(Metric::new(
            "p6_bpf_map_memory_mb",
            bytes as f64 / (1 << 20) as f64,
            "MiB",
            detail,
        )),
        Err(e) => report.push(Metric::missing("p6_bpf_map_memory_mb", "MiB", e)),
    }
    let n = if mode.quick { 100 } else { MEMORY_CHANGES };
    // Growth is measured from after a warm-up: the flow log has closed the intervals
    // of the flips' traffic (a flood of one-packet flows: its last interval briefly
    // takes ~12 MiB at 500 policies), and every kind of change has run a few times.
    std::thread::sleep(FLOW_LOG_SETTLE);
    let started = Instant::now();
    let kinds = many_changes(ds, docs, 0..WARMUP_CHANGES)?;
    let warm = rss_mb(pid, "VmRSS:");
    let parts_warm = rss_parts(pid);
    many_changes(ds, docs, WARMUP_CHANGES..WARMUP_CHANGES + n / 2)?;
    let half = rss_mb(pid, "VmRSS:");
    many_changes(ds, docs, WARMUP_CHANGES + n / 2..WARMUP_CHANGES + n)?;
    let secs = started.elapsed().as_secs_f64();
    let after = rss_mb(pid, "VmRSS:");
    let hwm_after = rss_mb(pid, "VmHWM:");
    let mb = |v: Option<f64>| v.unwrap_or(f64::NAN);
    if let (Some(before), Some(after)) = (warm, after) {
        report.push(
            Metric::new(
                "p6_agent_rss_growth_mb",
                after - before,
                "MiB",
                format!(
                    "agent VmRSS after {n} more changes minus after a warm-up of {WARMUP_CHANGES} ({kinds}; each waited for, {secs:.0} s for all {}): {after:.1} - {before:.1} MiB ({:.1} after {}; {} after; {parts_warm} after the warm-up); {:.1} MiB after the flips, before the flow log's last intervals and the warm-up; peak VmHWM {:.1} MiB",
                    WARMUP_CHANGES + n,
                    mb(half),
                    n / 2,
                    rss_parts(pid),
                    mb(rss),
                    mb(hwm_after)
                ),
            )
            .goal(Goal::AtMost(2.0)),
        );
    }
    Ok(())
}

/// Writes changes `changes` of the mix one at a time, each waited for until the agent
/// observed it: the flip policy added and deleted, synthetic policies edited (a
/// port), background pods relabelled. Returns a description of the mix.
fn many_changes(
    ds: &FileDatastore,
    docs: &[Value],
    changes: std::ops::Range<usize>,
) -> BenchResult<String> {
    let flip = objects(&flip_policy())?;
    let flip_ids: Vec<ObjectId> = flip.iter().map(Object::id).collect();
    let policies: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "NetworkPolicy" && d["apiVersion"] == "networking.k8s.io/v1")
        .collect();
    let pods: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "Pod" && d["metadata"]["namespace"] != scenario::NAMESPACE)
        .collect();
    if policies.is_empty() || pods.is_empty() {
        return Err("no synthetic policies or pods to change".into());
    }
    let mut flipped = false;
    for i in changes {
        let revision = match i % 4 {
            0 => {
                flipped = !flipped;
                if flipped {
                    ds.apply(&flip)
                } else {
                    ds.delete(&flip_ids)
                }
            }
            1 | 2 => {
                let mut doc = policies[(i * 7919) % policies.len()].clone();
                let port = 1_000 + (i % 50_000) as u64;
                doc["spec"]["ingress"][0]["ports"] = json!([{"protocol": "TCP", "port": port}]);
                ds.apply(&objects(&doc)?)
            }
            _ => {
                let mut doc = pods[(i * 104_729) % pods.len()].clone();
                doc["metadata"]["labels"]["version"] = json!(format!("c{}", i % 7));
                ds.apply(&objects(&doc)?)
            }
        }
        .ctx("writing a change")?;
        wait_observed(ds, revision)?;
    }
    if flipped {
        let revision = ds.delete(&flip_ids).ctx("deleting the flip policy")?;
        wait_observed(ds, revision)?;
    }
    Ok("1/4 flip policy added or deleted, 1/2 a Kubernetes policy's port edited, 1/4 a remote pod relabelled".to_owned())
}

/// Waits until the agent has observed `revision` (applied or refused).
fn wait_observed(ds: &FileDatastore, revision: u64) -> BenchResult<()> {
    let deadline = Instant::now() + CHANGE_TIMEOUT;
    loop {
        if let Some(s) = ds.read_status().ctx("agent status")?
            && s.observed_revision >= revision
        {
            return match s.error {
                None => Ok(()),
                Some(e) => Err(format!("the agent refused revision {revision}: {e}")),
            };
        }
        if Instant::now() > deadline {
            return Err(format!("the agent did not observe revision {revision}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sender: one new UDP flow (fresh source/destination port pair) every 0.2 ms, so every
/// packet is judged by the policy in force when it is sent.
fn spawn_sender(
    netns: String,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<BenchResult<u64>> {
    std::thread::spawn(move || -> BenchResult<u64> {
        enter_netns(&netns).ctx("sender setns")?;
        let fd = raw_socket(libc::IPPROTO_RAW).ctx("raw socket")?;
        let mut seq = 0u64;
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let (sport, dport) = flow_ports(seq);
            send_raw(
                &fd,
                dst,
                &datagram(src, dst, sport, dport, seq, monotonic_ns()),
            );
            seq += 1;
            next += P5_INTERVAL;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else if now - next > Duration::from_millis(10) {
                next = now; // fell behind (CPU contention): do not burst
            }
        }
        Ok(seq)
    })
}

fn spawn_receiver(
    netns: String,
    arrivals: Arrivals,
    stop: Arc<AtomicBool>,
    ready: std::sync::mpsc::Sender<BenchResult<()>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let fd = match enter_netns(&netns)
            .ctx("receiver setns")
            .and_then(|()| raw_udp_receiver().ctx("raw socket"))
        {
            Ok(fd) => {
                let _ = ready.send(Ok(()));
                fd
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: valid buffer.
            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                continue;
            }
            if let Some(x) = parse_generated(&buf[..n as usize])
                && let Ok(mut a) = arrivals.lock()
            {
                a.push(x);
            }
        }
    })
}

/// An empty tier ordered first, where [`flip_policy`] goes (without it the policy is
/// refused: its tier does not exist).
pub(super) fn flip_tier() -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3", "kind": "Tier",
        "metadata": {"name": "benchflip"}, "spec": {"order": 1},
    })
}

/// The policy `p5` adds and deletes (also `p6_compile_incremental_ms`'s change).
pub(super) fn flip_policy() -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "benchflip.deny-client"},
        "spec": {
            "tier": "benchflip",
            "selector": "app == 'bench-server'",
            "types": ["Ingress"],
            "ingress": [{"action": "Deny", "source": {"selector": "app == 'bench-client'"}}],
        },
    })
}

fn objects(doc: &Value) -> BenchResult<Vec<Object>> {
    Ok(scenario::load(std::slice::from_ref(doc))?
        .into_iter()
        .map(|l| l.object)
        .collect())
}

/// Alternates deny (add the flip policy) and allow (delete it), `changes` times.
fn measure_flips(
    ds: &FileDatastore,
    flip: &[Object],
    flip_ids: &[ObjectId],
    arrivals: &Arrivals,
    changes: usize,
) -> BenchResult<(Vec<f64>, usize)> {
    let arrivals_len = || arrivals.lock().map_or(0, |a| a.len());
    // Traffic must flow before the first change.
    let deadline = Instant::now() + Duration::from_secs(30);
    while arrivals_len() < 100 {
        if Instant::now() > deadline {
            return Err("no generator packet reached the server before the first change".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut lat = Vec::new();
    let mut failed = 0;
    let trace = std::env::var_os("ENFORCER_BENCH_LOGS").is_some();
    for i in 0..changes {
        let deny = i % 2 == 0;
        let mark = arrivals_len();
        let t0 = monotonic_ns();
        let t0_wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        if deny {
            ds.apply(flip).ctx("writing the flip policy")?;
        } else {
            ds.delete(flip_ids).ctx("deleting the flip policy")?;
        }
        let deadline = Instant::now() + CHANGE_TIMEOUT;
        let measured = loop {
            std::thread::sleep(Duration::from_millis(5));
            let a = arrivals
                .lock()
                .map_err(|_| "arrivals poisoned".to_owned())?;
            if deny {
                // In force once the receiver has been silent for SILENCE; the first
                // packet judged by the deny is the one sent after the last arrival.
                let last_sent = a.last().map_or(0, |x| x.1);
                if monotonic_ns().saturating_sub(last_sent) > SILENCE.as_nanos() as u64 {
                    let first_denied = a.last().map_or(t0, |x| x.1 + P5_INTERVAL.as_nanos() as u64);
                    break Some(first_denied.saturating_sub(t0));
                }
            } else if let Some((_, sent)) = a[mark.min(a.len())..].iter().find(|x| x.1 >= t0) {
                break Some(sent - t0);
            }
            if Instant::now() > deadline {
                break None;
            }
        };
        match measured {
            Some(ns) => lat.push(ns as f64 / 1e6),
            None => failed += 1,
        }
        if trace {
            // Beside the agent's log (ENFORCER_BENCH_LOGS): its lines carry wall time.
            eprintln!(
                "bench: p5 flip {i} {} written at {} (unix s) took {:?} ms",
                if deny { "deny" } else { "allow" },
                t0_wall.as_secs_f64(),
                measured.map(|ns| ns as f64 / 1e6)
            );
        }
        // Let the generator settle in the new state.
        std::thread::sleep(Duration::from_millis(30));
    }
    if !lat.is_empty() && failed <= changes / 10 {
        Ok((lat, failed))
    } else {
        Err(format!(
            "{failed} of {changes} policy changes never took effect"
        ))
    }
}
