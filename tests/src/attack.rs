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
