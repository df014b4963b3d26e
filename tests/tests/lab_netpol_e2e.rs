//! The Kubernetes upstream e2e network-policy suite (kubernetes/kubernetes
//! `test/e2e/network/netpol/network_policy.go`) reproduced in one lab, with the agent
//! enforcing: its model of namespaces x, y, z × pods a, b, c, each serving ports 80 and
//! 81 over TCP and UDP (container ports named `serve-80-tcp` … as upstream names them).
//!
//! Each case is one of upstream's `It(...)` (same name; `[udp]` for its UDP context,
//! `[extra]` for cases upstream lacks: port ranges, UDP named ports, IPv6 and ingress
//! ipBlocks). A case is a sequence of steps (create, update or delete policies, relabel
//! a pod or a namespace in place); after each step the full 9×9 matrix is probed on all
//! four of 80/81 × TCP/UDP and every cell is compared with the step's expectation,
//! written like upstream's `Reachability` (start all-allowed, then `peer`, `ingress`,
//! `egress` overrides) — upstream validates one port/protocol per step, we extend its
//! truth table to the other three from the same policy semantics. Loopback (a pod to
//! itself) is not probed, as upstream ignores it. Then the case's policies are deleted
//! and labels restored before the next case.
//!
//! The test prints a PASS/FAIL line per case and fails at the end listing every failed
//! case with its wrong cells. Before bringing the lab up it checks the table itself:
//! at least 30 upstream cases, and each case's expectation denies some cell of the
//! port/protocol upstream validates exactly when upstream's does (not vacuous).
//! SCTP cases run on the real programs through `BPF_PROG_TEST_RUN` (`bpf_sctp.rs`).
//!
//! The suite runs twice: in a one-node lab, and in a two-node lab with the nine pods
//! spread over both nodes (so most flows cross nodes: the source's egress is judged on
//! one node, the destination's ingress on the other), with the same table and the same
//! assertions.
//!
//! Privileged: `cargo build --bin enforcer && cargo test -p enforcer-tests --test lab_netpol_e2e -- --nocapture`.
//! `NETPOL_CASE=<substring>` runs only the matching cases.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use enforcer::connectivity::Protocol;
use enforcer::datastore::file::FileDatastore;
use enforcer::model::Object;
use enforcer_tests::lab::{EXIT_NO, LabGuard, ProbeResult, TempDir, forget_flows, serial};
use enforcer_tests::netpol::{
    N, NAMESPACES, Reach, model_yaml, namespace_yaml, np, open, pod_index, pod_name, pod_yaml,
};

const COMBOS: [(u16, Protocol); 4] = [
    (80, Protocol::Tcp),
    (81, Protocol::Tcp),
    (80, Protocol::Udp),
    (81, Protocol::Udp),
];
/// Probe timeout: a denied TCP or UDP probe costs this much (probes run in parallel).
const TIMEOUT_MS: &str = "500";

// ---------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------

fn base_model() -> String {
    model_yaml()
}

/// Pod addresses, for the ipBlock cases.
struct Addrs {
    v4: BTreeMap<String, String>,
    v6: BTreeMap<String, String>,
}

impl Addrs {
    fn v4(&self, pod: &str) -> &str {
        self.v4
            .get(pod)
            .unwrap_or_else(|| panic!("no IPv4 for {pod}"))
    }
    fn v6(&self, pod: &str) -> &str {
        self.v6
            .get(pod)
            .unwrap_or_else(|| panic!("no IPv6 for {pod}"))
    }
}

// ---------------------------------------------------------------------------------
// Expectations: upstream's Reachability
// ---------------------------------------------------------------------------------

type Expect = Box<dyn Fn(u16, Protocol) -> Reach>;

/// The same truth table on every port and protocol.
fn same(r: Reach) -> Expect {
    Box::new(move |_, _| r)
}

fn by(f: impl Fn(u16, Protocol) -> Reach + 'static) -> Expect {
    Box::new(f)
}

const TCP: Protocol = Protocol::Tcp;
const UDP: Protocol = Protocol::Udp;
const T80: &[(u16, Protocol)] = &[(80, TCP)];
const T81: &[(u16, Protocol)] = &[(81, TCP)];
const T80_81: &[(u16, Protocol)] = &[(80, TCP), (81, TCP)];
const U80: &[(u16, Protocol)] = &[(80, UDP)];
const U81: &[(u16, Protocol)] = &[(81, UDP)];

// ---------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------

struct Step {
    what: &'static str,
    /// Documents applied (policies created or updated, pods or namespaces relabelled).
    apply: Vec<String>,
    /// Documents deleted.
    delete: Vec<String>,
    /// Probe the pods' IPv6 addresses instead of IPv4.
    ipv6: bool,
    /// The port/protocol combinations upstream validates after this step.
    upstream: &'static [(u16, Protocol)],
    expect: Expect,
}

fn step(
    what: &'static str,
    apply: Vec<String>,
    upstream: &'static [(u16, Protocol)],
    expect: Expect,
) -> Step {
    Step {
        what,
        apply,
        delete: Vec::new(),
        ipv6: false,
        upstream,
        expect,
    }
}

struct Case {
    name: &'static str,
    /// An upstream case (else an `[extra]` one).
    upstream: bool,
    /// Whether upstream's truth tables deny anything (some cases only check that
    /// everything stays allowed).
    upstream_denies: bool,
    /// Set when enforcer is known to fail the case: the reason, printed.
    known_failure: Option<&'static str>,
    steps: Vec<Step>,
}

