//! Many nodes (issue 11), on real packets (privileged): a lab of two nodes (and one of
//! three over VXLAN), one agent per node, and every cross-node path with a deny case
//! that fails if the verdict is skipped on either node.
//!
//! - pod → pod on another node: the source's egress on its node, the destination's
//!   ingress on its node, replies by conntrack on both;
//! - pod → `ClusterIP` whose backend is on another node: the client's egress judged after
//!   DNAT on the client's node, the backend's ingress on its node;
//! - `NodePort` from outside to node A with the backend on node B: preDNAT on A's host
//!   endpoint; `externalTrafficPolicy: Cluster` SNATs to A's address (the backend sees
//!   the node), `Local` keeps the client's address and forwards only to local backends;
//! - an agent restart on one node changes nothing on the other; a killed agent leaves
//!   its node enforced through its pins.
//!
//! Privileged: `cargo build --bin enforcer && cargo test -p enforcer-tests --test lab_multinode -- --test-threads=1`.

use std::path::Path;
use std::time::Duration;

use enforcer_tests::lab::{LabGuard, PodInfo, TempDir, serial};

/// `(from, to, port, protocol, expected)`.
type Row<'a> = (&'a str, &'a str, u16, &'a str, bool);

/// Probes every row; fails listing every wrong one.
fn expect(lab: &LabGuard, what: &str, rows: &[Row<'_>]) {
    let mut wrong = Vec::new();
    for (from, to, port, protocol, want) in rows {
        let port_s = port.to_string();
        let mut args = vec!["--from", from, "--to", to, "--timeout-ms", "700"];
        if !to.contains(':') {
            args.extend(["--port", &port_s, "--protocol", protocol]);
        }
        let got = lab.probe(&args);
        assert_eq!(
            got.len(),
            1,
            "one probe expected for {from} -> {to}: {got:#?}"
        );
        if got[0].connected != *want {
            wrong.push(format!(
                "{from} -> {to}:{port}/{protocol}: {} (expected connected={want})",
                got[0].result
            ));
        }
    }
    assert!(wrong.is_empty(), "{what}:\n{}", wrong.join("\n"));
}

/// A pod serving TCP and UDP on `ports`, pinned to `node`.
fn pod_yaml(ns: &str, name: &str, node: &str, ports: &[u16]) -> String {
    let ports: Vec<String> = ports
        .iter()
        .flat_map(|p| {
            [
                format!("{{containerPort: {p}, protocol: TCP}}"),
                format!("{{containerPort: {p}, protocol: UDP}}"),
            ]
        })
        .collect();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{app: {name}}}}}\nspec: {{nodeName: {node}, containers: [{{name: c, ports: [{}]}}]}}\n",
        ports.join(", ")
    )
}

fn np(ns: &str, name: &str, spec: &str) -> String {
    let mut out = format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n"
    );
    for line in spec.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn two_nodes_have_their_own_netns_blocks_agents_and_pins() {
    let _serial = serial();
    let lab = LabGuard::new("mn").with_nodes(2);
    let tmp = TempDir::new("mn");
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: a}\nspec:\n  replicas: 4\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}\n";
    let out = lab.up(&[&tmp.write("web.yaml", deployment)], true);
    assert!(
        out.contains(&format!("enf-{}-node1, enf-{}-node2", lab.name, lab.name)),
        "{out}"
    );
    let nodes = lab.get_nodes();
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["node1", "node2"]);
    assert_eq!(nodes[0].ipv4, "198.18.255.1");
    assert_eq!(nodes[1].ipv4, "198.18.255.3");
    assert_eq!(nodes[1].pod_cidrs, ["198.18.32.0/19", "2001:2::2000/115"]);
    for n in &nodes {
        assert!(n.agent_pid.is_some(), "{} has no agent", n.name);
        assert!(
            Path::new("/run/netns").join(&n.netns).exists(),
            "{}",
            n.netns
        );
        assert!(
            Path::new(&n.bpffs).join("ENF_VERDICTS").exists(),
            "{} pins nothing under {}",
            n.name,
            n.bpffs
        );
    }
    assert_ne!(nodes[0].agent_pid, nodes[1].agent_pid);
    // The replicas spread, each with an address of its node's block, attached on its
    // node only: each node pins links for its own two pods.
    let pods: Vec<PodInfo> = lab
        .get_pods()
        .into_iter()
        .filter(|p| p.namespace == "a")
        .collect();
    for node in &nodes {
        let here: Vec<&PodInfo> = pods.iter().filter(|p| p.node == node.name).collect();
        assert_eq!(here.len(), 2, "{}: {pods:#?}", node.name);
        let prefix = if node.name == "node1" {
            "198.18.0."
        } else {
            "198.18.32."
        };
        for p in here {
            assert!(
                p.ip.starts_with(prefix),
                "{} on {}: {}",
                p.name,
                node.name,
                p.ip
            );
        }
    }
    // Every pod reaches every other, across the nodes too, over IPv4 and IPv6.
    for ipv6 in [false, true] {
        let mut args = vec!["--from", "a/*", "--to", "a/*"];
        if ipv6 {
            args.push("--ipv6");
        }
        let rows = lab.probe(&args);
        assert_eq!(rows.len(), 12);
        assert!(rows.iter().all(|r| r.connected), "{rows:#?}");
    }
    // The external client reaches every node.
    expect(
        &lab,
        "external to the nodes",
        &[
            ("external", "node1:8000", 8000, "TCP", true),
            ("external", "node2:8000", 8000, "TCP", true),
            ("node1", "node2:22", 22, "TCP", true),
        ],
    );
}

