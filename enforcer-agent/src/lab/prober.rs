//! Running probes: each on a worker thread that has moved itself (`setns`) into the
//! source's netns, so it leaves from the pod's `eth0` like the pod's own traffic, in
//! parallel, each bounded by a timeout. TCP: connected = the handshake completes.
//! UDP: connected = the datagram (a DNS query, which the DNS pod answers too) gets a
//! reply.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::connectivity::{ProbeResult, Protocol};

/// Probe workers at most (probes mostly wait).
const MAX_WORKERS: usize = 64;
/// The name UDP probes ask for.
const PROBE_QUERY_NAME: &str = "kube-dns.kube-system.svc.cluster.local";

/// One probe to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeJob {
    pub from: String,
    pub netns: String,
    pub to: String,
    pub addr: SocketAddr,
    pub protocol: Protocol,
}

fn classify(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset => "refused".to_owned(),
        ErrorKind::TimedOut | ErrorKind::WouldBlock => "timeout".to_owned(),
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => "unreachable".to_owned(),
        _ => format!("error: {e}"),
    }
}

fn probe_tcp(addr: SocketAddr, timeout: Duration, sport: Option<u16>) -> Result<(), String> {
    let Some(sport) = sport else {
        return TcpStream::connect_timeout(&addr, timeout)
            .map(drop)
            .map_err(|e| classify(&e));
    };
    let socket = bound_socket(addr, socket2::Type::STREAM, sport)?;
    socket
        .connect_timeout(&addr.into(), timeout)
        .map_err(|e| classify(&e))
}

/// A socket bound to `sport` on the wildcard address of `addr`'s family. Address and
/// port reuse let parallel probes from one netns share the port (their destinations
/// differ), and a pod's probe leave from a port its responder serves (a named port).
fn bound_socket(
    addr: SocketAddr,
    kind: socket2::Type,
    sport: u16,
) -> Result<socket2::Socket, String> {
    let local = match addr {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, sport)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, sport)),
    };
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), kind, None)
        .map_err(|e| format!("error: {e}"))?;
    socket
        .set_reuse_address(true)
        .and_then(|()| socket.set_reuse_port(true))
        .map_err(|e| format!("error: {e}"))?;
    socket
        .bind(&local.into())
        .map_err(|e| format!("error: bind source port {sport}: {e}"))?;
    Ok(socket)
}

/// Where probes' source ports come from.
pub enum SourcePorts {
    /// `--source-port`: every probe, TCP and UDP, from this port (it must bind).
    Fixed(u16),
    /// TCP from the kernel's ephemeral ports, UDP from the rotation.
    Rotating(UdpPorts),
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

fn probe_udp(
    addr: SocketAddr,
    timeout: Duration,
    id: u16,
    ports: &SourcePorts,
) -> Result<(), String> {
    let socket: UdpSocket = match ports {
        SourcePorts::Fixed(sport) => bound_socket(addr, socket2::Type::DGRAM, *sport)?.into(),
        SourcePorts::Rotating(rotation) => {
            let local = match addr {
                SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, rotation.take())),
                SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, rotation.take())),
            };
            // A port of the rotation that a pod process holds: let the kernel choose.
            UdpSocket::bind(local)
                .or_else(|_| UdpSocket::bind(SocketAddr::new(local.ip(), 0)))
                .map_err(|e| format!("error: {e}"))?
        }
    };
    socket.connect(addr).map_err(|e| classify(&e))?;
    let payload = super::dns::query(id, PROBE_QUERY_NAME);
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
pub fn run(jobs: &[ProbeJob], timeout: Duration, ports: &SourcePorts) -> Vec<ProbeResult> {
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
                            Protocol::Tcp => {
                                let fixed = match ports {
                                    SourcePorts::Fixed(port) => Some(*port),
                                    SourcePorts::Rotating(_) => None,
                                };
                                probe_tcp(job.addr, timeout, fixed)
                            }
                            Protocol::Udp => probe_udp(job.addr, timeout, i as u16, ports),
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
