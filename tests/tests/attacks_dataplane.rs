//! Attacks on the dataplane, as `BPF_PROG_TEST_RUN` cases (privileged: run as root): each
//! case is named after an attack of the security issue (`issue9_<item>_...`), replays
//! the attacker's packets through the real programs, and checks that the attack fails
//! (or, where Calico's behaviour is kept on purpose, shows that behaviour). The
//! threat model in `docs/architecture.md` names the case that proves each line.
//!
//! Harness as in `bpf_programs.rs`: one load of the embedded object in a private
//! netns, every map reset per case, the topology written by hand with the
//! `enforcer-common` types; a step runs one program on one frame and checks the action
//! and that exactly the expected counter moved (every counter of every hook compared).
//! `BPF_CASE=<substring>` filters; the test fails if no case ran.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use enforcer::dataplane::object::BPF_OBJECT;
use enforcer_common::{
    ACTION_ALLOW, ACTION_CONTINUE, ACTION_DENY, ANY_CELL, ANY_PEER, CONFIG_F_EVENT_ON_ALLOW,
    CONFIG_F_EVENT_ON_DENY, CT_F_ESTABLISHED, CT_F_REPLIED, Config, CtValue, DIR_EGRESS,
    DIR_HOST_EGRESS, DIR_HOST_INGRESS, DIR_INGRESS, DIR_PREDNAT_INGRESS, DIR_UNTRACKED_EGRESS,
    DIR_UNTRACKED_INGRESS, EP_F_HOST, EVENT_KIND_DENY, FAILSAFE_INBOUND_DEFAULT,
    FAILSAFE_OUTBOUND_DEFAULT, FRONTEND_F_HOST_PORT, FRONTEND_F_NODE_PORT, HOOK_CGROUP_INGRESS,
    HOOK_GUARD_EGRESS, HOOK_POD_INGRESS, MARK_EGRESS_DEFERRED, MARK_NODE_PORT_CLIENT, NO_INDEX,
    PEER_F_CLUSTER_NODE, PEER_F_HOST, PEER_F_LOCAL_ENDPOINT, PEER_F_SERVICE_VIP, PeerInfo,
    REASON_ALLOW_CONNTRACK, REASON_ALLOW_FAILSAFE, REASON_ALLOW_NDP, REASON_ALLOW_POLICY,
    REASON_DEFERRED, REASON_DENY_POLICY, REASON_NAMES, REASON_SPOOFED, REASON_XDP_CONTINUE,
    REASONS, RuleCounterKey, VERDICT_KIND_RULE, Verdict, VerdictKey, host_profile,
};
use enforcer_tests::bpf::{
    dataplane::{Dataplane, Hook, ct_key, endpoint, monotonic_ns},
    netns::NetNs,
    packet::{
        ACK, FIN, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, PSH, SYN, V4, icmp, tcp, udp, v6,
        v6_hops,
    },
    run_table,
};

// ---------------------------------------------------------------------------------
// Topology: pods A and B on this node, a remote pod, a Service VIP, the node's own
// address behind the host endpoint `eth`, an external client, the world.
// ---------------------------------------------------------------------------------

const A4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const B4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 20);
const REMOTE4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 30);
const VIP4: Ipv4Addr = Ipv4Addr::new(198, 19, 100, 1);
const VIP4_2: Ipv4Addr = Ipv4Addr::new(198, 19, 100, 2);
const NODE4: Ipv4Addr = Ipv4Addr::new(198, 18, 255, 1);
const EXT4: Ipv4Addr = Ipv4Addr::new(198, 18, 255, 2);
/// Another node of the cluster (a `Node` object's address).
const NODE2_4: Ipv4Addr = Ipv4Addr::new(198, 18, 255, 3);
const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x0a);
const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x14);
const NODE6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0xff, 0, 0, 0, 1);
const EXT6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0xff, 0, 0, 0, 2);
const LL_A6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x0a);
const LL_ROUTER6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

const C_WORLD: u32 = 1;
const C_A: u32 = 2;
const C_B: u32 = 3;
const C_VIP: u32 = 4;
const C_REMOTE: u32 = 5;
const C_NODE: u32 = 6;
const C_EXT: u32 = 7;
/// Host class of the node's own addresses (0: any other address).
const HC_NODE: u32 = 1;

const P_A: u32 = 10;
const P_B: u32 = 20;
const P_HOST: u32 = 7;

const CELL_TCP80: u32 = 1;
const CELL_TCP8000: u32 = 2;
const CELL_UDP53: u32 = 3;
const CELL_ICMP_PORT_UNREACH: u32 = 4;
const CELL_ICMP_ECHO_REPLY: u32 = 5;

#[derive(Clone, Copy, Debug)]
enum On {
    A,
    B,
    /// The host interface (a host endpoint).
    Eth,
}

struct Ifaces {
    a: u32,
    b: u32,
    eth: u32,
}

impl Ifaces {
    fn index(&self, on: On) -> u32 {
        match on {
            On::A => self.a,
            On::B => self.b,
            On::Eth => self.eth,
        }
    }
}

fn peer(class: u32, flags: u32, ifindex: u32, host_class: u32) -> PeerInfo {
    PeerInfo {
        class,
        flags,
        ifindex,
        host_class,
    }
}

