//! Related ICMP (`allow_related`) under `BPF_PROG_TEST_RUN` (privileged: run as root).
//!
//! Pod A (a veth in a private netns) has isolated ingress and open egress; pod B
//! allows ingress from anywhere. An ICMP or `ICMPv6` error passes when the packet it
//! quotes belongs to a flow conntrack approves and it travels the way that flow
//! allows (towards the quoted packet's sender); otherwise it is judged by policy as
//! new traffic: a forged error quoting no flow, an error sent the wrong way, and
//! errors whose quote is truncated are dropped by A's ingress policy. A quoted IPv6
//! packet's extension headers are walked as the packet's own are. Host interfaces
//! apply the same rule with their own legs, in XDP too: there a related error passes
//! before preDNAT policy, which would deny it as new traffic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use enforcer::dataplane::object::BPF_OBJECT;
use enforcer_common::{
    ACTION_ALLOW, ACTION_CONTINUE, ACTION_DENY, ANY_CELL, ANY_PEER, Config, DIR_EGRESS,
    DIR_HOST_EGRESS, DIR_HOST_INGRESS, DIR_INGRESS, DIR_PREDNAT_INGRESS, DIR_UNTRACKED_EGRESS,
    DIR_UNTRACKED_INGRESS, EP_F_HOST, NO_INDEX, PEER_F_LOCAL_ENDPOINT, PeerInfo,
    REASON_ALLOW_CONNTRACK, REASON_ALLOW_POLICY, REASON_ALLOW_RELATED, REASON_DENY_POLICY,
    REASON_NAMES, VERDICT_KIND_RULE, Verdict, VerdictKey, host_profile,
};
use enforcer_tests::bpf::{
    dataplane::{Dataplane, Hook, ct_key, endpoint},
    netns::NetNs,
    packet::{
        ACK, Ext, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, SYN, V4, tcp, truncated, udp, v6,
    },
};

const A4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const B4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 20);
const EXT4: Ipv4Addr = Ipv4Addr::new(198, 19, 1, 1);
/// A router on the path (the world class).
const ROUTER4: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 1);
const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x0a);
const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x14);
const EXT6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 1);
const ROUTER6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 2, 0, 0, 0, 1);

const C_WORLD: u32 = 1;
const C_A: u32 = 2;
const C_B: u32 = 3;
const P_A: u32 = 10;
const P_B: u32 = 20;
const P_HOST: u32 = 30;
const CELL_TCP80: u32 = 1;

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// ICMP "destination unreachable, fragmentation needed" (type 3 code 4).
const ICMP_FRAG_NEEDED: (u8, u8) = (3, 4);
const ICMP_PORT_UNREACH: (u8, u8) = (3, 3);
const ICMP_TIME_EXCEEDED: (u8, u8) = (11, 0);
/// `ICMPv6` "packet too big" (type 2).
const ICMPV6_PACKET_TOO_BIG: (u8, u8) = (2, 0);
const ICMPV6_TIME_EXCEEDED: (u8, u8) = (3, 0);

fn set(dp: &mut Dataplane, dir: u8, profile: u32, peer_class: u32, cell: u32, action: u8) {
    dp.set_verdict(
        VerdictKey {
            generation: 0,
            dir,
            _pad: [0; 2],
            profile,
            peer_class,
            cell,
        },
        Verdict {
            action,
            kind: VERDICT_KIND_RULE,
            flags: 0,
            _pad: 0,
            policy: 1,
            rule: 0,
            log_policy: NO_INDEX,
            log_rule: NO_INDEX,
        },
    );
}

fn config(dp: &mut Dataplane) {
    dp.set_config(Config {
        active_gen: 0,
        live_gens: 1,
        flags: 0,
        epoch: 0,
        netns_cookie: 0,
    });
}

fn peer(class: u32, flags: u32, ifindex: u32) -> PeerInfo {
    PeerInfo {
        class,
        flags,
        ifindex,
        host_class: 0,
    }
}

