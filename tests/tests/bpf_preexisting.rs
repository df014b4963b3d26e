//! The host TC programs' fallback for connections older than their conntrack state
//! (`allow_preexisting`), under `BPF_PROG_TEST_RUN` (privileged: run as root).
//!
//! In a private netns with loopback up, a real TCP connection is opened (IPv4 and
//! IPv6) while no program runs; the host-endpoint programs then see a mid-stream
//! packet of it with an empty `ENF_CONNTRACK` and preDNAT and tracked policy denying
//! everything. The kernel's established socket lets it through XDP and TC, which
//! records the flow, so the other
//! direction passes on conntrack; a packet to a LISTEN socket, a SYN, an egress packet
//! without a socket of its own, and the same packet once the sockets are gone are
//! still refused.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    process::Command,
};

use enforcer::dataplane::object::BPF_OBJECT;
use enforcer_common::{
    ACTION_CONTINUE, ACTION_DENY, ANY_CELL, ANY_PEER, CT_F_HOST_INGRESS_OK, Config,
    DIR_HOST_EGRESS, DIR_HOST_INGRESS, DIR_PREDNAT_INGRESS, DIR_UNTRACKED_EGRESS,
    DIR_UNTRACKED_INGRESS, EP_F_HOST, NO_INDEX, PeerInfo, REASON_ALLOW_CONNTRACK,
    REASON_ALLOW_PREEXISTING, REASON_DENY_NO_CONNTRACK, REASON_DENY_POLICY, REASON_NAMES,
    VERDICT_KIND_RULE, Verdict, VerdictKey, host_profile,
};
use enforcer_tests::bpf::{
    OrPanic as _,
    dataplane::{Dataplane, Hook, ct_key, endpoint},
    netns::NetNs,
    packet::{ACK, PROTO_TCP, SYN, V4, tcp, v6},
};

const P_HOST: u32 = 7;
const C_WORLD: u32 = 1;
const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// A host endpoint on `ifindex` whose untracked policy continues and whose tracked
/// policy denies everything, both ways: nothing passes by policy.
fn setup(dp: &mut Dataplane, ifindex: u32) {
    dp.reset();
    let mut ep = endpoint(P_HOST, 1, None, None);
    ep.flags |= EP_F_HOST;
    dp.set_endpoint(0, ifindex, ep);
    let world = PeerInfo {
        class: C_WORLD,
        flags: 0,
        ifindex: 0,
        host_class: 0,
    };
    dp.set_peer(0, IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0, world);
    dp.set_peer(0, IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0, world);
    for (dir, action) in [
        (DIR_UNTRACKED_INGRESS, ACTION_CONTINUE),
        (DIR_UNTRACKED_EGRESS, ACTION_CONTINUE),
        (DIR_PREDNAT_INGRESS, ACTION_DENY),
        (DIR_HOST_INGRESS, ACTION_DENY),
        (DIR_HOST_EGRESS, ACTION_DENY),
    ] {
        dp.set_verdict(
            VerdictKey {
                generation: 0,
                dir,
                _pad: [0; 2],
                profile: host_profile(P_HOST, 0),
                peer_class: ANY_PEER,
                cell: ANY_CELL,
            },
            Verdict {
                action,
                kind: VERDICT_KIND_RULE,
                flags: 0,
                _pad: 0,
                policy: 0,
                rule: 0,
                log_policy: NO_INDEX,
                log_rule: NO_INDEX,
            },
        );
    }
    dp.set_config(Config {
        active_gen: 0,
        live_gens: 1,
        flags: 0,
        epoch: 0,
        netns_cookie: 0,
    });
}

fn frame(src: SocketAddr, dst: SocketAddr, flags: u8) -> Vec<u8> {
    let l4 = tcp(src.port(), dst.port(), flags);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => V4::new(s, d, PROTO_TCP).frame(&l4),
        (IpAddr::V6(s), IpAddr::V6(d)) => v6(s, d, &[], PROTO_TCP, &l4),
        _ => panic!("mixed families"),
    }
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

