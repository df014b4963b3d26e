//! The `enforcer` command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use enforcer::cli;
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
    Lab(cli::lab::LabArgs),
    #[command(hide = true)]
    LabResponder(cli::lab::ResponderArgs),
    #[command(hide = true)]
    LabDns(cli::lab::DnsArgs),
}

fn main() -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .init();
    let code = match Cli::parse().command {
        Command::Lab(args) => cli::lab::execute(args)?,
        Command::LabResponder(args) => cli::lab::execute_responder(&args)?,
        Command::LabDns(args) => cli::lab::execute_dns(&args)?,
    };
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
