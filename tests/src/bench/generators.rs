//! Traffic for the lab benchmarks, between two network namespaces (a client pod and a
//! server pod), each side a thread that entered its namespace with `setns`. Bounded in
//! time; sends only to the address it is given (a lab pod's).
//!
//! - [`udp_established`]: one UDP flow, first a request and its reply (so that
//!   netfilter's conntrack calls it `ESTABLISHED`, as it does a request/response
//!   flow), then datagrams as fast as one thread sends; the receiver counts.
//! - [`udp_new_flows`]: every datagram a new 5-tuple (raw socket, source and
//!   destination ports stepping through 64,000 × 1,000 pairs), as fast as one thread
//!   sends; a raw socket on the server counts the ones that arrive.
//! - [`tcp_connections`]: TCP connections opened, accepted and closed (with RST, so
//!   neither side keeps `TIME_WAIT` state) one after the other.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::traffic::{FloodResult, enter_netns};

/// Marks the generator's datagrams (payload starts with it).
pub const MAGIC: u32 = 0x656e_6662; // "enfb"

fn io_err(what: &str, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("{what}: {e}"))
}

/// A receiver thread in `netns` set up by `setup`, then running `body` until `stop`.
/// Returns once the setup is done (its error, if it failed); joining gives `body`'s
/// result.
fn spawn_receiver<S, T>(
    netns: &str,
    setup: impl FnOnce() -> std::io::Result<S> + Send + 'static,
    body: impl FnOnce(S, &AtomicBool) -> T + Send + 'static,
    stop: &Arc<AtomicBool>,
) -> std::io::Result<Receiver<T>>
where
    S: 'static,
    T: Send + 'static,
{
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
    let netns = netns.to_owned();
    let stop = Arc::clone(stop);
    let handle = std::thread::spawn(move || match enter_netns(&netns).and_then(|()| setup()) {
        Ok(state) => {
            let _ = ready_tx.send(Ok(()));
            Some(body(state, &stop))
        }
        Err(e) => {
            let _ = ready_tx.send(Err(e));
            None
        }
    });
    ready_rx
        .recv()
        .map_err(|_| std::io::Error::other("receiver thread died"))??;
    Ok(Receiver(handle))
}

/// A running receiver thread.
struct Receiver<T>(std::thread::JoinHandle<Option<T>>);

impl<T> Receiver<T> {
    fn join(self) -> std::io::Result<T> {
        self.0
            .join()
            .ok()
            .flatten()
            .ok_or_else(|| std::io::Error::other("receiver thread panicked"))
    }
}