fn case(name: &'static str, upstream_denies: bool, steps: Vec<Step>) -> Case {
    Case {
        name,
        upstream: !name.starts_with("[extra]"),
        upstream_denies,
        known_failure: None,
        steps,
    }
}

/// One step that creates `policies` and expects `expect`; upstream's truth table for
/// it denies something.
fn single(
    name: &'static str,
    upstream: &'static [(u16, Protocol)],
    policies: Vec<String>,
    expect: Expect,
) -> Case {
    case(name, true, vec![step("create", policies, upstream, expect)])
}

/// Like [`single`] for the cases where upstream's truth table is all-allowed.
fn single_open(
    name: &'static str,
    upstream: &'static [(u16, Protocol)],
    policies: Vec<String>,
    expect: Expect,
) -> Case {
    case(
        name,
        false,
        vec![step("create", policies, upstream, expect)],
    )
}

const DENY_INGRESS: &str = "podSelector: {}\npolicyTypes: [Ingress]";
const NS_Y: &str = "namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}";

/// x/a's ingress from namespace y on `ports` (a YAML flow list).
fn x_a_from_ns_y(name: &str, ports: &str) -> String {
    np(
        "x",
        name,
        &format!(
            "podSelector: {{matchLabels: {{pod: a}}}}\npolicyTypes: [Ingress]\ningress:\n- from: [{{{NS_Y}}}]\n  ports: {ports}"
        ),
    )
}

/// x/a's ingress from pods `peer` (a YAML flow mapping of one peer or a list).
fn x_a_ingress_from(name: &str, from: &str) -> String {
    np(
        "x",
        name,
        &format!(
            "podSelector: {{matchLabels: {{pod: a}}}}\npolicyTypes: [Ingress]\ningress:\n- from: {from}"
        ),
    )
}

/// x/a's egress with `rules` (YAML list items at column 0).
fn x_a_egress(name: &str, rules: &str) -> String {
    np(
        "x",
        name,
        &format!(
            "podSelector: {{matchLabels: {{pod: a}}}}\npolicyTypes: [Egress]\negress:\n{rules}"
        ),
    )
}

