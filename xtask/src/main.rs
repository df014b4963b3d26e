//! `cargo xtask`: what cargo alone cannot do. Every command does its own set-up on a
//! fresh machine of this kind (rustup components, Debian packages, bpffs).
//!
//! - `cargo xtask test`: every test, unit and privileged (`BPF_PROG_TEST_RUN`, lab), the
//!   privileged ones in both dev and release profiles.
//! - `cargo xtask demo [--nodes N] [-- <lab up options>]`: the tutorial (seed 000) walked
//!   step by step in `enforcer lab` (one node, or N with the pods spread).
//! - `cargo xtask fuzz-diff [--cases N]`: the BPF differential test (programs vs the
//!   reference evaluator) over N cases, default 1,000,000, release build.
//! - `cargo xtask bench [--json FILE] [--quick]`: the benchmark suite (docs/performance.md).

mod bench;
mod demo;
mod dist;
mod setup;

use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "enforcer's build, test and demo tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run every test: unit, property, `BPF_PROG_TEST_RUN` and lab tests.
    Test {
        /// Only the unprivileged unit and property tests.
        #[arg(long)]
        unit_only: bool,
    },
    /// Walk the seed tutorial in a lab, printing the connectivity matrix at each step.
    Demo {
        /// Keep the lab up at the end (tear down later with `enforcer lab down --name demo`).
        #[arg(long)]
        keep: bool,
        /// Nodes of the lab (pods spread over them).
        #[arg(long, default_value_t = 1)]
        nodes: u32,
        /// More `enforcer lab up` options, after `--` (e.g. `-- --nodes 2 --encap vxlan`).
        #[arg(last = true)]
        lab_up: Vec<String>,
    },
    /// The BPF differential test (real programs vs the reference evaluator) at length.
    FuzzDiff {
        /// Cases (packet legs) to judge.
        #[arg(long, default_value_t = 1_000_000)]
        cases: u64,
        /// Base seed (default: random, printed).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Run the benchmark suite and print its table (see docs/performance.md).
    Bench {
        /// Also write the metrics as JSON to this file.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
        /// Small sizes, few repetitions: a smoke test of the suite (1-2 minutes).
        #[arg(long)]
        quick: bool,
    },
    /// The binary, shell completions and man pages under target/dist (or --out).
    Dist {
        /// Output directory (default: target/dist).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Package the debug build (faster) instead of a release build.
        #[arg(long)]
        debug: bool,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Task::Test { unit_only } => test(unit_only),
        Task::Demo {
            keep,
            nodes,
            lab_up,
        } => {
            setup::prepare(true)?;
            let mut up = Vec::new();
            if nodes != 1 {
                up.extend(["--nodes".to_owned(), nodes.to_string()]);
            }
            up.extend(lab_up);
            demo::run(keep, &up)
        }
        Task::FuzzDiff { cases, seed } => fuzz_diff(cases, seed),
        Task::Bench { json, quick } => {
            setup::prepare(true)?;
            bench::run(json, quick)
        }
        Task::Dist { out, debug } => {
            setup::prepare(false)?;
            dist::run(out, debug)
        }
    }
}

fn fuzz_diff(cases: u64, seed: Option<u64>) -> Result<()> {
    setup::prepare(true)?;
    let mut env = vec![("ENFORCER_BPF_DIFF_CASES", cases.to_string())];
    if let Some(seed) = seed {
        env.push(("ENFORCER_BPF_DIFF_SEED", seed.to_string()));
    }
    cargo_env(
        &[
            "test",
            "--release",
            "-p",
            "enforcer-tests",
            "--test",
            "bpf_differential",
            "--",
            "--nocapture",
        ],
        &env,
    )
}

/// Runs a cargo command in the workspace, failing on a non-zero exit.
pub fn cargo(args: &[&str]) -> Result<()> {
    cargo_env(args, &[])
}

/// [`cargo`] with extra environment variables.
pub fn cargo_env(args: &[&str], env: &[(&str, String)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(setup::workspace_root())
        .status()
        .with_context(|| format!("running {cargo} {}", args.join(" ")))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

fn test(unit_only: bool) -> Result<()> {
    setup::prepare(!unit_only)?;
    // Unit and property tests of every crate (the BPF object is built by
    // enforcer-agent's build.rs on the way).
    cargo(&["test", "--workspace", "--exclude", "enforcer-tests"])?;
    if unit_only {
        return Ok(());
    }
    // Privileged tests, serialized: they share the machine's CPU and bpffs, and the
    // lab tests time connection attempts.
    cargo(&["build", "--bin", "enforcer"])?;
    cargo(&["test", "-p", "enforcer-tests", "--", "--test-threads=1"])?;
    // The same scenarios on the Kubernetes path: the agent reads the lab's API server
    // with kube-rs (the tutorial, Calico's kinds, host endpoints, the admin kinds, and
    // the Node objects that name the trusted tunnel sources).
    cargo_env(
        &[
            "test",
            "-p",
            "enforcer-tests",
            "--test",
            "lab_tutorial",
            "--test",
            "lab_calico",
            "--test",
            "lab_host",
            "--test",
            "attacks_node",
            "--test",
            "lab_admin",
            "--",
            "--test-threads=1",
        ],
        &[("ENFORCER_LAB_DATASTORE", "kubernetes".to_owned())],
    )?;
    // And attached through netlink `tc` (clsact): `--attach tc`, for every lab agent.
    cargo_env(
        &[
            "test",
            "-p",
            "enforcer-tests",
            "--test",
            "lab_enforcement",
            "--test",
            "lab_host",
            "--test",
            "lab_tutorial",
            "--test",
            "lab_upgrade",
            "--",
            "--test-threads=1",
        ],
        &[("ENFORCER_LAB_ATTACH", "tc".to_owned())],
    )?;
    // The verifier sees different code in release: the BPF tests run there too.
    cargo(&["build", "--release", "--bin", "enforcer"])?;
    cargo(&[
        "test",
        "--release",
        "-p",
        "enforcer-tests",
        "--test",
        "bpf_programs",
        "--test",
        "bpf_host",
        "--test",
        "bpf_sctp",
        "--test",
        "bpf_debug_log",
        "--test",
        "bpf_differential",
        "--test",
        "bpf_budget",
        "--test",
        "bpf_related",
        "--test",
        "attacks_dataplane",
        "--test",
        "attacks_generations",
        "--",
        "--test-threads=1",
    ])?;
    // The benchmark suite's smoke mode: reported, never asserted on wall-clock.
    bench::run(None, true)?;
    println!("xtask test: all suites passed");
    Ok(())
}
