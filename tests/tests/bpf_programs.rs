//! The TC programs under `BPF_PROG_TEST_RUN` (privileged: run as root).
//!
//! One test function loads the embedded object once (no pinning, nothing attached), in a
//! private network namespace holding a veth pair whose ifindexes play pod A's and pod
//! B's host-side interfaces. Each case resets every map, writes the topology and its
//! verdicts by hand with the `enforcer-common` types, then runs its steps in order. A
//! step runs one program on one crafted frame and checks the TC action, the counter
//! that must have moved (exactly one, by one, on that hook; every other counter of both
//! hooks unchanged), the skb mark when it matters, and the events emitted.
//!
//! `BPF_CASE=<substring>` runs only the cases whose name contains it; the test fails if
//! no case ran.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use enforcer::dataplane::object::BPF_OBJECT;
use enforcer_common::{
    ACTION_ALLOW, ACTION_DENY, ANY_CELL, ANY_PEER, CONFIG_F_EVENT_ON_DENY, CT_F_CLOSING,
    CT_F_DEFERRED, CT_F_EGRESS_OK, CT_F_ESTABLISHED, CT_F_FIN_FORWARD, CT_F_FIN_REVERSE,
    CT_F_INGRESS_OK, CT_F_REPLIED, Config, CtValue, DIR_EGRESS, DIR_INGRESS, EVENT_KIND_DENY,
    EVENT_KIND_LOG, MARK_EGRESS_DEFERRED, NO_INDEX, PEER_F_LOCAL_ENDPOINT, PEER_F_SERVICE_VIP,
    PeerInfo, PendingKey, REASON_ALLOW_CONNTRACK, REASON_ALLOW_NDP, REASON_ALLOW_NON_IP,
    REASON_ALLOW_POLICY, REASON_DEFERRED, REASON_DENY_POLICY, REASON_FRAGMENT, REASON_MALFORMED,
    REASON_MAP_ERROR, REASON_NAMES, REASON_NO_ENDPOINT, REASON_NO_POLICY_LOADED, REASON_SPOOFED,
    REASON_UNSUPPORTED_L3, VERDICT_F_LOG, VERDICT_KIND_RULE, VERDICT_KIND_TIER_DEFAULT, Verdict,
    VerdictKey,
};
use enforcer_tests::bpf::{
    dataplane::{Dataplane, Hook, addr16, ct_key, endpoint, family, monotonic_ns},
    netns::NetNs,
    packet::{
        ACK, Ext, FIN, PROTO_GRE, PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP, PSH,
        RST, SYN, V4, arp, eth, icmp, sctp, tcp, truncated, udp, v6, v6_hops,
    },
    run_table,
};

// ---------------------------------------------------------------------------------
// Topology: pods A and B on this node, a Service VIP, an external /16, the world.
// ---------------------------------------------------------------------------------

const A4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const B4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 20);
const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 1);
const EXT4: Ipv4Addr = Ipv4Addr::new(198, 19, 1, 1);
const WORLD4: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 1);
const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x0a);
const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x14);
const EXT6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 1);
const LL6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x0a);
const SOLICITED6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 0x14);

const C_WORLD: u32 = 1;
const C_A: u32 = 2;
const C_B: u32 = 3;
const C_VIP: u32 = 4;
const C_EXT: u32 = 5;

const P_A: u32 = 10;
const P_B: u32 = 20;
const EP_ID_A: u32 = 100;
const EP_ID_B: u32 = 200;

const CELL_TCP80: u32 = 1;
const CELL_TCP443: u32 = 2;
const CELL_UDP53: u32 = 3;
const CELL_ICMP_ECHO: u32 = 4;
const CELL_ICMP_PORT_UNREACH: u32 = 5;
const CELL_TCP8080: u32 = 6;
const CELL_SCTP9000: u32 = 7;
const CELL_ICMPV6_ECHO: u32 = 8;
const CELL_TCP8000_8003: u32 = 9;
const CELL_GRE: u32 = 10;
const CELL_ESP: u32 = 11;

const PROTO_ESP: u8 = 50;

const KUBE_MARK: u32 = 0x4000;

/// Interfaces a step can run on.
#[derive(Clone, Copy, Debug)]
enum On {
    A,
    B,
    /// `lo`: exists, but no endpoint entry.
    Lo,
}

struct Ifaces {
    a: u32,
    b: u32,
}

impl Ifaces {
    fn index(&self, on: On) -> u32 {
        match on {
            On::A => self.a,
            On::B => self.b,
            On::Lo => 1,
        }
    }
}

/// Writes the topology into generation `g`: endpoints, peers, cells.
fn topology(dp: &mut Dataplane, ifs: &Ifaces, g: u8) {
    let gen32 = u32::from(g);
    dp.set_endpoint(gen32, ifs.a, endpoint(P_A, EP_ID_A, Some(A4), Some(A6)));
    dp.set_endpoint(gen32, ifs.b, endpoint(P_B, EP_ID_B, Some(B4), Some(B6)));
    let peer = |class, flags, ifindex| PeerInfo {
        class,
        flags,
        ifindex,
        host_class: 0,
    };
    dp.set_peer(g, IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0, peer(C_WORLD, 0, 0));
    dp.set_peer(g, IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0, peer(C_WORLD, 0, 0));
    dp.set_peer(g, A4.into(), 32, peer(C_A, PEER_F_LOCAL_ENDPOINT, ifs.a));
    dp.set_peer(g, A6.into(), 128, peer(C_A, PEER_F_LOCAL_ENDPOINT, ifs.a));
    dp.set_peer(g, B4.into(), 32, peer(C_B, PEER_F_LOCAL_ENDPOINT, ifs.b));
    dp.set_peer(g, B6.into(), 128, peer(C_B, PEER_F_LOCAL_ENDPOINT, ifs.b));
    dp.set_peer(g, VIP4.into(), 32, peer(C_VIP, PEER_F_SERVICE_VIP, 0));
    dp.set_peer(
        g,
        Ipv4Addr::new(198, 19, 0, 0).into(),
        16,
        peer(C_EXT, 0, 0),
    );
    dp.set_peer(
        g,
        Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 0).into(),
        64,
        peer(C_EXT, 0, 0),
    );
    dp.set_port(g, PROTO_TCP, 80, 16, CELL_TCP80);
    dp.set_port(g, PROTO_TCP, 443, 16, CELL_TCP443);
    dp.set_port(g, PROTO_TCP, 8080, 16, CELL_TCP8080);
    dp.set_port(g, PROTO_TCP, 8000, 14, CELL_TCP8000_8003);
    dp.set_port(g, PROTO_UDP, 53, 16, CELL_UDP53);
    dp.set_port(g, PROTO_SCTP, 9000, 16, CELL_SCTP9000);
    // ICMP echo request: type 8, any code (a /24: protocol + type).
    dp.set_port(g, PROTO_ICMP, 8 << 8, 8, CELL_ICMP_ECHO);
    dp.set_port(g, PROTO_ICMP, 3 << 8 | 3, 16, CELL_ICMP_PORT_UNREACH);
    dp.set_port(g, PROTO_ICMPV6, 128 << 8, 8, CELL_ICMPV6_ECHO);
}

// ---------------------------------------------------------------------------------
// Verdict helpers.
// ---------------------------------------------------------------------------------

fn vkey(g: u8, dir: u8, profile: u32, peer_class: u32, cell: u32) -> VerdictKey {
    VerdictKey {
        generation: g,
        dir,
        _pad: [0; 2],
        profile,
        peer_class,
        cell,
    }
}

fn verdict(action: u8) -> Verdict {
    Verdict {
        action,
        kind: if action == ACTION_ALLOW {
            VERDICT_KIND_RULE
        } else {
            VERDICT_KIND_TIER_DEFAULT
        },
        flags: 0,
        _pad: 0,
        policy: 1,
        rule: if action == ACTION_ALLOW { 0 } else { NO_INDEX },
        log_policy: NO_INDEX,
        log_rule: NO_INDEX,
    }
}

