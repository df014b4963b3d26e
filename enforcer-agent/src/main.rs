//! The `enforcer` command.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Calico network policy enforced by eBPF.
#[derive(Parser)]
#[command(name = "enforcer", version)]
struct Cli {
    /// Log format on stderr: `text` (colour only on a terminal) or `json` (one object
    /// per line, for log collectors). The level comes from `RUST_LOG` (default: info for
    /// the agent and the lab's daemons, warn for the other commands).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "ENFORCER_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
    /// Detach the programs and remove the pins of a node, on purpose.
    Uninstall(cli::uninstall::UninstallArgs),
    #[command(hide = true)]
    LabResponder(cli::lab::ResponderArgs),
    #[command(hide = true)]
    LabDns(cli::lab::DnsArgs),
    #[command(hide = true)]
    LabApiserver(cli::lab::ApiServerArgs),
}

impl Command {
    /// Daemons log what they do; interactive commands only what goes wrong.
    fn default_level(&self) -> &'static str {
        match self {
            Command::Agent(_)
            | Command::LabResponder(_)
            | Command::LabDns(_)
            | Command::LabApiserver(_) => "info",
            _ => "warn",
        }
    }
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
        Command::Uninstall(args) => {
            args.execute()?;
            0
        }
        Command::LabResponder(args) => cli::lab::execute_responder(&args)?,
        Command::LabDns(args) => cli::lab::execute_dns(&args)?,
        Command::LabApiserver(args) => cli::lab::execute_apiserver(&args)?,
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

/// Logs to stderr: INFO by default for daemons, the format asked for, colour only
/// when stderr is a terminal (a log file or a container runtime gets plain text).
fn init_logging(format: LogFormat, default_level: &str) {
    use std::io::IsTerminal as _;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, cli.command.default_level());
    match run(cli.command) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(err) => {
            eprintln!("error: {}", render(&err));
            ExitCode::FAILURE
        }
    }
}
