//! The host-interface programs under `BPF_PROG_TEST_RUN` (privileged: run as root):
//! `enf_host_xdp` above all (pre-DNAT destinations, the conntrack-reply exception,
//! malformed, truncated and VLAN-tagged frames), and the TC pair it hands over to.
//!
//! Same harness as `bpf_programs.rs`: one load of the embedded object in a private
//! netns, every map reset per case, policy written by hand with the `enforcer-common`
//! types; a step runs one program on one frame and checks the action and that exactly
//! the expected counter of that hook moved (every counter of every hook compared).
//! `BPF_CASE=<substring>` filters; the test fails if no case ran.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use enforcer::dataplane::object::BPF_OBJECT;
use enforcer_common::{
    ACTION_ALLOW, ACTION_CONTINUE, ACTION_DENY, ANY_CELL, ANY_PEER, CT_F_HOST_EGRESS_OK,
    CT_F_HOST_INGRESS_OK, Config, DIR_EGRESS, DIR_HOST_EGRESS, DIR_HOST_INGRESS, DIR_INGRESS,
    DIR_PREDNAT_INGRESS, DIR_UNTRACKED_EGRESS, DIR_UNTRACKED_INGRESS, EP_F_HOST, NO_INDEX,
    PEER_F_HOST, PeerInfo, REASON_ALLOW_CONNTRACK, REASON_ALLOW_FAILSAFE, REASON_ALLOW_NDP,
    REASON_ALLOW_NON_IP, REASON_ALLOW_POLICY, REASON_ALLOW_UNTRACKED, REASON_DENY_NO_CONNTRACK,
    REASON_DENY_POLICY, REASON_FRAGMENT, REASON_MALFORMED, REASON_NAMES, REASON_NO_ENDPOINT,
    REASON_NO_POLICY_LOADED, REASON_UNSUPPORTED_L3, REASON_XDP_CONTINUE, VERDICT_KIND_RULE,
    Verdict, VerdictKey, host_profile,
};
use enforcer_tests::bpf::{
    dataplane::{Dataplane, Hook, ct_key, endpoint},
    netns::NetNs,
    packet::{
        ACK, ETH_P_IP, ETH_P_IPV6, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, SYN, V4, arp, eth, icmp,
        tcp, truncated, udp, v6, v6_hops,
    },
    run_table,
};

const NODE4: Ipv4Addr = Ipv4Addr::new(198, 18, 255, 1);
const EXT4: Ipv4Addr = Ipv4Addr::new(198, 18, 255, 2);
const POD4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const BLOCKED4: Ipv4Addr = Ipv4Addr::new(198, 18, 254, 7);
const NODE6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0xff, 0, 0, 0, 1);
const EXT6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0xff, 0, 0, 0, 2);

const C_WORLD: u32 = 1;
const C_NODE: u32 = 2;
const C_POD: u32 = 3;
const C_BLOCKED: u32 = 4;
/// Host class of the node's own addresses (0: any other address).
const HC_NODE: u32 = 1;

const P_HOST: u32 = 7;

const CELL_NODEPORT: u32 = 1;
const CELL_OTHER_NODEPORT: u32 = 2;
const CELL_SSH: u32 = 3;
const CELL_HTTP: u32 = 4;
const CELL_VXLAN: u32 = 5;
const CELL_DNT: u32 = 6;
const CELL_CLIENT: u32 = 7;

const NODEPORT: u16 = 31_852;
const OTHER_NODEPORT: u16 = 30_000;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;

struct Ifaces {
    host: u32,
}

fn verdict(action: u8) -> Verdict {
    Verdict {
        action,
        kind: VERDICT_KIND_RULE,
        flags: 0,
        _pad: 0,
        policy: 0,
        rule: 0,
        log_policy: NO_INDEX,
        log_rule: NO_INDEX,
    }
}

fn set(dp: &mut Dataplane, dir: u8, local: u32, peer: u32, cell: u32, action: u8) {
    dp.set_verdict(
        VerdictKey {
            generation: 0,
            dir,
            _pad: [0; 2],
            profile: host_profile(P_HOST, local),
            peer_class: peer,
            cell,
        },
        verdict(action),
    );
}

