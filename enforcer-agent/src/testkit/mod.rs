//! Generators for tests and benchmarks, kept out of the product: compiled only for the
//! crate's own tests and with the `testkit` feature (which the `enforcer-tests` crate
//! enables).
//!
//! - [`arbitrary`]: random small clusters and packets for the differential tests
//!   (evaluator vs compiled spec vs BPF programs), and a minimiser for failures;
//! - [`synth`]: seeded synthetic clusters at benchmark scale, as ordinary documents;
//! - [`TempDir`]: a test's scratch directory, removed also when the test fails.

pub mod arbitrary;
pub mod synth;
mod tempdir;

pub use tempdir::TempDir;
