//! The agent on a Kubernetes API server (the lab's, `lab up --datastore kubernetes`),
//! under the faults a real cluster has: the server stopped while traffic flows, its
//! watch history expired (410), a permission taken away (403), a malformed object
//! among good ones; with no more capabilities than the `DaemonSet` grants. And the agent's
//! `/metrics`, scraped and parsed as Prometheus parses it, against `enforcer inspect
//! counters`.
//!
//! Privileged: `cargo build --bin enforcer && cargo test -p enforcer-tests --test
//! lab_kubernetes -- --test-threads=1`.

use std::process::Command;
use std::time::{Duration, Instant};

use enforcer::datastore::file::FileDatastore;
use enforcer::datastore::status::Fallback;
use enforcer::lab::apiserver::client::ApiClient;
use enforcer_tests::lab::{LabGuard, TempDir, fixture, serial};
use serde_json::{Value, json};

const APP: &str = "tutorial/dev-app-deployments.yaml";
const CLIENT: &str = "tutorial-fixes/client.yaml";
const DENY_ALL: &str = "tutorial/networkpolicy-deny-all.yaml";
const ALLOW_FRONTEND: &str = "tutorial/networkpolicy-allow-frontend-ingress.yaml";

/// A lab whose agent reads the lab's API server, with the app, a client outside it,
/// and dev-app's default deny.
fn kubernetes_lab(prefix: &str) -> LabGuard {
    kubernetes_lab_with(prefix, &[])
}

/// [`kubernetes_lab`] with more `lab up` options.
fn kubernetes_lab_with(prefix: &str, options: &[&str]) -> LabGuard {
    let lab = LabGuard::new(prefix);
    let files = [fixture(APP), fixture(CLIENT), fixture(DENY_ALL)];
    let mut args = vec![
        "up".to_owned(),
        "--datastore".to_owned(),
        "kubernetes".to_owned(),
    ];
    args.extend(options.iter().map(|o| (*o).to_owned()));
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

/// Calico's `GlobalNetworkPolicy` collection, as the CRDs serve it.
const GNPS: &str = "/apis/crd.projectcalico.org/v1/globalnetworkpolicies";
/// A policy whose selector does not parse (`&&&`), as a client that skips Calico's
/// validation stores it (the lab's own `lab apply` would refuse it).
const BROKEN: &str = "default.broken-selector";
/// A good policy in the same collection: DNS to the cluster DNS closed.
const CLOSE_DNS: &str = "default.close-dns";

/// Events the lab's API server holds about `name` (events of cluster-scoped objects
/// are in `default`, as kube-runtime's recorder writes them).
fn events_about(api: &ApiClient, name: &str) -> Vec<Value> {
    let list = api
        .get("/apis/events.k8s.io/v1/namespaces/default/events")
        .unwrap_or_else(|e| panic!("list events: {e}"));
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e.pointer("/regarding/name").and_then(Value::as_str) == Some(name))
        .cloned()
        .collect()
}

