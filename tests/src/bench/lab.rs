//! The lab benchmarks: `p3` packets/s, `p5` update latency, and the agent's RSS and BPF
//! map memory for `p6`, in `enforcer lab`s built from the [`scenario`] documents
//! (client and server on `node1`, background pods on `node2`: remote, no netns).
//!
//! `p3` runs two labs side by side on the same documents: lab "e" with the agent
//! (programs on the pods' veths) and lab "n" without (`--no-agent`), which serves the
//! no-policy, iptables and nftables modes (rules loaded into, and flushed from, its
//! node netns between floods). Floods alternate between the four modes, round after
//! round; the figures are medians per mode.
//!
//! `p5` runs a third lab at scale with the agent and a paced generator of one-packet
//! UDP flows (see [`p5`]).

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use enforcer::datastore::file::FileDatastore;
use enforcer::lab::{Lab, LabName, PodInfo, UpOptions};
use enforcer::model::{Object, ObjectId};
use serde_json::{Value, json};

use super::{
    BenchResult, Context as _, Goal, Metric, Mode, Report, median, quantile, rulesets, scenario,
};
use crate::bpf::dataplane::monotonic_ns;
use crate::traffic::{enter_netns, udp_flood};

const FLOOD_PORT: u16 = 7001;

/// A lab torn down on drop (also when a benchmark fails half-way).
struct LabGuard {
    name: LabName,
    lab: Option<Lab>,
    dir: PathBuf,
}

impl LabGuard {
    fn up(name: &str, docs: &[Value], agent: bool) -> BenchResult<Self> {
        let name = LabName::new(name).ctx("lab name")?;
        // A leftover of an interrupted run goes first.
        let _ = Lab::down(&name);
        let dir = std::env::temp_dir().join(format!(
            "enforcer-bench-{}-{}",
            name.as_str(),
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).ctx("temp dir")?;
        // The YAML reader caps documents per stream: several files.
        let mut files = Vec::new();
        for (i, chunk) in docs.chunks(1_000).enumerate() {
            let file = dir.join(format!("cluster-{i:03}.yaml"));
            std::fs::write(&file, enforcer::testkit::synth::to_yaml_stream(chunk))
                .ctx("writing the documents")?;
            files.push(file);
        }
        let mut guard = Self {
            name: name.clone(),
            lab: None,
            dir,
        };
        let opts = UpOptions {
            name,
            agent,
            nodes: 1,
            encap: enforcer::lab::Encap::None,
            binary: enforcer_binary()?,
            agent_binary: None,
            // The agent's production default (the lab's own is `all`): benchmarks
            // measure what a node runs.
            agent_args: vec!["--flow-log=denied".to_owned()],
        };
        guard.lab = Some(Lab::up(&opts, &files).ctx("lab up")?);
        Ok(guard)
    }

    fn lab(&self) -> BenchResult<&Lab> {
        self.lab.as_ref().ok_or_else(|| "lab is gone".to_owned())
    }

    fn pod(&self, name: &str) -> BenchResult<PodInfo> {
        self.lab()?
            .get_pods()
            .ctx("get pods")?
            .into_iter()
            .find(|p| p.namespace == scenario::NAMESPACE && p.name == name)
            .ok_or_else(|| format!("pod {name} missing from lab {}", self.name))
    }

    fn node_netns(&self) -> String {
        self.name.node_netns()
    }

    /// The agent's pid, from the lab state.
    fn agent_pid(&self) -> BenchResult<i32> {
        let state = enforcer::lab::state::LabState::load(&self.name.paths().state_file())
            .ctx("lab state")?
            .ok_or("no lab state")?;
        Ok(state
            .agents
            .get(enforcer::cluster::nodes::DEFAULT_NODE)
            .ok_or("the lab has no agent")?
            .pid)
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        drop(self.lab.take());
        let report = Lab::down(&self.name);
        for p in report.problems {
            eprintln!("bench: lab {} cleanup: {p}", self.name);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `enforcer` next to this binary (`cargo xtask bench` builds both in release).
pub(super) fn enforcer_binary() -> BenchResult<PathBuf> {
    if let Some(bin) = std::env::var_os("ENFORCER_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe().ctx("current_exe")?;
    let bin = exe.with_file_name("enforcer");
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!(
            "{} missing: cargo build --release --bin enforcer",
            bin.display()
        ))
    }
}

/// Runs `program args` in netns `netns` with `stdin`, failing on a non-zero exit.
fn in_netns(netns: &str, program: &str, args: &[&str], stdin: Option<&str>) -> BenchResult<()> {
    use std::io::Write as _;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, program]).args(args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().ctx(program)?;
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.unwrap_or("").as_bytes())
            .ctx("writing stdin")?;
    }
    let out = child.wait_with_output().ctx(program)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip netns exec {netns} {program} {}: {}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        ))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dataplane {
    Enforcer,
    NoPolicy,
    Iptables,
    Nftables,
}

