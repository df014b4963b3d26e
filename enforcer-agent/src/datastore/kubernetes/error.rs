//! What goes wrong talking to the API server, said so that an operator knows what to
//! fix: a 403 names the verb, the resource and the `ClusterRole` to change.

use std::path::PathBuf;

/// A failure of the Kubernetes datastore.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error(
        "not running in a pod (no in-cluster service account: {source}); give the API server with --kubeconfig PATH"
    )]
    InCluster {
        #[source]
        source: kube::config::InClusterError,
    },
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("Kubernetes client: {source}")]
    Client {
        #[source]
        source: Box<kube::Error>,
    },
    /// The API server answered 403: RBAC does not grant what the agent needs.
    #[error(
        "forbidden: the agent may not {verb} {resource} (API group {group:?}); grant it in the agent's ClusterRole (deploy/kubernetes/rbac.yaml): {message}"
    )]
    Forbidden {
        verb: &'static str,
        resource: String,
        group: String,
        message: String,
    },
    /// The API server cannot be reached, or failed the request.
    #[error("{verb} {resource}: the API server is unavailable: {message}")]
    Unavailable {
        verb: &'static str,
        resource: String,
        message: String,
    },
    /// Any other answer than the ones above.
    #[error("{verb} {resource}: the API server answered {code}: {message}")]
    Api {
        verb: &'static str,
        resource: String,
        code: u16,
        message: String,
    },
}

impl KubeError {
    /// Classifies a request's failure.
    pub fn from_request(
        verb: &'static str,
        resource: &super::resources::Resource,
        error: kube::Error,
    ) -> Self {
        match error {
            kube::Error::Api(status) if status.code == 403 => KubeError::Forbidden {
                verb,
                resource: resource.plural.to_owned(),
                group: resource.group.to_owned(),
                message: status.message,
            },
            kube::Error::Api(status) if status.code >= 500 || status.code == 429 => {
                KubeError::Unavailable {
                    verb,
                    resource: resource.qualified(),
                    message: format!("{} ({})", status.message, status.code),
                }
            }
            kube::Error::Api(status) => KubeError::Api {
                verb,
                resource: resource.qualified(),
                code: status.code,
                message: status.message,
            },
            other => KubeError::Unavailable {
                verb,
                resource: resource.qualified(),
                message: error_chain(&other),
            },
        }
    }
}

/// An error and its causes on one line (hyper's errors say little on their own).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}