#[allow(clippy::too_many_lines, reason = "the case table")]
fn cases(ip: &Addrs) -> Vec<Case> {
    let deny_ingress_x = || np("x", "deny-ingress", DENY_INGRESS);
    let deny_all_x = || {
        np(
            "x",
            "deny-all",
            "podSelector: {}\npolicyTypes: [Ingress, Egress]",
        )
    };
    let only_x_b = open().ingress("x/a", false).peer("x/b", "x/a", true);
    let only_ns_y = open().peer("x", "x/a", false).peer("z", "x/a", false);
    let only_y_a = open().ingress("x/a", false).peer("y/a", "x/a", true);
    let y_a_policy = |name| {
        x_a_ingress_from(
            name,
            &format!("[{{{NS_Y}, podSelector: {{matchLabels: {{pod: a}}}}}}]"),
        )
    };
    let big_cidr_except_x_b = || {
        x_a_egress(
            "allow-client-a-via-cidr-egress-rule",
            &format!(
                "- to: [{{ipBlock: {{cidr: 192.0.0.0/4, except: ['{}/32']}}}}]",
                ip.v4("x/b")
            ),
        )
    };
    let ns_y_relabelled = namespace_yaml("y", &[("ns2", "updated")]);
    let x_b_relabelled = pod_yaml("x", "b", &[("pod2", "updated")]);
    let x_a_isolated = pod_yaml("x", "a", &[("target", "isolated")]);

    vec![
        single(
            "should support a 'default-deny-ingress' policy",
            T80,
            vec![deny_ingress_x()],
            same(open().ingress("x", false)),
        ),
        single(
            "should support a 'default-deny-all' policy",
            T80,
            vec![deny_all_x()],
            same(open().ingress("x", false).egress("x", false)),
        ),
        single(
            "should enforce policy to allow traffic from pods within server namespace based on PodSelector",
            T80,
            vec![x_a_ingress_from(
                "x-a-allows-x-b",
                "[{podSelector: {matchLabels: {pod: b}}}]",
            )],
            same(only_x_b),
        ),
        single(
            "should enforce policy to allow ingress traffic for a target",
            T80,
            vec![
                np("x", "deny-all", DENY_INGRESS),
                x_a_ingress_from(
                    "allow-all-to-a",
                    "[{podSelector: {}, namespaceSelector: {}}]",
                ),
            ],
            same(open().ingress("x", false).ingress("x/a", true)),
        ),
        single_open(
            "should enforce policy to allow ingress traffic from pods in all namespaces",
            T80,
            vec![x_a_ingress_from(
                "allow-from-another-ns",
                "[{namespaceSelector: {matchLabels: {}}}]",
            )],
            same(open()),
        ),
        single(
            "should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector",
            T80,
            vec![x_a_ingress_from(
                "allow-client-a-via-ns-selector",
                &format!("[{{{NS_Y}}}]"),
            )],
            same(only_ns_y),
        ),
        single(
            "should enforce policy based on PodSelector with MatchExpressions",
            T80,
            vec![x_a_ingress_from(
                "x-a-allows-x-b",
                "[{podSelector: {matchExpressions: [{key: pod, operator: In, values: [b]}]}}]",
            )],
            same(only_x_b),
        ),
        single(
            "should enforce policy based on NamespaceSelector with MatchExpressions",
            T80,
            vec![x_a_ingress_from(
                "allow-ns-y-match-selector",
                "[{namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [y]}]}}]",
            )],
            same(only_ns_y),
        ),
        single(
            "should enforce policy based on PodSelector or NamespaceSelector",
            T80,
            vec![x_a_ingress_from(
                "allow-ns-y-match-selector",
                "[{namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [x]}]}}, {podSelector: {matchLabels: {pod: b}}}]",
            )],
            same(open().peer("x/c", "x/a", false)),
        ),
        single(
            "should enforce policy based on PodSelector and NamespaceSelector",
            T80,
            vec![x_a_ingress_from(
                "allow-ns-y-podselector-and-nsselector",
                "[{namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [x]}]}, podSelector: {matchLabels: {pod: b}}}]",
            )],
            same(
                open()
                    .ingress("x/a", false)
                    .peer("y/b", "x/a", true)
                    .peer("z/b", "x/a", true),
            ),
        ),
        single(
            "should enforce policy based on Multiple PodSelectors and NamespaceSelectors",
            T80,
            vec![x_a_ingress_from(
                "allow-ns-y-z-pod-b-c",
                "[{namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [x]}]}, podSelector: {matchExpressions: [{key: pod, operator: In, values: [b, c]}]}}]",
            )],
            same(
                open()
                    .peer("x", "x/a", false)
                    .peer("y/a", "x/a", false)
                    .peer("z/a", "x/a", false),
            ),
        ),
        single(
            "should enforce policy based on any PodSelectors",
            T80,
            vec![x_a_ingress_from(
                "allow-ns-x-pod-b-c",
                "[{podSelector: {matchLabels: {pod: b}}}, {podSelector: {matchLabels: {pod: c}}}]",
            )],
            same(
                open()
                    .ingress("x/a", false)
                    .peer("x/b", "x/a", true)
                    .peer("x/c", "x/a", true),
            ),
        ),
        single(
            "should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
            T80,
            vec![y_a_policy("allow-ns-y-pod-a-via-namespace-pod-selector")],
            same(only_y_a),
        ),
        single(
            "should enforce policy based on Ports",
            T81,
            vec![x_a_from_ns_y(
                "allow-client-a-via-ns-selector",
                "[{port: 81, protocol: TCP}]",
            )],
            by(move |port, proto| {
                if (port, proto) == (81, TCP) {
                    only_ns_y
                } else {
                    open().ingress("x/a", false)
                }
            }),
        ),
        case(
            "should enforce multiple, stacked policies with overlapping podSelectors",
            true,
            vec![
                step(
                    "allow 81 from y",
                    vec![x_a_from_ns_y(
                        "allow-client-a-via-ns-selector",
                        "[{port: 81, protocol: TCP}]",
                    )],
                    T80_81,
                    by(move |port, proto| {
                        if (port, proto) == (81, TCP) {
                            only_ns_y
                        } else {
                            open().ingress("x/a", false)
                        }
                    }),
                ),
                step(
                    "stack: allow 80 from y",
                    vec![x_a_from_ns_y(
                        "allow-client-a-via-ns-selector-80",
                        "[{port: 80, protocol: TCP}]",
                    )],
                    T80,
                    by(move |_, proto| {
                        if proto == TCP {
                            only_ns_y
                        } else {
                            open().ingress("x/a", false)
                        }
                    }),
                ),
            ],
        ),
        single_open(
            "should support allow-all policy",
            T80_81,
            vec![np(
                "x",
                "allow-all",
                "podSelector: {}\npolicyTypes: [Ingress]\ningress: [{}]",
            )],
            same(open()),
        ),
        single(
            "should allow ingress access on one named port",
            T80_81,
            vec![np(
                "x",
                "allow-all",
                "podSelector: {}\npolicyTypes: [Ingress]\ningress:\n- ports: [{port: serve-81-tcp}]",
            )],
            by(|port, proto| {
                if (port, proto) == (81, TCP) {
                    open()
                } else {
                    open().ingress("x", false)
                }
            }),
        ),
        single(
            "should allow ingress access from namespace on one named port",
            T80_81,
            vec![x_a_from_ns_y(
                "allow-client-a-via-ns-selector-80",
                "[{port: serve-80-tcp, protocol: TCP}]",
            )],
            by(move |port, proto| {
                if (port, proto) == (80, TCP) {
                    only_ns_y
                } else {
                    open().ingress("x/a", false)
                }
            }),
        ),
        single(
            "should allow egress access on one named port",
            T80_81,
            vec![np(
                "x",
                "allow-egress",
                "podSelector: {}\npolicyTypes: [Egress]\negress:\n- ports: [{port: serve-80-tcp}]",
            )],
            by(|port, proto| {
                if (port, proto) == (80, TCP) {
                    open()
                } else {
                    open().egress("x", false)
                }
            }),
        ),
        case(
            "should enforce updated policy",
            true,
            vec![
                step(
                    "allow all",
                    vec![np(
                        "x",
                        "allow-all-mutate-to-deny-all",
                        "podSelector: {}\npolicyTypes: [Ingress]\ningress: [{}]",
                    )],
                    T81,
                    same(open()),
                ),
                step(
                    "update the same policy to deny all",
                    vec![np(
                        "x",
                        "allow-all-mutate-to-deny-all",
                        "podSelector: {}\npolicyTypes: [Ingress]\ningress: []",
                    )],
                    T81,
                    same(open().ingress("x", false)),
                ),
            ],
        ),
        case(
            "should allow ingress access from updated namespace",
            true,
            vec![
                step(
                    "allow from namespaces ns2=updated",
                    vec![x_a_ingress_from(
                        "allow-client-a-via-ns-selector",
                        "[{namespaceSelector: {matchLabels: {ns2: updated}}}]",
                    )],
                    T80,
                    same(open().ingress("x/a", false)),
                ),
                step(
                    "label namespace y ns2=updated",
                    vec![ns_y_relabelled],
                    T80,
                    same(open().ingress("x/a", false).peer("y", "*", true)),
                ),
            ],
        ),
        case(
            "should allow ingress access from updated pod",
            true,
            vec![
                step(
                    "allow from pod=b,pod2=updated",
                    vec![x_a_ingress_from(
                        "allow-client-a-via-pod-selector",
                        "[{podSelector: {matchLabels: {pod: b, pod2: updated}}}]",
                    )],
                    T80,
                    same(open().ingress("x/a", false)),
                ),
                step(
                    "label pod x/b pod2=updated",
                    vec![x_b_relabelled],
                    T80,
                    same(only_x_b),
                ),
            ],
        ),
        single(
            "should deny ingress from pods on other namespaces",
            T80,
            vec![np(
                "x",
                "deny-empty-policy",
                "podSelector: {}\npolicyTypes: [Ingress]\ningress:\n- from: [{podSelector: {matchLabels: {}}}]",
            )],
            same(open().peer("y", "x", false).peer("z", "x", false)),
        ),
        case(
            "should deny ingress access to updated pod",
            true,
            vec![
                step(
                    "deny ingress to target=isolated",
                    vec![np(
                        "x",
                        "deny-ingress-via-label-selector",
                        "podSelector: {matchLabels: {target: isolated}}\npolicyTypes: [Ingress]",
                    )],
                    T80,
                    same(open()),
                ),
                step(
                    "label pod x/a target=isolated",
                    vec![x_a_isolated],
                    T80,
                    same(open().ingress("x/a", false)),
                ),
            ],
        ),
        single(
            "should deny egress from pods based on PodSelector",
            T80,
            vec![np(
                "x",
                "deny-egress-pod-a",
                "podSelector: {matchLabels: {pod: a}}\npolicyTypes: [Egress]",
            )],
            same(open().egress("x/a", false)),
        ),
        single(
            "should deny egress from all pods in a namespace",
            T80,
            vec![np(
                "x",
                "deny-egress-ns-x",
                "podSelector: {}\npolicyTypes: [Egress]",
            )],
            same(open().egress("x", false)),
        ),
        single(
            "should work with Ingress, Egress specified together",
            T80_81,
            vec![np(
                "x",
                "allow-client-a-via-pod-selector",
                "podSelector: {matchLabels: {pod: a}}\npolicyTypes: [Egress, Ingress]\ningress:\n- from: [{podSelector: {matchLabels: {pod: b}}}]\negress:\n- ports: [{port: 80}]",
            )],
            by(move |port, proto| {
                if (port, proto) == (80, TCP) {
                    only_x_b
                } else {
                    only_x_b.egress("x/a", false)
                }
            }),
        ),
        single(
            "should support denying of egress traffic on the client side (even if the server explicitly allows this traffic)",
            T80,
            vec![
                x_a_egress(
                    "allow-to-ns-y-pod-a",
                    &format!("- to: [{{{NS_Y}, podSelector: {{matchLabels: {{pod: a}}}}}}]"),
                ),
                np(
                    "y",
                    "allow-from-xa-on-ya-match-selector",
                    "podSelector: {matchLabels: {pod: a}}\npolicyTypes: [Ingress]\ningress:\n- from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: x}}, podSelector: {matchLabels: {pod: a}}}]",
                ),
                np(
                    "y",
                    "allow-from-xa-on-yb-match-selector",
                    "podSelector: {matchLabels: {pod: b}}\npolicyTypes: [Ingress]\ningress:\n- from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: x}}, podSelector: {matchLabels: {pod: a}}}]",
                ),
            ],
            same(
                open()
                    .egress("x/a", false)
                    .ingress("y/a", false)
                    .peer("x/a", "y/a", true)
                    .ingress("y/b", false),
            ),
        ),
        single(
            "should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector",
            T80,
            vec![x_a_egress(
                "allow-to-ns-y-pod-a",
                &format!("- to: [{{{NS_Y}, podSelector: {{matchLabels: {{pod: a}}}}}}]"),
            )],
            same(open().egress("x/a", false).peer("x/a", "y/a", true)),
        ),
        single(
            "should enforce ingress policy allowing any port traffic to a server on a specific protocol",
            &[(80, TCP), (80, UDP)],
            vec![np(
                "x",
                "allow-ingress-by-proto",
                "podSelector: {matchLabels: {pod: a}}\npolicyTypes: [Ingress]\ningress:\n- ports: [{protocol: TCP}]",
            )],
            by(|_, proto| {
                if proto == TCP {
                    open()
                } else {
                    open().ingress("x/a", false)
                }
            }),
        ),
        case(
            "should enforce multiple ingress policies with ingress allow-all policy taking precedence",
            true,
            vec![
                step(
                    "allow ingress on port 80",
                    vec![np(
                        "x",
                        "allow-ingress-port-80",
                        "podSelector: {}\npolicyTypes: [Ingress]\ningress:\n- ports: [{port: 80}]",
                    )],
                    T81,
                    by(|port, proto| {
                        if (port, proto) == (80, TCP) {
                            open()
                        } else {
                            open().ingress("x", false)
                        }
                    }),
                ),
                step(
                    "add allow-all ingress",
                    vec![np(
                        "x",
                        "allow-ingress",
                        "podSelector: {}\npolicyTypes: [Ingress]\ningress: [{}]",
                    )],
                    T81,
                    same(open()),
                ),
            ],
        ),
        case(
            "should enforce multiple egress policies with egress allow-all policy taking precedence",
            true,
            vec![
                step(
                    "allow egress on port 80",
                    vec![np(
                        "x",
                        "allow-egress-port-80",
                        "podSelector: {}\npolicyTypes: [Egress]\negress:\n- ports: [{port: 80}]",
                    )],
                    T81,
                    by(|port, proto| {
                        if (port, proto) == (80, TCP) {
                            open()
                        } else {
                            open().egress("x", false)
                        }
                    }),
                ),
                step(
                    "add allow-all egress",
                    vec![np(
                        "x",
                        "allow-egress",
                        "podSelector: {}\npolicyTypes: [Egress]\negress: [{}]",
                    )],
                    T81,
                    same(open()),
                ),
            ],
        ),
        case(
            "should stop enforcing policies after they are deleted",
            true,
            vec![
                step(
                    "deny all in and out of x",
                    vec![deny_all_x()],
                    T80,
                    same(open().ingress("x", false).egress("x", false)),
                ),
                Step {
                    delete: vec![deny_all_x()],
                    ..step("delete the policy", Vec::new(), T80, same(open()))
                },
            ],
        ),
        single(
            "should allow egress access to server in CIDR block",
            T80,
            vec![x_a_egress(
                "allow-client-a-via-cidr-egress-rule",
                &format!("- to: [{{ipBlock: {{cidr: '{}/32'}}}}]", ip.v4("y/b")),
            )],
            same(open().egress("x/a", false).peer("x/a", "y/b", true)),
        ),
        single(
            "should enforce except clause while egress access to server in CIDR block",
            T80,
            vec![big_cidr_except_x_b()],
            same(open().peer("x/a", "x/b", false)),
        ),
        case(
            "should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed",
            true,
            vec![
                step(
                    "allow a /4 except x/b",
                    vec![big_cidr_except_x_b()],
                    T80,
                    same(open().peer("x/a", "x/b", false)),
                ),
                step(
                    "update the policy to allow x/b's /32 only",
                    vec![x_a_egress(
                        "allow-client-a-via-cidr-egress-rule",
                        &format!("- to: [{{ipBlock: {{cidr: '{}/32'}}}}]", ip.v4("x/b")),
                    )],
                    T80,
                    same(open().egress("x/a", false).peer("x/a", "x/b", true)),
                ),
            ],
        ),
        case(
            "should enforce policies to check ingress and egress policies can be controlled independently based on PodSelector",
            true,
            vec![
                step(
                    "allow all egress of x/a",
                    vec![x_a_egress("allow-egress-for-target", "- {}")],
                    T80,
                    same(open()),
                ),
                step(
                    "deny all ingress of x/a",
                    vec![np(
                        "x",
                        "deny-ingress-via-label-selector",
                        "podSelector: {matchLabels: {pod: a}}\npolicyTypes: [Ingress]",
                    )],
                    T80,
                    same(open().ingress("x/a", false)),
                ),
            ],
        ),
        single(
            "should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin doesn't support SCTP",
            T81,
            vec![
                deny_ingress_x(),
                np(
                    "x",
                    "allow-only-sctp-ingress-on-port-81",
                    "podSelector: {matchLabels: {pod: a}}\npolicyTypes: [Ingress]\ningress:\n- ports: [{port: 81, protocol: SCTP}]",
                ),
            ],
            same(open().ingress("x", false)),
        ),
        single(
            "should properly isolate pods that are selected by a policy allowing SCTP, even if the plugin doesn't support SCTP",
            T81,
            vec![np(
                "x",
                "allow-only-sctp-ingress-on-port-80",
                "podSelector: {matchLabels: {pod: a}}\npolicyTypes: [Ingress]\ningress:\n- ports: [{port: 80, protocol: SCTP}]",
            )],
            same(open().ingress("x/a", false)),
        ),
        single(
            "should not allow access by TCP when a policy specifies only UDP",
            T81,
            vec![np(
                "x",
                "allow-only-udp-ingress-on-port-81",
                "podSelector: {matchLabels: {pod: a}}\npolicyTypes: [Ingress]\ningress:\n- ports: [{port: 81, protocol: UDP}]",
            )],
            by(|port, proto| {
                if (port, proto) == (81, UDP) {
                    open()
                } else {
                    open().ingress("x/a", false)
                }
            }),
        ),
        single(
            "should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using default ns label",
            T80,
            vec![x_a_ingress_from(
                "allow-client-a-via-ns-selector-for-immutable-ns-label",
                &format!("[{{{NS_Y}}}]"),
            )],
            same(only_ns_y),
        ),
        single(
            "should enforce policy based on NamespaceSelector with MatchExpressions using default ns label",
            T80,
            vec![x_a_egress(
                "allow-ns-y-match-selector-for-immutable-ns-label",
                "- to: [{namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [y]}]}}]",
            )],
            same(open().peer("x/a", "y", false)),
        ),
        // ---- upstream's "NetworkPolicy between server and client using UDP" ----
        single(
            "[udp] should support a 'default-deny-ingress' policy",
            U80,
            vec![np("x", "deny-all", DENY_INGRESS)],
            same(open().ingress("x", false)),
        ),
        single(
            "[udp] should enforce policy based on Ports",
            U81,
            vec![x_a_from_ns_y(
                "allow-ingress-on-port-81-ns-x",
                "[{port: 81, protocol: UDP}]",
            )],
            by(move |port, proto| {
                if (port, proto) == (81, UDP) {
                    only_ns_y
                } else {
                    open().ingress("x/a", false)
                }
            }),
        ),
        single(
            "[udp] should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
            U80,
            vec![y_a_policy("allow-ns-y-pod-a-via-namespace-pod-selector")],
            same(only_y_a),
        ),
        // ---- beyond upstream: port ranges, UDP named ports, IPv6, ingress ipBlock ----
        single(
            "[extra] ingress port range (endPort) 80-81 from namespace y",
            T80_81,
            vec![x_a_from_ns_y(
                "allow-80-81-from-y",
                "[{port: 80, endPort: 81, protocol: TCP}]",
            )],
            by(move |_, proto| {
                if proto == TCP {
                    only_ns_y
                } else {
                    open().ingress("x/a", false)
                }
            }),
        ),
        single(
            "[extra] egress port range (endPort) 81-1000 on UDP only",
            &[(80, UDP), (81, UDP), (81, TCP)],
            vec![x_a_egress(
                "allow-udp-81-1000",
                "- ports: [{port: 81, endPort: 1000, protocol: UDP}]",
            )],
            by(|port, proto| {
                if (port, proto) == (81, UDP) {
                    open()
                } else {
                    open().egress("x/a", false)
                }
            }),
        ),
        single(
            "[extra] egress on one named UDP port",
            U80,
            vec![np(
                "x",
                "allow-egress-udp-81",
                "podSelector: {}\npolicyTypes: [Egress]\negress:\n- ports: [{port: serve-81-udp, protocol: UDP}]",
            )],
            by(|port, proto| {
                if (port, proto) == (81, UDP) {
                    open()
                } else {
                    open().egress("x", false)
                }
            }),
        ),
        Case {
            steps: vec![Step {
                ipv6: true,
                ..step(
                    "create",
                    vec![x_a_egress(
                        "allow-client-a-via-cidr-egress-rule",
                        &format!("- to: [{{ipBlock: {{cidr: '{}/128'}}}}]", ip.v6("y/b")),
                    )],
                    T80,
                    same(open().egress("x/a", false).peer("x/a", "y/b", true)),
                )
            }],
            ..case(
                "[extra] egress to server in CIDR block, IPv6 (/128 of y/b)",
                true,
                Vec::new(),
            )
        },
        single(
            "[extra] ingress from an ipBlock that is a pod's IP (/32 of y/a)",
            T80,
            vec![x_a_ingress_from(
                "allow-from-y-a-ip",
                &format!("[{{ipBlock: {{cidr: '{}/32'}}}}]", ip.v4("y/a")),
            )],
            same(only_y_a),
        ),
    ]
}

