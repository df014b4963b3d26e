//! `cargo xtask bench [--json FILE] [--quick]`: builds the `enforcer` binary and the
//! `enforcer-bench` suite in release and runs it (as root: labs and BPF). The suite
//! prints the table; `--json` also writes the metrics. `--quick` is the smoke mode
//! `cargo xtask test` runs: small sizes, results reported, never asserted.

use std::path::PathBuf;

use anyhow::Result;

use crate::cargo;

pub fn run(json: Option<PathBuf>, quick: bool) -> Result<()> {
    cargo(&["build", "--release", "--bin", "enforcer"])?;
    let mut args: Vec<String> = [
        "run",
        "--release",
        "-p",
        "enforcer-tests",
        "--bin",
        "enforcer-bench",
        "--",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if quick {
        args.push("--quick".to_owned());
    }
    if let Some(path) = json {
        // Relative to where the user ran `cargo xtask`, not the workspace root.
        let path = if path.is_relative() {
            std::env::current_dir()?.join(path)
        } else {
            path
        };
        args.push("--json".to_owned());
        args.push(path.to_string_lossy().into_owned());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    cargo(&refs)
}
