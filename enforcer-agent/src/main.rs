//! The `enforcer` command.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Calico network policy enforced by eBPF.
#[derive(Parser)]
#[command(name = "enforcer", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node agent (see `enforcer agent --help`).
    Agent(cli::agent::AgentArgs),
    /// Validate and lint policy files (see `enforcer check --help`).
    Check(cli::check::CheckArgs),
    /// Explain why a flow is allowed or denied.
    Explain(cli::explain::ExplainArgs),
    /// Show the flow log (verdicts per flow, both ends named), or follow it.
    Flows(cli::flows::FlowsArgs),
    /// Decode a node's pinned BPF maps.
    Inspect(cli::inspect::InspectArgs),
    /// A cluster made of network namespaces, to try policies on real packets.
    Lab(cli::lab::LabArgs),
    /// The connectivity matrix from files, without a lab; what a change opens or closes.
    Matrix(cli::matrix::MatrixArgs),
    #[command(hide = true)]
    LabResponder(cli::lab::ResponderArgs),
    #[command(hide = true)]
    LabDns(cli::lab::DnsArgs),
}

fn run(command: Command) -> anyhow::Result<i32> {
    Ok(match command {
        Command::Agent(args) => {
            args.execute()?;
            0
        }
        Command::Check(args) => args.execute()?,
        Command::Explain(args) => args.execute()?,
        Command::Flows(args) => args.execute()?,
        Command::Matrix(args) => args.execute()?,
        Command::Inspect(args) => args.execute()?,
        Command::Lab(args) => cli::lab::execute(args)?,
        Command::LabResponder(args) => cli::lab::execute_responder(&args)?,
        Command::LabDns(args) => cli::lab::execute_dns(&args)?,
    })
}

/// The error and its causes, skipping causes the message above already quotes.
fn render(err: &anyhow::Error) -> String {
    let mut out = err.to_string();
    let mut above = out.clone();
    for cause in err.chain().skip(1) {
        let msg = cause.to_string();
        if !above.contains(&msg) {
            out.push_str("\n  caused by: ");
            out.push_str(&msg);
        }
        above = msg;
    }
    out
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse().command) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(err) => {
            eprintln!("error: {}", render(&err));
            ExitCode::FAILURE
        }
    }
}