// ---------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------

/// Checks the table itself: enough upstream cases, and none vacuous.
fn check_table(cases: &[Case]) -> Vec<String> {
    let mut problems = Vec::new();
    let upstream = cases.iter().filter(|c| c.upstream).count();
    if upstream < 30 {
        problems.push(format!("only {upstream} upstream cases (want at least 30)"));
    }
    for c in cases {
        let denies = c.steps.iter().any(|s| {
            s.upstream
                .iter()
                .any(|(port, proto)| (s.expect)(*port, *proto).denies_any())
        });
        if denies != c.upstream_denies {
            problems.push(format!(
                "{}: expectation denies {} on the port/protocol upstream validates, upstream's {}",
                c.name,
                if denies { "something" } else { "nothing" },
                if c.upstream_denies {
                    "does"
                } else {
                    "does not"
                }
            ));
        }
        if c.steps.iter().any(|s| s.upstream.is_empty()) {
            problems.push(format!(
                "{}: a step validates nothing upstream does",
                c.name
            ));
        }
    }
    problems
}

fn run_lab(lab: &LabGuard, args: &[&str]) -> Result<String, String> {
    let out = lab.run(args);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`enforcer lab {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn probe_matrix(
    lab: &LabGuard,
    bpffs: &[std::path::PathBuf],
    ipv6: bool,
) -> Result<Vec<ProbeResult>, String> {
    forget_flows(bpffs)?;
    let mut args = vec!["probe"];
    for ns in ["x/*", "y/*", "z/*"] {
        args.extend(["--from", ns, "--to", ns]);
    }
    args.extend(["--timeout-ms", TIMEOUT_MS, "-o", "json"]);
    if ipv6 {
        args.push("--ipv6");
    }
    // Exit 3 says a probe did not connect: an answer, not a failure.
    let out = lab.run(&args);
    if !(out.status.success() || out.status.code() == Some(EXIT_NO)) {
        return Err(format!(
            "`enforcer lab {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("probe output: {e}"))
}

