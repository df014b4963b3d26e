//! The policy compiler: the unified Calico model → one generation of map entries.
//!
//! The scheme is in `docs/architecture.md` ("O(1) per packet"). One file per idea, in
//! the order [`compile_for_node`] runs them:
//!
//! - `input.rs`: the cluster, the node, and the table of every rule of the policies
//!   that can decide a verdict there (`relevance.rs`), with the numbers their named
//!   ports resolve to (`named_ports.rs`);
//! - `regions.rs` (with `prefixes.rs`): every prefix a rule or network set names,
//!   every pod, host endpoint and Service address and `/0` per family is an LPM
//!   entry; the addresses whose longest match is an entry (its *region*) are alike
//!   for every net predicate and see the same entities, so one representative address
//!   per region stands for it;
//! - `classes.rs` (with `atom_index.rs`): regions with equal facts for every rule's
//!   peer side share a peer class (kept for the next compile: `reuse.rs`, with what
//!   was learnt of each policy version and of the other objects: `memo.rs`);
//! - `profiles.rs`: local endpoints with the same applicable policies and the same
//!   facts for every local rule side share a profile;
//! - `cells.rs`: per protocol, the port space cut at every port, range and resolved
//!   named port boundary (ICMP: `type << 8 | code`);
//! - `verdicts.rs` (with `compress.rs`): per (profile, direction), the evaluator runs
//!   once per (peer group, cell group) on representatives, and the matrix is written
//!   with wildcard compression; a leg met in a recent compile with the same inputs is
//!   taken as it was (`rows.rs`). Because representatives are exact, the verdicts are
//!   exactly the evaluator's (checked by the differential test against [`simulate`]);
//! - `host.rs`: the host endpoints' directions, over the same classes and cells;
//! - `frontends.rs`: node ports and host ports, the front-ends on the node's addresses;
//! - [`spec`]: what comes out, checked against the maps' capacities (`error.rs`).

mod atom_index;
mod cells;
mod classes;
mod compress;
mod error;
mod frontends;
mod hashing;
pub(crate) mod host;
mod input;
mod memo;
mod named_ports;
mod prefixes;
mod profiles;
mod regions;
mod relevance;
pub mod reuse;
mod rows;
pub mod selfcheck;
pub mod simulate;
pub mod spec;
mod verdicts;

use enforcer_common::{
    ENDPOINTS_MAX, FRONTENDS_MAX, PEERS_MAX, PORTS_MAX, SOURCE_PORTS_MAX, VERDICTS_MAX,
};

pub use error::CompileError;
pub use reuse::Reuse;
pub use spec::DataplaneSpec;
pub use verdicts::{dir_code, verdict_of};

/// The node's own addresses a compile is for (what [`compile_on_node`] takes).
pub use crate::eval::host::NodeAddresses;
use crate::policy::Cluster;

/// Compiles the cluster with every endpoint treated as local.
pub fn compile(cluster: &Cluster) -> Result<DataplaneSpec, CompileError> {
    compile_for_node(cluster, None)
}

/// Compiles for one node: endpoints whose `spec.nodeName` is another node are peers
/// only (pods without a node name count as local). The node's own addresses are those
/// its host endpoints declare (for tools that cannot ask the node; the agent uses
/// [`compile_on_node`]).
pub fn compile_for_node(
    cluster: &Cluster,
    node: Option<&str>,
) -> Result<DataplaneSpec, CompileError> {
    compile_on_node(cluster, node, &NodeAddresses::declared(cluster, node))
}

/// Compiles for one node whose own addresses are `addresses` (what the kernel
/// delivers to the host, as the agent reads it from netlink): they decide whether a
/// packet crossing a host endpoint is for the host or forwarded.
pub fn compile_on_node(
    cluster: &Cluster,
    node: Option<&str>,
    addresses: &NodeAddresses,
) -> Result<DataplaneSpec, CompileError> {
    compile_reusing(cluster, node, addresses, &mut Reuse::default())
}

