//! Privileged integration tests live in tests/; this library holds their helpers.

pub mod admin;
pub mod attack;
pub mod bench;
pub mod bpf;
pub mod differential;
pub mod lab;
pub mod netpol;
pub mod rogue;
pub mod steady;
pub mod traffic;
pub mod wire;
