//! Failsafe ports of host interfaces: configuration, not policy.

// ---------------------------------------------------------------------------------
// FAILSAFE: HASH FailsafeKey → u32 (unused value). Host endpoints only.
// ---------------------------------------------------------------------------------

/// A failsafe port: `dir` is [`DIR_INGRESS`](crate::DIR_INGRESS) (inbound to the node: destination port)
/// or [`DIR_EGRESS`](crate::DIR_EGRESS) (outbound from the node: destination port). Checked before any
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