#[test]
fn a_malformed_object_is_refused_alone_named_in_status_and_event() {
    let _serial = serial();
    let lab = kubernetes_lab("kbad");
    let tmp = TempDir::new("kbad");
    wait_ready(&lab, 200, Duration::from_secs(30));
    expect_enforced(&lab, false, "before the malformed object");

    // Written straight to the API server: the malformed object first, then two good
    // ones (one in the same collection, one Kubernetes policy).
    let api = ApiClient::open(&lab.state_dir().join("admin.kubeconfig"))
        .unwrap_or_else(|e| panic!("API client: {e}"));
    let post = |path: &str, object: Value| {
        api.create_raw(path, &object)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    };
    post(
        GNPS,
        json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "GlobalNetworkPolicy",
               "metadata": {"name": BROKEN},
               "spec": {"selector": "app == 'x' &&& tier == 'y'",
                        "ingress": [{"action": "Allow"}]}}),
    );
    post(
        GNPS,
        json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "GlobalNetworkPolicy",
               "metadata": {"name": CLOSE_DNS},
               "spec": {"selector": "k8s-app == 'kube-dns'", "types": ["Ingress"],
                        "ingress": [{"action": "Deny", "protocol": "UDP",
                                     "destination": {"ports": [53]}}]}}),
    );
    post(
        "/apis/networking.k8s.io/v1/namespaces/dev-app/networkpolicies",
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "allow-frontend-ingress", "namespace": "dev-app"},
               "spec": {"podSelector": {"matchLabels": {"app": "frontend"}},
                        "policyTypes": ["Ingress"],
                        "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                                     "ports": [{"protocol": "TCP", "port": 80}]}]}}),
    );

    // The good objects are enforced on real packets (`lab probe` waits until the
    // agent observed the revision of the last write): a refusal that froze the
    // revision would leave both flows as they were.
    assert!(
        connected(&lab, "client/client", "dev-app/frontend-0", 80, "TCP"),
        "the good NetworkPolicy written after the malformed object must be enforced"
    );
    assert!(
        !connected(&lab, "client/client", "kube-system/coredns-0", 53, "UDP"),
        "the good GlobalNetworkPolicy next to the malformed one must be enforced"
    );

    // The agent's status names the malformed object alone, and applied the revision.
    let store = FileDatastore::open(lab.state_dir().join("datastore"))
        .unwrap_or_else(|e| panic!("datastore: {e}"));
    let status = store.read_status().ok().flatten().unwrap_or_default();
    assert_eq!(status.error, None, "{status:#?}");
    assert_eq!(
        status.applied_revision, status.observed_revision,
        "{status:#?}"
    );
    assert_eq!(status.refused.len(), 1, "{status:#?}");
    let refused = &status.refused[0];
    assert_eq!(refused.object, "GlobalNetworkPolicy broken-selector");
    assert_eq!(
        refused.origin,
        format!("apis/crd.projectcalico.org/v1/globalnetworkpolicies/{BROKEN}")
    );
    assert!(
        refused.reason.contains("spec.selector"),
        "the reason must name the field: {refused:?}"
    );
    // Its selector cannot be read: nothing to stand in for it (Calico would never have
    // stored it).
    assert_eq!(refused.fallback, Fallback::Ignored, "{refused:?}");
    // Ready as the code defines it: the observed revision is enforced (the refusal is
    // reported in the status and the event, not as an unready node).
    wait_ready(&lab, 200, Duration::from_secs(10));

    // A Kubernetes Event about the malformed object, naming why; none about the good.
    let deadline = Instant::now() + Duration::from_secs(20);
    let event = loop {
        if let Some(event) = events_about(&api, BROKEN).into_iter().next() {
            break event;
        }
        assert!(
            Instant::now() < deadline,
            "no event about {BROKEN}: {:#}",
            api.get("/apis/events.k8s.io/v1/events").unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(event["type"], "Warning", "{event:#}");
    assert_eq!(event["reason"], "PolicyRefused", "{event:#}");
    assert_eq!(event["reportingController"], "enforcer", "{event:#}");
    assert_eq!(
        event["regarding"]["kind"], "GlobalNetworkPolicy",
        "{event:#}"
    );
    assert_eq!(
        event["regarding"]["apiVersion"], "crd.projectcalico.org/v1",
        "{event:#}"
    );
    let note = event["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("GlobalNetworkPolicy broken-selector refused")
            && note.contains("spec.selector"),
        "{event:#}"
    );
    assert!(events_about(&api, CLOSE_DNS).is_empty());
    assert!(events_about(&api, "allow-frontend-ingress").is_empty());

    // Changes keep flowing while the malformed object stays: the good GNP removed,
    // DNS is open again.
    let close_dns = tmp.write(
        "close-dns.yaml",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: close-dns}\nspec: {selector: all()}\n",
    );
    lab.delete(&close_dns);
    expect_enforced(
        &lab,
        true,
        "the good GNP deleted, the malformed one still there",
    );
    // The malformed object removed (through the API: the lab's commands only know
    // objects that load): nothing is refused any more (`lab probe` waits for it).
    api.delete_raw(&format!("{GNPS}/{BROKEN}"))
        .unwrap_or_else(|e| panic!("DELETE {BROKEN}: {e}"));
    expect_enforced(&lab, true, "the malformed object deleted");
    let status = store.read_status().ok().flatten().unwrap_or_default();
    assert!(status.refused.is_empty(), "{status:#?}");
    assert_eq!(status.error, None, "{status:#?}");
    wait_ready(&lab, 200, Duration::from_secs(10));
}

