//! The lab itself, without an agent (nothing enforced): the tutorial's cluster comes
//! up, everything connects, Services and DNS work, live changes work, and `down`
//! leaves nothing behind, also after a crash.
//!
//! Privileged: run as root after `cargo build -p enforcer-agent`:
//! `cargo test -p enforcer-tests --test lab_infra`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use enforcer_tests::lab::{LabGuard, PodInfo, ProbeResult, TempDir, fixture, serial};

const TUTORIAL: &str = "tutorial/dev-app-deployments.yaml";

fn tutorial_text() -> String {
    std::fs::read_to_string(fixture(TUTORIAL)).unwrap_or_else(|e| panic!("read fixture: {e}"))
}

fn pod<'a>(pods: &'a [PodInfo], ns: &str, name: &str) -> &'a PodInfo {
    pods.iter()
        .find(|p| p.namespace == ns && p.name == name)
        .unwrap_or_else(|| panic!("no pod {ns}/{name} in {pods:#?}"))
}

fn assert_all_connected(results: &[ProbeResult], what: &str) {
    assert!(!results.is_empty(), "{what}: no probes ran");
    let failed: Vec<&ProbeResult> = results.iter().filter(|r| !r.connected).collect();
    assert!(failed.is_empty(), "{what}: not connected: {failed:#?}");
}

