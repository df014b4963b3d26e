//! Map keys, values and constants shared by the enforcer BPF programs and the agent.
//!
//! Every type here is `#[repr(C)]` with explicit padding (named `_pad` fields, always
//! written as zero), uses integers instead of `bool`/enum/`Option`, and has a size
//! assertion. With the `user` feature the types also implement `aya::Pod` and
//! `bytemuck::Pod`; bytemuck's derive refuses any type with implicit padding, so the
//! layouts are checked by the compiler as well as by the assertions below.
//!
//! # How a packet is judged (see `docs/architecture.md` for the whole picture)
//!
//! The agent compiles the policy set into *classes* so the BPF side needs a constant
//! number of lookups whatever the number of tiers, policies and rules:
//!
//! 1. `ENDPOINTS[(generation, ifindex)]` → the local endpoint's *profile* (endpoints that are
//!    selected by the same policies with the same named-port numbers share a profile).
//! 2. `PEERS_V4` / `PEERS_V6` (LPM tries) `[(generation, peer address)]` → the peer's *class*
//!    (addresses that every rule of every policy treats alike share a class).
//! 3. `PORTS` (LPM trie) `[(generation, protocol, port)]` → the *cell*: a class of
//!    (protocol, port) pairs (ICMP: type and code) that every rule treats alike.
//! 4. `VERDICTS[(generation, direction, profile, peer class, cell)]` → the verdict, with the
//!    wildcard fallbacks described at [`VerdictKey`].
//!
//! All policy maps carry a generation byte `generation` in their keys: the agent writes a whole
//! new generation next to the live one and then flips [`Config::active_gen`], so every
//! packet (and every flow, see [`CtValue::generation`]) is judged by exactly one policy version.
#![no_std]

mod counters;
mod observe;
pub use counters::*;
pub use observe::*;

/// Number of policy generations kept side by side (live + being written).
pub const GENERATIONS: u32 = 2;

// ---------------------------------------------------------------------------------
// Map names (pinned under `<bpffs>/enforcer/<node>/` with these names).
// ---------------------------------------------------------------------------------

pub const MAP_CONFIG: &str = "ENF_CONFIG";
pub const MAP_ENDPOINTS: &str = "ENF_ENDPOINTS";
pub const MAP_PEERS_V4: &str = "ENF_PEERS_V4";
pub const MAP_PEERS_V6: &str = "ENF_PEERS_V6";
pub const MAP_PORTS: &str = "ENF_PORTS";
pub const MAP_VERDICTS: &str = "ENF_VERDICTS";
pub const MAP_CONNTRACK: &str = "ENF_CONNTRACK";
pub const MAP_PENDING: &str = "ENF_PENDING";
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
/// The benchmark floor (`cargo xtask bench`): parse + one hash lookup; never attached.
pub const PROG_BENCH_FLOOR: &str = "enf_bench_floor";

/// The debug-log variants' log programs (TC and XDP), reached by tail call through
/// [`MAP_DEBUG_TAIL_TC`] / [`MAP_DEBUG_TAIL_XDP`] (index 0): they write the aya-log
/// records of the verdicts the variant noted, so the record code is verified once, not
/// once per path. A program array serves one program type, hence two.
pub const PROG_LOG_TC_DEBUG: &str = "enf_log_tc_d";
pub const PROG_LOG_XDP_DEBUG: &str = "enf_log_xdp_d";
pub const DEBUG_LOG_PROGRAMS: [&str; 2] = [PROG_LOG_TC_DEBUG, PROG_LOG_XDP_DEBUG];
/// `PROG_ARRAY[1]`: [`PROG_LOG_TC_DEBUG`]; never pinned.
pub const MAP_DEBUG_TAIL_TC: &str = "ENF_DEBUG_TC";
/// `PROG_ARRAY[1]`: [`PROG_LOG_XDP_DEBUG`]; never pinned.
pub const MAP_DEBUG_TAIL_XDP: &str = "ENF_DEBUG_XDP";

