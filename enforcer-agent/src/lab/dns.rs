//! The cluster DNS of the lab (the `kube-dns` pod): UDP and TCP, A/AAAA/PTR from a
//! zone file the lab rewrites on every change, NXDOMAIN for everything else.
//!
//! Names: `<service>.<namespace>.svc.cluster.local` → the `ClusterIP` (headless Services:
//! the selected pods' addresses); `<a-b-c-d>.<namespace>.pod.cluster.local` → the pod;
//! PTR for pod and `ClusterIP` addresses. Short forms work through the pods'
//! resolv.conf search path. Queries are parsed defensively: garbage is dropped or
//! answered FORMERR, never a panic.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::model::Service;

use super::topology::PlannedPod;

pub const DOMAIN: &str = "cluster.local";
const TTL: u32 = 5;
const TYPE_A: u16 = 1;
const TYPE_PTR: u16 = 12;
const TYPE_AAAA: u16 = 28;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;
const RCODE_FORMERR: u8 = 1;
const RCODE_NXDOMAIN: u8 = 3;
const RCODE_NOTIMP: u8 = 4;
const RCODE_REFUSED: u8 = 5;
const UDP_LIMIT: usize = 512;

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
}

/// Records of one name.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Records {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub a: Vec<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aaaa: Vec<Ipv6Addr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ptr: Vec<String>,
}

/// The zone file: lowercase names without the trailing dot → records.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Zone {
    pub records: BTreeMap<String, Records>,
}

fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::new();
            for byte in v6.octets().iter().rev() {
                let _ = write!(s, "{:x}.{:x}.", byte & 0xf, byte >> 4);
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

impl Zone {
    pub fn build(services: &[Service], pods: &BTreeMap<String, PlannedPod>) -> Self {
        let mut zone = Zone::default();
        for pod in pods.values() {
            let name = format!(
                "{}.{}.pod.{DOMAIN}",
                pod.ipv4.to_string().replace('.', "-"),
                pod.namespace()
            );
            let rec = zone.records.entry(name.clone()).or_default();
            rec.a.push(pod.ipv4);
            rec.aaaa.push(pod.ipv6);
            for ip in [IpAddr::V4(pod.ipv4), IpAddr::V6(pod.ipv6)] {
                zone.records
                    .entry(reverse_name(ip))
                    .or_default()
                    .ptr
                    .push(name.clone());
            }
        }
        for svc in services {
            let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
            let name = format!("{}.{ns}.svc.{DOMAIN}", svc.metadata.name);
            if let Some(Ok(ip)) = svc.spec.cluster_ip.as_deref().map(str::parse::<Ipv4Addr>) {
                zone.records.entry(name.clone()).or_default().a.push(ip);
                zone.records
                    .entry(reverse_name(IpAddr::V4(ip)))
                    .or_default()
                    .ptr
                    .push(name);
            } else {
                // Headless: the selected pods themselves.
                let rec = zone.records.entry(name).or_default();
                for pod in pods.values().filter(|p| p.namespace() == ns) {
                    let selected = !svc.spec.selector.is_empty()
                        && svc
                            .spec
                            .selector
                            .iter()
                            .all(|(k, v)| pod.pod.metadata.labels.get(k) == Some(v));
                    if selected {
                        rec.a.push(pod.ipv4);
                        rec.aaaa.push(pod.ipv6);
                    }
                }
            }
        }
        zone
    }

    pub fn write(&self, path: &Path) -> Result<(), DnsError> {
        let text = serde_json::to_vec_pretty(self).map_err(|e| DnsError::Zone {
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

    /// True if some record lies at or under `name` (then `name` exists, maybe empty).
    fn has_name_or_descendant(&self, name: &str) -> bool {
        let suffix = format!(".{name}");
        self.records.contains_key(name) || self.records.keys().any(|k| k.ends_with(&suffix))
    }
}

/// A parsed question.
#[derive(Debug, PartialEq, Eq)]
struct Question {
    name: String,
    qtype: u16,
    qclass: u16,
    /// End offset of the question section in the message.
    end: usize,
}

fn parse_question(msg: &[u8]) -> Option<Question> {
    let mut pos = 12;
    let mut labels: Vec<String> = Vec::new();
    let mut total = 0usize;
    loop {
        let len = *msg.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        // Compression pointers (0b11) and the reserved label types are not valid here.
        if len > 63 {
            return None;
        }
        let label = msg.get(pos..pos + len)?;
        total += len + 1;
        if total > 255 {
            return None;
        }
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        pos += len;
    }
    let fixed = msg.get(pos..pos + 4)?;
    Some(Question {
        name: labels.join("."),
        qtype: u16::from_be_bytes([fixed[0], fixed[1]]),
        qclass: u16::from_be_bytes([fixed[2], fixed[3]]),
        end: pos + 4,
    })
}

fn encode_name(name: &str, out: &mut Vec<u8>) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let bytes = &label.as_bytes()[..label.len().min(63)];
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }
    out.push(0);
}

/// The reply to one query message, or `None` when it should be dropped (too short to
/// carry an id, or itself a response). `limit` caps the size (UDP: 512, sets TC).
pub fn answer(query: &[u8], zone: &Zone, limit: usize) -> Option<Vec<u8>> {
    let header = query.get(..12)?;
    let flags_in = u16::from_be_bytes([header[2], header[3]]);
    if flags_in & 0x8000 != 0 {
        return None;
    }
    let opcode = ((flags_in >> 11) & 0xf) as u8;
    let rd = flags_in & 0x0100;
    let qdcount = u16::from_be_bytes([header[4], header[5]]);
    let reply = |rcode: u8, question: Option<&[u8]>, answers: &[Vec<u8>]| {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(&header[..2]);
        let mut flags: u16 =
            0x8000 | (u16::from(opcode) << 11) | 0x0400 | rd | 0x0080 | u16::from(rcode);
        let mut body = Vec::new();
        let mut count: u16 = 0;
        let base = 12 + question.map_or(0, <[u8]>::len);
        for rr in answers {
            if base + body.len() + rr.len() > limit {
                flags |= 0x0200; // TC: the client retries over TCP
                break;
            }
            body.extend_from_slice(rr);
            count += 1;
        }
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&u16::from(question.is_some()).to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        if let Some(q) = question {
            out.extend_from_slice(q);
        }
        out.extend_from_slice(&body);
        out
    };
    let Some(question) = (if qdcount == 1 {
        parse_question(query)
    } else {
        None
    }) else {
        return Some(reply(RCODE_FORMERR, None, &[]));
    };
    let qbytes = &query[12..question.end];
    if opcode != 0 {
        return Some(reply(RCODE_NOTIMP, Some(qbytes), &[]));
    }
    if question.qclass != CLASS_IN && question.qclass != TYPE_ANY {
        return Some(reply(RCODE_REFUSED, Some(qbytes), &[]));
    }
    let rr = |rtype: u16, rdata: &[u8]| {
        let mut r = vec![0xc0, 0x0c]; // pointer to the question's name
        r.extend_from_slice(&rtype.to_be_bytes());
        r.extend_from_slice(&CLASS_IN.to_be_bytes());
        r.extend_from_slice(&TTL.to_be_bytes());
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(rdata);
        r
    };
    let Some(records) = zone.records.get(&question.name) else {
        let rcode = if zone.has_name_or_descendant(&question.name) {
            0
        } else {
            RCODE_NXDOMAIN
        };
        return Some(reply(rcode, Some(qbytes), &[]));
    };
    let mut answers = Vec::new();
    if matches!(question.qtype, TYPE_A | TYPE_ANY) {
        answers.extend(records.a.iter().map(|ip| rr(TYPE_A, &ip.octets())));
    }
    if matches!(question.qtype, TYPE_AAAA | TYPE_ANY) {
        answers.extend(records.aaaa.iter().map(|ip| rr(TYPE_AAAA, &ip.octets())));
    }
    if matches!(question.qtype, TYPE_PTR | TYPE_ANY) {
        for target in &records.ptr {
            let mut rdata = Vec::new();
            encode_name(target, &mut rdata);
            answers.push(rr(TYPE_PTR, &rdata));
        }
    }
    Some(reply(0, Some(qbytes), &answers))
}

/// A query for `name` (type A), as the probe sends it to UDP ports.
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    encode_name(name, &mut out);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out
}

/// The zone as last read, reloaded when the file changes (it is replaced by rename).
struct ZoneCache {
    path: PathBuf,
    stamp: Option<(SystemTime, u64)>,
    zone: Arc<Zone>,
}

impl ZoneCache {
    fn current(&mut self) -> Arc<Zone> {
        use std::os::unix::fs::MetadataExt;
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .and_then(|m| m.modified().ok().map(|t| (t, m.ino())));
        if stamp != self.stamp {
            match std::fs::read(&self.path).map(|b| serde_json::from_slice::<Zone>(&b)) {
                Ok(Ok(zone)) => {
                    tracing::info!(names = zone.records.len(), "zone loaded");
                    self.zone = Arc::new(zone);
                    self.stamp = stamp;
                }
                Ok(Err(e)) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "bad zone file, keeping the old zone");
                }
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot read zone file");
                }
            }
        }
        Arc::clone(&self.zone)
    }
}

fn serve_tcp_conn(mut stream: TcpStream, cache: &Mutex<ZoneCache>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    loop {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).is_err() {
            return;
        }
        let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
        if stream.read_exact(&mut msg).is_err() {
            return;
        }
        let zone = cache.lock().map(|mut c| c.current()).unwrap_or_default();
        let Some(reply) = answer(&msg, &zone, usize::from(u16::MAX)) else {
            return;
        };
        let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&reply);
        if stream.write_all(&framed).is_err() {
            return;
        }
    }
}