/// The host endpoint on `host`, seed 002's policy shape compiled by hand:
/// untracked: allow VXLAN, deny 198.18.254.0/24, else continue; preDNAT to the node:
/// allow the `NodePort`, deny the rest (forwarded: continue); tracked ingress to the
/// node: the `NodePort` only; forwarded ingress and all egress allowed.
fn setup(dp: &mut Dataplane, ifs: &Ifaces) {
    let mut ep = endpoint(P_HOST, 1, Some(NODE4), Some(NODE6));
    ep.flags |= EP_F_HOST;
    dp.set_endpoint(0, ifs.host, ep);
    let peer = |class, flags, host_class| PeerInfo {
        class,
        flags,
        ifindex: 0,
        host_class,
    };
    dp.set_peer(0, IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0, peer(C_WORLD, 0, 0));
    dp.set_peer(0, IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0, peer(C_WORLD, 0, 0));
    dp.set_peer(0, NODE4.into(), 32, peer(C_NODE, PEER_F_HOST, HC_NODE));
    dp.set_peer(0, NODE6.into(), 128, peer(C_NODE, PEER_F_HOST, HC_NODE));
    dp.set_peer(0, POD4.into(), 32, peer(C_POD, 0, 0));
    dp.set_peer(
        0,
        Ipv4Addr::new(198, 18, 254, 0).into(),
        24,
        peer(C_BLOCKED, 0, 0),
    );
    dp.set_port(0, PROTO_TCP, NODEPORT, 16, CELL_NODEPORT);
    dp.set_port(0, PROTO_TCP, OTHER_NODEPORT, 16, CELL_OTHER_NODEPORT);
    dp.set_port(0, PROTO_TCP, 22, 16, CELL_SSH);
    dp.set_port(0, PROTO_TCP, 80, 16, CELL_HTTP);
    dp.set_port(0, PROTO_UDP, 4789, 16, CELL_VXLAN);
    for local in [0, HC_NODE] {
        set(
            dp,
            DIR_UNTRACKED_INGRESS,
            local,
            ANY_PEER,
            ANY_CELL,
            ACTION_CONTINUE,
        );
        set(
            dp,
            DIR_UNTRACKED_INGRESS,
            local,
            ANY_PEER,
            CELL_VXLAN,
            ACTION_ALLOW,
        );
        set(
            dp,
            DIR_UNTRACKED_INGRESS,
            local,
            C_BLOCKED,
            ANY_CELL,
            ACTION_DENY,
        );
        set(
            dp,
            DIR_UNTRACKED_EGRESS,
            local,
            ANY_PEER,
            ANY_CELL,
            ACTION_CONTINUE,
        );
        set(dp, DIR_HOST_EGRESS, local, ANY_PEER, ANY_CELL, ACTION_ALLOW);
    }
    set(
        dp,
        DIR_PREDNAT_INGRESS,
        HC_NODE,
        ANY_PEER,
        ANY_CELL,
        ACTION_DENY,
    );
    set(
        dp,
        DIR_PREDNAT_INGRESS,
        HC_NODE,
        ANY_PEER,
        CELL_NODEPORT,
        ACTION_ALLOW,
    );
    set(
        dp,
        DIR_PREDNAT_INGRESS,
        0,
        ANY_PEER,
        ANY_CELL,
        ACTION_CONTINUE,
    );
    set(
        dp,
        DIR_HOST_INGRESS,
        HC_NODE,
        ANY_PEER,
        ANY_CELL,
        ACTION_DENY,
    );
    set(
        dp,
        DIR_HOST_INGRESS,
        HC_NODE,
        ANY_PEER,
        CELL_NODEPORT,
        ACTION_ALLOW,
    );
    set(dp, DIR_HOST_INGRESS, 0, ANY_PEER, ANY_CELL, ACTION_ALLOW);
    dp.set_config(Config {
        active_gen: 0,
        live_gens: 1,
        flags: 0,
        epoch: 0,
        netns_cookie: 0,
    });
}

fn tcp4(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
    V4::new(src, dst, PROTO_TCP).frame(&tcp(sport, dport, flags))
}

/// `frame` with VLAN tags (TPID, VID) inserted after the MAC addresses.
fn tagged(frame: &[u8], tags: &[(u16, u16)]) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    for (tpid, vid) in tags {
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&vid.to_be_bytes());
    }
    out.extend_from_slice(&frame[12..]);
    out
}

struct Expect {
    pass: bool,
    reason: u32,
}

fn pass(reason: u32) -> Expect {
    Expect { pass: true, reason }
}

