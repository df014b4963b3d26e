//! Helpers for the `BPF_PROG_TEST_RUN` suites (`tests/bpf_*.rs`): a private network
//! namespace, packet builders, and the loaded object with typed access to its maps.
//!
//! Nothing here sends a packet: programs run through `BPF_PROG_TEST_RUN`, and the only
//! interfaces created (a veth pair, for distinct ifindexes) live in a network namespace
//! that disappears with the guard.

pub mod dataplane;
pub mod netns;
pub mod packet;

/// `expect` for test helpers: panics with what was being done and the error.
pub trait OrPanic<T> {
    fn or_panic(self, what: &str) -> T;
}

impl<T, E: std::fmt::Display> OrPanic<T> for Result<T, E> {
    #[track_caller]
    fn or_panic(self, what: &str) -> T {
        self.unwrap_or_else(|e| panic!("{what}: {e}"))
    }
}

impl<T> OrPanic<T> for Option<T> {
    #[track_caller]
    fn or_panic(self, what: &str) -> T {
        self.unwrap_or_else(|| panic!("{what}: none"))
    }
}