#[test]
fn tutorial_cluster_end_to_end() {
    let _serial = serial();
    let lab = LabGuard::new("inf");
    let tmp = TempDir::new("infra");
    lab.up(&[&fixture(TUTORIAL)], false);

    // --- pods: 5 dev-app pods + the DNS pod, labels from the templates, addresses.
    let pods = lab.get_pods();
    let dev: Vec<&PodInfo> = pods.iter().filter(|p| p.namespace == "dev-app").collect();
    let names: BTreeSet<&str> = dev.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "frontend-0",
            "frontend-1",
            "backend-0",
            "backend-1",
            "database-0"
        ])
    );
    assert_eq!(pods.len(), 6, "{pods:#?}");
    let dns = pod(&pods, "kube-system", "coredns-0");
    assert_eq!(
        dns.labels.get("k8s-app").map(String::as_str),
        Some("kube-dns")
    );
    for (name, app, tier) in [
        ("frontend-0", "frontend", "web"),
        ("backend-1", "backend", "api"),
        ("database-0", "database", "db"),
    ] {
        let p = pod(&pods, "dev-app", name);
        let expected: BTreeMap<String, String> = [("app", app), ("tier", tier)]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        assert_eq!(p.labels, expected, "{name}");
        assert_eq!(p.node, "node1");
    }
    let mut v4 = BTreeSet::new();
    for p in &pods {
        let ip: IpAddr =
            p.ip.parse()
                .unwrap_or_else(|e| panic!("{}: ip {}: {e}", p.name, p.ip));
        let IpAddr::V4(ip) = ip else {
            panic!("{}: ip {ip} is not IPv4", p.name)
        };
        assert_eq!(
            &ip.octets()[..2],
            &[198, 18],
            "{} outside 198.18.0.0/16",
            p.name
        );
        assert_ne!(
            ip.octets()[2],
            255,
            "{} in the reserved 198.18.255.0/24",
            p.name
        );
        assert!(ip.octets()[3] >= 10 || ip.octets()[2] > 0);
        assert!(v4.insert(ip), "duplicate address {ip}");
        assert_eq!(p.ips.len(), 2, "{}: {:?}", p.name, p.ips);
        assert!(p.ips[1].starts_with("2001:2::"), "{}: {:?}", p.name, p.ips);
    }
    assert!(
        v4.contains(&std::net::Ipv4Addr::new(198, 18, 0, 10)),
        "pods start at 198.18.0.10"
    );

    // --- the full matrix: every pod to every other pod's declared ports, all TCP
    // except the DNS pod's 53/UDP.
    let matrix = lab.probe(&[]);
    assert_all_connected(&matrix, "full matrix");
    // 6 sources × (targets' ports, minus their own): 5 dev-app pods × 1 port + DNS × 2.
    assert_eq!(matrix.len(), 5 * (4 + 2) + 5, "{matrix:#?}");
    assert!(
        matrix
            .iter()
            .any(|r| r.to == "dev-app/backend-0" && r.port == 8080)
    );

    // --- UDP on the declared ports, and closed ports stay closed.
    let udp = lab.probe(&["--from", "dev-app/frontend-0", "--protocol", "UDP"]);
    assert!(
        udp.iter()
            .all(|r| r.protocol == enforcer::connectivity::Protocol::Udp)
    );
    assert_all_connected(&udp, "UDP");
    let closed = lab.probe(&[
        "--from",
        "dev-app/frontend-0",
        "--to",
        "dev-app/backend-0",
        "--port",
        "9999",
    ]);
    assert_eq!(closed.len(), 1);
    assert!(!closed[0].connected, "undeclared port answered: {closed:?}");

    // --- Services and DNS, as in the tutorial.
    let (code, out, err) = lab.exec(
        "dev-app/frontend-0",
        &[
            "curl",
            "-s",
            "-m",
            "5",
            "backend.dev-app.svc.cluster.local:8080",
        ],
    );
    assert_eq!(
        (code, out.trim()),
        (0, "Hello from Backend!"),
        "stderr: {err}"
    );
    let (code, out, _) = lab.exec(
        "dev-app/backend-0",
        &["curl", "-s", "-m", "5", "database:3306"],
    );
    assert_eq!((code, out.trim()), (0, "Database is secure!"));
    let svc = lab.probe(&[
        "--from",
        "dev-app/frontend-1",
        "--to",
        "svc/dev-app/backend",
    ]);
    assert_eq!(svc.len(), 1);
    assert_all_connected(&svc, "Service");
    let (code, out, err) = lab.exec(
        "dev-app/frontend-0",
        &["nslookup", "backend.dev-app.svc.cluster.local"],
    );
    assert_eq!(code, 0, "nslookup failed: {out}{err}");
    assert!(
        out.contains("Name:\tbackend.dev-app.svc.cluster.local"),
        "{out}"
    );
    assert!(out.contains("Address: 198.19."), "{out}");
    let (code, out, _) = lab.exec(
        "dev-app/frontend-0",
        &["nslookup", "nosuch.dev-app.svc.cluster.local"],
    );
    assert_ne!(code, 0);
    assert!(out.contains("NXDOMAIN"), "{out}");

    // --- relabel in place: same pods, same addresses, new labels.
    let relabeled = tutorial_text().replace(
        "app: frontend\n        tier: web",
        "app: frontend\n        tier: edge",
    );
    assert_ne!(
        relabeled,
        tutorial_text(),
        "the fixture changed: fix the replacement"
    );
    lab.apply(&tmp.write("relabel.yaml", &relabeled));
    let after = lab.get_pods();
    for name in ["frontend-0", "frontend-1"] {
        let (old, new) = (pod(&pods, "dev-app", name), pod(&after, "dev-app", name));
        assert_eq!(
            new.labels.get("tier").map(String::as_str),
            Some("edge"),
            "{name}"
        );
        assert_eq!(
            (&old.ip, &old.netns),
            (&new.ip, &new.netns),
            "{name} was recreated"
        );
    }

    // --- a bad file is refused and changes nothing.
    let bad = tmp.write("bad.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: x, namespace: dev-app}\nspec: {clusterIP: bogus}\n");
    let out = lab.run(&["apply", "-f", &bad.to_string_lossy()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml") && err.contains("clusterIP"),
        "{err}"
    );
    assert_eq!(lab.get_pods(), after);

    // --- scale backend 2 → 3: the new pod is reachable, directly and via the Service.
    let scaled = relabeled.replacen("name: backend\n  namespace: dev-app\n  labels:\n    app: backend\n    tier: api\nspec:\n  replicas: 2", "name: backend\n  namespace: dev-app\n  labels:\n    app: backend\n    tier: api\nspec:\n  replicas: 3", 1);
    assert_ne!(
        scaled, relabeled,
        "the fixture changed: fix the replacement"
    );
    let scaled_file = tmp.write("scaled.yaml", &scaled);
    lab.apply(&scaled_file);
    let pods3 = lab.get_pods();
    let backend2 = pod(&pods3, "dev-app", "backend-2");
    assert_eq!(
        backend2.labels.get("app").map(String::as_str),
        Some("backend")
    );
    assert!(
        !pods.iter().any(|p| p.ip == backend2.ip),
        "backend-2 reused an address"
    );
    assert_all_connected(
        &lab.probe(&["--from", "dev-app/frontend-0", "--to", "dev-app/backend-2"]),
        "backend-2",
    );
    let (code, out, _) = lab.exec(
        "dev-app/backend-2",
        &[
            "curl",
            "-s",
            "-m",
            "5",
            "database.dev-app.svc.cluster.local:3306",
        ],
    );
    assert_eq!(
        (code, out.trim()),
        (0, "Database is secure!"),
        "backend-2 has DNS and routes"
    );

    // --- back to 2 replicas removes it (pod, netns); deleting the Deployment removes
    // all its pods and leaves the Service without endpoints.
    lab.apply(&tmp.write("two.yaml", &relabeled));
    let pods2 = lab.get_pods();
    assert!(!pods2.iter().any(|p| p.name == "backend-2"), "{pods2:#?}");
    assert!(
        !std::path::Path::new("/run/netns")
            .join(&backend2.netns)
            .exists()
    );
    let backend_deploy = tmp.write(
        "backend-deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: backend, namespace: dev-app}\n",
    );
    lab.delete(&backend_deploy);
    let left = lab.get_pods();
    assert!(
        !left.iter().any(|p| p.name.starts_with("backend-")),
        "{left:#?}"
    );
    assert_eq!(left.len(), 4);
    let svc = lab.probe(&[
        "--from",
        "dev-app/frontend-0",
        "--to",
        "svc/dev-app/backend",
    ]);
    assert!(
        !svc[0].connected,
        "a Service without endpoints answered: {svc:?}"
    );

    // --- down leaves nothing behind.
    lab.run_ok(&["down"]);
    assert_eq!(lab.leftovers(), Vec::<String>::new());
}

