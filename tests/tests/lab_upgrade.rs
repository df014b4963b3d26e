//! An agent upgrade between map layouts, under traffic: the lab's agent starts with a
//! deliberately different layout (a test salt in its layout id stands for the
//! previous release's maps), then is replaced by one of the current layout, which
//! builds new maps, fills them, copies conntrack, swaps the programs atomically and
//! removes the old pins. Meanwhile an established UDP flow that policy allows streams
//! without pause from the server back to its client, and a denied flow keeps trying:
//! - zero packets of the allowed flow are lost. They travel the reply direction only
//!   (the client spoke once, the server streams), so each needs the conntrack entry
//!   the upgrade carried over: the server's egress and the client's ingress are
//!   default-deny, a lost entry drops the stream;
//! - zero packets of the denied flow are delivered.
//!
//! Privileged: `cargo build --bin enforcer && cargo test -p enforcer-tests --test
//! lab_upgrade -- --test-threads=1`. Bounded: about 15 s of traffic.

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use enforcer_tests::lab::{LabGuard, TempDir, fixture, serial};
use enforcer_tests::traffic::enter_netns;

const APP: &str = "tutorial/dev-app-deployments.yaml";
const DENY_ALL: &str = "tutorial/networkpolicy-deny-all.yaml";

/// frontend → backend UDP 8080 and 9000, both directions' policies (dev-app is
/// default-deny for ingress and egress: what the backend sends back passes by
/// conntrack only).
const ALLOW_FRONTEND_TO_BACKEND: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: frontend-egress, namespace: dev-app}
spec:
  podSelector: {matchLabels: {app: frontend}}
  policyTypes: [Egress]
  egress:
  - to: [{podSelector: {matchLabels: {app: backend}}}]
    ports: [{protocol: UDP, port: 8080}, {protocol: UDP, port: 9000}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: backend-ingress, namespace: dev-app}
spec:
  podSelector: {matchLabels: {app: backend}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: frontend}}}]
    ports: [{protocol: UDP, port: 8080}, {protocol: UDP, port: 9000}]
";

/// The test layout's salt (`enforcer::dataplane::layout::TEST_SALT_ENV`).
const SALT_ENV: &str = "ENFORCER_TEST_LAYOUT_SALT";

fn markers(lab: &LabGuard) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(format!("/sys/fs/bpf/enforcer/{}", lab.name))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("layout-") || n.starts_with("staging-"))
        .collect();
    found.sort();
    found
}

/// Counts of one UDP flow.
#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    answered: AtomicU64,
}

/// Tries `to` from netns `from` until `stop`, counting answers (a denied flow).
fn knock(
    from: String,
    to: SocketAddr,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        enter_netns(&from).unwrap_or_else(|e| panic!("netns {from}: {e}"));
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap_or_else(|e| panic!("bind: {e}"));
        socket
            .connect(to)
            .unwrap_or_else(|e| panic!("connect: {e}"));
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap_or_else(|e| panic!("timeout: {e}"));
        let mut buf = [0u8; 512];
        while !stop.load(Ordering::Relaxed) {
            counts.sent.fetch_add(1, Ordering::Relaxed);
            let _ = socket.send(b"knock");
            if socket.recv(&mut buf).is_ok() {
                counts.answered.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
}

/// The stream's server, in netns `at`: waits for its client's first datagram, then
/// sends numbered datagrams back every millisecond until `stop`. Returns how many.
fn stream_server(
    at: String,
    port: u16,
    stop: Arc<AtomicBool>,
    ready: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        enter_netns(&at).unwrap_or_else(|e| panic!("netns {at}: {e}"));
        let socket =
            UdpSocket::bind(("0.0.0.0", port)).unwrap_or_else(|e| panic!("bind {port}: {e}"));
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap_or_else(|e| panic!("timeout: {e}"));
        ready.store(true, Ordering::Relaxed);
        let mut buf = [0u8; 64];
        let (_, client) = socket
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("no client: {e}"));
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            if socket.send_to(&sent.to_be_bytes(), client).is_ok() {
                sent += 1;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        sent
    })
}

