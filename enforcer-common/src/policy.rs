//! The policy maps, keyed by generation: configuration, endpoints, peers, ports (cells)
//! and verdicts. See the crate documentation for how a packet is judged.

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
    /// The epoch of the active generation: a number the agent raises by one at every
    /// switch (31 bits, never 0 once the agent wrote a generation). The other slot,
    /// while live, holds epoch `epoch - 1`. A flow records the epoch that judged its
    /// first leg ([`ct_stamp`]); its second leg is judged in that slot only while the
    /// slot is live and still holds that epoch ([`stamped_slot`]), so a slot rewritten
    /// with a later policy version never judges an older flow. 0: no epochs (both
    /// slots count as epoch 0).
    pub epoch: u32,
    /// The agent's network namespace (`SO_NETNS_COOKIE`). The cgroup program runs for
    /// the sockets of every namespace under the cgroup it is attached to; it judges only
    /// packets of this one (0: none yet, judge nothing).
    pub netns_cookie: u64,
}
const _: () = assert!(size_of::<Config>() == 24);

// ---------------------------------------------------------------------------------
// Generation stamps of conntrack entries (see `Config::epoch`).
// ---------------------------------------------------------------------------------

/// The epoch generation slot `slot` holds under `cfg`.
#[inline]
pub const fn slot_epoch(cfg: &Config, slot: u32) -> u32 {
    if slot == cfg.active_gen {
        cfg.epoch
    } else {
        cfg.epoch.saturating_sub(1)
    }
}

/// The value of [`CtValue::generation`](crate::CtValue::generation) for a flow judged
/// in slot `slot` under `cfg`: the slot in bit 0, its epoch above.
#[inline]
pub const fn ct_stamp(cfg: &Config, slot: u32) -> u32 {
    let slot = slot & 1;
    (slot_epoch(cfg, slot) << 1) | slot
}

/// The slot a flow stamped `stamp` ([`ct_stamp`]) may have its second leg judged in:
/// the slot it was stamped in, if that slot is live and still holds the stamped epoch.
#[inline]
pub const fn stamped_slot(cfg: &Config, stamp: u32) -> Option<u32> {
    let slot = stamp & 1;
    if cfg.live_gens & (1 << slot) == 0 || ct_stamp(cfg, slot) != stamp {
        return None;
    }
    Some(slot)
}

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
/// (reason [`REASON_NO_ENDPOINT`](crate::REASON_NO_ENDPOINT)): an interface under enforcement never fails open.
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
    /// With [`EP_F_OWN_PEER_V4`]: the class of the peer entry of `ipv4` (its `/32`),
    /// which names this endpoint's interface, carries exactly
    /// [`PEER_F_LOCAL_ENDPOINT`] and no host class. Lets a program that already read
    /// this entry (the RPF check of a packet from the workload) skip the peer trie.
    pub own_class_v4: u32,
    /// The same for `ipv6` (its `/128`), with [`EP_F_OWN_PEER_V6`].
    pub own_class_v6: u32,
}
const _: () = assert!(size_of::<EndpointInfo>() == 40);

/// The endpoint has an IPv4 address (`ipv4` is valid).
pub const EP_F_HAS_V4: u32 = 1 << 0;
/// The endpoint has an IPv6 address (`ipv6` is valid).
pub const EP_F_HAS_V6: u32 = 1 << 1;
/// A host endpoint (host interface): judged by the host programs, no anti-spoofing.
pub const EP_F_HOST: u32 = 1 << 2;
/// `own_class_v4` holds the class of the workload's IPv4 address; written by the agent
/// from the same generation's peer entry (`GenerationContent`), never by the compiler.
pub const EP_F_OWN_PEER_V4: u32 = 1 << 3;
/// `own_class_v6` holds the class of the workload's IPv6 address.
pub const EP_F_OWN_PEER_V6: u32 = 1 << 4;

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
/// The address is one of this node's own (its interfaces' addresses, kept current from
/// netlink, and host endpoints' `expectedIPs`).
pub const PEER_F_HOST: u32 = 1 << 2;
/// The address is one of a cluster node's (a `Node` object's `InternalIP` or
/// `ExternalIP`, this node's included): a source the node accepts IPIP and VXLAN from.
pub const PEER_F_CLUSTER_NODE: u32 = 1 << 3;

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

/// In an `ENF_PORTS` value: some rule of this protocol tests the source port, so the
/// value is not the cell yet. The cell is the `ENF_SOURCE_PORTS` entry of
/// (this value, source port). Cell ids stay below this bit.
pub const CELL_F_BY_SOURCE: u32 = 1 << 31;

// ---------------------------------------------------------------------------------
// SOURCE_PORTS: LPM_TRIE (generation, destination cell, source port) → cell.
// ---------------------------------------------------------------------------------

/// Data part of an `ENF_SOURCE_PORTS` LPM key: `prefixlen = 64 + source port prefix`
/// (generation, padding and `dst_cell` always match in full).
///
/// `dst_cell` is the `ENF_PORTS` value, [`CELL_F_BY_SOURCE`] included; `port` is the
/// packet's source port, big-endian (prefixes are aligned ranges). The compiler covers
/// the whole source port space of every such `dst_cell`, so no entry means the maps
/// are inconsistent (fail closed). Only protocols with ports (TCP, UDP, SCTP,
/// `UDPLite`) ever carry the flag.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct SourcePortKey {
    pub generation: u8,
    pub _pad: [u8; 3],
    pub dst_cell: u32,
    pub port: [u8; 2],
    pub _pad2: [u8; 2],
}
const _: () = assert!(size_of::<SourcePortKey>() == 12);

/// `ENF_SOURCE_PORTS` prefix length of the key part before the port.
pub const SOURCE_PORT_KEY_FIXED_BITS: u32 = 64;

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

#[cfg(test)]
mod stamp_tests {
    use super::{Config, ct_stamp, stamped_slot};

    fn cfg(active_gen: u32, live_gens: u32, epoch: u32) -> Config {
        Config {
            active_gen,
            live_gens,
            epoch,
            ..Config::default()
        }
    }

    #[test]
    fn a_stamp_names_its_slot_while_the_slot_holds_its_epoch() {
        // Epoch 7 in slot 1 (active), epoch 6 in slot 0 (previous, live).
        let v7 = cfg(1, 0b11, 7);
        let old = ct_stamp(&v7, 0);
        let new = ct_stamp(&v7, 1);
        assert_eq!(stamped_slot(&v7, old), Some(0));
        assert_eq!(stamped_slot(&v7, new), Some(1));
        // Slot 0 retired (the grace is over): its flows are judged by the active slot.
        assert_eq!(stamped_slot(&cfg(1, 0b10, 7), old), None);
        // Epoch 8 rewrote slot 0: epoch 6's flows are not judged by it.
        let v8 = cfg(0, 0b11, 8);
        assert_eq!(stamped_slot(&v8, old), None);
        assert_eq!(stamped_slot(&v8, new), Some(1));
        // Epoch 9 rewrote slot 1 and slot 0 (epoch 8) is live: epoch 7 matches nothing.
        assert_eq!(stamped_slot(&cfg(1, 0b11, 9), new), None);
    }

    #[test]
    fn without_epochs_a_stamp_is_the_bare_slot() {
        let c = cfg(1, 0b11, 0);
        assert_eq!(ct_stamp(&c, 0), 0);
        assert_eq!(ct_stamp(&c, 1), 1);
        assert_eq!(stamped_slot(&c, 0), Some(0));
    }
}
