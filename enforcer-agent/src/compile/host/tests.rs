//! Host-endpoint verdicts of the compiled spec, looked up as the BPF programs look them
//! up (`simulate::Dataplane`), against the reference evaluator `eval::host`, on seed
//! 002's policies and on random variations of them.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use enforcer_common::{
    ACTION_ALLOW, ACTION_CONTINUE, ACTION_DENY, DIR_HOST_EGRESS, DIR_HOST_INGRESS,
    DIR_PREDNAT_INGRESS, DIR_UNTRACKED_EGRESS, DIR_UNTRACKED_INGRESS, host_profile,
};

use super::direction_verdict;
use crate::compile::{DataplaneSpec, compile_for_node, compile_on_node, simulate};
use crate::eval::Packet;
use crate::eval::host::{NodeAddresses, NodeView};
use crate::policy::{Cluster, PROTO_ICMP, PROTO_TCP, PROTO_UDP};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/hostendpoints"
);

fn cluster_of(files: &[&str], extra: &str) -> Cluster {
    let mut objects = Vec::new();
    for f in files {
        let path = std::path::Path::new(FIXTURES).join(f);
        let text = std::fs::read_to_string(&path).unwrap();
        objects.extend(crate::model::load_str(&path, &text).unwrap());
    }
    if !extra.is_empty() {
        objects.extend(crate::model::load_str(std::path::Path::new("extra.yaml"), extra).unwrap());
    }
    // The pod the NodePort Services select, as the lab writes it.
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: web-0, namespace: default, labels: {app: web}}\n\
               spec: {nodeName: node1, containers: [{name: web, ports: [{containerPort: 8080}]}]}\n\
               status: {podIP: 198.18.0.10, podIPs: [{ip: 198.18.0.10}]}\n";
    objects.extend(crate::model::load_str(std::path::Path::new("pod.yaml"), pod).unwrap());
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n\
               spec: {type: NodePort, clusterIP: 198.19.0.20, selector: {app: web}, ports: [{port: 80, targetPort: 8080, nodePort: 31852}, {port: 81, targetPort: 8080, nodePort: 30080}]}\n";
    objects.extend(crate::model::load_str(std::path::Path::new("svc.yaml"), svc).unwrap());
    Cluster::from_objects(&objects).unwrap().0
}

const SEED_002: [&str; 4] = [
    "002-allow-cluster-internal-ingress-only.yaml",
    "002-allow-outbound-external.yaml",
    "002-node1-eth0.yaml",
    "002-allow-nodeport.yaml",
];

const NODE: Ipv4Addr = Ipv4Addr::new(198, 18, 255, 1);
const EXT: Ipv4Addr = Ipv4Addr::new(198, 18, 255, 2);
const POD: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);

fn tcp(src: Ipv4Addr, dst: Ipv4Addr, dport: u16) -> Packet {
    Packet {
        src: IpAddr::V4(src),
        dst: IpAddr::V4(dst),
        proto: PROTO_TCP,
        src_port: 40_000,
        dst_port: dport,
        icmp_type: 0,
        icmp_code: 0,
    }
}

/// The action the BPF side would read for host endpoint 0 in `dir`.
fn lookup(spec: &DataplaneSpec, dir: u8, packet: &Packet) -> u8 {
    let dp = simulate::Dataplane::new(spec);
    let hep = spec
        .endpoints
        .iter()
        .find(|e| e.workload.starts_with("hostendpoint/"))
        .unwrap();
    let inbound = matches!(
        dir,
        DIR_UNTRACKED_INGRESS | DIR_PREDNAT_INGRESS | DIR_HOST_INGRESS
    );
    let (remote, local) = if inbound {
        (packet.src, packet.dst)
    } else {
        (packet.dst, packet.src)
    };
    let class = dp.peer(remote).unwrap().class;
    let host_class = dp.peer(local).unwrap().host_class;
    let cell = dp
        .cell(packet.proto, packet.dst_port_key(), packet.src_port)
        .unwrap();
    let (_, v) = dp.verdict(dir, host_profile(hep.info.profile, host_class), class, cell);
    v.unwrap().action
}