#[test]
fn pod_to_pod_across_nodes_is_judged_on_both_nodes() {
    let _serial = serial();
    let lab = LabGuard::new("pp").with_nodes(2);
    let tmp = TempDir::new("pp");
    let pods = [
        pod_yaml("a", "client", "node1", &[80]),
        pod_yaml("a", "server", "node2", &[80]),
        pod_yaml("a", "peer", "node2", &[80]),
    ]
    .join("---\n");
    lab.up(&[&tmp.write("pods.yaml", &pods)], true);
    assert_eq!(lab.pod("a/client").node, "node1");
    assert_eq!(lab.pod("a/server").node, "node2");
    let both = |lab: &LabGuard, what: &str, to_server: bool, from_server: bool| {
        expect(
            lab,
            what,
            &[
                ("a/client", "a/server", 80, "TCP", to_server),
                ("a/client", "a/server", 80, "UDP", to_server),
                ("a/server", "a/client", 80, "TCP", from_server),
                ("a/server", "a/client", 80, "UDP", from_server),
            ],
        );
    };
    both(&lab, "open", true, true);

    // The client's egress, judged on node1 only: a deny there must stop the flow.
    let client_egress = tmp.write(
        "client-egress.yaml",
        &np(
            "a",
            "client-no-egress",
            "podSelector: {matchLabels: {app: client}}\npolicyTypes: [Egress]",
        ),
    );
    lab.apply(&client_egress);
    // server -> client still works: the client's replies pass by conntrack on node1.
    both(&lab, "client egress denied (node1)", false, true);
    lab.delete(&client_egress);

    // The server's ingress, judged on node2 only.
    let server_ingress = tmp.write(
        "server-ingress.yaml",
        &np(
            "a",
            "server-no-ingress",
            "podSelector: {matchLabels: {app: server}}\npolicyTypes: [Ingress]",
        ),
    );
    lab.apply(&server_ingress);
    both(&lab, "server ingress denied (node2)", false, true);
    lab.delete(&server_ingress);

    // Only client -> server is allowed, on both legs; everything else is denied in
    // both directions on both pods. The connection completing proves the replies pass
    // by conntrack on node2 (server egress) and node1 (client ingress).
    let one_way = [
        np(
            "a",
            "client",
            "podSelector: {matchLabels: {app: client}}\npolicyTypes: [Ingress, Egress]\negress: [{to: [{podSelector: {matchLabels: {app: server}}}]}]",
        ),
        np(
            "a",
            "server",
            "podSelector: {matchLabels: {app: server}}\npolicyTypes: [Ingress, Egress]\ningress: [{from: [{podSelector: {matchLabels: {app: client}}}]}]",
        ),
    ]
    .join("---\n");
    lab.apply(&tmp.write("one-way.yaml", &one_way));
    both(&lab, "one way, replies by conntrack", true, false);
    expect(
        &lab,
        "the allow names one peer only",
        &[("a/client", "a/peer", 80, "TCP", false)],
    );
}

