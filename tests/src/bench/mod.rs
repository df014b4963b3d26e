//! The benchmark suite behind `cargo xtask bench` (binary `enforcer-bench`).
//!
//! Every ratio is measured within one run, on this machine, with the two sides
//! interleaved (A B A B …) and the medians compared, so that the noise of a shared
//! machine hits both sides alike. Goals are reported, never asserted: only a real error
//! (a verifier rejection, a lab that does not come up) fails the suite.
//!
//! - [`testrun`]: `p1` rule scaling and `p2` floor ratios, `BPF_PROG_TEST_RUN` of the
//!   real programs over maps the real compiler and `GenerationWriter` filled.
//! - [`compile`]: `p6` compile times.
//! - [`lab`]: `p3` packets/s against no policy, iptables and nftables, `p5` update
//!   latency, `p6` agent RSS and BPF map memory, in an `enforcer lab`.
//! - [`xdp`]: `p4` drop rate of a `NodePort` flood, XDP preDNAT deny vs nftables.
//! - [`rulesets`]: the iptables and nftables translations of a policy set.
//! - [`scenario`]: the synthetic clusters every benchmark uses.
//! - [`plots`]: the SVG plots written beside the JSON.

pub mod compile;
pub mod generators;
pub mod lab;
pub mod p3;
pub mod p5;
pub mod plots;
pub mod rawbpf;
pub mod rulesets;
pub mod scenario;
pub mod testrun;
pub mod xdp;

use std::fmt::Write as _;
use std::time::Instant;

use serde::Serialize;

/// Sizes of one run.
#[derive(Clone, Copy, Debug)]
pub struct Mode {
    /// `--quick`: small sizes and few repetitions; a smoke test of the whole suite.
    pub quick: bool,
}

impl Mode {
    /// Rules for `p1`/`p3` ("10,000 rules in force").
    pub fn rules(self) -> usize {
        if self.quick { 1_000 } else { 10_000 }
    }
    /// Policies of the scale cluster.
    pub fn policies(self) -> usize {
        if self.quick { 1_000 } else { 10_000 }
    }
    /// Pods of the scale cluster.
    pub fn pods(self) -> usize {
        if self.quick { 500 } else { 5_000 }
    }
    /// Samples per measured quantity (medians over these).
    pub fn samples(self) -> usize {
        if self.quick { 3 } else { 7 }
    }
}

/// One line of the report (and of the JSON).
#[derive(Clone, Debug, Serialize)]
pub struct Metric {
    pub name: String,
    /// `None`: not measured (see `detail`); printed as n/a, written as `null`.
    pub value: Option<f64>,
    pub unit: String,
    pub detail: String,
    /// The goal, as text (`≤ 1.10`), if the metric has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
    /// Whether the goal is met (`None`: no goal or no value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goal_met: Option<bool>,
}

/// A goal: the value must be at most (`AtMost`) or at least (`AtLeast`) the bound.
#[derive(Clone, Copy, Debug)]
pub enum Goal {
    AtMost(f64),
    AtLeast(f64),
}

impl Metric {
    pub fn new(name: &str, value: f64, unit: &str, detail: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            value: Some(value),
            unit: unit.to_owned(),
            detail: detail.into(),
            goal: None,
            goal_met: None,
        }
    }

    pub fn missing(name: &str, unit: &str, detail: impl Into<String>) -> Self {
        Self {
            value: None,
            ..Self::new(name, 0.0, unit, detail)
        }
    }

    #[must_use]
    pub fn goal(mut self, goal: Goal) -> Self {
        let (text, met) = match goal {
            Goal::AtMost(b) => (format!("<= {b}"), self.value.map(|v| v <= b)),
            Goal::AtLeast(b) => (format!(">= {b}"), self.value.map(|v| v >= b)),
        };
        self.goal = Some(text);
        self.goal_met = met;
        self
    }
}

