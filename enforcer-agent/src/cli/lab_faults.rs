//! The arguments of `enforcer lab api-server`: faults of a Kubernetes lab's API server
//! (stop, start, expire the watch history, revoke and grant the agents' permissions).
//! `cli/lab.rs` runs them (only it may use the lab).

use clap::{Args, Subcommand};

/// Faults of a Kubernetes lab's API server, for trying what the agent does.
///
/// Examples:
///
///   enforcer lab api-server stop
///
///   enforcer lab api-server revoke --resource pods
///
///   enforcer lab api-server expire
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ApiServerCommandArgs {
    #[command(subcommand)]
    pub action: ApiServerAction,
}

#[derive(Subcommand, Debug)]
pub enum ApiServerAction {
    /// Stop the API server (agents keep enforcing and report not ready).
    ///
    /// The agents keep the last policy they compiled; their readiness probe fails
    /// until the server is back and they have listed everything again.
    ///
    /// Example:
    ///
    ///   enforcer lab api-server stop
    #[command(verbatim_doc_comment)]
    Stop,
    /// Start it again (on the same objects).
    ///
    /// The objects persist in the lab's datastore directory; the agents reconnect and
    /// resume their watches.
    ///
    /// Example:
    ///
    ///   enforcer lab api-server start
    #[command(verbatim_doc_comment)]
    Start,
    /// Forget the watch history: every watch ends and resuming answers 410 Gone.
    ///
    /// What a real API server does after compaction: the agents must list again.
    ///
    /// Example:
    ///
    ///   enforcer lab api-server expire
    #[command(verbatim_doc_comment)]
    Expire,
    /// Take the agents' permissions on a resource away (requests answer 403).
    ///
    /// As a broken RBAC rule would: the agent reports the resource it cannot read and
    /// keeps enforcing what it has.
    ///
    /// Examples:
    ///
    ///   enforcer lab api-server revoke --resource pods
    ///
    ///   enforcer lab api-server revoke --resource globalnetworkpolicies --group crd.projectcalico.org
    #[command(verbatim_doc_comment)]
    Revoke(RuleArgs),
    /// Give them back.
    ///
    /// Undoes `revoke` for the same resource and group.
    ///
    /// Example:
    ///
    ///   enforcer lab api-server grant --resource pods
    #[command(verbatim_doc_comment)]
    Grant(RuleArgs),
}

#[derive(Args, Debug)]
pub struct RuleArgs {
    /// The resource (plural), e.g. `pods`, `globalnetworkpolicies`.
    #[arg(long)]
    pub resource: String,
    /// Its API group (empty for the core group), e.g. `crd.projectcalico.org`.
    #[arg(long, default_value = "")]
    pub group: String,
}
