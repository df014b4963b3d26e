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

/// Runs a table of cases, all of them, and fails listing every failed case. `BPF_CASE`
/// (a substring of case names) selects a subset; running no case at all is a failure,
/// so a filter typo or an empty table cannot pass.
pub fn run_table<C>(
    suite: &str,
    cases: impl IntoIterator<Item = C>,
    name: impl Fn(&C) -> &str,
    mut run: impl FnMut(&C) -> Result<(), String>,
) {
    let filter = std::env::var("BPF_CASE").ok();
    let mut ran = 0;
    let mut failures = Vec::new();
    for case in cases {
        if filter.as_deref().is_some_and(|f| !name(&case).contains(f)) {
            continue;
        }
        ran += 1;
        if let Err(e) = run(&case) {
            failures.push(format!("{}: {e}", name(&case)));
        }
    }
    eprintln!("{suite}: {ran} cases run, {} failed", failures.len());
    assert!(ran > 0, "no case ran (BPF_CASE={filter:?})");
    assert!(
        failures.is_empty(),
        "{} of {ran} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
