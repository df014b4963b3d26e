//! Related ICMP on real packets in the lab, with the agent: Path MTU discovery works
//! under isolated ingress and egress, and a forged error quoting no approved flow is
//! dropped.
//!
//! A "fragmentation needed" cannot come from a router here (the lab has none with a
//! smaller MTU), so the backend pod forges a valid one with a raw socket, as a router on
//! the path would send it: to the frontend, quoting the frontend's allowed UDP datagram.
//! The frontend's kernel then lowers its path MTU to the backend (`IP_MTU` of the
//! connected socket). The same error quoting a datagram policy denied changes nothing.
//!
//! On a host endpoint (seed 002: preDNAT policy denies everything from outside the
//! cluster, in XDP) the external host forges the error about the node's own allowed
//! flow: it reaches the node, and one quoting no flow is dropped by XDP.
//!
//! Privileged: `cargo build --bin enforcer && cargo test -p enforcer-tests --test lab_related`.

use std::{
    net::{Ipv4Addr, UdpSocket},
    os::fd::AsRawFd,
    thread,
    time::{Duration, Instant},
};

use enforcer::lab::{
    LabName,
    host::{self, EXTERNAL_IP_V4},
    netns,
};
use enforcer_tests::{
    bpf::OrPanic as _,
    lab::{LabGuard, TempDir, fixture, serial},
    wire::internet_checksum,
};

const APP: &str = "tutorial/dev-app-deployments.yaml";

/// Default deny both ways in dev-app, plus UDP 8080 frontend → backend.
const DENY_AND_UDP_ALLOW: &str = r"
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
    ports: [{port: 8080, protocol: UDP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: backend-ingress, namespace: dev-app}
spec:
  podSelector: {matchLabels: {app: backend}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: frontend}}}]
    ports: [{port: 8080, protocol: UDP}]
";

/// The path MTU the forged errors announce.
const RELATED_MTU: u16 = 1300;
const FORGED_MTU: u16 = 1200;

/// Runs `f` on a thread inside the named netns (sockets it creates stay there).
fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    thread::scope(|s| {
        s.spawn(|| {
            netns::enter(ns).or_panic("entering the pod netns");
            f()
        })
        .join()
        .unwrap_or_else(|_| panic!("thread in netns {ns} panicked"))
    })
}

/// A UDP socket connected to `to` (don't-fragment: path MTU discovery on) that sent
/// one datagram.
fn udp_sender(to: (Ipv4Addr, u16)) -> UdpSocket {
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).or_panic("bind");
    set_int(&sock, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_DO);
    sock.connect(to).or_panic("connect");
    sock.send(b"ping").or_panic("send");
    sock
}

fn set_int(sock: &UdpSocket, opt: libc::c_int, value: libc::c_int) {
    // SAFETY: a valid socket fd and an int option of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            opt,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt: {}", std::io::Error::last_os_error());
}

/// `IP_MTU` of a connected socket: the path MTU the kernel holds for its peer.
fn path_mtu(sock: &UdpSocket) -> i32 {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid socket fd, an int buffer and its length.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU,
            (&raw mut value).cast(),
            &raw mut len,
        )
    };
    assert_eq!(
        rc,
        0,
        "getsockopt IP_MTU: {}",
        std::io::Error::last_os_error()
    );
    value
}

/// An ICMP "fragmentation needed" announcing `mtu`, quoting the IPv4 and UDP headers
/// of a 1400-byte datagram from `quoted_src` to `quoted_dst` (don't-fragment set).
fn frag_needed(mtu: u16, quoted_src: (Ipv4Addr, u16), quoted_dst: (Ipv4Addr, u16)) -> Vec<u8> {
    let mut m = vec![3, 4, 0, 0, 0, 0];
    m.extend_from_slice(&mtu.to_be_bytes());
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&1400u16.to_be_bytes());
    ip.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&quoted_src.0.octets());
    ip.extend_from_slice(&quoted_dst.0.octets());
    let ip_sum = internet_checksum(&ip);
    ip[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    m.extend_from_slice(&ip);
    m.extend_from_slice(&quoted_src.1.to_be_bytes());
    m.extend_from_slice(&quoted_dst.1.to_be_bytes());
    m.extend_from_slice(&1380u16.to_be_bytes());
    m.extend_from_slice(&[0, 0]);
    let sum = internet_checksum(&m);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

/// Sends `icmp` (a whole ICMP message) to `to` through a raw socket.
fn send_icmp(to: Ipv4Addr, icmp: &[u8]) {
    // SAFETY: plain socket calls on a fd this function owns and closes; `addr` is a
    // valid `sockaddr_in` of the size passed; `icmp` is a valid buffer.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP);
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(to.octets()),
            },
            sin_zero: [0; 8],
        };
        let n = libc::sendto(
            fd,
            icmp.as_ptr().cast(),
            icmp.len(),
            0,
            (&raw const addr).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        assert_eq!(usize::try_from(n).ok(), Some(icmp.len()), "sendto: {err}");
    }
}

