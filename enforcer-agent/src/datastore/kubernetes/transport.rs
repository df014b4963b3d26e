//! The HTTP client under kube-rs, with TCP keepalive on every connection to the API
//! server (as client-go's dialer has), which kube-rs's default client leaves off.
//!
//! A watch is a response the agent only reads: without keepalive it sends nothing on
//! that connection for as long as the watch lasts. Behind a host endpoint that is a
//! flow the host programs may never see leave the node: the connection was opened
//! before they were attached (the agent reads its policy first), so its packets from
//! the API server find no conntrack entry and are dropped as mid-connection traffic
//! without state, and the watch hangs, silently, until a read timeout. A keepalive
//! probe is a packet the node sends to the API server's port: the failsafe outbound
//! ports (`tcp:6443`) let it out and record the flow, and the server's packets pass as
//! its replies. Keepalive also finds a connection whose peer is gone.
//!
//! The stack is kube-rs's own minus its tracing and decompression layers: base URI,
//! credentials, extra headers, then rustls (or plain HTTP for an `http://` server).

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt as _;

/// Idle time before the first keepalive probe.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
/// Time between probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Unanswered probes before the kernel gives the connection up.
pub const KEEPALIVE_RETRIES: u32 = 6;

/// A kube-rs client for `config` whose connections send TCP keepalive probes.
pub fn client(config: kube::Config) -> Result<kube::Client, kube::Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_keepalive(Some(KEEPALIVE_IDLE));
    http.set_keepalive_interval(Some(KEEPALIVE_INTERVAL));
    http.set_keepalive_retries(Some(KEEPALIVE_RETRIES));
    http.set_connect_timeout(config.connect_timeout);
    let https = config.rustls_https_connector_with_connector(http)?;
    let http_client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build::<_, kube::client::Body>(https);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(http_client);
    Ok(kube::Client::new(service, config.default_namespace))
}