const CLUSTER_IP_APP: &str = "\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: a}
spec: {clusterIP: 198.19.0.60, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
";

#[test]
fn cluster_ip_with_a_backend_on_another_node_is_judged_after_dnat_on_the_clients_node() {
    let _serial = serial();
    let lab = LabGuard::new("cip").with_nodes(2);
    let tmp = TempDir::new("cip");
    let app = [
        pod_yaml("a", "client", "node1", &[80]),
        pod_yaml("a", "web", "node2", &[8080]),
        CLUSTER_IP_APP.to_owned(),
    ]
    .join("---\n");
    lab.up(&[&tmp.write("app.yaml", &app)], true);
    let to_web = |lab: &LabGuard, what: &str, want: bool| {
        expect(lab, what, &[("a/client", "svc/a/web", 80, "TCP", want)]);
    };
    to_web(&lab, "open", true);

    // The client may send nothing: the Service must not be a way around (node1).
    let deny = tmp.write(
        "deny.yaml",
        &np(
            "a",
            "client-no-egress",
            "podSelector: {matchLabels: {app: client}}\npolicyTypes: [Egress]",
        ),
    );
    lab.apply(&deny);
    to_web(&lab, "client egress denied", false);
    lab.delete(&deny);

    // Egress is judged against the backend after DNAT: its port 8080 is allowed, the
    // Service port 80 names nothing. The client's ingress is closed: the reply (from
    // the ClusterIP once un-DNATed) passes by conntrack.
    let by_port = |port: u16| {
        np(
            "a",
            "client",
            &format!(
                "podSelector: {{matchLabels: {{app: client}}}}\npolicyTypes: [Ingress, Egress]\negress: [{{to: [{{podSelector: {{matchLabels: {{app: web}}}}}}], ports: [{{port: {port}}}]}}]"
            ),
        )
    };
    lab.apply(&tmp.write("to-80.yaml", &by_port(80)));
    to_web(&lab, "egress allows the Service port only", false);
    lab.apply(&tmp.write("to-8080.yaml", &by_port(8080)));
    to_web(&lab, "egress allows the backend port", true);

    // The backend's ingress, judged on node2.
    lab.apply(&tmp.write(
        "web-ingress.yaml",
        &np(
            "a",
            "web-no-ingress",
            "podSelector: {matchLabels: {app: web}}\npolicyTypes: [Ingress]",
        ),
    ));
    to_web(&lab, "backend ingress denied (node2)", false);
}

/// `curl http://<node>:<port>/clientip` from the external client: what the backend saw.
fn client_ip_seen(lab: &LabGuard, node_ip: &str, port: u16) -> Option<String> {
    let url = format!("http://{node_ip}:{port}/clientip");
    let (code, out, _) = lab.exec("external", &["curl", "-s", "-m", "2", &url]);
    (code == 0).then(|| out.trim().split(':').next().unwrap_or_default().to_owned())
}

const NODEPORT_APP: &str = "\
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default, labels: {app: client}}
spec: {nodeName: node1, containers: [{name: c}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: default, labels: {app: web}}
spec: {nodeName: node2, containers: [{name: web, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 31852}]
---
apiVersion: v1
kind: Service
metadata: {name: other, namespace: default}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 81, targetPort: 8080, nodePort: 30080}]
";

#[test]
fn nodeport_to_one_node_with_the_backend_on_another() {
    let _serial = serial();
    let lab = LabGuard::new("np").with_nodes(2);
    let tmp = TempDir::new("np");
    let hep = |f: &str| enforcer_tests::lab::fixture(&format!("hostendpoints/{f}"));
    lab.up(&[&tmp.write("app.yaml", NODEPORT_APP)], true);
    let (node1, node2, external) = ("198.18.255.1", "198.18.255.3", "198.18.255.2");

    // externalTrafficPolicy Cluster: both nodes forward; node1 SNATs to its own address
    // (kube-proxy's masquerade), node2 hands the packet to its local backend as is.
    expect(
        &lab,
        "Cluster",
        &[
            ("external", "node1:31852", 31852, "TCP", true),
            ("external", "node2:31852", 31852, "TCP", true),
        ],
    );
    assert_eq!(client_ip_seen(&lab, node1, 31852).as_deref(), Some(node1));
    assert_eq!(
        client_ip_seen(&lab, node2, 31852).as_deref(),
        Some(external)
    );

    // The backend's ingress is judged on node2, whichever node the client came in by.
    let deny = tmp.write(
        "deny.yaml",
        &np(
            "default",
            "web-no-ingress",
            "podSelector: {matchLabels: {app: web}}\npolicyTypes: [Ingress]",
        ),
    );
    lab.apply(&deny);
    expect(
        &lab,
        "backend ingress denied (node2)",
        &[
            ("external", "node1:31852", 31852, "TCP", false),
            ("external", "node2:31852", 31852, "TCP", false),
        ],
    );
    lab.delete(&deny);

    // Seed 002 on node1's eth0 only: preDNAT admits the NodePort in use and nothing
    // else from outside, judged on node1 before the DNAT. node2 has no host endpoint.
    let seed = [
        hep("002-node1-eth0.yaml"),
        hep("002-allow-cluster-internal-ingress-only.yaml"),
        hep("002-allow-outbound-external.yaml"),
        hep("002-allow-nodeport.yaml"),
    ];
    for f in &seed {
        lab.apply(f);
    }
    expect(
        &lab,
        "preDNAT on node1's host endpoint",
        &[
            ("external", "node1:31852", 31852, "TCP", true),
            ("external", "node1:30080", 30080, "TCP", false),
            ("external", "node2:30080", 30080, "TCP", true),
        ],
    );
    for f in seed.iter().rev() {
        lab.delete(f);
    }

    // externalTrafficPolicy Local: only the backend's node forwards, without SNAT; the
    // other drops (kube-proxy has no local endpoint there).
    let local = NODEPORT_APP.replace(
        "  type: NodePort\n  selector: {app: web}\n  ports: [{port: 80,",
        "  type: NodePort\n  externalTrafficPolicy: Local\n  selector: {app: web}\n  ports: [{port: 80,",
    );
    assert_ne!(local, NODEPORT_APP);
    lab.apply(&tmp.write("local.yaml", &local));
    expect(
        &lab,
        "Local",
        &[
            ("external", "node1:31852", 31852, "TCP", false),
            ("external", "node2:31852", 31852, "TCP", true),
            ("external", "node1:30080", 30080, "TCP", true),
            // Traffic from a pod of node1, or from node1 itself, is not external:
            // kube-proxy sends it to any backend.
            ("default/client", "node1:31852", 31852, "TCP", true),
            ("node1", "node1:31852", 31852, "TCP", true),
        ],
    );
    assert_eq!(
        client_ip_seen(&lab, node2, 31852).as_deref(),
        Some(external)
    );
    // The backend's verdict sees the real client: an ipBlock naming it admits it, one
    // that does not refuses it.
    let from = |cidr: &str| {
        np(
            "default",
            "web-from",
            &format!(
                "podSelector: {{matchLabels: {{app: web}}}}\npolicyTypes: [Ingress]\ningress: [{{from: [{{ipBlock: {{cidr: {cidr}}}}}]}}]"
            ),
        )
    };
    lab.apply(&tmp.write("from-client.yaml", &from("198.18.255.2/32")));
    expect(
        &lab,
        "Local: ipBlock of the client",
        &[("external", "node2:31852", 31852, "TCP", true)],
    );
    lab.apply(&tmp.write("from-other.yaml", &from("198.18.254.0/24")));
    expect(
        &lab,
        "Local: ipBlock of someone else",
        &[("external", "node2:31852", 31852, "TCP", false)],
    );
}

/// `curl` straight from a netns, without `enforcer lab` (which waits for every agent).
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

/// The agent status file of `node` (generation and applied revision).
fn status(lab: &LabGuard, node: &str) -> serde_json::Value {
    let path = lab
        .state_dir()
        .join("datastore")
        .join(format!("status-{node}.json"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn an_agent_restart_or_crash_on_one_node_leaves_the_other_alone_and_its_own_enforced() {
    let _serial = serial();
    let lab = LabGuard::new("ar").with_nodes(2);
    let tmp = TempDir::new("ar");
    let pods = [
        pod_yaml("a", "c1", "node1", &[80]),
        pod_yaml("a", "s1", "node1", &[80]),
        pod_yaml("a", "c2", "node2", &[80]),
        pod_yaml("a", "s2", "node2", &[80]),
    ]
    .join("---\n");
    lab.up(&[&tmp.write("pods.yaml", &pods)], true);
    // The servers admit c1 only.
    let policy = [
        np(
            "a",
            "s1",
            "podSelector: {matchLabels: {app: s1}}\ningress: [{from: [{podSelector: {matchLabels: {app: c1}}}]}]",
        ),
        np(
            "a",
            "s2",
            "podSelector: {matchLabels: {app: s2}}\ningress: [{from: [{podSelector: {matchLabels: {app: c1}}}]}]",
        ),
    ]
    .join("---\n");
    lab.apply(&tmp.write("policy.yaml", &policy));
    let matrix: Vec<Row<'_>> = vec![
        ("a/c1", "a/s1", 80, "TCP", true),
        ("a/c1", "a/s2", 80, "TCP", true),
        ("a/c2", "a/s1", 80, "TCP", false),
        ("a/c2", "a/s2", 80, "TCP", false),
    ];
    expect(&lab, "before", &matrix);
    let nodes = lab.get_nodes();
    let node1_before = status(&lab, "node1");

    // node2's agent restarts (SIGTERM): node1's agent, generation and revision stay.
    lab.run_ok(&["restart-agent", "--node", "node2"]);
    let after = lab.get_nodes();
    assert_eq!(
        after[0].agent_pid, nodes[0].agent_pid,
        "node1's agent was touched"
    );
    assert_ne!(
        after[1].agent_pid, nodes[1].agent_pid,
        "node2's agent did not restart"
    );
    assert_eq!(status(&lab, "node1"), node1_before);
    expect(&lab, "after node2's agent restarted", &matrix);

    // node2's agent crashes and stays down: its pins keep enforcing on node2 (c1
    // allowed, c2 denied into s2), node1 is unaffected.
    let pods = lab.get_pods();
    let netns = |key: &str| {
        pods.iter()
            .find(|p| format!("{}/{}", p.namespace, p.name) == key)
            .map_or_else(|| panic!("no pod {key}"), |p| p.netns.clone())
    };
    let ip = |key: &str| lab.pod(key).ip;
    let (s1, s2) = (ip("a/s1"), ip("a/s2"));
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
                    "--node",
                    "node2",
                    "--kill",
                    "--down-ms",
                    "3000",
                ])
                .status()
                .is_ok_and(|s| s.success())
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        for (from, to, want) in [
            ("a/c1", &s2, true),
            ("a/c2", &s2, false),
            ("a/c1", &s1, true),
            ("a/c2", &s1, false),
        ] {
            assert_eq!(
                curl_in_netns(&netns(from), &format!("http://{to}:80/")),
                want,
                "{from} -> {to} while node2's agent is down"
            );
        }
    }
    assert!(restart.join().unwrap_or(false), "restart-agent failed");
    assert_eq!(lab.get_nodes()[0].agent_pid, nodes[0].agent_pid);
    assert_eq!(status(&lab, "node1"), node1_before);
    expect(&lab, "after node2's agent crashed and came back", &matrix);
}

