//! Enforcement on real packets in the lab, with the agent: stateful replies, Service
//! traffic judged after DNAT, and bad input refused while the old policy stays.
//!
//! Privileged: `cargo build --bin enforcer && cargo test -p enforcer-tests --test lab_enforcement`.

use enforcer::datastore::file::FileDatastore;
use enforcer::datastore::status::Fallback;
use enforcer_tests::lab::{LabGuard, TempDir, fixture, serial};

const APP: &str = "tutorial/dev-app-deployments.yaml";

/// Default deny both ways in dev-app, plus egress frontend→backend and ingress
/// backend←frontend on 8080, TCP and UDP.
const DENY_AND_ONE_ALLOW: &str = r"
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
    ports: [{port: 8080}, {port: 8080, protocol: UDP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: backend-ingress, namespace: dev-app}
spec:
  podSelector: {matchLabels: {app: backend}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: frontend}}}]
    ports: [{port: 8080}, {port: 8080, protocol: UDP}]
";

fn pod_ip(lab: &LabGuard, ns: &str, name: &str) -> String {
    lab.get_pods()
        .into_iter()
        .find(|p| p.namespace == ns && p.name == name)
        .map_or_else(|| panic!("no pod {ns}/{name}"), |p| p.ip)
}

fn connected(lab: &LabGuard, from: &str, to: &str, port: &str, protocol: &str) -> bool {
    let rows = lab.probe(&[
        "--from",
        from,
        "--to",
        to,
        "--port",
        port,
        "--protocol",
        protocol,
    ]);
    assert_eq!(rows.len(), 1, "one probe expected: {rows:#?}");
    rows[0].connected
}

#[test]
fn allowed_tcp_exchange_completes_and_the_reply_direction_stays_closed() {
    let _serial = serial();
    let lab = LabGuard::new("st");
    let tmp = TempDir::new("stateful");
    lab.up(&[&fixture(APP)], true);
    lab.apply(&tmp.write("policies.yaml", DENY_AND_ONE_ALLOW));

    // The exchange completes and the data flows back (HTTP request and answer over
    // the allowed connection, addressed to the pod itself: no DNS, no Service).
    let backend = pod_ip(&lab, "dev-app", "backend-0");
    let (code, out, err) = lab.exec(
        "dev-app/frontend-0",
        &["curl", "-s", "-m", "3", &format!("http://{backend}:8080/")],
    );
    assert_eq!(
        (code, out.trim()),
        (0, "Hello from Backend!"),
        "curl stderr: {err}"
    );
    // UDP: the request passes and the answer comes back through conntrack.
    assert!(connected(
        &lab,
        "dev-app/frontend-1",
        "dev-app/backend-1",
        "8080",
        "UDP"
    ));

    // Replies pass, but a connection the other way does not: backend → frontend is
    // a new flow that nothing allows, on the frontend's port and on any other.
    assert!(!connected(
        &lab,
        "dev-app/backend-0",
        "dev-app/frontend-0",
        "80",
        "TCP"
    ));
    assert!(!connected(
        &lab,
        "dev-app/backend-0",
        "dev-app/frontend-0",
        "8080",
        "TCP"
    ));
    // Neither is another port of the backend, nor the backend from the database.
    assert!(!connected(
        &lab,
        "dev-app/frontend-0",
        "dev-app/backend-0",
        "81",
        "TCP"
    ));
    assert!(!connected(
        &lab,
        "dev-app/database-0",
        "dev-app/backend-0",
        "8080",
        "TCP"
    ));
}

/// A client namespace whose only egress is to the backend pods, by label.
const CLIENT_EGRESS_TO_BACKEND: &str = r"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: only-backend, namespace: client}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: dev-app}}
      podSelector: {matchLabels: {app: backend}}
";