/// A curve of a plot: one dataplane's (x, y) points.
#[derive(Clone, Debug, Serialize)]
pub struct Line {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// The data of one plot (`plots.rs` draws it), kept in the JSON too.
#[derive(Clone, Debug, Serialize)]
pub struct Series {
    /// File stem of the SVG (`<json stem>.<name>.svg`).
    pub name: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Logarithmic x axis (rule counts, cluster sizes).
    pub log_x: bool,
    pub lines: Vec<Line>,
}

/// A file written beside the JSON (`<json stem>.<name>`), e.g. a rendered rule set.
#[derive(Clone, Debug)]
pub struct Artifact {
    pub name: String,
    pub content: String,
}

/// Everything a run measured.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub metrics: Vec<Metric>,
    pub series: Vec<Series>,
    #[serde(skip)]
    pub artifacts: Vec<Artifact>,
}

impl Report {
    pub fn push(&mut self, metric: Metric) {
        eprintln!("bench: {} = {}", metric.name, format_value(metric.value));
        self.metrics.push(metric);
    }

    /// Keeps `content` to be written beside the JSON as `<json stem>.<name>`.
    pub fn artifact(&mut self, name: &str, content: impl Into<String>) {
        self.artifacts.push(Artifact {
            name: name.to_owned(),
            content: content.into(),
        });
    }

    pub fn series(&mut self, series: Series) {
        self.series.push(series);
    }

    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let name_w = self
            .metrics
            .iter()
            .map(|m| m.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<name_w$}  {:>12}  {:<8}  {:<9}  detail",
            "metric", "value", "unit", "goal"
        );
        for m in &self.metrics {
            let goal = match (&m.goal, m.goal_met) {
                (Some(g), Some(true)) => format!("{g} ok"),
                (Some(g), Some(false)) => format!("{g} MISS"),
                (Some(g), None) => g.clone(),
                (None, _) => String::new(),
            };
            let _ = writeln!(
                out,
                "{:<name_w$}  {:>12}  {:<8}  {:<9}  {}",
                m.name,
                format_value(m.value),
                m.unit,
                goal,
                m.detail
            );
        }
        out
    }
}

fn format_value(v: Option<f64>) -> String {
    match v {
        None => "n/a".to_owned(),
        Some(v) if v.abs() >= 1000.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.3}"),
    }
}

/// Median of a sample (NaN when empty).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    crate::traffic::median(&mut v)
}

/// The `q`-quantile (0..=1) of a sample by nearest rank (NaN when empty).
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Median wall time of `f` over `n` runs, in milliseconds, and the last result.
pub fn time_ms<T>(n: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut times = Vec::with_capacity(n);
    let mut last = None;
    for _ in 0..n.max(1) {
        let start = Instant::now();
        let out = f();
        times.push(start.elapsed().as_secs_f64() * 1e3);
        last = Some(out);
    }
    match last {
        Some(out) => (median(&times), out),
        None => unreachable!("n.max(1) runs at least once"),
    }
}

/// The error type of the suite: what failed, with its cause.
pub type BenchResult<T> = Result<T, String>;

/// `map_err` to a message naming what was being done.
pub trait Context<T> {
    fn ctx(self, what: &str) -> BenchResult<T>;
}

impl<T, E: std::fmt::Display> Context<T> for Result<T, E> {
    fn ctx(self, what: &str) -> BenchResult<T> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!((quantile(&v, 0.5) - 50.0).abs() < f64::EPSILON);
        assert!((quantile(&v, 0.99) - 99.0).abs() < f64::EPSILON);
        assert!((quantile(&[7.0], 0.99) - 7.0).abs() < f64::EPSILON);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn goals_are_judged_and_missing_values_are_not() {
        let m = Metric::new("x", 1.2, "ratio", "").goal(Goal::AtMost(1.1));
        assert_eq!(m.goal_met, Some(false));
        let m = Metric::new("x", 6.0, "ratio", "").goal(Goal::AtLeast(5.0));
        assert_eq!(m.goal_met, Some(true));
        let m = Metric::missing("x", "ratio", "n/a").goal(Goal::AtLeast(5.0));
        assert_eq!(m.goal_met, None);
        let mut r = Report::default();
        r.metrics.push(m);
        assert!(r.table().contains("n/a"));
    }
}