pub fn run(mode: Mode, report: &mut Report) -> BenchResult<()> {
    p3(mode, report)?;
    p5(mode, report)
}

fn p3(mode: Mode, report: &mut Report) -> BenchResult<()> {
    let rules = mode.rules();
    let docs = scenario::rule_set(rules, mode.pods());
    let cluster = scenario::cluster(&docs)?;
    let enforced = LabGuard::up(&format!("benche{}", std::process::id() % 1000), &docs, true)?;
    let plain = LabGuard::up(
        &format!("benchn{}", std::process::id() % 1000),
        &docs,
        false,
    )?;

    // The rulesets, for the local endpoints of the plain lab (same policy set).
    let ifaces: Vec<(String, String)> = [scenario::CLIENT, scenario::SERVER]
        .iter()
        .map(|p| plain.pod(p).map(|i| (i.name.clone(), i.interface)))
        .collect::<BenchResult<_>>()?;
    // The lab gives local pods its own addresses: translate with those.
    let mut lab_cluster = cluster.clone();
    for ep in &mut lab_cluster.endpoints {
        if ep.namespace == scenario::NAMESPACE {
            let info = plain.pod(&ep.name)?;
            ep.ips = info
                .ips
                .iter()
                .filter_map(|s| s.parse::<IpAddr>().ok())
                .collect();
        }
    }
    lab_cluster.reindex();
    let rendered = rulesets::render(&lab_cluster, |ep| {
        (ep.namespace == scenario::NAMESPACE)
            .then(|| {
                ifaces
                    .iter()
                    .find(|(n, _)| *n == ep.name)
                    .map(|(_, i)| i.clone())
            })
            .flatten()
    })?;
    let node = plain.node_netns();
    in_netns(&node, "ipset", &["restore"], Some(&rendered.ipset))?;

    let duration = Duration::from_millis(if mode.quick { 1_000 } else { 3_000 });
    let rounds = if mode.quick { 2 } else { 5 };
    let modes = [
        Dataplane::Enforcer,
        Dataplane::NoPolicy,
        Dataplane::Iptables,
        Dataplane::Nftables,
    ];
    let mut pps: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut sent: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for _ in 0..rounds {
        for (m, dp) in modes.iter().enumerate() {
            let lab = if *dp == Dataplane::Enforcer {
                &enforced
            } else {
                &plain
            };
            match dp {
                Dataplane::Iptables => in_netns(
                    &node,
                    "iptables-restore",
                    &["--noflush"],
                    Some(&rendered.iptables),
                )?,
                Dataplane::Nftables => in_netns(&node, "nft", &["-f", "-"], Some(&rendered.nft))?,
                _ => {}
            }
            let client = lab.pod(scenario::CLIENT)?;
            let server = lab.pod(scenario::SERVER)?;
            let to_ip: IpAddr = server.ip.parse().ctx("server address")?;
            let result = udp_flood(
                &client.netns,
                &server.netns,
                SocketAddr::new(to_ip, FLOOD_PORT),
                64,
                duration,
            );
            match dp {
                Dataplane::Iptables => {
                    in_netns(&node, "iptables", &["-F", "FORWARD"], None)?;
                    in_netns(
                        &node,
                        "iptables-restore",
                        &[],
                        Some("*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n"),
                    )?;
                }
                Dataplane::Nftables => {
                    in_netns(&node, "nft", &["delete", "table", "ip", "enf_bench"], None)?;
                }
                _ => {}
            }
            let r = result.ctx("udp flood")?;
            pps[m].push(r.received_pps());
            sent[m].push(r.sent as f64 / duration.as_secs_f64());
        }
    }
    let med: Vec<f64> = pps.iter().map(|v| median(v)).collect();
    let sent_med: Vec<f64> = sent.iter().map(|v| median(v)).collect();
    let detail = |other: &str, m: usize| {
        format!(
            "UDP 64 B, one flow client->server, {rules} rules on the server: enforcer {:.0} pps / {other} {:.0} pps (sent {:.0} / {:.0} pps); {rounds} alternating rounds of {} s, medians",
            med[0],
            med[m],
            sent_med[0],
            sent_med[m],
            duration.as_secs()
        )
    };
    report.push(
        Metric::new(
            "p3_pps_vs_none",
            med[0] / med[1],
            "ratio",
            detail("no policy", 1),
        )
        .goal(Goal::AtLeast(0.85)),
    );
    report.push(
        Metric::new(
            "p3_pps_vs_iptables",
            med[0] / med[2],
            "ratio",
            format!(
                "{}; iptables-nft: {} rules, {} ipsets",
                detail("iptables", 2),
                rendered.iptables_rules,
                rendered.sets
            ),
        )
        .goal(Goal::AtLeast(5.0)),
    );
    report.push(
        Metric::new(
            "p3_pps_vs_nftables",
            med[0] / med[3],
            "ratio",
            format!(
                "{}; nft: {} rules, {} named sets",
                detail("nftables", 3),
                rendered.rules,
                rendered.sets
            ),
        )
        .goal(Goal::AtLeast(1.0)),
    );
    report.push(Metric::new(
        "p3_pps_enforcer",
        med[0],
        "pps",
        "receiver-side, median",
    ));
    report.push(Metric::new(
        "p3_pps_none",
        med[1],
        "pps",
        "receiver-side, median",
    ));
    report.push(Metric::new(
        "p3_pps_iptables",
        med[2],
        "pps",
        "receiver-side, median",
    ));
    report.push(Metric::new(
        "p3_pps_nftables",
        med[3],
        "pps",
        "receiver-side, median",
    ));
    Ok(())
}

