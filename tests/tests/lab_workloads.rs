//! Workloads the security tests need from the lab, on one node (privileged):
//! Services without a selector whose `EndpointSlice` (discovery.k8s.io/v1) or
//! `Endpoints` name arbitrary addresses, `hostNetwork: true` pods (a process in the
//! node netns, no workload endpoint), and pods whose `status.phase` is `Succeeded` (no
//! process, no identity for their old address).
//!
//! Privileged: `cargo build --bin enforcer && cargo test -p enforcer-tests --test lab_workloads`.

use std::path::Path;

use enforcer::datastore::file::FileDatastore;
use enforcer::model::Object;
use enforcer_tests::lab::{LabGuard, PodInfo, TempDir, serial};

fn connected(lab: &LabGuard, from: &str, to: &str, port: Option<u16>) -> bool {
    let mut args = vec!["--from", from, "--to", to, "--timeout-ms", "700"];
    let port = port.map(|p| p.to_string());
    if let Some(p) = &port {
        args.extend(["--port", p]);
    }
    let rows = lab.probe(&args);
    assert_eq!(
        rows.len(),
        1,
        "one probe expected for {from} -> {to}: {rows:#?}"
    );
    rows[0].connected
}

fn pod(lab: &LabGuard, key: &str) -> Option<PodInfo> {
    lab.get_pods()
        .into_iter()
        .find(|p| format!("{}/{}", p.namespace, p.name) == key)
}

const CLIENT_AND_SERVER: &str = "\
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: a, labels: {app: client}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: a, labels: {app: server}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
";