/// Every program of the object: (production name, debug-log variant).
pub const PROGRAMS: [(&str, Option<&str>); 6] = [
    (PROG_POD_EGRESS, Some(PROG_POD_EGRESS_DEBUG)),
    (PROG_POD_INGRESS, Some(PROG_POD_INGRESS_DEBUG)),
    (PROG_HOST_XDP, Some(PROG_HOST_XDP_DEBUG)),
    (PROG_HOST_INGRESS, Some(PROG_HOST_INGRESS_DEBUG)),
    (PROG_HOST_EGRESS, Some(PROG_HOST_EGRESS_DEBUG)),
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
const _: () =
    assert!(PROG_LOG_TC_DEBUG.len() <= PROG_NAME_MAX && PROG_LOG_XDP_DEBUG.len() <= PROG_NAME_MAX);

/// Failsafe ports (see [`FailsafeKey`]).
pub const MAP_FAILSAFE: &str = "ENF_FAILSAFE";

// ---------------------------------------------------------------------------------
// Capacities.
// ---------------------------------------------------------------------------------

pub const ENDPOINTS_MAX: u32 = 16_384;
pub const PEERS_MAX: u32 = 262_144;
pub const PORTS_MAX: u32 = 65_536;
pub const VERDICTS_MAX: u32 = 1_048_576;
pub const CONNTRACK_MAX: u32 = 262_144;
pub const PENDING_MAX: u32 = 65_536;
pub const EVENTS_BYTES: u32 = 1 << 20;

// ---------------------------------------------------------------------------------
// CONFIG: ARRAY, one entry at index 0.
// ---------------------------------------------------------------------------------

/// Global switches, written by the agent. Index 0 of `ENF_CONFIG`.
///
/// Before the agent writes it, the entry is all zeros: `live_gens == 0` means "no policy
/// loaded yet", and the programs then drop every packet on an attached interface
/// (fail closed) except ARP.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct Config {
    /// Generation new flows are judged by (0 or 1).
    pub active_gen: u32,
    /// Bit `g` set: generation `g` is complete and may still judge flows that began in it.
    pub live_gens: u32,
    /// `CONFIG_F_*` flags.
    pub flags: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<Config>() == 16);

/// Emit a flow event for every denied new flow (not only for Log rules).
pub const CONFIG_F_EVENT_ON_DENY: u32 = 1 << 0;
/// Log every policy verdict through aya-log (the `AYA_LOGS` ring buffer), for debugging.
/// Off by default: when clear, a verdict costs one test of this bit and nothing else.
pub const CONFIG_F_DEBUG_LOG: u32 = 1 << 1;

// ---------------------------------------------------------------------------------
// ENDPOINTS: HASH (generation, ifindex) → EndpointInfo.
// ---------------------------------------------------------------------------------

/// Key of `ENF_ENDPOINTS`: the interface a program runs on, in a generation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct EndpointKey {
    pub generation: u32,
    pub ifindex: u32,
}
const _: () = assert!(size_of::<EndpointKey>() == 8);

/// The local endpoint behind an interface.
///
/// A packet on an attached interface whose `(generation, ifindex)` has no entry is dropped
/// (reason [`REASON_NO_ENDPOINT`]): an interface under enforcement never fails open.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct EndpointInfo {
    /// Profile id used in [`VerdictKey::profile`].
    pub profile: u32,
    /// Stable endpoint id (for events and `enforcer inspect`).
    pub endpoint_id: u32,
    /// `EP_F_*` flags.
    pub flags: u32,
    /// IPv4 address the endpoint must send from (anti-spoofing), network order.
    pub ipv4: [u8; 4],
    /// IPv6 address the endpoint must send from, network order.
    pub ipv6: [u8; 16],
}
const _: () = assert!(size_of::<EndpointInfo>() == 32);

/// The endpoint has an IPv4 address (`ipv4` is valid).
pub const EP_F_HAS_V4: u32 = 1 << 0;
/// The endpoint has an IPv6 address (`ipv6` is valid).
pub const EP_F_HAS_V6: u32 = 1 << 1;
/// A host endpoint (host interface): judged by the host programs, no anti-spoofing.
pub const EP_F_HOST: u32 = 1 << 2;

// ---------------------------------------------------------------------------------
// PEERS_V4 / PEERS_V6: LPM_TRIE (generation, address) → PeerInfo.
// ---------------------------------------------------------------------------------

/// Data part of an `ENF_PEERS_V4` LPM key. The prefix length counts the 8 bits of `generation`
/// first, so a lookup never crosses generations: `prefixlen = 8 + address prefix`.
///
/// The trailing padding (never compared: it lies past every prefix) makes the data a
/// multiple of 4 bytes, so the trie stores the [`PeerInfo`] after it aligned.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct PeerKeyV4 {
    pub generation: u8,
    pub addr: [u8; 4],
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<PeerKeyV4>() == 8);