/// Endpoints, peers and cells of generation `g`.
fn topology(dp: &mut Dataplane, ifs: &Ifaces, g: u8) {
    let gen32 = u32::from(g);
    dp.set_endpoint(gen32, ifs.a, endpoint(P_A, 100, Some(A4), Some(A6)));
    dp.set_endpoint(gen32, ifs.b, endpoint(P_B, 200, Some(B4), Some(B6)));
    let mut host = endpoint(P_HOST, 1 << 31, Some(NODE4), Some(NODE6));
    host.flags |= EP_F_HOST;
    dp.set_endpoint(gen32, ifs.eth, host);
    let local = PEER_F_LOCAL_ENDPOINT;
    dp.set_peer(g, Ipv4Addr::UNSPECIFIED.into(), 0, peer(C_WORLD, 0, 0, 0));
    dp.set_peer(g, Ipv6Addr::UNSPECIFIED.into(), 0, peer(C_WORLD, 0, 0, 0));
    dp.set_peer(g, A4.into(), 32, peer(C_A, local, ifs.a, 0));
    dp.set_peer(g, A6.into(), 128, peer(C_A, local, ifs.a, 0));
    dp.set_peer(g, B4.into(), 32, peer(C_B, local, ifs.b, 0));
    dp.set_peer(g, B6.into(), 128, peer(C_B, local, ifs.b, 0));
    dp.set_peer(g, REMOTE4.into(), 32, peer(C_REMOTE, 0, 0, 0));
    dp.set_peer(g, VIP4.into(), 32, peer(C_VIP, PEER_F_SERVICE_VIP, 0, 0));
    dp.set_peer(g, VIP4_2.into(), 32, peer(C_VIP, PEER_F_SERVICE_VIP, 0, 0));
    dp.set_peer(g, NODE4.into(), 32, peer(C_NODE, PEER_F_HOST, 0, HC_NODE));
    dp.set_peer(g, EXT4.into(), 32, peer(C_EXT, 0, 0, 0));
    dp.set_peer(g, NODE6.into(), 128, peer(C_NODE, PEER_F_HOST, 0, HC_NODE));
    dp.set_peer(g, EXT6.into(), 128, peer(C_EXT, 0, 0, 0));
    dp.set_port(g, PROTO_TCP, 80, 16, CELL_TCP80);
    dp.set_port(g, PROTO_TCP, 8000, 16, CELL_TCP8000);
    dp.set_port(g, PROTO_UDP, 53, 16, CELL_UDP53);
    dp.set_port(g, PROTO_ICMP, 3 << 8 | 3, 16, CELL_ICMP_PORT_UNREACH);
    dp.set_port(g, PROTO_ICMP, 0, 8, CELL_ICMP_ECHO_REPLY);
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

/// A pod verdict in generation `g`.
fn pod(dp: &mut Dataplane, g: u8, dir: u8, profile: u32, peer: u32, cell: u32, action: u8) {
    dp.set_verdict(
        VerdictKey {
            generation: g,
            dir,
            _pad: [0; 2],
            profile,
            peer_class: peer,
            cell,
        },
        verdict(action),
    );
}

/// A host-endpoint verdict (generation 0) for local host class `local`.
fn host(dp: &mut Dataplane, dir: u8, local: u32, peer: u32, cell: u32, action: u8) {
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

fn config(active_gen: u32, live_gens: u32) -> Config {
    Config {
        active_gen,
        live_gens,
        ..Config::default()
    }
}

/// Generation 0: the topology, default deny for both pods both ways; the host endpoint
/// with no untracked or preDNAT policy and a default-deny tracked chain (seed 001's
/// default deny with a host endpoint on `eth`); Calico's default failsafe ports.
fn base(dp: &mut Dataplane, ifs: &Ifaces) {
    topology(dp, ifs, 0);
    for profile in [P_A, P_B] {
        for dir in [DIR_INGRESS, DIR_EGRESS] {
            pod(dp, 0, dir, profile, ANY_PEER, ANY_CELL, ACTION_DENY);
        }
    }
    for local in [0, HC_NODE] {
        for dir in [
            DIR_UNTRACKED_INGRESS,
            DIR_UNTRACKED_EGRESS,
            DIR_PREDNAT_INGRESS,
        ] {
            host(dp, dir, local, ANY_PEER, ANY_CELL, ACTION_CONTINUE);
        }
        for dir in [DIR_HOST_INGRESS, DIR_HOST_EGRESS] {
            host(dp, dir, local, ANY_PEER, ANY_CELL, ACTION_DENY);
        }
    }
    for (proto, port) in FAILSAFE_INBOUND_DEFAULT {
        dp.set_failsafe(DIR_INGRESS, proto, port);
    }
    for (proto, port) in FAILSAFE_OUTBOUND_DEFAULT {
        dp.set_failsafe(DIR_EGRESS, proto, port);
    }
    dp.set_config(config(0, 1));
}

// ---------------------------------------------------------------------------------
// Frames and steps.
// ---------------------------------------------------------------------------------

fn tcp4(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
    V4::new(src, dst, PROTO_TCP).frame(&tcp(sport, dport, flags))
}

fn udp4(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    V4::new(src, dst, PROTO_UDP).frame(&udp(sport, dport))
}

struct Expect {
    pass: bool,
    /// The counter that moves; `None`: none (a packet the hook does not judge).
    reason: Option<u32>,
    mark: Option<u32>,
}

fn pass(reason: u32) -> Expect {
    Expect {
        pass: true,
        reason: Some(reason),
        mark: None,
    }
}

/// Passed on untouched, counted nowhere.
fn untouched() -> Expect {
    Expect {
        pass: true,
        reason: None,
        mark: None,
    }
}

impl Expect {
    fn mark(mut self, mark: u32) -> Self {
        self.mark = Some(mark);
        self
    }
}

fn dropped(reason: u32) -> Expect {
    Expect {
        pass: false,
        ..pass(reason)
    }
}

type Check = Box<dyn Fn(&mut Dataplane, &Ifaces) -> Result<(), String>>;

enum Step {
    Run {
        hook: Hook,
        on: On,
        frame: Vec<u8>,
        mark: u32,
        /// The interface the packet entered the node on (`__sk_buff.ingress_ifindex`).
        came_in: Option<On>,
        expect: Expect,
    },
    /// Inspect or modify the maps between packets.
    Check(&'static str, Check),
}

fn run(hook: Hook, on: On, frame: Vec<u8>, expect: Expect) -> Step {
    Step::Run {
        hook,
        on,
        frame,
        mark: 0,
        came_in: None,
        expect,
    }
}

fn xdp(frame: Vec<u8>, expect: Expect) -> Step {
    run(Hook::HostXdp, On::Eth, frame, expect)
}

fn host_in(frame: Vec<u8>, expect: Expect) -> Step {
    run(Hook::HostIngress, On::Eth, frame, expect)
}

fn host_out(frame: Vec<u8>, expect: Expect) -> Step {
    run(Hook::HostEgress, On::Eth, frame, expect)
}

fn check(
    name: &'static str,
    f: impl Fn(&mut Dataplane, &Ifaces) -> Result<(), String> + 'static,
) -> Step {
    Step::Check(name, Box::new(f))
}

/// Puts under the tuple (`src:sport -> dst:dport`, TCP) an established entry written
/// for the tuple with the ports `written_for` (the same addresses): what a write
/// through a pointer whose element went to this tuple since the lookup leaves.
fn stale_write(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, written_for: (u16, u16)) -> Step {
    check("a write meant for another tuple", move |dp, _| {
        let key = ct_key(src, dst, sport, dport, PROTO_TCP);
        let meant = ct_key(src, dst, written_for.0, written_for.1, PROTO_TCP);
        let value = CtValue::for_key(&meant, monotonic_ns(), CT_F_ESTABLISHED | CT_F_REPLIED, 0);
        dp.set_conntrack_raw(key, value);
        Ok(())
    })
}

/// Moves the flow's last packet `secs` seconds into the past.
fn age(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, proto: u8, secs: u64) -> Step {
    check("age the entry", move |dp, _| {
        let key = ct_key(src, dst, sport, dport, proto);
        let mut v = dp
            .conntrack_entry(&key)
            .ok_or_else(|| format!("no entry {key:?}"))?;
        v.last_seen_ns = monotonic_ns() - secs * 1_000_000_000;
        dp.set_conntrack(key, v);
        Ok(())
    })
}

fn icmp4(src: Ipv4Addr, dst: Ipv4Addr, kind: u8, code: u8, id: u16) -> Vec<u8> {
    V4::new(src, dst, PROTO_ICMP).frame(&icmp(kind, code, id))
}

struct Case {
    name: &'static str,
    setup: fn(&mut Dataplane, &Ifaces),
    steps: Vec<Step>,
}

// ---------------------------------------------------------------------------------
// The attacks.
// ---------------------------------------------------------------------------------

/// Issue 9 item 2: failsafe ports are destination ports of their own direction only.
fn failsafe_cases() -> Vec<Case> {
    vec![
        Case {
            name: "issue9_2_failsafe_source_port_6443_reaches_any_port",
            setup: base,
            steps: vec![
                // `nc -p 6443 <node> 8000` from outside: no untracked or preDNAT
                // decision (XDP hands over), the tracked chain denies.
                xdp(
                    tcp4(EXT4, 6443, NODE4, 8000, SYN),
                    pass(REASON_XDP_CONTINUE),
                ),
                host_in(
                    tcp4(EXT4, 6443, NODE4, 8000, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
            ],
        },
        Case {
            name: "issue9_2_failsafe_source_port_53_udp_reaches_any_udp_port",
            setup: base,
            steps: vec![
                xdp(udp4(EXT4, 53, NODE4, 33_000), pass(REASON_XDP_CONTINUE)),
                host_in(udp4(EXT4, 53, NODE4, 33_000), dropped(REASON_DENY_POLICY)),
            ],
        },
        Case {
            name: "issue9_2_failsafe_outbound_source_port_22_leaves_unjudged",
            setup: base,
            steps: vec![host_out(
                tcp4(NODE4, 22, EXT4, 9999, SYN),
                dropped(REASON_DENY_POLICY),
            )],
        },
        Case {
            name: "issue9_2_failsafe_connections_reply_through_conntrack",
            setup: base,
            steps: vec![
                // Inbound ssh: failsafe; its reply passes on the flow it opened.
                host_in(
                    tcp4(EXT4, 50_000, NODE4, 22, SYN),
                    pass(REASON_ALLOW_FAILSAFE),
                ),
                host_out(
                    tcp4(NODE4, 22, EXT4, 50_000, SYN | ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                // Outbound DNS: failsafe; its reply passes XDP and TC on the flow.
                host_out(udp4(NODE4, 33_000, EXT4, 53), pass(REASON_ALLOW_FAILSAFE)),
                xdp(udp4(EXT4, 53, NODE4, 33_000), pass(REASON_ALLOW_CONNTRACK)),
                host_in(udp4(EXT4, 53, NODE4, 33_000), pass(REASON_ALLOW_CONNTRACK)),
                // The same source port from another client is no reply.
                host_in(udp4(EXT4, 53, NODE4, 33_001), dropped(REASON_DENY_POLICY)),
            ],
        },
    ]
}

/// An `ICMPv6` message of `kind` with `payload` extra bytes, sent with hop limit `hops`.
fn icmp6(src: Ipv6Addr, dst: Ipv6Addr, hops: u8, kind: u8, payload: usize) -> Vec<u8> {
    let mut l4 = icmp(kind, 0, 0);
    l4.extend(std::iter::repeat_n(0x5a, payload));
    v6_hops(src, dst, hops, &[], PROTO_ICMPV6, &l4)
}

/// Issue 9 item 4: neighbor discovery passes only as valid on-link NDP.
fn ndp_cases() -> Vec<Case> {
    vec![
        Case {
            name: "issue9_4_ndp_type_135_with_payload_leaves_a_denied_pod",
            setup: base,
            steps: vec![
                // The reproduced attack: type 135 with 68 bytes of data to an external
                // address, from a pod under default deny.
                run(
                    Hook::PodEgress,
                    On::A,
                    icmp6(A6, EXT6, 64, 135, 68),
                    dropped(REASON_DENY_POLICY),
                ),
                // A hop limit of 255 does not make a routed destination on-link.
                run(
                    Hook::PodEgress,
                    On::A,
                    icmp6(A6, EXT6, 255, 136, 68),
                    dropped(REASON_DENY_POLICY),
                ),
                // Every type of the range, towards another pod too.
                run(
                    Hook::PodEgress,
                    On::A,
                    icmp6(A6, B6, 64, 137, 68),
                    dropped(REASON_DENY_POLICY),
                ),
                run(
                    Hook::PodIngress,
                    On::B,
                    icmp6(A6, B6, 63, 137, 68),
                    dropped(REASON_DENY_POLICY),
                ),
                // Real neighbor discovery of the pod still works: to the router's
                // link-local address, to a solicited-node group, from its link-local
                // address.
                run(
                    Hook::PodEgress,
                    On::A,
                    icmp6(A6, LL_ROUTER6, 255, 135, 24),
                    pass(REASON_ALLOW_NDP),
                ),
                run(
                    Hook::PodEgress,
                    On::A,
                    icmp6(
                        A6,
                        Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 1),
                        255,
                        135,
                        24,
                    ),
                    pass(REASON_ALLOW_NDP),
                ),
                run(
                    Hook::PodEgress,
                    On::A,
                    icmp6(
                        LL_A6,
                        Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2),
                        255,
                        133,
                        8,
                    ),
                    pass(REASON_ALLOW_NDP),
                ),
            ],
        },
        Case {
            name: "issue9_4_ndp_typed_data_from_outside_reaches_a_pod",
            setup: base,
            steps: vec![
                // Forwarded by the node (hop limit now 254): the pod's ingress judges.
                run(
                    Hook::PodIngress,
                    On::A,
                    icmp6(EXT6, A6, 254, 136, 68),
                    dropped(REASON_DENY_POLICY),
                ),
                // Entering the node for a pod, through the host endpoint: judged too.
                run(
                    Hook::HostIngress,
                    On::Eth,
                    icmp6(EXT6, A6, 255, 135, 68),
                    dropped(REASON_DENY_POLICY),
                ),
                // Neighbor discovery with the node's own address passes (Calico
                // allows NDP to and from the host), link-scope or global.
                host_in(icmp6(EXT6, NODE6, 255, 135, 24), pass(REASON_ALLOW_NDP)),
                xdp(icmp6(EXT6, NODE6, 255, 135, 24), pass(REASON_ALLOW_NDP)),
                host_out(icmp6(NODE6, EXT6, 255, 136, 24), pass(REASON_ALLOW_NDP)),
                host_in(
                    icmp6(
                        LL_ROUTER6,
                        Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
                        255,
                        134,
                        56,
                    ),
                    pass(REASON_ALLOW_NDP),
                ),
            ],
        },
    ]
}

/// Issue 9 item 15 (the conntrack part that is not Service deferral) and item 17
/// (connection tracking details).
fn conntrack_cases() -> Vec<Case> {
    let a4: IpAddr = A4.into();
    let ext4: IpAddr = EXT4.into();
    vec![
        Case {
            name: "issue9_15_unanswered_syn_holds_an_hour_long_entry",
            setup: |dp, ifs| {
                base(dp, ifs);
                pod(dp, 0, DIR_EGRESS, P_A, C_EXT, CELL_TCP80, ACTION_ALLOW);
            },
            steps: vec![
                run(
                    Hook::PodEgress,
                    On::A,
                    tcp4(A4, 40_000, EXT4, 80, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                // Nobody answers for 21 s: the entry is a handshake's, and gone.
                age(a4, ext4, 40_000, 80, PROTO_TCP, 21),
                run(
                    Hook::PodIngress,
                    On::A,
                    tcp4(EXT4, 80, A4, 40_000, SYN | ACK),
                    dropped(REASON_DENY_POLICY),
                ),
            ],
        },
        Case {
            // The programs write an entry they looked up in place; an LRU element may
            // have gone to another tuple in between (`enforcer_common::ct_tag`). Such
            // a stale write leaves an entry tagged for the tuple it was meant for:
            // here A -> EXT:443 (denied) holds approvals written for A -> EXT:80.
            name: "issue12_an_entry_written_for_another_tuple_lends_no_approval",
            setup: |dp, ifs| {
                base(dp, ifs);
                pod(dp, 0, DIR_EGRESS, P_A, C_EXT, CELL_TCP80, ACTION_ALLOW);
            },
            steps: vec![
                stale_write(a4, ext4, 40_002, 443, (40_002, 80)),
                run(
                    Hook::PodEgress,
                    On::A,
                    tcp4(A4, 40_002, EXT4, 443, ACK),
                    dropped(REASON_DENY_POLICY),
                ),
                stale_write(a4, ext4, 40_002, 443, (40_002, 80)),
                run(
                    Hook::PodIngress,
                    On::A,
                    tcp4(EXT4, 443, A4, 40_002, ACK),
                    dropped(REASON_DENY_POLICY),
                ),
                // The same approvals with the tuple's own tag pass (the control).
                stale_write(a4, ext4, 40_002, 443, (40_002, 443)),
                run(
                    Hook::PodEgress,
                    On::A,
                    tcp4(A4, 40_002, EXT4, 443, ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
            ],
        },
        Case {
            name: "issue9_17_one_fin_shortens_a_half_closed_stream",
            setup: |dp, ifs| {
                base(dp, ifs);
                pod(dp, 0, DIR_EGRESS, P_A, C_EXT, CELL_TCP80, ACTION_ALLOW);
            },
            steps: vec![
                run(
                    Hook::PodEgress,
                    On::A,
                    tcp4(A4, 40_001, EXT4, 80, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                run(
                    Hook::PodIngress,
                    On::A,
                    tcp4(EXT4, 80, A4, 40_001, SYN | ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                // The client half-closes; the server streams on, with pauses > 30 s.
                run(
                    Hook::PodEgress,
                    On::A,
                    tcp4(A4, 40_001, EXT4, 80, FIN | ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                age(a4, ext4, 40_001, 80, PROTO_TCP, 45),
                run(
                    Hook::PodIngress,
                    On::A,
                    tcp4(EXT4, 80, A4, 40_001, PSH | ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                // A spoofed FIN "from the server" plus the client's: now closing.
                run(
                    Hook::PodIngress,
                    On::A,
                    tcp4(EXT4, 80, A4, 40_001, FIN | ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                age(a4, ext4, 40_001, 80, PROTO_TCP, 31),
                run(
                    Hook::PodIngress,
                    On::A,
                    tcp4(EXT4, 80, A4, 40_001, ACK),
                    dropped(REASON_DENY_POLICY),
                ),
            ],
        },
        Case {
            name: "issue9_17_one_icmp_type_rides_on_another",
            setup: |dp, ifs| {
                base(dp, ifs);
                pod(
                    dp,
                    0,
                    DIR_EGRESS,
                    P_A,
                    C_EXT,
                    CELL_ICMP_PORT_UNREACH,
                    ACTION_ALLOW,
                );
            },
            steps: vec![
                run(
                    Hook::PodEgress,
                    On::A,
                    icmp4(A4, EXT4, 3, 3, 0),
                    pass(REASON_ALLOW_POLICY),
                ),
                // A redirect (5/1) on the port-unreachable entry.
                run(
                    Hook::PodEgress,
                    On::A,
                    icmp4(A4, EXT4, 5, 1, 0),
                    dropped(REASON_DENY_POLICY),
                ),
                // Any type "back" as a reply of it.
                run(
                    Hook::PodIngress,
                    On::A,
                    icmp4(EXT4, A4, 3, 3, 0),
                    dropped(REASON_DENY_POLICY),
                ),
                run(
                    Hook::PodIngress,
                    On::A,
                    icmp4(EXT4, A4, 13, 0, 0),
                    dropped(REASON_DENY_POLICY),
                ),
            ],
        },
        Case {
            name: "issue9_17_echo_request_rides_on_an_unsolicited_reply",
            setup: |dp, ifs| {
                base(dp, ifs);
                // A may send echo replies (to answer pings), nothing else.
                pod(
                    dp,
                    0,
                    DIR_EGRESS,
                    P_A,
                    C_EXT,
                    CELL_ICMP_ECHO_REPLY,
                    ACTION_ALLOW,
                );
            },
            steps: vec![
                run(
                    Hook::PodEgress,
                    On::A,
                    icmp4(A4, EXT4, 0, 0, 4242),
                    pass(REASON_ALLOW_POLICY),
                ),
                // The outsider's echo request with that id is no reply: A's ingress.
                run(
                    Hook::PodIngress,
                    On::A,
                    icmp4(EXT4, A4, 8, 0, 4242),
                    dropped(REASON_DENY_POLICY),
                ),
            ],
        },
    ]
}

/// A step run with a skb mark.
fn marked(step: Step, m: u32) -> Step {
    match step {
        Step::Run {
            hook,
            on,
            frame,
            came_in,
            expect,
            ..
        } => Step::Run {
            hook,
            on,
            frame,
            mark: m,
            came_in,
            expect,
        },
        other @ Step::Check(..) => other,
    }
}

fn guard(frame: Vec<u8>, expect: Expect) -> Step {
    marked(
        run(Hook::GuardEgress, On::Eth, frame, expect),
        MARK_EGRESS_DEFERRED,
    )
}

/// The cgroup program on local delivery (the frame's Ethernet header is stripped by
/// the test run: a cgroup program sees the packet from its IP header).
fn delivered(frame: Vec<u8>, expect: Expect) -> Step {
    marked(
        run(Hook::CgroupIngress, On::Eth, frame, expect),
        MARK_EGRESS_DEFERRED,
    )
}

fn ct_absent(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, proto: u8) -> Step {
    check("no conntrack entry", move |dp, _| {
        match dp.conntrack_entry(&ct_key(src, dst, sport, dport, proto)) {
            None => Ok(()),
            Some(v) => Err(format!(
                "ct {src}:{sport} -> {dst}:{dport}/{proto} exists: {v:?}"
            )),
        }
    })
}

/// This namespace as the agent's: the cgroup program judges only its packets.
fn with_netns(dp: &mut Dataplane, ifs: &Ifaces) {
    base(dp, ifs);
    dp.set_config(Config {
        netns_cookie: enforcer::dataplane::netns::cookie().unwrap_or_else(|e| panic!("{e}")),
        ..config(0, 1)
    });
}

/// Issue 9 items 1, 8 and 15: Service traffic's egress, judged after DNAT wherever the
/// packet goes, with nothing in conntrack before a verdict.
fn service_cases() -> Vec<Case> {
    let a4: IpAddr = A4.into();
    let vip4: IpAddr = VIP4.into();
    let vip4_2: IpAddr = VIP4_2.into();
    vec![
        Case {
            name: "issue9_1_service_egress_escapes_to_an_external_backend",
            setup: base,
            steps: vec![
                // A (default deny) to a ClusterIP whose DNAT points at the outside.
                run(
                    Hook::PodEgress,
                    On::A,
                    tcp4(A4, 40_000, VIP4, 80, SYN),
                    pass(REASON_DEFERRED).mark(MARK_EGRESS_DEFERRED),
                ),
                // Translated, it leaves the node: the guard judges A's egress.
                guard(
                    tcp4(A4, 40_000, EXT4, 80, SYN),
                    dropped(REASON_DENY_POLICY).mark(0),
                ),
                // The same to a remote pod of another node.
                run(
                    Hook::PodEgress,
                    On::A,
                    tcp4(A4, 40_001, VIP4, 80, SYN),
                    pass(REASON_DEFERRED),
                ),
                guard(
                    tcp4(A4, 40_001, REMOTE4, 80, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
                // Nothing approved: a "reply" from the VIP faces A's ingress.
                run(
                    Hook::PodIngress,
                    On::A,
                    tcp4(VIP4, 80, A4, 40_000, SYN | ACK),
                    dropped(REASON_DENY_POLICY),
                ),
                // Packets nobody deferred pass the guard untouched and uncounted.
                marked(
                    run(
                        Hook::GuardEgress,
                        On::Eth,
                        tcp4(NODE4, 22, EXT4, 50_000, ACK),
                        untouched(),
                    ),
                    0,
                ),
            ],
        },
        Case {
            name: "issue9_1_allowed_service_egress_to_an_external_backend_and_its_reply",
            setup: |dp, ifs| {
                base(dp, ifs);
                // A may reach the external backend; its ingress stays isolated.
                pod(dp, 0, DIR_EGRESS, P_A, C_EXT, CELL_TCP80, ACTION_ALLOW);
            },
            steps: vec![
                run(
                    Hook::PodEgress,
                    On::A,
                    tcp4(A4, 40_000, VIP4, 80, SYN),
                    pass(REASON_DEFERRED),
                ),
                guard(
                    tcp4(A4, 40_000, EXT4, 80, SYN),
                    pass(REASON_ALLOW_POLICY).mark(0),
                ),
                // The reply, un-DNATed to come from the VIP, is a reply (it used to be
                // judged as a new flow from the VIP's class: a wrong drop here).
                run(
                    Hook::PodIngress,
                    On::A,
                    tcp4(VIP4, 80, A4, 40_000, SYN | ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                run(
                    Hook::PodEgress,
                    On::A,
                    tcp4(A4, 40_000, VIP4, 80, ACK),
                    pass(REASON_DEFERRED).mark(MARK_EGRESS_DEFERRED),
                ),
                guard(
                    tcp4(A4, 40_000, EXT4, 80, ACK),
                    pass(REASON_ALLOW_CONNTRACK).mark(0),
                ),
            ],
        },
        Case {
            name: "issue9_1_service_egress_escapes_to_the_node_itself",
            setup: with_netns,
            steps: vec![
                // The `kubernetes` Service: its endpoint is the node's API server.
                run(
                    Hook::PodEgress,
                    On::A,
                    tcp4(A4, 40_002, VIP4, 443, SYN),
                    pass(REASON_DEFERRED),
                ),
                delivered(
                    tcp4(A4, 40_002, NODE4, 6443, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
                // Unmarked deliveries are none of its business.
                marked(
                    run(
                        Hook::CgroupIngress,
                        On::Eth,
                        tcp4(EXT4, 1, NODE4, 22, SYN),
                        untouched(),
                    ),
                    0,
                ),
            ],
        },
        Case {
            name: "issue9_1_cgroup_program_judges_only_its_own_namespace",
            setup: |dp, ifs| {
                base(dp, ifs);
                dp.set_config(Config {
                    netns_cookie: 1,
                    ..config(0, 1)
                });
            },
            steps: vec![delivered(tcp4(A4, 40_002, NODE4, 6443, SYN), untouched())],
        },
        Case {
            name: "issue9_8_concurrent_flows_from_one_port_to_two_vips",
            setup: |dp, ifs| {
                base(dp, ifs);
                // A may reach B on 53 (VIP1's backend), B accepts A.
                pod(dp, 0, DIR_EGRESS, P_A, C_B, CELL_UDP53, ACTION_ALLOW);
                pod(dp, 0, DIR_INGRESS, P_B, C_A, CELL_UDP53, ACTION_ALLOW);
            },
            steps: vec![
                // One UDP socket, two VIPs at once; VIP2's backend is denied to A.
                run(
                    Hook::PodEgress,
                    On::A,
                    udp4(A4, 5000, VIP4, 53),
                    pass(REASON_DEFERRED),
                ),
                run(
                    Hook::PodEgress,
                    On::A,
                    udp4(A4, 5000, VIP4_2, 53),
                    pass(REASON_DEFERRED),
                ),
                // VIP1's translated packet is approved at B...
                marked(
                    run(
                        Hook::PodIngress,
                        On::B,
                        udp4(A4, 5000, B4, 53),
                        pass(REASON_ALLOW_POLICY),
                    ),
                    MARK_EGRESS_DEFERRED,
                ),
                // ...which approves neither original tuple: the socket is ambiguous.
                ct_absent(a4, vip4_2, 5000, 53, PROTO_UDP),
                ct_absent(a4, vip4, 5000, 53, PROTO_UDP),
                // So nothing from VIP2 (whose backend A may not reach) passes as a reply.
                run(
                    Hook::PodIngress,
                    On::A,
                    udp4(VIP4_2, 53, A4, 5000),
                    dropped(REASON_DENY_POLICY),
                ),
            ],
        },
        Case {
            name: "issue9_8_re_dnat_of_an_established_udp_flow_skips_the_client_egress",
            setup: |dp, ifs| {
                base(dp, ifs);
                pod(dp, 0, DIR_EGRESS, P_A, C_B, CELL_UDP53, ACTION_ALLOW);
                pod(dp, 0, DIR_INGRESS, P_B, C_A, CELL_UDP53, ACTION_ALLOW);
            },
            steps: vec![
                run(
                    Hook::PodEgress,
                    On::A,
                    udp4(A4, 5353, VIP4, 53),
                    pass(REASON_DEFERRED),
                ),
                marked(
                    run(
                        Hook::PodIngress,
                        On::B,
                        udp4(A4, 5353, B4, 53),
                        pass(REASON_ALLOW_POLICY),
                    ),
                    MARK_EGRESS_DEFERRED,
                ),
                // The flow is established; the kernel's NAT entry expires and the next
                // packet is translated to a remote backend A's egress denies.
                run(
                    Hook::PodEgress,
                    On::A,
                    udp4(A4, 5353, VIP4, 53),
                    pass(REASON_DEFERRED).mark(MARK_EGRESS_DEFERRED),
                ),
                guard(udp4(A4, 5353, REMOTE4, 53), dropped(REASON_DENY_POLICY)),
            ],
        },
        Case {
            name: "issue9_15_a_deny_all_pod_fills_conntrack_through_vips",
            setup: base,
            steps: vec![
                run(
                    Hook::PodEgress,
                    On::A,
                    udp4(A4, 6000, VIP4, 53),
                    pass(REASON_DEFERRED),
                ),
                run(
                    Hook::PodEgress,
                    On::A,
                    tcp4(A4, 6001, VIP4_2, 80, SYN),
                    pass(REASON_DEFERRED),
                ),
                ct_absent(a4, vip4, 6000, 53, PROTO_UDP),
                ct_absent(a4, vip4_2, 6001, 80, PROTO_TCP),
            ],
        },
    ]
}

/// The policy id of [`reported_cases`]' verdict: no other case uses it, so its rule
/// counter moves only there.
const REPORTED_POLICY: u32 = 900;
const REPORTED_RULE: u32 = 3;

/// Generation 0 with A's egress denied by (`REPORTED_POLICY`, `REPORTED_RULE`), events
/// on denies and allows, and this namespace as the agent's.
fn reported_setup(dp: &mut Dataplane, ifs: &Ifaces) {
    with_netns(dp, ifs);
    dp.set_verdict(
        VerdictKey {
            generation: 0,
            dir: DIR_EGRESS,
            _pad: [0; 2],
            profile: P_A,
            peer_class: ANY_PEER,
            cell: ANY_CELL,
        },
        Verdict {
            policy: REPORTED_POLICY,
            rule: REPORTED_RULE,
            ..verdict(ACTION_DENY)
        },
    );
    dp.set_config(Config {
        netns_cookie: enforcer::dataplane::netns::cookie().unwrap_or_else(|e| panic!("{e}")),
        flags: CONFIG_F_EVENT_ON_DENY | CONFIG_F_EVENT_ON_ALLOW,
        ..config(0, 1)
    });
}

/// After the `n`th deferred denial: A's deny rule counted `n` times, and exactly one
/// deny event queued since the last check, naming A's egress rule and the program
/// (`hook`) that judged it.
fn reported(n: u64, hook: u32) -> Step {
    check("rule counter and flow event", move |dp, ifs| {
        let counted = dp.rule_counter(RuleCounterKey {
            policy: REPORTED_POLICY,
            rule: REPORTED_RULE,
            dir: DIR_EGRESS,
            action: ACTION_DENY,
            _pad: [0; 2],
        });
        if counted.packets != n || counted.bytes == 0 {
            return Err(format!("rule counter {counted:?} (want {n} packets)"));
        }
        let events = dp.drain_events();
        let [e] = events.as_slice() else {
            return Err(format!("events {events:?} (want one deny event)"));
        };
        let want = (EVENT_KIND_DENY, u32::from(DIR_EGRESS), hook, ifs.a, 100);
        let got = (
            e.kind,
            u32::from(e.dir),
            u32::from(e.hook),
            e.ifindex,
            e.endpoint_id,
        );
        if got != want
            || (e.policy, e.rule) != (REPORTED_POLICY, REPORTED_RULE)
            || e.reason != REASON_DENY_POLICY
        {
            return Err(format!(
                "event {e:?} (want kind/dir/hook/ifindex/endpoint {want:?})"
            ));
        }
        Ok(())
    })
}

/// Issue 14 on the deferred egress of Service traffic: wherever the client's egress
/// is judged after DNAT (the backend's ingress hook, the guard, the cgroup program),
/// the verdict counts under its rule and reports a flow event naming that hook.
fn reported_cases() -> Vec<Case> {
    vec![Case {
        name: "issue14_deferred_egress_counted_and_reported_where_judged",
        setup: reported_setup,
        steps: vec![
            // To the outside: the guard judges.
            run(
                Hook::PodEgress,
                On::A,
                tcp4(A4, 41_000, VIP4, 80, SYN),
                pass(REASON_DEFERRED),
            ),
            guard(
                tcp4(A4, 41_000, EXT4, 80, SYN),
                dropped(REASON_DENY_POLICY).mark(0),
            ),
            reported(1, HOOK_GUARD_EGRESS),
            // To the node's own socket: the cgroup program judges.
            run(
                Hook::PodEgress,
                On::A,
                tcp4(A4, 41_001, VIP4, 443, SYN),
                pass(REASON_DEFERRED),
            ),
            delivered(
                tcp4(A4, 41_001, NODE4, 6443, SYN),
                dropped(REASON_DENY_POLICY),
            ),
            reported(2, HOOK_CGROUP_INGRESS),
            // To pod B on this node: B's ingress hook judges A's egress first.
            run(
                Hook::PodEgress,
                On::A,
                tcp4(A4, 41_002, VIP4, 80, SYN),
                pass(REASON_DEFERRED),
            ),
            marked(
                run(
                    Hook::PodIngress,
                    On::B,
                    tcp4(A4, 41_002, B4, 80, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
                MARK_EGRESS_DEFERRED,
            ),
            reported(3, HOOK_POD_INGRESS),
        ],
    }]
}

/// Issue 9 item 7: egress to a front-end on the node's own address (a node port, a
/// host port) is judged after the translation, like egress to a VIP.
fn frontend_cases() -> Vec<Case> {
    vec![Case {
        name: "issue9_7_nodeport_reaches_a_backend_the_egress_denies",
        setup: |dp, ifs| {
            base(dp, ifs);
            // A may reach the node (kubelet, host services), not B.
            pod(dp, 0, DIR_EGRESS, P_A, C_NODE, ANY_CELL, ACTION_ALLOW);
            pod(dp, 0, DIR_INGRESS, P_B, ANY_PEER, ANY_CELL, ACTION_ALLOW);
            dp.set_frontend(0, PROTO_TCP, 30_080, FRONTEND_F_NODE_PORT);
            dp.set_frontend(0, PROTO_UDP, 5353, FRONTEND_F_HOST_PORT);
        },
        steps: vec![
            // node:NodePort is deferred, not allowed as "the node".
            run(
                Hook::PodEgress,
                On::A,
                tcp4(A4, 40_000, NODE4, 30_080, SYN),
                pass(REASON_DEFERRED).mark(MARK_EGRESS_DEFERRED),
            ),
            // kube-proxy translated it to B:80: A's egress to B is judged, and denies.
            marked(
                run(
                    Hook::PodIngress,
                    On::B,
                    tcp4(A4, 40_000, B4, 80, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
                MARK_EGRESS_DEFERRED,
            ),
            // A host port likewise.
            run(
                Hook::PodEgress,
                On::A,
                udp4(A4, 40_001, NODE4, 5353),
                pass(REASON_DEFERRED),
            ),
            marked(
                run(
                    Hook::PodIngress,
                    On::B,
                    udp4(A4, 40_001, B4, 53),
                    dropped(REASON_DENY_POLICY),
                ),
                MARK_EGRESS_DEFERRED,
            ),
            // Any other port of the node is the node's, judged at once.
            run(
                Hook::PodEgress,
                On::A,
                tcp4(A4, 40_002, NODE4, 10_250, SYN),
                pass(REASON_ALLOW_POLICY),
            ),
        ],
    }]
}

/// A packet run on `hook` that entered the node through `came_in`.
fn came_in(hook: Hook, on: On, frame: Vec<u8>, from: On, expect: Expect) -> Step {
    match run(hook, on, frame, expect) {
        Step::Run {
            hook,
            on,
            frame,
            mark,
            expect,
            ..
        } => Step::Run {
            hook,
            on,
            frame,
            mark,
            came_in: Some(from),
            expect,
        },
        other @ Step::Check(..) => other,
    }
}

/// A trusts B and B trusts A, both ways; A's egress is open (the default of most pods).
fn trusting(dp: &mut Dataplane, ifs: &Ifaces) {
    base(dp, ifs);
    pod(dp, 0, DIR_EGRESS, P_A, ANY_PEER, ANY_CELL, ACTION_ALLOW);
    pod(dp, 0, DIR_EGRESS, P_B, C_A, ANY_CELL, ACTION_ALLOW);
    pod(dp, 0, DIR_INGRESS, P_A, C_B, ANY_CELL, ACTION_ALLOW);
    pod(dp, 0, DIR_INGRESS, P_B, C_A, ANY_CELL, ACTION_ALLOW);
    // The host endpoint lets the node's pods in (a probe rule).
    host(dp, DIR_HOST_INGRESS, HC_NODE, C_A, ANY_CELL, ACTION_ALLOW);
}

/// An IPIP packet from `outer_src` to `outer_dst` carrying `inner`'s IP packet.
fn ipip(outer_src: Ipv4Addr, outer_dst: Ipv4Addr, inner: &[u8]) -> Vec<u8> {
    V4::new(outer_src, outer_dst, 4).frame(&inner[14..])
}

/// Issue 9 item 11: spoofed sources through the node (encapsulation from a pod, a local
/// pod's address arriving through another interface than its own).
fn spoof_cases() -> Vec<Case> {
    let a4: IpAddr = A4.into();
    let b4: IpAddr = B4.into();
    vec![
        Case {
            name: "issue9_11_a_pod_tunnels_a_packet_with_a_forged_inner_source_through_the_node",
            setup: trusting,
            steps: vec![
                // B's egress is open to the node: IPIP carrying "A -> B" is still dropped.
                run(
                    Hook::PodEgress,
                    On::A,
                    ipip(A4, NODE4, &tcp4(B4, 1000, A4, 80, SYN)),
                    dropped(REASON_SPOOFED),
                ),
                // To another node, or outside: the same.
                run(
                    Hook::PodEgress,
                    On::A,
                    ipip(A4, EXT4, &tcp4(B4, 1000, A4, 80, SYN)),
                    dropped(REASON_SPOOFED),
                ),
                // IPv6-in-IPv4 (41) and VXLAN (UDP 4789).
                run(
                    Hook::PodEgress,
                    On::A,
                    V4::new(A4, NODE4, 41).frame(&[0x60; 40]),
                    dropped(REASON_SPOOFED),
                ),
                run(
                    Hook::PodEgress,
                    On::A,
                    udp4(A4, 40_000, NODE4, 4789),
                    dropped(REASON_SPOOFED),
                ),
                run(
                    Hook::PodEgress,
                    On::A,
                    v6(A6, NODE6, &[], 4, &[0x45; 20]),
                    dropped(REASON_SPOOFED),
                ),
                ct_absent(a4, NODE4.into(), 40_000, 4789, PROTO_UDP),
                // Plain UDP from A to the node passes its open egress.
                run(
                    Hook::PodEgress,
                    On::A,
                    udp4(A4, 40_000, NODE4, 53),
                    pass(REASON_ALLOW_POLICY),
                ),
            ],
        },
        Case {
            name: "issue9_11_an_outside_host_spoofs_a_local_pod",
            setup: trusting,
            steps: vec![
                // "A -> B" arriving on the host interface (or decapsulated from a
                // tunnel device): B's ingress trusts A, the packet is not A's.
                came_in(
                    Hook::PodIngress,
                    On::B,
                    tcp4(A4, 1000, B4, 80, SYN),
                    On::Eth,
                    dropped(REASON_SPOOFED),
                ),
                ct_absent(a4, b4, 1000, 80, PROTO_TCP),
                // Nor through another pod's veth (B's own address back to B).
                came_in(
                    Hook::PodIngress,
                    On::A,
                    tcp4(B4, 1000, A4, 80, SYN),
                    On::A,
                    dropped(REASON_SPOOFED),
                ),
                // Through the host endpoint to the node, which lets A in.
                host_in(tcp4(A4, 1000, NODE4, 8000, SYN), dropped(REASON_SPOOFED)),
                xdp(tcp4(A4, 1000, NODE4, 8000, SYN), dropped(REASON_SPOOFED)),
                // A's own packet, through A's veth, is A's.
                came_in(
                    Hook::PodIngress,
                    On::B,
                    tcp4(A4, 1000, B4, 80, SYN),
                    On::A,
                    pass(REASON_ALLOW_POLICY),
                ),
            ],
        },
        Case {
            name: "issue9_11_an_outside_host_injects_into_an_intra_node_flow",
            setup: trusting,
            steps: vec![
                // A and B talk: both legs approved.
                run(
                    Hook::PodEgress,
                    On::A,
                    tcp4(A4, 40_000, B4, 80, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                came_in(
                    Hook::PodIngress,
                    On::B,
                    tcp4(A4, 40_000, B4, 80, SYN),
                    On::A,
                    pass(REASON_ALLOW_POLICY),
                ),
                // Forged segments of that flow from outside, either way: conntrack keys
                // carry no interface, the RPF check does.
                came_in(
                    Hook::PodIngress,
                    On::B,
                    tcp4(A4, 40_000, B4, 80, ACK | PSH),
                    On::Eth,
                    dropped(REASON_SPOOFED),
                ),
                came_in(
                    Hook::PodIngress,
                    On::A,
                    tcp4(B4, 80, A4, 40_000, SYN | ACK),
                    On::Eth,
                    dropped(REASON_SPOOFED),
                ),
                // The real segments still pass.
                came_in(
                    Hook::PodIngress,
                    On::B,
                    tcp4(A4, 40_000, B4, 80, ACK | PSH),
                    On::A,
                    pass(REASON_ALLOW_CONNTRACK),
                ),
            ],
        },
    ]
}

/// Issue 9 item 9: sources the node's own SNAT rewrote are judged as the pod behind
/// them (the packet entered through its veth).
fn snat_cases() -> Vec<Case> {
    vec![
        Case {
            name: "issue9_9_nat_outgoing_makes_a_pods_traffic_the_hosts_own",
            setup: |dp, ifs| {
                base(dp, ifs);
                pod(dp, 0, DIR_EGRESS, P_A, ANY_PEER, ANY_CELL, ACTION_ALLOW);
                // The host may reach the outside; forwarded traffic (applyOnForward,
                // local side a pod) may not.
                host(dp, DIR_HOST_EGRESS, HC_NODE, C_EXT, ANY_CELL, ACTION_ALLOW);
            },
            steps: vec![
                run(
                    Hook::PodEgress,
                    On::A,
                    tcp4(A4, 40_000, EXT4, 80, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                // natOutgoing: the packet leaves eth with the node's address; it came
                // in through A's veth, it is A's forwarded traffic.
                came_in(
                    Hook::HostEgress,
                    On::Eth,
                    tcp4(NODE4, 40_000, EXT4, 80, SYN),
                    On::A,
                    dropped(REASON_DENY_POLICY),
                ),
                // The node's own connection is the host's.
                host_out(
                    tcp4(NODE4, 40_001, EXT4, 80, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
            ],
        },
        Case {
            name: "issue9_9_masquerade_makes_a_pods_node_port_traffic_the_nodes",
            setup: |dp, ifs| {
                base(dp, ifs);
                pod(dp, 0, DIR_EGRESS, P_A, ANY_PEER, ANY_CELL, ACTION_ALLOW);
                // B admits the node (probes), not A.
                pod(dp, 0, DIR_INGRESS, P_B, C_NODE, ANY_CELL, ACTION_ALLOW);
            },
            steps: vec![
                run(
                    Hook::PodEgress,
                    On::A,
                    tcp4(A4, 40_000, NODE4, 80, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                // kube-proxy DNATs node:80 to B and masquerades: B sees the node's
                // address on a packet that came in through A's veth.
                came_in(
                    Hook::PodIngress,
                    On::B,
                    tcp4(NODE4, 40_000, B4, 80, SYN),
                    On::A,
                    dropped(REASON_DENY_POLICY),
                ),
                // The node's own probe is the node's.
                run(
                    Hook::PodIngress,
                    On::B,
                    tcp4(NODE4, 40_001, B4, 80, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
            ],
        },
        Case {
            name: "issue9_9_hairpin_through_a_vip_with_snat_resolves_the_client",
            setup: |dp, ifs| {
                base(dp, ifs);
                pod(dp, 0, DIR_EGRESS, P_A, C_A, CELL_TCP80, ACTION_ALLOW);
                pod(dp, 0, DIR_INGRESS, P_A, C_A, CELL_TCP80, ACTION_ALLOW);
            },
            steps: vec![
                run(
                    Hook::PodEgress,
                    On::A,
                    tcp4(A4, 40_000, VIP4, 80, SYN),
                    pass(REASON_DEFERRED).mark(MARK_EGRESS_DEFERRED),
                ),
                // DNAT to A itself and SNAT to the node's address (hairpin): the client
                // is the pod behind the rewritten source, judged by its own egress.
                marked(
                    came_in(
                        Hook::PodIngress,
                        On::A,
                        tcp4(NODE4, 40_000, A4, 80, SYN),
                        On::A,
                        pass(REASON_ALLOW_POLICY).mark(0),
                    ),
                    MARK_EGRESS_DEFERRED,
                ),
            ],
        },
        Case {
            name: "issue9_9_a_masqueraded_flow_of_an_admitted_pod_is_answered",
            setup: |dp, ifs| {
                base(dp, ifs);
                pod(dp, 0, DIR_EGRESS, P_A, ANY_PEER, ANY_CELL, ACTION_ALLOW);
                pod(dp, 0, DIR_INGRESS, P_B, C_A, ANY_CELL, ACTION_ALLOW);
            },
            steps: vec![
                run(
                    Hook::PodEgress,
                    On::A,
                    tcp4(A4, 40_000, NODE4, 80, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                came_in(
                    Hook::PodIngress,
                    On::B,
                    tcp4(NODE4, 40_000, B4, 80, SYN),
                    On::A,
                    pass(REASON_ALLOW_POLICY),
                ),
                // B's reply passes as a reply (A's egress approved the flow before
                // the rewrite), whatever B's egress policy (deny all).
                came_in(
                    Hook::PodEgress,
                    On::B,
                    tcp4(B4, 80, NODE4, 40_000, SYN | ACK),
                    On::B,
                    pass(REASON_ALLOW_CONNTRACK),
                ),
            ],
        },
    ]
}

/// The guard on the host interface's ingress, for a packet entering the node there.
fn guard_in(frame: Vec<u8>, expect: Expect) -> Step {
    came_in(Hook::GuardIngress, On::Eth, frame, On::Eth, expect)
}

/// A VXLAN packet (UDP 4789, VNI 1) from `outer_src` to `outer_dst` carrying `inner`'s
/// Ethernet frame.
fn vxlan(outer_src: Ipv4Addr, outer_dst: Ipv4Addr, inner: &[u8]) -> Vec<u8> {
    let len = u16::try_from(8 + 8 + inner.len()).unwrap_or(u16::MAX);
    let mut segment = Vec::new();
    segment.extend_from_slice(&40_000u16.to_be_bytes());
    segment.extend_from_slice(&4789u16.to_be_bytes());
    segment.extend_from_slice(&len.to_be_bytes());
    segment.extend_from_slice(&[0, 0]);
    segment.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 1, 0]);
    segment.extend_from_slice(inner);
    V4::new(outer_src, outer_dst, PROTO_UDP).frame(&segment)
}

/// The node knows another node (`NODE2_4`); B trusts the remote pod (as it would a pod
/// of that node).
fn with_a_second_node(dp: &mut Dataplane, ifs: &Ifaces) {
    trusting(dp, ifs);
    dp.set_peer(
        0,
        NODE2_4.into(),
        32,
        peer(C_NODE, PEER_F_CLUSTER_NODE, 0, 0),
    );
    pod(dp, 0, DIR_INGRESS, P_B, C_REMOTE, ANY_CELL, ACTION_ALLOW);
}

/// Issue 9 item 11, from outside: tunnel packets to the node are accepted from cluster
/// nodes only (Felix's all-hosts check), by the ingress guard on every host interface.
fn tunnel_cases() -> Vec<Case> {
    let forged = || tcp4(REMOTE4, 1000, B4, 80, SYN);
    vec![Case {
        name: "issue9_11_an_outside_host_tunnels_a_forged_pod_packet_to_the_node",
        setup: with_a_second_node,
        steps: vec![
            // IPIP, IPv6-in-IP, VXLAN and IPv6-carried IPIP from the external client,
            // each carrying "remote pod -> B" (which B trusts): dropped before the node
            // decapsulates them.
            guard_in(ipip(EXT4, NODE4, &forged()), dropped(REASON_SPOOFED)),
            guard_in(
                V4::new(EXT4, NODE4, 41).frame(&[0x60; 40]),
                dropped(REASON_SPOOFED),
            ),
            guard_in(vxlan(EXT4, NODE4, &forged()), dropped(REASON_SPOOFED)),
            guard_in(
                v6(EXT6, NODE6, &[], 4, &forged()[14..]),
                dropped(REASON_SPOOFED),
            ),
            // From another node of the cluster: accepted (the inner packet meets B's
            // ingress after decapsulation).
            guard_in(ipip(NODE2_4, NODE4, &forged()), pass(REASON_ALLOW_POLICY)),
            guard_in(vxlan(NODE2_4, NODE4, &forged()), pass(REASON_ALLOW_POLICY)),
            // Not to the node (routed through it): not the guard's to judge.
            guard_in(ipip(EXT4, REMOTE4, &forged()), untouched()),
            // Anything else to the node goes on untouched (the host endpoint's programs
            // judge it).
            guard_in(udp4(EXT4, 40_000, NODE4, 53), untouched()),
            guard_in(tcp4(EXT4, 40_000, NODE4, 4789, SYN), untouched()),
        ],
    }]
}

/// B admits `peer_class` only (the node, or the external client).
fn node_port_backend(dp: &mut Dataplane, ifs: &Ifaces, peer_class: u32) {
    base(dp, ifs);
    pod(dp, 0, DIR_INGRESS, P_B, peer_class, ANY_CELL, ACTION_ALLOW);
    dp.set_frontend(0, PROTO_TCP, 30_080, FRONTEND_F_NODE_PORT);
}

/// A packet to B that kube-proxy translated from a `NodePort` the guard noted.
fn to_backend(frame: Vec<u8>, expect: Expect) -> Step {
    marked(
        came_in(Hook::PodIngress, On::B, frame, On::Eth, expect),
        MARK_NODE_PORT_CLIENT,
    )
}

/// Issue 9 item 9(a): an outside client whose `NodePort` traffic kube-proxy
/// masquerades to a local backend is judged as that client, never as the node.
fn node_port_client_cases() -> Vec<Case> {
    vec![
        Case {
            name: "issue9_9_a_masqueraded_outside_client_is_not_the_node",
            setup: |dp, ifs| node_port_backend(dp, ifs, C_NODE),
            steps: vec![
                // EXT -> node:30080 is noted before any translation and marked.
                guard_in(
                    tcp4(EXT4, 40_000, NODE4, 30_080, SYN),
                    pass(REASON_ALLOW_POLICY).mark(MARK_NODE_PORT_CLIENT),
                ),
                // DNAT to B:80, SNAT to the node: B admits the node, not EXT.
                to_backend(
                    tcp4(NODE4, 40_000, B4, 80, SYN),
                    dropped(REASON_DENY_POLICY).mark(0),
                ),
                // The node's own probe (sent by the node, unmarked) is the node's.
                run(
                    Hook::PodIngress,
                    On::B,
                    tcp4(NODE4, 40_001, B4, 80, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                // Masqueraded with a source port nobody noted (the SNAT changed it):
                // whose it is cannot be told, dropped.
                to_backend(tcp4(NODE4, 40_002, B4, 80, SYN), dropped(REASON_SPOOFED)),
                // Two clients from one port within the TTL: neither is named.
                guard_in(
                    tcp4(REMOTE4, 40_000, NODE4, 30_080, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                to_backend(tcp4(NODE4, 40_000, B4, 80, SYN), dropped(REASON_SPOOFED)),
                // A local pod's address from outside is forged: dropped before a note
                // names it (behind the masquerade, B could not check it).
                guard_in(
                    tcp4(A4, 40_003, NODE4, 30_080, SYN),
                    dropped(REASON_SPOOFED),
                ),
            ],
        },
        Case {
            name: "issue9_9_a_masqueraded_outside_client_is_judged_as_itself",
            setup: |dp, ifs| node_port_backend(dp, ifs, C_EXT),
            steps: vec![
                guard_in(
                    tcp4(EXT4, 40_000, NODE4, 30_080, SYN),
                    pass(REASON_ALLOW_POLICY).mark(MARK_NODE_PORT_CLIENT),
                ),
                to_backend(tcp4(NODE4, 40_000, B4, 80, SYN), pass(REASON_ALLOW_POLICY)),
                // B's reply passes (deny-all egress): the flow was approved.
                came_in(
                    Hook::PodEgress,
                    On::B,
                    tcp4(B4, 80, NODE4, 40_000, SYN | ACK),
                    On::B,
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                // Not masqueraded (`externalTrafficPolicy: Local`): the client's own
                // source, judged as itself.
                guard_in(
                    tcp4(EXT4, 40_004, NODE4, 30_080, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                to_backend(tcp4(EXT4, 40_004, B4, 80, SYN), pass(REASON_ALLOW_POLICY)),
                // The node itself is not admitted.
                run(
                    Hook::PodIngress,
                    On::B,
                    tcp4(NODE4, 40_001, B4, 80, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
            ],
        },
    ]
}

fn cases() -> Vec<Case> {
    let mut all = Vec::new();
    all.extend(failsafe_cases());
    all.extend(ndp_cases());
    all.extend(conntrack_cases());
    all.extend(service_cases());
    all.extend(frontend_cases());
    all.extend(reported_cases());
    all.extend(spoof_cases());
    all.extend(snat_cases());
    all.extend(tunnel_cases());
    all.extend(node_port_client_cases());
    all
}

// ---------------------------------------------------------------------------------
// The runner.
// ---------------------------------------------------------------------------------

const HOOKS: [Hook; 8] = [
    Hook::PodEgress,
    Hook::PodIngress,
    Hook::HostXdp,
    Hook::HostIngress,
    Hook::HostEgress,
    Hook::GuardEgress,
    Hook::GuardIngress,
    Hook::CgroupIngress,
];

fn all_counters(dp: &Dataplane) -> Vec<(Hook, Vec<u64>)> {
    HOOKS.iter().map(|&h| (h, dp.counters_of(h))).collect()
}

fn run_step(dp: &mut Dataplane, ifs: &Ifaces, step: &Step) -> Result<(), String> {
    match step {
        Step::Check(name, f) => f(dp, ifs).map_err(|e| format!("check {name}: {e}")),
        Step::Run {
            hook,
            on,
            frame,
            mark,
            came_in,
            expect,
        } => {
            let before = all_counters(dp);
            let ingress = came_in.map_or(0, |c| ifs.index(c));
            let out = dp.run_from(*hook, frame, ifs.index(*on), *mark, ingress);
            let after = all_counters(dp);
            let (ok, shot) = hook.pass_drop();
            let want = if expect.pass { ok } else { shot };
            let mut moved = Vec::new();
            for ((h, b), (_, a)) in before.iter().zip(&after) {
                for r in 0..REASONS as usize {
                    if a[r] != b[r] {
                        moved.push(format!("{h:?}/{}+{}", REASON_NAMES[r], a[r] - b[r]));
                    }
                }
            }
            let want_moved: Vec<String> = expect
                .reason
                .map(|r| format!("{hook:?}/{}+1", REASON_NAMES[r as usize]))
                .into_iter()
                .collect();
            if out.action != want || moved != want_moved {
                return Err(format!(
                    "{hook:?} on {on:?}: action {} (want {want}), counters moved {moved:?} \
                     (want {want_moved:?})",
                    out.action
                ));
            }
            if let Some(m) = expect.mark
                && out.mark != m
            {
                return Err(format!("{hook:?}: mark {:#x} (want {m:#x})", out.mark));
            }
            Ok(())
        }
    }
}

#[test]
fn attacks_on_the_dataplane_fail() {
    let netns = NetNs::enter();
    let (a, b) = netns.veth_pair("enf-atk-a", "enf-atk-b");
    let (eth, _) = netns.veth_pair("enf-atk-eth", "enf-atk-ext");
    let ifs = Ifaces { a, b, eth };
    let mut dp = Dataplane::load(BPF_OBJECT);
    run_table(
        "attacks_dataplane",
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
