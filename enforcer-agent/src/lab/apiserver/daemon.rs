//! Starting and stopping a Kubernetes lab's API server process, and what the lab's
//! commands ask of it (`lab api-server stop|start|expire|revoke|grant`).

use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::model::Object;

use super::super::error::LabError;
use super::super::facade::Lab;
use super::super::host;
use super::super::paths::{LabName, LabPaths};
use super::super::process::{self, ProcessRecord, STOP_GRACE};
use super::client::ApiClient;
use super::{ApiServerError, CLUSTER_PORT, Tokens, kubeconfig, read_endpoints, write_private};

/// How long the server gets to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the agents reach the API server: the lab's external host, outside every
/// node (as a control plane is), through the nodes' `eth0`.
pub fn cluster_endpoint(lab: &LabName) -> (String, SocketAddr) {
    (
        host::external_netns(lab),
        SocketAddr::new(IpAddr::V4(host::EXTERNAL_IP_V4), CLUSTER_PORT),
    )
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ApiServerError {
    let path = path.to_path_buf();
    move |source| ApiServerError::Io { op, path, source }
}

/// Starts the server (tokens made on first start), waits until it listens, and
/// writes the kubeconfigs: `kubeconfig` for the agents, `admin.kubeconfig` for the
/// lab's commands.
pub fn start(
    lab: &LabName,
    paths: &LabPaths,
    binary: &Path,
) -> Result<ProcessRecord, ApiServerError> {
    let tokens_path = paths.tokens();
    let tokens = if let Ok(tokens) = super::read_tokens(&tokens_path) {
        tokens
    } else {
        let tokens = Tokens::generate();
        write_private(&tokens_path, &tokens)?;
        tokens
    };
    let endpoints_path = paths.apiserver_endpoints();
    let _ = std::fs::remove_file(&endpoints_path);
    let (netns, addr) = cluster_endpoint(lab);
    let log = paths.apiserver_log();
    let out = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(io_err("open log", &log))?;
    let err = out.try_clone().map_err(io_err("open log", &log))?;
    let mut command = Command::new(binary);
    command
        .args(["lab-apiserver", "--lab", lab.as_str()])
        .arg("--datastore")
        .arg(paths.datastore())
        .arg("--tokens")
        .arg(&tokens_path)
        .args(["--netns", &netns, "--addr", &addr.to_string()])
        .arg("--endpoints")
        .arg(&endpoints_path)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "info");
    }
    // SAFETY: the closure runs in the forked child before exec and makes one
    // async-signal-safe system call; it allocates nothing and takes no locks.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()?;
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(io_err("start", binary))?;
    let pid = child.id().cast_signed();
    let record = ProcessRecord::of(pid).unwrap_or(ProcessRecord { pid, start_time: 0 });
    let deadline = Instant::now() + START_TIMEOUT;
    let endpoints = loop {
        if let Ok(endpoints) = read_endpoints(&endpoints_path) {
            break endpoints;
        }
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || Instant::now() >= deadline {
            record.terminate(STOP_GRACE);
            return Err(ApiServerError::Client {
                what: "starting the lab API server".to_owned(),
                message: format!(
                    "{}; last lines of {}:\n{}",
                    exited.map_or_else(
                        || "not listening in time".to_owned(),
                        |s| format!("exited ({s})")
                    ),
                    log.display(),
                    process::log_tail(&log, 10)
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    write_private(
        &paths.kubeconfig(),
        &kubeconfig(&endpoints.cluster, &tokens.agent, "enforcer"),
    )?;
    write_private(
        &paths.admin_kubeconfig(),
        &kubeconfig(&endpoints.admin, &tokens.admin, "lab-admin"),
    )?;
    Ok(record)
}

/// The form a cluster stores an object in: Calico's kinds as their CRDs.
pub fn stored_form(object: &Object) -> Object {
    let mut object = object.clone();
    let crd = crate::model::calico::CalicoApi::CrdV1;
    match &mut object {
        Object::CalicoNetworkPolicy(o) => o.api = crd,
        Object::GlobalNetworkPolicy(o) => o.api = crd,
        Object::Tier(o) => o.api = crd,
        Object::NetworkSet(o) => o.api = crd,
        Object::GlobalNetworkSet(o) => o.api = crd,
        Object::HostEndpoint(o) => o.api = crd,
        _ => {}
    }
    object
}

impl Lab {
    /// Kubernetes labs: a client of the lab's API server, for the lab's commands.
    pub fn api_client(&self) -> Result<ApiClient, LabError> {
        Ok(ApiClient::open(&self.paths.admin_kubeconfig())?)
    }

    /// Writes objects the way the datastore of this lab is written: through the API
    /// server (Kubernetes labs) or into the directory.
    pub(crate) fn write_objects(
        &self,
        changed: &[Object],
        removed: &[Object],
    ) -> Result<(), LabError> {
        if self.state.kubernetes {
            let client = self.api_client()?;
            if !changed.is_empty() {
                client.apply(changed)?;
            }
            if !removed.is_empty() {
                client.delete(removed)?;
            }
        } else {
            if !changed.is_empty() {
                self.ds.apply(changed)?;
            }
            if !removed.is_empty() {
                let ids: Vec<_> = removed.iter().map(Object::id).collect();
                self.ds.delete(&ids)?;
            }
        }
        Ok(())
    }

    /// Starts the API server (again) and records it.
    pub fn start_apiserver(&mut self) -> Result<(), LabError> {
        let record = start(&self.name, &self.paths, &self.state.binary)?;
        self.state.apiserver_process = Some(record);
        self.save()
    }

    /// Stops the API server: the agents keep enforcing what they read, and report
    /// not ready until it is back.
    pub fn stop_apiserver(&mut self) -> Result<(), LabError> {
        if let Some(record) = self.state.apiserver_process.take() {
            record.terminate(STOP_GRACE);
        }
        self.save()
    }

    /// Sends a fault-injection control to the API server (`expire`, `revoke`,
    /// `grant` with `resource=…&group=…`).
    pub fn api_control(&self, control: &str, query: &str) -> Result<serde_json::Value, LabError> {
        Ok(self.api_client()?.control(control, query)?)
    }
}
