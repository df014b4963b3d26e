//! Seed 000's tutorial, steps 2–7, with its YAML verbatim, in the lab with the agent
//! enforcing — asserting what real Kubernetes semantics say at each step, not what
//! the tutorial's text claims. Then the egress allows a user actually needs.
//!
//! The expected matrix at each step comes from `expected`, an oracle written from the
//! Kubernetes `NetworkPolicy` rules alone (it knows nothing of the dataplane).
//!
//! Privileged: `cargo build --bin enforcer && cargo test -p enforcer-tests --test lab_tutorial`.

use enforcer_tests::lab::{LabGuard, ProbeResult, fixture, serial};

/// A flow as the probe reports it, reduced to what the oracle needs.
struct Flow<'a> {
    from_ns: &'a str,
    from_app: &'a str,
    to_ns: &'a str,
    to_app: &'a str,
    port: u16,
    protocol: &'a str,
}

/// `ns/app-i` → (ns, app).
fn split(pod: &str) -> (&str, &str) {
    let (ns, name) = pod.split_once('/').unwrap_or(("", pod));
    let app = name.rsplit_once('-').map_or(name, |(app, _)| app);
    (ns, app)
}

/// After which tutorial step (2..=7), plus `fixes`: the egress allows of
/// `tutorial-fixes/`.
#[derive(Clone, Copy)]
struct Stage {
    step: u8,
    fixes: bool,
}

/// What Kubernetes semantics allow at a stage. `default-deny` (step 3) isolates every
/// dev-app pod for ingress *and* egress; an allowed flow needs its source's egress and
/// its destination's ingress.
fn expected(stage: Stage, f: &Flow<'_>) -> bool {
    if stage.step < 3 {
        return true;
    }
    let dns = f.to_ns == "kube-system" && f.to_app == "coredns";
    let egress_ok = f.from_ns != "dev-app"
        || (stage.step >= 7 && dns && f.protocol == "UDP" && f.port == 53)
        || (stage.fixes && f.from_app == "frontend" && f.to_app == "backend" && f.port == 8080)
        || (stage.fixes && f.from_app == "backend" && f.to_app == "database" && f.port == 3306);
    let from_dev = f.from_ns == "dev-app";
    let tcp = f.protocol == "TCP";
    let ingress_ok = f.to_ns != "dev-app"
        || (stage.step >= 4 && f.to_app == "frontend" && f.port == 80 && tcp)
        || (stage.step >= 5
            && f.to_app == "backend"
            && from_dev
            && f.from_app == "frontend"
            && f.port == 8080
            && tcp)
        || (stage.step >= 6
            && f.to_app == "database"
            && from_dev
            && f.from_app == "backend"
            && f.port == 3306
            && tcp);
    egress_ok && ingress_ok
}