#[test]
fn ipv6_between_pods() {
    let _serial = serial();
    let lab = LabGuard::new("six");
    lab.up(&[&fixture(TUTORIAL)], false);
    let results = lab.probe(&["--from", "dev-app/frontend-0", "--ipv6"]);
    assert_eq!(results.len(), 4 + 2, "{results:#?}");
    assert_all_connected(&results, "IPv6");
    let pods = lab.get_pods();
    let backend = pod(&pods, "dev-app", "backend-0");
    let url = format!("http://[{}]:8080/", backend.ips[1]);
    let (code, out, err) = lab.exec("dev-app/frontend-1", &["curl", "-s", "-m", "5", &url]);
    assert_eq!((code, out.trim()), (0, "Hello from Backend!"), "{err}");
}

#[test]
fn bad_input_creates_nothing() {
    let _serial = serial();
    let lab = LabGuard::new("bad");
    let tmp = TempDir::new("bad");
    let bad = tmp.write(
        "broken.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: [oops\n",
    );
    let out = lab.run(&["up", "--no-agent", "-f", &bad.to_string_lossy()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.yaml"), "{err}");
    assert_eq!(lab.leftovers(), Vec::<String>::new());
    // A missing file is refused the same way.
    let out = lab.run(&["up", "--no-agent", "-f", "/nonexistent/enforcer.yaml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/enforcer.yaml"));
    assert_eq!(lab.leftovers(), Vec::<String>::new());
}

const SMALL: &str = "\
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: crash, labels: {app: web}}
spec:
  containers:
  - name: c
    ports: [{containerPort: 80}]
";

#[test]
fn down_after_crash_without_state_file() {
    let _serial = serial();
    let tmp = TempDir::new("crash");
    let file = tmp.write("small.yaml", SMALL);
    for (case, damage) in [
        (
            "torn",
            &(|dir: &std::path::Path| {
                std::fs::write(dir.join("state.json"), b"{\"name\": \"x\", \"pods\": {")
            }) as &dyn Fn(&std::path::Path) -> std::io::Result<()>,
        ),
        ("state file removed", &|dir: &std::path::Path| {
            std::fs::remove_file(dir.join("state.json"))
        }),
        ("state dir removed", &|dir: &std::path::Path| {
            std::fs::remove_dir_all(dir)
        }),
    ] {
        let lab = LabGuard::new("cr");
        lab.up(&[&file], false);
        assert!(!lab.leftovers().is_empty());
        assert!(
            !enforcer_tests::lab::lab_processes(&lab.name).is_empty(),
            "{case}: no processes to clean"
        );
        damage(&lab.state_dir()).unwrap_or_else(|e| panic!("{case}: {e}"));
        lab.run_ok(&["down"]);
        assert_eq!(lab.leftovers(), Vec::<String>::new(), "{case}");
        // `down` of a lab that is gone is fine too.
        lab.run_ok(&["down"]);
    }
}

/// A stand-in for `enforcer agent` that keeps the contract the lab relies on: started
/// in the node netns with `agent --node node1 --datastore DIR --bpffs DIR`, it writes
/// `status.json` with the revision it has seen. It also records where it runs.
const FAKE_AGENT: &str = r#"#!/bin/sh
while [ $# -gt 0 ]; do
  case "$1" in
    --datastore) ds=$2; shift ;;
    --node) node=$2; shift ;;
    --bpffs) bpffs=$2; shift ;;
  esac
  shift