/// Pods A and B: A's ingress denies everything but TCP 80, its egress allows
/// everything; B allows everything both ways.
fn pods(dp: &mut Dataplane, a: u32, b: u32) {
    dp.reset();
    dp.set_endpoint(0, a, endpoint(P_A, 100, Some(A4), Some(A6)));
    dp.set_endpoint(0, b, endpoint(P_B, 200, Some(B4), Some(B6)));
    dp.set_peer(0, IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0, peer(C_WORLD, 0, 0));
    dp.set_peer(0, IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0, peer(C_WORLD, 0, 0));
    dp.set_peer(0, A4.into(), 32, peer(C_A, PEER_F_LOCAL_ENDPOINT, a));
    dp.set_peer(0, A6.into(), 128, peer(C_A, PEER_F_LOCAL_ENDPOINT, a));
    dp.set_peer(0, B4.into(), 32, peer(C_B, PEER_F_LOCAL_ENDPOINT, b));
    dp.set_peer(0, B6.into(), 128, peer(C_B, PEER_F_LOCAL_ENDPOINT, b));
    dp.set_port(0, PROTO_TCP, 80, 16, CELL_TCP80);
    set(dp, DIR_INGRESS, P_A, ANY_PEER, ANY_CELL, ACTION_DENY);
    set(dp, DIR_INGRESS, P_A, C_WORLD, CELL_TCP80, ACTION_ALLOW);
    set(dp, DIR_EGRESS, P_A, ANY_PEER, ANY_CELL, ACTION_ALLOW);
    set(dp, DIR_INGRESS, P_B, ANY_PEER, ANY_CELL, ACTION_ALLOW);
    set(dp, DIR_EGRESS, P_B, ANY_PEER, ANY_CELL, ACTION_ALLOW);
    config(dp);
}

/// Runs `hook` on `frame` and checks the action and that exactly the counter of
/// `reason` on that hook moved, by one.
fn expect(dp: &Dataplane, ifindex: u32, hook: Hook, frame: &[u8], pass: bool, reason: u32) {
    let before = dp.counters_of(hook);
    let r = dp.run(hook, frame, ifindex, 0);
    let after = dp.counters_of(hook);
    let want = match (hook, pass) {
        (Hook::HostXdp, true) => XDP_PASS,
        (Hook::HostXdp, false) => XDP_DROP,
        (_, true) => TC_ACT_OK,
        (_, false) => TC_ACT_SHOT,
    };
    assert_eq!(
        r.action, want,
        "{hook:?}: action (want {})",
        REASON_NAMES[reason as usize]
    );
    for (i, (a, b)) in after.iter().zip(&before).enumerate() {
        let moved = a - b;
        let want = u64::from(i == reason as usize);
        assert_eq!(
            moved, want,
            "{hook:?}: counter {} moved by {moved} (want {want}, expected reason {})",
            REASON_NAMES[i], REASON_NAMES[reason as usize]
        );
    }
}

/// An IP packet without its Ethernet header: what an ICMP error quotes.
fn ip_of(frame: &[u8]) -> Vec<u8> {
    frame[14..].to_vec()
}

/// An ICMP error from `src` to `dst` quoting `quote` (an IPv4 packet, no Ethernet).
fn icmp4_error(src: Ipv4Addr, dst: Ipv4Addr, (kind, code): (u8, u8), quote: &[u8]) -> Vec<u8> {
    // Type, code, checksum, unused, next-hop MTU 1400.
    let mut l4 = vec![kind, code, 0, 0, 0, 0, 0x05, 0x78];
    l4.extend_from_slice(quote);
    V4::new(src, dst, PROTO_ICMP).frame(&l4)
}

/// An `ICMPv6` error from `src` to `dst` quoting `quote` (an IPv6 packet).
fn icmp6_error(src: Ipv6Addr, dst: Ipv6Addr, (kind, code): (u8, u8), quote: &[u8]) -> Vec<u8> {
    // Type, code, checksum, MTU 1280.
    let mut l4 = vec![kind, code, 0, 0, 0, 0, 0x05, 0x00];
    l4.extend_from_slice(quote);
    v6(src, dst, &[], PROTO_ICMPV6, &l4)
}

fn tcp4(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, flags: u8) -> Vec<u8> {
    V4::new(src, dst, PROTO_TCP).frame(&tcp(sport, dport, flags))
}

