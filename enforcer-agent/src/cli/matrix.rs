//! `enforcer matrix`: the connectivity truth table from files, without a lab.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use enforcer::connectivity::{ProbeRequest, ProbeResult, Protocol};
use enforcer::matrix::{diff, matrix};
use enforcer::model::load_manifests;
use enforcer::offline;

use super::EXIT_NO;
use super::output::{self, Output, OutputArg};
use super::table;

/// The connectivity matrix the policies give, computed by the reference evaluator
/// (both legs: the source's egress and the destination's ingress), without a lab.
///
/// The same probes as `enforcer lab probe` on a lab brought up from the same files:
/// every pod (Deployments expanded to <name>-<i>, the cluster DNS pod assumed when
/// absent) to every other pod, on each target's declared container ports with their
/// protocols, and the same JSON (`from`, `to`, `port`, `protocol`, `connected`,
/// `result`). Pods without `status.podIP` get the lab's addresses.
///
/// What a change opens or closes:
///   --apply CHANGE...  the files of -f, then CHANGE on top (as `kubectl apply` would)
///   --diff OLD NEW     the files of -f plus OLD, against the files of -f plus NEW
///                      (each a file or a directory)
/// prints `+ from -> to:port/proto` for opened flows and `- …` (with why) for closed.
///
/// Documents of kinds the enforcer does not use (`ConfigMap`, `Secret`, `Ingress`, …)
/// are skipped with a note on standard error; the pods of a `StatefulSet` are
/// expanded as a Deployment's are (<name>-<i>), a `DaemonSet`'s as one per node.
///
/// Output: -o table (the default), json or yaml.
///
/// Exit status: 0 success (with --apply/--diff: nothing opens or closes), 3 with
/// --apply/--diff when flows open or close (as `kubectl diff`), 1 on an error.
///
/// Examples:
///
///   enforcer matrix -f tests/fixtures/tutorial/
///
///   enforcer matrix -f tests/fixtures/tutorial/ --from 'dev-app/*' -o json
///
///   enforcer matrix -f tests/fixtures/tutorial/ --apply tests/fixtures/tutorial-fixes/
///
///   enforcer matrix -f tests/fixtures/tutorial/dev-app-deployments.yaml --diff tests/fixtures/tutorial/ tests/fixtures/tutorial-fixes/
///
///   helm template shop ./chart | enforcer matrix -f - -f policies/
#[derive(Args, Debug)]
#[command(
    verbatim_doc_comment,
    about = "The connectivity matrix from files, without a lab; what a change opens or closes"
)]
pub struct MatrixArgs {
    /// Files or directories of YAML/JSON (repeatable; `-`: standard input).
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    /// Show what applying these files on top of -f opens and closes (repeatable).
    #[arg(long, conflicts_with = "diff")]
    pub apply: Vec<PathBuf>,
    /// Show what going from OLD to NEW (each added to -f) opens and closes.
    #[arg(long, num_args = 2, value_names = ["OLD", "NEW"])]
    pub diff: Vec<PathBuf>,
    /// Sources: NS/POD, NS/* or * (repeatable; default all pods).
    #[arg(long)]
    pub from: Vec<String>,
    /// Targets: NS/POD, NS/* or * (repeatable; default all pods).
    #[arg(long)]
    pub to: Vec<String>,
    /// This port instead of the declared ones.
    #[arg(long)]
    pub port: Option<u16>,
    /// TCP or UDP instead of the declared protocol.
    #[arg(long)]
    pub protocol: Option<String>,
    /// Use the pods' and Services' IPv6 addresses (a Service's IPv6 `ClusterIP`).
    #[arg(long)]
    pub ipv6: bool,
    #[command(flatten)]
    pub output: OutputArg,
}

impl MatrixArgs {
    pub fn execute(self) -> anyhow::Result<i32> {
        let format = self
            .output
            .check("matrix", &[Output::Table, Output::Json, Output::Yaml])?;
        let protocol = match &self.protocol {
            None => None,
            Some(p) => Some(
                Protocol::parse(p)
                    .with_context(|| format!("--protocol {p:?}: expected TCP or UDP"))?,
            ),
        };
        let req = ProbeRequest {
            from: self.from.clone(),
            to: self.to.clone(),
            port: self.port,
            protocol,
            ipv6: self.ipv6,
            service_external: false,
            source_port: None,
            timeout: std::time::Duration::ZERO,
        };
        let sides: Option<(Vec<PathBuf>, Vec<PathBuf>)> = if !self.diff.is_empty() {
            let mut old = self.files.clone();
            old.push(self.diff[0].clone());
            let mut new = self.files.clone();
            new.push(self.diff[1].clone());
            Some((old, new))
        } else if !self.apply.is_empty() {
            let mut new = self.files.clone();
            new.extend(self.apply.iter().cloned());
            Some((self.files.clone(), new))
        } else {
            None
        };
        match sides {
            None => {
                if self.files.is_empty() {
                    anyhow::bail!("give -f FILE... (files or directories of YAML)");
                }
                let results = results(&self.files, &req, true)?;
                if format == Output::Table {
                    print!("{}", table::probe_matrix(&results));
                } else {
                    print!("{}", output::structured(format, &results)?);
                }
                Ok(0)
            }
            Some((old, new)) => {
                let change = diff(&results(&old, &req, false)?, &results(&new, &req, true)?);
                if format == Output::Table {
                    print!("{}", change.text());
                } else {
                    print!("{}", output::structured(format, &change)?);
                }
                Ok(if change.opened.is_empty() && change.closed.is_empty() {
                    0
                } else {
                    EXIT_NO
                })
            }
        }
    }
}

/// The matrix of `paths`; `notes`: say on standard error which documents were skipped
/// (once per run: the files of -f are read for both sides of a change).
fn results(paths: &[PathBuf], req: &ProbeRequest, notes: bool) -> anyhow::Result<Vec<ProbeResult>> {
    let (loaded, skipped) = load_manifests(paths)?;
    if notes {
        for s in &skipped {
            eprintln!("note: {s}");
        }
    }
    let completed = offline::complete(&loaded)?;
    let (cluster, _warnings) = completed.cluster()?;
    Ok(matrix(&completed, &cluster, req)?)
}
