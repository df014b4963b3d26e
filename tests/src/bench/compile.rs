//! `p6` compile times: the real compiler (`enforcer::compile`) in release, median of
//! several runs, on the synthetic clusters of [`scenario`]; and what one policy change
//! costs the agent at the scale cluster (`p6_compile_incremental_ms`).

use std::time::Instant;

use enforcer::agent::model::Model;
use enforcer::compile::selfcheck::{SampleSize, self_check};
use enforcer::compile::{self, DataplaneSpec, NodeAddresses, Reuse};
use enforcer::datastore::{Change, Snapshot, Stored};
use enforcer::model::Loaded;
use serde_json::Value;

use super::{BenchResult, Context as _, Goal, Metric, Mode, Report, median, p5, scenario};

/// Policy changes timed by `p6_compile_incremental_ms` (alternately add and delete).
const INCREMENTAL_CHANGES: usize = 9;

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
    incremental(&docs, report)
}

/// `p6_compile_incremental_ms`: one policy change at the scale cluster, as the agent
/// takes it: its model converts the one object (`agent::model::Model::apply`) and the
/// compiler runs for the node, reusing what the last compile left where its inputs
/// are the same (`compile_reusing`, told of the change as the agent does). The
/// changes are `p5`'s: alternately add and delete a policy denying the client in a
/// first tier. The agent's self-check of the result is timed apart (detail), and each
/// spec is checked against a full compile (untimed).
fn incremental(docs: &[Value], report: &mut Report) -> BenchResult<()> {
    let stored = |loaded: Loaded| Stored {
        id: loaded.object.id(),
        object: Ok(loaded),
        origin: "synthetic".to_owned(),
    };
    let mut model = Model::default();
    let mut objects = scenario::load(docs)?;
    objects.extend(scenario::load(&[p5::flip_tier()])?);
    model.reset(Snapshot {
        revision: 1,
        objects: objects.into_iter().map(stored).collect(),
    });
    model.enforced();
    let flip = scenario::load(&[p5::flip_policy()])?;
    let base_policies = model.cluster().policies.len();
    let mut samples = Vec::with_capacity(INCREMENTAL_CHANGES);
    let mut checks = Vec::with_capacity(INCREMENTAL_CHANGES);
    let mut applies = Vec::with_capacity(INCREMENTAL_CHANGES);
    let mut reuse = Reuse::default();
    let node = Some("node1");
    compile::compile_reusing(
        model.cluster(),
        node,
        &NodeAddresses::declared(model.cluster(), node),
        &mut reuse,
    )
    .ctx("compiling the cluster")?;
    for i in 0..INCREMENTAL_CHANGES {
        let changes: Vec<Change> = if i % 2 == 0 {
            flip.iter()
                .cloned()
                .map(|l| Change::Upsert(Box::new(stored(l))))
                .collect()
        } else {
            flip.iter().map(|l| Change::Delete(l.object.id())).collect()
        };
        let started = Instant::now();
        let touched = model.apply(changes);
        reuse.follow(&touched);
        applies.push(started.elapsed().as_secs_f64() * 1e3);
        let spec = compile::compile_reusing(
            model.cluster(),
            node,
            &NodeAddresses::declared(model.cluster(), node),
            &mut reuse,
        )
        .ctx("compiling after one change")?;
        samples.push(started.elapsed().as_secs_f64() * 1e3);
        let full = compile::compile_for_node(model.cluster(), node).ctx("full compile")?;
        if spec != full {
            return Err(format!(
                "change {i}: the compile reusing the last differs from a full compile"
            ));
        }
        // A refused flip (its tier missing, say) would time a change that changes
        // nothing.
        let expected = base_policies + usize::from(i % 2 == 0);
        if model.cluster().policies.len() != expected {
            return Err(format!(
                "change {i} did not take: {} policies in force, {expected} expected",
                model.cluster().policies.len()
            ));
        }
        let check = self_check(model.cluster(), &spec, SampleSize::default(), i as u64);
        if !check.disagreements.is_empty() {
            return Err(format!(
                "self-check refused change {i}: {:?}",
                check.disagreements[0]
            ));
        }
        checks.push(check.elapsed.as_secs_f64() * 1e3);
        model.enforced();
    }
    report.push(
        Metric::new(
            "p6_compile_incremental_ms",
            median(&samples),
            "ms",
            format!(
                "one policy added or deleted at {} policies / {} pods: model update + compile_reusing(node1), median of {} (adds {:.1}, deletes {:.1} ms; the model update alone: {:.1} ms); the agent's self-check of the result takes {:.0} ms more (median); peer classes kept as they were in {}, updated for the atoms added or removed in {}, computed in {} compiles; the other phases run in full (every spec equal to a full compile's)",
                model.cluster().policies.len(),
                model.cluster().endpoints.len(),
                samples.len(),
                median(&samples.iter().step_by(2).copied().collect::<Vec<f64>>()),
                median(&samples.iter().skip(1).step_by(2).copied().collect::<Vec<f64>>()),
                median(&applies),
                median(&checks),
                reuse.stats().reused,
                reuse.stats().updated,
                reuse.stats().computed
            ),
        )
        .goal(Goal::AtMost(5.0)),
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