done
[ -n "$ds" ] && [ "$node" = node1 ] && [ -n "$bpffs" ] || { echo "fake agent: bad arguments" >&2; exit 2; }
ip netns identify > "$ds/../fake-agent-netns"
echo "fake agent watching $ds"
while :; do
  rev=$(cat "$ds/revision" 2>/dev/null || echo 0)
  printf '{"observed_revision":%s,"applied_revision":%s,"error":null,"endpoints_attached":0,"last_apply_us":0,"generation":0}' "$rev" "$rev" > "$ds/status.tmp"
  mv "$ds/status.tmp" "$ds/status.json"
  sleep 0.05
done
"#;

#[test]
fn agent_contract_with_a_fake_agent() {
    use std::os::unix::fs::PermissionsExt;
    let _serial = serial();
    let tmp = TempDir::new("agent");
    let fake = tmp.write("fake-agent", FAKE_AGENT);
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod: {e}"));
    let file = tmp.write("small.yaml", SMALL);
    let lab = LabGuard::new("ag");
    lab.run_ok(&[
        "up",
        "--agent-bin",
        &fake.to_string_lossy(),
        "-f",
        &file.to_string_lossy(),
    ]);
    let netns =
        std::fs::read_to_string(lab.state_dir().join("fake-agent-netns")).unwrap_or_default();
    assert_eq!(
        netns.trim(),
        format!("enf-{}-node", lab.name),
        "the agent must run in the node netns"
    );
    // apply and probe wait for the agent; both work while it keeps up.
    lab.apply(&tmp.write("more.yaml", &SMALL.replace("name: web", "name: web2")));
    assert_all_connected(
        &lab.probe(&["--from", "crash/web", "--to", "crash/web2"]),
        "with agent",
    );
    // down stops the agent too.
    lab.run_ok(&["down"]);
    assert_eq!(lab.leftovers(), Vec::<String>::new());
}

#[test]
fn agent_that_dies_fails_up_with_its_log() {
    use std::os::unix::fs::PermissionsExt;
    let _serial = serial();
    let tmp = TempDir::new("agentdies");
    let fake = tmp.write(
        "dying-agent",
        "#!/bin/sh\necho 'boom: cannot load the BPF programs' >&2\nexit 3\n",
    );
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod: {e}"));
    let file = tmp.write("small.yaml", SMALL);
    let lab = LabGuard::new("ad");
    let out = lab.run(&[
        "up",
        "--agent-bin",
        &fake.to_string_lossy(),
        "-f",
        &file.to_string_lossy(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("agent exited") && err.contains("boom: cannot load the BPF programs"),
        "{err}"
    );
    assert_eq!(
        lab.leftovers(),
        Vec::<String>::new(),
        "a failed up must clean up"
    );
}
