//! Attacks on the node from outside the cluster, in the lab, from the attacker's side
//! (the external client's namespace), on real packets.
//!
//! Security item 3: "to the host" is a fact of the node. Seed 001's default deny with
//! seed 002's host endpoint on `eth0` (whose `expectedIPs` list only 198.18.255.1):
//! the node's IPv6 address, its link-local address, a secondary address and an address
//! of another interface are all the host's (Linux is a weak host: any local address
//! is delivered on any interface), so each must meet the host endpoint's policy
//! (deny), not pass as "forwarded" traffic.
//!
//! Item 2: failsafe ports are matched by destination port in their own direction only.
//!
//! Item 11: a local pod's address arriving from outside is not that pod (RPF).
//!
//! Privileged: `cargo build --bin enforcer && cargo test -p enforcer-tests --test
//! attacks_node -- --test-threads=1`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::{Duration, Instant};

use enforcer_tests::attack::{
    Datagrams, TcpOutcome, UdpCapture, ifindex_in, tcp_attempt, udp_attempt, udp4_forged,
};
use enforcer_tests::lab::{LabGuard, PodInfo, fixture, serial};

const NODE_V4: &str = "198.18.255.1";
const NODE_V6: &str = "2001:2:0:ff::1";
/// The external client's address.
const EXTERNAL_V4: &str = "198.18.255.2";
/// A port the node's own responder serves (not failsafe).
const SERVICE: u16 = 8000;
/// Failsafe inbound (Calico's default): reachable whatever the policy, which proves
/// an address is reachable at all before its denial is checked.
const SSH: u16 = 22;
const ATTEMPT: Duration = Duration::from_millis(700);