#[test]
fn seed_002_verdicts() {
    let cluster = cluster_of(&SEED_002, "");
    let spec = compile_for_node(&cluster, Some("node1")).unwrap();
    // External client → the NodePort: preDNAT allows (XDP passes).
    assert_eq!(
        lookup(&spec, DIR_PREDNAT_INGRESS, &tcp(EXT, NODE, 31852)),
        ACTION_ALLOW
    );
    assert_eq!(
        lookup(&spec, DIR_HOST_INGRESS, &tcp(EXT, NODE, 31852)),
        ACTION_ALLOW
    );
    // Another NodePort, or a port of the node itself: denied by preDNAT in XDP.
    assert_eq!(
        lookup(&spec, DIR_PREDNAT_INGRESS, &tcp(EXT, NODE, 30080)),
        ACTION_DENY
    );
    assert_eq!(
        lookup(&spec, DIR_PREDNAT_INGRESS, &tcp(EXT, NODE, 8000)),
        ACTION_DENY
    );
    assert_eq!(
        lookup(&spec, DIR_HOST_INGRESS, &tcp(EXT, NODE, 8000)),
        ACTION_DENY
    );
    // No doNotTrack policy: untracked never decides.
    assert_eq!(
        lookup(&spec, DIR_UNTRACKED_INGRESS, &tcp(EXT, NODE, 8000)),
        ACTION_CONTINUE
    );
    // The node's own egress is allowed by allow-outbound-external.
    assert_eq!(
        lookup(&spec, DIR_HOST_EGRESS, &tcp(NODE, EXT, 80)),
        ACTION_ALLOW
    );
    // A pod's address inside the cluster nets: preDNAT allows.
    assert_eq!(
        lookup(&spec, DIR_PREDNAT_INGRESS, &tcp(POD, NODE, 30080)),
        ACTION_ALLOW
    );
}

#[test]
fn labelled_selector_needs_the_label() {
    let files = [
        SEED_002[0],
        SEED_002[1],
        SEED_002[2],
        "002-allow-nodeport-labelled.yaml",
    ];
    let spec = compile_for_node(&cluster_of(&files, ""), Some("node1")).unwrap();
    assert_eq!(
        lookup(&spec, DIR_PREDNAT_INGRESS, &tcp(EXT, NODE, 31852)),
        ACTION_DENY
    );
    let files = [
        SEED_002[0],
        SEED_002[1],
        "002-node1-eth0-labelled.yaml",
        "002-allow-nodeport-labelled.yaml",
    ];
    let spec = compile_for_node(&cluster_of(&files, ""), Some("node1")).unwrap();
    assert_eq!(
        lookup(&spec, DIR_PREDNAT_INGRESS, &tcp(EXT, NODE, 31852)),
        ACTION_ALLOW
    );
}

#[test]
fn no_policy_no_profile_denies_to_host() {
    let spec = compile_for_node(&cluster_of(&["002-node1-eth0.yaml"], ""), Some("node1")).unwrap();
    assert_eq!(
        lookup(&spec, DIR_HOST_INGRESS, &tcp(EXT, NODE, 8000)),
        ACTION_DENY
    );
    assert_eq!(
        lookup(&spec, DIR_HOST_EGRESS, &tcp(NODE, EXT, 80)),
        ACTION_DENY
    );
    // Forwarded traffic with no applyOnForward policy is allowed, NodePorts included.
    assert_eq!(
        lookup(&spec, DIR_HOST_INGRESS, &tcp(EXT, POD, 8080)),
        ACTION_ALLOW
    );
    assert_eq!(
        lookup(&spec, DIR_HOST_INGRESS, &tcp(EXT, NODE, 31852)),
        ACTION_ALLOW
    );
}

