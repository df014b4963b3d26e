//! Upstream's SCTP network-policy cases (kubernetes/kubernetes
//! `test/e2e/network/netpol/network_policy.go`, context "`NetworkPolicy` between server
//! and client using SCTP", plus its cases about SCTP rules isolating TCP) on the real
//! programs through `BPF_PROG_TEST_RUN`: the kernel has no SCTP sockets, so the lab
//! cannot probe SCTP.
//!
//! The cluster is upstream's model (namespaces x, y, z × pods a, b, c, container ports
//! `serve-{80,81}-{tcp,udp,sctp}`), each pod with an address and, as host-side
//! interface, one of the veths of a private network namespace. Each step compiles the
//! model plus the case's policies with the agent's own pipeline (`model::load_str`,
//! `policy::Cluster::from_objects`, `compile::compile`,
//! `GenerationContent::from_spec`) and writes it with the agent's `GenerationWriter`
//! into the loaded object's maps (so a multi-step case also flips generations). Then
//! for every ordered pair of pods and every checked port/protocol, a crafted opening
//! packet (SCTP INIT, TCP SYN) runs through the source's egress program and, if it
//! passes, the destination's ingress program: connected = both pass. For a connected
//! pair the answer (INIT ACK, SYN-ACK) must pass both programs back (stateful).
//!
//! Privileged: `cargo test -p enforcer-tests --test bpf_sctp`.

use std::cell::Cell;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use enforcer::dataplane::content::GenerationContent;
use enforcer::dataplane::object::BPF_OBJECT;
use enforcer::model::workload::host_iface_name;
use enforcer_tests::bpf::{
    dataplane::{CompiledDataplane, Hook},
    netns::NetNs,
    packet::{ACK, PROTO_SCTP, PROTO_TCP, SCTP_INIT, SCTP_INIT_ACK, SYN, V4, sctp_chunk, tcp, v6},
};
use enforcer_tests::netpol::{N, NAMESPACES, PODS, Reach, model_yaml, np, open, pod_name};

/// `TC_ACT_OK`.
const PASS: u32 = 0;

fn v4_of(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 7, 10 + i as u8)
}

fn v6_of(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 2, 0, 7, 0, 0, 0, 0x10 + i as u16)
}

