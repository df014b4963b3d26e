//! The dataplane: the BPF object, its maps and programs on this node.

pub mod bpf_log;
pub mod content;
pub mod failsafe;
pub mod host;
pub mod loader;
pub mod object;
pub mod writer;
