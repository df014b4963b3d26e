//! Privileged integration tests live in tests/.
