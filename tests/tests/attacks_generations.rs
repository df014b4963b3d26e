//! Attacks on policy generations (privileged: run as root): policy compiled by the
//! agent's own pipeline and written by its `GenerationWriter` into the loaded object,
//! packets judged by the real programs under `BPF_PROG_TEST_RUN`. Named after the
//! security issue's items (`issue9_<item>_...`); the threat model in
//! `docs/architecture.md` names them.
//!
//! Privileged: `cargo test -p enforcer-tests --test attacks_generations -- --test-threads=1`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use enforcer::compile::spec::SpecVerdictKey;
use enforcer::dataplane::content::GenerationContent;
use enforcer::dataplane::object::BPF_OBJECT;
use enforcer::dataplane::rcu::{Barrier, RcuBarrier};
use enforcer::dataplane::writer::{ApplyStats, WriterError};
use enforcer::model::workload::host_iface_name;
use enforcer_common::{ACTION_ALLOW, Config, DIR_INGRESS, MAP_VERDICTS, NO_INDEX, Verdict};
use enforcer_tests::bpf::{
    OrPanic as _,
    dataplane::{CompiledDataplane, Hook},
    netns::NetNs,
    packet::{PROTO_ICMP, PROTO_UDP, V4, icmp, udp},
};

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;

const PODS: &str = "
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: n, labels: {app: a}}
status: {podIP: 198.18.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: n, labels: {app: b}}
status: {podIP: 198.18.0.2}
";

/// B accepts A (any protocol: UDP, ICMP).
const B_ACCEPTS_A: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b, namespace: n}
spec:
  podSelector: {matchLabels: {app: b}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: a}}}]
";

/// B accepts nothing.
const B_ISOLATED: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b, namespace: n}
spec:
  podSelector: {matchLabels: {app: b}}
  policyTypes: [Ingress]
";

/// Compiles the pods plus `policy` and writes it as the next generation.
fn apply(dp: &mut CompiledDataplane, ifs: (u32, u32), policy: &str) -> ApplyStats {
    let text = format!("{PODS}---{policy}");
    let objects = enforcer::model::load_str(Path::new("generations.yaml"), &text).or_panic("load");
    let (cluster, _) = enforcer::policy::Cluster::from_objects(&objects).or_panic("policy");
    let spec = enforcer::compile::compile(&cluster).or_panic("compile");
    let content = GenerationContent::from_spec(&spec, |iface| {
        if iface == host_iface_name("n", "a") {
            Some(ifs.0)
        } else if iface == host_iface_name("n", "b") {
            Some(ifs.1)
        } else {
            None
        }
    });
    assert_eq!(content.endpoints.len(), 2, "both pods bound");
    dp.writer.apply(content).or_panic("writing the generation")
}

/// The action of `hook`'s program on `frame`, as if it arrived on `ifindex`.
fn run(dp: &CompiledDataplane, hook: Hook, ifindex: u32, frame: &[u8]) -> u32 {
    dp.run(hook, frame, ifindex, 0).action
}

/// A → B, UDP to port 53 from `sport`.
fn dns(sport: u16) -> Vec<u8> {
    let a = std::net::Ipv4Addr::new(198, 18, 0, 1);
    let b = std::net::Ipv4Addr::new(198, 18, 0, 2);
    V4::new(a, b, PROTO_UDP).frame(&udp(sport, 53))
}

/// A → B, an ICMP echo request with identifier `id`.
fn ping(id: u16) -> Vec<u8> {
    let a = std::net::Ipv4Addr::new(198, 18, 0, 1);
    let b = std::net::Ipv4Addr::new(198, 18, 0, 2);
    V4::new(a, b, PROTO_ICMP).frame(&icmp(8, 0, id))
}

