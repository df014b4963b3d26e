//! The `enforcer` command line: one module per subcommand, each with an `execute`.
//! Part of the binary, not the library: the library returns structured errors, and
//! only here are they turned into messages for people.

pub mod agent;
pub mod check;
pub mod explain;
pub mod flows;
pub mod inspect;
pub mod lab;
pub mod matrix;
pub mod output;
pub mod table;
pub mod uninstall;
