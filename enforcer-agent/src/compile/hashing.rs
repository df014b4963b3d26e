//! The compiler's hash maps and sets.

/// The compiler's hash maps and sets: foldhash's fast hasher (seeded per process, as
/// std's) instead of `SipHash`. A compile hashes label maps, selectors and fact vectors
/// millions of times at 10k policies; nothing it emits depends on iteration order.
pub(super) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub(super) type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
