//! `p1` and `p2`: per-packet cost by `BPF_PROG_TEST_RUN` with `repeat`.
//!
//! The real object (`enforcer::dataplane::object::BPF_OBJECT`) is loaded in a private
//! network namespace holding veth pairs named as the client's and the server's
//! host-side interfaces; the real compiler compiles the synthetic cluster and the real
//! `GenerationWriter` writes it into the object's maps. Then the real programs run on
//! crafted frames, `repeat` times per call; the kernel reports the mean ns per run.
//! Both sides of a ratio are sampled alternately and compared by their medians.
//!
//! - New flow: a TCP SYN client → server:8080 at `enf_pod_in` (the server's
//!   ingress). The programs judge every SYN by policy (peer class, cell, verdict), and
//!   the allowed SYN rewrites its conntrack entry: the full new-flow path, every run.
//!   The entry exists (an earlier run wrote it), as it does for a pod-to-pod flow on
//!   one node, whose client's egress hook created it: the SYN's approval is written
//!   in place (`conntrack::update`). A flow from another node has no entry at this
//!   hook and pays an LRU insert instead (`p3_newflow_*` measures that path: every
//!   datagram there is a new tuple from outside the node).
//! - Established: a UDP datagram client → server:7001 whose forward tuple has an
//!   approved conntrack entry (written by one earlier run of the same packet).
//! - Floor: `enf_bench_floor` (parse + one lookup in a `CONNTRACK_MAX` hash that
//!   holds the packet's tuple) on the same frames.
//!
//! Every frame runs as the kernel delivers the client's packet to the server's veth:
//! `ifindex` is the server's host-side interface and `ingress_ifindex` the client's
//! (the packet entered the node through the client's veth), so the programs take the
//! path real forwarded traffic takes, RPF check included.

use std::ffi::CString;

use aya::maps::{HashMap, MapData};
use aya::programs::{SchedClassifier, TestRun as _, TestRunOptions};
use aya::{Ebpf, EbpfLoader};
use enforcer::compile::{self, DataplaneSpec};
use enforcer::dataplane::content::GenerationContent;
use enforcer::dataplane::object::BPF_OBJECT;
use enforcer::dataplane::writer::GenerationWriter;
use enforcer::model::workload::host_iface_name;
use enforcer_common::{
    CONNTRACK_MAX, CT_F_ESTABLISHED, CtKey, CtValue, MAP_BENCH_FLOOR, MAP_CONNTRACK,
    PROG_BENCH_FLOOR, PROG_POD_INGRESS,
};

use super::{BenchResult, Context as _, Goal, Metric, Mode, Report, median, scenario};
use crate::bpf::dataplane::ct_key;
use crate::bpf::netns::NetNs;
use crate::bpf::packet::{PROTO_TCP, PROTO_UDP, SYN, V4, tcp, udp};

const TC_ACT_OK: u32 = 0;
const SKB_SIZE: usize = 192;
const SKB_INGRESS_IFINDEX: usize = 36;
const SKB_IFINDEX: usize = 40;
const SERVER_TCP_PORT: u16 = 8080;
const SERVER_UDP_PORT: u16 = 7001;
const CLIENT_PORT: u16 = 40_000;

/// The loaded object with its policy maps behind a writer.
struct Loaded {
    ebpf: Ebpf,
    writer: GenerationWriter,
    conntrack: HashMap<MapData, CtKey, CtValue>,
    floor: HashMap<MapData, CtKey, CtValue>,
    server_ifindex: u32,
    client_ifindex: u32,
}

fn ifindex(name: &str) -> u32 {
    CString::new(name).map_or(0, |c| {
        // SAFETY: a valid NUL-terminated string.
        unsafe { libc::if_nametoindex(c.as_ptr()) }
    })
}