/// Counts datagrams on a UDP socket until stopped; answers the first one (the
/// request that makes the flow established). Returns (count, first-to-last time).
fn count_udp(socket: &UdpSocket, stop: &AtomicBool, counter: &AtomicU64) -> Duration {
    let mut buf = vec![0u8; 65_536];
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let mut answered = false;
    while !stop.load(Ordering::Relaxed) {
        let Ok((_, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        if !answered {
            let _ = socket.send_to(b"reply", from);
            answered = true;
            continue;
        }
        let now = Instant::now();
        first.get_or_insert(now);
        last = now;
        counter.fetch_add(1, Ordering::Relaxed);
    }
    first.map_or(Duration::ZERO, |f| last - f)
}

/// One established UDP flow: a request answered by the server, then `payload`-byte
/// datagrams as fast as one thread sends for `duration`.
pub fn udp_established(
    from: &str,
    to_netns: &str,
    to: SocketAddr,
    payload: usize,
    duration: Duration,
) -> std::io::Result<FloodResult> {
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&received);
    let receiver = spawn_receiver(
        to_netns,
        move || {
            let socket = UdpSocket::bind(to)?;
            socket.set_read_timeout(Some(Duration::from_millis(100)))?;
            Ok(socket)
        },
        move |socket, stop| count_udp(&socket, stop, &counter),
        &stop,
    )?;
    let from = from.to_owned();
    let sender = std::thread::spawn(move || -> std::io::Result<u64> {
        enter_netns(&from)?;
        let bind = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
        let socket = UdpSocket::bind(bind)?;
        socket.connect(to)?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        // The request and its reply; retried, since the first packets of a lab may
        // meet an unresolved neighbour.
        let mut buf = [0u8; 64];
        let mut answered = false;
        for _ in 0..25 {
            socket.send(b"request")?;
            if socket.recv(&mut buf).is_ok() {
                answered = true;
                break;
            }
        }
        if !answered {
            return Err(io_err("udp_established", "the server never answered"));
        }
        let data = vec![0x5au8; payload];
        let deadline = Instant::now() + duration;
        let mut sent = 0u64;
        while Instant::now() < deadline {
            for _ in 0..256 {
                if socket.send(&data).is_ok() {
                    sent += 1;
                }
            }
        }
        Ok(sent)
    });
    let sent = sender
        .join()
        .map_err(|_| std::io::Error::other("sender thread panicked"));
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let elapsed = receiver.join()?;
    let sent = sent??;
    Ok(FloodResult {
        sent,
        received: received.load(Ordering::Relaxed),
        elapsed: if elapsed.is_zero() { duration } else { elapsed },
    })
}

pub(crate) fn raw_socket(proto: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, proto) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An IPv4 + UDP datagram (UDP checksum 0: none) carrying (magic, seq, send time).
pub fn datagram(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    seq: u64,
    sent_ns: u64,
) -> Vec<u8> {
    let mut payload = MAGIC.to_be_bytes().to_vec();
    payload.extend_from_slice(&seq.to_be_bytes());
    payload.extend_from_slice(&sent_ns.to_be_bytes());
    crate::wire::ipv4_udp((src, sport), (dst, dport), &payload)
}

/// The (source port, destination port) of the generator's datagram `seq`: a new pair
/// for each of 64,000,000 datagrams.
pub fn flow_ports(seq: u64) -> (u16, u16) {
    (
        1024 + (seq % 64_000) as u16,
        10_000 + ((seq / 64_000) % 1000) as u16,
    )
}

/// Sends one raw datagram to `dst` on `fd` (an `IPPROTO_RAW` socket).
pub fn send_raw(fd: &OwnedFd, dst: Ipv4Addr, packet: &[u8]) -> bool {
    // SAFETY: all-zero is a valid sockaddr_in.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    addr.sin_family = libc::AF_INET as u16;
    addr.sin_addr.s_addr = u32::from_ne_bytes(dst.octets());
    // SAFETY: valid buffer and address for the duration of the call.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            packet.as_ptr().cast(),
            packet.len(),
            0,
            std::ptr::from_ref(&addr).cast(),
            size_of::<libc::sockaddr_in>() as u32,
        )
    };
    n >= 0
}

/// A raw UDP socket in the current netns that returns from `recv` every 20 ms.
pub fn raw_udp_receiver() -> std::io::Result<OwnedFd> {
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
}

/// The (seq, send time) of a generator datagram read from a raw socket, if it is one.
pub fn parse_generated(buf: &[u8]) -> Option<(u64, u64)> {
    if buf.len() < 48 {
        return None;
    }
    let ihl = usize::from(buf[0] & 0x0f) * 4;
    let p = buf.get(ihl + 8..)?;
    if p.len() < 20 || u32::from_be_bytes([p[0], p[1], p[2], p[3]]) != MAGIC {
        return None;
    }
    let seq = u64::from_be_bytes(p[4..12].try_into().ok()?);
    let sent = u64::from_be_bytes(p[12..20].try_into().ok()?);
    Some((seq, sent))
}