/// Security item 3: whether a packet is for the host is a fact of the node, not of
/// `expectedIPs`. Seed 001's default deny with eth0's host endpoint declaring only
/// 198.18.255.1: the node's IPv6 address, a secondary address, a link-local address
/// and a multicast group are the host's too, so traffic to them meets the host
/// endpoint's (deny) policy instead of passing as "forwarded".
#[test]
fn traffic_to_any_node_address_is_to_the_host() {
    let cluster = cluster_of(&["001-default-deny.yaml", "002-node1-eth0.yaml"], "");
    let node_v6: IpAddr = "2001:2:0:ff::1".parse().unwrap();
    let ext_v6: IpAddr = "2001:2:0:ff::2".parse().unwrap();
    let secondary: IpAddr = "198.18.255.9".parse().unwrap();
    let addresses = NodeAddresses::of_node(
        [IpAddr::V4(NODE), node_v6, secondary]
            .into_iter()
            .map(ipnet::IpNet::from),
    );
    let on_node = compile_on_node(&cluster, Some("node1"), &addresses).unwrap();
    let declared = compile_for_node(&cluster, Some("node1")).unwrap();
    let to = |src: IpAddr, dst: IpAddr| Packet {
        src,
        dst,
        proto: PROTO_TCP,
        src_port: 40_000,
        dst_port: 8000,
        icmp_type: 0,
        icmp_code: 0,
    };
    let ext = IpAddr::V4(EXT);
    let link_local: IpAddr = "fe80::1".parse().unwrap();
    let multicast: IpAddr = "ff02::1".parse().unwrap();
    for packet in [
        to(ext, IpAddr::V4(NODE)),
        to(ext_v6, node_v6),
        to(ext, secondary),
        to("fe80::2".parse().unwrap(), link_local),
        to(ext_v6, multicast),
    ] {
        assert_eq!(
            lookup(&on_node, DIR_HOST_INGRESS, &packet),
            ACTION_DENY,
            "inbound {packet:?}"
        );
        let reply = to(packet.dst, packet.src);
        assert_eq!(
            lookup(&on_node, DIR_HOST_EGRESS, &reply),
            ACTION_DENY,
            "outbound {reply:?}"
        );
    }
    // What the node does not own is still forwarded (no applyOnForward policy: allowed).
    assert_eq!(
        lookup(&on_node, DIR_HOST_INGRESS, &tcp(EXT, POD, 8080)),
        ACTION_ALLOW
    );
    // The old rule (expectedIPs decide) let the IPv6 address through as "forwarded";
    // it is what tools without a node still see.
    assert_eq!(
        lookup(&declared, DIR_HOST_INGRESS, &to(ext_v6, node_v6)),
        ACTION_ALLOW
    );
    // The evaluator agrees.
    let view = NodeView::with_addresses(&cluster, addresses);
    assert!(view.inbound_to_host(&to(ext_v6, node_v6)));
    assert!(!view.inbound_to_host(&tcp(EXT, POD, 8080)));
}

/// Small deterministic generator.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.next() as usize % items.len()]
    }
}