impl PeerKeyV4 {
    #[inline]
    pub const fn new(generation: u8, addr: [u8; 4]) -> Self {
        Self {
            generation,
            addr,
            _pad: [0; 3],
        }
    }
}

/// Data part of an `ENF_PEERS_V6` LPM key; `prefixlen = 8 + address prefix`; padded as
/// [`PeerKeyV4`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct PeerKeyV6 {
    pub generation: u8,
    pub addr: [u8; 16],
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<PeerKeyV6>() == 20);

impl PeerKeyV6 {
    #[inline]
    pub const fn new(generation: u8, addr: [u8; 16]) -> Self {
        Self {
            generation,
            addr,
            _pad: [0; 3],
        }
    }
}

/// What the policy set knows about an address.
///
/// Every generation has a `/0` entry per family (the "world" class), so every address
/// resolves. Longest prefix wins: a pod's `/32` (`/128`) beats any CIDR containing it,
/// and the compiler has folded the CIDRs containing the pod into the pod's class.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct PeerInfo {
    /// Peer class used in [`VerdictKey::peer_class`].
    pub class: u32,
    /// `PEER_F_*` flags.
    pub flags: u32,
    /// For [`PEER_F_LOCAL_ENDPOINT`]: the interface whose programs judge this peer's
    /// own leg (key into `ENF_ENDPOINTS`).
    pub ifindex: u32,
    /// The address as the *local* side of a host-endpoint rule sees it (destination of
    /// host ingress, source of host egress): see [`host_profile`]. 0 when no host
    /// endpoint rule tests the local address.
    pub host_class: u32,
}
const _: () = assert!(size_of::<PeerInfo>() == 16);

/// The address belongs to an endpoint on this node whose interface runs our programs:
/// that interface judges the peer's own leg of the flow.
pub const PEER_F_LOCAL_ENDPOINT: u32 = 1 << 0;
/// The address is a Service virtual IP (`ClusterIP`). Egress towards it is judged after
/// kube-proxy's DNAT, at the hook that sees the translated destination.
pub const PEER_F_SERVICE_VIP: u32 = 1 << 1;
/// The address is one of this node's own (a host endpoint's `expectedIPs`).
pub const PEER_F_HOST: u32 = 1 << 2;

// ---------------------------------------------------------------------------------
// PORTS: LPM_TRIE (generation, protocol, port) → cell.
// ---------------------------------------------------------------------------------

/// Data part of an `ENF_PORTS` LPM key: `prefixlen = 16 + port prefix`.
///
/// `port` is big-endian so LPM prefixes are port ranges aligned on powers of two. For
/// ICMP and `ICMPv6` the "port" is `type << 8 | code`, so type-only rules are /24 keys.
/// Protocols with neither ports nor types (for example GRE) have one /16 entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct PortKey {
    pub generation: u8,
    pub proto: u8,
    pub port: [u8; 2],
}
const _: () = assert!(size_of::<PortKey>() == 4);

/// Cell of a protocol that no rule names (no `PORTS` entry matched).
pub const CELL_UNLISTED: u32 = 0;

// ---------------------------------------------------------------------------------
// VERDICTS: HASH VerdictKey → Verdict.
// ---------------------------------------------------------------------------------

/// Direction of a verdict, from the local endpoint's point of view.
pub const DIR_INGRESS: u8 = 0;
pub const DIR_EGRESS: u8 = 1;

// Host-endpoint directions (the endpoint is a host interface, `EP_F_HOST`). For these
// the key's `profile` is [`host_profile`]`(endpoint profile, local class)`: a host
// endpoint's rules may test the *local* address too (the destination of an ingress
// packet, which may be the node or a pod behind it), so the local address's
// [`PeerInfo::host_class`] is part of the key. Calico's order of host-endpoint kinds:
// untracked (doNotTrack) → preDNAT → normal host-endpoint tiers + profiles (to/from the
// node itself) or applyOnForward tiers (forwarded) → workload policy (pod hooks).

