//! `p6` compile times: the real compiler (`enforcer::compile`) in release, median of
//! several runs, on the synthetic clusters of [`scenario`].

use std::time::Instant;

use enforcer::compile::{self, DataplaneSpec};

use super::{BenchResult, Context as _, Goal, Metric, Mode, Report, median, scenario};

/// The Cilium comparison compiles every pod as local (`compile`); the scale figure
/// compiles as the agent does (`compile_for_node`: pods of other nodes are peers).
pub fn run(mode: Mode, report: &mut Report) -> BenchResult<()> {
    // Cilium's published figure: 1,000 rules over 3,000 identities in 2.2 ms.
    let (rules, ids) = (1_000, 3_000);
    let started = Instant::now();
    let cluster = scenario::cluster(&scenario::identities(rules, ids))?;
    let build_ms = started.elapsed().as_secs_f64() * 1e3;
    let total = scenario::total_rules(&cluster);
    let samples = compile_samples(if mode.quick { 2 } else { 3 }, || {
        compile::compile(&cluster)
    })?;
    report.push(Metric::new(
        "p6_compile_1k_rules_3k_ids_ms",
        median(&samples),
        "ms",
        format!(
            "compile() of {total} rules, {} pods with distinct label sets; median of {}; building the model from objects took {build_ms:.0} ms more (Cilium: 2.2 ms)",
            cluster.endpoints.len(),
            samples.len()
        ),
    ));

    let (rules, policies, pods) = (mode.rules(), mode.policies(), mode.pods());
    let started = Instant::now();
    let docs = scenario::scale(rules, policies, pods);
    let cluster = scenario::cluster(&docs)?;
    let build_ms = started.elapsed().as_secs_f64() * 1e3;
    let total = scenario::total_rules(&cluster);
    let mut spec = DataplaneSpec::default();
    // One sample at full scale: a compile there takes tens of seconds (see
    // docs/performance.md), far more than the noise.
    let samples = compile_samples(if mode.quick { 2 } else { 1 }, || {
        let s = compile::compile_for_node(&cluster, Some("node1"));
        if let Ok(s) = &s {
            spec.clone_from(s);
        }
        s
    })?;
    report.push(
        Metric::new(
            "p6_compile_10k_policies_5k_pods_ms",
            median(&samples),
            "ms",
            format!(
                "compile_for_node(node1) (what the agent runs) of {} policies / {total} rules over {} pods (2 local); {} verdict, {} peer entries; median of {}; building the model from {} documents took {build_ms:.0} ms more",
                cluster.policies.len(),
                cluster.endpoints.len(),
                spec.verdicts.len(),
                spec.peers.len(),
                samples.len(),
                docs.len()
            ),
        )
        .goal(Goal::AtMost(1_000.0)),
    );
    Ok(())
}

fn compile_samples<E: std::fmt::Display>(
    n: usize,
    mut f: impl FnMut() -> Result<DataplaneSpec, E>,
) -> BenchResult<Vec<f64>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        f().ctx("compiling")?;
        out.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(out)
}
