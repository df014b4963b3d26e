//! `enforcer explain`: the verdict of a flow and what decided it, per leg.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use enforcer::datastore::file::FileDatastore;
use enforcer::explain::{FlowQuery, explain};
use enforcer::lab::LabName;
use enforcer::model::load_paths;
use enforcer::policy::Cluster;

/// Explain a flow: for the source's egress and the destination's ingress, the verdict
/// and the tier, policy and rule that decided it (or the default that applied).
///
/// Examples:
///   enforcer explain --lab lab --from dev-app/frontend-0 --to dev-app/backend-0 --port 8080/TCP
///   enforcer explain -f cluster/ --from dev-app/frontend-0 --to 198.18.0.12 --port 53/UDP -o json
#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// Files or directories of YAML, instead of a lab (pods without `status.podIP`
    /// and Deployments' pods get the addresses `enforcer lab up` would give them).
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
    /// Output: text or json.
    #[arg(short = 'o', long, default_value = "text")]
    pub output: String,
}

impl ExplainArgs {
    pub fn execute(self) -> anyhow::Result<i32> {
        let objects = match &self.lab {
            Some(name) => {
                let name = LabName::new(name)?;
                let store = FileDatastore::open(name.paths().datastore())?;
                store
                    .list()
                    .with_context(|| format!("reading lab {name:?}'s datastore"))?
            }
            None if self.files.is_empty() => {
                anyhow::bail!("give -f FILE... or --lab NAME");
            }
            // Files: completed as `enforcer lab up` would (Deployments, addresses, DNS).
            None => enforcer::offline::complete(&load_paths(&self.files)?)?.objects,
        };
        let (cluster, _warnings) = Cluster::from_objects(&objects)?;
        let query = FlowQuery {
            from: self.from,
            to: self.to,
            port: self.port,
            ipv6: self.ipv6,
        };
        let explanation = explain(&cluster, &query)?;
        if self.output == "json" {
            println!("{}", serde_json::to_string_pretty(&explanation)?);
        } else if self.brief {
            println!("{}", explanation.brief());
        } else {
            print!("{}", explanation.text());
        }
        Ok(if explanation.allowed { 0 } else { 3 })
    }
}