fn tcp6(src: Ipv6Addr, sport: u16, dst: Ipv6Addr, dport: u16, flags: u8) -> Vec<u8> {
    v6(src, dst, &[], PROTO_TCP, &tcp(sport, dport, flags))
}

/// Path MTU discovery towards the sender of an approved flow, IPv4 and IPv6, under
/// isolated ingress; port unreachable and time exceeded for an approved UDP flow.
fn pmtu_reaches_the_sender(dp: &mut Dataplane, a: u32, b: u32) {
    pods(dp, a, b);
    let (eg, ig) = (Hook::PodEgress, Hook::PodIngress);
    let syn4 = tcp4(A4, 40_000, EXT4, 443, SYN);
    expect(dp, a, eg, &syn4, true, REASON_ALLOW_POLICY);
    let data4 = tcp4(A4, 40_000, EXT4, 443, ACK);
    let frag_needed = icmp4_error(ROUTER4, A4, ICMP_FRAG_NEEDED, &ip_of(&data4));
    let before = dp.conntrack_entry(&ct_key(A4.into(), EXT4.into(), 40_000, 443, PROTO_TCP));
    expect(dp, a, ig, &frag_needed, true, REASON_ALLOW_RELATED);
    // Nothing created or refreshed.
    let after = dp.conntrack_entry(&ct_key(A4.into(), EXT4.into(), 40_000, 443, PROTO_TCP));
    assert_eq!(
        before.map(|v| (v.flags, v.last_seen_ns)),
        after.map(|v| (v.flags, v.last_seen_ns)),
        "the flow's entry is untouched"
    );
    let icmp_key = ct_key(
        ROUTER4.into(),
        A4.into(),
        3 << 8 | 4,
        3 << 8 | 4,
        PROTO_ICMP,
    );
    assert!(
        dp.conntrack_entry(&icmp_key).is_none(),
        "no entry for the error"
    );

    let syn6 = tcp6(A6, 40_001, EXT6, 443, SYN);
    expect(dp, a, eg, &syn6, true, REASON_ALLOW_POLICY);
    let data6 = tcp6(A6, 40_001, EXT6, 443, ACK);
    let too_big = icmp6_error(ROUTER6, A6, ICMPV6_PACKET_TOO_BIG, &ip_of(&data6));
    expect(dp, a, ig, &too_big, true, REASON_ALLOW_RELATED);
    let hops6 = icmp6_error(ROUTER6, A6, ICMPV6_TIME_EXCEEDED, &ip_of(&data6));
    expect(dp, a, ig, &hops6, true, REASON_ALLOW_RELATED);

    // UDP: the peer's port unreachable, a router's time exceeded.
    let dns = V4::new(A4, EXT4, PROTO_UDP).frame(&udp(40_002, 53));
    expect(dp, a, eg, &dns, true, REASON_ALLOW_POLICY);
    let unreach = icmp4_error(EXT4, A4, ICMP_PORT_UNREACH, &ip_of(&dns));
    expect(dp, a, ig, &unreach, true, REASON_ALLOW_RELATED);
    let ttl = icmp4_error(ROUTER4, A4, ICMP_TIME_EXCEEDED, &ip_of(&dns));
    expect(dp, a, ig, &ttl, true, REASON_ALLOW_RELATED);

    // Pod to pod: B's ingress approved A's flow; an error about it reaches A.
    let syn_ab = tcp4(A4, 40_003, B4, 80, SYN);
    expect(dp, a, eg, &syn_ab, true, REASON_ALLOW_POLICY);
    expect(dp, b, ig, &syn_ab, true, REASON_ALLOW_POLICY);
    let err = icmp4_error(B4, A4, ICMP_FRAG_NEEDED, &ip_of(&syn_ab));
    expect(dp, b, eg, &err, true, REASON_ALLOW_RELATED);
    expect(dp, a, ig, &err, true, REASON_ALLOW_RELATED);
    // An error about B's reply travels to B: the flow's forward direction.
    let reply = tcp4(B4, 80, A4, 40_003, SYN | ACK);
    let err_to_b = icmp4_error(A4, B4, ICMP_FRAG_NEEDED, &ip_of(&reply));
    expect(dp, a, eg, &err_to_b, true, REASON_ALLOW_RELATED);
    expect(dp, b, ig, &err_to_b, true, REASON_ALLOW_RELATED);
}