/// Issue 9 item 6: A's egress hook approves its leg under v1 (the packet is then lost
/// before B's hook: TTL 1, a bad checksum, a full queue); the admin applies v2, which
/// isolates B; A later sends real packets on the tuple (UDP, ICMP). B's ingress must be
/// judged by v2 once v1's grace period is over, and never by a policy version that
/// merely reused v1's slot.
#[test]
fn issue9_6_pre_approved_egress_leg_is_judged_by_a_superseded_generation() {
    let netns = NetNs::enter();
    let (a, b) = netns.veth_pair("enf-gen-a", "enf-gen-b");
    let mut dp = CompiledDataplane::load(BPF_OBJECT);

    apply(&mut dp, (a, b), B_ACCEPTS_A);
    for (sport, what) in [(5000, "v1: A's egress"), (5001, "v1: A's egress")] {
        assert_eq!(
            run(&dp, Hook::PodEgress, a, &dns(sport)),
            TC_ACT_OK,
            "{what}"
        );
    }
    assert_eq!(
        run(&dp, Hook::PodEgress, a, &ping(7)),
        TC_ACT_OK,
        "v1: ping"
    );
    apply(&mut dp, (a, b), B_ISOLATED);
    // Within the grace period the flow's second leg is judged by v1, as it began.
    assert_eq!(
        run(&dp, Hook::PodIngress, b, &dns(5000)),
        TC_ACT_OK,
        "v1 during the grace"
    );
    // The agent's grace timer ends v1's life: the pre-approved leg buys nothing.
    assert!(dp.writer.retire_previous().or_panic("retiring v1"));
    assert_eq!(
        run(&dp, Hook::PodIngress, b, &dns(5001)),
        TC_ACT_SHOT,
        "after the grace: UDP judged by v2"
    );
    assert_eq!(
        run(&dp, Hook::PodIngress, b, &ping(7)),
        TC_ACT_SHOT,
        "after the grace: ICMP judged by v2"
    );
    assert!(
        !dp.writer.retire_previous().or_panic("nothing to retire"),
        "no previous generation left"
    );

    // Slot reuse: a leg approved under v3 (slot 0), then v4 (slot 1), v5 (slot 0 again,
    // accepting), v6 (slot 1, isolating; v5 still live). The old leg is judged by v6,
    // never by v5, which merely reused v3's slot; a leg approved under v5 is judged by
    // v5 during its grace (both legs of a flow, one version).
    apply(&mut dp, (a, b), B_ACCEPTS_A);
    dp.clear_conntrack();
    assert_eq!(run(&dp, Hook::PodEgress, a, &dns(5002)), TC_ACT_OK, "v3");
    apply(&mut dp, (a, b), B_ISOLATED);
    apply(&mut dp, (a, b), B_ACCEPTS_A);
    assert_eq!(run(&dp, Hook::PodEgress, a, &dns(5003)), TC_ACT_OK, "v5");
    apply(&mut dp, (a, b), B_ISOLATED);
    assert_eq!(
        run(&dp, Hook::PodIngress, b, &dns(5002)),
        TC_ACT_SHOT,
        "begun under v3: v6, not v5"
    );
    assert_eq!(
        run(&dp, Hook::PodIngress, b, &dns(5003)),
        TC_ACT_OK,
        "begun under v5: v5 during its grace"
    );
    drop(netns);
}

/// `count` verdict entries of profile `profile`, each its own peer class.
fn verdicts(profile: u32, count: u32) -> GenerationContent {
    let verdict = Verdict {
        action: ACTION_ALLOW,
        kind: 1,
        flags: 0,
        _pad: 0,
        policy: NO_INDEX,
        rule: NO_INDEX,
        log_policy: NO_INDEX,
        log_rule: NO_INDEX,
    };
    let entries: HashMap<SpecVerdictKey, Verdict> = (0..count)
        .map(|class| {
            let key = SpecVerdictKey {
                dir: DIR_INGRESS,
                profile,
                peer_class: class,
                cell: 0,
            };
            (key, verdict)
        })
        .collect();
    GenerationContent {
        verdicts: entries,
        ..GenerationContent::default()
    }
}