/// Every cell of the probed matrix against the expectation: the wrong ones.
fn compare(step: &Step, rows: &[ProbeResult]) -> (usize, Vec<String>) {
    let mut seen: BTreeMap<(usize, usize, u16, Protocol), bool> = BTreeMap::new();
    let mut wrong = Vec::new();
    for r in rows {
        let (Some(f), Some(t)) = (pod_index(&r.from), pod_index(&r.to)) else {
            wrong.push(format!("unexpected probe {} -> {}", r.from, r.to));
            continue;
        };
        if !COMBOS.contains(&(r.port, r.protocol)) {
            wrong.push(format!("unexpected probe port {}/{:?}", r.port, r.protocol));
            continue;
        }
        seen.insert((f, t, r.port, r.protocol), r.connected);
    }
    let mut compared = 0;
    for (port, proto) in COMBOS {
        let want = (step.expect)(port, proto);
        for f in 0..N {
            for t in (0..N).filter(|t| *t != f) {
                match seen.get(&(f, t, port, proto)) {
                    None => wrong.push(format!(
                        "{} -> {}:{port}/{}: not probed",
                        pod_name(f),
                        pod_name(t),
                        proto.as_str()
                    )),
                    Some(got) => {
                        compared += 1;
                        let expected = want.cells[f][t];
                        if *got != expected {
                            wrong.push(format!(
                                "{} -> {}:{port}/{}: {} (expected {})",
                                pod_name(f),
                                pod_name(t),
                                proto.as_str(),
                                if *got { "connected" } else { "blocked" },
                                if expected { "connected" } else { "blocked" }
                            ));
                        }
                    }
                }
            }
        }
    }
    (compared, wrong)
}