#[test]
fn three_nodes_over_vxlan() {
    let _serial = serial();
    let lab = LabGuard::new("vx").with_nodes(3).with_encap("vxlan");
    let tmp = TempDir::new("vx");
    let pods = [
        pod_yaml("a", "p1", "node1", &[80]),
        pod_yaml("a", "p2", "node2", &[80]),
        pod_yaml("a", "p3", "node3", &[80]),
        "apiVersion: v1\nkind: Service\nmetadata: {name: p3, namespace: a}\nspec: {selector: {app: p3}, ports: [{port: 8080, targetPort: 80}]}\n".to_owned(),
    ]
    .join("---\n");
    lab.up(&[&tmp.write("pods.yaml", &pods)], true);
    // The pod routes to the other nodes' blocks go through the tunnel device.
    let nodes = lab.get_nodes();
    let out = std::process::Command::new("ip")
        .args(["-n", &nodes[0].netns, "route", "show", "198.18.64.0/19"])
        .output()
        .unwrap_or_else(|e| panic!("ip route: {e}"));
    let route = String::from_utf8_lossy(&out.stdout);
    assert!(route.contains("dev vxlan.calico"), "{route}");
    let rows = lab.probe(&["--from", "a/*", "--to", "a/*"]);
    assert_eq!(rows.len(), 6 * 2, "{rows:#?}");
    assert!(rows.iter().all(|r| r.connected), "{rows:#?}");
    let rows = lab.probe(&["--from", "a/*", "--to", "a/*", "--ipv6"]);
    assert!(rows.iter().all(|r| r.connected), "{rows:#?}");
    // Denied on the destination's node (node3), allowed elsewhere.
    lab.apply(&tmp.write(
        "p3.yaml",
        &np(
            "a",
            "p3",
            "podSelector: {matchLabels: {app: p3}}\ningress: [{from: [{podSelector: {matchLabels: {app: p1}}}]}]",
        ),
    ));
    expect(
        &lab,
        "p3 admits p1 only",
        &[
            ("a/p1", "a/p3", 80, "TCP", true),
            ("a/p2", "a/p3", 80, "TCP", false),
            ("a/p2", "a/p3", 80, "UDP", false),
            ("a/p3", "a/p2", 80, "TCP", true),
        ],
    );
    // A ClusterIP whose backend is on node3: the client's egress is judged on its own
    // node where the translated packet enters the tunnel.
    lab.apply(&tmp.write(
        "p1.yaml",
        &np(
            "a",
            "p1",
            "podSelector: {matchLabels: {app: p1}}\npolicyTypes: [Egress]",
        ),
    ));
    expect(
        &lab,
        "p1 may send nothing, not even through a Service",
        &[
            ("a/p1", "svc/a/p3", 8080, "TCP", false),
            ("a/p1", "a/p3", 80, "TCP", false),
            ("a/p2", "a/p1", 80, "TCP", true),
        ],
    );
}