/// Issue 9 item 16: two generations share each map while one is written. A change
/// that fits next to the other slot's content is written (the target slot's old
/// content goes first); one that does not is refused before anything is written,
/// with the generation in force untouched, and a later change that fits still goes in.
#[test]
fn issue9_16_capacity_checked_per_generation_while_two_share_each_map() {
    let netns = NetNs::enter();
    let mut dp = CompiledDataplane::load_with_max_entries(BPF_OBJECT, &[(MAP_VERDICTS, 50)]);
    dp.writer.apply(verdicts(1, 30)).or_panic("30 entries");
    dp.writer.apply(verdicts(2, 20)).or_panic("20 next to 30");
    // 30 new entries next to the 20 in force: the slot's old 30 go first.
    dp.writer
        .apply(verdicts(3, 30))
        .or_panic("30 next to 20, replacing 30");
    let before = dp.writer.config();
    // 31 next to the 30 in force cannot fit: refused, the generation in force stays.
    match dp.writer.apply(verdicts(4, 31)) {
        Err(WriterError::Capacity {
            need: 61, max: 50, ..
        }) => {}
        other => panic!("expected a capacity refusal, got {other:?}"),
    }
    assert_eq!(dp.writer.config(), before, "the refusal changed the config");
    // And a change that fits is still written after a refusal.
    dp.writer
        .apply(verdicts(5, 20))
        .or_panic("20 next to 30, after a refusal");
    drop(netns);
}

/// Issue 12 (the first change after a start wrote its slot in full: ~70 ms at 10k/5k).
/// Once the grace period is over, the idle slot gets a copy of the generation in
/// force, written but not live: `Config` is unchanged, so no program judges by it.
/// The next change is then a diff against the copy (here the same policy again:
/// nothing to write), and the copy holds every entry: B's ingress, judged by it after
/// the switch, finds B's endpoint and A's verdict (an empty slot drops everything).
/// The copy is made once: a known or live slot is left alone.
#[test]
fn issue12_idle_slot_gets_a_copy_that_is_not_live_and_the_next_change_is_a_diff() {
    let netns = NetNs::enter();
    let (a, b) = netns.veth_pair("enf-gen-e", "enf-gen-f");
    let mut dp = CompiledDataplane::load(BPF_OBJECT);
    let first = apply(&mut dp, (a, b), B_ACCEPTS_A);
    assert!(first.upserted > 0, "v1 written: {first:?}");
    let before = dp.writer.config();
    assert!(
        dp.writer.fill_idle().or_panic("filling"),
        "slot 1 was unknown"
    );
    assert_eq!(dp.writer.config(), before, "the copy was made live");
    assert_eq!(
        (before.active_gen, before.live_gens),
        (0, 0b01),
        "v1 alone in force"
    );
    assert!(
        !dp.writer.fill_idle().or_panic("filling again"),
        "slot 1 is known now"
    );
    let second = apply(&mut dp, (a, b), B_ACCEPTS_A);
    assert_eq!(
        (second.generation, second.upserted, second.removed),
        (1, 0, 0),
        "the same policy written into the copy"
    );
    assert_eq!(
        run(&dp, Hook::PodIngress, b, &dns(6000)),
        TC_ACT_OK,
        "judged by the copy: A accepted"
    );
    assert!(
        !dp.writer.fill_idle().or_panic("filling a live slot"),
        "slot 0 is live (grace) and known"
    );
    let third = apply(&mut dp, (a, b), B_ISOLATED);
    assert_eq!(third.generation, 0, "{third:?}");
    assert_eq!(
        run(&dp, Hook::PodIngress, b, &dns(6001)),
        TC_ACT_SHOT,
        "v3: B isolated"
    );
    drop(netns);
}

