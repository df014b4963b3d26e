//! Running system commands (`ip`, `nft`, `sysctl`) with errors that say which command
//! failed and why.

use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

/// A command line as a shell user would type it, for messages.
pub fn display(program: &str, args: &[&str]) -> String {
    let mut out = program.to_owned();
    for arg in args {
        out.push(' ');
        if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '\'') {
            out.push('\'');
            out.push_str(&arg.replace('\'', "'\\''"));
            out.push('\'');
        } else {
            out.push_str(arg);
        }
    }
    out
}

/// Runs a command to completion with stdin closed; fails unless it exits 0.
/// Returns its stdout.
pub fn run(program: &str, args: &[&str]) -> Result<String, CommandError> {
    let command = display(program, args);
    tracing::debug!(%command, "run");
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| CommandError::Spawn {
            command: command.clone(),
            source,
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(CommandError::Failed {
            command,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// `ip -n <netns> <args...>`.
pub fn ip_in(netns: &str, args: &[&str]) -> Result<String, CommandError> {
    let mut full = vec!["-n", netns];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// `ip netns exec <netns> <program> <args...>`.
pub fn exec_in(netns: &str, program: &str, args: &[&str]) -> Result<String, CommandError> {
    let mut full = vec!["netns", "exec", netns, program];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// Sets sysctls (`key=value`) inside a netns in one `sysctl` run.
pub fn sysctl_in(netns: &str, settings: &[String]) -> Result<(), CommandError> {
    let mut args = vec!["-q", "-w"];
    args.extend(settings.iter().map(String::as_str));
    exec_in(netns, "sysctl", &args).map(drop)
}