/// doNotTrack ingress policies only; [`ACTION_CONTINUE`] when none decides.
pub const DIR_UNTRACKED_INGRESS: u8 = 2;
/// doNotTrack egress policies only; [`ACTION_CONTINUE`] when none decides.
pub const DIR_UNTRACKED_EGRESS: u8 = 3;
/// preDNAT policies only, on the original destination; [`ACTION_CONTINUE`] when none
/// decides. Looked up by the XDP program.
pub const DIR_PREDNAT_INGRESS: u8 = 4;
/// The whole tracked ingress chain of a new flow: preDNAT, then either the normal
/// host-endpoint tiers and profiles (destination is the node itself) or the
/// applyOnForward tiers (forwarded, including node IP:NodePort, which kube-proxy DNATs
/// to a pod). The compiler resolves which from the local class and the cell.
pub const DIR_HOST_INGRESS: u8 = 5;
/// The whole tracked egress chain of a new flow: normal host-endpoint tiers and
/// profiles (source is the node itself) or applyOnForward tiers (forwarded).
pub const DIR_HOST_EGRESS: u8 = 6;

/// Bits of [`VerdictKey::profile`] that hold the endpoint profile in host directions.
pub const HOST_PROFILE_BITS: u32 = 16;

/// The `profile` field of a host-direction verdict key: endpoint profile in the low
/// [`HOST_PROFILE_BITS`], the local address's host class above. The compiler keeps both
/// below `1 << 16`.
#[inline]
pub const fn host_profile(profile: u32, local_class: u32) -> u32 {
    (local_class << HOST_PROFILE_BITS) | (profile & ((1 << HOST_PROFILE_BITS) - 1))
}

/// Wildcard value of [`VerdictKey::peer_class`].
pub const ANY_PEER: u32 = u32::MAX;
/// Wildcard value of [`VerdictKey::cell`].
pub const ANY_CELL: u32 = u32::MAX;

/// Key of `ENF_VERDICTS`.
///
/// The compiler evaluates the ordered tiers/policies/rules for each profile and stores
/// the result per (peer class, cell), compressed with wildcards. Lookup precedence,
/// first hit wins (at most four hash lookups):
///
/// 1. `(profile, dir, peer_class, cell)`: exact.
/// 2. `(profile, dir, peer_class, ANY_CELL)`: this peer is treated alike on every cell.
/// 3. `(profile, dir, ANY_PEER, cell)`: this cell is treated alike for every peer that
///    has no entry of kind 1 or 2.
/// 4. `(profile, dir, ANY_PEER, ANY_CELL)`: the profile's default; always present.
///
/// The compiler only emits an entry where it differs from what the later steps would
/// answer, so the table stays small; it never relies on a missing default.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct VerdictKey {
    pub generation: u8,
    pub dir: u8,
    pub _pad: [u8; 2],
    pub profile: u32,
    pub peer_class: u32,
    pub cell: u32,
}
const _: () = assert!(size_of::<VerdictKey>() == 16);

/// The decision for one (profile, direction, peer class, cell), and why.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct Verdict {
    /// [`ACTION_ALLOW`] or [`ACTION_DENY`].
    pub action: u8,
    /// `VERDICT_KIND_*`: what decided.
    pub kind: u8,
    /// `VERDICT_F_*` flags.
    pub flags: u8,
    pub _pad: u8,
    /// Index of the deciding policy in the agent's policy table (`u32::MAX`: none).
    pub policy: u32,
    /// Index of the deciding rule inside that policy's direction (`u32::MAX`: none).
    pub rule: u32,
    /// For [`VERDICT_F_LOG`]: the policy of the first Log rule that matched.
    pub log_policy: u32,
    /// For [`VERDICT_F_LOG`]: that Log rule's index.
    pub log_rule: u32,
}
const _: () = assert!(size_of::<Verdict>() == 20);

pub const ACTION_ALLOW: u8 = 1;
pub const ACTION_DENY: u8 = 2;
/// No policy of this kind decided (untracked and preDNAT directions only: they have
/// no end-of-tier drop): evaluation goes on with the next kind.
pub const ACTION_CONTINUE: u8 = 3;

/// A rule (Allow or Deny) decided.
pub const VERDICT_KIND_RULE: u8 = 1;
/// No rule matched in a tier that selected the endpoint: the tier's default action.
pub const VERDICT_KIND_TIER_DEFAULT: u8 = 2;
/// No tier decided: the endpoint's profile (Kubernetes namespace profile allows all).
pub const VERDICT_KIND_PROFILE: u8 = 3;
/// No tier decided and the endpoint has no profile that allows: denied.
pub const VERDICT_KIND_NO_PROFILE: u8 = 4;

/// A Log rule matched before the decision: emit a flow event.
pub const VERDICT_F_LOG: u8 = 1 << 0;

/// "No policy / no rule" in [`Verdict::policy`] and [`Verdict::rule`].
pub const NO_INDEX: u32 = u32::MAX;