#[test]
fn egress_to_a_cluster_ip_is_judged_on_the_backend_pod_after_dnat() {
    let _serial = serial();
    let lab = LabGuard::new("svc");
    let tmp = TempDir::new("service");
    lab.up(
        &[&fixture(APP), &fixture("tutorial-fixes/client.yaml")],
        true,
    );

    // Before any policy: every Service answers.
    for svc in [
        "svc/dev-app/backend",
        "svc/dev-app/database",
        "svc/dev-app/frontend",
    ] {
        let rows = lab.probe(&["--from", "client/client", "--to", svc]);
        assert!(
            rows.iter().all(|r| r.connected),
            "{svc} before policy: {rows:#?}"
        );
    }
    lab.apply(&tmp.write("egress.yaml", CLIENT_EGRESS_TO_BACKEND));

    // Through the ClusterIP the client reaches the backend pods (the egress rule names
    // pods, not the VIP: it must be judged after DNAT) ...
    let rows = lab.probe(&["--from", "client/client", "--to", "svc/dev-app/backend"]);
    assert!(
        !rows.is_empty() && rows.iter().all(|r| r.connected),
        "backend Service: {rows:#?}"
    );
    // ... several times, whichever backend kube-proxy's DNAT picks.
    for _ in 0..4 {
        let rows = lab.probe(&["--from", "client/client", "--to", "svc/dev-app/backend"]);
        assert!(
            rows.iter().all(|r| r.connected),
            "backend Service again: {rows:#?}"
        );
    }
    // ... and another Service's backends are denied.
    for svc in ["svc/dev-app/database", "svc/dev-app/frontend"] {
        let rows = lab.probe(&["--from", "client/client", "--to", svc]);
        assert!(
            !rows.is_empty() && rows.iter().all(|r| !r.connected),
            "{svc}: {rows:#?}"
        );
    }
    // The backend pods directly: allowed; the database pod directly: denied.
    assert!(connected(
        &lab,
        "client/client",
        "dev-app/backend-1",
        "8080",
        "TCP"
    ));
    assert!(!connected(
        &lab,
        "client/client",
        "dev-app/database-0",
        "3306",
        "TCP"
    ));
}

/// Each bad file and what its error must name.
const BAD_INPUTS: &[(&str, &str, &[&str])] = &[
    (
        "syntax.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: x\n  namespace: dev-app\nspec:\n  podSelector: {}\n    ingress: [\n",
        &["syntax.yaml:8", "YAML syntax error"],
    ),
    (
        "cidr.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad-cidr, namespace: dev-app}\nspec:\n  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.300/8}\n",
        &[
            "cidr.yaml",
            "dev-app/bad-cidr",
            "ipBlock.cidr",
            "10.0.0.300/8",
        ],
    ),
    (
        "kind.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolcy\nmetadata: {name: typo, namespace: dev-app}\nspec: {}\n",
        &["kind.yaml", "unknown kind", "NetworkPolcy"],
    ),
    (
        "selector.yaml",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: bad-selector}\nspec:\n  selector: app == 'x' &&& tier == 'y'\n  ingress:\n  - action: Allow\n",
        &[
            "selector.yaml",
            "bad-selector",
            "spec.selector",
            "column 14",
        ],
    ),
];

