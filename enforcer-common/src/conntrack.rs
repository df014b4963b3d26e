//! Connection tracking: the flow table's key, value, flags and idle timeouts.

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
    /// The generation that judged the flow's first leg, stamped with its epoch
    /// ([`ct_stamp`](crate::ct_stamp)); the second leg uses it too while it is live
    /// and holds that epoch ([`stamped_slot`](crate::stamped_slot)), so both legs of a
    /// flow see the same policy version, never a later one that reused the slot.
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
