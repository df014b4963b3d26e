//! What the compiler emits and the map writer consumes: every map entry of one policy
//! generation, without the generation byte (the writer adds it) and with interfaces
//! named rather than numbered (the agent resolves names to ifindexes on its node).
//!
//! The key/value layouts and lookup precedence are documented in `enforcer-common`
//! and `docs/architecture.md`; this is the same data in owned Rust form.

use std::hash::{BuildHasher as _, Hash, Hasher as _};
use std::sync::Arc;

use ipnet::IpNet;

use enforcer_common::{EndpointInfo, Verdict};

use crate::model::PolicyName;
use crate::policy::Policy;

/// One generation's complete dataplane content.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DataplaneSpec {
    /// `ENF_ENDPOINTS`: one entry per local endpoint interface.
    pub endpoints: Vec<SpecEndpoint>,
    /// `ENF_PEERS_V4` / `ENF_PEERS_V6`: address prefixes → peer class. Includes a `/0`
    /// per family.
    pub peers: Vec<SpecPeer>,
    /// `ENF_PORTS`: (protocol, port prefix) → cell (or, with `CELL_F_BY_SOURCE`, the
    /// destination part of one).
    pub ports: Vec<SpecPort>,
    /// `ENF_SOURCE_PORTS`: (flagged `ENF_PORTS` value, source port prefix) → cell.
    pub source_ports: Vec<SpecSourcePort>,
    /// `ENF_VERDICTS`.
    pub verdicts: Vec<(SpecVerdictKey, Verdict)>,
    /// `ENF_FRONTENDS`: Service front-end ports on the node's own addresses.
    pub frontends: Vec<SpecFrontend>,
    /// Index → name of the policies that verdicts refer to (`Verdict::policy`).
    pub policies: Vec<Arc<PolicyName>>,
    /// Per policy (same index): a digest of its rules, see [`policy_fingerprint`], for
    /// the policies a verdict names ([`DataplaneSpec::referenced_policies`]); 0 for
    /// the others (they take no stable id, and nothing here names them).
    pub policy_fingerprints: Vec<u64>,
}

impl DataplaneSpec {
    /// Per policy (as [`DataplaneSpec::policies`]): whether a verdict names it (as its
    /// policy or the policy of its first Log rule). Only those can appear in the maps,
    /// flow events and rule counters; the others apply to no endpoint here.
    pub fn referenced_policies(&self) -> Vec<bool> {
        let mut used = vec![false; self.policies.len()];
        for (_, v) in &self.verdicts {
            for index in [v.policy, v.log_policy] {
                if let Some(u) = used.get_mut(index as usize) {
                    *u = true;
                }
            }
        }
        used
    }
}

/// A digest of what a policy's rules say (both directions, their order, and the kind
/// flags that change how they apply), stable across runs of one enforcer version. The
/// dataplane keys its stable policy ids by (name, fingerprint): an edited policy gets
/// fresh per-rule counters rather than its old rules' counts under new indices.
///
/// foldhash's quality hasher with a fixed seed over the rules' `Hash` stream:
/// deterministic (the same in the agent and in `enforcer inspect`, and across
/// restarts; foldhash's version is pinned by the lockfile), every field of a rule is in
/// it, no text is formatted, and it takes words, not bytes, at a time (FNV-1a, byte by
/// byte, over every policy of the cluster took a quarter of a 10k-policy compile; now
/// only the policies a verdict names are fingerprinted).
pub fn policy_fingerprint(policy: &Policy) -> u64 {
    let mut h = FINGERPRINT_STATE.build_hasher();
    policy.ingress.hash(&mut h);
    policy.egress.hash(&mut h);
    (
        policy.pre_dnat,
        policy.do_not_track,
        policy.apply_on_forward,
    )
        .hash(&mut h);
    h.finish()
}

/// The fixed seed of [`policy_fingerprint`] (any constant: it only has to be the same in
/// every process of one version).
const FINGERPRINT_STATE: foldhash::quality::FixedState =
    foldhash::quality::FixedState::with_seed(0x656e_666f_7263_6572);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecEndpoint {
    /// Host-side interface, e.g. `cali1234567890a`.
    pub iface: String,
    /// `namespace/name` of the workload (for inspect and events).
    pub workload: String,
    /// `ifindex`-free part of the value: profile, endpoint id, flags, addresses.
    pub info: EndpointInfo,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecPeer {
    pub net: IpNet,
    pub class: u32,
    /// `PEER_F_*`.
    pub flags: u32,
    /// With `PEER_F_LOCAL_ENDPOINT`: the interface of that endpoint.
    pub local_iface: Option<String>,
    /// `PeerInfo::host_class`: the address as a host-endpoint rule's local side sees it.
    pub host_class: u32,
}

/// A Service front-end port on the node's own addresses (`FrontendKey`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpecFrontend {
    pub proto: u8,
    pub port: u16,
    /// `FRONTEND_F_*`.
    pub flags: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpecPort {
    pub proto: u8,
    /// First port of the prefix (ICMP: `type << 8 | code`).
    pub port: u16,
    /// Significant leading bits of `port`, 0..=16.
    pub prefix_len: u8,
    pub cell: u32,
}

/// An `ENF_SOURCE_PORTS` entry (`SourcePortKey`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpecSourcePort {
    /// The `ENF_PORTS` value, `CELL_F_BY_SOURCE` included.
    pub dst_cell: u32,
    /// First source port of the prefix.
    pub port: u16,
    /// Significant leading bits of `port`, 0..=16.
    pub prefix_len: u8,
    pub cell: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpecVerdictKey {
    /// `DIR_INGRESS` / `DIR_EGRESS`.
    pub dir: u8,
    pub profile: u32,
    /// A class, or `ANY_PEER`.
    pub peer_class: u32,
    /// A cell, or `ANY_CELL`.
    pub cell: u32,
}