// ---------------------------------------------------------------------------------
// CONNTRACK: LRU_HASH CtKey → CtValue.
// ---------------------------------------------------------------------------------

pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// A directional 5-tuple. IPv4 addresses use the first 4 bytes, the rest zero.
/// Addresses are in network order, ports in host order (the port number as an integer).
///
/// For ICMP echo the request uses `(sport = id, dport = 0)` and the reply
/// `(sport = 0, dport = id)`, so a reply's reversed tuple is its request's tuple. Any
/// other ICMP message uses `(type << 8 | code, type << 8 | code)`: one message type
/// never rides on another's entry, and such a message is never a reply (only echo
/// replies are; ICMP errors are related to the flow they quote instead).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct CtKey {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<CtKey>() == 40);

/// State of a flow, stored under the tuple of its first packet (the forward tuple).
/// A packet whose reversed tuple finds an entry with both legs approved is a reply.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct CtValue {
    /// `bpf_ktime_get_ns` of the last packet in either direction.
    pub last_seen_ns: u64,
    /// `CT_F_*` flags.
    pub flags: u32,
    /// Generation that judged the flow's first leg; the second leg uses it too while it
    /// is live, so both legs of a flow see the same policy version.
    pub generation: u32,
}
const _: () = assert!(size_of::<CtValue>() == 16);

/// The source endpoint's egress policy allowed the flow (or the source is not ours).
pub const CT_F_EGRESS_OK: u32 = 1 << 0;
/// The destination endpoint's ingress policy allowed the flow (or it is not ours).
pub const CT_F_INGRESS_OK: u32 = 1 << 1;
/// Created for a packet to a Service VIP: the egress leg is judged after DNAT.
pub const CT_F_DEFERRED: u32 = 1 << 2;
/// The TCP connection is closing (an RST, or a FIN from each side): the entry expires
/// soon ([`CT_TIMEOUT_TCP_CLOSING_NS`]).
pub const CT_F_CLOSING: u32 = 1 << 3;
/// Both legs approved: replies pass.
pub const CT_F_ESTABLISHED: u32 = CT_F_EGRESS_OK | CT_F_INGRESS_OK;
/// The flow entered through a host endpoint and its ingress chain allowed it: replies
/// leave through the host egress hook, later packets skip XDP's preDNAT denies.
pub const CT_F_HOST_INGRESS_OK: u32 = 1 << 4;
/// The flow left through a host endpoint and its egress chain allowed it (the node or
/// a pod opened it): replies pass the host ingress hooks, XDP included.
pub const CT_F_HOST_EGRESS_OK: u32 = 1 << 5;
/// A TCP FIN was seen from the flow's initiator (forward direction).
pub const CT_F_FIN_FORWARD: u32 = 1 << 6;
/// A TCP FIN was seen from the responder (reverse direction).
pub const CT_F_FIN_REVERSE: u32 = 1 << 7;
/// A packet of the reverse direction passed as a reply: the peer answered. Until then
/// a TCP entry keeps the handshake timeout even with both legs approved, so that
/// unanswered SYNs (to a peer that does not exist, say) never hold an entry for the
/// established timeout.
pub const CT_F_REPLIED: u32 = 1 << 8;

/// Idle timeouts (Calico's eBPF dataplane uses the same orders of magnitude). TCP:
/// [`CT_TIMEOUT_TCP_SYN_NS`] until both legs are approved *and* the peer replied,
/// [`CT_TIMEOUT_TCP_ESTABLISHED_NS`] then, [`CT_TIMEOUT_TCP_CLOSING_NS`] once closing.
pub const CT_TIMEOUT_TCP_SYN_NS: u64 = 20_000_000_000;
pub const CT_TIMEOUT_TCP_ESTABLISHED_NS: u64 = 3_600_000_000_000;
pub const CT_TIMEOUT_TCP_CLOSING_NS: u64 = 30_000_000_000;
pub const CT_TIMEOUT_UDP_NS: u64 = 60_000_000_000;
pub const CT_TIMEOUT_ICMP_NS: u64 = 5_000_000_000;
pub const CT_TIMEOUT_OTHER_NS: u64 = 600_000_000_000;

// ---------------------------------------------------------------------------------
// PENDING: LRU_HASH PendingKey → PendingValue (Service traffic awaiting its egress leg).
// ---------------------------------------------------------------------------------

