//! `enforcer explain`: the verdict of a flow and what decided it, per leg.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use enforcer::explain::{FlowQuery, explain};
use enforcer::model::load_manifests;
use enforcer::policy::Cluster;

use super::EXIT_NO;
use super::output::{self, Output, OutputArg};

/// Explain a flow: for the source's egress and the destination's ingress, the verdict
/// and the tier, policy and rule that decided it (or the default that applied).
///
/// Output: -o table (the default: each leg and what decided it; --brief: one line),
/// json or yaml.
///
/// Exit status: 0 when the flow is allowed, 3 when it is denied, 1 on an error.
///
/// Examples:
///
///   enforcer explain -f tests/fixtures/tutorial/ --from dev-app/frontend-0 --to dev-app/backend-0 --port 8080/TCP
///
///   enforcer explain -f tests/fixtures/tutorial/ --from dev-app/frontend-0 --to kube-system/coredns-0 --port 53/UDP -o json
///
///   enforcer explain --lab lab --from dev-app/frontend-0 --to dev-app/backend-0 --port 8080/TCP --brief
#[derive(Args, Debug)]
#[command(
    verbatim_doc_comment,
    about = "Explain a flow: the verdict of each leg and the rule that decided it"
)]
pub struct ExplainArgs {
    /// Files or directories of YAML (`-`: standard input), instead of a lab (pods
    /// without `status.podIP` and Deployments' pods get the addresses `enforcer lab up`
    /// would give them).
    #[arg(short = 'f', long = "filename", conflicts_with = "lab")]
    pub files: Vec<PathBuf>,
    /// Explain over the objects of a running `enforcer lab`.
    #[arg(long)]
    pub lab: Option<String>,
    /// Source: NS/POD or an IP address.
    #[arg(long)]
    pub from: String,
    /// Destination: NS/POD or an IP address.
    #[arg(long)]
    pub to: String,
    /// PORT/PROTOCOL, e.g. 8080/TCP, 53/UDP, 8/ICMP (ICMP type).
    #[arg(long)]
    pub port: String,
    /// Use the pods' IPv6 addresses.
    #[arg(long)]
    pub ipv6: bool,
    /// One line: the verdict and, when denied, why.
    #[arg(long)]
    pub brief: bool,
    #[command(flatten)]
    pub output: OutputArg,
}

impl ExplainArgs {
    pub fn execute(self) -> anyhow::Result<i32> {
        let format = self
            .output
            .check("explain", &[Output::Table, Output::Json, Output::Yaml])?;
        let objects = match &self.lab {
            Some(name) => super::lab::datastore_objects(name)
                .with_context(|| format!("reading lab {name:?}'s datastore"))?,
            None if self.files.is_empty() => {
                anyhow::bail!("give -f FILE... or --lab NAME");
            }
            // Files: completed as `enforcer lab up` would (Deployments, addresses, DNS).
            None => {
                let (loaded, skipped) = load_manifests(&self.files)?;
                for s in &skipped {
                    eprintln!("note: {s}");
                }
                enforcer::offline::complete(&loaded)?.objects
            }
        };
        let (cluster, _warnings) = Cluster::from_objects(&objects)?;
        let query = FlowQuery {
            from: self.from,
            to: self.to,
            port: self.port,
            ipv6: self.ipv6,
        };
        let explanation = explain(&cluster, &query)?;
        if format != Output::Table {
            print!("{}", output::structured(format, &explanation)?);
        } else if self.brief {
            println!("{}", explanation.brief());
        } else {
            print!("{}", explanation.text());
        }
        Ok(if explanation.allowed { 0 } else { EXIT_NO })
    }
}
