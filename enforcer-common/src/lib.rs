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

/// Number of policy generations kept side by side (live + being written).
pub const GENERATIONS: u32 = 2;

mod conntrack;
mod counters;
mod failsafe;
mod names;
mod observe;
mod policy;
mod service;

pub use conntrack::*;
pub use counters::*;
pub use failsafe::*;
pub use names::*;
pub use observe::*;
pub use policy::*;
pub use service::*;

#[cfg(feature = "user")]
mod user {
    use super::{
        Config, CtKey, CtValue, EndpointInfo, EndpointKey, FailsafeKey, FrontendKey,
        NodePortClientKey, NodePortClientValue, PeerInfo, PeerKeyV4, PeerKeyV6, PendingKey,
        PendingValue, PortKey, SourcePortKey, Verdict, VerdictKey,
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
    unsafe impl aya::Pod for SourcePortKey {}
    unsafe impl aya::Pod for VerdictKey {}
    unsafe impl aya::Pod for Verdict {}
    unsafe impl aya::Pod for CtKey {}
    unsafe impl aya::Pod for CtValue {}
    unsafe impl aya::Pod for PendingKey {}
    unsafe impl aya::Pod for PendingValue {}
    unsafe impl aya::Pod for FailsafeKey {}
    unsafe impl aya::Pod for FrontendKey {}
    unsafe impl aya::Pod for NodePortClientKey {}
    unsafe impl aya::Pod for NodePortClientValue {}
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