// ---------------------------------------------------------------------------------
// p5: update latency.
// ---------------------------------------------------------------------------------

const MAGIC: u32 = 0x656e_6662; // "enfb"
const P5_INTERVAL: Duration = Duration::from_micros(200);
/// How long the receiver must stay silent before a deny counts as in force.
const SILENCE: Duration = Duration::from_millis(150);
const CHANGE_TIMEOUT: Duration = Duration::from_secs(20);

fn raw_socket(proto: i32) -> BenchResult<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, proto) };
    if fd < 0 {
        return Err(format!("raw socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 + UDP datagram (UDP checksum 0: none) carrying (magic, seq, send time).
fn datagram(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, seq: u64, sent_ns: u64) -> Vec<u8> {
    let mut payload = MAGIC.to_be_bytes().to_vec();
    payload.extend_from_slice(&seq.to_be_bytes());
    payload.extend_from_slice(&sent_ns.to_be_bytes());
    let total = 20 + 8 + payload.len();
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    let c = checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&payload);
    p
}

/// Arrivals: (seq, send time) of every generator packet the server received.
type Arrivals = Arc<Mutex<Vec<(u64, u64)>>>;

fn v4(s: &str) -> BenchResult<[u8; 4]> {
    s.parse::<std::net::Ipv4Addr>()
        .map(|a| a.octets())
        .ctx("address")
}

/// Sender: one new UDP flow (fresh source/destination port pair) every 0.2 ms, so every
/// packet is judged by the policy in force when it is sent (established flows keep
/// their conntrack approval across policy changes, as in Calico).
fn spawn_sender(
    netns: String,
    src: [u8; 4],
    dst: [u8; 4],
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<BenchResult<u64>> {
    std::thread::spawn(move || -> BenchResult<u64> {
        enter_netns(&netns).ctx("sender setns")?;
        let fd = raw_socket(libc::IPPROTO_RAW)?;
        let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        addr.sin_family = libc::AF_INET as u16;
        addr.sin_addr.s_addr = u32::from_ne_bytes(dst);
        let mut seq = 0u64;
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let sport = 1024 + (seq % 64_000) as u16;
            let dport = 10_000 + ((seq / 64_000) % 1000) as u16;
            let pkt = datagram(src, dst, sport, dport, seq, monotonic_ns());
            // SAFETY: valid buffer and address for the duration of the call.
            let _ = unsafe {
                libc::sendto(
                    fd.as_raw_fd(),
                    pkt.as_ptr().cast(),
                    pkt.len(),
                    0,
                    std::ptr::from_ref(&addr).cast(),
                    size_of::<libc::sockaddr_in>() as u32,
                )
            };
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
        let setup = (|| -> BenchResult<OwnedFd> {
            enter_netns(&netns).ctx("receiver setns")?;
            let fd = raw_socket(libc::IPPROTO_UDP)?;
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 20_000,
            };
            // SAFETY: valid option pointer and length.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    std::ptr::from_ref(&tv).cast(),
                    size_of::<libc::timeval>() as u32,
                );
            }
            Ok(fd)
        })();
        let fd = match setup {
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
            if n < 48 {
                continue;
            }
            let ihl = usize::from(buf[0] & 0x0f) * 4;
            let p = &buf[ihl + 8..n as usize];
            if p.len() < 20 || u32::from_be_bytes([p[0], p[1], p[2], p[3]]) != MAGIC {
                continue;
            }
            let seq = u64::from_be_bytes(p[4..12].try_into().unwrap_or_default());
            let sent = u64::from_be_bytes(p[12..20].try_into().unwrap_or_default());
            if let Ok(mut a) = arrivals.lock() {
                a.push((seq, sent));
            }
        }
    })
}