impl Loaded {
    fn new(netns: &NetNs) -> BenchResult<Self> {
        let client_iface = host_iface_name(scenario::NAMESPACE, scenario::CLIENT);
        let server_iface = host_iface_name(scenario::NAMESPACE, scenario::SERVER);
        let (client_ifindex, _) = netns.veth_pair(&client_iface, "benchc0");
        let (server_ifindex, _) = netns.veth_pair(&server_iface, "benchs0");
        // The floor map is declared with one entry (nothing for the agent to carry);
        // here it gets the real conntrack's capacity.
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(MAP_BENCH_FLOOR, CONNTRACK_MAX)
            .load(BPF_OBJECT)
            .ctx("loading the BPF object")?;
        for name in [PROG_POD_INGRESS, PROG_BENCH_FLOOR] {
            let prog: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or_else(|| format!("program {name} missing"))?
                .try_into()
                .ctx(name)?;
            prog.load()
                .map_err(|e| format!("verifier rejected {name}: {e:?}"))?;
        }
        let writer = GenerationWriter::new(&mut ebpf).ctx("opening the policy maps")?;
        let take = |ebpf: &mut Ebpf, name: &str| -> BenchResult<HashMap<MapData, CtKey, CtValue>> {
            let map = ebpf
                .take_map(name)
                .ok_or_else(|| format!("map {name} missing"))?;
            HashMap::try_from(map).ctx(name)
        };
        let conntrack = take(&mut ebpf, MAP_CONNTRACK)?;
        let floor = take(&mut ebpf, MAP_BENCH_FLOOR)?;
        Ok(Self {
            ebpf,
            writer,
            conntrack,
            floor,
            server_ifindex,
            client_ifindex,
        })
    }

    fn apply(&mut self, spec: &DataplaneSpec) -> BenchResult<()> {
        let content =
            GenerationContent::from_spec(spec, |name| Some(ifindex(name)).filter(|i| *i != 0));
        if content.endpoints.len() != 2 {
            return Err(format!(
                "expected the client's and the server's endpoint entries, got {} (ifindexes {} {})",
                content.endpoints.len(),
                self.client_ifindex,
                self.server_ifindex
            ));
        }
        self.writer.apply(content).ctx("writing a generation")?;
        Ok(())
    }

    /// Runs `program` `repeat` times on `frame` at the server's interface: mean ns.
    fn run(&self, program: &str, frame: &[u8], repeat: u32) -> BenchResult<f64> {
        let prog: &SchedClassifier = self
            .ebpf
            .program(program)
            .ok_or_else(|| format!("program {program} missing"))?
            .try_into()
            .ctx(program)?;
        let mut ctx_in = [0u8; SKB_SIZE];
        ctx_in[SKB_IFINDEX..SKB_IFINDEX + 4].copy_from_slice(&self.server_ifindex.to_ne_bytes());
        ctx_in[SKB_INGRESS_IFINDEX..SKB_INGRESS_IFINDEX + 4]
            .copy_from_slice(&self.client_ifindex.to_ne_bytes());
        let result = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ctx_in: Some(&ctx_in),
                repeat,
                ..TestRunOptions::new()
            })
            .map_err(|e| format!("BPF_PROG_TEST_RUN of {program}: {e:?}"))?;
        if result.return_value != TC_ACT_OK {
            return Err(format!(
                "{program} returned {} instead of TC_ACT_OK: the benchmark packet must pass",
                result.return_value
            ));
        }
        Ok(result.duration.as_nanos() as f64)
    }
}

fn syn_frame() -> Vec<u8> {
    V4::new(scenario::CLIENT_V4, scenario::SERVER_V4, PROTO_TCP).frame(&tcp(
        CLIENT_PORT,
        SERVER_TCP_PORT,
        SYN,
    ))
}

fn udp_frame() -> Vec<u8> {
    V4::new(scenario::CLIENT_V4, scenario::SERVER_V4, PROTO_UDP)
        .frame(&udp(CLIENT_PORT, SERVER_UDP_PORT))
}

fn compile_rules(rules: usize, pods: usize) -> BenchResult<(DataplaneSpec, usize)> {
    let cluster = scenario::cluster(&scenario::rule_set(rules, pods))?;
    let on_server = scenario::server_rules(&cluster);
    if on_server != rules {
        return Err(format!(
            "the rule set holds {on_server} rules on the server, expected {rules}"
        ));
    }
    let spec = compile::compile_for_node(&cluster, Some("node1")).ctx("compiling")?;
    Ok((spec, on_server))
}

