//! `enforcer check`: validation and lints, printed like compiler diagnostics.

use std::path::PathBuf;

use clap::Args;

use enforcer::check::check_paths;

/// Validate policy files and lint them, without a cluster.
///
/// Reports, each with file, line, object, field and a suggested fix: YAML and schema
/// errors (unknown fields with "did you mean"), everything Calico's validation rejects
/// (preDNAT without applyOnForward, ports without TCP/UDP/SCTP, IPv4/IPv6 mixes, …),
/// Kubernetes-style podSelector/namespaceSelector inside Calico rules (with the Calico
/// form), selectors that match no endpoint, ingress allows whose peers' egress is still
/// denied, policies that newly isolate endpoints (e.g. the cluster DNS), and rules
/// shadowed by an earlier rule. Pods come from Pods and Deployments in the files, as
/// `enforcer lab up` would run them (the cluster DNS pod is assumed when absent).
///
/// Exit status: 0 without errors (warnings allowed), 1 with errors.
///
/// Examples:
///
///   enforcer check -f dev-app.yaml -f policies/
///
///   enforcer check -f tests/fixtures/tutorial/ -o json
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct CheckArgs {
    /// Files or directories of YAML/JSON (repeatable).
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Output: text or json.
    #[arg(short = 'o', long, value_parser = ["text", "json"], default_value = "text")]
    pub output: String,
    /// Only errors and warnings (no notes).
    #[arg(short, long)]
    pub quiet: bool,
}

impl CheckArgs {
    pub fn execute(self) -> anyhow::Result<i32> {
        let mut report = check_paths(&self.files);
        if self.quiet {
            report
                .findings
                .retain(|f| f.severity != enforcer::check::Severity::Info);
        }
        if self.output == "json" {
            println!("{}", serde_json::to_string_pretty(&report.findings)?);
        } else {
            print!("{}", report.text());
        }
        Ok(i32::from(report.has_errors()))
    }
}
