//! The `enforcer` command line: one module per subcommand, each with an `execute`.

pub mod lab;
