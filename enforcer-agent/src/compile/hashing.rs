//! The compiler's hash maps and sets, and the fixed-seed hash peer atoms are numbered by.

use std::hash::BuildHasher as _;

use crate::policy::EntityMatch;

/// The compiler's hash maps and sets: foldhash's fast hasher (seeded per process, as
/// std's) instead of `SipHash`. A compile hashes label maps, selectors and fact vectors
/// millions of times at 10k policies; nothing it emits depends on iteration order.
pub(super) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub(super) type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// The fixed seed of the atoms' order (any constant: the same atoms must sort alike
/// in every compile of one process).
const ATOM_ORDER: foldhash::quality::FixedState =
    foldhash::quality::FixedState::with_seed(0x6174_6f6d_6f72_6465);

/// The hash peer atoms are numbered by (`classes::PeerAtoms`): fixed-seed, of the peer
/// side and the protocol. The compiler's memo keeps it per rule of a policy version.
pub(super) fn atom_order(side: &EntityMatch, protocol: Option<u8>) -> u64 {
    ATOM_ORDER.hash_one((side, protocol))
}
