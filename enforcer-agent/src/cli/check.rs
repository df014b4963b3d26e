//! `enforcer check`: validation and lints, printed like compiler diagnostics.

use std::path::PathBuf;

use clap::Args;

use enforcer::check::check_paths;

use super::output::{self, Output, OutputArg};

/// Validate policy files and lint them, without a cluster.
///
/// Reports, each with file, line, object, field and a suggested fix: YAML and schema
/// errors (unknown fields with "did you mean"), everything Calico's validation rejects
/// (preDNAT without applyOnForward, ports without TCP/UDP/SCTP, IPv4/IPv6 mixes, …),
/// Kubernetes-style podSelector/namespaceSelector inside Calico rules (with the Calico
/// form), selectors that match no endpoint, ingress allows whose peers' egress is still
/// denied, policies that newly isolate endpoints (e.g. the cluster DNS), and rules
/// shadowed by an earlier rule. Pods come from the Pods, Deployments, `StatefulSets`
/// and `DaemonSets` in the files, as `enforcer lab up` would run them (the cluster DNS
/// pod is assumed when absent).
///
/// Documents of kinds the enforcer does not use (`ConfigMap`, `Secret`, `Ingress`, …, as
/// `helm template` writes them) are skipped with a note.
///
/// Output: -o table (the default, as compiler diagnostics), json or yaml.
///
/// Exit status: 0 without errors (warnings allowed), 1 with errors.
///
/// Examples:
///
///   enforcer check -f tests/fixtures/tutorial/
///
///   enforcer check -f tests/fixtures/tutorial/ -f tests/fixtures/tutorial-fixes/ -o json
///
///   helm template shop ./chart | enforcer check -f -
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct CheckArgs {
    /// Files or directories of YAML/JSON (repeatable; `-`: standard input).
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub output: OutputArg,
    /// Only errors and warnings (no notes).
    #[arg(short, long)]
    pub quiet: bool,
}

impl CheckArgs {
    pub fn execute(self) -> anyhow::Result<i32> {
        let format = self
            .output
            .check("check", &[Output::Table, Output::Json, Output::Yaml])?;
        let mut report = check_paths(&self.files);
        if self.quiet {
            report
                .findings
                .retain(|f| f.severity != enforcer::check::Severity::Info);
        }
        if format == Output::Table {
            print!("{}", report.text());
        } else {
            print!("{}", output::structured(format, &report.findings)?);
        }
        Ok(i32::from(report.has_errors()))
    }
}