/// The model with each pod's addresses in its status, as the API server has them.
fn model_with_addresses() -> String {
    let mut out = model_yaml();
    for (n, ns) in NAMESPACES.iter().enumerate() {
        for (p, pod) in PODS.iter().enumerate() {
            let i = n * 3 + p;
            let head = format!("kind: Pod\nmetadata:\n  name: {pod}\n  namespace: {ns}\n");
            let at = out
                .find(&head)
                .unwrap_or_else(|| panic!("pod {ns}/{pod} in the model"));
            let end = out[at..].find("---\n").map_or(out.len(), |e| at + e);
            let status = format!(
                "status:\n  podIP: {}\n  podIPs: [{{ip: '{}'}}, {{ip: '{}'}}]\n",
                v4_of(i),
                v4_of(i),
                v6_of(i)
            );
            out.insert_str(end, &status);
        }
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Sctp,
    Tcp,
}

struct Check {
    port: u16,
    proto: Proto,
    ipv6: bool,
    reach: Reach,
}

fn sctp(port: u16, reach: Reach) -> Check {
    Check {
        port,
        proto: Proto::Sctp,
        ipv6: false,
        reach,
    }
}

fn tcp_check(port: u16, reach: Reach) -> Check {
    Check {
        port,
        proto: Proto::Tcp,
        ipv6: false,
        reach,
    }
}

struct Step {
    what: &'static str,
    /// Every policy in force after this step (the generation is compiled from scratch).
    policies: Vec<String>,
    checks: Vec<Check>,
}

struct Case {
    name: &'static str,
    steps: Vec<Step>,
}

fn single(name: &'static str, policies: Vec<String>, checks: Vec<Check>) -> Case {
    Case {
        name,
        steps: vec![Step {
            what: "create",
            policies,
            checks,
        }],
    }
}

const NS_Y: &str = "namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}";

fn x_a_ingress(name: &str, rules: &str) -> String {
    np(
        "x",
        name,
        &format!(
            "podSelector: {{matchLabels: {{pod: a}}}}\npolicyTypes: [Ingress]\ningress:\n{rules}"
        ),
    )
}

#[allow(clippy::too_many_lines, reason = "the case table")]
fn cases() -> Vec<Case> {
    let deny_ingress_x = || np("x", "deny-all", "podSelector: {}\npolicyTypes: [Ingress]");
    let only_ns_y = open().peer("x", "x/a", false).peer("z", "x/a", false);
    let x_a_closed = open().ingress("x/a", false);
    vec![
        single(
            "[sctp] should support a 'default-deny-ingress' policy",
            vec![deny_ingress_x()],
            vec![
                sctp(80, open().ingress("x", false)),
                sctp(81, open().ingress("x", false)),
                Check {
                    ipv6: true,
                    ..sctp(80, open().ingress("x", false))
                },
            ],
        ),
        single(
            "[sctp] should enforce policy based on Ports",
            vec![x_a_ingress(
                "allow-ingress-on-port-81-ns-x",
                &format!("- from: [{{{NS_Y}}}]\n  ports: [{{port: 81, protocol: SCTP}}]"),
            )],
            vec![
                sctp(81, only_ns_y),
                sctp(80, x_a_closed),
                tcp_check(81, x_a_closed),
            ],
        ),
        single(
            "[sctp] should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
            vec![x_a_ingress(
                "allow-ns-y-pod-a-via-namespace-pod-selector",
                &format!("- from: [{{{NS_Y}, podSelector: {{matchLabels: {{pod: a}}}}}}]"),
            )],
            vec![
                sctp(80, open().ingress("x/a", false).peer("y/a", "x/a", true)),
                sctp(81, open().ingress("x/a", false).peer("y/a", "x/a", true)),
            ],
        ),
        single(
            "should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin doesn't support SCTP",
            vec![
                deny_ingress_x(),
                x_a_ingress(
                    "allow-only-sctp-ingress-on-port-81",
                    "- ports: [{port: 81, protocol: SCTP}]",
                ),
            ],
            vec![
                tcp_check(81, open().ingress("x", false)),
                sctp(81, open().ingress("x", false).ingress("x/a", true)),
                sctp(80, open().ingress("x", false)),
            ],
        ),
        single(
            "should properly isolate pods that are selected by a policy allowing SCTP, even if the plugin doesn't support SCTP",
            vec![x_a_ingress(
                "allow-only-sctp-ingress-on-port-80",
                "- ports: [{port: 80, protocol: SCTP}]",
            )],
            vec![
                tcp_check(81, x_a_closed),
                tcp_check(80, x_a_closed),
                sctp(80, open()),
                sctp(81, x_a_closed),
            ],
        ),
        single(
            "[sctp] should not allow access by SCTP when a policy specifies only TCP (upstream's TCP-vs-UDP case, for SCTP)",
            vec![x_a_ingress(
                "allow-only-tcp-ingress-on-port-81",
                "- ports: [{port: 81, protocol: TCP}]",
            )],
            vec![tcp_check(81, open()), sctp(81, x_a_closed)],
        ),
        single(
            "[sctp][extra] ingress on one named SCTP port from namespace y",
            vec![x_a_ingress(
                "allow-serve-81-sctp",
                &format!(
                    "- from: [{{{NS_Y}}}]\n  ports: [{{port: serve-81-sctp, protocol: SCTP}}]"
                ),
            )],
            vec![
                sctp(81, only_ns_y),
                sctp(80, x_a_closed),
                tcp_check(81, x_a_closed),
            ],
        ),
        single(
            "[sctp][extra] egress port range (endPort) 80-81 on SCTP only",
            vec![np(
                "x",
                "allow-egress-sctp-80-81",
                "podSelector: {matchLabels: {pod: a}}\npolicyTypes: [Egress]\negress:\n- ports: [{port: 80, endPort: 81, protocol: SCTP}]",
            )],
            vec![
                sctp(80, open()),
                sctp(81, open()),
                tcp_check(80, open().egress("x/a", false)),
            ],
        ),
        Case {
            name: "[sctp][extra] should enforce updated policy (allow all, then the same policy denies all)",
            steps: vec![
                Step {
                    what: "allow all",
                    policies: vec![np(
                        "x",
                        "allow-all-mutate-to-deny-all",
                        "podSelector: {}\npolicyTypes: [Ingress]\ningress: [{}]",
                    )],
                    checks: vec![sctp(81, open())],
                },
                Step {
                    what: "update to deny all",
                    policies: vec![np(
                        "x",
                        "allow-all-mutate-to-deny-all",
                        "podSelector: {}\npolicyTypes: [Ingress]\ningress: []",
                    )],
                    checks: vec![sctp(81, open().ingress("x", false))],
                },
            ],
        },
    ]
}

/// The program run of one opening packet and, when it connects, its answer.
struct Prober<'a> {
    dp: &'a CompiledDataplane,
    ifindex: &'a [u32; N],
    next_sport: Cell<u16>,
}

