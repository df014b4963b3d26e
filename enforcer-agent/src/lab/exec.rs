//! `lab exec`: a command inside a pod, as `kubectl exec` would run it: in the pod's
//! netns, with the pod's resolv.conf (`ip netns exec` mounts `/etc/netns/<netns>`).

use std::process::{Command, ExitStatus};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("no command given (usage: enforcer lab exec NS/POD -- CMD...)")]
    NoCommand,
    #[error("cannot run `{command}` in netns {netns}: {source}")]
    Spawn {
        command: String,
        netns: String,
        #[source]
        source: std::io::Error,
    },
}

/// Runs `command` in `netns` with this process's stdin/stdout/stderr.
pub fn run(netns: &str, command: &[String]) -> Result<ExitStatus, ExecError> {
    if command.is_empty() {
        return Err(ExecError::NoCommand);
    }
    Command::new("ip")
        .args(["netns", "exec", netns])
        .args(command)
        .status()
        .map_err(|source| ExecError::Spawn {
            command: command.join(" "),
            netns: netns.to_owned(),
            source,
        })
}

/// The shell convention: the exit code, or 128 + the signal that ended the command.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}