/// Runs a case's steps; returns (cells compared, problems).
fn run_case(
    lab: &LabGuard,
    bpffs: &[std::path::PathBuf],
    tmp: &TempDir,
    ci: usize,
    case: &Case,
    base: &str,
) -> (usize, Vec<String>) {
    let mut problems = Vec::new();
    let mut cells = 0;
    for (si, step) in case.steps.iter().enumerate() {
        let tag = format!("step {} ({})", si + 1, step.what);
        if !step.apply.is_empty() {
            let file = tmp.write(&format!("c{ci}s{si}-apply.yaml"), &step.apply.join("---\n"));
            if let Err(e) = run_lab(lab, &["apply", "-f", &file.to_string_lossy()]) {
                problems.push(format!("{tag}: {e}"));
                break;
            }
        }
        if !step.delete.is_empty() {
            let file = tmp.write(
                &format!("c{ci}s{si}-delete.yaml"),
                &step.delete.join("---\n"),
            );
            if let Err(e) = run_lab(lab, &["delete", "-f", &file.to_string_lossy()]) {
                problems.push(format!("{tag}: {e}"));
                break;
            }
        }
        match probe_matrix(lab, bpffs, step.ipv6) {
            Err(e) => problems.push(format!("{tag}: {e}")),
            Ok(rows) => {
                let (n, wrong) = compare(step, &rows);
                cells += n;
                problems.extend(wrong.into_iter().map(|w| format!("{tag}: {w}")));
            }
        }
    }
    // Clean up: the case's policies go, labels come back.
    let policies: Vec<&String> = case
        .steps
        .iter()
        .flat_map(|s| &s.apply)
        .filter(|d| d.contains("kind: NetworkPolicy"))
        .collect();
    if !policies.is_empty() {
        let text: Vec<&str> = policies.iter().map(|s| s.as_str()).collect();
        let file = tmp.write(&format!("c{ci}-cleanup.yaml"), &text.join("---\n"));
        if let Err(e) = run_lab(lab, &["delete", "-f", &file.to_string_lossy()]) {
            problems.push(format!("cleanup: {e}"));
        }
    }
    let relabelled = case
        .steps
        .iter()
        .flat_map(|s| &s.apply)
        .any(|d| !d.contains("kind: NetworkPolicy"));
    if relabelled {
        let file = tmp.write(&format!("c{ci}-restore.yaml"), base);
        if let Err(e) = run_lab(lab, &["apply", "-f", &file.to_string_lossy()]) {
            problems.push(format!("restoring labels: {e}"));
        }
    }
    (cells, problems)
}