/// Issue 11's scale point: the whole matrix of 50 pods on two nodes (2,450 probes, a
/// quarter of them denied, so they wait out their timeout). The time is printed, not
/// asserted (tests never assert wall-clock time); every cell is checked.
#[test]
fn the_whole_matrix_of_fifty_pods_on_two_nodes() {
    let _serial = serial();
    let lab = LabGuard::new("big").with_nodes(2);
    let tmp = TempDir::new("big");
    let deployment = |name: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: a}}\nspec:\n  replicas: 25\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: c, ports: [{{containerPort: 80}}]}}]}}\n"
        )
    };
    let started = std::time::Instant::now();
    lab.up(
        &[
            &tmp.write("web.yaml", &deployment("web")),
            &tmp.write("db.yaml", &deployment("db")),
        ],
        true,
    );
    let up = started.elapsed();
    let per_node = lab.assert_spread();
    lab.apply(&tmp.write(
        "db.yaml",
        &np(
            "a",
            "db-from-web",
            "podSelector: {matchLabels: {app: db}}\ningress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]",
        ),
    ));
    let started = std::time::Instant::now();
    let rows = lab.probe(&["--from", "a/*", "--to", "a/*"]);
    let took = started.elapsed();
    assert_eq!(rows.len(), 50 * 49);
    let wrong: Vec<String> = rows
        .iter()
        .filter(|r| {
            let denied = r.from.starts_with("a/db-") && r.to.starts_with("a/db-");
            r.connected == denied
        })
        .map(|r| format!("{} -> {}: {}", r.from, r.to, r.result))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} wrong cells:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    let denied = rows.iter().filter(|r| !r.connected).count();
    eprintln!(
        "50 pods on 2 nodes {per_node:?}: lab up {:.1}s; lab probe of the whole matrix ({} probes, {denied} denied) {:.1}s",
        up.as_secs_f64(),
        rows.len(),
        took.as_secs_f64()
    );
}
