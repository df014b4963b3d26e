//! Host endpoints in the lab (privileged): seed 002 (pre-DNAT `NodePort` filtering, the
//! XDP program dropping what it denies) and seed 001 (default deny with a host
//! endpoint: no bypass through the node, failsafe SSH still reachable).

use std::path::PathBuf;

use aya::programs::TcAttachType;
use enforcer_tests::lab::{LabGuard, ProbeResult, fixture, require_root, serial};
use enforcer_tests::traffic::enter_netns;

fn f(name: &str) -> PathBuf {
    fixture(&format!("hostendpoints/{name}"))
}

fn connected(results: &[ProbeResult], from: &str, port: u16) -> bool {
    results
        .iter()
        .find(|r| r.from == from && r.port == port)
        .unwrap_or_else(|| panic!("no probe from {from} to port {port}: {results:?}"))
        .connected
}

/// `enforcer inspect counters -o json` of the lab's node: (hook, reason) → packets.
fn counter(lab: &LabGuard, hook: &str, reason: &str) -> u64 {
    let bpffs = format!("/sys/fs/bpf/enforcer/{}", lab.name);
    let out = std::process::Command::new(&lab.bin)
        .args(["inspect", "counters", "--bpffs", &bpffs, "-o", "json"])
        .output()
        .unwrap_or_else(|e| panic!("enforcer inspect counters: {e}"));
    assert!(
        out.status.success(),
        "inspect counters: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("counters json: {e}: {out}"));
    rows.iter()
        .filter(|r| r["hook"] == hook && r["reason"] == reason)
        .filter_map(|r| r["packets"].as_u64())
        .sum()
}

/// The flow log's denied TCP flows (`enforcer flows -o json`), once the deny of a probe to
/// `port` is logged: everything the same probes had denied is in the log by then (one
/// flow-log interval).
fn denied_tcp_flows_once_logged(lab: &LabGuard, port: u16) -> Vec<serde_json::Value> {
    for _ in 0..100 {
        let out = std::process::Command::new(&lab.bin)
            .args([
                "flows",
                "--lab",
                &lab.name,
                "--verdict",
                "denied",
                "-o",
                "json",
            ])
            .output()
            .unwrap_or_else(|e| panic!("enforcer flows: {e}"));
        assert!(out.status.success(), "enforcer flows: {out:?}");
        let out = String::from_utf8_lossy(&out.stdout);
        let rows: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("flow line {l}: {e}")))
            .filter(|r: &serde_json::Value| r["proto"] == 6)
            .collect();
        if rows.iter().any(|r| r["dport"] == port) {
            return rows;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the deny of the probe to port {port} was never logged");
}

fn probe_node(lab: &LabGuard, from: &[&str], ports: &[u16]) -> Vec<ProbeResult> {
    let mut args = vec!["--timeout-ms", "700"];
    for f in from {
        args.extend(["--from", f]);
    }
    let targets: Vec<String> = ports.iter().map(|p| format!("node:{p}")).collect();
    for t in &targets {
        args.extend(["--to", t.as_str()]);
    }
    lab.probe(&args)
}

#[test]
fn seed_002_prednat_nodeports() {
    require_root();
    let _serial = serial();
    let lab = LabGuard::new("h2");
    lab.up(
        &[
            &f("nodeport-app.yaml"),
            &f("002-allow-cluster-internal-ingress-only.yaml"),
            &f("002-allow-outbound-external.yaml"),
            &f("002-node1-eth0.yaml"),
            &f("002-allow-nodeport.yaml"),
        ],
        true,
    );
    let xdp_denied_before = counter(&lab, "host-xdp", "deny_policy");
    let r = probe_node(
        &lab,
        &["external", "kube-system/coredns-0", "node"],
        &[31852, 30080, 8000],
    );
    // The external client reaches the NodePort in use, nothing else of the node.
    assert!(connected(&r, "external", 31852), "{r:?}");
    assert!(!connected(&r, "external", 30080), "{r:?}");
    assert!(!connected(&r, "external", 8000), "{r:?}");
    // Cluster-internal sources (a pod, the node itself) still reach everything.
    for from in ["kube-system/coredns-0", "node"] {
        for port in [31852, 30080, 8000] {
            assert!(connected(&r, from, port), "{from} -> node:{port}: {r:?}");
        }
    }
    // The XDP program dropped the denied external packets; the TC program saw none.
    // (It may deny other things of the external host's on its own: the policy denies
    // every non-cluster source, the MLD reports its interface sends at random too.)
    assert!(counter(&lab, "host-xdp", "deny_policy") > xdp_denied_before);
    let denied = denied_tcp_flows_once_logged(&lab, 30080);
    let at_tc: Vec<_> = denied.iter().filter(|r| r["hook"] != "host-xdp").collect();
    assert!(at_tc.is_empty(), "denied past XDP: {at_tc:?}");

    // The doc's last step: select nodes labelled nodeport-external-ingress: true.
    lab.apply(&f("002-allow-nodeport-labelled.yaml"));
    let r = probe_node(&lab, &["external"], &[31852]);
    assert!(
        !connected(&r, "external", 31852),
        "unlabelled node still accepts: {r:?}"
    );
    lab.apply(&f("002-node1-eth0-labelled.yaml"));
    let r = probe_node(&lab, &["external"], &[31852, 30080]);
    assert!(
        connected(&r, "external", 31852),
        "labelled node refuses: {r:?}"
    );
    assert!(!connected(&r, "external", 30080), "{r:?}");
}

#[test]
fn seed_001_default_deny_with_host_endpoint() {
    require_root();
    let _serial = serial();
    let lab = LabGuard::new("h1");
    let dir = enforcer_tests::lab::TempDir::new("h1");
    lab.up(
        &[
            &f("nodeport-app.yaml"),
            &f("001-default-deny.yaml"),
            &f("002-node1-eth0.yaml"),
        ],
        true,
    );
    let r = probe_node(&lab, &["external", "default/web-0"], &[22, 8000]);
    // Failsafe: SSH on the node stays reachable from outside.
    assert!(connected(&r, "external", 22), "{r:?}");
    assert!(!connected(&r, "external", 8000), "{r:?}");
    // A pod cannot reach the node's own service: no bypass through the node's stack.
    assert!(!connected(&r, "default/web-0", 8000), "{r:?}");
    // ...unless a policy allows it.
    let allow = dir.write(
        "allow.yaml",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: pods-to-node\nspec:\n  order: 100\n  selector: app == 'web'\n  types: [Egress]\n  egress:\n  - action: Allow\n    protocol: TCP\n    destination:\n      nets: [198.18.255.1/32]\n      ports: [8000]\n",
    );
    lab.apply(&allow);
    let r = probe_node(&lab, &["default/web-0", "external"], &[8000]);
    assert!(connected(&r, "default/web-0", 8000), "{r:?}");
    assert!(!connected(&r, "external", 8000), "{r:?}");
    guard_and_host_egress_both_filter_eth0(&lab);
}

/// The guards and the host endpoint's programs both judge `eth0`, each guard first on
/// its side, in either attach mode: on egress the guard judges deferred Service egress
/// and clears the marker the host egress program drops otherwise; on ingress a host
/// program's pass (`TCX_PASS`) would end the chain before the ingress guard's tunnel
/// and `NodePort`-client checks.
/// - `tc` mode (`ENFORCER_LAB_ATTACH=tc`): two filters per side. They once shared one
///   priority and handle, so whichever was attached last replaced the other; after an
///   agent restart the guard replaced the host endpoint's egress policy.
/// - TCX: two links per side. The host egress program was once attached first, ahead
///   of the guard, until the agent's next check (up to 5 s) moved the guard back, after
///   a moment with no guard at all.
///
/// Checked right after `lab up` and after an agent restart.
fn guard_and_host_egress_both_filter_eth0(lab: &LabGuard) {
    let tc = std::env::var("ENFORCER_LAB_ATTACH").as_deref() == Ok("tc");
    let netns = format!("enf-{}-node", lab.name);
    let shown = |side: TcAttachType| {
        let word = if matches!(side, TcAttachType::Ingress) {
            "ingress"
        } else {
            "egress"
        };
        if tc {
            let out = std::process::Command::new("nsenter")
                .arg(format!("--net=/run/netns/{netns}"))
                .args(["tc", "filter", "show", "dev", "eth0", word])
                .output()
                .unwrap_or_else(|e| panic!("tc: {e}"));
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        // Debian's bpftool does not list TCX chains: ask the kernel (BPF_PROG_QUERY)
        // from a thread inside the node's netns.
        let netns = netns.clone();
        std::thread::spawn(move || {
            enter_netns(&netns).unwrap_or_else(|e| panic!("setns {netns}: {e}"));
            let (_, chain) = aya::programs::SchedClassifier::query_tcx("eth0", side)
                .unwrap_or_else(|e| panic!("query tcx: {e}"));
            chain
                .iter()
                .map(|p| p.name_as_str().unwrap_or("?").to_owned())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .join()
        .unwrap_or_else(|_| panic!("query thread"))
    };
    let check = |when: &str| {
        for (side, guard, host) in [
            (TcAttachType::Egress, "enf_guard_eg", "enf_host_eg"),
            (TcAttachType::Ingress, "enf_guard_in", "enf_host_in"),
        ] {
            let shown = shown(side);
            let guard_at = shown.find(guard);
            let host_at = shown.find(host);
            assert!(
                guard_at.is_some() && host_at.is_some(),
                "{when}: eth0 {side:?} lacks {guard} or {host}:\n{shown}"
            );
            // Both list a hook's programs in the order they run.
            assert!(
                guard_at < host_at,
                "{when}: {guard} must come first:\n{shown}"
            );
        }
    };
    check("right after lab up");
    lab.run_ok(&["restart-agent"]);
    check("after an agent restart");
}

fn probe_pod(lab: &LabGuard) -> bool {
    let r = lab.probe(&[
        "--from",
        "external",
        "--to",
        "default/web-0",
        "--port",
        "8080",
        "--timeout-ms",
        "700",
    ]);
    assert_eq!(r.len(), 1, "{r:?}");
    r[0].connected
}

#[test]
fn apply_on_forward_allowed_and_denied() {
    require_root();
    let _serial = serial();
    let lab = LabGuard::new("hf");
    let dir = enforcer_tests::lab::TempDir::new("hf");
    lab.up(&[&f("nodeport-app.yaml"), &f("002-node1-eth0.yaml")], true);
    // No applyOnForward policy selects the host endpoint: forwarded traffic passes,
    // while traffic to the node itself (no policy, no profile) is denied.
    assert!(
        probe_pod(&lab),
        "forwarded traffic denied without applyOnForward policy"
    );
    let r = probe_node(&lab, &["external"], &[8000]);
    assert!(!connected(&r, "external", 8000), "{r:?}");
    // An applyOnForward policy that allows only another client: forwarded denied.
    let aof = dir.write(
        "aof.yaml",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: fwd\nspec:\n  applyOnForward: true\n  selector: has(kubernetes-host)\n  types: [Ingress]\n  ingress:\n  - action: Allow\n    source:\n      nets: [198.18.255.3/32]\n",
    );
    lab.apply(&aof);
    assert!(!probe_pod(&lab), "applyOnForward deny not enforced");
    // Allow the external client: forwarded allowed again.
    let aof2 = dir.write(
        "aof.yaml",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: fwd\nspec:\n  applyOnForward: true\n  selector: has(kubernetes-host)\n  types: [Ingress]\n  ingress:\n  - action: Allow\n    source:\n      nets: [198.18.255.2/32]\n",
    );
    lab.apply(&aof2);
    assert!(probe_pod(&lab), "applyOnForward allow not enforced");
}

/// An untracked (doNotTrack) policy on the host endpoint, `applyOnForward` so that it
/// also covers forwarded traffic: `ingress` and `egress` are the rule lists (YAML, two
/// spaces of indent), `None` for no such section.
fn untracked_policy(ingress: &str, egress: Option<&str>) -> String {
    let mut text = format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: untracked\nspec:\n  doNotTrack: true\n  applyOnForward: true\n  selector: has(kubernetes-host)\n  ingress:\n{ingress}"
    );
    if let Some(egress) = egress {
        text.push_str("  types: [Ingress, Egress]\n  egress:\n");
        text.push_str(egress);
    }
    text
}

/// The untracked egress rule that lets replies to the external client out.
const EGRESS_TO_EXTERNAL: &str =
    "  - action: Allow\n    destination:\n      nets: [198.18.255.2/32]\n";

fn node_connected(lab: &LabGuard, target: &str) -> bool {
    let r = lab.probe(&["--from", "external", "--to", target, "--timeout-ms", "700"]);
    assert_eq!(r.len(), 1, "{r:?}");
    r[0].connected
}

#[test]
fn do_not_track_forwarded_needs_both_directions() {
    require_root();
    let _serial = serial();
    let lab = LabGuard::new("hd");
    let dir = enforcer_tests::lab::TempDir::new("hd");
    lab.up(&[&f("nodeport-app.yaml"), &f("002-node1-eth0.yaml")], true);
    let ingress = "  - action: Allow\n    protocol: TCP\n    destination:\n      ports: [8080]\n";
    // Asymmetric: the SYN to the pod enters untracked, the SYN-ACK has neither an
    // untracked rule nor conntrack state: dropped as Calico drops conntrack-INVALID,
    // although forwarded traffic with no tracked applyOnForward policy is allowed.
    let no_conntrack = counter(&lab, "host-egress", "deny_no_conntrack");
    lab.apply(&dir.write("dnt.yaml", &untracked_policy(ingress, None)));
    assert!(!probe_pod(&lab), "reply of a one-way untracked flow passed");
    assert!(counter(&lab, "host-egress", "deny_no_conntrack") > no_conntrack);
    // An explicit untracked egress deny: blocked too.
    lab.apply(&dir.write(
        "dnt.yaml",
        &untracked_policy(ingress, Some("  - action: Deny\n")),
    ));
    assert!(!probe_pod(&lab), "reply passed an untracked egress deny");
    // Both directions allowed explicitly: the connection works, statelessly.
    lab.apply(&dir.write(
        "dnt.yaml",
        &untracked_policy(ingress, Some(EGRESS_TO_EXTERNAL)),
    ));
    assert!(probe_pod(&lab), "untracked allow in both directions failed");
    assert!(counter(&lab, "host-xdp", "allow_untracked") > 0);
    assert!(counter(&lab, "host-egress", "allow_untracked") > 0);
    // An untracked deny of the request: denied, whatever the reply rule.
    lab.apply(&dir.write(
        "dnt.yaml",
        &untracked_policy(
            "  - action: Deny\n    protocol: TCP\n    destination:\n      ports: [8080]\n",
            Some(EGRESS_TO_EXTERNAL),
        ),
    ));
    assert!(!probe_pod(&lab), "untracked ingress deny not enforced");
}

/// doNotTrack to the node itself (port 8000, TCP and UDP): an asymmetric rule set
/// breaks the reply as in Calico: a TCP reply without state is never a new flow (the
/// handshake fails even where the normal egress policy allows everything); a UDP reply
/// is a new tracked flow, denied with no normal egress policy (no profile) and allowed
/// by one. The symmetric rule set works.
#[test]
fn do_not_track_to_node_asymmetric_breaks_reply() {
    require_root();
    let _serial = serial();
    let lab = LabGuard::new("hn");
    let dir = enforcer_tests::lab::TempDir::new("hn");
    lab.up(&[&f("nodeport-app.yaml"), &f("002-node1-eth0.yaml")], true);
    let ingress = "  - action: Allow\n    protocol: TCP\n    destination:\n      ports: [8000]\n  - action: Allow\n    protocol: UDP\n    destination:\n      ports: [8000]\n";
    lab.apply(&dir.write("dnt.yaml", &untracked_policy(ingress, None)));
    let no_conntrack = counter(&lab, "host-egress", "deny_no_conntrack");
    let egress_denied = counter(&lab, "host-egress", "deny_policy");
    assert!(
        !node_connected(&lab, "node:8000"),
        "TCP handshake completed"
    );
    assert!(
        !node_connected(&lab, "node:8000/udp"),
        "UDP reply passed without any egress policy"
    );
    assert!(counter(&lab, "host-egress", "deny_no_conntrack") > no_conntrack);
    assert!(counter(&lab, "host-egress", "deny_policy") > egress_denied);
    // A normal (tracked) egress policy allowing all: the UDP reply is a new flow it
    // allows; the TCP SYN-ACK still is not (Calico: ctstate INVALID, not NEW).
    lab.apply(&f("002-allow-outbound-external.yaml"));
    let no_conntrack = counter(&lab, "host-egress", "deny_no_conntrack");
    assert!(
        !node_connected(&lab, "node:8000"),
        "TCP reply of a one-way untracked flow passed as a new flow"
    );
    assert!(counter(&lab, "host-egress", "deny_no_conntrack") > no_conntrack);
    assert!(
        node_connected(&lab, "node:8000/udp"),
        "UDP reply denied by an allowing egress policy"
    );
    // Symmetric: both directions untracked, both protocols work.
    lab.delete(&f("002-allow-outbound-external.yaml"));
    lab.apply(&dir.write(
        "dnt.yaml",
        &untracked_policy(ingress, Some(EGRESS_TO_EXTERNAL)),
    ));
    let untracked_out = counter(&lab, "host-egress", "allow_untracked");
    assert!(node_connected(&lab, "node:8000"), "symmetric TCP failed");
    assert!(
        node_connected(&lab, "node:8000/udp"),
        "symmetric UDP failed"
    );
    assert!(counter(&lab, "host-egress", "allow_untracked") > untracked_out);
}
