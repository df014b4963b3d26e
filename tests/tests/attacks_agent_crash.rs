//! An agent killed with SIGKILL and restarted under steady traffic (R4): pinned maps
//! and links keep enforcing while no agent runs, and the new agent takes over without
//! a gap. Zero packets of an established allowed flow may be dropped and zero packets
//! of a denied flow delivered; the figures are printed.
//!
//! Privileged: `cargo build --bin enforcer && cargo test -p enforcer-tests --test
//! attacks_agent_crash -- --test-threads=1 --nocapture`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use enforcer_tests::lab::{LabGuard, TempDir, fixture, serial};
use enforcer_tests::steady::{Echo, Sink, rss_kib, stream};

/// Default deny both ways in dev-app; frontend → backend on UDP 7000 allowed (both
/// legs); everything else denied, so a reply that lost its conntrack entry would be
/// dropped by the backend's egress policy.
const POLICY: &str = r"
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

/// The lab agent's pid (its command line names the lab's datastore).
fn agent_pid(lab: &LabGuard) -> Option<i32> {
    let datastore = lab.state_dir().join("datastore");
    let datastore = datastore.to_string_lossy();
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
fn agent_kill_9_and_restart_under_steady_traffic() {
    let _serial = serial();
    let lab = LabGuard::new("r4");
    let tmp = TempDir::new("r4");
    lab.up(
        &[
            &fixture("tutorial/dev-app-deployments.yaml"),
            &tmp.write("policy.yaml", POLICY),
        ],
        true,
    );
    let pods = lab.get_pods();
    let pod = |name: &str| {
        pods.iter()
            .find(|p| p.namespace == "dev-app" && p.name == name)
            .unwrap_or_else(|| panic!("no dev-app/{name}"))
            .clone()
    };
    let (frontend, backend) = (pod("frontend-0"), pod("backend-0"));
    let at = |ip: &str, port: u16| -> SocketAddr {
        format!("{ip}:{port}")
            .parse()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let echo = Echo::start(&backend.netns, at(&backend.ip, 7000));
    let sink = Sink::start(&frontend.netns, at(&frontend.ip, 7001));
    let old_agent = agent_pid(&lab).unwrap_or_else(|| panic!("no agent process"));
    let rss_before = rss_kib(old_agent);

    let run = Duration::from_secs(8);
    let allowed = stream(
        &frontend.netns,
        at(&backend.ip, 7000),
        Duration::from_millis(1),
        run,
        Duration::from_secs(1),
    );
    let denied = stream(
        &backend.netns,
        at(&frontend.ip, 7001),
        Duration::from_millis(2),
        run,
        Duration::from_millis(200),
    );
    std::thread::sleep(Duration::from_secs(2));
    let restarted = Instant::now();
    lab.run_ok(&["restart-agent", "--kill", "--down-ms", "2000"]);
    let restart_took = restarted.elapsed();
    let new_agent = agent_pid(&lab).unwrap_or_else(|| panic!("no agent after the restart"));
    let allowed = allowed
        .join()
        .unwrap_or_else(|_| panic!("allowed stream panicked"));
    let denied = denied
        .join()
        .unwrap_or_else(|_| panic!("denied stream panicked"));
    let echoed = echo.stop();
    let delivered = sink.stop();
    let rss_after = rss_kib(new_agent);

    println!(
        "R4 agent kill -9 + restart under traffic: agent down {restart_took:?} (pid {old_agent} -> {new_agent}); \
         allowed flow: {} sent, {} answered, {} lost ({echoed} echoed) over {:?}; \
         denied flow: {} sent, {delivered} delivered; agent RSS before {rss_before:?} KiB, after {rss_after:?} KiB",
        allowed.sent,
        allowed.answered,
        allowed.lost.len(),
        allowed.elapsed,
        denied.sent
    );
    assert_ne!(old_agent, new_agent, "the agent was restarted");
    assert!(allowed.sent > 1000, "{allowed:?}");
    assert!(
        allowed.lost.is_empty(),
        "allowed packets lost around the restart: {:?}",
        &allowed.lost[..allowed.lost.len().min(20)]
    );
    assert_eq!(delivered, 0, "denied packets delivered");
    assert!(denied.sent > 1000);
}