/// [`compile_on_node`], reusing what `reuse` kept from the last compile where its
/// inputs are the same ([`reuse`]), and keeping this compile's for the next. The spec
/// is the one [`compile_on_node`] gives.
pub fn compile_reusing(
    cluster: &Cluster,
    node: Option<&str>,
    addresses: &NodeAddresses,
    reuse: &mut Reuse,
) -> Result<DataplaneSpec, CompileError> {
    let mut phases = PhaseTimer::new();
    let input = input::Input::new(cluster, node, addresses, reuse.memo());
    phases.done("input");
    let regions = regions::regions(&input);
    phases.done("regions");
    let named_nets = regions::named_nets(&regions);
    let atoms = classes::PeerAtoms::new(&input);
    let peer_classes = reuse.classes(&input, &atoms, &regions, &named_nets);
    let classes = peer_classes.get();
    phases.done("peer classes");
    let mut peers = classes::peer_entries(&input, &regions, classes);
    let (profiles, mut endpoints) = profiles::profiles(&input, &named_nets);
    phases.done("profiles");
    let cells = cells::cells(&input);
    phases.done("cells");
    let mut verdicts = verdicts::PodVerdicts {
        input: &input,
        atoms: &atoms,
        classes,
        profiles: &profiles,
        cells: &cells.all,
    }
    .verdicts(reuse.rows(), peer_classes.epoch());
    phases.done("verdicts");
    let host = host::compile_host(
        &input,
        &host::Handover {
            regions: &regions,
            classes,
            cells: &cells.all,
        },
        &mut peers,
        &mut endpoints,
        &mut verdicts,
    );
    reuse.keep(peer_classes, &input, &atoms, &regions);
    host?;
    phases.done("host endpoints");
    let mut spec = DataplaneSpec {
        endpoints,
        peers,
        ports: cells.ports,
        source_ports: cells.source_ports,
        verdicts: verdicts.into_iter().collect(),
        frontends: frontends::frontends(&input),
        policies: cluster.policies.iter().map(|p| p.name.clone()).collect(),
        policy_fingerprints: Vec::new(),
    };
    phases.done("spec");
    // Only the policies a verdict names take a stable id (keyed by the fingerprint);
    // at 10k policies a node's verdicts name ~100 of them, hashed once per version.
    let memo = reuse.memo();
    spec.policy_fingerprints = spec
        .referenced_policies()
        .iter()
        .zip(&cluster.policies)
        .map(|(&used, policy)| if used { memo.fingerprint(policy) } else { 0 })
        .collect();
    phases.done("fingerprints");
    error::check_capacity("endpoints", spec.endpoints.len(), ENDPOINTS_MAX)?;
    error::check_capacity("peers", spec.peers.len(), PEERS_MAX)?;
    error::check_capacity("ports", spec.ports.len(), PORTS_MAX)?;
    error::check_capacity("source ports", spec.source_ports.len(), SOURCE_PORTS_MAX)?;
    error::check_capacity("verdicts", spec.verdicts.len(), VERDICTS_MAX)?;
    error::check_capacity("frontends", spec.frontends.len(), FRONTENDS_MAX)?;
    Ok(spec)
}

/// Per-phase wall time, logged at debug level (`RUST_LOG=enforcer::compile=debug`):
/// where a compile's time goes, without a profiler.
struct PhaseTimer {
    last: std::time::Instant,
}

impl PhaseTimer {
    fn new() -> Self {
        PhaseTimer {
            last: std::time::Instant::now(),
        }
    }

    fn done(&mut self, phase: &str) {
        let now = std::time::Instant::now();
        tracing::debug!(
            phase,
            ms = (now - self.last).as_secs_f64() * 1e3,
            "compile phase"
        );
        self.last = now;
    }
}

#[cfg(test)]
mod tests;