/// Waits up to `within` for the socket's path MTU to become `want`.
fn wait_mtu(sock: &UdpSocket, want: i32, within: Duration) -> i32 {
    let start = Instant::now();
    loop {
        let mtu = path_mtu(sock);
        if mtu == want || start.elapsed() > within {
            return mtu;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn fragmentation_needed_reaches_the_sender_of_an_allowed_flow_and_a_forged_one_does_not() {
    let _serial = serial();
    let lab = LabGuard::new("rl");
    let tmp = TempDir::new("related");
    lab.up(&[&fixture(APP)], true);
    lab.apply(&tmp.write("policies.yaml", DENY_AND_UDP_ALLOW));
    let pods = lab.get_pods();
    let pod = |name: &str| {
        pods.iter()
            .find(|p| p.namespace == "dev-app" && p.name == name)
            .or_panic("pod")
            .clone()
    };
    let (frontend, backend, database) = (pod("frontend-0"), pod("backend-0"), pod("database-0"));
    let ip = |p: &enforcer::lab::PodInfo| p.ip.parse::<Ipv4Addr>().or_panic("pod ip");
    let (f_ip, b_ip, d_ip) = (ip(&frontend), ip(&backend), ip(&database));

    // The allowed flow, and a datagram policy denies (frontend → database).
    let allowed = in_netns(&frontend.netns, || udp_sender((b_ip, 8080)));
    let denied = in_netns(&frontend.netns, || udp_sender((d_ip, 9999)));
    let mtu_before = path_mtu(&allowed);
    assert!(mtu_before > i32::from(RELATED_MTU), "{mtu_before}");
    assert_eq!(path_mtu(&denied), mtu_before);
    let allowed_port = allowed.local_addr().or_panic("local addr").port();
    let denied_port = denied.local_addr().or_panic("local addr").port();

    // A router's error about the allowed flow, sent from the backend's side.
    let related = frag_needed(RELATED_MTU, (f_ip, allowed_port), (b_ip, 8080));
    in_netns(&backend.netns, || send_icmp(f_ip, &related));
    let mtu = wait_mtu(&allowed, i32::from(RELATED_MTU), Duration::from_secs(3));
    assert_eq!(
        mtu,
        i32::from(RELATED_MTU),
        "fragmentation needed for an allowed flow must reach its sender"
    );

    // The same error quoting the denied datagram: no flow, judged as new and dropped.
    let forged = frag_needed(FORGED_MTU, (f_ip, denied_port), (d_ip, 9999));
    in_netns(&backend.netns, || send_icmp(f_ip, &forged));
    thread::sleep(Duration::from_secs(1));
    assert_eq!(
        path_mtu(&denied),
        mtu_before,
        "a forged error quoting no approved flow must be dropped"
    );
}

#[test]
fn fragmentation_needed_from_outside_passes_xdp_for_the_nodes_own_flow() {
    let _serial = serial();
    let lab = LabGuard::new("rh");
    let hep = |name: &str| fixture(&format!("hostendpoints/{name}"));
    lab.up(
        &[
            &hep("nodeport-app.yaml"),
            &hep("002-allow-cluster-internal-ingress-only.yaml"),
            &hep("002-allow-outbound-external.yaml"),
            &hep("002-node1-eth0.yaml"),
        ],
        true,
    );
    let node = lab.get_nodes().into_iter().next().or_panic("a node");
    let node_ip: Ipv4Addr = node.ipv4.parse().or_panic("node address");
    let external_netns = host::external_netns(&LabName::new(&lab.name).or_panic("lab name"));

    // The node's own flow out (host egress allows it), and a socket that sent nothing.
    let allowed = in_netns(&node.netns, || udp_sender((EXTERNAL_IP_V4, 9000)));
    let silent = in_netns(&node.netns, || {
        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).or_panic("bind");
        set_int(&sock, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_DO);
        sock.connect((EXTERNAL_IP_V4, 9001)).or_panic("connect");
        sock
    });
    let mtu_before = path_mtu(&allowed);
    assert!(mtu_before > i32::from(RELATED_MTU), "{mtu_before}");
    let allowed_port = allowed.local_addr().or_panic("local addr").port();
    let silent_port = silent.local_addr().or_panic("local addr").port();

    let related = frag_needed(RELATED_MTU, (node_ip, allowed_port), (EXTERNAL_IP_V4, 9000));
    in_netns(&external_netns, || send_icmp(node_ip, &related));
    let mtu = wait_mtu(&allowed, i32::from(RELATED_MTU), Duration::from_secs(3));
    assert_eq!(
        mtu,
        i32::from(RELATED_MTU),
        "fragmentation needed for the node's allowed flow must pass XDP's preDNAT deny"
    );

    // Quoting a flow that never left the node: new traffic from outside, denied.
    let forged = frag_needed(FORGED_MTU, (node_ip, silent_port), (EXTERNAL_IP_V4, 9001));
    in_netns(&external_netns, || send_icmp(node_ip, &forged));
    thread::sleep(Duration::from_secs(1));
    assert_eq!(
        path_mtu(&silent),
        mtu_before,
        "an error quoting no approved flow must be dropped"
    );
}
