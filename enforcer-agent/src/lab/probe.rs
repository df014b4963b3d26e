//! The connectivity matrix: from pods to pods or Services, in parallel, each probe
//! bounded by a timeout.
//!
//! A probe runs on a worker thread that has moved itself (`setns`) into the source
//! pod's netns, so it leaves from the pod's `eth0` like the pod's own traffic. TCP:
//! connected = the handshake completes. UDP: connected = the datagram (a DNS query,
//! which the DNS pod answers too) gets a reply.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::model::Service;

use super::state::PodRecord;

/// Probe workers at most (probes mostly wait).
const MAX_WORKERS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("bad {flag} {value:?}: expected {expected}")]
    BadSelector {
        flag: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{flag} {value:?} matches no {what}")]
    NoMatch {
        flag: &'static str,
        value: String,
        what: &'static str,
    },
    #[error("Service {0} has no IPv4 ClusterIP (headless?); Services are IPv4 only")]
    NoClusterIp(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
}

impl Protocol {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
        }
    }
}

/// What to probe. Empty `from`/`to` mean every pod.
#[derive(Clone, Debug, Default)]
pub struct ProbeRequest {
    /// `NS/POD`, `NS/*` or `*`.
    pub from: Vec<String>,
    /// `NS/POD`, `NS/*`, `*`, `svc/NS/NAME` or `svc/NS/*`.
    pub to: Vec<String>,
    pub port: Option<u16>,
    pub protocol: Option<Protocol>,
    /// Probe pods' IPv6 addresses instead of IPv4.
    pub ipv6: bool,
    pub timeout: Duration,
}

/// One probe to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeJob {
    pub from: String,
    pub netns: String,
    pub to: String,
    pub addr: SocketAddr,
    pub protocol: Protocol,
}

/// One line of `lab probe -o json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub from: String,
    pub to: String,
    pub port: u16,
    pub protocol: Protocol,
    pub connected: bool,
    /// `connected`, `refused`, `timeout`, `unreachable` or `error: ...`.
    pub result: String,
}

fn select_pods<'a>(
    pods: &'a BTreeMap<String, PodRecord>,
    flag: &'static str,
    value: &str,
) -> Result<Vec<&'a PodRecord>, ProbeError> {
    let matches: Vec<&PodRecord> = if value == "*" || value == "*/*" {
        pods.values().collect()
    } else {
        let Some((ns, name)) = value.split_once('/') else {
            return Err(ProbeError::BadSelector {
                flag,
                value: value.to_owned(),
                expected: "NS/POD, NS/* or *",
            });
        };
        pods.values()
            .filter(|p| p.namespace == ns && (name == "*" || p.name == name))
            .collect()
    };
    if matches.is_empty() {
        return Err(ProbeError::NoMatch {
            flag,
            value: value.to_owned(),
            what: "pod",
        });
    }
    Ok(matches)
}

/// Ports of a target: the declared ones (with their protocols) unless overridden.
fn ports_of(declared: &[(u16, Protocol)], req: &ProbeRequest) -> Vec<(u16, Protocol)> {
    let set: BTreeSet<(u16, Protocol)> = match req.port {
        Some(port) => {
            let protocols: Vec<Protocol> = if let Some(p) = req.protocol {
                vec![p]
            } else {
                let declared: Vec<Protocol> = declared
                    .iter()
                    .filter(|(p, _)| *p == port)
                    .map(|(_, pr)| *pr)
                    .collect();
                if declared.is_empty() {
                    vec![Protocol::Tcp]
                } else {
                    declared
                }
            };
            protocols.into_iter().map(|p| (port, p)).collect()
        }
        None => declared
            .iter()
            .map(|(port, p)| (*port, req.protocol.unwrap_or(*p)))
            .collect(),
    };
    set.into_iter().collect()
}

fn pod_ports(pod: &crate::model::Pod) -> Vec<(u16, Protocol)> {
    pod.spec
        .containers
        .iter()
        .flat_map(|c| &c.ports)
        .filter_map(|p| Protocol::parse(p.protocol()).map(|pr| (p.container_port, pr)))
        .collect()
}

/// A probe target: label, address, declared ports, pod key if it is a pod.
type Target = (String, IpAddr, Vec<(u16, Protocol)>, Option<String>);