/// The stream's client, in netns `from`: says hello once, then counts what arrives
/// until `stop` and a quiet moment after it. Returns (received, highest number + 1).
fn stream_client(
    from: String,
    to: SocketAddr,
    stop: Arc<AtomicBool>,
    started: Arc<AtomicU64>,
) -> std::thread::JoinHandle<(u64, u64)> {
    std::thread::spawn(move || {
        enter_netns(&from).unwrap_or_else(|e| panic!("netns {from}: {e}"));
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap_or_else(|e| panic!("bind: {e}"));
        socket
            .connect(to)
            .unwrap_or_else(|e| panic!("connect: {e}"));
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap_or_else(|e| panic!("timeout: {e}"));
        socket
            .send(b"hello")
            .unwrap_or_else(|e| panic!("hello: {e}"));
        let (mut received, mut next) = (0u64, 0u64);
        let mut buf = [0u8; 64];
        loop {
            match socket.recv(&mut buf) {
                Ok(8) => {
                    let n = u64::from_be_bytes(buf[..8].try_into().unwrap_or_default());
                    received += 1;
                    next = next.max(n + 1);
                    started.store(received, Ordering::Relaxed);
                }
                // Quiet: after the stop, the stream is over.
                Err(_) if stop.load(Ordering::Relaxed) => return (received, next),
                _ => {}
            }
        }
    })
}

fn pod_ip(lab: &LabGuard, name: &str) -> std::net::IpAddr {
    let pods = lab.get_pods();
    let pod = pods
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no pod {name}"));
    pod.ip.parse().unwrap_or_else(|e| panic!("{}: {e}", pod.ip))
}

fn netns(lab: &LabGuard, name: &str) -> String {
    lab.get_pods()
        .into_iter()
        .find(|p| p.name == name)
        .map_or_else(|| panic!("no pod {name}"), |p| p.netns)
}

