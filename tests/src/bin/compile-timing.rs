//! A quick release-mode timing harness for the policy compiler on the `p6` clusters:
//!
//! ```text
//! compile-timing scale POLICIES PODS [RULES]   # compile_for_node(node1), as p6 at scale
//! compile-timing ids RULES IDS                 # compile(), as the Cilium comparison
//! ```
//!
//! Prints the compile time (median of `ENFORCER_SAMPLES`, default 1), the entry counts
//! and a digest of the whole `DataplaneSpec`, so that a compiler change can be checked
//! to give the identical spec. `RUST_LOG=enforcer::compile=debug` shows phase timings.

use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::process::ExitCode;
use std::time::Instant;

use enforcer::compile::selfcheck::{self, SampleSize};
use enforcer::compile::{self, DataplaneSpec};
use enforcer_tests::bench::scenario;

fn digest(spec: &DataplaneSpec) -> u64 {
    // The Debug text covers every field; DefaultHasher::new() has fixed keys.
    let mut h = DefaultHasher::new();
    format!("{spec:?}").hash(&mut h);
    h.finish()
}

/// The digest of everything but the policy fingerprints (which change with the
/// fingerprint function, not with what is enforced).
fn digest_without_fingerprints(spec: &DataplaneSpec) -> u64 {
    digest(&DataplaneSpec {
        policy_fingerprints: Vec::new(),
        ..spec.clone()
    })
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let samples: usize = std::env::var("ENFORCER_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let (docs, node) = match args.first().map(String::as_str) {
        Some("scale") => {
            let (policies, pods) = (num(1, 2_000), num(2, 1_000));
            (
                scenario::scale(num(3, policies), policies, pods),
                Some("node1"),
            )
        }
        Some("ids") => (scenario::identities(num(1, 1_000), num(2, 3_000)), None),
        _ => {
            eprintln!("usage: compile-timing scale POLICIES PODS [RULES] | ids RULES IDS");
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "{} documents generated; RSS {:.1} MiB",
        docs.len(),
        rss_mb()
    );
    let started = Instant::now();
    let loaded = match scenario::load(&docs) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "loaded in {:.0} ms; RSS {:.1} MiB",
        started.elapsed().as_secs_f64() * 1e3,
        rss_mb()
    );
    drop(docs);
    eprintln!("documents dropped; RSS {:.1} MiB", rss_mb());
    let started = Instant::now();
    let cluster = match enforcer::policy::Cluster::from_objects(&loaded) {
        Ok((c, _)) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "model built in {:.0} ms; RSS {:.1} MiB",
        started.elapsed().as_secs_f64() * 1e3,
        rss_mb()
    );
    if std::env::var_os("ENFORCER_DROP_LOADED").is_some() {
        drop(loaded);
        eprintln!("loaded objects dropped; RSS {:.1} MiB", rss_mb());
    }
    let mut times = Vec::new();
    let mut spec = DataplaneSpec::default();
    for _ in 0..samples.max(1) {
        let started = Instant::now();
        match compile::compile_for_node(&cluster, node) {
            Ok(s) => spec = s,
            Err(e) => {
                eprintln!("compile: {e}");
                return ExitCode::FAILURE;
            }
        }
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    eprintln!(
        "compiled; RSS {:.1} MiB, peak {:.1} MiB",
        rss_mb(),
        hwm_mb()
    );
    times.sort_by(f64::total_cmp);
    let referenced = spec.referenced_policies().iter().filter(|&&u| u).count();
    println!(
        "policies {} ({referenced} named by a verdict) pods {} | compile median {:.1} ms (of {:?}) | endpoints {} peers {} ports {} verdicts {} | digest {:016x}, without fingerprints {:016x}",
        cluster.policies.len(),
        cluster.endpoints.len(),
        times[times.len() / 2],
        times.iter().map(|t| t.round()).collect::<Vec<_>>(),
        spec.endpoints.len(),
        spec.peers.len(),
        spec.ports.len(),
        spec.verdicts.len(),
        digest(&spec),
        digest_without_fingerprints(&spec)
    );
    // The agent's self-check of this spec, on one thread and on the agent's choice of
    // threads, interleaved.
    let (mut one, mut chosen) = (Vec::new(), Vec::new());
    for seed in 1..=9u64 {
        let check =
            selfcheck::self_check_on_threads(&cluster, &spec, SampleSize::default(), seed, 1);
        one.push(check.elapsed.as_secs_f64() * 1e3);
        let check = selfcheck::self_check(&cluster, &spec, SampleSize::default(), seed);
        chosen.push(check.elapsed.as_secs_f64() * 1e3);
        if !check.passed() {
            eprintln!("self-check: {:?}", check.disagreements);
            return ExitCode::FAILURE;
        }
    }
    one.sort_by(f64::total_cmp);
    chosen.sort_by(f64::total_cmp);
    println!(
        "self-check median of 9: one thread {:.2} ms, the agent's threads {:.2} ms",
        one[one.len() / 2],
        chosen[chosen.len() / 2]
    );
    ExitCode::SUCCESS
}

fn status_mb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn rss_mb() -> f64 {
    status_mb("VmRSS:")
}

fn hwm_mb() -> f64 {
    status_mb("VmHWM:")
}