/// Every datagram a new flow, `src` -> `dst`, as fast as one thread sends.
pub fn udp_new_flows(
    from: &str,
    to_netns: &str,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    duration: Duration,
) -> std::io::Result<FloodResult> {
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&received);
    let receiver = spawn_receiver(
        to_netns,
        raw_udp_receiver,
        move |fd, stop| {
            let mut buf = [0u8; 2048];
            let mut first: Option<Instant> = None;
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: valid buffer.
                let n =
                    unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n > 0 && parse_generated(&buf[..n as usize]).is_some() {
                    let now = Instant::now();
                    first.get_or_insert(now);
                    last = now;
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
            first.map_or(Duration::ZERO, |f| last - f)
        },
        &stop,
    )?;
    let from = from.to_owned();
    let sender = std::thread::spawn(move || -> std::io::Result<u64> {
        enter_netns(&from)?;
        let fd = raw_socket(libc::IPPROTO_RAW)?;
        let deadline = Instant::now() + duration;
        let mut seq = 0u64;
        let mut sent = 0u64;
        while Instant::now() < deadline {
            for _ in 0..64 {
                let (sport, dport) = flow_ports(seq);
                if send_raw(&fd, dst, &datagram(src, dst, sport, dport, seq, 0)) {
                    sent += 1;
                }
                seq += 1;
            }
        }
        Ok(sent)
    });
    let sent = sender
        .join()
        .map_err(|_| std::io::Error::other("sender thread panicked"));
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let elapsed = receiver.join()?;
    let sent = sent??;
    Ok(FloodResult {
        sent,
        received: received.load(Ordering::Relaxed),
        elapsed: if elapsed.is_zero() { duration } else { elapsed },
    })
}

/// What [`tcp_connections`] measured.
#[derive(Clone, Copy, Debug)]
pub struct ConnectResult {
    /// Connections that completed (connected, one byte each way, closed).
    pub completed: u64,
    /// Connection attempts that failed.
    pub failed: u64,
    pub elapsed: Duration,
}

impl ConnectResult {
    pub fn per_second(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Closes with RST (linger 0): no `TIME_WAIT`, so ports are never exhausted.
fn set_linger_zero(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid option pointer and length.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            size_of::<libc::linger>() as u32,
        );
    }
}

/// TCP connections from `from` to `to` (a listener this function opens in
/// `to_netns`), one after another for `duration`: connect, the client sends a byte,
/// the server answers one, both close.
pub fn tcp_connections(
    from: &str,
    to_netns: &str,
    to: SocketAddr,
    duration: Duration,
) -> std::io::Result<ConnectResult> {
    let stop = Arc::new(AtomicBool::new(false));
    let server = spawn_receiver(
        to_netns,
        move || {
            let listener = TcpListener::bind(to)?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        },
        |listener, stop| {
            let mut byte = [0u8; 1];
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                        if s.read_exact(&mut byte).is_ok() {
                            let _ = s.write_all(&byte);
                        }
                        set_linger_zero(&s);
                    }
                    Err(_) => std::thread::sleep(Duration::from_micros(50)),
                }
            }
        },
        &stop,
    )?;
    let from = from.to_owned();
    let client = std::thread::spawn(move || -> std::io::Result<ConnectResult> {
        enter_netns(&from)?;
        let started = Instant::now();
        let (mut completed, mut failed) = (0u64, 0u64);
        let mut byte = [1u8; 1];
        while started.elapsed() < duration {
            let ok = (|| -> std::io::Result<()> {
                let mut s = TcpStream::connect_timeout(&to, Duration::from_millis(500))?;
                s.set_read_timeout(Some(Duration::from_millis(500)))?;
                s.write_all(&byte)?;
                s.read_exact(&mut byte)?;
                set_linger_zero(&s);
                Ok(())
            })();
            if ok.is_ok() {
                completed += 1;
            } else {
                failed += 1;
            }
        }
        Ok(ConnectResult {
            completed,
            failed,
            elapsed: started.elapsed(),
        })
    });
    let result = client
        .join()
        .map_err(|_| std::io::Error::other("client thread panicked"));
    stop.store(true, Ordering::Relaxed);
    server.join()?;
    result?
}