#[test]
fn bad_input_is_refused_with_a_clear_error_and_the_old_policy_stays() {
    let _serial = serial();
    let lab = LabGuard::new("bad");
    let tmp = TempDir::new("bad");
    lab.up(&[&fixture(APP)], true);
    lab.apply(&fixture("tutorial/networkpolicy-deny-all.yaml"));
    let enforced = || {
        connected(
            &lab,
            "dev-app/frontend-0",
            "dev-app/backend-0",
            "8080",
            "TCP",
        )
    };
    assert!(!enforced(), "default-deny must be in force");

    for (name, text, must_name) in BAD_INPUTS {
        let path = tmp.write(name, text);
        let out = lab.run(&["apply", "-f", &path.to_string_lossy()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: apply must fail");
        for needle in *must_name {
            assert!(
                stderr.contains(needle),
                "{name}: error must name {needle:?}:\n{stderr}"
            );
        }
        assert!(
            !enforced(),
            "{name}: the previous policy must stay in force"
        );
    }

    // A broken object that reaches the datastore anyway (a client that skipped
    // validation): the agent refuses that object alone (security item 5), says why in
    // its status, and enforces this never-loaded policy as one that allows nothing to
    // what its selector selects; the old policy stays in force. (Before per-object
    // refusal the whole revision was refused: `applied_revision` stayed behind.)
    let store = FileDatastore::open(lab.state_dir().join("datastore"))
        .unwrap_or_else(|e| panic!("open datastore: {e}"));
    let revision = store
        .put_raw("NetworkPolicy.dev-app.broken.json", BAD_INPUTS[1].1)
        .unwrap_or_else(|e| panic!("plant bad object: {e}"));
    let status = wait_observed(&store, revision);
    let refused = status
        .refused
        .iter()
        .find(|r| r.reason.contains("ipBlock.cidr"))
        .unwrap_or_else(|| panic!("agent status must say why: {status:?}"));
    assert_eq!(refused.fallback, Fallback::DenyAll, "{status:?}");
    assert_eq!(status.error, None, "{status:?}");
    assert_eq!(status.applied_revision, revision, "{status:?}");
    assert!(!enforced(), "the agent must keep the previous policy");

    // Everything else keeps flowing while the broken object stays: allowing
    // frontend → backend takes effect.
    let allow = tmp.write(
        "frontend-egress.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: frontend-egress, namespace: dev-app}\nspec:\n  podSelector: {matchLabels: {app: frontend}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{podSelector: {matchLabels: {app: backend}}}]\n    ports: [{port: 8080}]\n",
    );
    lab.apply(&allow);
    lab.apply(&fixture(
        "tutorial/networkpolicy-allow-frontend-to-backend.yaml",
    ));
    assert!(
        connected(
            &lab,
            "dev-app/frontend-0",
            "dev-app/backend-0",
            "8080",
            "TCP"
        ),
        "a change made while an object is refused applies"
    );
    let status = store.read_status().ok().flatten().unwrap_or_default();
    assert_eq!(status.refused.len(), 1, "{status:?}");

    // Removing the bad object lets the next revision apply.
    std::fs::remove_file(
        store
            .root()
            .join("objects/NetworkPolicy.dev-app.broken.json"),
    )
    .unwrap_or_else(|e| panic!("remove: {e}"));
    lab.apply(&fixture(
        "tutorial/networkpolicy-allow-frontend-ingress.yaml",
    ));
    let status = store.read_status().ok().flatten().unwrap_or_default();
    assert_eq!(status.error, None, "{status:?}");
    assert!(status.refused.is_empty(), "{status:?}");
    assert_eq!(status.applied_revision, status.observed_revision);
}

/// Our `tc` filters of a veth in the lab's node (`tc filter show`).
fn tc_filters(lab: &LabGuard, iface: &str, dir: &str) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &format!("enf-{}-node", lab.name)])
        .args(["tc", "filter", "show", "dev", iface, dir])
        .output()
        .unwrap_or_else(|e| panic!("tc: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// TCX (the default on this kernel): two pinned links per pod.
fn tcx_links_are_pinned(lab: &LabGuard, progs: &str) {
    // Debian's bpftool 7.1 prints TCX links as "type 11": match them by program id.
    let ours: Vec<String> = progs
        .lines()
        .filter(|l| l.contains("name enf_pod_"))
        .filter_map(|l| l.split(':').next().map(|id| format!("prog {}", id.trim())))
        .collect();
    let links = bpftool(&["link", "show"]);
    let our_links = links
        .lines()
        .filter(|l| ours.iter().any(|p| l.contains(p.as_str())))
        .count();
    assert!(
        our_links >= 12,
        "expected 12 TCX links of our programs:\n{links}"
    );
    let pinned_links = std::fs::read_dir(format!("/sys/fs/bpf/enforcer/{}/links", lab.name))
        .map_or(0, Iterator::count);
    assert_eq!(pinned_links, 12, "two links for each of the 6 pods");
}

fn wait_observed(store: &FileDatastore, revision: u64) -> enforcer::datastore::status::AgentStatus {
    for _ in 0..300 {
        if let Ok(Some(status)) = store.read_status()
            && status.observed_revision >= revision
        {
            return status;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("agent did not observe revision {revision}");
}

fn bpftool(args: &[&str]) -> String {
    let out = std::process::Command::new("bpftool")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("bpftool {args:?}: {e}"));
    assert!(
        out.status.success(),
        "bpftool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `curl` straight from a pod's netns, without going through `enforcer lab` (which
/// waits for the agent, and for the lab's lock while the agent restarts).
fn curl_in_netns(netns: &str, url: &str) -> bool {
    std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            netns,
            "curl",
            "-s",
            "-m",
            "1",
            "-o",
            "/dev/null",
            url,
        ])
        .status()
        .is_ok_and(|s| s.success())
}

fn deny_counter(lab: &LabGuard) -> u64 {
    let bpffs = format!("/sys/fs/bpf/enforcer/{}", lab.name);
    let out = std::process::Command::new(&lab.bin)
        .args(["inspect", "counters", "--bpffs", &bpffs, "-o", "json"])
        .output()
        .unwrap_or_else(|e| panic!("inspect: {e}"));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "inspect output: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    rows.iter()
        .filter(|r| r["reason"] == "deny_policy")
        .filter_map(|r| r["packets"].as_u64())
        .sum()
}

#[test]
fn maps_and_programs_are_visible_and_enforcement_survives_an_agent_crash() {
    let _serial = serial();
    let lab = LabGuard::new("vis");
    let tmp = TempDir::new("visible");
    lab.up(&[&fixture(APP)], true);
    lab.apply(&tmp.write("policies.yaml", DENY_AND_ONE_ALLOW));

    // bpftool shows our programs (names truncated by the kernel to 15 bytes), maps,
    // and TCX links; the pins have readable names under the node's directory.
    let progs = bpftool(&["prog", "show"]);
    assert!(
        progs.contains("enf_pod_eg") && progs.contains("enf_pod_in"),
        "{progs}"
    );
    let maps = bpftool(&["map", "show"]);
    for name in [
        "ENF_VERDICTS",
        "ENF_CONNTRACK",
        "ENF_PEERS_V4",
        "ENF_ENDPOINTS",
    ] {
        assert!(maps.contains(name), "bpftool map show lacks {name}");
        let pin = format!("/sys/fs/bpf/enforcer/{}/{name}", lab.name);
        assert!(std::path::Path::new(&pin).exists(), "{pin} not pinned");
    }
    if std::env::var("ENFORCER_LAB_ATTACH").as_deref() == Ok("tc") {
        // `--attach tc`: a clsact filter per hook on each pod's veth, nothing pinned.
        for pod in lab.get_pods() {
            for (dir, prog) in [("ingress", "enf_pod_eg"), ("egress", "enf_pod_in")] {
                let filters = tc_filters(&lab, &pod.interface, dir);
                assert!(
                    filters.contains(prog) && filters.contains("direct-action"),
                    "{} {dir}: no {prog} filter:\n{filters}",
                    pod.interface
                );
            }
        }
        let pinned_links = std::fs::read_dir(format!("/sys/fs/bpf/enforcer/{}/links", lab.name))
            .map_or(0, Iterator::count);
        assert_eq!(pinned_links, 0, "tc filters need no link pins");
    } else {
        tcx_links_are_pinned(&lab, &progs);
    }

    // A denied flow is counted.
    let before = deny_counter(&lab);
    assert!(!connected(
        &lab,
        "dev-app/database-0",
        "dev-app/backend-0",
        "8080",
        "TCP"
    ));
    assert!(deny_counter(&lab) > before, "deny_policy counter must move");

    // The agent crashes and stays down for 3 s: the pinned links and maps keep
    // enforcing the last policy — the allowed flow works, the denied one stays denied.
    let pods = lab.get_pods();
    let netns = |name: &str| {
        pods.iter()
            .find(|p| p.name == name)
            .map_or_else(|| panic!("no pod {name}"), |p| p.netns.clone())
    };
    let backend = pod_ip(&lab, "dev-app", "backend-0");
    let frontend = pod_ip(&lab, "dev-app", "frontend-0");
    let restart = {
        let bin = lab.bin.clone();
        let name = lab.name.clone();
        std::thread::spawn(move || {
            std::process::Command::new(bin)
                .args([
                    "lab",
                    "--name",
                    &name,
                    "restart-agent",
                    "--kill",
                    "--down-ms",
                    "3000",
                ])
                .status()
                .is_ok_and(|s| s.success())
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    for _ in 0..3 {
        assert!(
            curl_in_netns(&netns("frontend-0"), &format!("http://{backend}:8080/")),
            "allowed flow must keep working while the agent is down"
        );
        assert!(
            !curl_in_netns(&netns("backend-0"), &format!("http://{frontend}:80/")),
            "denied flow must stay denied while the agent is down"
        );
    }
    assert!(restart.join().unwrap_or(false), "restart-agent failed");
    // The new agent took over; a policy change still applies.
    assert!(connected(
        &lab,
        "dev-app/frontend-0",
        "dev-app/backend-0",
        "8080",
        "TCP"
    ));
    lab.apply(&fixture("tutorial/networkpolicy-deny-all.yaml"));
    lab.delete(&tmp.write(
        "remove.yaml",
        DENY_AND_ONE_ALLOW.split("---").nth(1).unwrap_or_default(),
    ));
    assert!(!connected(
        &lab,
        "dev-app/frontend-0",
        "dev-app/backend-0",
        "8080",
        "TCP"
    ));
}

/// A Log rule, then Allow: the flow passes and the flow log names policy and rule.
const LOG_THEN_ALLOW: &str = r"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: audit-frontend}
spec:
  selector: app == 'frontend'
  ingress:
  - action: Log
    protocol: TCP
  - action: Allow
";

#[test]
fn a_log_rule_hit_is_a_flow_event_naming_policy_and_rule() {
    let _serial = serial();
    let lab = LabGuard::new("log");
    let tmp = TempDir::new("log");
    lab.up(&[&fixture(APP)], true);
    lab.apply(&tmp.write("log.yaml", LOG_THEN_ALLOW));
    assert!(connected(
        &lab,
        "dev-app/backend-0",
        "dev-app/frontend-1",
        "80",
        "TCP"
    ));
    let frontend = pod_ip(&lab, "dev-app", "frontend-1");
    let log = lab.state_dir().join("datastore/flows.jsonl");
    let mut found = None;
    for _ in 0..100 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|r| r["event"] == "log" && r["dst"] == frontend.as_str() && r["dport"] == 80);
        if found.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let record =
        found.unwrap_or_else(|| panic!("no log event for {frontend}:80 in {}", log.display()));
    assert_eq!(
        record["policy"], "default/GlobalNetworkPolicy audit-frontend",
        "{record}"
    );
    assert_eq!(record["rule"], 0, "{record}");
    assert_eq!(record["direction"], "ingress", "{record}");
    assert_eq!(record["endpoint"], "dev-app/frontend-1", "{record}");
    assert_eq!(record["proto"], 6, "{record}");
}

/// More policies than `ENF_POLICY_NAMES` holds (16,384), nearly all selecting no pod:
/// the agent names only the policies its verdicts use, so the cluster is enforced
/// (before, it wrote a name per policy of the cluster, the write failed and the node
/// stayed closed: nothing reached the backend). The lab's files hold 1,000 documents
/// each (the YAML reader's cap per stream is 1,024).
#[test]
fn a_cluster_of_more_policies_than_the_names_map_holds_is_enforced() {
    const FILLERS: usize = 16_500;
    let _serial = serial();
    let lab = LabGuard::new("names");
    let tmp = TempDir::new("names");
    let mut files = vec![fixture(APP), tmp.write("policy.yaml", DENY_AND_ONE_ALLOW)];
    let filler = |i: usize| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: filler-{i}, namespace: dev-app}}\nspec:\n  podSelector: {{matchLabels: {{app: nobody-{i}}}}}\n  ingress:\n  - from: [{{podSelector: {{}}}}]\n"
        )
    };
    let fillers: Vec<String> = (0..FILLERS).map(filler).collect();
    for (n, docs) in fillers.chunks(1_000).enumerate() {
        files.push(tmp.write(&format!("fillers-{n:02}.yaml"), &docs.join("---\n")));
    }
    let refs: Vec<&std::path::Path> = files.iter().map(std::path::PathBuf::as_path).collect();
    lab.up(&refs, true);
    let pods = ("dev-app/frontend-0", "dev-app/backend-0");
    assert!(
        connected(&lab, pods.0, pods.1, "8080", "TCP"),
        "the allowed flow must pass: the policy is enforced"
    );
    assert!(
        !connected(&lab, pods.0, pods.1, "9090", "TCP"),
        "default deny must be in force"
    );
}