/// Random host-endpoint policies: kinds, selectors, nets, ports, actions.
fn random_policies(g: &mut Gen) -> String {
    let mut out = String::new();
    let n = 1 + g.next() % 5;
    for i in 0..n {
        let kind = *g.pick(&[
            "preDNAT",
            "doNotTrack",
            "applyOnForward",
            "normal",
            "normal",
        ]);
        let flags = match kind {
            "preDNAT" => "  preDNAT: true\n  applyOnForward: true\n",
            "doNotTrack" => "  doNotTrack: true\n  applyOnForward: true\n",
            "applyOnForward" => "  applyOnForward: true\n",
            _ => "",
        };
        let dirs: &[&str] = if kind == "preDNAT" {
            &["ingress"]
        } else {
            &["ingress", "egress"]
        };
        let selector = *g.pick(&[
            "has(kubernetes-host)",
            "all()",
            "kubernetes-host == 'ingress'",
            "missing == 'x'",
        ]);
        let _ = std::fmt::Write::write_fmt(
            &mut out,
            format_args!(
                "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: p{i}}}\nspec:\n  order: {}\n  selector: \"{selector}\"\n{flags}",
                g.next() % 30
            ),
        );
        for dir in dirs {
            let _ = writeln!(out, "  {dir}:");
            for _ in 0..(g.next() % 3) {
                let action = *g.pick(&["Allow", "Deny", "Pass", "Log"]);
                let _ = writeln!(out, "  - action: {action}");
                let proto = *g.pick(&["TCP", "UDP", ""]);
                if !proto.is_empty() {
                    let _ = writeln!(out, "    protocol: {proto}");
                }
                if g.next().is_multiple_of(2) {
                    let net = *g.pick(&[
                        "198.18.255.1/32",
                        "198.18.0.0/17",
                        "198.18.255.0/24",
                        "0.0.0.0/0",
                    ]);
                    let side = *g.pick(&["source", "destination"]);
                    let _ = write!(out, "    {side}:\n      nets: [{net}]\n");
                }
                let mut dst = String::new();
                if !proto.is_empty() && g.next().is_multiple_of(2) {
                    let port = *g.pick(&["31852", "30080", "8080", "22", "80"]);
                    let _ = writeln!(dst, "      ports: [{port}]");
                }
                if g.next().is_multiple_of(3) {
                    dst.push_str("      selector: has(kubernetes-host)\n");
                }
                if !dst.is_empty() {
                    let _ = write!(out, "    destination:\n{dst}");
                }
            }
        }
        out.push_str("---\n");
    }
    out
}

