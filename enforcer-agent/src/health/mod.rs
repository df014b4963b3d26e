//! The agent's health and metrics endpoint (`enforcer agent --metrics-addr`), as a
//! `DaemonSet`'s probes and Prometheus expect it:
//!
//! - `/healthz`: the agent's event loop answers (it serves this endpoint on the same
//!   single-threaded runtime, so a wedged loop fails the liveness probe);
//! - `/readyz`: 200 once the current datastore revision is enforced on every local
//!   endpoint ([`readiness`]), 503 with the reasons otherwise;
//! - `/metrics`: Prometheus text format ([`metrics`]): packets by hook and reason from
//!   the counters map, policy generation, apply latency, objects refused, conntrack
//!   entries and map fill, watch restarts.

pub mod bpf;
pub mod metrics;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::datastore::status::AgentStatus;

#[derive(Debug, thiserror::Error)]
#[error("metrics endpoint {addr}: {source}")]
pub struct HealthError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Whether `status` says the agent enforces the current revision everywhere: `Ok`, or
/// every reason it does not.
pub fn readiness(status: &AgentStatus) -> Result<(), Vec<String>> {
    let mut reasons = Vec::new();
    if status.observed_revision == 0 {
        reasons.push("no datastore revision observed yet".to_owned());
    }
    if let Some(error) = &status.datastore_unavailable {
        reasons.push(format!("datastore unavailable: {error}"));
    }
    if let Some(error) = &status.error {
        reasons.push(format!(
            "revision {} refused (revision {} enforced): {error}",
            status.observed_revision, status.applied_revision
        ));
    } else if status.applied_revision < status.observed_revision {
        reasons.push(format!(
            "revision {} observed, {} enforced",
            status.observed_revision, status.applied_revision
        ));
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

/// What the endpoint reads.
pub struct Health {
    pub status: watch::Receiver<AgentStatus>,
    pub metrics: Arc<metrics::Metrics>,
}

impl Health {
    fn answer(&self, request: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        match request.uri().path() {
            "/healthz" | "/livez" => text(StatusCode::OK, "ok\n".to_owned(), "text/plain"),
            "/readyz" => match readiness(&self.status.borrow()) {
                Ok(()) => text(StatusCode::OK, "ok\n".to_owned(), "text/plain"),
                Err(reasons) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready:\n{}\n", reasons.join("\n")),
                    "text/plain",
                ),
            },
            "/metrics" => match self.metrics.encode() {
                Ok(body) => text(
                    StatusCode::OK,
                    body,
                    "text/plain; version=0.0.4; charset=utf-8",
                ),
                Err(error) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("encoding metrics: {error}\n"),
                    "text/plain",
                ),
            },
            _ => text(
                StatusCode::NOT_FOUND,
                "not found\n".to_owned(),
                "text/plain",
            ),
        }
    }
}

/// Binds `addr` (before the agent loads anything, so that a port in use is an error
/// at start).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, HealthError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| HealthError { addr, source })
}

/// Serves until dropped.
pub async fn serve(listener: tokio::net::TcpListener, health: Health) {
    let health = Arc::new(health);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let health = Arc::clone(&health);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let response = health.answer(&request);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
#[expect(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_the_observed_revision_is_enforced_and_the_datastore_answers() {
        let mut status = AgentStatus::default();
        assert!(readiness(&status).is_err());
        status.observed_revision = 4;
        status.applied_revision = 4;
        assert_eq!(readiness(&status), Ok(()));
        status.datastore_unavailable = Some("connection refused".into());
        let reasons = readiness(&status).unwrap_err();
        assert!(reasons[0].contains("connection refused"), "{reasons:?}");
        status.datastore_unavailable = None;
        status.observed_revision = 5;
        assert!(readiness(&status).unwrap_err()[0].contains("5 observed, 4 enforced"));
        status.error = Some("bad selector".into());
        assert!(readiness(&status).unwrap_err()[0].contains("bad selector"));
    }
}