/// A flow the world opened to A (ingress TCP 80): A's error about it leaves through
/// A's egress; with egress isolated too, only the related error passes.
fn error_from_the_pod(dp: &mut Dataplane, a: u32, b: u32) {
    pods(dp, a, b);
    set(dp, DIR_EGRESS, P_A, ANY_PEER, ANY_CELL, ACTION_DENY);
    let (eg, ig) = (Hook::PodEgress, Hook::PodIngress);
    let syn = tcp4(EXT4, 50_000, A4, 80, SYN);
    expect(dp, a, ig, &syn, true, REASON_ALLOW_POLICY);
    let err = icmp4_error(A4, EXT4, ICMP_FRAG_NEEDED, &ip_of(&syn));
    expect(dp, a, eg, &err, true, REASON_ALLOW_RELATED);
    // The same error about a flow nobody approved.
    let other = tcp4(EXT4, 50_001, A4, 80, SYN);
    let forged = icmp4_error(A4, EXT4, ICMP_FRAG_NEEDED, &ip_of(&other));
    expect(dp, a, eg, &forged, false, REASON_DENY_POLICY);
}

/// Errors that must be judged as new traffic (A's ingress: denied).
fn forged_and_misdirected(dp: &mut Dataplane, a: u32, b: u32) {
    pods(dp, a, b);
    let (eg, ig) = (Hook::PodEgress, Hook::PodIngress);
    let syn4 = tcp4(A4, 40_000, EXT4, 443, SYN);
    expect(dp, a, eg, &syn4, true, REASON_ALLOW_POLICY);
    let data4 = tcp4(A4, 40_000, EXT4, 443, ACK);

    // Quoting no approved flow (another port, another peer, another protocol).
    for quote in [
        tcp4(A4, 40_000, EXT4, 444, ACK),
        tcp4(A4, 40_009, EXT4, 443, ACK),
        tcp4(A4, 40_000, ROUTER4, 443, ACK),
        V4::new(A4, EXT4, PROTO_UDP).frame(&udp(40_000, 443)),
    ] {
        let forged = icmp4_error(ROUTER4, A4, ICMP_FRAG_NEEDED, &ip_of(&quote));
        expect(dp, a, ig, &forged, false, REASON_DENY_POLICY);
    }
    let forged6 = icmp6_error(
        ROUTER6,
        A6,
        ICMPV6_PACKET_TOO_BIG,
        &ip_of(&tcp6(A6, 40_001, EXT6, 443, ACK)),
    );
    expect(dp, a, ig, &forged6, false, REASON_DENY_POLICY);

    // The wrong direction: an error to A quoting the flow's reply, whose sender is
    // EXT (the error must go to EXT, not to A).
    let peer_packet = tcp4(EXT4, 443, A4, 40_000, ACK);
    let wrong = icmp4_error(ROUTER4, A4, ICMP_FRAG_NEEDED, &ip_of(&peer_packet));
    expect(dp, a, ig, &wrong, false, REASON_DENY_POLICY);
    // An error to A quoting a packet of another sender (B) to the same peer.
    let b_packet = tcp4(B4, 40_000, EXT4, 443, ACK);
    let wrong_src = icmp4_error(ROUTER4, A4, ICMP_FRAG_NEEDED, &ip_of(&b_packet));
    expect(dp, a, ig, &wrong_src, false, REASON_DENY_POLICY);
    // A leg not approved: a flow A's egress approved towards B but B's ingress has
    // not (yet): an error about it from B's side does not reach A.
    let syn_ab = tcp4(A4, 40_004, B4, 80, SYN);
    expect(dp, a, eg, &syn_ab, true, REASON_ALLOW_POLICY);
    let early = icmp4_error(B4, A4, ICMP_FRAG_NEEDED, &ip_of(&syn_ab));
    expect(dp, a, ig, &early, false, REASON_DENY_POLICY);

    // Truncated quotes: the inner IP header cut, the inner L4 cut to 4 bytes.
    let full = icmp4_error(ROUTER4, A4, ICMP_FRAG_NEEDED, &ip_of(&data4));
    let eth_ip_icmp = 14 + 20 + 8;
    for len in [eth_ip_icmp, eth_ip_icmp + 10, eth_ip_icmp + 20 + 4] {
        let cut = truncated(full.clone(), len);
        expect(dp, a, ig, &cut, false, REASON_DENY_POLICY);
    }
    let full6 = icmp6_error(ROUTER6, A6, ICMPV6_PACKET_TOO_BIG, &ip_of(&data4));
    // An IPv4 packet quoted in an ICMPv6 error.
    expect(dp, a, ig, &full6, false, REASON_DENY_POLICY);
    let data6 = tcp6(A6, 40_001, EXT6, 443, ACK);
    expect(
        dp,
        a,
        eg,
        &tcp6(A6, 40_001, EXT6, 443, SYN),
        true,
        REASON_ALLOW_POLICY,
    );
    let full6 = icmp6_error(ROUTER6, A6, ICMPV6_PACKET_TOO_BIG, &ip_of(&data6));
    let eth_ip6_icmp = 14 + 40 + 8;
    for len in [eth_ip6_icmp + 39, eth_ip6_icmp + 40 + 7] {
        let cut = truncated(full6.clone(), len);
        expect(dp, a, ig, &cut, false, REASON_DENY_POLICY);
    }
    expect(dp, a, ig, &full6, true, REASON_ALLOW_RELATED);
}

