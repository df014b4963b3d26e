//! Everything a lab command can fail with.

use std::path::{Path, PathBuf};

use crate::cluster::PlanError;
use crate::connectivity::ConnectivityError;
use crate::datastore::DatastoreError;
use crate::model::LoadError;

use super::paths::NameError;
use super::state::StateError;
use super::{agent, dns, exec, netns, process, services};

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("lab {name} runs without an agent (it was brought up with --no-agent)")]
    NoAgent { name: String },
    #[error("invalid input, nothing changed: {0}")]
    Load(#[from] LoadError),
    #[error("invalid input, nothing changed: {0}")]
    Input(#[from] PlanError),
    #[error("invalid input, nothing changed: {0}")]
    Policy(Box<crate::policy::PolicyError>),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Datastore(#[from] DatastoreError),
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    #[error(transparent)]
    Services(#[from] services::ServicesError),
    #[error(transparent)]
    Dns(#[from] dns::DnsError),
    #[error(transparent)]
    Agent(#[from] agent::AgentError),
    #[error(transparent)]
    ApiServer(#[from] super::apiserver::ApiServerError),
    #[error(
        "lab {name} reads its objects from files (bring it up with --datastore kubernetes for an API server)"
    )]
    NoApiServer { name: String },
    #[error(transparent)]
    Probe(#[from] ConnectivityError),
    #[error(transparent)]
    Exec(#[from] exec::ExecError),
    #[error("lab {name} already exists ({what}); run `enforcer lab down --name {name}` first")]
    Exists { name: String, what: String },
    #[error(
        "lab {name} does not exist (no {path}); start it with `enforcer lab up --name {name} -f FILE`"
    )]
    NotFound { name: String, path: PathBuf },
    #[error(
        "lab {name} is broken ({path} is missing or unreadable); run `enforcer lab down --name {name}`"
    )]
    Broken { name: String, path: PathBuf },
    #[error("no pod {pod} in lab {lab} (see `enforcer lab get pods --name {lab}`)")]
    NoSuchPod { lab: String, pod: String },
    #[error("no node {node} in lab {lab} (see `enforcer lab get nodes --name {lab}`)")]
    NoSuchNode { lab: String, node: String },
    #[error("pod {pod}: expected NS/POD")]
    BadPodRef { pod: String },
    #[error("pod {pod}: its process {what}; last lines of {log}:\n{tail}")]
    PodProcess {
        pod: String,
        what: String,
        log: String,
        tail: String,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("lab {name} is busy: another `enforcer lab` command holds {path}")]
    Busy { name: String, path: PathBuf },
}

pub(super) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> LabError + 'a {
    move |source| LabError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}
