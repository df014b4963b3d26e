//! Service traffic: the deferral of a client's egress until after DNAT (the skb mark,
//! the pending notes) and the front-ends by port on the node's own addresses.

// ---------------------------------------------------------------------------------
// PENDING: LRU_HASH PendingKey → PendingValue (Service traffic awaiting its egress leg).
// ---------------------------------------------------------------------------------

/// A client socket that sent to a Service front-end (a VIP, or a node address on a
/// node port): (client address, client port, protocol). Ports here and in
/// [`PendingValue`] are in host order, as in [`CtKey`](crate::CtKey) (for ICMP echo the identifier,
/// as the conntrack tuple uses it).
///
/// Why this map exists: the hook that judges a deferred packet (see
/// [`MARK_EGRESS_DEFERRED`]) sees it after DNAT and must also approve the *original*
/// tuple (client → front-end), because the kernel un-DNATs the reply to come from the
/// front-end. The translated packet does not say which front-end it was sent to; this
/// entry does, written by the client's egress hook a few microseconds earlier on the
/// same packet's path.
///
/// Lookup rules (the judging hook): the entry counts only if it is younger than
/// [`PENDING_TTL_NS`] and has no [`PENDING_F_CONFLICT`]. A socket that sent to two
/// different front-ends within the TTL is a conflict: neither original tuple is
/// approved (fail closed: their replies face the client's ingress policy as new flows),
/// so one approval can never make another front-end's traffic a "reply". Nothing is
/// written to `ENF_CONNTRACK` before a verdict.
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

/// The front-end (VIP or node address, and port) the client addressed, so that once
/// the translated packet is approved the original-tuple entry can be marked
/// established (the un-DNATed reply comes from the front-end).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct PendingValue {
    /// `bpf_ktime_get_ns` of the client's latest packet to this front-end.
    pub deferred_ns: u64,
    pub vip: [u8; 16],
    pub vport: u16,
    /// `PENDING_F_*`.
    pub flags: u16,
    pub _pad: u32,
}
const _: () = assert!(size_of::<PendingValue>() == 32);

/// How long a pending entry names the front-end of its socket's next translated
/// packet. The judging hook runs on the same packet's path within microseconds; the
/// TTL only bounds how long a socket that switched front-ends counts as a conflict.
pub const PENDING_TTL_NS: u64 = 1_000_000_000;
/// The socket addressed two different front-ends within [`PENDING_TTL_NS`]: no
/// original tuple is approved through this entry.
pub const PENDING_F_CONFLICT: u16 = 1 << 0;

/// skb mark set on a packet to a Service VIP whose egress leg is deferred. Only the
/// bits in [`MARK_MASK`] are ours (kube-proxy uses 0x4000/0x8000, Calico 0xffff0000 by
/// default; these bits are free in both kube-proxy modes).
pub const MARK_MASK: u32 = 0x0f00_0000;
pub const MARK_EGRESS_DEFERRED: u32 = 0x0a00_0000;

// ---------------------------------------------------------------------------------
// NP_CLIENTS: LRU_HASH NodePortClientKey → NodePortClientValue (who sent to a NodePort).
// ---------------------------------------------------------------------------------

/// A packet that entered the node through a non-workload interface addressed to a
/// Service front-end on the node's own address: (source port, protocol, family), host
/// order, as the packet carried them *before* kube-proxy translated it.
///
/// Why this map exists: with `externalTrafficPolicy: Cluster` kube-proxy masquerades
/// such a packet (SNAT to a node address) after DNAT, and our backend's ingress hook
/// runs after `POSTROUTING`, so it sees the node's address where Calico (judging in
/// `FORWARD`) sees the client's. The guard on the interface the packet entered by
/// (`enf_guard_in`, before any translation) writes the client here and marks the
/// packet ([`MARK_NODE_PORT_CLIENT`]); the backend's hook, given a marked packet whose
/// source is one of the node's own addresses, judges it as the client noted under its
/// source port (masquerade keeps the client's port unless two flows would clash).
///
/// Lookup rules (the backend's hook): the entry counts only if it is younger than
/// [`NODE_PORT_CLIENT_TTL_NS`] and has no [`NODE_PORT_CLIENT_F_CONFLICT`]; a marked,
/// masqueraded packet without such an entry is dropped (`deny_spoofed`: whose it is
/// cannot be told). Two clients using one source port within the TTL are a conflict,
/// so one client's note can never make another's packet pass as its own.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct NodePortClientKey {
    pub sport: u16,
    pub proto: u8,
    pub family: u8,
}
const _: () = assert!(size_of::<NodePortClientKey>() == 4);

/// The client that sent a packet to a front-end from [`NodePortClientKey`]'s port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct NodePortClientValue {
    /// `bpf_ktime_get_ns` of the client's latest packet from this port.
    pub seen_ns: u64,
    pub client: [u8; 16],
    /// `NODE_PORT_CLIENT_F_*`.
    pub flags: u32,
    pub _pad: u32,
}
const _: () = assert!(size_of::<NodePortClientValue>() == 32);

/// How long a note names the client of its port's packets. The backend's hook runs on
/// the same packet's path within microseconds (and only for a flow's first packets:
/// conntrack approves the rest); the TTL bounds how long a shared port is a conflict.
pub const NODE_PORT_CLIENT_TTL_NS: u64 = 1_000_000_000;
/// Two clients sent from this port within [`NODE_PORT_CLIENT_TTL_NS`]: neither is named.
pub const NODE_PORT_CLIENT_F_CONFLICT: u32 = 1 << 0;
/// skb mark (in [`MARK_MASK`]) set by `enf_guard_in` on a packet whose client it noted
/// in `ENF_NP_CLIENTS`. Only the node sets marks: a pod's marks are scrubbed when its
/// packet leaves its network namespace, and a packet from outside carries none.
pub const MARK_NODE_PORT_CLIENT: u32 = 0x0b00_0000;

// ---------------------------------------------------------------------------------
// FRONTENDS: HASH FrontendKey → u32 flags (Service front-ends by port on node addresses).
// ---------------------------------------------------------------------------------

/// A port on which the node's own addresses are a Service front-end: a Service
/// `nodePort` (kube-proxy translates `<node address>:<nodePort>` to a backend) or a
/// local pod's `hostPort` (the CNI's portmap plugin translates it to the pod). Egress
/// to a peer with [`PEER_F_HOST`](crate::PEER_F_HOST) on such a port is deferred like egress to a VIP
/// ([`PEER_F_SERVICE_VIP`](crate::PEER_F_SERVICE_VIP)): judged after the translation. One exact lookup, made only
/// for packets to the node's own addresses on the new-flow path. An entry that the node
/// does not actually translate (a `hostIP`-bound host port, `--nodeport-addresses`)
/// only moves the judgment to the hook the untranslated packet meets (the cgroup
/// program, on the node's socket), which judges it by the same egress policy.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct FrontendKey {
    pub generation: u8,
    pub proto: u8,
    /// Host order.
    pub port: u16,
}
const _: () = assert!(size_of::<FrontendKey>() == 4);

/// A Service `nodePort`.
pub const FRONTEND_F_NODE_PORT: u32 = 1 << 0;
/// A local pod's `hostPort`.
pub const FRONTEND_F_HOST_PORT: u32 = 1 << 1;