/// Nothing of the previous case may remain: no policy, every label as in the model.
fn assert_clean(lab: &LabGuard, store: &FileDatastore, after: &str) {
    let objects = store
        .list()
        .unwrap_or_else(|e| panic!("listing the datastore: {e}"));
    let policies: Vec<String> = objects
        .iter()
        .filter_map(|l| match &l.object {
            Object::NetworkPolicy(p) => Some(format!(
                "{}/{}",
                p.metadata.namespace.as_deref().unwrap_or(""),
                p.metadata.name
            )),
            _ => None,
        })
        .collect();
    assert!(
        policies.is_empty(),
        "after {after}: policies left: {policies:?}"
    );
    for pod in lab
        .get_pods()
        .iter()
        .filter(|p| NAMESPACES.contains(&p.namespace.as_str()))
    {
        let extra: Vec<&String> = pod.labels.keys().filter(|k| *k != "pod").collect();
        assert!(
            extra.is_empty(),
            "after {after}: {}/{} still has labels {extra:?}",
            pod.namespace,
            pod.name
        );
    }
    for l in &objects {
        if let Object::Namespace(ns) = &l.object
            && NAMESPACES.contains(&ns.metadata.name.as_str())
        {
            assert!(
                !ns.metadata.labels.contains_key("ns2"),
                "after {after}: namespace {} still has ns2",
                ns.metadata.name
            );
        }
    }
}