fn ip(netns: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("ip")
        .arg("-n")
        .arg(netns)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip -n {netns} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip -n {netns} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The lab's namespaces: (node, external client).
fn namespaces(lab: &LabGuard) -> (String, String) {
    (
        format!("enf-{}-node", lab.name),
        format!("enf-{}-ext", lab.name),
    )
}

fn attempt(ext: &str, dest: SocketAddr) -> TcpOutcome {
    tcp_attempt(ext, None, dest, ATTEMPT)
}

/// Waits (bounded) until `dest` stops answering: the agent learns a new address from a
/// netlink event and recompiles, which takes a moment.
fn denied_within(ext: &str, dest: SocketAddr, bound: Duration) -> TcpOutcome {
    let deadline = Instant::now() + bound;
    loop {
        let outcome = attempt(ext, dest);
        if !outcome.connected() || Instant::now() >= deadline {
            return outcome;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The node's link-local address on `eth0`.
fn link_local(node: &str) -> Ipv6Addr {
    let out = ip(
        node,
        &["-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"],
    );
    out.split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no link-local address on the node's eth0: {out}"))
}

#[test]
fn every_node_address_is_the_hosts_not_only_expected_ips() {
    let _serial = serial();
    let lab = LabGuard::new("an3");
    lab.up(
        &[
            &fixture("hostendpoints/nodeport-app.yaml"),
            &fixture("hostendpoints/001-default-deny.yaml"),
            &fixture("hostendpoints/002-node1-eth0.yaml"),
        ],
        true,
    );
    let (node, ext) = namespaces(&lab);
    let v4 = |a: &str, port| {
        SocketAddr::new(a.parse::<IpAddr>().unwrap_or_else(|e| panic!("{e}")), port)
    };

    // The declared address: failsafe SSH answers, the service is denied.
    assert!(attempt(&ext, v4(NODE_V4, SSH)).connected());
    let outcome = attempt(&ext, v4(NODE_V4, SERVICE));
    assert!(!outcome.connected(), "{NODE_V4}:{SERVICE}: {outcome:?}");

    // `nc -6 2001:2:0:ff::1 8000` from outside: the node's IPv6 address.
    assert!(
        attempt(&ext, v4(NODE_V6, SSH)).connected(),
        "IPv6 reachable"
    );
    let outcome = attempt(&ext, v4(NODE_V6, SERVICE));
    assert!(
        !outcome.connected(),
        "[{NODE_V6}]:{SERVICE} passed as forwarded traffic: {outcome:?}"
    );

    // `nc -6 fe80::…%eth0 8000`: the node's link-local address.
    let scope = ifindex_in(&ext, "eth0");
    let ll = |port| SocketAddr::V6(SocketAddrV6::new(link_local(&node), port, 0, scope));
    assert!(attempt(&ext, ll(SSH)).connected(), "link-local reachable");
    let outcome = attempt(&ext, ll(SERVICE));
    assert!(
        !outcome.connected(),
        "link-local {}:{SERVICE} passed as forwarded traffic: {outcome:?}",
        ll(SERVICE)
    );

    // A secondary address on eth0, added while the agent runs (netlink event).
    ip(&node, &["addr", "add", "198.18.255.9/32", "dev", "eth0"]);
    assert!(attempt(&ext, v4("198.18.255.9", SSH)).connected());
    let outcome = denied_within(&ext, v4("198.18.255.9", SERVICE), Duration::from_secs(10));
    assert!(
        !outcome.connected(),
        "secondary address 198.18.255.9:{SERVICE}: {outcome:?}"
    );

    // An address of another interface (as a tunnel or dummy device carries one),
    // reached through eth0: the weak host model delivers it to the host too.
    ip(
        &node,
        &[
            "link", "add", "enfx0", "type", "veth", "peer", "name", "enfx1",
        ],
    );
    ip(&node, &["addr", "add", "198.18.254.1/32", "dev", "enfx0"]);
    ip(&node, &["link", "set", "enfx0", "up"]);
    ip(&node, &["link", "set", "enfx1", "up"]);
    ip(&ext, &["route", "add", "198.18.254.1/32", "via", NODE_V4]);
    assert!(attempt(&ext, v4("198.18.254.1", SSH)).connected());
    let outcome = denied_within(&ext, v4("198.18.254.1", SERVICE), Duration::from_secs(10));
    assert!(
        !outcome.connected(),
        "another interface's address 198.18.254.1:{SERVICE}: {outcome:?}"
    );
}

/// Security item 2: failsafe matched the *source* port too, so with seed 001's
/// default deny and a host endpoint on `eth0`, `nc -p 6443 <node> 8000` from outside
/// connected (as did every outbound-failsafe port used as source). Failsafe now
/// matches the destination port of its own direction only.
#[test]
fn a_failsafe_source_port_opens_nothing() {
    let _serial = serial();
    let lab = LabGuard::new("an2");
    lab.up(
        &[
            &fixture("hostendpoints/nodeport-app.yaml"),
            &fixture("hostendpoints/001-default-deny.yaml"),
            &fixture("hostendpoints/002-node1-eth0.yaml"),
        ],
        true,
    );
    let (_, ext) = namespaces(&lab);
    let node = |port| SocketAddr::new(NODE_V4.parse().unwrap_or_else(|e| panic!("{e}")), port);
    let from = |port| SocketAddr::from(([198, 18, 255, 2], port));
    // Failsafe inbound by destination: SSH answers.
    assert!(attempt(&ext, node(SSH)).connected());
    // Calico's default outbound failsafe ports (TCP), used as the attacker's source.
    for sport in [179, 2379, 2380, 5473, 6443, 6666, 6667] {
        let outcome = tcp_attempt(&ext, Some(from(sport)), node(SERVICE), ATTEMPT);
        assert!(
            !outcome.connected(),
            "nc -p {sport} node {SERVICE}: {outcome:?}"
        );
    }
    // ...and UDP 53 and 67 to the node's UDP service.
    for sport in [53, 67] {
        let answer = udp_attempt(&ext, Some(from(sport)), node(SERVICE), ATTEMPT);
        assert_eq!(answer, None, "UDP from port {sport} to node:{SERVICE}");
    }
}

const TRUSTING: &str = "\
apiVersion: v1
kind: Pod
metadata: {name: trusted, namespace: default, labels: {app: trusted}}
spec: {containers: [{name: c}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: default, labels: {app: db}}
spec: {containers: [{name: c}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-trusted, namespace: default}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {app: trusted}}}]}]
";

/// `default/trusted` and `default/db` of the lab.
fn trusted_and_db(lab: &LabGuard) -> (PodInfo, PodInfo) {
    (lab.pod("default/trusted"), lab.pod("default/db"))
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// `db` received the real `trusted`'s datagram (`b"real"`: the capture works) and not
/// the forged one (`b"forged"`, sent `how`).
fn only_the_real_one_arrived(got: &Datagrams, trusted: &PodInfo, db: &PodInfo, how: &str) {
    let payloads: Vec<&[u8]> = got.iter().map(|(_, p)| p.as_slice()).collect();
    assert!(
        payloads.contains(&&b"real"[..]),
        "the real pod's datagram arrives (the capture works): {got:?}"
    );
    assert!(
        !payloads.contains(&&b"forged"[..]),
        "{how} carrying {}'s address reached {}: {got:?}",
        trusted.ip,
        db.ip
    );
}

/// Security item 11: an outside host that forges a local pod's address reached that
/// pod's peers as the pod (the node's `rp_filter` is off, as it often is; conntrack
/// keys carry no interface). `db` admits only `trusted`: the real `trusted` gets
/// through, the forged one from the external client does not (a local pod's address
/// only ever enters the node through its own veth).
#[test]
fn an_outside_host_forging_a_local_pods_address_is_not_that_pod() {
    let _serial = serial();
    let lab = LabGuard::new("an11");
    let tmp = enforcer_tests::lab::TempDir::new("an11");
    lab.up(&[&tmp.write("app.yaml", TRUSTING)], true);
    let (_, ext) = namespaces(&lab);
    let (trusted, db) = trusted_and_db(&lab);
    const PORT: u16 = 9999;

    let capture = UdpCapture::start(&db.netns, PORT, Duration::from_millis(1500));
    udp4_forged(
        &trusted.netns,
        (v4(&trusted.ip), 40_000),
        (v4(&db.ip), PORT),
        b"real",
    )
    .unwrap_or_else(|e| panic!("send: {e}"));
    udp4_forged(
        &ext,
        (v4(&trusted.ip), 40_001),
        (v4(&db.ip), PORT),
        b"forged",
    )
    .unwrap_or_else(|e| panic!("send: {e}"));
    only_the_real_one_arrived(&capture.finish(), &trusted, &db, "a datagram from outside");
}

/// `TRUSTING` across two nodes: `trusted` on node2, `db` on node1.
const TRUSTING_ACROSS_NODES: &str = "\
apiVersion: v1
kind: Pod
metadata: {name: trusted, namespace: default, labels: {app: trusted}}
spec: {nodeName: node2, containers: [{name: c}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: default, labels: {app: db}}
spec: {nodeName: node1, containers: [{name: c}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-trusted, namespace: default}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {app: trusted}}}]}]
";