/// Issue 12, with issue 9 item 16: a copy the maps cannot hold beside the generation
/// in force is not made (nothing is written, nothing refused); the next change then
/// clears the slot and writes it in full, as without the copy.
#[test]
fn issue12_no_copy_when_the_maps_cannot_hold_two() {
    let netns = NetNs::enter();
    let mut dp = CompiledDataplane::load_with_max_entries(BPF_OBJECT, &[(MAP_VERDICTS, 50)]);
    dp.writer.apply(verdicts(1, 30)).or_panic("30 entries");
    let before = dp.writer.config();
    assert!(
        !dp.writer.fill_idle().or_panic("no room is not an error"),
        "30 beside 30 cannot fit in 50"
    );
    assert_eq!(dp.writer.config(), before);
    let next = dp.writer.apply(verdicts(1, 20)).or_panic("20 next to 30");
    assert_eq!(
        (next.generation, next.upserted),
        (1, 20),
        "slot 1 written in full"
    );
    drop(netns);
}

/// A barrier that records the `Config` in force each time it is asked to wait (and
/// really waits), and counts the waits that are over.
struct Recording {
    rcu: RcuBarrier,
    waits: Arc<Mutex<Vec<Config>>>,
    over: Arc<AtomicUsize>,
    /// Waits this much longer than the grace period (a slow kernel).
    linger: Duration,
}

impl Recording {
    fn new(waits: &Arc<Mutex<Vec<Config>>>, over: &Arc<AtomicUsize>, linger: Duration) -> Self {
        Self {
            rcu: RcuBarrier::new().or_panic("RCU barrier"),
            waits: Arc::clone(waits),
            over: Arc::clone(over),
            linger,
        }
    }
}

impl Barrier for Recording {
    fn wait(&mut self, config: &Config) -> std::io::Result<()> {
        self.waits.lock().or_panic("lock").push(*config);
        let waited = self.rcu.synchronize();
        std::thread::sleep(self.linger);
        self.over.fetch_add(1, Ordering::SeqCst);
        waited
    }
}

/// Issue 9 item 17 (the generation flip has no wait for in-flight programs): before a
/// slot that was live is rewritten, the writer takes it out of `live_gens` and then
/// waits for every program that may still judge in it (an RCU grace period); ending
/// a grace period waits the same way. A slot no program could have seen live is
/// written without waiting.
#[test]
fn issue9_17_generation_flip_waits_for_in_flight_programs() {
    let netns = NetNs::enter();
    let (a, b) = netns.veth_pair("enf-gen-a", "enf-gen-b");
    let mut dp = CompiledDataplane::load(BPF_OBJECT);
    let waits = Arc::new(Mutex::new(Vec::new()));
    let over = Arc::new(AtomicUsize::new(0));
    dp.writer
        .set_barrier(Box::new(Recording::new(&waits, &over, Duration::ZERO)))
        .or_panic("barrier");
    let taken =
        |waits: &Arc<Mutex<Vec<Config>>>| std::mem::take(&mut *waits.lock().or_panic("lock"));

    apply(&mut dp, (a, b), B_ACCEPTS_A); // v1, slot 0: nothing was live.
    apply(&mut dp, (a, b), B_ISOLATED); // v2, slot 1: never live.
    assert_eq!(taken(&waits), [], "no slot written had been live");

    // v3 within v1's grace: slot 0 is live, so it is retired and waited for first.
    apply(&mut dp, (a, b), B_ACCEPTS_A);
    let seen = taken(&waits);
    assert_eq!(
        seen.len(),
        1,
        "one wait before rewriting a live slot: {seen:?}"
    );
    assert_eq!(seen[0].active_gen, 1, "waited before the switch: {seen:?}");
    assert_eq!(
        seen[0].live_gens, 0b10,
        "waited after slot 0 left live_gens"
    );
    assert_eq!(dp.writer.config().active_gen, 0, "v3 in slot 0");

    // The end of v2's grace waits too; then v4 rewrites slot 1 without another wait.
    assert!(dp.writer.retire_previous().or_panic("retiring v2"));
    let seen = taken(&waits);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].live_gens, 0b01,
        "waited after slot 1 left live_gens"
    );
    apply(&mut dp, (a, b), B_ISOLATED);
    assert_eq!(taken(&waits), [], "slot 1 was settled by the retirement");

    // What one wait costs (reported, not asserted: a kernel RCU grace period).
    let rcu = RcuBarrier::new().or_panic("RCU barrier");
    let started = std::time::Instant::now();
    rcu.synchronize().or_panic("RCU grace period");
    println!("one RCU grace period: {:?}", started.elapsed());
    drop(netns);
}

