//! The BPF side: the embedded object (loading, pinning, attaching and writing
//! generations live next to it).

pub mod object;
