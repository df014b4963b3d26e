//! Names: the maps (pinned under `<bpffs>/enforcer/<node>/`) and the programs, and
//! the capacities of the maps.

// ---------------------------------------------------------------------------------
// Map names (pinned under `<bpffs>/enforcer/<node>/` with these names).
// ---------------------------------------------------------------------------------

pub const MAP_CONFIG: &str = "ENF_CONFIG";
pub const MAP_ENDPOINTS: &str = "ENF_ENDPOINTS";
pub const MAP_PEERS_V4: &str = "ENF_PEERS_V4";
pub const MAP_PEERS_V6: &str = "ENF_PEERS_V6";
pub const MAP_PORTS: &str = "ENF_PORTS";
pub const MAP_SOURCE_PORTS: &str = "ENF_SOURCE_PORTS";
pub const MAP_VERDICTS: &str = "ENF_VERDICTS";
pub const MAP_CONNTRACK: &str = "ENF_CONNTRACK";
pub const MAP_PENDING: &str = "ENF_PENDING";
pub const MAP_FRONTENDS: &str = "ENF_FRONTENDS";
pub const MAP_NODE_PORT_CLIENTS: &str = "ENF_NP_CLIENTS";
pub const MAP_COUNTERS: &str = "ENF_COUNTERS";
pub const MAP_EVENTS: &str = "ENF_EVENTS";
/// The benchmark floor program's own map: one entry in the object (the agent loads it
/// but never pins or uses it); the benchmark loads it with `CONNTRACK_MAX`.
pub const MAP_BENCH_FLOOR: &str = "ENF_BENCH_FLOOR";

// ---------------------------------------------------------------------------------
// Program names (function names in the BPF object).
//
// The kernel keeps 15 bytes of a program's name (`BPF_OBJ_NAME_LEN` - 1), and that is
// what `bpftool prog show` prints: every name here fits, so the names in bpftool are
// the names in the source. `enf_` + the hook, `_d` for the debug-log variant.
//
// Each attached program exists in two variants built from one body (a const generic
// `DEBUG`): the production variant has no debug-log code at all (its verifier cost is
// the policy path's only), the `_d` variant writes an aya-log record per verdict while
// `CONFIG_F_DEBUG_LOG` is set. The agent loads and attaches the `_d` variants only with
// `--bpf-debug-log`.
// ---------------------------------------------------------------------------------

/// Longest program name the kernel keeps.
pub const PROG_NAME_MAX: usize = 15;

/// TCX ingress of a pod's host-side veth (packets from the pod): its egress policy.
pub const PROG_POD_EGRESS: &str = "enf_pod_eg";
pub const PROG_POD_EGRESS_DEBUG: &str = "enf_pod_eg_d";
/// TCX egress of a pod's host-side veth (packets to the pod): its ingress policy.
pub const PROG_POD_INGRESS: &str = "enf_pod_in";
pub const PROG_POD_INGRESS_DEBUG: &str = "enf_pod_in_d";
/// XDP on a host interface: untracked and preDNAT ingress denies, before an skb exists.
pub const PROG_HOST_XDP: &str = "enf_host_xdp";
pub const PROG_HOST_XDP_DEBUG: &str = "enf_host_xdp_d";
/// TCX ingress of a host interface: the host endpoint's tracked ingress chain.
pub const PROG_HOST_INGRESS: &str = "enf_host_in";
pub const PROG_HOST_INGRESS_DEBUG: &str = "enf_host_in_d";
/// TCX egress of a host interface: the host endpoint's egress chain.
pub const PROG_HOST_EGRESS: &str = "enf_host_eg";
pub const PROG_HOST_EGRESS_DEBUG: &str = "enf_host_eg_d";
/// TCX egress of every non-workload interface but `lo`, first in the chain: judges the
/// deferred egress of Service traffic leaving the node (see [`MARK_EGRESS_DEFERRED`](crate::MARK_EGRESS_DEFERRED));
/// any other packet goes on to the next program untouched.
pub const PROG_GUARD_EGRESS: &str = "enf_guard_eg";
pub const PROG_GUARD_EGRESS_DEBUG: &str = "enf_guard_eg_d";
/// TCX ingress of every non-workload interface but `lo`, first in the chain: drops
/// IPIP/VXLAN to the node from sources that are not cluster nodes, and notes the
/// client of a packet to a `NodePort` before kube-proxy may masquerade it (see
/// [`NodePortClientKey`](crate::NodePortClientKey)); every other packet goes on untouched.
pub const PROG_GUARD_INGRESS: &str = "enf_guard_in";
pub const PROG_GUARD_INGRESS_DEBUG: &str = "enf_guard_in_d";
/// `cgroup_skb/ingress` on the node's cgroup: judges the deferred egress of Service
/// traffic delivered to the node's own sockets (a hostNetwork backend, the API server
/// behind the `kubernetes` Service).
pub const PROG_CGROUP_INGRESS: &str = "enf_cg_in";
pub const PROG_CGROUP_INGRESS_DEBUG: &str = "enf_cg_in_d";
/// The benchmark floor (`cargo xtask bench`): parse + one hash lookup; never attached.
pub const PROG_BENCH_FLOOR: &str = "enf_bench_floor";