#[test]
fn upstream_netpol_e2e_cases_in_one_lab() {
    run_suite(1);
}

#[test]
fn upstream_netpol_e2e_cases_in_one_lab_of_two_nodes() {
    run_suite(2);
}

/// Checks the table, brings up one lab of `nodes` nodes, and runs every case in it.
fn run_suite(nodes: u32) {
    let _serial = serial();
    // The table is checked before anything is brought up (addresses are placeholders).
    let placeholder = Addrs {
        v4: (0..N)
            .map(|i| (pod_name(i), format!("198.18.0.{}", i + 1)))
            .collect(),
        v6: (0..N)
            .map(|i| (pod_name(i), format!("2001:2::{:x}", i + 1)))
            .collect(),
    };
    let problems = check_table(&cases(&placeholder));
    assert!(problems.is_empty(), "case table:\n{}", problems.join("\n"));

    let lab = LabGuard::new("np").with_nodes(nodes);
    let tmp = TempDir::new("netpol-e2e");
    let base = base_model();
    lab.up(&[&tmp.write("model.yaml", &base)], true);
    let store = FileDatastore::open(lab.state_dir().join("datastore"))
        .unwrap_or_else(|e| panic!("open datastore: {e}"));
    let bpffs = lab.bpffs_dirs();
    assert_eq!(bpffs.len(), nodes as usize);
    // With several nodes the model's pods are spread: every node runs some of them,
    // and every namespace has pods on more than one node.
    if nodes > 1 {
        let pods: Vec<_> = lab
            .get_pods()
            .into_iter()
            .filter(|p| NAMESPACES.contains(&p.namespace.as_str()))
            .collect();
        for n in lab.get_nodes() {
            let here = pods.iter().filter(|p| p.node == n.name).count();
            assert!(
                here >= N / (nodes as usize),
                "{} runs {here} of the pods",
                n.name
            );
        }
        for ns in NAMESPACES {
            let mut on: Vec<&str> = pods
                .iter()
                .filter(|p| p.namespace == ns)
                .map(|p| p.node.as_str())
                .collect();
            on.sort_unstable();
            on.dedup();
            assert!(on.len() > 1, "namespace {ns} runs on {on:?} only");
        }
    }

    let mut addrs = Addrs {
        v4: BTreeMap::new(),
        v6: BTreeMap::new(),
    };
    for p in lab.get_pods() {
        let key = format!("{}/{}", p.namespace, p.name);
        if let Some(v6) = p.ips.iter().find(|a| a.contains(':')) {
            addrs.v6.insert(key.clone(), v6.clone());
        }
        addrs.v4.insert(key, p.ip);
    }
    let cases = cases(&addrs);
    let filter = std::env::var("NETPOL_CASE").ok();

    let started = Instant::now();
    let mut report = String::new();
    let mut failed: Vec<String> = Vec::new();
    let mut known: Vec<String> = Vec::new();
    let mut ran = 0;
    let mut ran_upstream = 0;
    for (ci, c) in cases.iter().enumerate() {
        if filter.as_deref().is_some_and(|f| !c.name.contains(f)) {
            continue;
        }
        ran += 1;
        ran_upstream += usize::from(c.upstream);
        let t0 = Instant::now();
        let (cells, problems) = run_case(&lab, &bpffs, &tmp, ci, c, &base);
        let verdict = match (problems.is_empty(), c.known_failure) {
            (true, None) => "PASS",
            (false, None) => "FAIL",
            (false, Some(_)) => "KNOWN",
            (true, Some(_)) => "XPASS",
        };
        let line = format!(
            "{verdict:5} {:>2} steps {cells:>4} cells {:>5.1}s  {}",
            c.steps.len(),
            t0.elapsed().as_secs_f64(),
            c.name
        );
        eprintln!("{line}");
        let _ = writeln!(report, "{line}");
        match (problems.is_empty(), c.known_failure) {
            (false, None) => failed.push(format!(
                "{} ({} wrong):\n    {}",
                c.name,
                problems.len(),
                problems.join("\n    ")
            )),
            (false, Some(reason)) => known.push(format!("{}: {reason}", c.name)),
            (true, Some(reason)) => failed.push(format!(
                "{}: passes but is marked known_failure ({reason}): remove the mark",
                c.name
            )),
            (true, None) => {}
        }
        assert_clean(&lab, &store, c.name);
    }
    eprintln!(
        "netpol e2e ({nodes} node(s)): {ran} cases ({ran_upstream} upstream), {} failed, {} known failures, {:.0}s",
        failed.len(),
        known.len(),
        started.elapsed().as_secs_f64()
    );
    for k in &known {
        eprintln!("known failure: {k}");
    }
    assert!(ran > 0, "no case ran (NETPOL_CASE={filter:?})");
    assert!(
        failed.is_empty(),
        "{} of {ran} cases failed:\n{report}\n{}",
        failed.len(),
        failed.join("\n")
    );
}
