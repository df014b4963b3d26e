//! The `enforcer` command.

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Calico network policy enforced by eBPF.
///
/// Kubernetes NetworkPolicy and Calico NetworkPolicy, GlobalNetworkPolicy, Tier,
/// (Global)NetworkSet and HostEndpoint, compiled into BPF maps and enforced by fixed
/// TC and XDP programs: `agent` on a node, `lab` to try policies on real packets in
/// network namespaces, `check`, `matrix` and `explain` to reason about files without
/// a cluster, `flows` and `inspect` to see what a node does.
///
/// Every command with output takes -o table|wide|json|yaml (a format a command cannot
/// write is refused with an error), and every command that reads manifests takes
/// -f - for standard input. `enforcer COMMAND --help` has each command's details and
/// examples.
///
/// Exit status (as `kubectl diff`):
///   0  success: no error; the flow is allowed; nothing differs
///   1  an error (a bad file, a lab or node that cannot be read)
///   2  a usage error (an unknown option or a bad value)
///   3  the answer is no: `explain` on a denied flow, `matrix --apply/--diff` when
///      the change opens or closes flows, `lab probe` when a probe does not connect
///
/// Examples:
///
///   enforcer check -f tests/fixtures/tutorial/
///
///   enforcer matrix -f tests/fixtures/tutorial/
///
///   helm template shop ./chart | enforcer matrix -f - -f policies/
///
///   sudo enforcer lab up -f tests/fixtures/tutorial/dev-app-deployments.yaml
///
///   source <(enforcer completion bash)
#[derive(Parser)]
#[command(name = "enforcer", version, verbatim_doc_comment)]
#[expect(
    clippy::doc_markdown,
    reason = "the help text names kinds as people write them"
)]
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

// The commands' help (summary, details, examples, exit status) is their argument
// structs' documentation: a doc comment here would replace it.
#[derive(Subcommand)]
enum Command {
    Agent(cli::agent::AgentArgs),
    Check(cli::check::CheckArgs),
    Completion(cli::completion::CompletionArgs),
    Explain(cli::explain::ExplainArgs),
    Flows(cli::flows::FlowsArgs),
    Inspect(cli::inspect::InspectArgs),
    Lab(cli::lab::LabArgs),
    Matrix(cli::matrix::MatrixArgs),
    Uninstall(cli::uninstall::UninstallArgs),
    #[command(hide = true)]
    Man(cli::completion::ManArgs),
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

    /// Commands that only print (no daemon, no sockets of their own): a closed stdout
    /// (`enforcer lab get pods | head`) ends them quietly, as it ends kubectl.
    fn prints_only(&self) -> bool {
        match self {
            Command::Check(_)
            | Command::Completion(_)
            | Command::Explain(_)
            | Command::Flows(_)
            | Command::Inspect(_)
            | Command::Matrix(_)
            | Command::Man(_) => true,
            Command::Lab(args) => args.prints_only(),
            Command::Agent(_)
            | Command::Uninstall(_)
            | Command::LabResponder(_)
            | Command::LabDns(_)
            | Command::LabApiserver(_) => false,
        }
    }
}

/// Restores the default action of SIGPIPE (Rust ignores it, so that a write to a closed
/// pipe fails with EPIPE and `println!` panics): a reader that goes away (`| head`) then
/// ends the process without a message, as it ends kubectl and every Unix filter.
fn default_sigpipe() {
    // SAFETY: restores a signal's default disposition, before any other thread exists;
    // no handler of ours is replaced.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn run(command: Command) -> anyhow::Result<i32> {
    Ok(match command {
        Command::Agent(args) => {
            args.execute()?;
            0
        }
        Command::Check(args) => args.execute()?,
        Command::Completion(args) => args.execute(Cli::command()),
        Command::Man(args) => args.execute(Cli::command())?,
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
    if cli.command.prints_only() {
        default_sigpipe();
    }
    init_logging(cli.log_format, cli.command.default_level());
    match run(cli.command) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(err) => {
            eprintln!("error: {}", render(&err));
            ExitCode::FAILURE
        }
    }
}
