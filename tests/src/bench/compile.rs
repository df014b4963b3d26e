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
///
/// A delete there brings back the cluster of two changes before, whose classes and
/// verdicts the compiler still holds (`compile::rows`); `p6_compile_edit_ms` times
/// changes no compile has seen: an edit of one of the server's policies, a new port
/// each time.
fn incremental(docs: &[Value], report: &mut Report) -> BenchResult<()> {
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
    let mut timer = ChangeTimer::new(model)?;
    for i in 0..INCREMENTAL_CHANGES {
        let changes: Vec<Change> = if i % 2 == 0 {
            flip.iter()
                .cloned()
                .map(|l| Change::Upsert(Box::new(stored(l))))
                .collect()
        } else {
            flip.iter().map(|l| Change::Delete(l.object.id())).collect()
        };
        timer.change(changes, i)?;
        // A refused flip (its tier missing, say) would time a change that changes
        // nothing.
        let expected = base_policies + usize::from(i % 2 == 0);
        let in_force = timer.model.cluster().policies.len();
        if in_force != expected {
            return Err(format!(
                "change {i} did not take: {in_force} policies in force, {expected} expected"
            ));
        }
    }
    let flips = timer.take();
    let stats = timer.reuse.stats();
    report.push(
        Metric::new(
            "p6_compile_incremental_ms",
            median(&flips.samples),
            "ms",
            format!(
                "one policy added or deleted at {} policies / {} pods: model update + compile_reusing(node1), median of {} (adds {:.1}, deletes {:.1} ms; the model update alone: {:.1} ms); the agent's self-check of the result takes {:.0} ms more (median); peer classes kept as they were in {}, taken from before the last change in {}, updated for the atoms added or removed in {}, computed in {} compiles; legs' verdicts taken from an earlier compile {} times, computed {} times; every spec equal to a full compile's",
                timer.model.cluster().policies.len(),
                timer.model.cluster().endpoints.len(),
                flips.samples.len(),
                median(&flips.samples.iter().step_by(2).copied().collect::<Vec<f64>>()),
                median(&flips.samples.iter().skip(1).step_by(2).copied().collect::<Vec<f64>>()),
                median(&flips.applies),
                median(&flips.checks),
                stats.reused,
                stats.restored,
                stats.updated,
                stats.computed,
                stats.legs_reused,
                stats.legs_computed,
            ),
        )
        .goal(Goal::AtMost(5.0)),
    );

    // Edits no compile has seen: the first rule of a policy selecting the server
    // opens a new port each time (the server's leg and the cells change). The flip
    // policy goes first (untimed): its tier would hide the server's other policies.
    timer.change(
        flip.iter().map(|l| Change::Delete(l.object.id())).collect(),
        INCREMENTAL_CHANGES,
    )?;
    timer.take();
    let Some(edited) = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "bench-0" && d["kind"] == "NetworkPolicy")
    else {
        return Err("no policy bench-0 in the scale cluster".into());
    };
    for i in 0..EDITS {
        let mut doc = edited.clone();
        doc["spec"]["ingress"][0]["destination"]["ports"] = serde_json::json!([30_000 + i]);
        let changes = scenario::load(&[doc])?
            .into_iter()
            .map(|l| Change::Upsert(Box::new(stored(l))))
            .collect();
        timer.change(changes, INCREMENTAL_CHANGES + 1 + usize::from(i))?;
    }
    let edits = timer.take();
    let after = timer.reuse.stats();
    report.push(Metric::new(
        "p6_compile_edit_ms",
        median(&edits.samples),
        "ms",
        format!(
            "one policy on the server edited (its first rule's port, a new one each time: a change no compile has seen) at the same scale: model update + compile_reusing(node1), median of {}; legs' verdicts computed {} times, taken from an earlier compile {} times; every spec equal to a full compile's",
            edits.samples.len(),
            after.legs_computed - stats.legs_computed,
            after.legs_reused - stats.legs_reused,
        ),
    ));
    Ok(())
}

/// Edits timed by `p6_compile_edit_ms`.
const EDITS: u16 = 5;

fn stored(loaded: Loaded) -> Stored {
    Stored {
        id: loaded.object.id(),
        object: Ok(loaded),
        origin: "synthetic".to_owned(),
    }
}

/// Times changes as the agent takes them (see [`incremental`]).
struct ChangeTimer {
    model: Model,
    reuse: Reuse,
    times: Times,
}

/// Per change: model update + compile, the model update alone, the self-check (ms).
#[derive(Default)]
struct Times {
    samples: Vec<f64>,
    applies: Vec<f64>,
    checks: Vec<f64>,
}

const NODE: Option<&str> = Some("node1");

impl ChangeTimer {
    /// After a first compile of `model` (untimed).
    fn new(model: Model) -> BenchResult<Self> {
        let mut reuse = Reuse::default();
        compile::compile_reusing(
            model.cluster(),
            NODE,
            &NodeAddresses::declared(model.cluster(), NODE),
            &mut reuse,
        )
        .ctx("compiling the cluster")?;
        Ok(ChangeTimer {
            model,
            reuse,
            times: Times::default(),
        })
    }

    /// Times change number `i`: the model's update and the compile reusing the last;
    /// checks the spec against a full compile and the agent's self-check (untimed).
    fn change(&mut self, changes: Vec<Change>, i: usize) -> BenchResult<()> {
        let started = Instant::now();
        let touched = self.model.apply(changes);
        self.reuse.follow(&touched);
        self.times
            .applies
            .push(started.elapsed().as_secs_f64() * 1e3);
        let cluster = self.model.cluster();
        let spec = compile::compile_reusing(
            cluster,
            NODE,
            &NodeAddresses::declared(cluster, NODE),
            &mut self.reuse,
        )
        .ctx("compiling after one change")?;
        self.times
            .samples
            .push(started.elapsed().as_secs_f64() * 1e3);
        let full = compile::compile_for_node(cluster, NODE).ctx("full compile")?;
        if spec != full {
            return Err(format!(
                "change {i}: the compile reusing the last differs from a full compile"
            ));
        }
        let check = self_check(cluster, &spec, SampleSize::default(), i as u64);
        if !check.disagreements.is_empty() {
            return Err(format!(
                "self-check refused change {i}: {:?}",
                check.disagreements[0]
            ));
        }
        self.times.checks.push(check.elapsed.as_secs_f64() * 1e3);
        self.model.enforced();
        Ok(())
    }

    /// The times so far, and a fresh start.
    fn take(&mut self) -> Times {
        std::mem::take(&mut self.times)
    }
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
