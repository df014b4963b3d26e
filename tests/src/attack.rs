//! The attacker's tools for the `attacks_*` lab tests: connections from inside a
//! namespace with a chosen source address and port (`nc -p PORT`), to any address
//! (IPv6 link-local with its interface), each bounded in time. Every helper runs on
//! its own thread that enters the namespace with `setns`, so the test's own thread
//! never changes namespace.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd as _, FromRawFd as _, IntoRawFd as _, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrStorage, bind, connect, setsockopt, socket, sockopt,
};

use crate::traffic::enter_netns;

/// Runs `f` on a thread inside netns `netns` and returns its result.
pub fn in_netns<T: Send + 'static>(netns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let netns = netns.to_owned();
    std::thread::spawn(move || {
        enter_netns(&netns).unwrap_or_else(|e| panic!("entering netns {netns}: {e}"));
        f()
    })
    .join()
    .unwrap_or_else(|_| panic!("a thread in a lab namespace panicked"))
}

/// The ifindex of `iface` in netns `netns` (for an IPv6 link-local scope).
pub fn ifindex_in(netns: &str, iface: &str) -> u32 {
    let iface = std::ffi::CString::new(iface).unwrap_or_else(|e| panic!("interface name: {e}"));
    in_netns(netns, move || {
        // SAFETY: a valid NUL-terminated string.
        unsafe { libc::if_nametoindex(iface.as_ptr()) }
    })
}

/// What a TCP attempt achieved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpOutcome {
    /// The handshake completed and the peer's service answered with `reply`.
    Answered { reply: String },
    /// The handshake completed but nothing came back in time.
    Connected,
    /// No connection (dropped: timeout; or refused/unreachable).
    Failed { error: String },
}

impl TcpOutcome {
    /// Whether the handshake completed.
    pub fn connected(&self) -> bool {
        !matches!(self, TcpOutcome::Failed { .. })
    }
}

/// A TCP connection from inside `netns` to `dest`, bound to `source` when given (an
/// address and port the attacker picks, as `nc -s ADDR -p PORT`), then a line sent and
/// an answer awaited; every step bounded by `timeout`.
pub fn tcp_attempt(
    netns: &str,
    source: Option<SocketAddr>,
    dest: SocketAddr,
    timeout: Duration,
) -> TcpOutcome {
    in_netns(netns, move || match connect_from(source, dest, timeout) {
        Ok(mut stream) => {
            let _ = stream.set_read_timeout(Some(timeout));
            let _ = stream.write_all(b"attack\n");
            let mut buf = [0u8; 256];
            match stream.read(&mut buf) {
                Ok(n) if n > 0 => TcpOutcome::Answered {
                    reply: String::from_utf8_lossy(&buf[..n]).trim().to_owned(),
                },
                _ => TcpOutcome::Connected,
            }
        }
        Err(e) => TcpOutcome::Failed {
            error: e.to_string(),
        },
    })
}

fn connect_from(
    source: Option<SocketAddr>,
    dest: SocketAddr,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    let family = if dest.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd: OwnedFd = socket(family, SockType::Stream, SockFlag::SOCK_NONBLOCK, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if let Some(source) = source {
        bind(fd.as_raw_fd(), &SockaddrStorage::from(source))?;
    }
    match connect(fd.as_raw_fd(), &SockaddrStorage::from(dest)) {
        Ok(()) => {}
        Err(nix::errno::Errno::EINPROGRESS) => {
            let mut fds = [nix::poll::PollFd::new(
                std::os::fd::AsFd::as_fd(&fd),
                nix::poll::PollFlags::POLLOUT,
            )];
            let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
            let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(millis))?;
            if ready == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer to the SYN within {timeout:?}"),
                ));
            }
            let error = nix::sys::socket::getsockopt(&fd, sockopt::SocketError)?;
            if error != 0 {
                return Err(std::io::Error::from_raw_os_error(error));
            }
        }
        Err(e) => return Err(e.into()),
    }
    // SAFETY: `fd` is a connected stream socket we own; ownership moves to the stream.
    let stream = unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) };
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// A UDP datagram from inside `netns` to `dest`, from `source` when given (an
/// address and port the attacker picks); the first answer within `timeout`, if any.
pub fn udp_attempt(
    netns: &str,
    source: Option<SocketAddr>,
    dest: SocketAddr,
    timeout: Duration,
) -> Option<String> {
    in_netns(netns, move || {
        let any: SocketAddr = if dest.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let socket = std::net::UdpSocket::bind(source.unwrap_or(any)).ok()?;
        socket.set_read_timeout(Some(timeout)).ok()?;
        socket.send_to(b"attack\n", dest).ok()?;
        let mut buf = [0u8; 256];
        let (n, _) = socket.recv_from(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).trim().to_owned())
    })
}

/// Sends one `ICMPv6` message of `icmp_type` (code 0) with `payload` from inside `netns`
/// to `dest` through a raw socket (the kernel fills in the checksum).
pub fn icmpv6_send(
    netns: &str,
    dest: std::net::Ipv6Addr,
    icmp_type: u8,
    payload: &[u8],
) -> std::io::Result<()> {
    let mut message = vec![icmp_type, 0, 0, 0];
    message.extend_from_slice(payload);
    in_netns(netns, move || {
        let fd = socket(
            AddressFamily::Inet6,
            SockType::Raw,
            SockFlag::empty(),
            nix::sys::socket::SockProtocol::IcmpV6,
        )?;
        let to = SockaddrStorage::from(SocketAddr::from((dest, 0)));
        nix::sys::socket::sendto(
            fd.as_raw_fd(),
            &message,
            &to,
            nix::sys::socket::MsgFlags::empty(),
        )?;
        Ok(())
    })
}

