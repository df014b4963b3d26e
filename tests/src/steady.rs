//! Steady, counted UDP traffic between lab namespaces, for tests that disturb the
//! enforcer (an agent killed and restarted, a flood) and must show that no allowed
//! packet was lost and no denied one delivered. Every datagram carries a sequence
//! number; each side is a thread that entered its namespace with `setns`.

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::traffic::enter_netns;

/// A UDP service in a namespace that echoes every datagram back, until stopped.
pub struct Echo {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Echo {
    pub fn start(netns: &str, at: SocketAddr) -> Self {
        let socket = bound(netns, at);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut echoed = 0;
                let mut buf = [0u8; 64];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = socket.recv_from(&mut buf)
                        && socket.send_to(&buf[..n], from).is_ok()
                    {
                        echoed += 1;
                    }
                }
                echoed
            })
        };
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops it; how many datagrams it echoed.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap_or(0))
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A UDP socket bound in `netns`, with a short read timeout and a large receive
/// buffer (so the socket itself loses nothing at the rates used here).
fn bound(netns: &str, at: SocketAddr) -> UdpSocket {
    let netns = netns.to_owned();
    std::thread::spawn(move || -> std::io::Result<UdpSocket> {
        enter_netns(&netns)?;
        let socket = UdpSocket::bind(at)?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBuf, &(4 << 20))?;
        Ok(socket)
    })
    .join()
    .unwrap_or_else(|_| panic!("binding in a lab namespace panicked"))
    .unwrap_or_else(|e| panic!("binding {at}: {e}"))
}

/// What a stream measured.
#[derive(Clone, Debug, Default)]
pub struct StreamResult {
    pub sent: u64,
    /// Distinct sequence numbers answered (echo) or delivered (sink).
    pub answered: u64,
    /// Sequence numbers sent and never answered.
    pub lost: Vec<u64>,
    pub elapsed: Duration,
}

/// Sends a numbered datagram to `to` every `interval` from `netns` for `duration`;
/// with `expect_echo`, counts the echoes (each sequence number once) until
/// `grace` after the last send.
pub fn stream(
    netns: &str,
    to: SocketAddr,
    interval: Duration,
    duration: Duration,
    grace: Duration,
) -> JoinHandle<StreamResult> {
    let any: SocketAddr = if to.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let socket = bound(netns, any);
    std::thread::spawn(move || {
        let receiver = socket.try_clone().unwrap_or_else(|e| panic!("clone: {e}"));
        let done = Arc::new(AtomicBool::new(false));
        let counting = {
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut seen = BTreeSet::new();
                let mut buf = [0u8; 64];
                while !done.load(Ordering::Relaxed) {
                    if let Ok((n, _)) = receiver.recv_from(&mut buf)
                        && n >= 8
                    {
                        let mut seq = [0u8; 8];
                        seq.copy_from_slice(&buf[..8]);
                        seen.insert(u64::from_be_bytes(seq));
                    }
                }
                seen
            })
        };
        let start = Instant::now();
        let mut sent = 0u64;
        let mut next = start;
        while start.elapsed() < duration {
            // Unanswered sends count as lost; a failed send is lost too.
            let _ = socket.send_to(&sent.to_be_bytes(), to);
            sent += 1;
            next += interval;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let elapsed = start.elapsed();
        std::thread::sleep(grace);
        done.store(true, Ordering::Relaxed);
        let seen = counting.join().unwrap_or_default();
        StreamResult {
            sent,
            answered: seen.len() as u64,
            lost: (0..sent).filter(|s| !seen.contains(s)).collect(),
            elapsed,
        }
    })
}

/// Counts numbered datagrams arriving at `at` in `netns` (the receiving end of a flow
/// that must stay denied), until stopped.
pub struct Sink {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Sink {
    pub fn start(netns: &str, at: SocketAddr) -> Self {
        let socket = bound(netns, at);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut received = 0;
                let mut buf = [0u8; 64];
                while !stop.load(Ordering::Relaxed) {
                    if socket.recv_from(&mut buf).is_ok() {
                        received += 1;
                    }
                }
                received
            })
        };
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops it; how many datagrams arrived.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap_or(0))
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Resident memory of a process in KiB (`VmRSS`), if it runs.
pub fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}