/// The agent starts the wait for a live slot before it compiles
/// (`GenerationWriter::prepare`), so that the RCU grace period passes while the
/// compiler runs: the previous generation leaves `live_gens` then, and the write that
/// follows collects that wait before it rewrites the slot (here a wait that lingers
/// 200 ms: a write that did not collect it would be over long before). A change that
/// comes when no slot is live to retire waits for nothing ahead.
#[test]
fn issue9_17_a_wait_started_before_the_compile_is_over_before_the_slot_is_rewritten() {
    let netns = NetNs::enter();
    let (a, b) = netns.veth_pair("enf-gen-c", "enf-gen-d");
    let mut dp = CompiledDataplane::load(BPF_OBJECT);
    let waits = Arc::new(Mutex::new(Vec::new()));
    let over = Arc::new(AtomicUsize::new(0));
    dp.writer
        .set_barrier(Box::new(Recording::new(
            &waits,
            &over,
            Duration::from_millis(200),
        )))
        .or_panic("barrier");
    let taken =
        |waits: &Arc<Mutex<Vec<Config>>>| std::mem::take(&mut *waits.lock().or_panic("lock"));

    dp.writer.prepare().or_panic("prepare with nothing live");
    apply(&mut dp, (a, b), B_ACCEPTS_A); // v1, slot 0.
    dp.writer
        .prepare()
        .or_panic("prepare with slot 1 never live");
    apply(&mut dp, (a, b), B_ISOLATED); // v2, slot 1; v1 in its grace period.
    assert_eq!(taken(&waits), [], "no slot written had been live");

    // v3 comes within v1's grace: prepare ends it and starts the wait at once.
    dp.writer.prepare().or_panic("prepare within v1's grace");
    let config = dp.writer.config();
    assert_eq!(
        (config.active_gen, config.live_gens),
        (1, 0b10),
        "v1's grace ends when the change is announced; v2 stays in force"
    );
    apply(&mut dp, (a, b), B_ACCEPTS_A);
    assert_eq!(
        over.load(Ordering::SeqCst),
        1,
        "the write returned before the wait it needed was over"
    );
    let seen = taken(&waits);
    assert_eq!(seen.len(), 1, "one wait, started by prepare: {seen:?}");
    assert_eq!(
        (seen[0].active_gen, seen[0].live_gens),
        (1, 0b10),
        "the wait started after slot 0 left live_gens, before the switch: {seen:?}"
    );
    let config = dp.writer.config();
    assert_eq!(
        (config.active_gen, config.live_gens),
        (0, 0b11),
        "v3 in slot 0, v2 in its grace"
    );

    // A prepare whose compile is refused (no apply follows) only ended v2's grace: the
    // next write finds slot 1 settled and waits no more.
    dp.writer
        .prepare()
        .or_panic("prepare, then a refused compile");
    assert!(
        !dp.writer.retire_previous().or_panic("retire"),
        "v2's grace was over already"
    );
    assert_eq!(
        over.load(Ordering::SeqCst),
        2,
        "retiring collected the wait"
    );
    apply(&mut dp, (a, b), B_ISOLATED);
    assert_eq!(taken(&waits).len(), 1, "only the prepared wait: {waits:?}");
    drop(netns);
}
