//! The lab's Kubernetes API server (`enforcer lab up --datastore kubernetes`): the
//! lab's objects served over HTTP the way a cluster serves them, so that agents read
//! them with kube-rs exactly as on a real cluster.
//!
//! One process (`enforcer lab-apiserver`, started and stopped by the lab) with two
//! listeners on the same objects:
//! - the cluster listener, inside the lab's network at [`CLUSTER_PORT`] of the address
//!   the lab gives it: where the agents' kubeconfig points; their requests cross the
//!   node's host interface as on a real node (Calico's failsafe ports keep 6443 open);
//! - the admin listener on the host's loopback (an ephemeral port): `lab apply`,
//!   `lab delete` and the tests.
//!
//! Objects persist in the lab's file datastore (its revision is the resourceVersion);
//! [`store`] keeps what watches need, [`http`] speaks the API, [`auth`] holds the
//! tokens and the agent's RBAC rules, [`client`] is what the lab's commands use.

pub mod auth;
pub mod client;
pub mod daemon;
pub mod http;
pub mod store;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};

use crate::datastore::file::FileDatastore;

/// The API server's port in the lab's network (the usual kube-apiserver port).
pub const CLUSTER_PORT: u16 = 6443;

#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
    #[error("lab API server: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("lab API server: listening on {addr} in netns {netns}: {source}")]
    Listen {
        addr: SocketAddr,
        netns: String,
        #[source]
        source: std::io::Error,
    },
    #[error("lab API server: {0}")]
    Store(#[from] store::StoreError),
    #[error("lab API server: {what}: {message}")]
    Client { what: String, message: String },
}

/// Where a running server listens, written once it does (`apiserver.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    pub pid: u32,
    /// `http://127.0.0.1:PORT` on the host.
    pub admin: String,
    /// `http://ADDR:6443` in the lab's network.
    pub cluster: String,
}

/// The bearer tokens (`tokens.json`, readable by root only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub admin: String,
    pub agent: String,
}

impl Tokens {
    /// Fresh random tokens.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        // /dev/urandom cannot fail on Linux short of a broken system; a token of
        // zeroes would still be a lab-only credential on loopback and the lab's veths.
        if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
            let _ = std::io::Read::read_exact(&mut f, &mut bytes);
        }
        let hex = |b: &[u8]| {
            b.iter().fold(String::new(), |mut s, x| {
                let _ = std::fmt::Write::write_fmt(&mut s, format_args!("{x:02x}"));
                s
            })
        };
        Self {
            admin: hex(&bytes[..16]),
            agent: hex(&bytes[16..]),
        }
    }
}

/// What `lab-apiserver` is started with.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The lab's file datastore.
    pub datastore: PathBuf,
    /// `tokens.json`.
    pub tokens: PathBuf,
    /// The netns and address of the cluster listener.
    pub cluster_netns: String,
    pub cluster_addr: SocketAddr,
    /// `apiserver.json`, written once both listeners are bound.
    pub endpoints: PathBuf,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ApiServerError> {
    let text = std::fs::read_to_string(path).map_err(|source| ApiServerError::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ApiServerError::Io {
        op: "parse",
        path: path.to_path_buf(),
        source: e.into(),
    })
}

/// Writes JSON by rename, readable by root only (tokens, kubeconfigs).
pub fn write_private(path: &Path, value: &impl Serialize) -> Result<(), ApiServerError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |op, source| ApiServerError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let text = serde_json::to_vec_pretty(value).map_err(|e| io("encode", e.into()))?;
    let mut file = std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io("create", e))?;
    file.write_all(&text).map_err(|e| io("write", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("rename", e))
}

pub fn read_endpoints(path: &Path) -> Result<Endpoints, ApiServerError> {
    read_json(path)
}

pub fn read_tokens(path: &Path) -> Result<Tokens, ApiServerError> {
    read_json(path)
}

/// A kubeconfig (JSON, which YAML readers take) for `server` with `token`.
pub fn kubeconfig(server: &str, token: &str, user: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "lab", "cluster": {"server": server}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": user}}],
        "current-context": "lab",
    })
}

/// Binds `addr` inside the named network namespace (a thread enters it; the socket
/// stays there, the process does not).
fn listen_in_netns(netns: &str, addr: SocketAddr) -> Result<TcpListener, ApiServerError> {
    let listen_err = |source| ApiServerError::Listen {
        addr,
        netns: netns.to_owned(),
        source,
    };
    let ns_path = Path::new("/run/netns").join(netns);
    let file = std::fs::File::open(&ns_path).map_err(listen_err)?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| listen_err(e.into()))?;
                TcpListener::bind(addr).map_err(listen_err)
            })
            .join()
            .unwrap_or_else(|_| {
                Err(listen_err(std::io::Error::other(
                    "listener thread panicked",
                )))
            })
    })
}

/// Runs the server until SIGTERM.
pub fn serve(options: &ServeOptions) -> Result<(), ApiServerError> {
    let tokens = read_tokens(&options.tokens)?;
    let file = FileDatastore::open(&options.datastore).map_err(store::StoreError::from)?;
    let store = store::Store::open(file)?;
    let cluster = listen_in_netns(&options.cluster_netns, options.cluster_addr)?;
    let admin_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let admin = TcpListener::bind(admin_addr).map_err(|source| ApiServerError::Listen {
        addr: admin_addr,
        netns: "(host)".to_owned(),
        source,
    })?;
    let io = |op: &'static str, source| ApiServerError::Io {
        op,
        path: options.endpoints.clone(),
        source,
    };
    let admin_port = admin
        .local_addr()
        .map_err(|e| io("local address", e))?
        .port();
    for listener in [&cluster, &admin] {
        listener
            .set_nonblocking(true)
            .map_err(|e| io("nonblocking", e))?;
    }
    let server = Arc::new(http::Server {
        store,
        access: auth::Access::new(tokens.admin, tokens.agent),
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| io("runtime", e))?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| io("signal", e))?;
        let cluster = tokio::net::TcpListener::from_std(cluster).map_err(|e| io("listener", e))?;
        let admin = tokio::net::TcpListener::from_std(admin).map_err(|e| io("listener", e))?;
        write_private(
            &options.endpoints,
            &Endpoints {
                pid: std::process::id(),
                admin: format!("http://127.0.0.1:{admin_port}"),
                cluster: format!("http://{}", options.cluster_addr),
            },
        )?;
        tracing::info!(cluster = %options.cluster_addr, admin_port, "lab API server listening");
        tokio::select! {
            () = accept(cluster, Arc::clone(&server)) => {}
            () = accept(admin, server) => {}
            _ = term.recv() => tracing::info!("SIGTERM: lab API server stopping"),
        }
        Ok(())
    })
}

async fn accept(listener: tokio::net::TcpListener, server: Arc<http::Server>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request| Arc::clone(&server).handle(request));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
