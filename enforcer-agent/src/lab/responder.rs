//! The process that stands in for a pod's containers: it answers on every declared
//! container port, TCP and UDP, with a short text (http-echo's `-text`, else the pod
//! name). TCP: an HTTP request gets `HTTP/1.1 200 OK` with the text as body; anything
//! else (or silence for a second) gets the text; then the connection closes. An HTTP
//! request for `/clientip` gets the client's `address:port` instead, as agnhost's
//! `netexec` answers it (what Service and `NodePort` tests use to see whether the
//! client's address survived the way). UDP: every datagram gets the text back.
//! Undeclared ports stay closed.

use std::io::{Read, Write};
use std::net::{Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ResponderError {
    #[error("responder: bind {protocol} {addr}: {source}")]
    Bind {
        protocol: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("responder: write ready file {path}: {source}")]
    Ready {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Marks a pod process ready: its pid, written by rename.
pub fn write_ready(path: &Path) -> std::io::Result<()> {
    super::state::write_atomic(path, std::process::id().to_string().as_bytes())
}

const MAX_REQUEST: usize = 8192;

/// Could `buf` be the start of an HTTP request line (`METHOD SP target SP HTTP/x`)?
fn may_be_http(buf: &[u8]) -> bool {
    let method_len = buf.iter().take_while(|b| b.is_ascii_uppercase()).count();
    if method_len == 0 || method_len > 10 {
        return false;
    }
    match buf.get(method_len) {
        None => true,
        Some(b' ') => buf.get(method_len + 1).is_none_or(|b| *b != b' '),
        Some(_) => false,
    }
}

fn header_end(buf: &[u8]) -> bool {
    buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n")
}

/// The response to what the client sent (maybe nothing).
pub fn response(request: &[u8], text: &str) -> Vec<u8> {
    let body = format!("{text}\n");
    let line_end = request
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or(request.len());
    let line = String::from_utf8_lossy(&request[..line_end]);
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default();
    let is_http = may_be_http(request) && parts.nth(1).is_some_and(|v| v.starts_with("HTTP/"));
    if !is_http {
        return body.into_bytes();
    }
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\nX-App-Name: enforcer-lab\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

fn serve_conn(mut stream: TcpStream, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    // Read until an HTTP request's headers are complete, or until it cannot be HTTP,
    // or the client goes quiet (protocols where the server speaks first).
    while buf.len() < MAX_REQUEST {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if !may_be_http(&buf) || header_end(&buf) {
            break;
        }
    }
    let answer = match stream.peer_addr() {
        Ok(peer) if requests_client_ip(&buf) => response(&buf, &client_ip(peer)),
        _ => response(&buf, text),
    };
    let _ = stream.write_all(&answer);
    let _ = stream.shutdown(Shutdown::Write);
    // Drain what the client still sends, so that close() does not reset the
    // connection before it has read the answer.
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    while matches!(stream.read(&mut chunk), Ok(n) if n > 0) {}
}

/// Whether `request` is an HTTP request for `/clientip`.
fn requests_client_ip(request: &[u8]) -> bool {
    let line = request.split(|b| *b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let _method = parts.next();
    may_be_http(request) && parts.next() == Some(b"/clientip")
}

/// `address:port` of a peer, IPv4-mapped addresses written as IPv4.
fn client_ip(peer: SocketAddr) -> String {
    match peer {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => format!("{v4}:{}", v6.port()),
            None => peer.to_string(),
        },
        SocketAddr::V4(_) => peer.to_string(),
    }
}

/// A socket bound to `addr` with `SO_REUSEPORT`: the pod's own outgoing connections may
/// leave from its declared ports too (`lab probe --source-port`, for rules on a named
/// source port), as a real workload's can.
fn shared_port_socket(
    addr: SocketAddr,
    kind: socket2::Type,
    listen: bool,
) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), kind, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    if listen {
        socket.listen(128)?;
    }
    Ok(socket)
}

/// Serves until killed; writes `ready_file` once every socket is bound.
pub fn serve(text: &str, ports: &[u16], ready_file: &Path) -> Result<(), ResponderError> {
    let text: Arc<str> = Arc::from(text);
    let mut listeners = Vec::new();
    let mut sockets = Vec::new();
    for &port in ports {
        // `[::]` with IPV6_V6ONLY off (the netns default) serves IPv4 too.
        let addr = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
        let bind_err = |protocol| {
            move |source| ResponderError::Bind {
                protocol,
                addr,
                source,
            }
        };
        listeners.push(TcpListener::from(
            shared_port_socket(addr, socket2::Type::STREAM, true).map_err(bind_err("TCP"))?,
        ));
        sockets.push(UdpSocket::from(
            shared_port_socket(addr, socket2::Type::DGRAM, false).map_err(bind_err("UDP"))?,
        ));
    }
    write_ready(ready_file).map_err(|source| ResponderError::Ready {
        path: ready_file.to_path_buf(),
        source,
    })?;
    tracing::info!(?ports, text = %text, "responder ready");
    let mut threads = Vec::new();
    for listener in listeners {
        let text = Arc::clone(&text);
        threads.push(std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let text = Arc::clone(&text);
                std::thread::spawn(move || serve_conn(stream, &text));
            }
        }));
    }
    for socket in sockets {
        let reply = format!("{text}\n").into_bytes();
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            loop {
                if let Ok((_, peer)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(&reply, peer);
                }
            }
        }));
    }
    if threads.is_empty() {
        // No ports: nothing to answer, but the pod still "runs".
        loop {
            std::thread::park();
        }
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

#[cfg(test)]
#[expect(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
mod tests {
    use super::*;

    #[test]
    fn http_or_text() {
        let r = response(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "Hello from Backend!");
        let r = String::from_utf8(r).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nHello from Backend!\n"), "{r}");
        assert!(r.contains("Content-Length: 20\r\n"));
        let r = String::from_utf8(response(b"HEAD / HTTP/1.0\r\n\r\n", "x")).unwrap();
        assert!(r.ends_with("\r\n\r\n"));
        assert_eq!(response(b"", "db"), b"db\n");
        assert_eq!(response(b"\x00\x01garbage", "db"), b"db\n");
        assert_eq!(response(b"GET /", "db"), b"db\n");
        assert!(requests_client_ip(b"GET /clientip HTTP/1.1\r\n\r\n"));
        assert!(!requests_client_ip(b"GET / HTTP/1.1\r\n\r\n"));
        let peer: SocketAddr = "[::ffff:198.18.255.2]:4000".parse().unwrap();
        assert_eq!(client_ip(peer), "198.18.255.2:4000");
        let peer: SocketAddr = "[2001:2::a]:80".parse().unwrap();
        assert_eq!(client_ip(peer), "[2001:2::a]:80");
        assert!(may_be_http(b"GE"));
        assert!(!may_be_http(b"get / HTTP/1.1"));
    }
}