/// A VXLAN payload (VNI `vni`) carrying an Ethernet frame to `dst_mac` with the UDP
/// datagram `src` -> `dst` holding `payload`.
fn vxlan_payload(
    vni: u32,
    dst_mac: &str,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    payload: &[u8],
) -> Vec<u8> {
    let mut out = vec![0x08, 0, 0, 0];
    out.extend_from_slice(&(vni << 8).to_be_bytes());
    for byte in dst_mac.split(':') {
        out.push(u8::from_str_radix(byte, 16).unwrap_or_else(|e| panic!("{dst_mac}: {e}")));
    }
    out.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x66, 0x08, 0x00]);
    out.extend_from_slice(&enforcer_tests::wire::ipv4_udp(src, dst, payload));
    out
}

/// Security item 11, from outside: the node decapsulates VXLAN from any source, and
/// the inner packet enters with whatever source the sender wrote there. An outside
/// host sent VXLAN to node1 carrying "node2's `trusted` -> `db`", and `db` (which
/// admits `trusted`) received it. Tunnel packets to a node are now accepted from
/// cluster nodes only (the `Node` objects' addresses), as Felix does: the real
/// `trusted` still gets through (VXLAN from node2), the forged one does not.
#[test]
fn an_outside_host_tunnelling_a_pods_packet_to_a_node_is_not_that_pod() {
    let _serial = serial();
    let lab = LabGuard::new("an11v").with_nodes(2).with_encap("vxlan");
    let tmp = enforcer_tests::lab::TempDir::new("an11v");
    lab.up(&[&tmp.write("app.yaml", TRUSTING_ACROSS_NODES)], true);
    let (_, ext) = namespaces(&lab);
    let (trusted, db) = trusted_and_db(&lab);
    let node1 = v4(NODE_V4);
    let vni: u32 = enforcer::lab::fabric::VXLAN_VNI
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    const PORT: u16 = 9999;

    let capture = UdpCapture::start(&db.netns, PORT, Duration::from_millis(1500));
    udp4_forged(
        &trusted.netns,
        (v4(&trusted.ip), 40_000),
        (v4(&db.ip), PORT),
        b"real",
    )
    .unwrap_or_else(|e| panic!("send: {e}"));
    let forged = vxlan_payload(
        vni,
        &enforcer::lab::fabric::vtep_mac(node1),
        (v4(&trusted.ip), 40_001),
        (v4(&db.ip), PORT),
        b"forged",
    );
    udp4_forged(&ext, (v4(EXTERNAL_V4), 40_002), (node1, 4789), &forged)
        .unwrap_or_else(|e| panic!("send: {e}"));
    only_the_real_one_arrived(
        &capture.finish(),
        &trusted,
        &db,
        "VXLAN from outside to node1",
    );
}
