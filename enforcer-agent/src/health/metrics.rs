//! The agent's Prometheus metrics (prometheus-client). What the agent does is read
//! from its published [`AgentStatus`] (a task follows the status channel: every apply
//! is observed, since the loop awaits between two applies); what the programs count is
//! read from the pinned maps at scrape time ([`super::bpf`]). Other collectors (per-rule
//! counters) are added with [`MetricsBuilder::collector`].

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::datastore::status::AgentStatus;

/// Metric names start with this.
pub const PREFIX: &str = "enforcer";

/// A counter read at scrape time from a function (the datastore's own counters).
pub struct FnCounter {
    name: &'static str,
    help: &'static str,
    read: Box<dyn Fn() -> u64 + Send + Sync>,
}

impl FnCounter {
    pub fn new(
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Self {
        Self {
            name,
            help,
            read: Box::new(read),
        }
    }
}

impl fmt::Debug for FnCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnCounter")
            .field("name", &self.name)
            .field("help", &self.help)
            .finish_non_exhaustive()
    }
}

impl Collector for FnCounter {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let metric = encoder.encode_descriptor(self.name, self.help, None, MetricType::Counter)?;
        ConstCounter::new((self.read)()).encode(metric)
    }
}

/// Builds [`Metrics`].
pub struct MetricsBuilder {
    registry: Registry,
}

/// The agent's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    apply_seconds: Histogram,
    generation: Gauge,
    applied_revision: Gauge,
    observed_revision: Gauge,
    objects_refused: Gauge,
    endpoints_attached: Gauge,
    datastore_available: Gauge,
    applies: Counter,
}

impl Default for MetricsBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricsBuilder {
    pub fn new() -> Self {
        Self {
            registry: Registry::with_prefix(PREFIX),
        }
    }

    /// Adds a collector (called on each scrape).
    #[must_use]
    pub fn collector(mut self, collector: impl Collector) -> Self {
        self.registry.register_collector(Box::new(collector));
        self
    }

    pub fn build(mut self) -> Metrics {
        let r = &mut self.registry;
        // 100 µs to ~26 s.
        let apply_seconds = Histogram::new(exponential_buckets(0.0001, 4.0, 10));
        r.register(
            "policy_apply_seconds",
            "Time from reading a datastore revision to its policy enforced",
            apply_seconds.clone(),
        );
        let generation = Gauge::default();
        r.register(
            "policy_generation",
            "Policy generation live in the maps",
            generation.clone(),
        );
        let applied_revision = Gauge::default();
        r.register(
            "datastore_applied_revision",
            "Datastore revision whose policy is enforced",
            applied_revision.clone(),
        );
        let observed_revision = Gauge::default();
        r.register(
            "datastore_observed_revision",
            "Highest datastore revision read",
            observed_revision.clone(),
        );
        let objects_refused = Gauge::default();
        r.register(
            "objects_refused",
            "Objects refused (they do not load, validate or compile); the rest is enforced",
            objects_refused.clone(),
        );
        let endpoints_attached = Gauge::default();
        r.register(
            "endpoints_attached",
            "Interfaces carrying the programs",
            endpoints_attached.clone(),
        );
        let datastore_available = Gauge::default();
        r.register(
            "datastore_available",
            "1 when the datastore answers, 0 while it does not (the policy in force stays)",
            datastore_available.clone(),
        );
        let applies = Counter::default();
        r.register(
            "policy_applies",
            "Policies written to the maps",
            applies.clone(),
        );
        Metrics {
            registry: self.registry,
            apply_seconds,
            generation,
            applied_revision,
            observed_revision,
            objects_refused,
            endpoints_attached,
            datastore_available,
            applies,
        }
    }
}

impl Metrics {
    /// Prometheus text format (0.0.4).
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// Records a status: gauges follow it, a new apply is observed.
    pub fn observe(&self, status: &AgentStatus, previous: Option<&AgentStatus>) {
        self.generation.set(i64::from(status.generation));
        self.applied_revision
            .set(i64::try_from(status.applied_revision).unwrap_or(i64::MAX));
        self.observed_revision
            .set(i64::try_from(status.observed_revision).unwrap_or(i64::MAX));
        self.endpoints_attached
            .set(i64::try_from(status.endpoints_attached).unwrap_or(i64::MAX));
        self.objects_refused.set(i64::from(status.error.is_some()));
        self.datastore_available
            .set(i64::from(status.datastore_unavailable.is_none()));
        if previous.is_none_or(|p| p.applies != status.applies) && status.applies > 0 {
            self.applies.inc();
            self.apply_seconds
                .observe(status.last_apply_us as f64 / 1e6);
        }
    }
}

/// Follows the agent's status until the channel closes.
pub async fn follow(mut status: watch::Receiver<AgentStatus>, metrics: Arc<Metrics>) {
    let mut previous: Option<AgentStatus> = None;
    loop {
        let current = status.borrow_and_update().clone();
        metrics.observe(&current, previous.as_ref());
        previous = Some(current);
        if status.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_apply_is_observed_once_and_gauges_follow_the_status() {
        let metrics = MetricsBuilder::new()
            .collector(FnCounter::new(
                "datastore_watch_restarts",
                "Watches restarted",
                || 3,
            ))
            .build();
        let status = AgentStatus {
            observed_revision: 7,
            applied_revision: 7,
            generation: 1,
            applies: 1,
            last_apply_us: 2_500,
            ..AgentStatus::default()
        };
        metrics.observe(&status, None);
        metrics.observe(&status, Some(&status));
        let text = metrics.encode().unwrap_or_default();
        assert!(text.contains("enforcer_policy_generation 1"), "{text}");
        assert!(
            text.contains("enforcer_policy_apply_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("enforcer_datastore_applied_revision 7"),
            "{text}"
        );
        assert!(text.contains("enforcer_datastore_available 1"), "{text}");
        assert!(
            text.contains("enforcer_datastore_watch_restarts_total 3"),
            "{text}"
        );
    }
}