fn dropped(reason: u32) -> Expect {
    Expect {
        pass: false,
        reason,
    }
}

type Check = Box<dyn Fn(&mut Dataplane) -> Result<(), String>>;

enum Step {
    Run {
        hook: Hook,
        lo: bool,
        frame: Vec<u8>,
        expect: Expect,
    },
    Check(&'static str, Check),
}

fn on(hook: Hook, frame: Vec<u8>, expect: Expect) -> Step {
    Step::Run {
        hook,
        lo: false,
        frame,
        expect,
    }
}

fn xdp(frame: Vec<u8>, expect: Expect) -> Step {
    on(Hook::HostXdp, frame, expect)
}

fn tc_in(frame: Vec<u8>, expect: Expect) -> Step {
    on(Hook::HostIngress, frame, expect)
}

fn tc_out(frame: Vec<u8>, expect: Expect) -> Step {
    on(Hook::HostEgress, frame, expect)
}

fn ct_has(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, proto: u8, flags: u32) -> Step {
    Step::Check(
        "conntrack flags",
        Box::new(
            move |dp| match dp.conntrack_entry(&ct_key(src, dst, sport, dport, proto)) {
                Some(v) if v.flags & flags == flags => Ok(()),
                other => Err(format!(
                    "ct {src}:{sport} -> {dst}:{dport}: {other:?} (want flags {flags:#x})"
                )),
            },
        ),
    )
}

fn ct_none(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, proto: u8) -> Step {
    Step::Check(
        "no conntrack entry",
        Box::new(
            move |dp| match dp.conntrack_entry(&ct_key(src, dst, sport, dport, proto)) {
                None => Ok(()),
                Some(v) => Err(format!("ct {src}:{sport} -> {dst}:{dport} exists: {v:?}")),
            },
        ),
    )
}

struct Case {
    name: &'static str,
    setup: fn(&mut Dataplane, &Ifaces),
    steps: Vec<Step>,
}

fn failsafe_setup(dp: &mut Dataplane, ifs: &Ifaces) {
    setup(dp, ifs);
    dp.set_failsafe(DIR_INGRESS, PROTO_TCP, 22);
    dp.set_failsafe(DIR_EGRESS, PROTO_UDP, 53);
}

/// [`setup`] plus an untracked ingress allow of TCP/UDP port 8000 (cell `CELL_DNT`) with
/// no untracked egress rule: doNotTrack asymmetric, as Calico's docs warn against.
fn dnt_one_way_setup(dp: &mut Dataplane, ifs: &Ifaces) {
    setup(dp, ifs);
    dp.set_port(0, PROTO_TCP, 8000, 16, CELL_DNT);
    dp.set_port(0, PROTO_UDP, 8000, 16, CELL_DNT);
    for local in [0, HC_NODE] {
        set(
            dp,
            DIR_UNTRACKED_INGRESS,
            local,
            ANY_PEER,
            CELL_DNT,
            ACTION_ALLOW,
        );
    }
}

/// [`dnt_one_way_setup`] plus the mirror untracked egress rule: the key's cell is the
/// packet's destination port, so the reply to the client's port 40 000 (cell
/// `CELL_CLIENT`) is what an egress rule with `destination: ports: [40000]` allows.
fn dnt_both_ways_setup(dp: &mut Dataplane, ifs: &Ifaces) {
    dnt_one_way_setup(dp, ifs);
    dp.set_port(0, PROTO_TCP, 40_000, 16, CELL_CLIENT);
    dp.set_port(0, PROTO_UDP, 40_000, 16, CELL_CLIENT);
    for local in [0, HC_NODE] {
        set(
            dp,
            DIR_UNTRACKED_EGRESS,
            local,
            ANY_PEER,
            CELL_CLIENT,
            ACTION_ALLOW,
        );
    }
}

fn nothing_loaded(dp: &mut Dataplane, ifs: &Ifaces) {
    setup(dp, ifs);
    dp.set_config(Config::default());
}

#[expect(clippy::too_many_lines, reason = "the table")]
fn cases() -> Vec<Case> {
    let (n4, x4, p4) = (IpAddr::V4(NODE4), IpAddr::V4(EXT4), IpAddr::V4(POD4));
    vec![
        Case {
            name: "xdp_prednat_nodeport_allowed_others_denied",
            setup,
            steps: vec![
                xdp(
                    tcp4(EXT4, 40_000, NODE4, NODEPORT, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                xdp(
                    tcp4(EXT4, 40_001, NODE4, OTHER_NODEPORT, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
                xdp(
                    tcp4(EXT4, 40_002, NODE4, 80, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
                // The TC program judges alike (what XDP never saw), and records the flow.
                tc_in(
                    tcp4(EXT4, 40_001, NODE4, OTHER_NODEPORT, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
                tc_in(
                    tcp4(EXT4, 40_000, NODE4, NODEPORT, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                ct_has(x4, n4, 40_000, NODEPORT, PROTO_TCP, CT_F_HOST_INGRESS_OK),
                // Later packets of the approved flow skip preDNAT in XDP and pass TC.
                xdp(
                    tcp4(EXT4, 40_000, NODE4, NODEPORT, ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                tc_in(
                    tcp4(EXT4, 40_000, NODE4, NODEPORT, ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                // The reply leaves as a reply.
                tc_out(
                    tcp4(NODE4, NODEPORT, EXT4, 40_000, SYN | ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
            ],
        },
        Case {
            name: "xdp_prednat_forwarded_destination_continues",
            setup,
            steps: vec![
                // Not to the node: preDNAT has no decision, XDP leaves it to TC.
                xdp(tcp4(EXT4, 40_000, POD4, 80, SYN), pass(REASON_XDP_CONTINUE)),
                tc_in(tcp4(EXT4, 40_000, POD4, 80, SYN), pass(REASON_ALLOW_POLICY)),
            ],
        },
        Case {
            name: "xdp_prednat_ipv6",
            setup,
            steps: vec![
                xdp(
                    v6(
                        EXT6,
                        NODE6,
                        &[],
                        PROTO_TCP,
                        &tcp(40_000, OTHER_NODEPORT, SYN),
                    ),
                    dropped(REASON_DENY_POLICY),
                ),
                xdp(
                    v6(EXT6, NODE6, &[], PROTO_TCP, &tcp(40_000, NODEPORT, SYN)),
                    pass(REASON_ALLOW_POLICY),
                ),
                xdp(
                    v6_hops(EXT6, NODE6, 255, &[], PROTO_ICMPV6, &icmp(135, 0, 0)),
                    pass(REASON_ALLOW_NDP),
                ),
            ],
        },
        Case {
            name: "xdp_conntrack_reply_exception",
            setup,
            steps: vec![
                // Without a flow the node opened, the "reply" is a new packet: denied.
                xdp(
                    tcp4(EXT4, 80, NODE4, 45_000, SYN | ACK),
                    dropped(REASON_DENY_POLICY),
                ),
                // The node opens a connection (host egress allows and records it)...
                tc_out(
                    tcp4(NODE4, 45_000, EXT4, 80, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                ct_has(n4, x4, 45_000, 80, PROTO_TCP, CT_F_HOST_EGRESS_OK),
                // ...its replies pass XDP despite the preDNAT deny, and TC.
                xdp(
                    tcp4(EXT4, 80, NODE4, 45_000, SYN | ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                tc_in(
                    tcp4(EXT4, 80, NODE4, 45_000, SYN | ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                // A bare SYN is never a reply.
                xdp(
                    tcp4(EXT4, 80, NODE4, 45_000, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
                // Another port of the same peer is no reply either.
                xdp(
                    tcp4(EXT4, 80, NODE4, 45_001, ACK),
                    dropped(REASON_DENY_POLICY),
                ),
                // A pod's forwarded flow out through the host interface: same exception.
                tc_out(tcp4(POD4, 46_000, EXT4, 80, SYN), pass(REASON_ALLOW_POLICY)),
                xdp(
                    tcp4(EXT4, 80, POD4, 46_000, SYN | ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
            ],
        },
        Case {
            name: "xdp_malformed_and_truncated",
            setup,
            steps: vec![
                // BPF_PROG_TEST_RUN refuses XDP frames shorter than an Ethernet header;
                // the shortest is one with nothing behind it.
                xdp(eth(ETH_P_IP, &[]), dropped(REASON_MALFORMED)),
                xdp(eth(ETH_P_IP, &[0x45, 0, 0]), dropped(REASON_MALFORMED)),
                xdp(
                    truncated(tcp4(EXT4, 40_000, NODE4, NODEPORT, SYN), 14 + 20 + 10),
                    dropped(REASON_MALFORMED),
                ),
                // IHL below 5.
                xdp(
                    {
                        let mut f = tcp4(EXT4, 40_000, NODE4, NODEPORT, SYN);
                        f[14] = 0x44;
                        f
                    },
                    dropped(REASON_MALFORMED),
                ),
                // Version 6 in an IPv4 ethertype.
                xdp(
                    {
                        let mut f = tcp4(EXT4, 40_000, NODE4, NODEPORT, SYN);
                        f[14] = 0x65;
                        f
                    },
                    dropped(REASON_MALFORMED),
                ),
                xdp(
                    eth(ETH_P_IPV6, &[0x60, 0, 0, 0, 0, 8]),
                    dropped(REASON_MALFORMED),
                ),
                xdp(
                    V4::new(EXT4, NODE4, PROTO_TCP)
                        .frag(false, 3)
                        .frame(&[0; 20]),
                    dropped(REASON_FRAGMENT),
                ),
                xdp(eth(0x88cc, &[0; 46]), dropped(REASON_UNSUPPORTED_L3)),
                xdp(arp(), pass(REASON_ALLOW_NON_IP)),
                // A tag with nothing behind it.
                xdp(
                    truncated(tagged(&tcp4(EXT4, 1, NODE4, 2, SYN), &[(0x8100, 5)]), 16),
                    dropped(REASON_MALFORMED),
                ),
            ],
        },
        Case {
            name: "xdp_vlan_tagged",
            setup,
            steps: vec![
                xdp(
                    tagged(
                        &tcp4(EXT4, 40_000, NODE4, OTHER_NODEPORT, SYN),
                        &[(0x8100, 10)],
                    ),
                    dropped(REASON_DENY_POLICY),
                ),
                xdp(
                    tagged(&tcp4(EXT4, 40_000, NODE4, NODEPORT, SYN), &[(0x8100, 10)]),
                    pass(REASON_ALLOW_POLICY),
                ),
                xdp(
                    tagged(
                        &tcp4(EXT4, 40_000, NODE4, OTHER_NODEPORT, SYN),
                        &[(0x88a8, 100), (0x8100, 10)],
                    ),
                    dropped(REASON_DENY_POLICY),
                ),
                // Three tags: more than we skip; the third TPID is no L3 we know.
                xdp(
                    tagged(
                        &tcp4(EXT4, 40_000, NODE4, NODEPORT, SYN),
                        &[(0x88a8, 1), (0x8100, 2), (0x8100, 3)],
                    ),
                    dropped(REASON_UNSUPPORTED_L3),
                ),
                tc_in(
                    tagged(
                        &tcp4(EXT4, 40_000, NODE4, OTHER_NODEPORT, SYN),
                        &[(0x8100, 10)],
                    ),
                    dropped(REASON_DENY_POLICY),
                ),
            ],
        },
        Case {
            name: "untracked_allow_and_deny",
            setup,
            steps: vec![
                xdp(
                    V4::new(EXT4, NODE4, PROTO_UDP).frame(&udp(5000, 4789)),
                    pass(REASON_ALLOW_UNTRACKED),
                ),
                tc_in(
                    V4::new(EXT4, NODE4, PROTO_UDP).frame(&udp(5000, 4789)),
                    pass(REASON_ALLOW_UNTRACKED),
                ),
                ct_none(x4, n4, 5000, 4789, PROTO_UDP),
                // Untracked deny beats the preDNAT allow of the NodePort.
                xdp(
                    tcp4(BLOCKED4, 1, NODE4, NODEPORT, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
                tc_in(
                    tcp4(BLOCKED4, 1, NODE4, NODEPORT, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
            ],
        },
        Case {
            name: "failsafe_before_policy",
            setup: failsafe_setup,
            steps: vec![
                xdp(
                    tcp4(EXT4, 50_000, NODE4, 22, SYN),
                    pass(REASON_ALLOW_FAILSAFE),
                ),
                // Failsafe beats the untracked deny too.
                xdp(
                    tcp4(BLOCKED4, 50_000, NODE4, 22, SYN),
                    pass(REASON_ALLOW_FAILSAFE),
                ),
                tc_in(
                    tcp4(EXT4, 50_000, NODE4, 22, SYN),
                    pass(REASON_ALLOW_FAILSAFE),
                ),
                ct_has(x4, n4, 50_000, 22, PROTO_TCP, CT_F_HOST_INGRESS_OK),
                // Replies pass on the flow the failsafe packet opened (a source port
                // is never failsafe by itself: issue 9 item 2, `attacks_dataplane`).
                tc_out(
                    tcp4(NODE4, 22, EXT4, 50_000, SYN | ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                tc_out(
                    V4::new(NODE4, EXT4, PROTO_UDP).frame(&udp(33_000, 53)),
                    pass(REASON_ALLOW_FAILSAFE),
                ),
                xdp(
                    V4::new(EXT4, NODE4, PROTO_UDP).frame(&udp(53, 33_000)),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                // Not a failsafe port: policy.
                xdp(
                    tcp4(EXT4, 50_000, NODE4, 23, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
            ],
        },
        Case {
            name: "fail_closed",
            setup: nothing_loaded,
            steps: vec![
                xdp(
                    tcp4(EXT4, 1, NODE4, NODEPORT, SYN),
                    dropped(REASON_NO_POLICY_LOADED),
                ),
                tc_in(
                    tcp4(EXT4, 1, NODE4, NODEPORT, SYN),
                    dropped(REASON_NO_POLICY_LOADED),
                ),
            ],
        },
        Case {
            name: "no_endpoint",
            setup,
            steps: vec![
                Step::Run {
                    hook: Hook::HostXdp,
                    lo: true,
                    frame: tcp4(EXT4, 1, NODE4, NODEPORT, SYN),
                    expect: dropped(REASON_NO_ENDPOINT),
                },
                Step::Run {
                    hook: Hook::HostEgress,
                    lo: true,
                    frame: tcp4(NODE4, 1, EXT4, 80, SYN),
                    expect: dropped(REASON_NO_ENDPOINT),
                },
            ],
        },
        Case {
            name: "dnt_one_way_reply_breaks",
            setup: dnt_one_way_setup,
            steps: vec![
                // The SYN to the node's port 8000 enters untracked: no conntrack entry.
                xdp(
                    tcp4(EXT4, 40_000, NODE4, 8000, SYN),
                    pass(REASON_ALLOW_UNTRACKED),
                ),
                tc_in(
                    tcp4(EXT4, 40_000, NODE4, 8000, SYN),
                    pass(REASON_ALLOW_UNTRACKED),
                ),
                ct_none(x4, n4, 40_000, 8000, PROTO_TCP),
                // The SYN-ACK has no untracked rule and no state: dropped, although the
                // tracked egress chain would allow a new flow (Calico: ctstate INVALID).
                tc_out(
                    tcp4(NODE4, 8000, EXT4, 40_000, SYN | ACK),
                    dropped(REASON_DENY_NO_CONNTRACK),
                ),
                tc_out(
                    tcp4(NODE4, 8000, EXT4, 40_000, ACK),
                    dropped(REASON_DENY_NO_CONNTRACK),
                ),
                ct_none(n4, x4, 8000, 40_000, PROTO_TCP),
                // Forwarded (to a pod through the node): the same.
                tc_in(
                    tcp4(EXT4, 40_001, POD4, 8000, SYN),
                    pass(REASON_ALLOW_UNTRACKED),
                ),
                tc_out(
                    tcp4(POD4, 8000, EXT4, 40_001, SYN | ACK),
                    dropped(REASON_DENY_NO_CONNTRACK),
                ),
                // A UDP reply is judged as a new tracked flow (Calico: ctstate NEW): the
                // egress chain here allows it, and records it.
                tc_out(
                    V4::new(NODE4, EXT4, PROTO_UDP).frame(&udp(8000, 40_000)),
                    pass(REASON_ALLOW_POLICY),
                ),
                ct_has(n4, x4, 8000, 40_000, PROTO_UDP, CT_F_HOST_EGRESS_OK),
                // A bare SYN without state is a new flow, judged as before.
                tc_out(
                    tcp4(NODE4, 45_000, EXT4, 80, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                // ...and so are the reverse-direction stray segments.
                tc_in(
                    tcp4(EXT4, 81, NODE4, 45_001, ACK),
                    dropped(REASON_DENY_NO_CONNTRACK),
                ),
                tc_in(
                    tcp4(EXT4, 81, NODE4, 45_001, 0x04),
                    dropped(REASON_DENY_NO_CONNTRACK),
                ),
            ],
        },
        Case {
            name: "dnt_both_ways_stateless",
            setup: dnt_both_ways_setup,
            steps: vec![
                tc_in(
                    tcp4(EXT4, 40_000, NODE4, 8000, SYN),
                    pass(REASON_ALLOW_UNTRACKED),
                ),
                tc_out(
                    tcp4(NODE4, 8000, EXT4, 40_000, SYN | ACK),
                    pass(REASON_ALLOW_UNTRACKED),
                ),
                xdp(
                    tcp4(EXT4, 40_000, NODE4, 8000, ACK),
                    pass(REASON_ALLOW_UNTRACKED),
                ),
                tc_in(
                    tcp4(EXT4, 40_000, NODE4, 8000, ACK),
                    pass(REASON_ALLOW_UNTRACKED),
                ),
                tc_out(
                    V4::new(NODE4, EXT4, PROTO_UDP).frame(&udp(8000, 40_000)),
                    pass(REASON_ALLOW_UNTRACKED),
                ),
                ct_none(x4, n4, 40_000, 8000, PROTO_TCP),
                ct_none(n4, x4, 8000, 40_000, PROTO_TCP),
                ct_none(n4, x4, 8000, 40_000, PROTO_UDP),
            ],
        },
        Case {
            name: "tracked_egress_then_ingress_reply_pod",
            setup,
            steps: vec![
                tc_out(
                    tcp4(POD4, 47_000, EXT4, 443, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                ct_has(p4, x4, 47_000, 443, PROTO_TCP, CT_F_HOST_EGRESS_OK),
                tc_in(
                    tcp4(EXT4, 443, POD4, 47_000, SYN | ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                tc_out(
                    tcp4(POD4, 47_000, EXT4, 443, ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
            ],
        },
    ]
}

const ALL_HOOKS: [Hook; 5] = [
    Hook::PodEgress,
    Hook::PodIngress,
    Hook::HostXdp,
    Hook::HostIngress,
    Hook::HostEgress,
];

fn run_step(dp: &mut Dataplane, ifs: &Ifaces, step: &Step) -> Result<(), String> {
    let Step::Run {
        hook,
        lo,
        frame,
        expect,
    } = step
    else {
        let Step::Check(name, f) = step else {
            unreachable!()
        };
        return f(dp).map_err(|e| format!("check {name}: {e}"));
    };
    let before: Vec<Vec<u64>> = ALL_HOOKS.iter().map(|h| dp.counters_of(*h)).collect();
    let ifindex = if *lo { 1 } else { ifs.host };
    let r = dp.run(*hook, frame, ifindex, 0);
    let after: Vec<Vec<u64>> = ALL_HOOKS.iter().map(|h| dp.counters_of(*h)).collect();
    let mut errors = Vec::new();
    let want = match (hook, expect.pass) {
        (Hook::HostXdp, true) => XDP_PASS,
        (Hook::HostXdp, false) => XDP_DROP,
        (_, true) => TC_ACT_OK,
        (_, false) => TC_ACT_SHOT,
    };
    if r.action != want {
        errors.push(format!("action {} (want {want})", r.action));
    }
    for (h, hook_h) in ALL_HOOKS.iter().enumerate() {
        for reason in 0..before[h].len() {
            let delta = after[h][reason] - before[h][reason];
            let want = u64::from(hook_h == hook && reason == expect.reason as usize);
            if delta != want {
                errors.push(format!(
                    "{hook_h:?} counter {} moved by {delta} (want {want})",
                    REASON_NAMES[reason]
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{hook:?} (want {} {}): {}",
            if expect.pass { "pass" } else { "drop" },
            REASON_NAMES[expect.reason as usize],
            errors.join("; ")
        ))
    }
}

#[test]
fn bpf_host() {
    let netns = NetNs::enter();
    let (host, _) = netns.veth_pair("enf-eth0", "enf-ext");
    let ifs = Ifaces { host };
    let mut dp = Dataplane::load(BPF_OBJECT);
    run_table(
        "bpf_host",
        cases(),
        |c| c.name,
        |case| {
            dp.reset();
            (case.setup)(&mut dp, &ifs);
            for (i, step) in case.steps.iter().enumerate() {
                run_step(&mut dp, &ifs, step).map_err(|e| format!("step {i}: {e}"))?;
            }
            Ok(())
        },
    );
    drop(netns);
}