/// The probes a request stands for. `objects` gives each pod's declared ports.
pub fn plan(
    pods: &BTreeMap<String, PodRecord>,
    pod_objects: &BTreeMap<String, crate::model::Pod>,
    services: &[Service],
    req: &ProbeRequest,
) -> Result<Vec<ProbeJob>, ProbeError> {
    let all = ["*".to_owned()];
    let from_sel = if req.from.is_empty() {
        &all[..]
    } else {
        &req.from[..]
    };
    let to_sel = if req.to.is_empty() {
        &all[..]
    } else {
        &req.to[..]
    };
    let mut sources: Vec<&PodRecord> = Vec::new();
    for value in from_sel {
        for p in select_pods(pods, "--from", value)? {
            if !sources.iter().any(|s| s.key() == p.key()) {
                sources.push(p);
            }
        }
    }
    let mut targets: Vec<Target> = Vec::new();
    for value in to_sel {
        if let Some(rest) = value.strip_prefix("svc/") {
            let Some((ns, name)) = rest.split_once('/') else {
                return Err(ProbeError::BadSelector {
                    flag: "--to",
                    value: value.clone(),
                    expected: "svc/NS/NAME or svc/NS/*",
                });
            };
            let matched: Vec<&Service> = services
                .iter()
                .filter(|s| {
                    s.metadata.namespace.as_deref() == Some(ns)
                        && (name == "*" || s.metadata.name == name)
                })
                .collect();
            if matched.is_empty() {
                return Err(ProbeError::NoMatch {
                    flag: "--to",
                    value: value.clone(),
                    what: "Service",
                });
            }
            for svc in matched {
                let label = format!("svc/{ns}/{}", svc.metadata.name);
                let Some(ip) = svc
                    .spec
                    .cluster_ip
                    .as_deref()
                    .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
                else {
                    return Err(ProbeError::NoClusterIp(label));
                };
                let declared = svc
                    .spec
                    .ports
                    .iter()
                    .filter_map(|p| Protocol::parse(p.protocol()).map(|pr| (p.port, pr)))
                    .collect();
                targets.push((label, IpAddr::V4(ip), declared, None));
            }
        } else {
            for p in select_pods(pods, "--to", value)? {
                let addr = if req.ipv6 {
                    IpAddr::V6(p.ipv6)
                } else {
                    IpAddr::V4(p.ipv4)
                };
                let declared = pod_objects.get(&p.key()).map(pod_ports).unwrap_or_default();
                targets.push((p.key(), addr, declared, Some(p.key())));
            }
        }
    }
    let mut jobs = Vec::new();
    for src in &sources {
        for (label, addr, declared, pod) in &targets {
            if pod.as_deref() == Some(src.key().as_str()) {
                continue; // a pod reaching itself never leaves its netns
            }
            for (port, protocol) in ports_of(declared, req) {
                jobs.push(ProbeJob {
                    from: src.key(),
                    netns: src.netns.clone(),
                    to: label.clone(),
                    addr: SocketAddr::new(*addr, port),
                    protocol,
                });
            }
        }
    }
    Ok(jobs)
}

fn classify(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset => "refused".to_owned(),
        ErrorKind::TimedOut | ErrorKind::WouldBlock => "timeout".to_owned(),
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => "unreachable".to_owned(),
        _ => format!("error: {e}"),
    }
}

fn probe_tcp(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    TcpStream::connect_timeout(&addr, timeout)
        .map(drop)
        .map_err(|e| classify(&e))
}

/// Source ports of UDP probes rotate through this range (see [`UdpPorts`]).
const UDP_SOURCE_PORTS: std::ops::Range<u16> = 20_000..60_000;

/// Hands out UDP source ports in rotation, continuing from where the previous probe
/// command stopped (a cursor file in the lab's run directory).
///
/// A UDP probe stands for a *new* flow. With kernel-chosen ephemeral ports a probe can
/// repeat the 5-tuple of one a minute earlier that conntrack still holds as
/// established, and pass where policy now denies. Rotating through 40,000 ports, a
/// tuple comes back only after 40,000 UDP probes, far more than a minute's worth.
pub struct UdpPorts {
    next: std::sync::atomic::AtomicU32,
}

impl UdpPorts {
    /// Reads the cursor from `cursor` and reserves `count` ports past it.
    pub fn reserve(cursor: &std::path::Path, count: usize) -> Self {
        let span = u32::from(UDP_SOURCE_PORTS.end - UDP_SOURCE_PORTS.start);
        let start = std::fs::read_to_string(cursor)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(0)
            % span;
        let count = u32::try_from(count).unwrap_or(u32::MAX) % span;
        let _ = std::fs::write(cursor, ((start + count) % span).to_string());
        Self {
            next: std::sync::atomic::AtomicU32::new(start),
        }
    }

