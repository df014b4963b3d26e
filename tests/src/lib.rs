//! Privileged integration tests live in tests/; this library holds their helpers.

pub mod bench;
pub mod bpf;
pub mod lab;
pub mod traffic;
