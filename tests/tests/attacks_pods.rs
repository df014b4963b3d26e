//! Attacks from a pod, in the lab, on real packets, from the attacker's side.
//!
//! Security item 5: a new pod ran unfiltered from the moment its veth appeared until
//! its Pod object reached the agent and the attach ran. A workload interface (Calico's
//! `cali` prefix) is now attached as soon as the link exists: with no endpoint entry
//! for it, the programs drop everything.
//!
//! Item 1: a Service's egress is judged after DNAT wherever its backend is.
//!
//! Item 4: NDP-typed `ICMPv6` is no channel out of a denied pod.
//!
//! Item 9: kube-proxy's masquerade does not make a pod's `NodePort` traffic the node's.
//!
//! Item 10's lab proofs (a `hostNetwork` pod's labels and a finished pod's address)
//! are in `lab_workloads.rs`.
//!
//! Privileged: `cargo build --bin enforcer && cargo test -p enforcer-tests --test
//! attacks_pods -- --test-threads=1`.

use std::io::Write as _;
use std::net::{Ipv6Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use enforcer::datastore::file::FileDatastore;
use enforcer_tests::attack::{Icmpv6Capture, TcpOutcome, icmpv6_send, tcp_attempt};
use enforcer_tests::lab::{LabGuard, TempDir, fixture, serial, unique_name};
use enforcer_tests::traffic::enter_netns;

const ATTEMPT: Duration = Duration::from_millis(700);

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A pod the orchestrator has not told the agent about (yet): a netns and a `cali`
/// veth wired into the node as the lab wires pods, with no Pod object anywhere.
/// Deleted on drop.
struct UnknownPod {
    netns: String,
}

impl UnknownPod {
    fn create(node: &str, host_iface: &str, addr: &str) -> Self {
        let netns = format!("enf-{}", unique_name("up"));
        ip(&["netns", "add", &netns]);
        let pod = Self { netns };
        let ns = pod.netns.as_str();
        ip(&[
            "-n", node, "link", "add", host_iface, "type", "veth", "peer", "name", "eth0", "netns",
            ns,
        ]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{addr}/32"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", ns, "link", "set", "eth0", "up"]);
        ip(&[
            "-n",
            ns,
            "route",
            "add",
            "default",
            "via",
            "169.254.1.1",
            "dev",
            "eth0",
            "onlink",
        ]);
        ip(&["-n", node, "link", "set", host_iface, "up"]);
        ip(&[
            "-n",
            node,
            "route",
            "add",
            &format!("{addr}/32"),
            "dev",
            host_iface,
        ]);
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", node, "sysctl", "-qw"])
            .arg(format!("net.ipv4.conf.{host_iface}.proxy_arp=1"))
            .arg(format!("net.ipv4.neigh.{host_iface}.proxy_delay=0"))
            .output()
            .unwrap_or_else(|e| panic!("sysctl: {e}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        pod
    }
}

impl Drop for UnknownPod {
    fn drop(&mut self) {
        // The veth goes with the namespace.
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &self.netns])
            .status();
    }
}