/// The debug-log variants' log programs (TC and XDP), reached by tail call through
/// [`MAP_DEBUG_TAIL_TC`] / [`MAP_DEBUG_TAIL_XDP`] (index 0): they write the aya-log
/// records of the verdicts the variant noted, so the record code is verified once, not
/// once per path. A program array serves one program type, hence two.
pub const PROG_LOG_TC_DEBUG: &str = "enf_log_tc_d";
pub const PROG_LOG_XDP_DEBUG: &str = "enf_log_xdp_d";
pub const PROG_LOG_CGROUP_DEBUG: &str = "enf_log_cg_d";
pub const DEBUG_LOG_PROGRAMS: [&str; 3] =
    [PROG_LOG_TC_DEBUG, PROG_LOG_XDP_DEBUG, PROG_LOG_CGROUP_DEBUG];
/// `PROG_ARRAY[1]`: [`PROG_LOG_TC_DEBUG`]; never pinned.
pub const MAP_DEBUG_TAIL_TC: &str = "ENF_DEBUG_TC";
/// `PROG_ARRAY[1]`: [`PROG_LOG_XDP_DEBUG`]; never pinned.
pub const MAP_DEBUG_TAIL_XDP: &str = "ENF_DEBUG_XDP";
/// `PROG_ARRAY[1]`: [`PROG_LOG_CGROUP_DEBUG`]; never pinned.
pub const MAP_DEBUG_TAIL_CGROUP: &str = "ENF_DEBUG_CG";

/// Every program of the object: (production name, debug-log variant).
pub const PROGRAMS: [(&str, Option<&str>); 9] = [
    (PROG_POD_EGRESS, Some(PROG_POD_EGRESS_DEBUG)),
    (PROG_POD_INGRESS, Some(PROG_POD_INGRESS_DEBUG)),
    (PROG_HOST_XDP, Some(PROG_HOST_XDP_DEBUG)),
    (PROG_HOST_INGRESS, Some(PROG_HOST_INGRESS_DEBUG)),
    (PROG_HOST_EGRESS, Some(PROG_HOST_EGRESS_DEBUG)),
    (PROG_GUARD_EGRESS, Some(PROG_GUARD_EGRESS_DEBUG)),
    (PROG_GUARD_INGRESS, Some(PROG_GUARD_INGRESS_DEBUG)),
    (PROG_CGROUP_INGRESS, Some(PROG_CGROUP_INGRESS_DEBUG)),
    (PROG_BENCH_FLOOR, None),
];

const fn names_fit(programs: &[(&str, Option<&str>)]) -> bool {
    let mut i = 0;
    while i < programs.len() {
        if programs[i].0.len() > PROG_NAME_MAX {
            return false;
        }
        if let Some(d) = programs[i].1
            && d.len() > PROG_NAME_MAX
        {
            return false;
        }
        i += 1;
    }
    true
}
const _: () = assert!(names_fit(&PROGRAMS));
const _: () = assert!(
    PROG_LOG_TC_DEBUG.len() <= PROG_NAME_MAX
        && PROG_LOG_XDP_DEBUG.len() <= PROG_NAME_MAX
        && PROG_LOG_CGROUP_DEBUG.len() <= PROG_NAME_MAX
);

/// Failsafe ports (see [`FailsafeKey`](crate::FailsafeKey)).
pub const MAP_FAILSAFE: &str = "ENF_FAILSAFE";

// ---------------------------------------------------------------------------------
// Capacities.
// ---------------------------------------------------------------------------------

pub const ENDPOINTS_MAX: u32 = 16_384;
pub const PEERS_MAX: u32 = 262_144;
pub const PORTS_MAX: u32 = 65_536;
/// Source-port refinements: (destination cells of a protocol that some rule tests the
/// source port of) × (that protocol's source port prefixes).
pub const SOURCE_PORTS_MAX: u32 = 65_536;
pub const VERDICTS_MAX: u32 = 1_048_576;
pub const CONNTRACK_MAX: u32 = 262_144;
pub const PENDING_MAX: u32 = 65_536;
pub const FRONTENDS_MAX: u32 = 65_536;
pub const NODE_PORT_CLIENTS_MAX: u32 = 65_536;
pub const EVENTS_BYTES: u32 = 1 << 20;
