//! The agent on a Kubernetes API server (the lab's, `lab up --datastore kubernetes`),
//! under the faults a real cluster has: the server stopped while traffic flows, its
//! watch history expired (410), a permission taken away (403). And the agent's
//! `/metrics`, scraped and parsed as Prometheus parses it, against `enforcer inspect
//! counters`.
//!
//! Privileged: `cargo build --bin enforcer && cargo test -p enforcer-tests --test
//! lab_kubernetes -- --test-threads=1`.

use std::process::Command;
use std::time::{Duration, Instant};

use enforcer::datastore::file::FileDatastore;
use enforcer_tests::lab::{LabGuard, fixture, serial};

const APP: &str = "tutorial/dev-app-deployments.yaml";
const CLIENT: &str = "tutorial-fixes/client.yaml";
const DENY_ALL: &str = "tutorial/networkpolicy-deny-all.yaml";
const ALLOW_FRONTEND: &str = "tutorial/networkpolicy-allow-frontend-ingress.yaml";

/// A lab whose agent reads the lab's API server, with the app, a client outside it,
/// and dev-app's default deny.
fn kubernetes_lab(prefix: &str) -> LabGuard {
    let lab = LabGuard::new(prefix);
    let files = [fixture(APP), fixture(CLIENT), fixture(DENY_ALL)];
    let mut args = vec![
        "up".to_owned(),
        "--datastore".to_owned(),
        "kubernetes".to_owned(),
    ];
    for f in &files {
        args.extend(["-f".to_owned(), f.to_string_lossy().into_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.run_ok(&args);
    lab
}

fn connected(lab: &LabGuard, from: &str, to: &str, port: u16, protocol: &str) -> bool {
    let port = port.to_string();
    let rows = lab.probe(&[
        "--from",
        from,
        "--to",
        to,
        "--port",
        &port,
        "--protocol",
        protocol,
    ]);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    rows[0].connected
}

/// `curl` of the agent's health endpoint inside the node: (HTTP status, body).
fn health(lab: &LabGuard, path: &str) -> (u16, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", &format!("enf-{}-node", lab.name)])
        .args(["curl", "-s", "-m", "5", "-w", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:9091{path}"))
        .output()
        .unwrap_or_else(|e| panic!("curl: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// Waits (bounded) until `/readyz` answers `code`; returns its body.
fn wait_ready(lab: &LabGuard, code: u16, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let (got, body) = health(lab, "/readyz");
        if got == code {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {got} (wanted {code}) for {within:?}: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The flows this file checks: DNS from the client (no policy: allowed) and the
/// client to dev-app's frontend (default deny: denied, until allowed).
fn expect_enforced(lab: &LabGuard, frontend_open: bool, what: &str) {
    assert!(
        connected(lab, "client/client", "kube-system/coredns-0", 53, "UDP"),
        "{what}: DNS from the client must stay allowed"
    );
    assert_eq!(
        connected(lab, "client/client", "dev-app/frontend-0", 80, "TCP"),
        frontend_open,
        "{what}: client -> frontend:80"
    );
}

#[test]
fn api_server_outage_keeps_enforcement_and_readiness_follows_it() {
    let _serial = serial();
    let lab = kubernetes_lab("kout");
    wait_ready(&lab, 200, Duration::from_secs(30));
    expect_enforced(&lab, false, "before the outage");

    lab.run_ok(&["api-server", "stop"]);
    let stopped = Instant::now();
    let body = wait_ready(&lab, 503, Duration::from_secs(10));
    assert!(body.contains("datastore unavailable"), "{body}");
    // Traffic goes on for 10 s, judged by the policy in force.
    let mut rounds = 0;
    while stopped.elapsed() < Duration::from_secs(10) {
        expect_enforced(&lab, false, "while the API server is stopped");
        rounds += 1;
    }
    assert!(rounds >= 2, "only {rounds} probe rounds in 10 s");
    assert_eq!(health(&lab, "/readyz").0, 503);

    // A change made meanwhile (written to the store behind the API server, as
    // another replica would): served once the server is back, read by a relist.
    let store = FileDatastore::open(lab.state_dir().join("datastore"))
        .unwrap_or_else(|e| panic!("datastore: {e}"));
    let objects: Vec<_> = enforcer::model::load_paths(&[fixture(ALLOW_FRONTEND)])
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|l| l.object)
        .collect();
    store.apply(&objects).unwrap_or_else(|e| panic!("{e}"));
    lab.run_ok(&["api-server", "start"]);
    wait_ready(&lab, 200, Duration::from_secs(45));
    // `lab probe` waits until the agent observed the change.
    expect_enforced(&lab, true, "after the API server came back");
}

#[test]
fn a_forced_410_relists_without_dropping_enforcement() {
    let _serial = serial();
    let lab = kubernetes_lab("kgone");
    wait_ready(&lab, 200, Duration::from_secs(30));
    let restarts = |lab: &LabGuard| {
        let (_, text) = health(lab, "/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix("enforcer_datastore_watch_restarts_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no watch restart counter in:\n{text}"))
    };
    assert!(restarts(&lab) < 1.0);
    lab.run_ok(&["api-server", "expire"]);
    // Every watch resumes from a version the server forgot: 410, relist.
    let deadline = Instant::now() + Duration::from_secs(20);
    while restarts(&lab) < 10.0 {
        assert!(
            Instant::now() < deadline,
            "the watches did not relist after a 410"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    expect_enforced(&lab, false, "after the relist");
    wait_ready(&lab, 200, Duration::from_secs(10));
    // The watches work on: a change is read and enforced.
    lab.apply(&fixture(ALLOW_FRONTEND));
    expect_enforced(&lab, true, "after a change following the relist");
}

#[test]
fn a_forbidden_resource_is_named_and_the_rest_keeps_flowing() {
    let _serial = serial();
    let lab = kubernetes_lab("kdeny");
    wait_ready(&lab, 200, Duration::from_secs(30));
    lab.run_ok(&["api-server", "revoke", "--resource", "pods"]);
    let body = wait_ready(&lab, 503, Duration::from_secs(10));
    assert!(
        body.contains("forbidden: the agent may not") && body.contains("pods"),
        "{body}"
    );
    assert!(body.contains("ClusterRole"), "{body}");
    // Policies are still read and enforced while pods cannot be.
    lab.apply(&fixture(ALLOW_FRONTEND));
    expect_enforced(&lab, true, "policy changed while pods are forbidden");
    assert_eq!(health(&lab, "/readyz").0, 503);
    lab.run_ok(&["api-server", "grant", "--resource", "pods"]);
    wait_ready(&lab, 200, Duration::from_secs(20));
}

/// `enforcer inspect counters -o json` of the lab: (hook, reason) → packets.
fn inspect_counters(lab: &LabGuard) -> Vec<(String, String, f64)> {
    let out = Command::new(&lab.bin)
        .args(["inspect", "counters", "-o", "json", "--bpffs"])
        .arg(format!("/sys/fs/bpf/enforcer/{}", lab.name))
        .output()
        .unwrap_or_else(|e| panic!("inspect: {e}"));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "inspect output: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let mut counters: Vec<(String, String, f64)> = rows
        .iter()
        .map(|r| {
            (
                r["hook"].as_str().unwrap_or_default().to_owned(),
                r["reason"].as_str().unwrap_or_default().to_owned(),
                r["packets"].as_f64().unwrap_or_default(),
            )
        })
        .collect();
    counters.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    counters
}

/// A per-rule counter: (namespace/name of the policy, rule, direction, action) → packets.
type RuleRow = (String, String, String, String, f64);

/// `enforcer inspect rules -o json` of the lab, as [`RuleRow`]s.
fn inspect_rules(lab: &LabGuard) -> Vec<RuleRow> {
    let out = Command::new(&lab.bin)
        .args(["inspect", "rules", "-o", "json", "--bpffs"])
        .arg(format!("/sys/fs/bpf/enforcer/{}", lab.name))
        .output()
        .unwrap_or_else(|e| panic!("inspect: {e}"));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "inspect rules output: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let mut rules: Vec<RuleRow> = rows
        .iter()
        .map(|r| {
            let policy = &r["policy"];
            (
                format!(
                    "{}/{}",
                    policy["namespace"].as_str().unwrap_or_default(),
                    policy["name"].as_str().unwrap_or_default()
                ),
                r["rule"]
                    .as_u64()
                    .map_or_else(|| "default".to_owned(), |n| n.to_string()),
                r["direction"].as_str().unwrap_or_default().to_owned(),
                r["action"].as_str().unwrap_or_default().to_owned(),
                r["packets"].as_f64().unwrap_or_default(),
            )
        })
        .collect();
    rules.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    rules
}

/// `enforcer_rule_packets_total` of a scrape, as [`RuleRow`]s.
fn scraped_rules(scrape: &prometheus_parse::Scrape) -> Vec<RuleRow> {
    let mut rules: Vec<RuleRow> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "enforcer_rule_packets_total")
        .map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                ref other => panic!("enforcer_rule_packets_total is {other:?}"),
            };
            let label = |name: &str| s.labels.get(name).unwrap_or_default().to_owned();
            (
                format!("{}/{}", label("namespace"), label("policy")),
                label("rule"),
                label("direction"),
                label("action"),
                value,
            )
        })
        .collect();
    rules.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    rules
}

#[test]
fn metrics_parse_as_prometheus_text_and_match_inspect_counters() {
    let _serial = serial();
    let lab = LabGuard::new("kmet");
    lab.up(&[&fixture(APP), &fixture(CLIENT), &fixture(DENY_ALL)], true);
    // Some allowed and some denied packets to count.
    expect_enforced(&lab, false, "traffic to count");
    // The lab is quiet now: both readings see the same counters.
    let (code, text) = health(&lab, "/metrics");
    assert_eq!(code, 200, "{text}");
    let counters = inspect_counters(&lab);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{text}"));
    let mut packets: Vec<(String, String, f64)> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "enforcer_packets_total")
        .map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                ref other => panic!("enforcer_packets_total is {other:?}"),
            };
            (
                s.labels.get("hook").unwrap_or_default().to_owned(),
                s.labels.get("reason").unwrap_or_default().to_owned(),
                value,
            )
        })
        .collect();
    packets.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert!(!packets.is_empty(), "no packet counters in:\n{text}");
    assert!(packets.iter().any(|p| p.1 == "deny_policy"), "{packets:?}");
    assert_eq!(
        packets, counters,
        "/metrics and `enforcer inspect counters` disagree"
    );
    // Per-rule counters: the same as `enforcer inspect rules`, the default deny's
    // denials among them.
    let rules = scraped_rules(&scrape);
    assert!(
        rules.iter().any(|r| r.3 == "deny" && r.4 >= 1.0),
        "no rule denied anything: {rules:?}\n{text}"
    );
    assert_eq!(
        rules,
        inspect_rules(&lab),
        "/metrics and `enforcer inspect rules` disagree"
    );
    let value = |name: &str| {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"));
        match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        }
    };
    assert!(value("enforcer_policy_applies_total") >= 1.0);
    assert!(value("enforcer_conntrack_entries") >= 1.0);
    assert!(value("enforcer_datastore_available") > 0.5);
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "enforcer_policy_apply_seconds_count"),
        "no apply latency histogram"
    );
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "enforcer_map_fill_ratio"
                && s.labels.get("map") == Some("ENF_VERDICTS")),
        "no map fill ratio"
    );
}
