//! Privileged integration tests live in tests/.

pub mod lab;
pub mod traffic;