/// Listens on a raw `ICMPv6` socket in `netns` for `duration` and returns every
/// message that carries `marker` (as the attacker's payload would), as seen there.
pub struct Icmpv6Capture {
    thread: std::thread::JoinHandle<std::io::Result<Vec<Vec<u8>>>>,
}

impl Icmpv6Capture {
    /// Starts listening; returns once the socket is open.
    pub fn start(netns: &str, duration: Duration, marker: &'static [u8]) -> Self {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let netns = netns.to_owned();
        let thread = std::thread::spawn(move || -> std::io::Result<Vec<Vec<u8>>> {
            enter_netns(&netns)?;
            let fd = socket(
                AddressFamily::Inet6,
                SockType::Raw,
                SockFlag::empty(),
                nix::sys::socket::SockProtocol::IcmpV6,
            )?;
            setsockopt(
                &fd,
                sockopt::ReceiveTimeout,
                &nix::sys::time::TimeVal::new(0, 100_000),
            )?;
            let _ = ready_tx.send(());
            let deadline = std::time::Instant::now() + duration;
            let mut seen = Vec::new();
            let mut buf = [0u8; 2048];
            while std::time::Instant::now() < deadline {
                match nix::sys::socket::recv(
                    fd.as_raw_fd(),
                    &mut buf,
                    nix::sys::socket::MsgFlags::empty(),
                ) {
                    Ok(n) => {
                        let message = &buf[..n];
                        if message.windows(marker.len()).any(|w| w == marker) {
                            seen.push(message.to_vec());
                        }
                    }
                    Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(seen)
        });
        let _ = ready_rx.recv_timeout(Duration::from_secs(5));
        Self { thread }
    }

    /// The messages carrying the marker, once the capture ended.
    pub fn finish(self) -> Vec<Vec<u8>> {
        self.thread
            .join()
            .unwrap_or_else(|_| panic!("capture thread panicked"))
            .unwrap_or_else(|e| panic!("ICMPv6 capture: {e}"))
    }
}

/// Sends one UDP datagram from inside `netns` with a source the attacker forged
/// (`src:sport`, any address) to `dst:dport`, through a raw socket with `IP_HDRINCL`
/// (the kernel fills in the IPv4 checksum and total length; the UDP checksum is 0,
/// "none", valid for IPv4).
pub fn udp4_forged(
    netns: &str,
    (src, sport): (std::net::Ipv4Addr, u16),
    (dst, dport): (std::net::Ipv4Addr, u16),
    payload: &[u8],
) -> std::io::Result<()> {
    let udp_len = 8 + payload.len();
    let mut packet = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    packet[2..4].copy_from_slice(&((20 + udp_len) as u16).to_be_bytes());
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    packet.extend_from_slice(&sport.to_be_bytes());
    packet.extend_from_slice(&dport.to_be_bytes());
    packet.extend_from_slice(&(udp_len as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(payload);
    in_netns(netns, move || {
        // IPPROTO_RAW: the caller writes the IP header (IP_HDRINCL implied).
        let fd = socket(
            AddressFamily::Inet,
            SockType::Raw,
            SockFlag::empty(),
            nix::sys::socket::SockProtocol::Raw,
        )?;
        let to = SockaddrStorage::from(SocketAddr::from((dst, dport)));
        nix::sys::socket::sendto(
            fd.as_raw_fd(),
            &packet,
            &to,
            nix::sys::socket::MsgFlags::empty(),
        )?;
        Ok(())
    })
}

/// Datagrams received, with their sources.
pub type Datagrams = Vec<(SocketAddr, Vec<u8>)>;

/// Listens on UDP `port` in `netns` for `duration` and returns every datagram received
/// (with its source), as the receiving pod sees them.
pub struct UdpCapture {
    thread: std::thread::JoinHandle<std::io::Result<Datagrams>>,
}

impl UdpCapture {
    /// Starts listening; returns once the socket is bound.
    pub fn start(netns: &str, port: u16, duration: Duration) -> Self {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let netns = netns.to_owned();
        let thread = std::thread::spawn(move || {
            enter_netns(&netns)?;
            let socket = std::net::UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], port)))?;
            socket.set_read_timeout(Some(Duration::from_millis(100)))?;
            let _ = ready_tx.send(());
            let deadline = std::time::Instant::now() + duration;
            let mut seen = Vec::new();
            let mut buf = [0u8; 2048];
            while std::time::Instant::now() < deadline {
                match socket.recv_from(&mut buf) {
                    Ok((n, from)) => seen.push((from, buf[..n].to_vec())),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(seen)
        });
        let _ = ready_rx.recv_timeout(Duration::from_secs(5));
        Self { thread }
    }

    /// The datagrams received, once the capture ended.
    pub fn finish(self) -> Datagrams {
        self.thread
            .join()
            .unwrap_or_else(|_| panic!("capture thread panicked"))
            .unwrap_or_else(|e| panic!("UDP capture: {e}"))
    }
}