fn flip_policy() -> Value {
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

/// The scale of `p5` and of the lab part of `p6`: (rules on the server, policies,
/// pods) — the 10,000 policies / 5,000 pods in full mode.
pub fn p5_sizes(mode: Mode) -> (usize, usize, usize) {
    if mode.quick {
        (500, 500, 250)
    } else {
        (10_000, 10_000, 5_000)
    }
}

fn p5(mode: Mode, report: &mut Report) -> BenchResult<()> {
    let (rules, policies, pods) = p5_sizes(mode);
    let mut docs = scenario::scale(rules, policies, pods);
    // An empty tier ordered first: the flip policy goes there.
    docs.push(json!({
        "apiVersion": "projectcalico.org/v3", "kind": "Tier",
        "metadata": {"name": "benchflip"}, "spec": {"order": 1},
    }));
    let started = Instant::now();
    let lab = LabGuard::up(&format!("benchu{}", std::process::id() % 1000), &docs, true)?;
    let up_s = started.elapsed().as_secs_f64();
    let client = lab.pod(scenario::CLIENT)?;
    let server = lab.pod(scenario::SERVER)?;
    let ds = FileDatastore::open(lab.name.paths().datastore()).ctx("datastore")?;
    let flip = objects(&flip_policy())?;
    let flip_ids: Vec<ObjectId> = flip.iter().map(Object::id).collect();

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
        v4(&client.ip)?,
        v4(&server.ip)?,
        Arc::clone(&stop),
    );

    let changes = if mode.quick { 6 } else { 50 };
    let agent_pid = lab.agent_pid()?;
    let result = measure_flips(&ds, &flip, &flip_ids, &arrivals, changes);
    let rss = proc_status_kb(agent_pid, "VmRSS:");
    let hwm = proc_status_kb(agent_pid, "VmHWM:");
    let maps = map_memory(agent_pid);
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().map_err(|_| "sender panicked".to_owned())??;
    let _ = receiver.join();
    let (lat, failed) = result?;
    let scale = format!(
        "{} policies / {} pods (+{rules} rules on the server)",
        policies,
        pods + 2
    );
    let detail = format!(
        "datastore write -> first packet judged by the new policy, {} flips (add/delete of a Deny in a first tier) at {scale}, one-packet UDP flows every {} us ({sent} sent), {failed} flips timed out; lab up {up_s:.0} s",
        lat.len(),
        P5_INTERVAL.as_micros()
    );
    report.push(Metric::new(
        "p5_update_latency_p50_ms",
        quantile(&lat, 0.5),
        "ms",
        detail.clone(),
    ));
    report.push(
        Metric::new(
            "p5_update_latency_p99_ms",
            quantile(&lat, 0.99),
            "ms",
            detail,
        )
        .goal(Goal::AtMost(50.0)),
    );
    match rss {
        Some(kb) => report.push(
            Metric::new(
                "p6_agent_rss_mb",
                kb as f64 / 1024.0,
                "MiB",
                format!(
                    "agent VmRSS after the flips at {scale}; peak VmHWM {:.0} MiB",
                    hwm.unwrap_or(0) as f64 / 1024.0
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
    match maps {
        Ok((bytes, detail)) => report.push(Metric::new(
            "p6_bpf_map_memory_mb",
            bytes as f64 / (1 << 20) as f64,
            "MiB",
            detail,
        )),
        Err(e) => report.push(Metric::missing("p6_bpf_map_memory_mb", "MiB", e)),
    }
    Ok(())
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
    for i in 0..changes {
        let deny = i % 2 == 0;
        let mark = arrivals_len();
        let t0 = monotonic_ns();
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

fn proc_status_kb(pid: i32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Sum of `memlock` over the BPF maps the agent holds open (its fds), with the largest.
fn map_memory(pid: i32) -> Result<(u64, String), String> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut total = 0u64;
    let mut maps: Vec<(u64, u32)> = Vec::new();
    for entry in std::fs::read_dir(&dir)
        .map_err(|e| format!("{dir}: {e}"))?
        .flatten()
    {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let field = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        };
        if let (Some(mem), Some(id)) = (field("memlock:"), field("map_id:")) {
            if maps.iter().any(|(_, i)| u64::from(*i) == id) {
                continue;
            }
            total += mem;
            maps.push((mem, id as u32));
        }
    }
    maps.sort_unstable_by(|a, b| b.cmp(a));
    let names = map_names();
    let top: Vec<String> = maps
        .iter()
        .take(4)
        .map(|(mem, id)| {
            format!(
                "{} {:.1} MiB",
                names
                    .iter()
                    .find(|(i, _)| i == id)
                    .map_or("?", |(_, n)| n.as_str()),
                *mem as f64 / (1 << 20) as f64
            )
        })
        .collect();
    Ok((
        total,
        format!(
            "memlock of the agent's {} maps (kernel accounting); largest: {}",
            maps.len(),
            top.join(", ")
        ),
    ))
}

/// (id, name) of every BPF map, from `bpftool map show -j` (empty if unavailable).
fn map_names() -> Vec<(u32, String)> {
    let Ok(out) = Command::new("bpftool").args(["map", "show", "-j"]).output() else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) else {
        return Vec::new();
    };
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| Some((m["id"].as_u64()? as u32, m["name"].as_str()?.to_owned())))
        .collect()
}
