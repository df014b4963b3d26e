//! The lab's cluster DNS (the `kube-dns` pod's process): hickory-server, an
//! authoritative in-memory zone over UDP and TCP, serving the names the cluster plan
//! gives ([`crate::cluster::dns`]) from the zone file the lab rewrites on every change.
//!
//! The zone is rooted at `.`, so a name outside `cluster.local` and the reverse
//! zones (`google.com`) gets NXDOMAIN — an answer, as from a cluster DNS without
//! upstream — and a name with records below it (`dev-app.svc.cluster.local`) NOERROR
//! without records. The zone file is checked on every query (a `stat`); a new file
//! (it is replaced by rename) is loaded before the query is answered, a broken one
//! is ignored and the old zone kept.

use std::collections::BTreeSet;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hickory_server::net::NetError;
use hickory_server::net::runtime::{Time, TokioRuntimeProvider};
use hickory_server::proto::op::{Message, MessageType, OpCode, Query};
use hickory_server::proto::rr::rdata::{A, AAAA, PTR, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, MessageResponse, ZoneType};

use crate::cluster::dns::{DOMAIN, Zone};

/// Seconds clients may cache an answer (and, through the SOA, a negative one).
const TTL: u32 = 5;
/// A TCP connection that sends no query for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("DNS zone {path}: {op}: {source}")]
    Zone {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("DNS server: bind {protocol} {addr}: {source}")]
    Bind {
        protocol: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("DNS server: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Writes the zone file the DNS pod serves (by rename: the server sees the old or the
/// new zone).
pub fn write_zone(zone: &Zone, path: &Path) -> Result<(), DnsError> {
    let text = serde_json::to_vec_pretty(zone).map_err(|e| DnsError::Zone {
        op: "encode",
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    super::state::write_atomic(path, &text).map_err(|source| DnsError::Zone {
        op: "write",
        path: path.to_path_buf(),
        source,
    })
}

fn fqdn(name: &str) -> Option<Name> {
    Name::from_ascii(format!("{}.", name.trim_end_matches('.'))).ok()
}

/// The zone as an authoritative catalog rooted at `.`.
fn catalog(zone: &Zone) -> Catalog {
    let root = Name::root();
    let mut handler = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
        root.clone(),
        ZoneType::Primary,
        AxfrPolicy::Deny,
    );
    let serial = 1;
    let soa = SOA::new(
        Name::from_ascii(format!("ns.dns.{DOMAIN}.")).unwrap_or_else(|_| root.clone()),
        Name::from_ascii(format!("hostmaster.{DOMAIN}.")).unwrap_or_else(|_| root.clone()),
        serial,
        7200,
        1800,
        86400,
        TTL,
    );
    handler.upsert_mut(Record::from_rdata(root, TTL, RData::SOA(soa)), serial);
    for (name, records) in &zone.records {
        let Some(owner) = fqdn(name) else {
            tracing::warn!(name, "not a domain name; left out of the zone");
            continue;
        };
        let data = records
            .a
            .iter()
            .map(|ip| RData::A(A(*ip)))
            .chain(records.aaaa.iter().map(|ip| RData::AAAA(AAAA(*ip))))
            .chain(
                records
                    .ptr
                    .iter()
                    .filter_map(|t| fqdn(t).map(|t| RData::PTR(PTR(t)))),
            );
        for rdata in data {
            handler.upsert_mut(Record::from_rdata(owner.clone(), TTL, rdata), serial);
        }
    }
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::from(Name::root()), vec![Arc::new(handler)]);
    catalog
}

/// The catalog of the zone file as last read.
struct Loaded {
    stamp: Option<(SystemTime, u64)>,
    catalog: Arc<Catalog>,
}

/// The request handler: the current zone file's catalog.
pub struct ZoneFileHandler {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

impl ZoneFileHandler {
    pub fn new(path: &Path) -> Self {
        let handler = Self {
            path: path.to_path_buf(),
            loaded: Mutex::new(Loaded {
                stamp: None,
                catalog: Arc::new(catalog(&Zone::default())),
            }),
        };
        handler.current();
        handler
    }

    /// The catalog, reloaded first if the file changed.
    fn current(&self) -> Arc<Catalog> {
        use std::os::unix::fs::MetadataExt;
        let Ok(mut loaded) = self.loaded.lock() else {
            return Arc::new(catalog(&Zone::default()));
        };
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .and_then(|m| m.modified().ok().map(|t| (t, m.ino())));
        if stamp != loaded.stamp {
            match std::fs::read(&self.path).map(|b| serde_json::from_slice::<Zone>(&b)) {
                Ok(Ok(zone)) => {
                    tracing::info!(names = zone.records.len(), "zone loaded");
                    loaded.catalog = Arc::new(catalog(&zone));
                    loaded.stamp = stamp;
                }
                Ok(Err(e)) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "bad zone file, keeping the old zone");
                }
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot read zone file");
                }
            }
        }
        Arc::clone(&loaded.catalog)
    }
}