#[test]
fn an_upgrade_between_layouts_under_traffic_drops_nothing_allowed_and_passes_nothing_denied() {
    let _serial = serial();
    let lab = LabGuard::new("upg");
    let tmp = TempDir::new("upgrade");
    let allow = tmp.write("allow.yaml", ALLOW_FRONTEND_TO_BACKEND);
    // The old agent: the test layout.
    let app = fixture(APP);
    let deny = fixture(DENY_ALL);
    let mut up = Command::new(&lab.bin);
    up.args(["lab", "--name", &lab.name, "up"]);
    if let Ok(attach) = std::env::var("ENFORCER_LAB_ATTACH")
        && !attach.is_empty()
    {
        up.args(["--attach", &attach]);
    }
    for f in [&app, &deny, &allow] {
        up.arg("-f").arg(f);
    }
    let out = up
        .env(SALT_ENV, "previous-release")
        .output()
        .unwrap_or_else(|e| panic!("lab up: {e}"));
    assert!(
        out.status.success(),
        "lab up: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let old_layout = markers(&lab);
    assert_eq!(old_layout.len(), 1, "one layout marker: {old_layout:?}");

    let backend_ip = pod_ip(&lab, "backend-0");
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicBool::new(false));
    let streamed = Arc::new(AtomicU64::new(0));
    let denied = Arc::new(Counts::default());
    let server = stream_server(
        netns(&lab, "backend-0"),
        9000,
        Arc::clone(&stop),
        Arc::clone(&ready),
    );
    while !ready.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let client = stream_client(
        netns(&lab, "frontend-0"),
        SocketAddr::new(backend_ip, 9000),
        Arc::clone(&stop),
        Arc::clone(&streamed),
    );
    let intruder = knock(
        netns(&lab, "database-0"),
        SocketAddr::new(backend_ip, 8080),
        Arc::clone(&stop),
        Arc::clone(&denied),
    );
    // The flow is established before the upgrade starts.
    let deadline = Instant::now() + Duration::from_secs(5);
    while streamed.load(Ordering::Relaxed) < 200 {
        assert!(
            Instant::now() < deadline,
            "the allowed stream does not flow"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The upgrade: the new agent, current layout (the salt is not passed on).
    let started = Instant::now();
    lab.run_ok(&["restart-agent"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = markers(&lab);
        if now.len() == 1 && now != old_layout {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the upgrade did not finish: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let upgraded_in = started.elapsed();
    // Traffic goes on a while under the new programs and maps.
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let sent = server.join().unwrap_or_else(|_| panic!("server panicked"));
    let (received, highest) = client.join().unwrap_or_else(|_| panic!("client panicked"));
    intruder
        .join()
        .unwrap_or_else(|_| panic!("intruder panicked"));

    let log = std::fs::read_to_string(lab.state_dir().join("logs/agent.log")).unwrap_or_default();
    assert!(
        log.contains("pinned maps of another layout: upgrading"),
        "{log}"
    );
    assert!(log.contains("upgrade done"), "{log}");
    let (tried, delivered) = (
        denied.sent.load(Ordering::Relaxed),
        denied.answered.load(Ordering::Relaxed),
    );
    println!(
        "upgrade {old_layout:?} -> {:?} in {upgraded_in:?}: allowed stream {sent} sent, {received} received, {} lost; denied flow {tried} tried, {delivered} answered",
        markers(&lab),
        sent.saturating_sub(received)
    );
    assert!(received > 2000, "too little traffic to judge: {received}");
    assert_eq!(highest, sent, "the last datagrams never arrived");
    assert_eq!(
        received, sent,
        "packets of the established allowed flow were dropped across the upgrade"
    );
    assert!(tried > 50, "the denied flow was hardly tried: {tried}");
    assert_eq!(
        delivered, 0,
        "packets of the denied flow were delivered across the upgrade"
    );
    // The old maps are gone; the new ones are pinned where tools look.
    let pins: Vec<String> = std::fs::read_dir(format!("/sys/fs/bpf/enforcer/{}", lab.name))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(pins.iter().any(|p| p == "ENF_CONNTRACK"), "{pins:?}");
    assert!(!pins.iter().any(|p| p.starts_with("staging-")), "{pins:?}");
}

/// Stops the lab's agent (SIGTERM: everything stays attached and pinned).
fn stop_agent(lab: &LabGuard) {
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(lab.state_dir().join("state.json")).unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("state.json: {e}"));
    let pid = state["agents"]["node1"]["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no agent pid in {state}"));
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "the agent did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn connected(lab: &LabGuard, from: &str, to: &str, port: &str) -> bool {
    let rows = lab.probe(&[
        "--from",
        from,
        "--to",
        to,
        "--port",
        port,
        "--protocol",
        "TCP",
    ]);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    rows[0].connected
}

#[test]
fn uninstall_takes_the_enforcer_off_the_node_on_purpose() {
    let _serial = serial();
    let lab = LabGuard::new("unin");
    lab.up(&[&fixture(APP), &fixture(DENY_ALL)], true);
    assert!(!connected(
        &lab,
        "dev-app/frontend-0",
        "dev-app/backend-0",
        "8080"
    ));
    stop_agent(&lab);
    // A stopped agent leaves enforcement in place.
    assert!(!connected(
        &lab,
        "dev-app/frontend-0",
        "dev-app/backend-0",
        "8080"
    ));
    let pins = format!("/sys/fs/bpf/enforcer/{}", lab.name);
    // The node's network namespace only (`ip netns exec` would remount /sys and hide
    // bpffs), as a DaemonSet's hostNetwork pod sees the node.
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/enf-{}-node", lab.name))
        .arg(&lab.bin)
        .args(["uninstall", "--node", "node1", "--bpffs", &pins])
        .output()
        .unwrap_or_else(|e| panic!("uninstall: {e}"));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{said}");
    // Every map the agent pins, counted from the code's own list.
    let maps = format!("{} maps", enforcer::dataplane::loader::PINNED_MAPS.len());
    assert!(said.contains(&maps), "{said}");
    assert!(!std::path::Path::new(&pins).exists(), "{pins} still there");
    // Nothing judges the traffic any more, once the kernel released the unpinned links
    // (after an RCU grace period, so not always before the first probe).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !connected(&lab, "dev-app/frontend-0", "dev-app/backend-0", "8080") {
        assert!(
            Instant::now() < deadline,
            "still denied 5 s after the uninstall"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let pod = lab
        .get_pods()
        .into_iter()
        .find(|p| p.name == "frontend-0")
        .unwrap_or_else(|| panic!("no frontend-0"));
    for dir in ["ingress", "egress"] {
        let filters = Command::new("ip")
            .args(["netns", "exec", &format!("enf-{}-node", lab.name)])
            .args(["tc", "filter", "show", "dev", &pod.interface, dir])
            .output()
            .unwrap_or_else(|e| panic!("tc: {e}"));
        let filters = String::from_utf8_lossy(&filters.stdout);
        assert!(!filters.contains("enforcer"), "{dir}: {filters}");
    }
}