/// Runs the DNS server on `ports` (UDP and TCP, IPv4 and IPv6) until killed. Writes
/// `ready_file` once every socket is bound.
pub fn serve(zone_path: &Path, ports: &[u16], ready_file: &Path) -> Result<(), DnsError> {
    let cache = Arc::new(Mutex::new(ZoneCache {
        path: zone_path.to_path_buf(),
        stamp: None,
        zone: Arc::new(Zone::default()),
    }));
    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    let ports: BTreeSet<u16> = ports.iter().copied().collect();
    for port in ports {
        // `[::]` with IPV6_V6ONLY off (the netns default) serves IPv4 too.
        let addr = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
        udp.push(UdpSocket::bind(addr).map_err(|source| DnsError::Bind {
            protocol: "UDP",
            addr,
            source,
        })?);
        tcp.push(TcpListener::bind(addr).map_err(|source| DnsError::Bind {
            protocol: "TCP",
            addr,
            source,
        })?);
    }
    if let Ok(mut c) = cache.lock() {
        c.current();
    }
    super::responder::write_ready(ready_file).map_err(|source| DnsError::Zone {
        op: "write ready file",
        path: ready_file.to_path_buf(),
        source,
    })?;
    tracing::info!("DNS server ready");
    let mut threads = Vec::new();
    for socket in udp {
        let cache = Arc::clone(&cache);
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let zone = cache.lock().map(|mut c| c.current()).unwrap_or_default();
                if let Some(reply) = answer(&buf[..n], &zone, UDP_LIMIT) {
                    let _ = socket.send_to(&reply, peer);
                }
            }
        }));
    }
    for listener in tcp {
        let cache = Arc::clone(&cache);
        threads.push(std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let cache = Arc::clone(&cache);
                std::thread::spawn(move || serve_tcp_conn(stream, &cache));
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
    use proptest::prelude::*;

    use super::*;

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

    fn rcode(reply: &[u8]) -> u8 {
        reply[3] & 0xf
    }

    #[test]
    fn a_aaaa_nxdomain() {
        let z = zone();
        let r = answer(
            &query(7, "Backend.dev-app.svc.cluster.local", TYPE_A),
            &z,
            UDP_LIMIT,
        )
        .unwrap();
        assert_eq!(&r[..2], &[0, 7]);
        assert_eq!(rcode(&r), 0);
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1);
        assert_eq!(&r[r.len() - 4..], &[198, 19, 0, 12]);
        // AAAA of an existing name: NOERROR, no answer.
        let r = answer(
            &query(8, "backend.dev-app.svc.cluster.local", TYPE_AAAA),
            &z,
            UDP_LIMIT,
        )
        .unwrap();
        assert_eq!((rcode(&r), u16::from_be_bytes([r[6], r[7]])), (0, 0));
        // An empty non-terminal exists; an unknown name does not.
        let r = answer(
            &query(9, "dev-app.svc.cluster.local", TYPE_A),
            &z,
            UDP_LIMIT,
        )
        .unwrap();
        assert_eq!(rcode(&r), 0);
        let r = answer(
            &query(9, "nosuch.dev-app.svc.cluster.local", TYPE_A),
            &z,
            UDP_LIMIT,
        )
        .unwrap();
        assert_eq!(rcode(&r), RCODE_NXDOMAIN);
        let r = answer(&query(9, "google.com", TYPE_A), &z, UDP_LIMIT).unwrap();
        assert_eq!(rcode(&r), RCODE_NXDOMAIN);
    }

    #[test]
    fn garbage() {
        let z = zone();
        assert_eq!(answer(b"short", &z, UDP_LIMIT), None);
        let r = answer(b"0123456789abcdefghijkl", &z, UDP_LIMIT).unwrap();
        assert_eq!(rcode(&r), RCODE_FORMERR);
        let mut q = query(1, "backend.dev-app.svc.cluster.local", TYPE_A);
        q[12] = 0xc0; // a pointer in the question
        assert_eq!(rcode(&answer(&q, &z, UDP_LIMIT).unwrap()), RCODE_FORMERR);
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("198.19.0.10".parse().unwrap()),
            "10.0.19.198.in-addr.arpa"
        );
        assert!(reverse_name("2001:2::a".parse().unwrap()).starts_with("a.0.0.0.0.0.0.0"));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = answer(&bytes, &zone(), UDP_LIMIT);
        }

        #[test]
        fn never_panics_near_valid(mut q in Just(query(3, "backend.dev-app.svc.cluster.local", TYPE_A)),
                                   idx in 0usize..60, val in any::<u8>(), cut in 0usize..60) {
            if idx < q.len() { q[idx] = val; }
            q.truncate(q.len().saturating_sub(cut));
            let _ = answer(&q, &zone(), UDP_LIMIT);
        }
    }
}