fn set(dp: &mut Dataplane, g: u8, dir: u8, profile: u32, peer: u32, cell: u32, action: u8) {
    dp.set_verdict(vkey(g, dir, profile, peer, cell), verdict(action));
}

/// Default deny for both profiles, both directions, in generation `g`.
fn default_deny(dp: &mut Dataplane, g: u8) {
    for profile in [P_A, P_B] {
        for dir in [DIR_INGRESS, DIR_EGRESS] {
            set(dp, g, dir, profile, ANY_PEER, ANY_CELL, ACTION_DENY);
        }
    }
}

fn config(active_gen: u32, live_gens: u32) -> Config {
    Config {
        active_gen,
        live_gens,
        flags: 0,
        epoch: 0,
        netns_cookie: 0,
    }
}

/// The usual setup: topology in both generations, generation 0 live and active,
/// default deny everywhere.
fn base(dp: &mut Dataplane, ifs: &Ifaces) {
    topology(dp, ifs, 0);
    topology(dp, ifs, 1);
    default_deny(dp, 0);
    default_deny(dp, 1);
    dp.set_config(config(0, 1));
}

// ---------------------------------------------------------------------------------
// Frames.
// ---------------------------------------------------------------------------------

fn tcp4(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
    V4::new(src, dst, PROTO_TCP).frame(&tcp(sport, dport, flags))
}

fn udp4(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    V4::new(src, dst, PROTO_UDP).frame(&udp(sport, dport))
}

fn icmp4(src: Ipv4Addr, dst: Ipv4Addr, kind: u8, code: u8, id: u16) -> Vec<u8> {
    V4::new(src, dst, PROTO_ICMP).frame(&icmp(kind, code, id))
}

fn tcp6(src: Ipv6Addr, sport: u16, dst: Ipv6Addr, dport: u16, flags: u8) -> Vec<u8> {
    v6(src, dst, &[], PROTO_TCP, &tcp(sport, dport, flags))
}

// ---------------------------------------------------------------------------------
// The table.
// ---------------------------------------------------------------------------------

/// What a step must observe.
struct Expect {
    pass: bool,
    reason: u32,
    /// The mark after the program, when it matters.
    mark: Option<u32>,
    /// Kinds of the events emitted, in order.
    events: Vec<u32>,
}

fn pass(reason: u32) -> Expect {
    Expect {
        pass: true,
        reason,
        mark: None,
        events: Vec::new(),
    }
}

fn dropped(reason: u32) -> Expect {
    Expect {
        pass: false,
        ..pass(reason)
    }
}

impl Expect {
    fn mark(mut self, mark: u32) -> Self {
        self.mark = Some(mark);
        self
    }

    fn events(mut self, kinds: &[u32]) -> Self {
        self.events = kinds.to_vec();
        self
    }
}

type Check = Box<dyn Fn(&mut Dataplane, &Ifaces) -> Result<(), String>>;

