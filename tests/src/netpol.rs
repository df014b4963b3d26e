//! The model of the Kubernetes upstream e2e network-policy suite
//! (kubernetes/kubernetes `test/e2e/network/netpol`): namespaces x, y, z × pods a, b,
//! c, each serving ports 80 and 81 over TCP, UDP and SCTP with the container ports
//! named `serve-<port>-<protocol>`; and truth tables in the style of upstream's
//! `Reachability` (start all-allowed, then `peer`, `ingress`, `egress` overrides).
//! Shared by `lab_netpol_e2e.rs` (TCP, UDP in the lab) and `bpf_sctp.rs` (SCTP under
//! `BPF_PROG_TEST_RUN`).

use std::fmt::Write as _;

pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const PODS: [&str; 3] = ["a", "b", "c"];
/// Number of pods.
pub const N: usize = 9;

/// `ns/pod` of pod `i` (namespace-major order).
pub fn pod_name(i: usize) -> String {
    format!("{}/{}", NAMESPACES[i / 3], PODS[i % 3])
}

pub fn pod_index(name: &str) -> Option<usize> {
    let (ns, pod) = name.split_once('/')?;
    let n = NAMESPACES.iter().position(|x| *x == ns)?;
    let p = PODS.iter().position(|x| *x == pod)?;
    Some(n * 3 + p)
}

/// Namespace `ns` labelled `ns: <ns>` and `kubernetes.io/metadata.name: <ns>`, plus
/// `extra`.
pub fn namespace_yaml(ns: &str, extra: &[(&str, &str)]) -> String {
    let mut labels = format!("ns: {ns}, kubernetes.io/metadata.name: {ns}");
    for (k, v) in extra {
        let _ = write!(labels, ", {k}: {v}");
    }
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels: {{{labels}}}\n")
}

/// A pod like upstream's: labelled `pod: <name>` (plus `extra`), one container per
/// served port and protocol, the container port named `serve-<port>-<protocol>`.
pub fn pod_yaml(ns: &str, pod: &str, extra: &[(&str, &str)]) -> String {
    let mut labels = format!("pod: {pod}");
    for (k, v) in extra {
        let _ = write!(labels, ", {k}: {v}");
    }
    let mut out = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n  namespace: {ns}\n  labels: {{{labels}}}\nspec:\n  containers:\n"
    );
    for port in [80, 81] {
        for proto in ["TCP", "UDP", "SCTP"] {
            let lower = proto.to_ascii_lowercase();
            let _ = write!(
                out,
                "  - name: cont-{port}-{lower}\n    image: registry.k8s.io/e2e-test-images/agnhost:2.53\n    ports:\n    - {{name: serve-{port}-{lower}, containerPort: {port}, protocol: {proto}}}\n"
            );
        }
    }
    out
}

/// The three namespaces and nine pods, as one multi-document YAML.
pub fn model_yaml() -> String {
    let mut docs = Vec::new();
    for ns in NAMESPACES {
        docs.push(namespace_yaml(ns, &[]));
    }
    for ns in NAMESPACES {
        for pod in PODS {
            docs.push(pod_yaml(ns, pod, &[]));
        }
    }
    docs.join("---\n")
}

/// A `NetworkPolicy` named `name` in `ns` with `spec` (YAML written at column 0).
pub fn np(ns: &str, name: &str, spec: &str) -> String {
    let mut out = format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n"
    );
    for line in spec.lines().filter(|l| !l.trim().is_empty()) {
        let _ = writeln!(out, "  {line}");
    }
    out
}

/// Whether `sel` (`*`, `NS` or `NS/POD`) covers pod `i`.
pub fn covers(sel: &str, i: usize) -> bool {
    if sel == "*" {
        return true;
    }
    if sel.contains('/') {
        pod_name(i) == sel
    } else {
        NAMESPACES[i / 3] == sel
    }
}

/// `cells[from][to]`: whether a connection from pod `from` to pod `to` is expected.
/// The diagonal (a pod to itself) is never probed, as upstream ignores loopback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reach {
    pub cells: [[bool; N]; N],
}

/// Everything allowed.
pub fn open() -> Reach {
    Reach {
        cells: [[true; N]; N],
    }
}

impl Reach {
    /// Upstream's `ExpectPeer`: every flow from `from` to `to` is `allowed`.
    #[must_use]
    pub fn peer(mut self, from: &str, to: &str, allowed: bool) -> Self {
        for f in 0..N {
            for t in 0..N {
                if covers(from, f) && covers(to, t) {
                    self.cells[f][t] = allowed;
                }
            }
        }
        self
    }

    /// `ExpectAllIngress`.
    #[must_use]
    pub fn ingress(self, to: &str, allowed: bool) -> Self {
        self.peer("*", to, allowed)
    }

    /// `ExpectAllEgress`.
    #[must_use]
    pub fn egress(self, from: &str, allowed: bool) -> Self {
        self.peer(from, "*", allowed)
    }

    /// Whether some off-diagonal cell is denied.
    pub fn denies_any(&self) -> bool {
        (0..N).any(|f| (0..N).any(|t| f != t && !self.cells[f][t]))
    }
}