#[async_trait::async_trait]
impl RequestHandler for ZoneFileHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let catalog = self.current();
        catalog
            .handle_request::<RecursionAvailable<R>, T>(
                request,
                RecursionAvailable(response_handle),
            )
            .await
    }
}

/// Responses say "recursion available", as a cluster DNS's do (`CoreDNS` forwards
/// what it is not authoritative for); without it `nslookup` warns on every answer.
#[derive(Clone)]
struct RecursionAvailable<R>(R);

#[async_trait::async_trait]
impl<R: ResponseHandler> ResponseHandler for RecursionAvailable<R> {
    async fn send_response<'a>(
        &mut self,
        mut response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        response.metadata_mut().recursion_available = true;
        self.0.send_response(response).await
    }
}

/// A query for `name`'s A records, as the probe sends it to UDP ports.
pub fn query(id: u16, name: &str) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    if let Some(name) = fqdn(name) {
        message.add_query(Query::query(name, RecordType::A));
    }
    message.to_vec().unwrap_or_default()
}

/// Binds UDP and TCP on `[::]:port` for every port (with `IPV6_V6ONLY` off, the netns
/// default, that serves IPv4 too) and registers them with a server.
fn bind(
    server: &mut hickory_server::Server<ZoneFileHandler>,
    ports: &BTreeSet<u16>,
) -> Result<(), DnsError> {
    for &port in ports {
        let addr = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
        let bind_err = |protocol| {
            move |source| DnsError::Bind {
                protocol,
                addr,
                source,
            }
        };
        let udp = std::net::UdpSocket::bind(addr).map_err(bind_err("UDP"))?;
        udp.set_nonblocking(true).map_err(bind_err("UDP"))?;
        server.register_socket(tokio::net::UdpSocket::from_std(udp).map_err(bind_err("UDP"))?);
        let tcp = std::net::TcpListener::bind(addr).map_err(bind_err("TCP"))?;
        tcp.set_nonblocking(true).map_err(bind_err("TCP"))?;
        server.register_listener(
            tokio::net::TcpListener::from_std(tcp).map_err(bind_err("TCP"))?,
            TCP_IDLE,
            TCP_RESPONSE_BUFFER,
        );
    }
    Ok(())
}

/// Runs the DNS server on `ports` (UDP and TCP, IPv4 and IPv6) until killed. Writes
/// `ready_file` once every socket is bound.
pub fn serve(zone_path: &Path, ports: &[u16], ready_file: &Path) -> Result<(), DnsError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DnsError::Runtime)?;
    let ports: BTreeSet<u16> = ports.iter().copied().collect();
    runtime.block_on(async {
        let mut server = hickory_server::Server::new(ZoneFileHandler::new(zone_path));
        bind(&mut server, &ports)?;
        super::responder::write_ready(ready_file).map_err(|source| DnsError::Zone {
            op: "write ready file",
            path: ready_file.to_path_buf(),
            source,
        })?;
        tracing::info!("DNS server ready");
        if ports.is_empty() {
            // No ports: nothing to answer, but the pod still "runs".
            std::future::pending::<()>().await;
        }
        if let Err(error) = server.block_until_done().await {
            tracing::warn!(%error, "DNS server stopped");
        }
        Ok(())
    })
}

#[cfg(test)]
#[expect(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
mod tests {
    use std::net::{Ipv4Addr, UdpSocket};

    use hickory_server::proto::op::ResponseCode;
    use proptest::prelude::*;

    use super::*;
    use crate::cluster::dns::Records;

    /// A server on a loopback UDP port, answering from a zone file in a temp dir.
    struct TestServer {
        addr: SocketAddr,
        dir: PathBuf,
        _runtime: tokio::runtime::Runtime,
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn zone() -> Zone {
        let mut z = Zone::default();
        z.records.insert(
            "backend.dev-app.svc.cluster.local".into(),
            Records {
                a: vec![Ipv4Addr::new(198, 19, 0, 12)],
                ..Records::default()
            },
        );
        z
    }