/// A host endpoint denying everything tracked both ways but egress to the world:
/// errors about the node's flows come back in; forged ones do not.
fn host_interface(dp: &mut Dataplane, host: u32) {
    dp.reset();
    let mut ep = endpoint(P_HOST, 1, None, None);
    ep.flags |= EP_F_HOST;
    dp.set_endpoint(0, host, ep);
    dp.set_peer(0, IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0, peer(C_WORLD, 0, 0));
    dp.set_peer(0, IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0, peer(C_WORLD, 0, 0));
    for (dir, action) in [
        (DIR_UNTRACKED_INGRESS, ACTION_CONTINUE),
        (DIR_UNTRACKED_EGRESS, ACTION_CONTINUE),
        (DIR_PREDNAT_INGRESS, ACTION_CONTINUE),
        (DIR_HOST_INGRESS, ACTION_DENY),
        (DIR_HOST_EGRESS, ACTION_ALLOW),
    ] {
        set(dp, dir, host_profile(P_HOST, 0), ANY_PEER, ANY_CELL, action);
    }
    config(dp);
    let (hin, heg) = (Hook::HostIngress, Hook::HostEgress);
    let out = tcp4(A4, 40_000, EXT4, 443, SYN);
    expect(dp, host, heg, &out, true, REASON_ALLOW_POLICY);
    expect(
        dp,
        host,
        hin,
        &tcp4(EXT4, 443, A4, 40_000, SYN | ACK),
        true,
        REASON_ALLOW_CONNTRACK,
    );
    let err = icmp4_error(ROUTER4, A4, ICMP_FRAG_NEEDED, &ip_of(&out));
    expect(dp, host, hin, &err, true, REASON_ALLOW_RELATED);
    let forged = icmp4_error(
        ROUTER4,
        A4,
        ICMP_FRAG_NEEDED,
        &ip_of(&tcp4(A4, 40_001, EXT4, 443, SYN)),
    );
    expect(dp, host, hin, &forged, false, REASON_DENY_POLICY);
    // Quoting the peer's packet: the error must go to the peer.
    let peer_packet = tcp4(EXT4, 443, A4, 40_000, ACK);
    let wrong = icmp4_error(ROUTER4, A4, ICMP_FRAG_NEEDED, &ip_of(&peer_packet));
    expect(dp, host, hin, &wrong, false, REASON_DENY_POLICY);
    let out6 = tcp6(A6, 40_000, EXT6, 443, SYN);
    expect(dp, host, heg, &out6, true, REASON_ALLOW_POLICY);
    let too_big = icmp6_error(ROUTER6, A6, ICMPV6_PACKET_TOO_BIG, &ip_of(&out6));
    expect(dp, host, hin, &too_big, true, REASON_ALLOW_RELATED);
}