/// A client socket that sent to a Service VIP: (client address, client port, protocol).
/// Ports here and in [`PendingValue`] are in host order, as in [`CtKey`] (for ICMP echo
/// the identifier, as the conntrack tuple uses it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct PendingKey {
    pub client: [u8; 16],
    pub sport: u16,
    pub proto: u8,
    pub family: u8,
}
const _: () = assert!(size_of::<PendingKey>() == 20);

/// The VIP and port the client addressed, so that once the translated packet is
/// approved the original-tuple entry can be marked established (the un-DNATed reply
/// comes from the VIP).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct PendingValue {
    pub vip: [u8; 16],
    pub vport: u16,
    pub _pad: [u8; 2],
}
const _: () = assert!(size_of::<PendingValue>() == 20);

/// skb mark set on a packet to a Service VIP whose egress leg is deferred. Only the
/// bits in [`MARK_MASK`] are ours (kube-proxy uses 0x4000/0x8000, Calico 0xffff0000 by
/// default; these bits are free in both kube-proxy modes).
pub const MARK_MASK: u32 = 0x0f00_0000;
pub const MARK_EGRESS_DEFERRED: u32 = 0x0a00_0000;

// ---------------------------------------------------------------------------------
// FAILSAFE: HASH FailsafeKey → u32 (unused value). Host endpoints only.
// ---------------------------------------------------------------------------------

/// A failsafe port: `dir` is [`DIR_INGRESS`] (inbound to the node: destination port)
/// or [`DIR_EGRESS`] (outbound from the node: destination port). Checked before any
/// policy on host interfaces, so an operator cannot lock themself out (Calico's
/// `failsafeInboundHostPorts` / `failsafeOutboundHostPorts`). Not generation-keyed:
/// it is configuration, not policy.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct FailsafeKey {
    pub dir: u8,
    pub proto: u8,
    /// Host order.
    pub port: u16,
}
const _: () = assert!(size_of::<FailsafeKey>() == 4);

pub const FAILSAFE_MAX: u32 = 256;

/// Calico's default inbound failsafe ports: (protocol, port).
pub const FAILSAFE_INBOUND_DEFAULT: [(u8, u16); 9] = [
    (6, 22),
    (17, 68),
    (6, 179),
    (6, 2379),
    (6, 2380),
    (6, 5473),
    (6, 6443),
    (6, 6666),
    (6, 6667),
];
/// Calico's default outbound failsafe ports.
pub const FAILSAFE_OUTBOUND_DEFAULT: [(u8, u16); 9] = [
    (17, 53),
    (17, 67),
    (6, 179),
    (6, 2379),
    (6, 2380),
    (6, 5473),
    (6, 6443),
    (6, 6666),
    (6, 6667),
];

#[cfg(feature = "user")]
mod user {
    use super::{
        Config, CtKey, CtValue, EndpointInfo, EndpointKey, FailsafeKey, PeerInfo, PeerKeyV4,
        PeerKeyV6, PendingKey, PendingValue, PortKey, Verdict, VerdictKey,
    };

    // SAFETY: every type is repr(C), has no implicit padding (bytemuck's derive checks
    // it) and is valid for any bit pattern.
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for EndpointKey {}
    unsafe impl aya::Pod for EndpointInfo {}
    unsafe impl aya::Pod for PeerKeyV4 {}
    unsafe impl aya::Pod for PeerKeyV6 {}
    unsafe impl aya::Pod for PeerInfo {}
    unsafe impl aya::Pod for PortKey {}
    unsafe impl aya::Pod for VerdictKey {}
    unsafe impl aya::Pod for Verdict {}
    unsafe impl aya::Pod for CtKey {}
    unsafe impl aya::Pod for CtValue {}
    unsafe impl aya::Pod for PendingKey {}
    unsafe impl aya::Pod for PendingValue {}
    unsafe impl aya::Pod for FailsafeKey {}
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::collections::BTreeSet;

    use super::{DEBUG_LOG_PROGRAMS, PROG_NAME_MAX, PROGRAMS};

    #[test]
    fn program_names_are_distinct_and_fit_the_kernel() {
        let names: std::vec::Vec<&str> = PROGRAMS
            .iter()
            .flat_map(|(p, d)| core::iter::once(*p).chain(*d))
            .chain(DEBUG_LOG_PROGRAMS)
            .collect();
        let distinct: BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(distinct.len(), names.len(), "{names:?}");
        assert!(names.iter().all(|n| n.len() <= PROG_NAME_MAX), "{names:?}");
    }
}
