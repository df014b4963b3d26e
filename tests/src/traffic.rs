//! A UDP packet generator and counter between two network namespaces, for the
//! packets-per-second benchmarks. Each side is a thread that enters its namespace
//! with `setns` (sockets stay in the namespace they were created in). Bounded in time,
//! and only ever sends to the address it is given (a lab pod's).

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Enters a named network namespace (`/run/netns/<name>`) on the calling thread.
pub fn enter_netns(name: &str) -> std::io::Result<()> {
    let path: PathBuf = Path::new("/run/netns").join(name);
    let file = std::fs::File::open(&path)?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
}

/// What a flood measured.
#[derive(Clone, Copy, Debug)]
pub struct FloodResult {
    pub sent: u64,
    pub received: u64,
    /// Time the receiver counted over.
    pub elapsed: Duration,
}

impl FloodResult {
    /// Packets per second that arrived.
    pub fn received_pps(&self) -> f64 {
        self.received as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Sends UDP datagrams of `payload` bytes from netns `from` to `to` (in netns
/// `to_netns`) as fast as one thread can for `duration`, and counts what arrives.
pub fn udp_flood(
    from: &str,
    to_netns: &str,
    to: SocketAddr,
    payload: usize,
    duration: Duration,
) -> std::io::Result<FloodResult> {
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();

    let receiver = {
        let received = Arc::clone(&received);
        let stop = Arc::clone(&stop);
        let to_netns = to_netns.to_owned();
        std::thread::spawn(move || -> std::io::Result<Duration> {
            let setup = (|| -> std::io::Result<UdpSocket> {
                enter_netns(&to_netns)?;
                let socket = UdpSocket::bind(SocketAddr::new(to.ip(), to.port()))?;
                socket.set_read_timeout(Some(Duration::from_millis(100)))?;
                Ok(socket)
            })();
            let socket = match setup {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(std::io::Error::new(e.kind(), e.to_string())));
                    return Err(e);
                }
            };
            let mut buf = vec![0u8; 65_536];
            let mut first: Option<Instant> = None;
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if socket.recv(&mut buf).is_ok() {
                    let now = Instant::now();
                    first.get_or_insert(now);
                    last = now;
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(first.map_or(Duration::ZERO, |f| last - f))
        })
    };
    ready_rx
        .recv()
        .map_err(|_| std::io::Error::other("receiver thread died"))??;

    let from = from.to_owned();
    let sender = std::thread::spawn(move || -> std::io::Result<u64> {
        enter_netns(&from)?;
        let bind = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
        let socket = UdpSocket::bind(bind)?;
        socket.connect(to)?;
        let data = vec![0x5au8; payload];
        let deadline = Instant::now() + duration;
        let mut sent = 0u64;
        while Instant::now() < deadline {
            for _ in 0..256 {
                // ENOBUFS/EPERM (dropped by policy or a full queue) are part of the
                // measurement, not errors.
                if socket.send(&data).is_ok() {
                    sent += 1;
                }
            }
        }
        Ok(sent)
    });
    let sent = sender
        .join()
        .map_err(|_| std::io::Error::other("sender thread panicked"))??;
    // Let the last packets drain, then stop the receiver.
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let elapsed = receiver
        .join()
        .map_err(|_| std::io::Error::other("receiver thread panicked"))??;
    Ok(FloodResult {
        sent,
        received: received.load(Ordering::Relaxed),
        elapsed: if elapsed.is_zero() { duration } else { elapsed },
    })
}

/// Median of a non-empty sample (the mean of the two middle values for even sizes).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        f64::midpoint(values[n / 2 - 1], values[n / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_samples() {
        assert!((median(&mut [3.0, 1.0, 2.0]) - 2.0).abs() < f64::EPSILON);
        assert!((median(&mut [4.0, 1.0, 3.0, 2.0]) - 2.5).abs() < f64::EPSILON);
        assert!(median(&mut []).is_nan());
    }
}