/// The same host endpoint with a preDNAT policy denying everything inbound (seed 002's
/// last rule, for an address outside the cluster): XDP passes an error about the
/// node's own approved flow, as Calico's `RELATED` accept comes before its preDNAT
/// chain, and drops a forged one there.
fn host_xdp(dp: &mut Dataplane, host: u32) {
    host_interface(dp, host);
    set(
        dp,
        DIR_PREDNAT_INGRESS,
        host_profile(P_HOST, 0),
        ANY_PEER,
        ANY_CELL,
        ACTION_DENY,
    );
    let (xdp, heg) = (Hook::HostXdp, Hook::HostEgress);
    let out = tcp4(A4, 40_100, EXT4, 443, SYN);
    expect(dp, host, heg, &out, true, REASON_ALLOW_POLICY);
    let err = icmp4_error(ROUTER4, A4, ICMP_FRAG_NEEDED, &ip_of(&out));
    expect(dp, host, xdp, &err, true, REASON_ALLOW_RELATED);
    let forged = icmp4_error(
        ROUTER4,
        A4,
        ICMP_FRAG_NEEDED,
        &ip_of(&tcp4(A4, 40_101, EXT4, 443, SYN)),
    );
    expect(dp, host, xdp, &forged, false, REASON_DENY_POLICY);
    let out6 = tcp6(A6, 40_100, EXT6, 443, SYN);
    expect(dp, host, heg, &out6, true, REASON_ALLOW_POLICY);
    let too_big = icmp6_error(ROUTER6, A6, ICMPV6_PACKET_TOO_BIG, &ip_of(&out6));
    expect(dp, host, xdp, &too_big, true, REASON_ALLOW_RELATED);
    let forged6 = icmp6_error(
        ROUTER6,
        A6,
        ICMPV6_PACKET_TOO_BIG,
        &ip_of(&tcp6(A6, 40_101, EXT6, 443, SYN)),
    );
    expect(dp, host, xdp, &forged6, false, REASON_DENY_POLICY);
}

/// An IPv6 flow whose packets carry extension headers (hop-by-hop, destination
/// options, a first fragment): the packet too big quoting one passes to its sender; a
/// quote of a non-first fragment (no L4 header to name the flow) is new traffic.
fn quoted_extension_headers(dp: &mut Dataplane, a: u32, b: u32) {
    pods(dp, a, b);
    let (eg, ig) = (Hook::PodEgress, Hook::PodIngress);
    let exts = [
        Ext::HopByHop,
        Ext::DstOpts,
        Ext::Fragment {
            offset_units: 0,
            more: true,
        },
    ];
    let out = v6(A6, EXT6, &exts, PROTO_TCP, &tcp(40_200, 443, SYN));
    expect(dp, a, eg, &out, true, REASON_ALLOW_POLICY);
    let too_big = icmp6_error(ROUTER6, A6, ICMPV6_PACKET_TOO_BIG, &ip_of(&out));
    expect(dp, a, ig, &too_big, true, REASON_ALLOW_RELATED);
    let later = v6(
        A6,
        EXT6,
        &[Ext::Fragment {
            offset_units: 8,
            more: false,
        }],
        PROTO_TCP,
        &tcp(40_200, 443, ACK),
    );
    let about_later = icmp6_error(ROUTER6, A6, ICMPV6_PACKET_TOO_BIG, &ip_of(&later));
    expect(dp, a, ig, &about_later, false, REASON_DENY_POLICY);
}

#[test]
fn bpf_related() {
    let netns = NetNs::enter();
    let (a, b) = netns.veth_pair("enf-a", "enf-b");
    let mut dp = Dataplane::load(BPF_OBJECT);
    pmtu_reaches_the_sender(&mut dp, a, b);
    error_from_the_pod(&mut dp, a, b);
    forged_and_misdirected(&mut dp, a, b);
    host_interface(&mut dp, a);
    host_xdp(&mut dp, a);
    quoted_extension_headers(&mut dp, a, b);
    drop(netns);
}
