//! Privileged integration tests live in tests/; this library holds their helpers.

pub mod bpf;
pub mod lab;
pub mod netpol;
pub mod traffic;
pub mod xdp_drop;