pub fn run(mode: Mode, report: &mut Report) -> BenchResult<()> {
    let repeat: u32 = if mode.quick { 20_000 } else { 200_000 };
    let samples = mode.samples().max(5);
    let pods = mode.pods();
    let (one, _) = compile_rules(1, pods)?;
    let (many, n_rules) = compile_rules(mode.rules(), pods)?;

    let netns = NetNs::enter();
    let mut dp = Loaded::new(&netns)?;
    // Generations: `one` in slot 0, `many` in slot 1; re-applying either later is an
    // empty diff that only flips Config.
    dp.apply(&one)?;
    dp.apply(&many)?;
    let syn = syn_frame();
    let udp = udp_frame();

    // p1: new-flow verdict at 1 vs N rules, alternating.
    let (mut t1, mut tn) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        dp.apply(&one)?;
        t1.push(dp.run(PROG_POD_INGRESS, &syn, repeat)?);
        dp.apply(&many)?;
        tn.push(dp.run(PROG_POD_INGRESS, &syn, repeat)?);
    }
    let (m1, mn) = (median(&t1), median(&tn));
    report.push(
        Metric::new(
            "p1_rule_scaling",
            mn / m1,
            "ratio",
            format!(
                "TCP SYN at enf_pod_in: {mn:.1} ns at {n_rules} rules / {m1:.1} ns at 1 rule ({} vs {} verdict entries, {} vs {} peer entries); {samples} alternating samples x {repeat} runs",
                many.verdicts.len(),
                one.verdicts.len(),
                many.peers.len(),
                one.peers.len()
            ),
        )
        .goal(Goal::AtMost(1.10)),
    );

    // p2: the N-rule generation against the floor, same frames.
    dp.apply(&many)?;
    let udp_key = ct_key(
        scenario::client_ip(),
        scenario::server_ip(),
        CLIENT_PORT,
        SERVER_UDP_PORT,
        PROTO_UDP,
    );
    let syn_key = ct_key(
        scenario::client_ip(),
        scenario::server_ip(),
        CLIENT_PORT,
        SERVER_TCP_PORT,
        PROTO_TCP,
    );
    // One run of the datagram creates its conntrack entry; from then on it is established.
    dp.run(PROG_POD_INGRESS, &udp, 1)?;
    let entry = dp
        .conntrack
        .get(&udp_key, 0)
        .ctx("the datagram's conntrack entry")?;
    if entry.flags & CT_F_ESTABLISHED == 0 {
        return Err(format!(
            "unexpected conntrack flags {:#x} after the first datagram",
            entry.flags
        ));
    }
    for key in [udp_key, syn_key] {
        dp.floor
            .insert(key, entry, 0)
            .ctx("filling the floor map")?;
    }
    let (mut est, mut est_floor, mut new, mut new_floor) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..samples {
        est.push(dp.run(PROG_POD_INGRESS, &udp, repeat)?);
        est_floor.push(dp.run(PROG_BENCH_FLOOR, &udp, repeat)?);
        new.push(dp.run(PROG_POD_INGRESS, &syn, repeat)?);
        new_floor.push(dp.run(PROG_BENCH_FLOOR, &syn, repeat)?);
    }
    let (e, ef, n, nf) = (
        median(&est),
        median(&est_floor),
        median(&new),
        median(&new_floor),
    );
    report.push(
        Metric::new(
            "p2_floor_ratio_established",
            e / ef,
            "ratio",
            format!("UDP, approved conntrack entry: enf_pod_in {e:.1} ns / floor {ef:.1} ns ({n_rules}-rule generation)"),
        )
        .goal(Goal::AtMost(1.5)),
    );
    report.push(
        Metric::new(
            "p2_floor_ratio_new",
            n / nf,
            "ratio",
            format!("TCP SYN, full policy decision + conntrack write (in place: the entry exists, as a local client's egress hook leaves it): enf_pod_in {n:.1} ns / floor {nf:.1} ns"),
        )
        .goal(Goal::AtMost(3.0)),
    );
    report.push(Metric::new(
        "p2_established_ns",
        e,
        "ns",
        "enf_pod_in, established UDP",
    ));
    report.push(Metric::new(
        "p2_new_ns",
        n,
        "ns",
        "enf_pod_in, TCP SYN judged by policy",
    ));
    report.push(Metric::new(
        "p2_floor_ns",
        ef,
        "ns",
        "enf_bench_floor (parse + 1 hash lookup), UDP",
    ));
    // The object (and its maps) goes first, then the namespace with its veths.
    drop(dp);
    drop(netns);
    Ok(())
}