/// Closes with an RST (`SO_LINGER` 0): the socket is gone at once, no `TIME_WAIT`.
fn abort(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a `linger` of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", io::Error::last_os_error());
    drop(stream);
}

fn family_case(dp: &mut Dataplane, ifindex: u32, lo: IpAddr) {
    let listener = TcpListener::bind((lo, 0)).or_panic("bind");
    let server_addr = listener.local_addr().or_panic("listener address");
    let client = TcpStream::connect(server_addr).or_panic("connect");
    let (server, _) = listener.accept().or_panic("accept");
    let client_addr = client.local_addr().or_panic("client address");
    // Server data to the client: a mid-stream packet entering the node.
    let data_in = frame(server_addr, client_addr, ACK);
    let ack_out = frame(client_addr, server_addr, ACK);

    setup(dp, ifindex);
    // XDP: preDNAT policy (deny) never judges an established connection.
    let xdp = Hook::HostXdp;
    expect(dp, ifindex, xdp, &data_in, true, REASON_ALLOW_PREEXISTING);
    // No conntrack entry, policy denies: the established socket lets it in, recorded.
    expect(
        dp,
        ifindex,
        Hook::HostIngress,
        &data_in,
        true,
        REASON_ALLOW_PREEXISTING,
    );
    let key = ct_key(
        server_addr.ip(),
        client_addr.ip(),
        server_addr.port(),
        client_addr.port(),
        PROTO_TCP,
    );
    let entry = dp
        .conntrack_entry(&key)
        .or_panic("conntrack entry recorded");
    assert_ne!(entry.flags & CT_F_HOST_INGRESS_OK, 0, "{entry:?}");
    // From then on both directions pass on conntrack.
    let (i, hin, heg) = (ifindex, Hook::HostIngress, Hook::HostEgress);
    expect(dp, i, hin, &data_in, true, REASON_ALLOW_CONNTRACK);
    expect(dp, i, heg, &ack_out, true, REASON_ALLOW_CONNTRACK);

    setup(dp, ifindex);
    // An ACK to the listening socket: no connection, dropped.
    let stranger = SocketAddr::new(lo, 40_000);
    let to_listener = frame(stranger, server_addr, ACK);
    expect(dp, i, hin, &to_listener, false, REASON_DENY_NO_CONNTRACK);
    expect(dp, i, xdp, &to_listener, false, REASON_DENY_POLICY);
    // A SYN on the tuple of the established socket is judged by policy.
    let syn = frame(server_addr, client_addr, SYN);
    expect(dp, i, hin, &syn, false, REASON_DENY_POLICY);
    // Egress: the test run's skb carries no TCP socket of this connection.
    expect(dp, i, heg, &ack_out, false, REASON_DENY_NO_CONNTRACK);

    // The same packet once the connection is gone.
    abort(server);
    abort(client);
    setup(dp, ifindex);
    expect(dp, i, hin, &data_in, false, REASON_DENY_NO_CONNTRACK);
    expect(dp, i, xdp, &data_in, false, REASON_DENY_POLICY);
    assert!(dp.conntrack_entry(&key).is_none(), "nothing recorded");
    drop(listener);
}

#[test]
fn bpf_preexisting() {
    let netns = NetNs::enter();
    let status = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .or_panic("running ip link set lo up");
    assert!(status.success(), "ip link set lo up: {status}");
    let (host, _) = netns.veth_pair("enf-eth0", "enf-ext");
    let mut dp = Dataplane::load(BPF_OBJECT);
    family_case(&mut dp, host, IpAddr::V4(Ipv4Addr::LOCALHOST));
    family_case(&mut dp, host, IpAddr::V6(Ipv6Addr::LOCALHOST));
    drop(netns);
}
