//! Calico's Service-aware rule matches on real packets (issue 13, acceptance 1):
//! `destination.services` in an egress rule admits the Service's endpoints on the
//! endpoints' ports, directly and through the `ClusterIP`, and nothing else; it
//! follows a selector-less Service's `EndpointSlice` when that moves from one pod to
//! another; `source.services` in an ingress rule admits only the Service's endpoints;
//! and the combinations libcalico-go's validator refuses are refused with an error
//! naming the field while the old policy stays in force. One lab, policies applied
//! and deleted between the steps.
//!
//! Privileged: `cargo build --bin enforcer && cargo test -p enforcer-tests --test lab_services_rules`.

use std::process::Command;

use enforcer::datastore::file::FileDatastore;
use enforcer::datastore::status::{AgentStatus, Fallback};
use enforcer_tests::lab::{LabGuard, TempDir, enforcer_bin, serial};

/// `client` probes; `web-0`/`web-1` are the endpoints of Service `web` (port 80 to
/// target port 8080; they also listen on 9090, which the Service does not expose);
/// `alpha`/`beta` are no endpoint of `web` and take turns as the one endpoint of the
/// selector-less Service `moving`; `server` is the ingress-side target.
const WORKLOADS: &str = "\
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: a, labels: {app: client}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: a, labels: {app: web}}
spec: {containers: [{name: c, ports: [{containerPort: 8080}, {containerPort: 9090}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: a, labels: {app: web}}
spec: {containers: [{name: c, ports: [{containerPort: 8080}, {containerPort: 9090}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: alpha, namespace: a, labels: {app: spare}}
spec: {containers: [{name: c, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: beta, namespace: a, labels: {app: spare}}
spec: {containers: [{name: c, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: a, labels: {app: server}}
spec: {containers: [{name: c, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: a}
spec: {clusterIP: 198.19.0.70, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: moving, namespace: a}
spec: {clusterIP: 198.19.0.71, ports: [{name: http, port: 8080}]}
";

/// Egress of `client`: only to Service `web`'s endpoints (a namespaced policy: the
/// Service's namespace defaults to the policy's).
const EGRESS_TO_WEB: &str = "\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: client-to-web, namespace: a}
spec:
  selector: app == 'client'
  types: [Egress]
  egress:
  - action: Allow
    destination:
      services: {name: web}
";

/// Egress of `client`: only to Service `moving`'s endpoints (a global policy: the
/// namespace is required).
const EGRESS_TO_MOVING: &str = "\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: client-to-moving}
spec:
  selector: app == 'client'
  types: [Egress]
  egress:
  - action: Allow
    destination:
      services: {name: moving, namespace: a}
";

/// Ingress of `server`: only from Service `web`'s endpoints.
const INGRESS_FROM_WEB: &str = "\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: server-from-web, namespace: a}
spec:
  selector: app == 'server'
  types: [Ingress]
  ingress:
  - action: Allow
    source:
      services: {name: web}
";

/// Rule sides libcalico-go's validator refuses, as replacements of the policy in
/// force, each with what the error must name.
const BAD_SERVICE_MATCHES: &[(&str, &str, &[&str])] = &[
    (
        "services-and-selector.yaml",
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: server-from-web, namespace: a}\nspec:\n  selector: app == 'server'\n  types: [Ingress]\n  ingress:\n  - action: Allow\n    source:\n      services: {name: web}\n      selector: app == 'spare'\n",
        &["source.services", "selector"],
    ),
    (
        "services-and-nets.yaml",
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: server-from-web, namespace: a}\nspec:\n  selector: app == 'server'\n  types: [Ingress]\n  ingress:\n  - action: Allow\n    source:\n      services: {name: web}\n      nets: [198.18.0.0/15]\n",
        &["source.services", "nets"],
    ),
    (
        "destination-services-with-ports.yaml",
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: server-from-web, namespace: a}\nspec:\n  selector: app == 'server'\n  types: [Egress]\n  egress:\n  - action: Allow\n    protocol: TCP\n    destination:\n      services: {name: web}\n      ports: [9090]\n",
        &["destination.ports", "service match"],
    ),
    (
        "services-on-the-local-side.yaml",
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: server-from-web, namespace: a}\nspec:\n  selector: app == 'server'\n  types: [Ingress]\n  ingress:\n  - action: Allow\n    destination:\n      services: {name: web}\n",
        &["destination.services"],
    ),
    (
        "global-without-namespace.yaml",
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: server-from-web}\nspec:\n  selector: app == 'server'\n  types: [Ingress]\n  ingress:\n  - action: Allow\n    source:\n      services: {name: web}\n",
        &["source.services", "namespace"],
    ),
];

/// `(from, to, port, expected)` rows (TCP), all checked, all failures reported.
/// `port` 0 probes the target's Service port.
fn expect(lab: &LabGuard, what: &str, rows: &[(&str, &str, u16, bool)]) {
    let wrong: Vec<String> = rows
        .iter()
        .filter_map(|&(from, to, port, want)| {
            let port_s = port.to_string();
            let mut args = vec!["--from", from, "--to", to, "--timeout-ms", "700"];
            if port != 0 {
                args.extend(["--port", &port_s]);
            }
            let got = lab.probe(&args);
            assert_eq!(
                got.len(),
                1,
                "one probe expected for {from} -> {to}: {got:#?}"
            );
            (got[0].connected != want).then(|| {
                format!(
                    "{from} -> {to}:{port}: expected connected={want}, got {}",
                    got[0].result
                )
            })
        })
        .collect();
    assert!(wrong.is_empty(), "{what}:\n{}", wrong.join("\n"));
}

/// The slice that makes `ip` the one endpoint of Service `moving` (port 8080).
fn moving_slice(ip: &str) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: moving-1, namespace: a, labels: {{kubernetes.io/service-name: moving}}}}\naddressType: IPv4\nendpoints: [{{addresses: [{ip}]}}]\nports: [{{name: http, port: 8080, protocol: TCP}}]\n"
    )
}

#[test]
fn service_matches_admit_the_services_endpoints_follow_their_changes_and_refuse_what_calico_refuses()
 {
    let _serial = serial();
    let lab = LabGuard::new("svcr");
    let tmp = TempDir::new("svcr");
    lab.up(&[&tmp.write("workloads.yaml", WORKLOADS)], true);

    // 1. destination.services: the endpoints, on the endpoints' port (the Service's
    // target port), by pod address and through the ClusterIP; not a pod outside the
    // Service, not another port of an endpoint.
    let to_web = tmp.write("client-to-web.yaml", EGRESS_TO_WEB);
    lab.apply(&to_web);
    expect(
        &lab,
        "destination.services web",
        &[
            ("a/client", "a/web-0", 8080, true),
            ("a/client", "a/web-1", 8080, true),
            ("a/client", "svc/a/web", 0, true),
            ("a/client", "a/alpha", 8080, false),
            ("a/client", "a/server", 8080, false),
            ("a/client", "a/web-0", 9090, false),
        ],
    );
    lab.delete(&to_web);

    // 2. A selector-less Service whose EndpointSlice moves from alpha to beta while
    // the policy stays: after the agent observed the new slice (probes wait for every
    // agent's revision), new connections follow the slice.
    let alpha = lab.pod("a/alpha").ip;
    let beta = lab.pod("a/beta").ip;
    let to_moving = tmp.write("client-to-moving.yaml", EGRESS_TO_MOVING);
    let slice = tmp.write("slice-alpha.yaml", &moving_slice(&alpha));
    lab.apply(&slice);
    lab.apply(&to_moving);
    expect(
        &lab,
        "destination.services moving -> alpha",
        &[
            ("a/client", "a/alpha", 8080, true),
            ("a/client", "svc/a/moving", 0, true),
            ("a/client", "a/beta", 8080, false),
            ("a/client", "a/web-0", 8080, false),
        ],
    );
    lab.apply(&tmp.write("slice-beta.yaml", &moving_slice(&beta)));
    expect(
        &lab,
        "destination.services moving -> beta",
        &[
            ("a/client", "a/beta", 8080, true),
            ("a/client", "svc/a/moving", 0, true),
            ("a/client", "a/alpha", 8080, false),
        ],
    );
    lab.delete(&to_moving);

    // 3. source.services: the server admits Service web's endpoints only.
    lab.apply(&tmp.write("server-from-web.yaml", INGRESS_FROM_WEB));
    let in_force = [
        ("a/web-0", "a/server", 8080, true),
        ("a/web-1", "a/server", 8080, true),
        ("a/alpha", "a/server", 8080, false),
        ("a/client", "a/server", 8080, false),
    ];
    expect(&lab, "source.services web", &in_force);

    // 4. What libcalico-go refuses is refused naming the field, by `enforcer check`
    // and by the lab's `apply` (nothing written), and the policy in force stays.
    for (name, text, must_name) in BAD_SERVICE_MATCHES {
        let path = tmp.write(name, text);
        let out = Command::new(enforcer_bin())
            .args(["check", "-f", &path.to_string_lossy()])
            .output()
            .unwrap_or_else(|e| panic!("enforcer check: {e}"));
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{name}: check must fail:\n{said}");
        let out = lab.run(&["apply", "-f", &path.to_string_lossy()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: apply must fail");
        for needle in must_name.iter().chain(&["invalid service match", name]) {
            assert!(
                said.contains(needle),
                "{name}: check must name {needle:?}:\n{said}"
            );
            assert!(
                stderr.contains(needle),
                "{name}: apply must name {needle:?}:\n{stderr}"
            );
        }
    }
    expect(&lab, "source.services web after refusals", &in_force);

    // Written past validation (a client that skips it), the agent refuses the new
    // version, says why in its status, and keeps the version in force. (On the lab's
    // API server, `lab_kubernetes` plants a malformed object the same way.)
    if std::env::var("ENFORCER_LAB_DATASTORE").is_ok_and(|d| d == "kubernetes") {
        return;
    }
    let store = FileDatastore::open(lab.state_dir().join("datastore"))
        .unwrap_or_else(|e| panic!("open datastore: {e}"));
    let revision = store
        .put_raw(
            "projectcalico.org_NetworkPolicy.a.server-from-web.json",
            BAD_SERVICE_MATCHES[0].1,
        )
        .unwrap_or_else(|e| panic!("plant bad object: {e}"));
    let status = wait_observed(&store, revision);
    let refused = status
        .refused
        .iter()
        .find(|r| r.object.contains("a/server-from-web"))
        .unwrap_or_else(|| panic!("the agent must refuse it: {status:#?}"));
    assert!(
        refused.reason.contains("source.services") && refused.reason.contains("selector"),
        "the agent's reason must name the field: {refused:?}"
    );
    assert_eq!(refused.fallback, Fallback::LastGood, "{refused:?}");
    expect(
        &lab,
        "source.services web after the agent's refusal",
        &in_force,
    );
}

fn wait_observed(store: &FileDatastore, revision: u64) -> AgentStatus {
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