    fn take(&self) -> u16 {
        let span = u32::from(UDP_SOURCE_PORTS.end - UDP_SOURCE_PORTS.start);
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % span;
        UDP_SOURCE_PORTS.start + n as u16
    }
}

fn probe_udp(addr: SocketAddr, timeout: Duration, id: u16, sport: u16) -> Result<(), String> {
    let local = match addr {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, sport)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, sport)),
    };
    // A port of the rotation that a pod process holds: let the kernel choose.
    let socket = UdpSocket::bind(local)
        .or_else(|_| UdpSocket::bind(SocketAddr::new(local.ip(), 0)))
        .map_err(|e| format!("error: {e}"))?;
    socket.connect(addr).map_err(|e| classify(&e))?;
    let payload = super::dns::query(id, "kube-dns.kube-system.svc.cluster.local", 1);
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timeout".to_owned());
        }
        socket.send(&payload).map_err(|e| classify(&e))?;
        // Resend every 250 ms: one lost datagram should not fail the probe.
        let wait = left.min(Duration::from_millis(250));
        socket
            .set_read_timeout(Some(wait))
            .map_err(|e| format!("error: {e}"))?;
        match socket.recv(&mut buf) {
            Ok(_) => return Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(classify(&e)),
        }
    }
}

/// Runs the probes in parallel; results come back in job order.
pub fn run(jobs: &[ProbeJob], timeout: Duration, ports: &UdpPorts) -> Vec<ProbeResult> {
    let queue: Mutex<VecDeque<usize>> = Mutex::new((0..jobs.len()).collect());
    let results: Mutex<Vec<Option<ProbeResult>>> = Mutex::new(vec![None; jobs.len()]);
    let workers = jobs.len().clamp(1, MAX_WORKERS);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut current: Option<String> = None;
                loop {
                    let Some(i) = queue.lock().ok().and_then(|mut q| q.pop_front()) else {
                        return;
                    };
                    let job = &jobs[i];
                    let mut outcome = Ok(());
                    if current.as_deref() != Some(job.netns.as_str()) {
                        match super::netns::enter(&job.netns) {
                            Ok(()) => current = Some(job.netns.clone()),
                            Err(e) => {
                                current = None;
                                outcome = Err(format!("error: {e}"));
                            }
                        }
                    }
                    if outcome.is_ok() {
                        outcome = match job.protocol {
                            Protocol::Tcp => probe_tcp(job.addr, timeout),
                            Protocol::Udp => probe_udp(job.addr, timeout, i as u16, ports.take()),
                        };
                    }
                    let result = ProbeResult {
                        from: job.from.clone(),
                        to: job.to.clone(),
                        port: job.addr.port(),
                        protocol: job.protocol,
                        connected: outcome.is_ok(),
                        result: outcome.err().unwrap_or_else(|| "connected".to_owned()),
                    };
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(result);
                    }
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

/// Rows: sources; columns: `target:port/protocol`; `ok` or `--`.
pub fn render_table(results: &[ProbeResult]) -> String {
    let mut rows: Vec<&str> = Vec::new();
    let mut keys: BTreeSet<(&str, u16, Protocol)> = BTreeSet::new();
    let mut cells: BTreeMap<(&str, String), bool> = BTreeMap::new();
    let col = |r: &ProbeResult| format!("{}:{}/{}", r.to, r.port, r.protocol.as_str());
    for r in results {
        if !rows.contains(&r.from.as_str()) {
            rows.push(&r.from);
        }
        keys.insert((&r.to, r.port, r.protocol));
        cells.insert((&r.from, col(r)), r.connected);
    }
    let cols: Vec<String> = keys
        .into_iter()
        .map(|(to, port, p)| format!("{to}:{port}/{}", p.as_str()))
        .collect();
    let first = rows
        .iter()
        .map(|r| r.len())
        .max()
        .unwrap_or(0)
        .max("FROM \\ TO".len());
    let mut out = format!("{:first$}", "FROM \\ TO");
    for c in &cols {
        out.push_str("  ");
        out.push_str(c);
    }
    out.push('\n');
    for row in &rows {
        let _ = write!(out, "{row:first$}");
        for c in &cols {
            let cell = match cells.get(&(*row, c.clone())) {
                Some(true) => "ok",
                Some(false) => "--",
                None => "",
            };
            let _ = write!(out, "  {cell:<w$}", w = c.len());
        }
        out.push('\n');
    }
    let connected = results.iter().filter(|r| r.connected).count();
    let _ = writeln!(out, "{connected}/{} connected", results.len());
    out
}
