//! Privileged integration tests live in tests/.

pub mod lab;
