//! `enforcer uninstall`: takes the enforcer off a node on purpose.

use std::path::PathBuf;

use clap::Args;

/// Detach the programs from every interface of this node and remove the node's pinned
/// maps and links, on purpose: traffic is no longer judged afterwards.
///
/// A stopped agent leaves everything attached (policy stays enforced through the
/// pins), so removing the `DaemonSet` alone keeps the last policy. Run this on each node
/// after it, in the node's network namespace (hostNetwork), as root.
///
/// It removes: our `tc` filters (clsact, priority 1, handle 1) of every interface, the
/// TCX, XDP and cgroup links pinned under the node's bpffs directory (each detached
/// before the command returns), and the maps.
///
/// Exit status: 0 when everything was removed, 1 on an error.
///
/// Examples:
///
///   kubectl delete -k deploy/kubernetes
///   sudo enforcer uninstall --node "$(hostname)"
///
///   sudo enforcer uninstall --node node1 --bpffs /sys/fs/bpf/enforcer/lab/node1
#[derive(Args, Debug)]
#[command(
    verbatim_doc_comment,
    about = "Detach the programs and remove the pins of a node, on purpose"
)]
pub struct UninstallArgs {
    /// The node's name (its pins are under /sys/fs/bpf/enforcer/<node>).
    #[arg(long, env = "ENFORCER_NODE")]
    pub node: String,
    /// bpffs directory of the node's pins (default: /sys/fs/bpf/enforcer/<node>).
    #[arg(long)]
    pub bpffs: Option<PathBuf>,
}

impl UninstallArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let pin_dir = self
            .bpffs
            .unwrap_or_else(|| PathBuf::from("/sys/fs/bpf/enforcer").join(&self.node));
        let report = enforcer::dataplane::attach::uninstall(&pin_dir)?;
        println!(
            "node {}: removed {} tc filters, detached {} pinned links, removed {} maps ({} removed)",
            self.node,
            report.filters,
            report.links,
            report.maps,
            pin_dir.display()
        );
        Ok(())
    }
}