/// The capabilities `deploy/kubernetes/daemonset.yaml` grants the agent.
fn daemon_set_capabilities() -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/kubernetes/daemonset.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let ds: Value =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let add =
        &ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["add"];
    add.as_array()
        .unwrap_or_else(|| panic!("no capabilities.add in {}", path.display()))
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// Bit of a capability in `/proc/PID/status` masks (linux/capability.h).
fn capability_bit(name: &str) -> u32 {
    match name {
        "NET_ADMIN" => 12,
        "NET_RAW" => 13,
        "SYS_ADMIN" => 21,
        "SYS_RESOURCE" => 24,
        "PERFMON" => 38,
        "BPF" => 39,
        other => panic!("capability {other}: add its number here"),
    }
}

#[test]
fn the_agent_runs_with_only_the_daemon_sets_capabilities() {
    let _serial = serial();
    let caps = daemon_set_capabilities();
    let tmp = TempDir::new("kcaps");
    // The agent under the DaemonSet's capability set: root, every other capability
    // out of its bounding set (so none can be regained), nothing inheritable.
    let keep: Vec<String> = caps
        .iter()
        .map(|c| format!("+{}", c.to_lowercase()))
        .collect();
    let wrapper = tmp.write(
        "agent.sh",
        &format!(
            "#!/bin/sh\nexec setpriv --bounding-set -all,{} --inh-caps -all -- {} \"$@\"\n",
            keep.join(","),
            enforcer_tests::lab::enforcer_bin().display()
        ),
    );
    let mut mode = std::fs::metadata(&wrapper)
        .unwrap_or_else(|e| panic!("{e}"))
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut mode, 0o755);
    std::fs::set_permissions(&wrapper, mode).unwrap_or_else(|e| panic!("{e}"));
    let wrapper = wrapper.to_string_lossy().into_owned();
    let lab = kubernetes_lab_with("kcaps", &["--agent-bin", &wrapper]);

    // It really runs with exactly these.
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(lab.state_dir().join("state.json")).unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("state.json: {e}"));
    let pid = state["agents"]["node1"]["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no agent pid in {state}"));
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("agent {pid}: {e}"));
    let effective = proc_status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no CapEff in {proc_status}"));
    let wanted = caps
        .iter()
        .fold(0u64, |mask, c| mask | (1 << capability_bit(c)));
    assert_eq!(effective, wanted, "agent capabilities (CapEff) vs {caps:?}");

    // And does the whole job: every endpoint attached, nothing failed, ready,
    // enforcing.
    wait_ready(&lab, 200, Duration::from_secs(30));
    let store = FileDatastore::open(lab.state_dir().join("datastore"))
        .unwrap_or_else(|e| panic!("datastore: {e}"));
    let status = store.read_status().ok().flatten().unwrap_or_default();
    let pods = lab.get_pods().len();
    assert_eq!(status.endpoints_attached, pods, "{status:#?}");
    assert!(status.attach_failed.is_empty(), "{status:#?}");
    assert!(status.xdp_unavailable.is_empty(), "{status:#?}");
    assert_eq!(status.error, None, "{status:#?}");
    expect_enforced(&lab, false, "the agent with the DaemonSet's capabilities");
    lab.apply(&fixture(ALLOW_FRONTEND));
    expect_enforced(&lab, true, "a change, same agent");
}

/// `enforcer inspect counters -o json` of the lab: (hook, reason) → packets.
fn inspect_counters(lab: &LabGuard) -> Vec<(String, String, f64)> {
    let out = Command::new(&lab.bin)
        .args(["inspect", "counters", "-o", "json", "--bpffs"])
        .arg(format!("/sys/fs/bpf/enforcer/{}", lab.name))
        .output()
        .unwrap_or_else(|e| panic!("inspect: {e}"));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
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
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
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
    // Both readings must see the same counters: a scrape taken between two equal
    // readings of the pinned maps (a stray retransmission or neighbour probe moves
    // them now and then) must equal them.
    let mut attempts = 0;
    let (text, counters, inspected_rules) = loop {
        let before = (inspect_counters(&lab), inspect_rules(&lab));
        let (code, text) = health(&lab, "/metrics");
        assert_eq!(code, 200, "{text}");
        let after = (inspect_counters(&lab), inspect_rules(&lab));
        if before == after {
            break (text, before.0, before.1);
        }
        attempts += 1;
        assert!(
            attempts < 20,
            "the counters never held still: {before:?} {after:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
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
        rules, inspected_rules,
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