    fn start(tag: &str) -> TestServer {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("enf-dns-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("zone.json");
        write_zone(&zone(), &path).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let addr = socket.local_addr().unwrap();
        runtime.spawn(async move {
            let mut server = hickory_server::Server::new(ZoneFileHandler::new(&path));
            server.register_socket(tokio::net::UdpSocket::from_std(socket).unwrap());
            let _ = server.block_until_done().await;
        });
        TestServer {
            addr,
            dir,
            _runtime: runtime,
        }
    }

    /// Sends `bytes`; the reply whose id is `id`, if one comes within a second.
    fn ask(server: &TestServer, bytes: &[u8], id: u16) -> Option<Message> {
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        client.send_to(bytes, server.addr).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            let n = client.recv(&mut buf).ok()?;
            if let Ok(m) = Message::from_vec(&buf[..n])
                && m.metadata.id == id
            {
                return Some(m);
            }
        }
    }

    fn lookup(server: &TestServer, id: u16, name: &str, qtype: RecordType) -> Message {
        let mut message = Message::new(id, MessageType::Query, OpCode::Query);
        message.add_query(Query::query(fqdn(name).unwrap(), qtype));
        ask(server, &message.to_vec().unwrap(), id).unwrap()
    }

    #[test]
    fn a_aaaa_nxdomain() {
        let server = start("a");
        let r = ask(&server, &query(7, "Backend.dev-app.svc.cluster.local"), 7).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert!(r.metadata.authoritative && r.metadata.recursion_available);
        let answers: Vec<&RData> = r.answers.iter().map(|a| &a.data).collect();
        assert_eq!(answers, [&RData::A(A(Ipv4Addr::new(198, 19, 0, 12)))]);
        // AAAA of an existing name: NOERROR, no answer.
        let r = lookup(
            &server,
            8,
            "backend.dev-app.svc.cluster.local",
            RecordType::AAAA,
        );
        assert_eq!(
            (r.metadata.response_code, r.answers.len()),
            (ResponseCode::NoError, 0)
        );
        // An empty non-terminal exists; an unknown name does not, in the cluster's
        // domain or outside it.
        let r = lookup(&server, 9, "dev-app.svc.cluster.local", RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        let r = lookup(
            &server,
            10,
            "nosuch.dev-app.svc.cluster.local",
            RecordType::A,
        );
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        let r = lookup(&server, 11, "google.com", RecordType::A);
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn a_new_zone_file_is_served_at_once() {
        let server = start("reload");
        let mut z = zone();
        z.records.insert(
            "web.a.svc.cluster.local".into(),
            Records {
                a: vec![Ipv4Addr::new(198, 19, 0, 13)],
                ..Records::default()
            },
        );
        write_zone(&z, &server.dir.join("zone.json")).unwrap();
        let r = lookup(&server, 1, "web.a.svc.cluster.local", RecordType::A);
        assert_eq!(r.answers.len(), 1, "{r:?}");
        // A broken file keeps the zone served.
        std::fs::write(server.dir.join("zone.json"), b"{\"records\": ").unwrap();
        let r = lookup(&server, 2, "web.a.svc.cluster.local", RecordType::A);
        assert_eq!(r.answers.len(), 1, "{r:?}");
    }

    #[test]
    fn garbage() {
        let server = start("garbage");
        // Too short to carry an id: dropped.
        assert!(ask(&server, b"short", 0).is_none());
        // A header claiming 13,365 questions: FORMERR.
        let r = ask(&server, b"0123456789abcdefghijkl", 0x3031).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
        // Still serving.
        let r = lookup(
            &server,
            3,
            "backend.dev-app.svc.cluster.local",
            RecordType::A,
        );
        assert_eq!(r.answers.len(), 1);
    }

    /// Garbage never stops the server: a valid query after it is still answered.
    fn still_answers(server: &TestServer, garbage: &[u8]) {
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.send_to(garbage, server.addr).unwrap();
        let r = lookup(
            server,
            0xbeef,
            "backend.dev-app.svc.cluster.local",
            RecordType::A,
        );
        assert_eq!(r.answers.len(), 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn never_stops_answering(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let server = start("prop");
            still_answers(&server, &bytes);
        }

        #[test]
        fn never_stops_answering_near_valid(mut q in Just(query(3, "backend.dev-app.svc.cluster.local")),
                                            idx in 0usize..60, val in any::<u8>(), cut in 0usize..60) {
            let server = start("prop-near");
            if idx < q.len() { q[idx] = val; }
            q.truncate(q.len().saturating_sub(cut));
            still_answers(&server, &q);
        }
    }
}
