//! The opt-in BPF debug log under `BPF_PROG_TEST_RUN` (privileged: run as root): the
//! debug-log program variants (`enf_*_d`) with `CONFIG_F_DEBUG_LOG` set write one
//! aya-log record per policy verdict, which `enforcer::dataplane::bpf_log::BpfLog`
//! forwards to `tracing`; with the flag clear they write none, and the production
//! programs write none whatever the flag.
//!
//! The records are read the agent's way: a tokio task woken by the ring buffer, events
//! captured by a `tracing` subscriber on this thread (the runtime is current-thread).
//! The verdicts that must not log run *before* the logged ones: the ring buffer is
//! FIFO, so once the logged records have arrived, a record of an earlier packet would
//! have arrived too.

use std::{
    io::Write,
    net::{Ipv4Addr, Ipv6Addr},
    sync::{Arc, Mutex},
    time::Duration,
};

use enforcer::dataplane::{
    bpf_log::{BpfLog, TARGET},
    object::BPF_OBJECT,
};
use enforcer_common::{
    ACTION_ALLOW, ACTION_DENY, ANY_CELL, ANY_PEER, CONFIG_F_DEBUG_LOG, Config, DIR_EGRESS,
    PeerInfo, VERDICT_KIND_RULE, Verdict, VerdictKey,
};
use enforcer_tests::bpf::{
    OrPanic as _,
    dataplane::{Dataplane, Hook, Variant, endpoint},
    netns::NetNs,
    packet::{PROTO_TCP, SYN, V4, tcp, v6},
};
use tracing_subscriber::util::SubscriberInitExt as _;

const A4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x0a);
const EXT4: Ipv4Addr = Ipv4Addr::new(198, 19, 1, 1);
const EXT6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 1);
const PROFILE_A: u32 = 10;
const ENDPOINT_A: u32 = 100;
const C_WORLD4: u32 = 1;
const C_WORLD6: u32 = 2;
const POLICY: u32 = 7;
const RULE: u32 = 3;
/// Tag-like source ports: which packet a record is about.
const SPORT_OFF: u16 = 40_000;
const SPORT_PRODUCTION: u16 = 40_003;
const SPORT_ON_V4: u16 = 40_001;
const SPORT_ON_V6: u16 = 40_002;

/// What the subscriber printed, shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .or_panic("capture lock")
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// The forwarded BPF records (one per line).
    fn records(&self) -> Vec<String> {
        let bytes = self.0.lock().or_panic("capture lock").clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| l.contains(TARGET))
            .map(str::to_owned)
            .collect()
    }
}

/// Pod A's egress: IPv4 allowed (policy 7 rule 3), IPv6 denied (the default).
fn policy(dp: &mut Dataplane, ifindex: u32, flags: u32) {
    dp.reset();
    dp.set_endpoint(
        0,
        ifindex,
        endpoint(PROFILE_A, ENDPOINT_A, Some(A4), Some(A6)),
    );
    let world = |class| PeerInfo {
        class,
        flags: 0,
        ifindex: 0,
        host_class: 0,
    };
    dp.set_peer(0, Ipv4Addr::UNSPECIFIED.into(), 0, world(C_WORLD4));
    dp.set_peer(0, Ipv6Addr::UNSPECIFIED.into(), 0, world(C_WORLD6));
    let key = |peer_class| VerdictKey {
        generation: 0,
        dir: DIR_EGRESS,
        _pad: [0; 2],
        profile: PROFILE_A,
        peer_class,
        cell: ANY_CELL,
    };
    let verdict = |action| Verdict {
        action,
        kind: VERDICT_KIND_RULE,
        flags: 0,
        _pad: 0,
        policy: POLICY,
        rule: RULE,
        log_policy: 0,
        log_rule: 0,
    };
    dp.set_verdict(key(C_WORLD4), verdict(ACTION_ALLOW));
    // The IPv6 world falls to the profile's default.
    dp.set_verdict(key(ANY_PEER), verdict(ACTION_DENY));
    dp.set_config(Config {
        active_gen: 0,
        live_gens: 1,
        flags,
        epoch: 0,
        netns_cookie: 0,
    });
}

#[test]
fn debug_log_records_verdicts_only_when_enabled() {
    let netns = NetNs::enter();
    let (a, _b) = netns.veth_pair("enf-log-a", "enf-log-b");
    let captured = Captured::default();
    let sink = captured.clone();
    let _subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish()
        .set_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .or_panic("tokio runtime");
    let _runtime = runtime.enter();

    let mut dp = Dataplane::load_variants(BPF_OBJECT, &[Variant::Production, Variant::DebugLog]);
    let bpf_log = BpfLog::start(dp.ebpf_mut()).or_panic("starting the BPF log");

    let v4_syn = |sport| V4::new(A4, EXT4, PROTO_TCP).frame(&tcp(sport, 80, SYN));
    let debug = |dp: &Dataplane, frame: &[u8]| {
        dp.run_variant(Variant::DebugLog, Hook::PodEgress, frame, a, 0)
            .action
    };
    // The production program, flag set: an allowed verdict, no record.
    policy(&mut dp, a, CONFIG_F_DEBUG_LOG);
    assert_eq!(
        dp.run(Hook::PodEgress, &v4_syn(SPORT_PRODUCTION), a, 0)
            .action,
        0
    );
    // The debug variant, flag clear: an allowed verdict, no record.
    policy(&mut dp, a, 0);
    assert_eq!(debug(&dp, &v4_syn(SPORT_OFF)), 0);
    // The debug variant, flag set: one record per verdict, allowed (IPv4) and denied
    // (IPv6).
    policy(&mut dp, a, CONFIG_F_DEBUG_LOG);
    assert_eq!(debug(&dp, &v4_syn(SPORT_ON_V4)), 0);
    let v6_syn = v6(A6, EXT6, &[], PROTO_TCP, &tcp(SPORT_ON_V6, 443, SYN));
    assert_eq!(debug(&dp, &v6_syn), 2);

    // Wait for the two flagged records (the bound only turns a hang into a failure).
    runtime.block_on(async {
        for _ in 0..1000 {
            if captured.records().len() >= 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let records = captured.records();
    let expect_v4 = format!(
        "verdict dir={DIR_EGRESS} action={ACTION_ALLOW} endpoint={ENDPOINT_A} policy={POLICY} \
         rule={RULE} proto={PROTO_TCP} {A4}:{SPORT_ON_V4} -> {EXT4}:80"
    );
    let expect_v6 = format!(
        "verdict dir={DIR_EGRESS} action={ACTION_DENY} endpoint={ENDPOINT_A} policy={POLICY} \
         rule={RULE} proto={PROTO_TCP} {A6}:{SPORT_ON_V6} -> {EXT6}:443"
    );
    assert_eq!(records.len(), 2, "expected two records, got {records:#?}");
    assert!(
        records[0].contains(&expect_v4),
        "first record {:?} is not {expect_v4:?}",
        records[0]
    );
    assert!(
        records[1].contains(&expect_v6),
        "second record {:?} is not {expect_v6:?}",
        records[1]
    );
    assert!(
        !records
            .iter()
            .any(|r| r.contains(&format!(":{SPORT_OFF} "))),
        "a verdict judged with the flag clear was logged: {records:#?}"
    );
    assert!(
        !records
            .iter()
            .any(|r| r.contains(&format!(":{SPORT_PRODUCTION} "))),
        "a production program logged a verdict: {records:#?}"
    );
    drop(bpf_log);
    drop(netns);
}