/// A TCP service in a namespace that answers every connection with a line, until
/// dropped.
struct Listener {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    fn start(netns: &str, at: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let stop = Arc::clone(&stop);
            let netns = netns.to_owned();
            std::thread::spawn(move || {
                let bound = enter_netns(&netns).and_then(|()| {
                    let l = TcpListener::bind(at)?;
                    l.set_nonblocking(true)?;
                    Ok(l)
                });
                let listener = match bound {
                    Ok(l) => {
                        let _ = ready_tx.send(Ok(()));
                        l
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let _ = stream.write_all(b"unknown pod\n");
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        ready_rx
            .recv()
            .unwrap_or_else(|e| panic!("listener thread: {e}"))
            .unwrap_or_else(|e| panic!("listening in {netns} on {at}: {e}"));
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn a_pod_the_agent_does_not_know_yet_sends_and_receives_nothing() {
    let _serial = serial();
    let lab = LabGuard::new("ap5");
    // No policy at all: every known pod is open.
    lab.up(&[&fixture("tutorial/dev-app-deployments.yaml")], true);
    let node = format!("enf-{}-node", lab.name);
    let ext = format!("enf-{}-ext", lab.name);
    let frontend = lab
        .get_pods()
        .into_iter()
        .find(|p| p.namespace == "dev-app" && p.name == "frontend-0")
        .unwrap_or_else(|| panic!("no dev-app/frontend-0"));
    let frontend_http = addr(&format!("{}:80", frontend.ip));
    assert!(
        tcp_attempt(&ext, None, frontend_http, ATTEMPT).connected(),
        "without policy the frontend answers the external client"
    );

    // A veth named as Calico names workload interfaces, before any Pod object says
    // whose it is, with a service listening inside.
    let host_iface = "calie5c0ffee000";
    let unknown = UnknownPod::create(&node, host_iface, "198.18.0.250");
    let _listener = Listener::start(&unknown.netns, addr("198.18.0.250:8080"));
    // The agent attaches on the link event (milliseconds; the CNI plugin is still
    // configuring the pod's addresses then): wait for it to say so.
    let store = FileDatastore::open(lab.state_dir().join("datastore"))
        .unwrap_or_else(|e| panic!("datastore: {e}"));
    let reported = || {
        let status = store.read_status().ok().flatten().unwrap_or_default();
        status
            .interfaces_without_endpoint
            .iter()
            .any(|i| i == host_iface)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !reported() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Its traffic out: to a pod, and to the outside.
    for dest in [frontend_http, addr("198.18.255.2:80")] {
        let outcome = tcp_attempt(&unknown.netns, None, dest, ATTEMPT);
        assert!(
            !outcome.connected(),
            "an unknown workload interface passed traffic to {dest}: {outcome:?}"
        );
    }
    // And in: the external client and a pod reach its service through the node.
    for from in [ext.as_str(), frontend.netns.as_str()] {
        let outcome = tcp_attempt(from, None, addr("198.18.0.250:8080"), ATTEMPT);
        assert!(
            !outcome.connected(),
            "{from} reached a pod the agent does not know: {outcome:?}"
        );
    }
    assert!(reported(), "the status names the interface");
    // The known pods are unaffected.
    assert!(tcp_attempt(&ext, None, frontend_http, ATTEMPT).connected());
}

/// Security item 4: `ICMPv6` types 133-137 passed every hook for any addresses and
/// payload. A pod under a cluster-wide default deny sends type-135 packets with a
/// 68-byte payload to an external IPv6 address: none may leave the node. (NDP is
/// link-local: valid NDP has hop limit 255 and link-scope or the host's addresses.)
#[test]
fn ndp_types_carry_no_data_out_of_a_denied_pod() {
    let _serial = serial();
    let lab = LabGuard::new("ap4");
    lab.up(
        &[
            &fixture("hostendpoints/nodeport-app.yaml"),
            &fixture("hostendpoints/001-default-deny.yaml"),
        ],
        true,
    );
    let ext = format!("enf-{}-ext", lab.name);
    let node = format!("enf-{}-node", lab.name);
    let web = lab
        .get_pods()
        .into_iter()
        .find(|p| p.namespace == "default" && p.name == "web-0")
        .unwrap_or_else(|| panic!("no default/web-0"));
    let external: Ipv6Addr = "2001:2:0:ff::2".parse().unwrap_or_else(|e| panic!("{e}"));
    const MARKER: &[u8] = b"exfiltrated-through-ndp";
    let mut payload = MARKER.to_vec();
    payload.resize(68, b'.');

    // The capture sees such a message when it does get there: the node's own.
    let capture = Icmpv6Capture::start(&ext, Duration::from_millis(1500), MARKER);
    icmpv6_send(&node, external, 135, &payload).unwrap_or_else(|e| panic!("send: {e}"));
    assert!(!capture.finish().is_empty(), "the capture works");

    let capture = Icmpv6Capture::start(&ext, Duration::from_millis(1500), MARKER);
    for icmp_type in [133, 134, 135, 136, 137] {
        icmpv6_send(&web.netns, external, icmp_type, &payload)
            .unwrap_or_else(|e| panic!("send type {icmp_type}: {e}"));
    }
    let leaked = capture.finish();
    assert!(
        leaked.is_empty(),
        "NDP-typed messages left the node from a denied pod: {:?}",
        leaked.iter().map(|m| m[0]).collect::<Vec<_>>()
    );
}

const SERVICES_OUTSIDE: &str = "\
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: a, labels: {app: client}}
spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: outside, namespace: a}
spec: {clusterIP: 198.19.0.50, ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: outside-1, namespace: a, labels: {kubernetes.io/service-name: outside}}
addressType: IPv4
endpoints: [{addresses: [198.18.255.2]}]
ports: [{name: http, port: 80, protocol: TCP}]
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
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-egress-deny, namespace: a}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
";

/// Security item 1: only a *local* backend's ingress hook ever judged a client's
/// deferred Service egress. A pod under default-deny egress reached a `ClusterIP` whose
/// backend is an external address (a selector-less Service's `EndpointSlice`) or the
/// node itself (as the `kubernetes` Service): connected. Its egress is now judged
/// after DNAT wherever the packet goes. And the fix's other half: a client allowed
/// to that backend, with isolated ingress, gets the reply from the VIP as a reply.
#[test]
fn service_egress_to_a_backend_outside_the_pods_is_judged() {
    let _serial = serial();
    let lab = LabGuard::new("ap1");
    let tmp = TempDir::new("ap1");
    lab.up(&[&tmp.write("setup.yaml", SERVICES_OUTSIDE)], true);
    let client = lab
        .get_pods()
        .into_iter()
        .find(|p| p.namespace == "a" && p.name == "client")
        .unwrap_or_else(|| panic!("no a/client"));
    let ext = format!("enf-{}-ext", lab.name);
    // The backends answer when asked directly (from outside the policy's reach).
    assert!(tcp_attempt(&ext, None, addr("198.18.255.2:80"), ATTEMPT).connected());
    for vip in ["198.19.0.50:80", "198.19.0.51:8080"] {
        let outcome = tcp_attempt(&client.netns, None, addr(vip), ATTEMPT);
        assert!(
            !outcome.connected(),
            "a pod under default-deny egress reached {vip}'s backend outside the pods: {outcome:?}"
        );
    }
    // Allowed to the external backend, ingress isolated: the reply from the VIP passes.
    lab.apply(&tmp.write(
        "allow.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: client-to-outside, namespace: a}\nspec:\n  podSelector: {matchLabels: {app: client}}\n  policyTypes: [Ingress, Egress]\n  egress:\n  - to: [{ipBlock: {cidr: 198.18.255.2/32}}]\n    ports: [{port: 80}]\n",
    ));
    let outcome = tcp_attempt(&client.netns, None, addr("198.19.0.50:80"), ATTEMPT);
    assert!(
        matches!(outcome, TcpOutcome::Answered { .. }),
        "allowed Service egress to an external backend, with isolated ingress: {outcome:?}"
    );
    // Still denied: the node-local backend.
    let outcome = tcp_attempt(&client.netns, None, addr("198.19.0.51:8080"), ATTEMPT);
    assert!(!outcome.connected(), "{outcome:?}");
}

const MASQUERADED: &str = "\
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default, labels: {app: client}}
spec: {containers: [{name: c}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: default, labels: {app: web}}
spec: {containers: [{name: web, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 31852}]
";

/// A `NetworkPolicy` admitting `web` from `from` only.
fn web_from(from: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: web-from, namespace: default}}\nspec:\n  podSelector: {{matchLabels: {{app: web}}}}\n  policyTypes: [Ingress]\n  ingress: [{{from: [{from}]}}]\n"
    )
}

/// A lab whose kube-proxy masquerades `NodePort` traffic to any backend, with
/// `MASQUERADED` up.
fn masquerading_lab(tag: &str) -> (LabGuard, TempDir) {
    let lab = LabGuard::new(tag).with_up_args(&["--kube-proxy-masquerade"]);
    let tmp = TempDir::new(tag);
    lab.up(&[&tmp.write("app.yaml", MASQUERADED)], true);
    (lab, tmp)
}

/// Security item 9: with kube-proxy's masquerade (`externalTrafficPolicy: Cluster`
/// masqueraded to a backend of the same node too, as kube-proxy does), the backend's
/// ingress hook (after `POSTROUTING`) saw the node's address: a pod that `web` does
/// not admit reached it through the `NodePort` because `web` admits the node (a
/// common rule, for probes). The pod behind the rewritten source is now judged.
#[test]
fn kube_proxy_masquerade_does_not_make_a_pod_the_node() {
    let _serial = serial();
    let (lab, tmp) = masquerading_lab("ap9");
    let write = |name: &str, text: &str| tmp.write(name, text);
    let url = "http://198.18.255.1:31852/clientip";
    let curl = || lab.exec("default/client", &["curl", "-s", "-m", "2", url]);

    // Admitted as itself: connected, and the backend saw the node's address (SNAT).
    lab.apply(&write(
        "from-client.yaml",
        &web_from("{podSelector: {matchLabels: {app: client}}}"),
    ));
    let (code, out, err) = curl();
    assert_eq!(code, 0, "the admitted client through the NodePort: {err}");
    assert!(
        out.trim().starts_with("198.18.255.1:"),
        "kube-proxy masqueraded the flow: the backend saw {out:?}"
    );

    // Admitting the node only: the client is not the node.
    lab.apply(&write(
        "from-client.yaml",
        &web_from("{ipBlock: {cidr: 198.18.255.1/32}}"),
    ));
    let (code, out, _) = curl();
    assert_ne!(
        code, 0,
        "a pod web does not admit reached it through the masqueraded NodePort: {out:?}"
    );
}

/// Security item 9(a): a client outside the cluster whose `NodePort` traffic kube-proxy
/// masquerades to a backend on the same node. The backend's ingress hook (after
/// `POSTROUTING`) saw the node's address, so an outside host `web` does not admit
/// reached it because `web` admits the node. The ingress guard now notes the client
/// before any translation, and the backend judges it as that client.
#[test]
fn kube_proxy_masquerade_does_not_make_an_outside_client_the_node() {
    let _serial = serial();
    let (lab, tmp) = masquerading_lab("ap9x");
    let write = |name: &str, text: &str| tmp.write(name, text);
    let ext = format!("enf-{}-ext", lab.name);
    let node_port: SocketAddr = "198.18.255.1:31852"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let attempt = || tcp_attempt(&ext, None, node_port, Duration::from_secs(2));

    // Admitted as itself (the external client's address): connected.
    lab.apply(&write(
        "from-ext.yaml",
        &web_from("{ipBlock: {cidr: 198.18.255.2/32}}"),
    ));
    let outcome = attempt();
    assert!(
        outcome.connected(),
        "the admitted outside client through the masqueraded NodePort: {outcome:?}"
    );

    // Admitting the node only: the outside client is not the node.
    lab.apply(&write(
        "from-ext.yaml",
        &web_from("{ipBlock: {cidr: 198.18.255.1/32}}"),
    ));
    let outcome = attempt();
    assert!(
        !outcome.connected(),
        "an outside host web does not admit reached it through the masqueraded NodePort: {outcome:?}"
    );
}
