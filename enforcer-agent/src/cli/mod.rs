//! The `enforcer` command line: one module per subcommand, each with an `execute`.
//! Part of the binary, not the library: the library returns structured errors, and
//! only here are they turned into messages for people.

pub mod agent;
pub mod check;
pub mod completion;
pub mod explain;
pub mod flows;
pub mod inspect;
pub mod lab;
pub mod lab_faults;
pub mod matrix;
pub mod output;
pub mod progress;
pub mod table;
pub mod uninstall;

/// The exit status for "no" (a denied flow, a change that opens or closes flows), as
/// `kubectl diff` exits 1 when objects differ; 1 is an error and 2 a usage error here.
pub const EXIT_NO: i32 = 3;
