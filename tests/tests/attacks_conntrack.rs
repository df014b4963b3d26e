//! Conntrack exhaustion (security item 15), in the lab: a pod whose egress policy
//! denies everything sends a million new flows (UDP to a Service VIP, every
//! destination port from 16 source ports). The enforcer must not crash, and flows
//! established between other pods before the flood must survive it: their conntrack
//! entries must not be evicted by entries the denied pod made the dataplane create.
//! (Checked with datagrams only conntrack lets through: the server sends first on each
//! flow, and its egress policy denies new flows.)
//! The figures are printed; the flood is bounded (a million datagrams, at most 30 s).
//!
//! Privileged: `cargo build --bin enforcer && cargo test -p enforcer-tests --test
//! attacks_conntrack -- --test-threads=1 --nocapture`.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use enforcer_tests::lab::{LabGuard, TempDir, fixture, serial};
use enforcer_tests::steady::rss_kib;
use enforcer_tests::traffic::enter_netns;

const SETUP: &str = r"
apiVersion: v1
kind: Namespace
metadata: {name: evil}
---
apiVersion: v1
kind: Pod
metadata: {name: attacker, namespace: evil, labels: {app: attacker}}
spec: {containers: [{name: c}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: evil}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
---
apiVersion: v1
kind: Service
metadata: {name: backend-vip, namespace: dev-app}
spec: {clusterIP: 198.19.0.77, selector: {app: backend}, ports: [{port: 8080}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: dev-app}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: frontend-egress, namespace: dev-app}
spec:
  podSelector: {matchLabels: {app: frontend}}
  egress:
  - to: [{podSelector: {matchLabels: {app: backend}}}]
    ports: [{port: 7000, protocol: UDP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: backend-ingress, namespace: dev-app}
spec:
  podSelector: {matchLabels: {app: backend}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: frontend}}}]
    ports: [{port: 7000, protocol: UDP}]
";

const VIP: [u8; 4] = [198, 19, 0, 77];
const ESTABLISHED: usize = 64;
const FLOOD_SOURCES: u16 = 16;
const FLOOD_BOUND: Duration = Duration::from_secs(30);

/// A UDP socket bound to `at` in `netns`.
fn bound_in(netns: &str, at: SocketAddr) -> UdpSocket {
    let owned = netns.to_owned();
    std::thread::spawn(move || -> std::io::Result<UdpSocket> {
        enter_netns(&owned)?;
        let s = UdpSocket::bind(at)?;
        s.set_read_timeout(Some(Duration::from_millis(500)))?;
        Ok(s)
    })
    .join()
    .unwrap_or_else(|_| panic!("socket thread panicked"))
    .unwrap_or_else(|e| panic!("bind {at} in {netns}: {e}"))
}

/// `n` UDP sockets bound in `netns` (each a flow of its own to wherever it sends).
fn sockets_in(netns: &str, n: usize) -> Vec<UdpSocket> {
    let owned = netns.to_owned();
    std::thread::spawn(move || -> std::io::Result<Vec<UdpSocket>> {
        enter_netns(&owned)?;
        (0..n)
            .map(|_| {
                let s = UdpSocket::bind("0.0.0.0:0")?;
                s.set_read_timeout(Some(Duration::from_millis(500)))?;
                Ok(s)
            })
            .collect()
    })
    .join()
    .unwrap_or_else(|_| panic!("socket thread panicked"))
    .unwrap_or_else(|e| panic!("sockets in {netns}: {e}"))
}

/// Each client sends one datagram to the server, which answers it: the flows are
/// established. Returns the clients' addresses as the server sees them.
fn establish(clients: &[UdpSocket], server: &UdpSocket, to: SocketAddr) -> Vec<SocketAddr> {
    let mut buf = [0u8; 16];
    let mut peers = Vec::new();
    for client in clients {
        let _ = client.send_to(b"ping", to);
        if let Ok((_, peer)) = server.recv_from(&mut buf) {
            let _ = server.send_to(b"pong", peer);
            peers.push(peer);
        }
    }
    let answered = clients
        .iter()
        .filter(|c| c.recv_from(&mut buf).is_ok())
        .count();
    assert_eq!(answered, clients.len(), "flows established");
    peers
}

/// The server sends first on each established flow (a datagram only conntrack lets
/// out: the server's egress policy denies new flows); how many clients receive it.
fn server_push(clients: &[UdpSocket], server: &UdpSocket, peers: &[SocketAddr]) -> usize {
    for peer in peers {
        let _ = server.send_to(b"push", *peer);
    }
    let mut buf = [0u8; 16];
    clients
        .iter()
        .filter(|c| c.recv_from(&mut buf).is_ok_and(|(n, _)| n == 4))
        .count()
}