impl Prober<'_> {
    fn frame(
        check: &Check,
        from: usize,
        to: usize,
        sport: u16,
        dport: u16,
        answer: bool,
    ) -> Vec<u8> {
        let l4 = match (check.proto, answer) {
            (Proto::Sctp, false) => sctp_chunk(sport, dport, SCTP_INIT, 0x1234_5678),
            (Proto::Sctp, true) => sctp_chunk(sport, dport, SCTP_INIT_ACK, 0x1234_5679),
            (Proto::Tcp, false) => tcp(sport, dport, SYN),
            (Proto::Tcp, true) => tcp(sport, dport, SYN | ACK),
        };
        let proto = match check.proto {
            Proto::Sctp => PROTO_SCTP,
            Proto::Tcp => PROTO_TCP,
        };
        if check.ipv6 {
            v6(v6_of(from), v6_of(to), &[], proto, &l4)
        } else {
            V4::new(v4_of(from), v4_of(to), proto).frame(&l4)
        }
    }

    /// Whether both legs pass `frame` from pod `from` to pod `to`.
    fn both_legs(&self, frame: &[u8], from: usize, to: usize) -> bool {
        self.dp
            .run(Hook::PodEgress, frame, self.ifindex[from], 0)
            .action
            == PASS
            && self
                .dp
                .run(Hook::PodIngress, frame, self.ifindex[to], 0)
                .action
                == PASS
    }

    /// Connected or not; an error if an allowed opening's answer is dropped.
    fn probe(&self, check: &Check, from: usize, to: usize) -> Result<bool, String> {
        let sport = self.next_sport.get();
        self.next_sport
            .set(if sport >= 60_000 { 10_000 } else { sport + 1 });
        let open = Self::frame(check, from, to, sport, check.port, false);
        if !self.both_legs(&open, from, to) {
            return Ok(false);
        }
        let answer = Self::frame(check, to, from, check.port, sport, true);
        if self.both_legs(&answer, to, from) {
            Ok(true)
        } else {
            Err(format!(
                "{} -> {}:{}/{:?}: the answer to an allowed opening was dropped",
                pod_name(from),
                pod_name(to),
                check.port,
                check.proto
            ))
        }
    }
}

