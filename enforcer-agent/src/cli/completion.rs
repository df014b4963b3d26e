//! `enforcer completion SHELL` (as `kubectl completion`) and the hidden `enforcer man
//! --dir DIR` that `cargo xtask dist` runs: both generated from the command line's own
//! definition, so they never drift from it.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use clap_complete::Shell;

/// Print a shell completion script
///
/// Examples:
///
///   source <(enforcer completion bash)
///
///   enforcer completion zsh > "${fpath[1]}/_enforcer"
///
///   enforcer completion fish > ~/.config/fish/completions/enforcer.fish
///
/// Exit status: 0, or 2 for an unknown shell.
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct CompletionArgs {
    /// bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    pub shell: Shell,
}

impl CompletionArgs {
    pub fn execute(&self, mut command: clap::Command) -> i32 {
        clap_complete::generate(self.shell, &mut command, "enforcer", &mut std::io::stdout());
        0
    }
}

/// Hidden: write the man pages (`enforcer.1`, `enforcer-lab-up.1`, ...) to a directory.
#[derive(Args, Debug)]
pub struct ManArgs {
    /// Directory for the pages (created).
    #[arg(long)]
    pub dir: PathBuf,
}

impl ManArgs {
    pub fn execute(&self, command: clap::Command) -> anyhow::Result<i32> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let mut written = 0;
        render(&self.dir, command, "enforcer", &mut written)?;
        println!("{written} man pages in {}", self.dir.display());
        Ok(0)
    }
}

/// Writes `name.1` for `command`, then its visible subcommands as `name-sub.1`.
fn render(
    dir: &std::path::Path,
    command: clap::Command,
    name: &str,
    written: &mut usize,
) -> anyhow::Result<()> {
    let command = command.name(name.to_owned());
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut page)?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    *written += 1;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        let sub_name = format!("{name}-{}", sub.get_name());
        render(dir, sub.clone(), &sub_name, written)?;
    }
    Ok(())
}