/// `enforcer inspect conntrack -o json` row count of the lab's node.
fn conntrack_entries(lab: &LabGuard) -> Option<usize> {
    // One node: its pins are under the lab's own directory.
    let bpffs = format!("/sys/fs/bpf/enforcer/{}", lab.name);
    let out = std::process::Command::new(&lab.bin)
        .args(["inspect", "--bpffs"])
        .arg(bpffs)
        .args(["-o", "json", "conntrack"])
        .output()
        .ok()?;
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).ok()?;
    Some(rows.len())
}

fn agent_pid(lab: &LabGuard) -> Option<i32> {
    let datastore = lab.state_dir().join("datastore");
    let datastore = datastore.to_string_lossy().into_owned();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let raw = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
        let is_agent = args.iter().any(|a| *a == b"agent")
            && args
                .windows(2)
                .any(|w| w[0] == b"--datastore" && w[1] == datastore.as_bytes());
        is_agent.then_some(pid)
    })
}

#[test]
fn a_million_flows_from_a_denied_pod_evict_no_established_flow() {
    let _serial = serial();
    let lab = LabGuard::new("ct15");
    let tmp = TempDir::new("ct15");
    lab.up(
        &[
            &fixture("tutorial/dev-app-deployments.yaml"),
            &tmp.write("setup.yaml", SETUP),
        ],
        true,
    );
    let pods = lab.get_pods();
    let pod = |key: &str| {
        pods.iter()
            .find(|p| format!("{}/{}", p.namespace, p.name) == key)
            .unwrap_or_else(|| panic!("no {key}"))
            .clone()
    };
    let (frontend, backend, attacker) = (
        pod("dev-app/frontend-0"),
        pod("dev-app/backend-0"),
        pod("evil/attacker"),
    );
    let echo_at: SocketAddr = format!("{}:7000", backend.ip)
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let server = bound_in(&backend.netns, echo_at);
    let flows = sockets_in(&frontend.netns, ESTABLISHED);
    let peers = establish(&flows, &server, echo_at);
    assert_eq!(
        server_push(&flows, &server, &peers),
        ESTABLISHED,
        "the server reaches its clients on their flows"
    );
    let agent = agent_pid(&lab).unwrap_or_else(|| panic!("no agent"));
    let rss_before = rss_kib(agent);
    let entries_before = conntrack_entries(&lab);

    // The flood: every destination port of the VIP from each source port.
    let flood = sockets_in(&attacker.netns, usize::from(FLOOD_SOURCES));
    let started = Instant::now();
    let mut sent = 0u64;
    let mut failed = 0u64;
    'flood: for port in 1..=u16::MAX {
        for socket in &flood {
            if socket
                .send_to(&[0u8], SocketAddr::from((VIP, port)))
                .is_ok()
            {
                sent += 1;
            } else {
                failed += 1;
            }
        }
        if started.elapsed() > FLOOD_BOUND {
            break 'flood;
        }
    }
    let flood_took = started.elapsed();
    // Give the last packets time to be judged.
    std::thread::sleep(Duration::from_millis(500));

    let survived = server_push(&flows, &server, &peers);
    let entries_after = conntrack_entries(&lab);
    let alive = std::path::Path::new(&format!("/proc/{agent}")).exists();
    let rss_after = rss_kib(agent);
    println!(
        "conntrack flood: {sent} new flows sent ({failed} sends failed) from a denied pod in {flood_took:?}; \
         established flows surviving: {survived}/{ESTABLISHED}; conntrack entries before {entries_before:?}, after {entries_after:?}; \
         agent alive: {alive}; agent RSS before {rss_before:?} KiB, after {rss_after:?} KiB"
    );
    assert!(alive, "the agent must survive the flood");
    assert!(sent >= 1_000_000 || flood_took > FLOOD_BOUND, "{sent}");
    assert_eq!(
        survived, ESTABLISHED,
        "established flows evicted by the flood"
    );
    // Denied flows take no conntrack entry (nor any other state that could crowd
    // out the established ones).
    if let (Some(before), Some(after)) = (entries_before, entries_after) {
        assert!(
            after < before + 1000,
            "a denied pod's flows filled conntrack: {before} -> {after} entries"
        );
    }
    // The agent still applies changes.
    lab.apply(&tmp.write(
        "more.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: nothing, namespace: evil}\nspec: {podSelector: {matchLabels: {app: none}}}\n",
    ));
}