const SELECTORLESS: &str = "\
apiVersion: v1
kind: Service
metadata: {name: outside, namespace: a}
spec: {clusterIP: 198.19.0.50, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: node-local, namespace: a}
spec: {clusterIP: 198.19.0.51, ports: [{port: 8080}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: node-local, namespace: a}
subsets: [{addresses: [{ip: 198.18.255.1}], ports: [{port: 8000}]}]
";

const OUTSIDE_SLICE: &str = "\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: outside-1, namespace: a, labels: {kubernetes.io/service-name: outside}}
addressType: IPv4
endpoints: [{addresses: [198.18.255.2]}]
ports: [{name: http, port: 80, protocol: TCP}]
";

#[test]
fn selectorless_services_send_to_what_their_endpointslice_and_endpoints_name() {
    let _serial = serial();
    let lab = LabGuard::new("eps");
    let tmp = TempDir::new("eps");
    let slice = tmp.write("slice.yaml", OUTSIDE_SLICE);
    lab.up(
        &[
            &tmp.write("pods.yaml", CLIENT_AND_SERVER),
            &tmp.write("services.yaml", SELECTORLESS),
            &slice,
        ],
        true,
    );
    // The slice names the external client, the Endpoints object the node itself.
    assert!(connected(&lab, "a/client", "svc/a/outside", None));
    assert!(connected(&lab, "a/client", "svc/a/node-local", None));
    // A ClusterIP is not masqueraded: the external client sees the pod's address.
    let client = pod(&lab, "a/client").unwrap_or_else(|| panic!("no a/client"));
    let (code, out, err) = lab.exec(
        "a/client",
        &["curl", "-s", "-m", "3", "http://198.19.0.50/clientip"],
    );
    assert_eq!(code, 0, "curl: {err}");
    assert!(
        out.trim().starts_with(&format!("{}:", client.ip)),
        "the backend saw {out:?}, not the client {}",
        client.ip
    );
    // The datastore holds the slice as written, for the agents.
    let store = FileDatastore::open(lab.state_dir().join("datastore"))
        .unwrap_or_else(|e| panic!("datastore: {e}"));
    let slices = store
        .list()
        .unwrap_or_else(|e| panic!("list: {e}"))
        .into_iter()
        .filter(|l| matches!(l.object, Object::EndpointSlice(_)))
        .count();
    assert_eq!(slices, 1);
    // Without its slice the Service has no endpoints: nothing answers.
    lab.delete(&slice);
    assert!(!connected(&lab, "a/client", "svc/a/outside", None));
    assert!(connected(&lab, "a/client", "svc/a/node-local", None));
}

const HOST_NETWORK: &str = "\
apiVersion: v1
kind: Pod
metadata: {name: exporter, namespace: a, labels: {app: exporter}}
spec: {hostNetwork: true, containers: [{name: c, ports: [{containerPort: 9100}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: exporter, namespace: a}
spec: {clusterIP: 198.19.0.52, selector: {app: exporter}, ports: [{port: 9100}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server-from-exporter, namespace: a}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress: [{from: [{podSelector: {matchLabels: {app: exporter}}}]}]
";

#[test]
fn host_network_pods_run_in_the_node_and_are_no_workload_endpoints() {
    let _serial = serial();
    let lab = LabGuard::new("hnet");
    let tmp = TempDir::new("hnet");
    lab.up(
        &[
            &tmp.write("pods.yaml", CLIENT_AND_SERVER),
            &tmp.write("hostnet.yaml", HOST_NETWORK),
        ],
        true,
    );
    let exporter = pod(&lab, "a/exporter").unwrap_or_else(|| panic!("no a/exporter"));
    assert_eq!(exporter.ip, "198.18.255.1", "{exporter:?}");
    assert_eq!(exporter.netns, format!("enf-{}-node", lab.name));
    assert_eq!(exporter.interface, "", "a hostNetwork pod has no veth");
    assert!(
        !Path::new(&format!("/run/netns/enf-{}-a.exporter", lab.name)).exists(),
        "a hostNetwork pod gets no netns of its own"
    );
    // Its process serves on the node's address, directly and as a Service backend.
    assert!(connected(&lab, "a/client", "a/exporter", Some(9100)));
    assert!(connected(&lab, "a/client", "svc/a/exporter", None));
    assert!(connected(&lab, "external", "a/exporter", Some(9100)));
    // It is no workload endpoint: the node's address does not take its labels, so a
    // policy admitting `app: exporter` does not admit traffic from the node.
    assert!(!connected(&lab, "a/exporter", "a/server", Some(80)));
    assert!(!connected(&lab, "node", "a/server", Some(80)));
    // ... nor does it admit anyone else.
    assert!(!connected(&lab, "a/client", "a/server", Some(80)));
}

#[test]
fn a_pod_that_succeeded_runs_nothing_and_its_address_keeps_no_identity() {
    let _serial = serial();
    let lab = LabGuard::new("done");
    let tmp = TempDir::new("done");
    let job = "apiVersion: v1\nkind: Pod\nmetadata: {name: job, namespace: a, labels: {app: job}}\nspec: {containers: [{name: c, ports: [{containerPort: 80}]}]}\n";
    lab.up(
        &[
            &tmp.write("pods.yaml", CLIENT_AND_SERVER),
            &tmp.write("job.yaml", job),
        ],
        true,
    );
    let running = pod(&lab, "a/job").unwrap_or_else(|| panic!("no a/job"));
    assert!(Path::new(&format!("/run/netns/{}", running.netns)).exists());

    // The job completes: its process and netns go, its object stays with phase,
    // node and address, as the kubelet leaves them.
    let out = lab.apply(&tmp.write(
        "job-done.yaml",
        &format!("{job}status: {{phase: Succeeded}}\n"),
    ));
    assert!(out.contains("removed: a/job"), "{out}");
    assert!(pod(&lab, "a/job").is_none());
    assert!(!Path::new(&format!("/run/netns/{}", running.netns)).exists());
    let store = FileDatastore::open(lab.state_dir().join("datastore"))
        .unwrap_or_else(|e| panic!("datastore: {e}"));
    let stored = store
        .list()
        .unwrap_or_else(|e| panic!("list: {e}"))
        .into_iter()
        .find_map(|l| match l.object {
            Object::Pod(p) if p.metadata.name == "job" => Some(p),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the finished pod is not stored"));
    assert!(stored.is_finished());
    assert_eq!(stored.spec.node_name.as_deref(), Some("node1"));
    assert!(
        stored.ips().iter().any(|ip| ip.to_string() == running.ip),
        "{stored:?}"
    );

    // A finished pod whose old address is now another pod's gives that pod none of
    // its labels: the server admits `role: admin`, the finished pod had it, the
    // client (now at that address) has not.
    let client = pod(&lab, "a/client").unwrap_or_else(|| panic!("no a/client"));
    let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: admins, namespace: a}\nspec:\n  podSelector: {matchLabels: {app: server}}\n  ingress: [{from: [{podSelector: {matchLabels: {role: admin}}}]}]\n";
    let old = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: old, namespace: a, labels: {{role: admin}}}}\nspec: {{containers: [{{name: c}}]}}\nstatus: {{phase: Succeeded, podIP: {ip}, podIPs: [{{ip: {ip}}}]}}\n",
        ip = client.ip
    );
    lab.apply(&tmp.write("policy.yaml", policy));
    lab.apply(&tmp.write("old.yaml", &old));
    assert!(!connected(&lab, "a/client", "a/server", Some(80)));
    assert!(pod(&lab, "a/client").is_some(), "the client keeps running");
}