enum Step {
    Run {
        hook: Hook,
        on: On,
        frame: Vec<u8>,
        mark: u32,
        expect: Expect,
    },
    /// Write `ENF_CONFIG` (a generation switch).
    Config(Config),
    /// Inspect or modify the maps between packets.
    Check(&'static str, Check),
}

fn eg(on: On, frame: Vec<u8>, expect: Expect) -> Step {
    Step::Run {
        hook: Hook::PodEgress,
        on,
        frame,
        mark: 0,
        expect,
    }
}

fn ig(on: On, frame: Vec<u8>, expect: Expect) -> Step {
    Step::Run {
        hook: Hook::PodIngress,
        on,
        frame,
        mark: 0,
        expect,
    }
}

fn with_mark(step: Step, m: u32) -> Step {
    match step {
        Step::Run {
            hook,
            on,
            frame,
            expect,
            ..
        } => Step::Run {
            hook,
            on,
            frame,
            mark: m,
            expect,
        },
        other => other,
    }
}

fn check(
    name: &'static str,
    f: impl Fn(&mut Dataplane, &Ifaces) -> Result<(), String> + 'static,
) -> Step {
    Step::Check(name, Box::new(f))
}

/// The conntrack entry of a tuple must have exactly `flags` (and generation `g`).
fn ct_is(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, proto: u8, flags: u32, g: u32) -> Step {
    check("conntrack entry", move |dp, _| {
        let key = ct_key(src, dst, sport, dport, proto);
        match dp.conntrack_entry(&key) {
            Some(v) if v.ct_flags() == flags && v.generation == g => Ok(()),
            Some(v) => Err(format!(
                "ct {src}:{sport} -> {dst}:{dport}/{proto}: flags {:#x} gen {} (want {flags:#x} gen {g})",
                v.flags, v.generation
            )),
            None => Err(format!(
                "ct {src}:{sport} -> {dst}:{dport}/{proto}: no entry (want {flags:#x})"
            )),
        }
    })
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

struct Case {
    name: &'static str,
    setup: fn(&mut Dataplane, &Ifaces),
    steps: Vec<Step>,
}

#[allow(clippy::too_many_lines, reason = "the table")]
fn cases() -> Vec<Case> {
    let a4: IpAddr = A4.into();
    let b4: IpAddr = B4.into();
    let ext4: IpAddr = EXT4.into();
    let vip4: IpAddr = VIP4.into();
    vec![
        Case {
            name: "arp passes, even with no policy loaded",
            setup: |_, _| {},
            steps: vec![
                eg(On::A, arp(), pass(REASON_ALLOW_NON_IP)),
                ig(On::B, arp(), pass(REASON_ALLOW_NON_IP)),
                eg(On::Lo, arp(), pass(REASON_ALLOW_NON_IP)),
            ],
        },
        Case {
            name: "no config: ip dropped on both hooks",
            setup: |dp, ifs| {
                topology(dp, ifs, 0);
                default_deny(dp, 0);
                set(dp, 0, DIR_EGRESS, P_A, ANY_PEER, ANY_CELL, ACTION_ALLOW);
                // Config stays all zeros.
            },
            steps: vec![
                eg(
                    On::A,
                    tcp4(A4, 40000, EXT4, 80, SYN),
                    dropped(REASON_NO_POLICY_LOADED),
                ),
                ig(
                    On::A,
                    tcp4(EXT4, 80, A4, 40000, SYN | ACK),
                    dropped(REASON_NO_POLICY_LOADED),
                ),
                eg(
                    On::A,
                    tcp6(A6, 40000, EXT6, 80, SYN),
                    dropped(REASON_NO_POLICY_LOADED),
                ),
            ],
        },
        Case {
            name: "interface without endpoint entry drops",
            setup: base,
            steps: vec![
                eg(
                    On::Lo,
                    tcp4(A4, 40000, EXT4, 80, SYN),
                    dropped(REASON_NO_ENDPOINT),
                ),
                ig(
                    On::Lo,
                    tcp4(EXT4, 80, A4, 40000, SYN),
                    dropped(REASON_NO_ENDPOINT),
                ),
            ],
        },
        Case {
            name: "endpoint only in the inactive generation drops",
            setup: |dp, ifs| {
                topology(dp, ifs, 1);
                default_deny(dp, 1);
                dp.set_config(config(0, 1));
            },
            steps: vec![eg(
                On::A,
                tcp4(A4, 40000, EXT4, 80, SYN),
                dropped(REASON_NO_ENDPOINT),
            )],
        },
        Case {
            name: "unsupported ethertypes drop",
            setup: base,
            steps: vec![
                eg(On::A, eth(0x88cc, &[0; 46]), dropped(REASON_UNSUPPORTED_L3)),
                ig(On::A, eth(0x8100, &[0; 46]), dropped(REASON_UNSUPPORTED_L3)),
                eg(On::A, eth(0x8847, &[0; 46]), dropped(REASON_UNSUPPORTED_L3)),
            ],
        },
        Case {
            name: "allowed tcp syn to an external peer records both legs",
            setup: |dp, ifs| {
                base(dp, ifs);
                set(dp, 0, DIR_EGRESS, P_A, C_EXT, CELL_TCP80, ACTION_ALLOW);
            },
            steps: vec![
                eg(
                    On::A,
                    tcp4(A4, 40000, EXT4, 80, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                ct_is(a4, ext4, 40000, 80, PROTO_TCP, CT_F_ESTABLISHED, 0),
            ],
        },
        Case {
            name: "denied tcp syn counts deny_policy and records nothing",
            setup: |dp, ifs| {
                base(dp, ifs);
                set(dp, 0, DIR_EGRESS, P_A, C_EXT, CELL_TCP80, ACTION_ALLOW);
            },
            steps: vec![
                eg(
                    On::A,
                    tcp4(A4, 40000, EXT4, 443, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
                ct_absent(a4, ext4, 40000, 443, PROTO_TCP),
                eg(
                    On::A,
                    tcp4(A4, 40000, WORLD4, 80, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
            ],
        },
        Case {
            name: "conntrack: replies pass, unrelated and reverse syns are judged",
            setup: |dp, ifs| {
                base(dp, ifs);
                set(dp, 0, DIR_EGRESS, P_A, C_EXT, CELL_TCP80, ACTION_ALLOW);
            },
            steps: vec![
                eg(
                    On::A,
                    tcp4(A4, 40000, EXT4, 80, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                ig(
                    On::A,
                    tcp4(EXT4, 80, A4, 40000, SYN | ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                eg(
                    On::A,
                    tcp4(A4, 40000, EXT4, 80, ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                ig(
                    On::A,
                    tcp4(EXT4, 80, A4, 40000, PSH | ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                // A bare SYN on the reversed tuple opens a connection: A's ingress denies.
                ig(
                    On::A,
                    tcp4(EXT4, 80, A4, 40000, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
                // Unrelated flows from the same peer.
                ig(
                    On::A,
                    tcp4(EXT4, 5555, A4, 40000, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
                ig(
                    On::A,
                    tcp4(EXT4, 80, A4, 40001, ACK),
                    dropped(REASON_DENY_POLICY),
                ),
                // The flow is still established.
                ig(
                    On::A,
                    tcp4(EXT4, 80, A4, 40000, ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                // A FIN from one side half-closes: the entry keeps the established
                // timeout (issue 9 item 17); a FIN from each side marks it closing.
                // It keeps passing until it expires.
                eg(
                    On::A,
                    tcp4(A4, 40000, EXT4, 80, FIN | ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                ct_is(
                    a4,
                    ext4,
                    40000,
                    80,
                    PROTO_TCP,
                    CT_F_ESTABLISHED | CT_F_REPLIED | CT_F_FIN_FORWARD,
                    0,
                ),
                ig(
                    On::A,
                    tcp4(EXT4, 80, A4, 40000, FIN | ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                ct_is(
                    a4,
                    ext4,
                    40000,
                    80,
                    PROTO_TCP,
                    CT_F_ESTABLISHED
                        | CT_F_REPLIED
                        | CT_F_FIN_FORWARD
                        | CT_F_FIN_REVERSE
                        | CT_F_CLOSING,
                    0,
                ),
                eg(
                    On::A,
                    tcp4(A4, 40000, EXT4, 80, ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
            ],
        },
        Case {
            name: "re-opening syn is judged again; a denied one forgets the old entry",
            setup: |dp, ifs| {
                base(dp, ifs);
                set(dp, 0, DIR_EGRESS, P_A, C_EXT, CELL_TCP80, ACTION_ALLOW);
            },
            steps: vec![
                eg(
                    On::A,
                    tcp4(A4, 40000, EXT4, 80, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                eg(
                    On::A,
                    tcp4(A4, 40000, EXT4, 80, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                check("switch the allow off", |dp, _| {
                    set(dp, 0, DIR_EGRESS, P_A, C_EXT, CELL_TCP80, ACTION_DENY);
                    Ok(())
                }),
                eg(
                    On::A,
                    tcp4(A4, 40000, EXT4, 80, ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                eg(
                    On::A,
                    tcp4(A4, 40000, EXT4, 80, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
                ct_absent(a4, ext4, 40000, 80, PROTO_TCP),
                eg(
                    On::A,
                    tcp4(A4, 40000, EXT4, 80, ACK),
                    dropped(REASON_DENY_POLICY),
                ),
            ],
        },
        Case {
            name: "expired conntrack entries are ignored",
            setup: |dp, ifs| {
                base(dp, ifs);
                let now = monotonic_ns();
                let value = |age_s: u64, flags| CtValue {
                    last_seen_ns: now - age_s * 1_000_000_000,
                    flags,
                    generation: 0,
                };
                let a: IpAddr = A4.into();
                let e: IpAddr = EXT4.into();
                // UDP: 60 s. TCP closing: 30 s. TCP established: 1 h.
                dp.set_conntrack(
                    ct_key(a, e, 5000, 53, PROTO_UDP),
                    value(61, CT_F_ESTABLISHED),
                );
                dp.set_conntrack(
                    ct_key(a, e, 5001, 53, PROTO_UDP),
                    value(50, CT_F_ESTABLISHED),
                );
                dp.set_conntrack(
                    ct_key(a, e, 40000, 80, PROTO_TCP),
                    value(31, CT_F_ESTABLISHED | CT_F_REPLIED | CT_F_CLOSING),
                );
                // Established: both legs approved and the peer answered.
                dp.set_conntrack(
                    ct_key(a, e, 40001, 80, PROTO_TCP),
                    value(31, CT_F_ESTABLISHED | CT_F_REPLIED),
                );
                // Handshake (one leg only): 20 s.
                dp.set_conntrack(
                    ct_key(a, e, 40002, 80, PROTO_TCP),
                    value(21, CT_F_EGRESS_OK),
                );
            },
            steps: vec![
                ig(On::A, udp4(EXT4, 53, A4, 5000), dropped(REASON_DENY_POLICY)),
                ig(
                    On::A,
                    udp4(EXT4, 53, A4, 5001),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                ig(
                    On::A,
                    tcp4(EXT4, 80, A4, 40000, ACK),
                    dropped(REASON_DENY_POLICY),
                ),
                ig(
                    On::A,
                    tcp4(EXT4, 80, A4, 40001, ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                eg(
                    On::A,
                    tcp4(A4, 40002, EXT4, 80, ACK),
                    dropped(REASON_DENY_POLICY),
                ),
            ],
        },
        Case {
            name: "anti-spoofing on pod egress only",
            setup: |dp, ifs| {
                base(dp, ifs);
                set(dp, 0, DIR_EGRESS, P_A, ANY_PEER, ANY_CELL, ACTION_ALLOW);
                set(dp, 0, DIR_INGRESS, P_A, ANY_PEER, ANY_CELL, ACTION_ALLOW);
            },
            steps: vec![
                eg(
                    On::A,
                    tcp4(Ipv4Addr::new(198, 18, 0, 99), 1, EXT4, 80, SYN),
                    dropped(REASON_SPOOFED),
                ),
                // B's address is not A's.
                eg(On::A, tcp4(B4, 1, EXT4, 80, SYN), dropped(REASON_SPOOFED)),
                eg(On::A, tcp6(B6, 1, EXT6, 80, SYN), dropped(REASON_SPOOFED)),
                eg(On::A, tcp4(A4, 1, EXT4, 80, SYN), pass(REASON_ALLOW_POLICY)),
                eg(On::A, tcp6(A6, 1, EXT6, 80, SYN), pass(REASON_ALLOW_POLICY)),
                // Link-local: ICMPv6 only.
                eg(
                    On::A,
                    v6(LL6, EXT6, &[], PROTO_ICMPV6, &icmp(128, 0, 7)),
                    pass(REASON_ALLOW_POLICY),
                ),
                eg(On::A, tcp6(LL6, 1, EXT6, 80, SYN), dropped(REASON_SPOOFED)),
                // No anti-spoofing towards the pod.
                ig(
                    On::A,
                    tcp4(Ipv4Addr::new(198, 18, 0, 99), 1, A4, 80, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
            ],
        },
        Case {
            name: "endpoint without an ipv6 address cannot send ipv6",
            setup: |dp, ifs| {
                base(dp, ifs);
                dp.set_endpoint(0, ifs.a, endpoint(P_A, EP_ID_A, Some(A4), None));
                set(dp, 0, DIR_EGRESS, P_A, ANY_PEER, ANY_CELL, ACTION_ALLOW);
            },
            steps: vec![
                eg(On::A, tcp6(A6, 1, EXT6, 80, SYN), dropped(REASON_SPOOFED)),
                eg(On::A, tcp4(A4, 1, EXT4, 80, SYN), pass(REASON_ALLOW_POLICY)),
            ],
        },
        Case {
            name: "ipv4 options: the l4 offset comes from ihl",
            setup: |dp, ifs| {
                base(dp, ifs);
                set(dp, 0, DIR_EGRESS, P_A, C_EXT, CELL_TCP80, ACTION_ALLOW);
            },
            steps: vec![
                // NOP NOP NOP EOL: read at a constant 20 these are ports 257 -> 256.
                eg(
                    On::A,
                    V4::new(A4, EXT4, PROTO_TCP)
                        .options(&[1, 1, 1, 0])
                        .frame(&tcp(40000, 80, SYN)),
                    pass(REASON_ALLOW_POLICY),
                ),
                ct_is(a4, ext4, 40000, 80, PROTO_TCP, CT_F_ESTABLISHED, 0),
                // Forty bytes of options (IHL 15).
                eg(
                    On::A,
                    V4::new(A4, EXT4, PROTO_TCP)
                        .options(&[1; 40])
                        .frame(&tcp(40001, 80, SYN)),
                    pass(REASON_ALLOW_POLICY),
                ),
                eg(
                    On::A,
                    V4::new(A4, EXT4, PROTO_TCP)
                        .options(&[1, 1, 1, 0])
                        .frame(&tcp(40002, 81, SYN)),
                    dropped(REASON_DENY_POLICY),
                ),
                // The reply, with options too, finds the flow.
                ig(
                    On::A,
                    V4::new(EXT4, A4, PROTO_TCP)
                        .options(&[1, 1, 1, 0])
                        .frame(&tcp(80, 40000, SYN | ACK)),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
            ],
        },
        Case {
            name: "truncated or inconsistent headers drop at every layer",
            setup: base,
            steps: {
                let tcp_syn = tcp4(A4, 40000, EXT4, 80, SYN);
                let opts = V4::new(A4, EXT4, PROTO_GRE).options(&[1; 8]).frame(&[0; 4]);
                let mut bad_version = tcp_syn.clone();
                bad_version[14] = 0x65;
                let mut bad_ihl = tcp_syn.clone();
                bad_ihl[14] = 0x44;
                let mut bad_doff = tcp_syn.clone();
                bad_doff[14 + 20 + 12] = 0x40;
                let ext_chain = v6(
                    A6,
                    EXT6,
                    &[Ext::HopByHop, Ext::DstOpts],
                    PROTO_TCP,
                    &tcp(1, 80, SYN),
                );
                let mut frames = vec![
                    // `BPF_PROG_TEST_RUN` (6.18) refuses IPv4 frames shorter than a
                    // 20-byte header and IPv6 frames shorter than 40, so a cut fixed
                    // header cannot be run; everything after it can.
                    ("ipv4 options cut", truncated(opts, 14 + 20 + 7)),
                    ("ipv4 version not 4", bad_version),
                    ("ipv4 ihl below 5", bad_ihl),
                    ("tcp header cut", truncated(tcp_syn.clone(), 14 + 20 + 19)),
                    ("tcp data offset below 5", bad_doff),
                    (
                        "udp header cut",
                        truncated(udp4(A4, 1, EXT4, 53), 14 + 20 + 7),
                    ),
                    (
                        "sctp header cut",
                        truncated(
                            V4::new(A4, EXT4, PROTO_SCTP).frame(&sctp(1, 9000)),
                            14 + 20 + 11,
                        ),
                    ),
                    (
                        "icmp header cut",
                        truncated(icmp4(A4, EXT4, 8, 0, 1), 14 + 20 + 7),
                    ),
                    (
                        "ipv6 tcp cut",
                        truncated(tcp6(A6, 1, EXT6, 80, SYN), 14 + 40 + 10),
                    ),
                    (
                        "ipv6 extension header cut",
                        truncated(ext_chain.clone(), 14 + 40 + 17),
                    ),
                    (
                        "ipv6 tcp after extensions cut",
                        truncated(ext_chain, 14 + 40 + 32 + 19),
                    ),
                    (
                        "icmpv6 echo id cut",
                        truncated(
                            v6(A6, EXT6, &[], PROTO_ICMPV6, &icmp(128, 0, 1)),
                            14 + 40 + 5,
                        ),
                    ),
                    (
                        "too many ipv6 extension headers",
                        v6(A6, EXT6, &[Ext::DstOpts; 7], PROTO_TCP, &tcp(1, 80, SYN)),
                    ),
                ];
                let mut steps = Vec::new();
                for (_, f) in frames.drain(..) {
                    steps.push(eg(On::A, f.clone(), dropped(REASON_MALFORMED)));
                    steps.push(ig(On::A, f, dropped(REASON_MALFORMED)));
                }
                steps
            },
        },
        Case {
            name: "fragments: non-first dropped, first fragments judged",
            setup: |dp, ifs| {
                base(dp, ifs);
                set(dp, 0, DIR_EGRESS, P_A, C_EXT, CELL_TCP80, ACTION_ALLOW);
            },
            steps: vec![
                eg(
                    On::A,
                    V4::new(A4, EXT4, PROTO_TCP)
                        .frag(true, 0)
                        .frame(&tcp(40000, 80, SYN)),
                    pass(REASON_ALLOW_POLICY),
                ),
                eg(
                    On::A,
                    V4::new(A4, EXT4, PROTO_TCP).frag(true, 3).frame(&[0; 24]),
                    dropped(REASON_FRAGMENT),
                ),
                eg(
                    On::A,
                    V4::new(A4, EXT4, PROTO_TCP)
                        .frag(false, 185)
                        .frame(&[0; 24]),
                    dropped(REASON_FRAGMENT),
                ),
                ig(
                    On::A,
                    V4::new(EXT4, A4, PROTO_UDP).frag(false, 1).frame(&[0; 8]),
                    dropped(REASON_FRAGMENT),
                ),
                eg(
                    On::A,
                    v6(
                        A6,
                        EXT6,
                        &[Ext::Fragment {
                            offset_units: 0,
                            more: true,
                        }],
                        PROTO_TCP,
                        &tcp(40000, 80, SYN),
                    ),
                    pass(REASON_ALLOW_POLICY),
                ),
                eg(
                    On::A,
                    v6(
                        A6,
                        EXT6,
                        &[Ext::Fragment {
                            offset_units: 10,
                            more: false,
                        }],
                        PROTO_TCP,
                        &[0; 16],
                    ),
                    dropped(REASON_FRAGMENT),
                ),
                ig(
                    On::A,
                    v6(
                        EXT6,
                        A6,
                        &[
                            Ext::HopByHop,
                            Ext::Fragment {
                                offset_units: 1,
                                more: true,
                            },
                        ],
                        PROTO_UDP,
                        &[0; 16],
                    ),
                    dropped(REASON_FRAGMENT),
                ),
            ],
        },
        Case {
            name: "ipv6 tcp, with and without extension headers",
            setup: |dp, ifs| {
                base(dp, ifs);
                set(dp, 0, DIR_EGRESS, P_A, C_EXT, CELL_TCP80, ACTION_ALLOW);
            },
            steps: vec![
                eg(
                    On::A,
                    tcp6(A6, 40000, EXT6, 80, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                ct_is(
                    A6.into(),
                    EXT6.into(),
                    40000,
                    80,
                    PROTO_TCP,
                    CT_F_ESTABLISHED,
                    0,
                ),
                ig(
                    On::A,
                    tcp6(EXT6, 80, A6, 40000, SYN | ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                eg(
                    On::A,
                    tcp6(A6, 40000, EXT6, 443, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
                eg(
                    On::A,
                    v6(
                        A6,
                        EXT6,
                        &[Ext::HopByHop, Ext::Routing, Ext::DstOpts],
                        PROTO_TCP,
                        &tcp(40001, 80, SYN),
                    ),
                    pass(REASON_ALLOW_POLICY),
                ),
                ig(
                    On::A,
                    v6(
                        EXT6,
                        A6,
                        &[Ext::DstOpts],
                        PROTO_TCP,
                        &tcp(80, 40001, SYN | ACK),
                    ),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                // The port behind the extension headers decides: 443 is denied.
                eg(
                    On::A,
                    v6(
                        A6,
                        EXT6,
                        &[Ext::HopByHop, Ext::DstOpts],
                        PROTO_TCP,
                        &tcp(40002, 443, SYN),
                    ),
                    dropped(REASON_DENY_POLICY),
                ),
                // A world address (no /64 match) is another class.
                eg(
                    On::A,
                    tcp6(
                        A6,
                        40003,
                        Ipv6Addr::new(0x2001, 2, 0, 2, 0, 0, 0, 1),
                        80,
                        SYN,
                    ),
                    dropped(REASON_DENY_POLICY),
                ),
            ],
        },
        Case {
            name: "icmp: type and code make the cell, echo id the tuple",
            setup: |dp, ifs| {
                base(dp, ifs);
                set(dp, 0, DIR_EGRESS, P_A, C_EXT, CELL_ICMP_ECHO, ACTION_ALLOW);
                set(
                    dp,
                    0,
                    DIR_EGRESS,
                    P_A,
                    C_EXT,
                    CELL_ICMPV6_ECHO,
                    ACTION_ALLOW,
                );
            },
            steps: vec![
                eg(On::A, icmp4(A4, EXT4, 8, 0, 77), pass(REASON_ALLOW_POLICY)),
                ct_is(a4, ext4, 77, 0, PROTO_ICMP, CT_F_ESTABLISHED, 0),
                ig(
                    On::A,
                    icmp4(EXT4, A4, 0, 0, 77),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                // Another echo id is another flow: the reply is not one.
                ig(
                    On::A,
                    icmp4(EXT4, A4, 0, 0, 78),
                    dropped(REASON_DENY_POLICY),
                ),
                // The echo cell is type-only: any code.
                eg(On::A, icmp4(A4, EXT4, 8, 1, 79), pass(REASON_ALLOW_POLICY)),
                // Port unreachable (3/3) is its own, denied cell.
                eg(On::A, icmp4(A4, EXT4, 3, 3, 0), dropped(REASON_DENY_POLICY)),
                // ICMPv6 echo.
                eg(
                    On::A,
                    v6(A6, EXT6, &[], PROTO_ICMPV6, &icmp(128, 0, 5)),
                    pass(REASON_ALLOW_POLICY),
                ),
                ig(
                    On::A,
                    v6(EXT6, A6, &[], PROTO_ICMPV6, &icmp(129, 0, 5)),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                eg(
                    On::A,
                    v6(A6, EXT6, &[], PROTO_ICMPV6, &icmp(1, 4, 0)),
                    dropped(REASON_DENY_POLICY),
                ),
            ],
        },
        Case {
            name: "icmp port-unreachable cell is exact type/code",
            setup: |dp, ifs| {
                base(dp, ifs);
                set(
                    dp,
                    0,
                    DIR_EGRESS,
                    P_A,
                    ANY_PEER,
                    CELL_ICMP_PORT_UNREACH,
                    ACTION_ALLOW,
                );
            },
            steps: vec![
                eg(On::A, icmp4(A4, EXT4, 3, 3, 0), pass(REASON_ALLOW_POLICY)),
                eg(
                    On::A,
                    icmp4(A4, WORLD4, 3, 1, 0),
                    dropped(REASON_DENY_POLICY),
                ),
                eg(
                    On::A,
                    icmp4(A4, WORLD4, 8, 0, 1),
                    dropped(REASON_DENY_POLICY),
                ),
                eg(On::A, icmp4(A4, WORLD4, 3, 3, 0), pass(REASON_ALLOW_POLICY)),
                // Non-echo ICMP uses ports (type << 8 | code) twice: another type never
                // rides on the entry (issue 9 item 17); it is judged, and denied.
                ct_is(a4, ext4, 0x0303, 0x0303, PROTO_ICMP, CT_F_ESTABLISHED, 0),
                eg(On::A, icmp4(A4, EXT4, 3, 1, 0), dropped(REASON_DENY_POLICY)),
                eg(
                    On::A,
                    icmp4(A4, EXT4, 3, 3, 0),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
            ],
        },
        Case {
            name: "udp, sctp and port ranges",
            setup: |dp, ifs| {
                base(dp, ifs);
                set(dp, 0, DIR_EGRESS, P_A, ANY_PEER, CELL_UDP53, ACTION_ALLOW);
                set(
                    dp,
                    0,
                    DIR_EGRESS,
                    P_A,
                    ANY_PEER,
                    CELL_SCTP9000,
                    ACTION_ALLOW,
                );
                set(
                    dp,
                    0,
                    DIR_EGRESS,
                    P_A,
                    ANY_PEER,
                    CELL_TCP8000_8003,
                    ACTION_ALLOW,
                );
            },
            steps: vec![
                eg(On::A, udp4(A4, 5353, WORLD4, 53), pass(REASON_ALLOW_POLICY)),
                ig(
                    On::A,
                    udp4(WORLD4, 53, A4, 5353),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                eg(
                    On::A,
                    udp4(A4, 5353, WORLD4, 54),
                    dropped(REASON_DENY_POLICY),
                ),
                eg(
                    On::A,
                    V4::new(A4, EXT4, PROTO_SCTP).frame(&sctp(7000, 9000)),
                    pass(REASON_ALLOW_POLICY),
                ),
                eg(
                    On::A,
                    V4::new(A4, EXT4, PROTO_SCTP).frame(&sctp(7000, 9001)),
                    dropped(REASON_DENY_POLICY),
                ),
                eg(
                    On::A,
                    tcp4(A4, 1, EXT4, 8000, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                eg(
                    On::A,
                    tcp4(A4, 1, EXT4, 8003, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                eg(
                    On::A,
                    tcp4(A4, 1, EXT4, 8004, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
                eg(
                    On::A,
                    tcp4(A4, 1, EXT4, 7999, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
                // TCP 53 is not UDP 53.
                eg(
                    On::A,
                    tcp4(A4, 1, EXT4, 53, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
            ],
        },
        Case {
            name: "protocols without ports: one cell per protocol, ipv6 walk stops at esp",
            setup: |dp, ifs| {
                base(dp, ifs);
                for g in [0, 1] {
                    dp.set_port(g, PROTO_GRE, 0, 0, CELL_GRE);
                    dp.set_port(g, PROTO_ESP, 0, 0, CELL_ESP);
                }
                set(dp, 0, DIR_EGRESS, P_A, C_EXT, CELL_GRE, ACTION_ALLOW);
                set(dp, 0, DIR_EGRESS, P_A, C_EXT, CELL_ESP, ACTION_ALLOW);
            },
            steps: vec![
                eg(
                    On::A,
                    V4::new(A4, EXT4, PROTO_GRE).frame(&[0; 8]),
                    pass(REASON_ALLOW_POLICY),
                ),
                ct_is(a4, ext4, 0, 0, PROTO_GRE, CT_F_ESTABLISHED, 0),
                ig(
                    On::A,
                    V4::new(EXT4, A4, PROTO_GRE).frame(&[0; 8]),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                eg(
                    On::A,
                    V4::new(A4, WORLD4, PROTO_GRE).frame(&[0; 8]),
                    dropped(REASON_DENY_POLICY),
                ),
                eg(
                    On::A,
                    v6(A6, EXT6, &[Ext::DstOpts], PROTO_ESP, &[0; 16]),
                    pass(REASON_ALLOW_POLICY),
                ),
                // An unlisted protocol is CELL_UNLISTED: the default (deny).
                eg(
                    On::A,
                    V4::new(A4, EXT4, 103).frame(&[0; 8]),
                    dropped(REASON_DENY_POLICY),
                ),
            ],
        },
        Case {
            name: "neighbor discovery passes, even with no policy loaded",
            setup: |_, _| {},
            steps: vec![
                eg(
                    On::A,
                    v6_hops(LL6, SOLICITED6, 255, &[], PROTO_ICMPV6, &icmp(135, 0, 0)),
                    pass(REASON_ALLOW_NDP),
                ),
                eg(
                    On::A,
                    v6_hops(
                        Ipv6Addr::UNSPECIFIED,
                        SOLICITED6,
                        255,
                        &[],
                        PROTO_ICMPV6,
                        &icmp(135, 0, 0),
                    ),
                    pass(REASON_ALLOW_NDP),
                ),
                ig(
                    On::A,
                    v6_hops(LL6, A6, 255, &[], PROTO_ICMPV6, &icmp(136, 0, 0)),
                    pass(REASON_ALLOW_NDP),
                ),
                ig(
                    On::A,
                    v6_hops(LL6, A6, 255, &[], PROTO_ICMPV6, &icmp(134, 0, 0)),
                    pass(REASON_ALLOW_NDP),
                ),
                eg(
                    On::A,
                    v6_hops(LL6, A6, 255, &[], PROTO_ICMPV6, &icmp(133, 0, 0)),
                    pass(REASON_ALLOW_NDP),
                ),
                // Echo is not neighbor discovery.
                eg(
                    On::A,
                    v6(LL6, EXT6, &[], PROTO_ICMPV6, &icmp(128, 0, 0)),
                    dropped(REASON_NO_POLICY_LOADED),
                ),
            ],
        },
        Case {
            name: "verdict precedence: exact, peer-wide, cell-wide, default (allow-leaning)",
            setup: |dp, ifs| {
                base(dp, ifs);
                // Each lookup step disagrees with the step after it.
                set(dp, 0, DIR_EGRESS, P_A, C_EXT, CELL_TCP80, ACTION_ALLOW);
                set(dp, 0, DIR_EGRESS, P_A, C_EXT, ANY_CELL, ACTION_DENY);
                set(dp, 0, DIR_EGRESS, P_A, ANY_PEER, CELL_TCP443, ACTION_ALLOW);
                set(dp, 0, DIR_EGRESS, P_A, ANY_PEER, CELL_TCP80, ACTION_DENY);
                // Default stays deny.
            },
            steps: vec![
                eg(On::A, tcp4(A4, 1, EXT4, 80, SYN), pass(REASON_ALLOW_POLICY)),
                eg(
                    On::A,
                    tcp4(A4, 2, EXT4, 443, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
                eg(
                    On::A,
                    tcp4(A4, 3, WORLD4, 443, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                eg(
                    On::A,
                    tcp4(A4, 4, WORLD4, 80, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
                eg(On::A, udp4(A4, 5, WORLD4, 53), dropped(REASON_DENY_POLICY)),
            ],
        },
        Case {
            name: "verdict precedence: exact, peer-wide, cell-wide, default (deny-leaning)",
            setup: |dp, ifs| {
                base(dp, ifs);
                set(dp, 0, DIR_EGRESS, P_A, C_EXT, CELL_TCP80, ACTION_DENY);
                set(dp, 0, DIR_EGRESS, P_A, C_EXT, ANY_CELL, ACTION_ALLOW);
                set(dp, 0, DIR_EGRESS, P_A, ANY_PEER, CELL_TCP443, ACTION_DENY);
                set(dp, 0, DIR_EGRESS, P_A, ANY_PEER, ANY_CELL, ACTION_ALLOW);
            },
            steps: vec![
                eg(
                    On::A,
                    tcp4(A4, 1, EXT4, 80, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
                eg(
                    On::A,
                    tcp4(A4, 2, EXT4, 443, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                eg(
                    On::A,
                    tcp4(A4, 3, WORLD4, 443, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
                eg(On::A, udp4(A4, 5, WORLD4, 53), pass(REASON_ALLOW_POLICY)),
            ],
        },
        Case {
            name: "no verdict or no peer entry fails closed as map error",
            setup: |dp, ifs| {
                topology(dp, ifs, 0);
                // Generation 1: endpoints only (no /0 peer entry).
                dp.set_endpoint(1, ifs.a, endpoint(P_A, EP_ID_A, Some(A4), Some(A6)));
                set(dp, 1, DIR_EGRESS, P_A, ANY_PEER, ANY_CELL, ACTION_ALLOW);
                dp.set_config(config(0, 1));
            },
            steps: vec![
                eg(On::A, tcp4(A4, 1, EXT4, 80, SYN), dropped(REASON_MAP_ERROR)),
                ig(On::A, tcp4(EXT4, 80, A4, 1, SYN), dropped(REASON_MAP_ERROR)),
                Step::Config(config(1, 2)),
                eg(On::A, tcp4(A4, 1, EXT4, 80, SYN), dropped(REASON_MAP_ERROR)),
                // A broken config (active generation out of range) too.
                Step::Config(config(7, 1)),
                eg(On::A, tcp4(A4, 1, EXT4, 80, SYN), dropped(REASON_MAP_ERROR)),
            ],
        },
        Case {
            name: "pod to pod on one node: both legs judged, replies pass",
            setup: |dp, ifs| {
                base(dp, ifs);
                set(dp, 0, DIR_EGRESS, P_A, C_B, CELL_TCP8080, ACTION_ALLOW);
                set(dp, 0, DIR_INGRESS, P_B, C_A, CELL_TCP8080, ACTION_ALLOW);
            },
            steps: vec![
                eg(
                    On::A,
                    tcp4(A4, 40000, B4, 8080, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                ct_is(a4, b4, 40000, 8080, PROTO_TCP, CT_F_EGRESS_OK, 0),
                // Without B's approval the reply does not pass B's egress yet.
                eg(
                    On::B,
                    tcp4(B4, 8080, A4, 40000, SYN | ACK),
                    dropped(REASON_DENY_POLICY),
                ),
                ig(
                    On::B,
                    tcp4(A4, 40000, B4, 8080, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                ct_is(a4, b4, 40000, 8080, PROTO_TCP, CT_F_ESTABLISHED, 0),
                eg(
                    On::B,
                    tcp4(B4, 8080, A4, 40000, SYN | ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                ig(
                    On::A,
                    tcp4(B4, 8080, A4, 40000, SYN | ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                eg(
                    On::A,
                    tcp4(A4, 40000, B4, 8080, ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                ig(
                    On::B,
                    tcp4(A4, 40000, B4, 8080, ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                // The other way round is another policy question: denied.
                eg(
                    On::B,
                    tcp4(B4, 40000, A4, 8080, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
            ],
        },
        Case {
            name: "pod to pod on one node: the destination's ingress denies",
            setup: |dp, ifs| {
                base(dp, ifs);
                set(dp, 0, DIR_EGRESS, P_A, C_B, CELL_TCP8080, ACTION_ALLOW);
            },
            steps: vec![
                eg(
                    On::A,
                    tcp4(A4, 40000, B4, 8080, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                ig(
                    On::B,
                    tcp4(A4, 40000, B4, 8080, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
                ct_absent(a4, b4, 40000, 8080, PROTO_TCP),
                eg(
                    On::B,
                    tcp4(B4, 8080, A4, 40000, SYN | ACK),
                    dropped(REASON_DENY_POLICY),
                ),
            ],
        },
        Case {
            name: "service flow: deferred egress approved at the backend",
            setup: |dp, ifs| {
                base(dp, ifs);
                // A may reach B:8080 (the translated destination); nothing names the VIP.
                set(dp, 0, DIR_EGRESS, P_A, C_B, CELL_TCP8080, ACTION_ALLOW);
                set(dp, 0, DIR_INGRESS, P_B, C_A, CELL_TCP8080, ACTION_ALLOW);
            },
            steps: vec![
                with_mark(
                    eg(
                        On::A,
                        tcp4(A4, 40000, VIP4, 80, SYN),
                        pass(REASON_DEFERRED).mark(MARK_EGRESS_DEFERRED | KUBE_MARK),
                    ),
                    KUBE_MARK,
                ),
                // Nothing in conntrack before a verdict (issue 9 item 15).
                ct_absent(a4, vip4, 40000, 80, PROTO_TCP),
                check("pending entry", move |dp, _| {
                    let key = PendingKey {
                        client: addr16(a4),
                        sport: 40000,
                        proto: PROTO_TCP,
                        family: family(a4),
                    };
                    let v = dp
                        .pending
                        .get(&key, 0)
                        .map_err(|e| format!("no pending entry: {e}"))?;
                    if v.vip == addr16(vip4) && v.vport == 80 {
                        Ok(())
                    } else {
                        Err(format!("pending entry {v:?}"))
                    }
                }),
                // After DNAT (VIP:80 -> B:8080), at B's ingress, still marked.
                with_mark(
                    ig(
                        On::B,
                        tcp4(A4, 40000, B4, 8080, SYN),
                        pass(REASON_ALLOW_POLICY).mark(KUBE_MARK),
                    ),
                    MARK_EGRESS_DEFERRED | KUBE_MARK,
                ),
                ct_is(a4, b4, 40000, 8080, PROTO_TCP, CT_F_ESTABLISHED, 0),
                ct_is(
                    a4,
                    vip4,
                    40000,
                    80,
                    PROTO_TCP,
                    CT_F_ESTABLISHED | CT_F_DEFERRED,
                    0,
                ),
                eg(
                    On::B,
                    tcp4(B4, 8080, A4, 40000, SYN | ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                // Un-DNATed by the kernel: the reply comes from the VIP.
                ig(
                    On::A,
                    tcp4(VIP4, 80, A4, 40000, SYN | ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                // Later packets are deferred too (issue 9 item 8: a flow translated to
                // another backend is judged again), and pass on the translated flow's
                // entry at the backend.
                eg(
                    On::A,
                    tcp4(A4, 40000, VIP4, 80, ACK),
                    pass(REASON_DEFERRED).mark(MARK_EGRESS_DEFERRED),
                ),
                with_mark(
                    ig(
                        On::B,
                        tcp4(A4, 40000, B4, 8080, ACK),
                        pass(REASON_ALLOW_CONNTRACK).mark(0),
                    ),
                    MARK_EGRESS_DEFERRED,
                ),
                ig(
                    On::B,
                    tcp4(A4, 40000, B4, 8080, ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
            ],
        },
        Case {
            name: "service flow: the client's deferred egress denies at the backend",
            setup: |dp, ifs| {
                base(dp, ifs);
                let mut cfg = config(0, 1);
                cfg.flags = CONFIG_F_EVENT_ON_DENY;
                dp.set_config(cfg);
                // B would accept A, but A's egress does not allow B:8080.
                set(dp, 0, DIR_INGRESS, P_B, C_A, CELL_TCP8080, ACTION_ALLOW);
                set(dp, 0, DIR_EGRESS, P_A, C_VIP, ANY_CELL, ACTION_ALLOW);
                // Draining: a deny event that names A's egress.
            },
            steps: vec![
                eg(
                    On::A,
                    tcp4(A4, 40000, VIP4, 80, SYN),
                    pass(REASON_DEFERRED).mark(MARK_EGRESS_DEFERRED),
                ),
                with_mark(
                    ig(
                        On::B,
                        tcp4(A4, 40000, B4, 8080, SYN),
                        dropped(REASON_DENY_POLICY)
                            .mark(0)
                            .events(&[EVENT_KIND_DENY]),
                    ),
                    MARK_EGRESS_DEFERRED,
                ),
                ct_absent(a4, b4, 40000, 8080, PROTO_TCP),
                ct_absent(a4, vip4, 40000, 80, PROTO_TCP),
                ig(
                    On::A,
                    tcp4(VIP4, 80, A4, 40000, SYN | ACK),
                    dropped(REASON_DENY_POLICY).events(&[EVENT_KIND_DENY]),
                ),
                // The same packet without the mark is judged by B's ingress alone.
                ig(
                    On::B,
                    tcp4(A4, 40000, B4, 8080, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
            ],
        },
        Case {
            name: "service flow: the backend's ingress denies",
            setup: |dp, ifs| {
                base(dp, ifs);
                set(dp, 0, DIR_EGRESS, P_A, C_B, CELL_TCP8080, ACTION_ALLOW);
            },
            steps: vec![
                eg(On::A, tcp4(A4, 40000, VIP4, 80, SYN), pass(REASON_DEFERRED)),
                with_mark(
                    ig(
                        On::B,
                        tcp4(A4, 40000, B4, 8080, SYN),
                        dropped(REASON_DENY_POLICY),
                    ),
                    MARK_EGRESS_DEFERRED,
                ),
                ct_absent(a4, vip4, 40000, 80, PROTO_TCP),
                // Still deferred on the next try.
                eg(
                    On::A,
                    tcp4(A4, 40000, VIP4, 80, SYN),
                    pass(REASON_DEFERRED).mark(MARK_EGRESS_DEFERRED),
                ),
            ],
        },
        Case {
            name: "service flow: a deferred mark from a non-local source drops",
            setup: |dp, ifs| {
                base(dp, ifs);
                set(dp, 0, DIR_INGRESS, P_B, ANY_PEER, ANY_CELL, ACTION_ALLOW);
            },
            steps: vec![
                with_mark(
                    ig(
                        On::B,
                        tcp4(EXT4, 1, B4, 8080, SYN),
                        dropped(REASON_NO_ENDPOINT).mark(0),
                    ),
                    MARK_EGRESS_DEFERRED,
                ),
                ig(
                    On::B,
                    tcp4(EXT4, 1, B4, 8080, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                with_mark(
                    ig(On::B, arp(), pass(REASON_ALLOW_NON_IP).mark(KUBE_MARK)),
                    MARK_EGRESS_DEFERRED | KUBE_MARK,
                ),
                // Other values in our mark bits are not the deferred marker, but are cleared.
                with_mark(
                    ig(
                        On::B,
                        tcp4(EXT4, 2, B4, 8080, SYN),
                        pass(REASON_ALLOW_POLICY).mark(KUBE_MARK),
                    ),
                    0x0100_0000 | KUBE_MARK,
                ),
            ],
        },
        Case {
            name: "generation switch changes the verdict for new flows",
            setup: |dp, ifs| {
                base(dp, ifs);
                set(dp, 0, DIR_EGRESS, P_A, C_EXT, CELL_TCP80, ACTION_ALLOW);
                // Generation 1 denies (its default).
            },
            steps: vec![
                eg(On::A, tcp4(A4, 1, EXT4, 80, SYN), pass(REASON_ALLOW_POLICY)),
                Step::Config(config(1, 3)),
                eg(
                    On::A,
                    tcp4(A4, 2, EXT4, 80, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
                // The flow judged in generation 0 keeps its conntrack entry.
                eg(
                    On::A,
                    tcp4(A4, 1, EXT4, 80, ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                Step::Config(config(1, 2)),
                eg(
                    On::A,
                    tcp4(A4, 3, EXT4, 80, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
                Step::Config(config(0, 1)),
                eg(On::A, tcp4(A4, 4, EXT4, 80, SYN), pass(REASON_ALLOW_POLICY)),
            ],
        },
        Case {
            name: "second leg is judged in the first leg's generation while it is live",
            setup: |dp, ifs| {
                base(dp, ifs);
                for g in [0, 1] {
                    set(dp, g, DIR_EGRESS, P_A, C_B, CELL_TCP8080, ACTION_ALLOW);
                }
                // Only generation 0 lets B accept A.
                set(dp, 0, DIR_INGRESS, P_B, C_A, CELL_TCP8080, ACTION_ALLOW);
            },
            steps: vec![
                eg(On::A, tcp4(A4, 1, B4, 8080, SYN), pass(REASON_ALLOW_POLICY)),
                Step::Config(config(1, 3)),
                ig(On::B, tcp4(A4, 1, B4, 8080, SYN), pass(REASON_ALLOW_POLICY)),
                ct_is(a4, b4, 1, 8080, PROTO_TCP, CT_F_ESTABLISHED, 0),
                // A flow begun in generation 1 is judged by generation 1 on both legs.
                eg(On::A, tcp4(A4, 2, B4, 8080, SYN), pass(REASON_ALLOW_POLICY)),
                ct_is(a4, b4, 2, 8080, PROTO_TCP, CT_F_EGRESS_OK, 1),
                ig(
                    On::B,
                    tcp4(A4, 2, B4, 8080, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
                // Begun in generation 0, second leg after generation 0 retired: active (1).
                Step::Config(config(0, 3)),
                eg(On::A, tcp4(A4, 3, B4, 8080, SYN), pass(REASON_ALLOW_POLICY)),
                Step::Config(config(1, 2)),
                ig(
                    On::B,
                    tcp4(A4, 3, B4, 8080, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
            ],
        },
        Case {
            name: "log verdicts and deny events",
            setup: |dp, ifs| {
                base(dp, ifs);
                let mut logged = verdict(ACTION_ALLOW);
                logged.flags = VERDICT_F_LOG;
                logged.log_policy = 7;
                logged.log_rule = 3;
                dp.set_verdict(vkey(0, DIR_EGRESS, P_A, C_EXT, CELL_TCP80), logged);
                let mut logged_deny = verdict(ACTION_DENY);
                logged_deny.flags = VERDICT_F_LOG;
                dp.set_verdict(vkey(0, DIR_EGRESS, P_A, C_EXT, CELL_TCP443), logged_deny);
            },
            steps: vec![
                eg(
                    On::A,
                    tcp4(A4, 1, EXT4, 80, SYN),
                    pass(REASON_ALLOW_POLICY).events(&[EVENT_KIND_LOG]),
                ),
                // Conntrack passes are not logged.
                eg(
                    On::A,
                    tcp4(A4, 1, EXT4, 80, ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                // A deny without CONFIG_F_EVENT_ON_DENY: no event.
                eg(
                    On::A,
                    tcp4(A4, 2, WORLD4, 80, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
                eg(
                    On::A,
                    tcp4(A4, 3, EXT4, 443, SYN),
                    dropped(REASON_DENY_POLICY).events(&[EVENT_KIND_LOG]),
                ),
                Step::Config(Config {
                    flags: CONFIG_F_EVENT_ON_DENY,
                    ..config(0, 1)
                }),
                eg(
                    On::A,
                    tcp4(A4, 4, WORLD4, 80, SYN),
                    dropped(REASON_DENY_POLICY).events(&[EVENT_KIND_DENY]),
                ),
                eg(
                    On::A,
                    tcp4(A4, 5, EXT4, 443, SYN),
                    dropped(REASON_DENY_POLICY).events(&[EVENT_KIND_LOG, EVENT_KIND_DENY]),
                ),
                check("event contents", |dp, ifs| {
                    // Re-run the logged allow and look at every field.
                    let r = dp.run(Hook::PodEgress, &tcp4(A4, 6, EXT4, 80, SYN), ifs.a, 0);
                    if r.action != 0 {
                        return Err(format!("logged allow returned {}", r.action));
                    }
                    let ev = dp.drain_events();
                    let [e] = ev.as_slice() else {
                        return Err(format!("expected one event, got {ev:?}"));
                    };
                    let want = (
                        EVENT_KIND_LOG,
                        7,
                        3,
                        DIR_EGRESS,
                        ACTION_ALLOW,
                        ifs.a,
                        EP_ID_A,
                        addr16(A4.into()),
                        addr16(EXT4.into()),
                        6,
                        80,
                        PROTO_TCP,
                    );
                    let got = (
                        e.kind,
                        e.policy,
                        e.rule,
                        e.dir,
                        e.action,
                        e.ifindex,
                        e.endpoint_id,
                        e.src,
                        e.dst,
                        e.sport,
                        e.dport,
                        e.proto,
                    );
                    if got == want && e.ts_ns != 0 {
                        Ok(())
                    } else {
                        Err(format!("event {e:?}"))
                    }
                }),
            ],
        },
        Case {
            name: "rst marks the flow closing",
            setup: |dp, ifs| {
                base(dp, ifs);
                set(dp, 0, DIR_EGRESS, P_A, C_EXT, CELL_TCP80, ACTION_ALLOW);
            },
            steps: vec![
                eg(On::A, tcp4(A4, 9, EXT4, 80, SYN), pass(REASON_ALLOW_POLICY)),
                ig(
                    On::A,
                    tcp4(EXT4, 80, A4, 9, RST | ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                ct_is(
                    a4,
                    ext4,
                    9,
                    80,
                    PROTO_TCP,
                    CT_F_ESTABLISHED | CT_F_REPLIED | CT_F_CLOSING,
                    0,
                ),
            ],
        },
        Case {
            name: "ingress from an external peer records both legs",
            setup: |dp, ifs| {
                base(dp, ifs);
                set(dp, 0, DIR_INGRESS, P_A, C_EXT, CELL_TCP80, ACTION_ALLOW);
            },
            steps: vec![
                ig(
                    On::A,
                    tcp4(EXT4, 33000, A4, 80, SYN),
                    pass(REASON_ALLOW_POLICY),
                ),
                ct_is(
                    ext4,
                    a4,
                    33000,
                    80,
                    PROTO_TCP,
                    CT_F_INGRESS_OK | CT_F_EGRESS_OK,
                    0,
                ),
                eg(
                    On::A,
                    tcp4(A4, 80, EXT4, 33000, SYN | ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                ig(
                    On::A,
                    tcp4(EXT4, 33000, A4, 80, ACK),
                    pass(REASON_ALLOW_CONNTRACK),
                ),
                ig(
                    On::A,
                    tcp4(WORLD4, 33000, A4, 80, SYN),
                    dropped(REASON_DENY_POLICY),
                ),
            ],
        },
    ]
}

// ---------------------------------------------------------------------------------
// The runner.
// ---------------------------------------------------------------------------------

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;

fn run_step(dp: &mut Dataplane, ifs: &Ifaces, step: &Step) -> Result<(), String> {
    match step {
        Step::Config(c) => {
            dp.set_config(*c);
            Ok(())
        }
        Step::Check(name, f) => f(dp, ifs).map_err(|e| format!("check {name}: {e}")),
        Step::Run {
            hook,
            on,
            frame,
            mark,
            expect,
        } => {
            let before = [
                dp.counters_of(Hook::PodEgress),
                dp.counters_of(Hook::PodIngress),
            ];
            let r = dp.run(*hook, frame, ifs.index(*on), *mark);
            let after = [
                dp.counters_of(Hook::PodEgress),
                dp.counters_of(Hook::PodIngress),
            ];
            let events = dp.drain_events();
            let mut errors = Vec::new();
            let want_action = if expect.pass { TC_ACT_OK } else { TC_ACT_SHOT };
            if r.action != want_action {
                errors.push(format!("action {} (want {want_action})", r.action));
            }
            for (h, hook_i) in [Hook::PodEgress, Hook::PodIngress].into_iter().enumerate() {
                for reason in 0..before[h].len() {
                    let delta = after[h][reason] - before[h][reason];
                    let want = u64::from(hook_i == *hook && reason == expect.reason as usize);
                    if delta != want {
                        errors.push(format!(
                            "{hook_i:?} counter {} moved by {delta} (want {want})",
                            REASON_NAMES[reason]
                        ));
                    }
                }
            }
            if let Some(m) = expect.mark
                && r.mark != m
            {
                errors.push(format!("mark {:#x} (want {m:#x})", r.mark));
            }
            let kinds: Vec<u32> = events.iter().map(|e| e.kind).collect();
            if kinds != expect.events {
                errors.push(format!(
                    "events {kinds:?} (want {:?}): {events:?}",
                    expect.events
                ));
            }
            if errors.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{hook:?} on {on:?} (want {} {}): {}",
                    if expect.pass { "pass" } else { "drop" },
                    REASON_NAMES[expect.reason as usize],
                    errors.join("; ")
                ))
            }
        }
    }
}

#[test]
fn bpf_programs() {
    let netns = NetNs::enter();
    let (a, b) = netns.veth_pair("enf-a", "enf-b");
    let ifs = Ifaces { a, b };
    let mut dp = Dataplane::load(BPF_OBJECT);

    run_table(
        "bpf_programs",
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