#[test]
fn differential_host_verdicts() {
    let addrs = [
        NODE,
        EXT,
        POD,
        Ipv4Addr::new(198, 18, 1, 1),
        Ipv4Addr::new(203, 0, 113, 9),
    ];
    let ports = [22u16, 80, 8080, 30080, 31852, 9];
    let mut checked = 0;
    for seed in 0..60u64 {
        let mut g = Gen(seed);
        let extra = random_policies(&mut g);
        let objects = crate::model::load_str(std::path::Path::new("r.yaml"), &extra);
        let Ok(objects) = objects else { continue };
        if Cluster::from_objects(&objects).is_err() {
            continue;
        }
        let heps = if seed % 3 == 0 {
            "002-node1-eth0-labelled.yaml"
        } else {
            "002-node1-eth0.yaml"
        };
        let cluster = cluster_of(&[heps], &extra);
        let spec = compile_for_node(&cluster, Some("node1")).unwrap();
        let view = NodeView::new(&cluster, Some("node1"));
        let hep = &cluster.host_endpoints[0];
        for &src in &addrs {
            for &dst in &addrs {
                for &port in &ports {
                    for proto in [PROTO_TCP, PROTO_UDP, PROTO_ICMP] {
                        let mut packet = tcp(src, dst, port);
                        packet.proto = proto;
                        if proto == PROTO_ICMP {
                            packet.dst_port = 0;
                            packet.src_port = 0;
                            packet.icmp_type = 8;
                        }
                        for dir in [
                            DIR_UNTRACKED_INGRESS,
                            DIR_UNTRACKED_EGRESS,
                            DIR_PREDNAT_INGRESS,
                            DIR_HOST_INGRESS,
                            DIR_HOST_EGRESS,
                        ] {
                            let want = direction_verdict(&cluster, &view, hep, dir, &packet).action;
                            let got = lookup(&spec, dir, &packet);
                            assert_eq!(got, want, "seed {seed} dir {dir} {packet:?}\n{extra}");
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 10_000, "only {checked} lookups checked");
}

/// What the host TC programs do with a flow, composed from the compiled lookups: the
/// request's untracked then tracked verdict; the reply's untracked verdict, then
/// conntrack (a tracked request), then, with no state, a TCP drop or the tracked chain.
fn bpf_flow(spec: &DataplaneSpec, inbound: bool, request: &Packet) -> (bool, bool) {
    let (req_untracked, req_tracked, rep_untracked, rep_tracked) = if inbound {
        (
            DIR_UNTRACKED_INGRESS,
            DIR_HOST_INGRESS,
            DIR_UNTRACKED_EGRESS,
            DIR_HOST_EGRESS,
        )
    } else {
        (
            DIR_UNTRACKED_EGRESS,
            DIR_HOST_EGRESS,
            DIR_UNTRACKED_INGRESS,
            DIR_HOST_INGRESS,
        )
    };
    let (passed, tracked) = match lookup(spec, req_untracked, request) {
        ACTION_ALLOW => (true, false),
        ACTION_DENY => (false, false),
        _ => {
            let ok = lookup(spec, req_tracked, request) == ACTION_ALLOW;
            (ok, ok)
        }
    };
    let reply = reversed(request);
    let reply_ok = match lookup(spec, rep_untracked, &reply) {
        ACTION_ALLOW => true,
        ACTION_DENY => false,
        _ if tracked => true,
        _ if reply.proto == PROTO_TCP => false,
        _ => lookup(spec, rep_tracked, &reply) == ACTION_ALLOW,
    };
    (passed, reply_ok)
}

fn reversed(p: &Packet) -> Packet {
    Packet {
        src: p.dst,
        dst: p.src,
        src_port: p.dst_port,
        dst_port: p.src_port,
        ..*p
    }
}

/// Whole flows (request and reply, both directions through the host endpoint), BPF
/// composition vs `eval::host::{admission, reply_passes}`: doNotTrack asymmetry included.
#[test]
fn differential_host_flows() {
    use crate::eval::host::{Admission, admission, reply_passes};
    use crate::policy::Direction;
    let addrs = [NODE, EXT, POD, Ipv4Addr::new(203, 0, 113, 9)];
    let mut checked = 0;
    let mut broken_replies = 0;
    for seed in 100..160u64 {
        let mut g = Gen(seed);
        let extra = random_policies(&mut g);
        let objects = crate::model::load_str(std::path::Path::new("r.yaml"), &extra);
        let Ok(objects) = objects else { continue };
        if Cluster::from_objects(&objects).is_err() {
            continue;
        }
        let cluster = cluster_of(&["002-node1-eth0.yaml"], &extra);
        let spec = compile_for_node(&cluster, Some("node1")).unwrap();
        let view = NodeView::new(&cluster, Some("node1"));
        let hep = &cluster.host_endpoints[0];
        for &src in &addrs {
            for &dst in &addrs {
                for dport in [22u16, 80, 8080, 31852] {
                    for sport in [40_000u16, 80, 8080] {
                        for proto in [PROTO_TCP, PROTO_UDP] {
                            let mut request = tcp(src, dst, dport);
                            request.proto = proto;
                            request.src_port = sport;
                            for inbound in [true, false] {
                                let (dir, back) = if inbound {
                                    (Direction::Ingress, Direction::Egress)
                                } else {
                                    (Direction::Egress, Direction::Ingress)
                                };
                                let adm = admission(&cluster, &view, hep, dir, &request);
                                let want = (
                                    adm != Admission::Denied,
                                    reply_passes(
                                        &cluster,
                                        &view,
                                        hep,
                                        back,
                                        &reversed(&request),
                                        adm,
                                    ),
                                );
                                let got = bpf_flow(&spec, inbound, &request);
                                assert_eq!(
                                    got, want,
                                    "seed {seed} inbound {inbound} {request:?}\n{extra}"
                                );
                                if want == (true, false) && adm == Admission::Untracked {
                                    broken_replies += 1;
                                }
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 10_000, "only {checked} flows checked");
    assert!(
        broken_replies > 0,
        "no asymmetric doNotTrack flow generated"
    );
}