/// Compiles the model plus `policies` and writes the generation.
fn install(
    dp: &mut CompiledDataplane,
    ifindex: &[u32; N],
    policies: &[String],
) -> Result<(), String> {
    let mut text = model_with_addresses();
    for p in policies {
        text.push_str("---\n");
        text.push_str(p);
    }
    let objects = enforcer::model::load_str(Path::new("netpol-sctp.yaml"), &text)
        .map_err(|e| format!("load: {e}"))?;
    let (cluster, _warnings) =
        enforcer::policy::Cluster::from_objects(&objects).map_err(|e| format!("policy: {e}"))?;
    let spec = enforcer::compile::compile(&cluster).map_err(|e| format!("compile: {e}"))?;
    let content = GenerationContent::from_spec(&spec, |iface| {
        (0..N)
            .find(|i| host_iface_name(NAMESPACES[i / 3], PODS[i % 3]) == iface)
            .map(|i| ifindex[i])
    });
    if content.endpoints.len() != N {
        return Err(format!(
            "{} endpoints written, want {N}",
            content.endpoints.len()
        ));
    }
    dp.writer
        .apply(content)
        .map_err(|e| format!("write: {e}"))?;
    dp.clear_conntrack();
    Ok(())
}

#[test]
fn upstream_sctp_cases_under_bpf_prog_test_run() {
    let netns = NetNs::enter();
    let mut ifindex = [0u32; N];
    for pair in 0..N.div_ceil(2) {
        let (a, b) = netns.veth_pair(&format!("np{pair}a"), &format!("np{pair}b"));
        ifindex[2 * pair] = a;
        if 2 * pair + 1 < N {
            ifindex[2 * pair + 1] = b;
        }
    }
    let mut dp = CompiledDataplane::load(BPF_OBJECT);

    let mut failures = Vec::new();
    let mut sctp_cases = 0;
    let cases = cases();
    for case in &cases {
        let mut problems = Vec::new();
        let mut cells = 0;
        for (si, step) in case.steps.iter().enumerate() {
            let tag = format!("step {} ({})", si + 1, step.what);
            if let Err(e) = install(&mut dp, &ifindex, &step.policies) {
                problems.push(format!("{tag}: {e}"));
                break;
            }
            let prober = Prober {
                dp: &dp,
                ifindex: &ifindex,
                next_sport: Cell::new(10_000),
            };
            for check in &step.checks {
                for from in 0..N {
                    for to in (0..N).filter(|t| *t != from) {
                        cells += 1;
                        let want = check.reach.cells[from][to];
                        match prober.probe(check, from, to) {
                            Err(e) => problems.push(format!("{tag}: {e}")),
                            Ok(got) if got != want => problems.push(format!(
                                "{tag}: {} -> {}:{}/{:?}{}: {} (expected {})",
                                pod_name(from),
                                pod_name(to),
                                check.port,
                                check.proto,
                                if check.ipv6 { " (IPv6)" } else { "" },
                                if got { "connected" } else { "blocked" },
                                if want { "connected" } else { "blocked" }
                            )),
                            Ok(_) => {}
                        }
                    }
                }
            }
        }
        let sctp_checked = case
            .steps
            .iter()
            .flat_map(|s| &s.checks)
            .any(|c| c.proto == Proto::Sctp);
        sctp_cases += usize::from(sctp_checked);
        let verdict = if problems.is_empty() { "PASS" } else { "FAIL" };
        eprintln!("{verdict:4} {cells:>4} cells  {}", case.name);
        if !problems.is_empty() {
            failures.push(format!(
                "{} ({} wrong):\n    {}",
                case.name,
                problems.len(),
                problems.join("\n    ")
            ));
        }
    }
    eprintln!(
        "bpf_sctp: {} cases ({sctp_cases} with SCTP probes), {} failed",
        cases.len(),
        failures.len()
    );
    // Not vacuous: the SCTP checks deny somewhere and allow somewhere.
    let sctp_reaches: Vec<&Reach> = cases
        .iter()
        .flat_map(|c| &c.steps)
        .flat_map(|s| &s.checks)
        .filter(|c| c.proto == Proto::Sctp)
        .map(|c| &c.reach)
        .collect();
    assert!(sctp_reaches.iter().any(|r| r.denies_any()));
    assert!(sctp_reaches.iter().any(|r| !r.denies_any()));
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    drop(netns);
}