/// Probes the whole matrix (every pod to every pod's declared ports) and compares.
fn assert_matrix(lab: &LabGuard, stage: Stage) -> Vec<ProbeResult> {
    let results = lab.probe(&[]);
    // 7 pods (5 dev-app, DNS, client); the client declares no ports.
    assert!(
        results.len() >= 30,
        "step {}: only {} probes ran",
        stage.step,
        results.len()
    );
    let mut wrong = Vec::new();
    for r in &results {
        let (from_ns, from_app) = split(&r.from);
        let (to_ns, to_app) = split(&r.to);
        let protocol = r.protocol.as_str();
        let flow = Flow {
            from_ns,
            from_app,
            to_ns,
            to_app,
            port: r.port,
            protocol,
        };
        let want = expected(stage, &flow);
        if r.connected != want {
            wrong.push(format!(
                "{} -> {}:{}/{}: connected={} expected={want}",
                r.from, r.to, r.port, protocol, r.connected
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "after step {} (fixes: {}): {} of {} flows differ from Kubernetes semantics:\n{}",
        stage.step,
        stage.fixes,
        wrong.len(),
        results.len(),
        wrong.join("\n")
    );
    results
}

fn curl(lab: &LabGuard, pod: &str, url: &str) -> (i32, String) {
    let (code, out, _) = lab.exec(pod, &["curl", "-s", "-m", "3", url]);
    (code, out)
}

#[test]
fn tutorial_steps_2_to_7_then_the_egress_a_user_needs() {
    let _serial = serial();
    let lab = LabGuard::new("tut");
    lab.up(
        &[
            &fixture("tutorial/dev-app-deployments.yaml"),
            &fixture("tutorial-fixes/client.yaml"),
        ],
        true,
    );

    // Step 2: everything connects; the tutorial's curl prints the backend's text.
    assert_matrix(
        &lab,
        Stage {
            step: 2,
            fixes: false,
        },
    );
    let (code, out) = curl(
        &lab,
        "dev-app/frontend-0",
        "backend.dev-app.svc.cluster.local:8080",
    );
    assert_eq!(
        (code, out.trim()),
        (0, "Hello from Backend!"),
        "step 2 curl"
    );

    // Step 3: default-deny, ingress and egress. The curl times out (exit 28) — the
    // DNS lookup is already blocked (curl exit 6 would be "could not resolve"; with
    // the lookup timing out curl reports 28 or 6 depending on the resolver's retries).
    lab.apply(&fixture("tutorial/networkpolicy-deny-all.yaml"));
    assert_matrix(
        &lab,
        Stage {
            step: 3,
            fixes: false,
        },
    );
    let (code, out) = curl(
        &lab,
        "dev-app/frontend-0",
        "backend.dev-app.svc.cluster.local:8080",
    );
    assert_ne!(code, 0, "step 3: curl must fail, printed {out:?}");

    // Step 4: frontend:80 is reachable from a client in another namespace (the
    // tutorial's "external" access); backend is not.
    lab.apply(&fixture(
        "tutorial/networkpolicy-allow-frontend-ingress.yaml",
    ));
    let results = assert_matrix(
        &lab,
        Stage {
            step: 4,
            fixes: false,
        },
    );
    let from_client = |to: &str| {
        results
            .iter()
            .find(|r| r.from == "client/client" && r.to == to)
            .unwrap_or_else(|| panic!("no probe client/client -> {to}"))
            .connected
    };
    assert!(
        from_client("dev-app/frontend-0"),
        "step 4: client -> frontend:80"
    );
    assert!(
        !from_client("dev-app/backend-0"),
        "step 4: client -> backend:8080 must stay blocked"
    );

    // Step 5: the tutorial says frontend reaches backend now. It does not: the
    // frontend pods' egress is still isolated by default-deny.
    lab.apply(&fixture(
        "tutorial/networkpolicy-allow-frontend-to-backend.yaml",
    ));
    assert_matrix(
        &lab,
        Stage {
            step: 5,
            fixes: false,
        },
    );
    let (code, _) = curl(
        &lab,
        "dev-app/frontend-0",
        "backend.dev-app.svc.cluster.local:8080",
    );
    assert_ne!(
        code, 0,
        "step 5: frontend -> backend stays blocked under real enforcement"
    );

    // Step 6: likewise backend -> database.
    lab.apply(&fixture(
        "tutorial/networkpolicy-allow-backend-to-database.yaml",
    ));
    assert_matrix(
        &lab,
        Stage {
            step: 6,
            fixes: false,
        },
    );

    // Step 7: DNS egress (UDP 53 to kube-dns) opens, and only that: nslookup gets an
    // answer (the lab's DNS has no internet, so google.com is NXDOMAIN — an answer,
    // where before it was "no servers could be reached").
    let (code, out, _) = lab.exec(
        "dev-app/frontend-0",
        &["nslookup", "-timeout=2", "-retry=1", "google.com"],
    );
    assert!(
        out.contains("no servers could be reached") || code != 0,
        "before step 7 DNS must time out: {out}"
    );
    assert!(
        !out.contains("NXDOMAIN"),
        "before step 7 no DNS answer may arrive: {out}"
    );
    lab.apply(&fixture("tutorial/networkpolicy-allow-dns-egress.yaml"));
    assert_matrix(
        &lab,
        Stage {
            step: 7,
            fixes: false,
        },
    );
    let (_, out, _) = lab.exec(
        "dev-app/frontend-0",
        &["nslookup", "-timeout=2", "google.com"],
    );
    assert!(
        out.contains("NXDOMAIN"),
        "step 7: the DNS server must answer: {out}"
    );
    let (code, out, _) = lab.exec(
        "dev-app/frontend-0",
        &[
            "nslookup",
            "-timeout=2",
            "backend.dev-app.svc.cluster.local",
        ],
    );
    assert_eq!(code, 0, "step 7: service name resolves: {out}");

    // What a user actually needs: the egress allows. frontend -> backend and
    // backend -> database work, by pod and through the Service name; frontend ->
    // database and database -> backend stay blocked.
    lab.apply(&fixture(
        "tutorial-fixes/allow-egress-frontend-to-backend.yaml",
    ));
    lab.apply(&fixture(
        "tutorial-fixes/allow-egress-backend-to-database.yaml",
    ));
    assert_matrix(
        &lab,
        Stage {
            step: 7,
            fixes: true,
        },
    );
    let (code, out) = curl(
        &lab,
        "dev-app/frontend-0",
        "backend.dev-app.svc.cluster.local:8080",
    );
    assert_eq!(
        (code, out.trim()),
        (0, "Hello from Backend!"),
        "fixed: frontend -> backend"
    );
    let (code, out) = curl(
        &lab,
        "dev-app/backend-1",
        "database.dev-app.svc.cluster.local:3306",
    );
    assert_eq!(
        (code, out.trim()),
        (0, "Database is secure!"),
        "fixed: backend -> database"
    );
    let (code, _) = curl(
        &lab,
        "dev-app/frontend-1",
        "database.dev-app.svc.cluster.local:3306",
    );
    assert_ne!(code, 0, "frontend -> database must stay blocked");
    let (code, _) = curl(
        &lab,
        "dev-app/database-0",
        "backend.dev-app.svc.cluster.local:8080",
    );
    assert_ne!(code, 0, "database -> backend must stay blocked");
}

#[test]
fn oracle_follows_kubernetes_semantics() {
    // The oracle itself, on flows whose answer the tutorial's text gets wrong.
    let f = |from: &'static str, to: &'static str, port, protocol| {
        let (from_ns, from_app) = split(from);
        let (to_ns, to_app) = split(to);
        Flow {
            from_ns,
            from_app,
            to_ns,
            to_app,
            port,
            protocol,
        }
    };
    let s5 = Stage {
        step: 5,
        fixes: false,
    };
    assert!(!expected(
        s5,
        &f("dev-app/frontend-0", "dev-app/backend-0", 8080, "TCP")
    ));
    assert!(expected(
        Stage {
            step: 5,
            fixes: true
        },
        &f("dev-app/frontend-0", "dev-app/backend-0", 8080, "TCP")
    ));
    assert!(!expected(
        Stage {
            step: 7,
            fixes: false
        },
        &f("dev-app/frontend-0", "kube-system/coredns-0", 53, "TCP")
    ));
    assert!(expected(
        Stage {
            step: 7,
            fixes: false
        },
        &f("dev-app/frontend-0", "kube-system/coredns-0", 53, "UDP")
    ));
    assert!(expected(
        Stage {
            step: 4,
            fixes: false
        },
        &f("client/client", "dev-app/frontend-1", 80, "TCP")
    ));
    assert!(!expected(
        Stage {
            step: 3,
            fixes: false
        },
        &f("client/client", "dev-app/frontend-1", 80, "TCP")
    ));
}
