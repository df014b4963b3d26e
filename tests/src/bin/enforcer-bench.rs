//! `enforcer-bench`: the benchmark suite (`cargo xtask bench` runs it in release).
//!
//! ```text
//! enforcer-bench [--quick] [--json FILE] [--only p1,p2,...]
//! ```
//!
//! Prints one table of every metric; `--json` also writes
//! `{"metrics":[{"name","value","unit","detail",...}],"series":[...]}`, and beside it
//! the SVG plots of the series (`<stem>.<series>.svg`) and the rendered rule sets
//! (`<stem>.p3-iptables.rules`, ...). Needs root (network namespaces,
//! BPF). Goals are reported, never asserted: the exit status is non-zero only when a
//! benchmark could not run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use enforcer_tests::bench::{self, Mode, Report};

struct Args {
    quick: bool,
    json: Option<PathBuf>,
    only: Option<Vec<String>>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        quick: false,
        json: None,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => args.quick = true,
            "--json" => args.json = Some(it.next().ok_or("--json needs a file")?.into()),
            "--only" => {
                let list = it.next().ok_or("--only needs a list, e.g. p1,p2")?;
                args.only = Some(list.split(',').map(str::to_owned).collect());
            }
            "-h" | "--help" => {
                return Err(
                    "usage: enforcer-bench [--quick] [--json FILE] [--only p1,p2,p3,p4,p5,p6]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    // `RUST_LOG=enforcer::compile=debug`: the compile phases of p6 (nothing by default).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mode = Mode { quick: args.quick };
    let wanted = |group: &str| {
        args.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|g| g == group))
    };
    let started = Instant::now();
    let mut report = Report::default();
    let mut failures = Vec::new();
    type Group = fn(Mode, &mut Report) -> bench::BenchResult<()>;
    let groups: [(&str, Group); 5] = [
        ("p1", bench::testrun::run),
        ("p6", bench::compile::run),
        ("p3", bench::p3::run),
        ("p5", bench::p5::run),
        ("p4", bench::xdp::run),
    ];
    for (group, run) in groups {
        // p1 covers p2 (same loaded object); p5 covers the lab part of p6.
        if !(wanted(group) || (group == "p1" && wanted("p2"))) {
            continue;
        }
        let t = Instant::now();
        eprintln!("bench: {group} ...");
        // A spinner with the elapsed time on a terminal (a group takes minutes);
        // nothing more in a log.
        let progress = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            {
                bar.set_style(style);
            }
            bar.set_message(format!("bench: {group}"));
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        let result = run(mode, &mut report);
        if let Some(bar) = progress {
            bar.finish_and_clear();
        }
        if let Err(e) = result {
            eprintln!("bench: {group} FAILED: {e}");
            failures.push(format!("{group}: {e}"));
        }
        eprintln!("bench: {group} done in {:.1} s", t.elapsed().as_secs_f64());
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "\nenforcer bench ({}), {elapsed:.0} s:\n{}",
        if mode.quick {
            "quick: small sizes, smoke test only"
        } else {
            "full"
        },
        report.table()
    );
    if let Some(path) = &args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => {
                if let Err(e) = std::fs::write(path, text + "\n") {
                    eprintln!("writing {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
                println!("wrote {}", path.display());
                if let Err(e) = write_beside(path, &report) {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            }
            Err(e) => {
                eprintln!("encoding the report: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "bench: {} group(s) failed:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
        ExitCode::FAILURE
    }
}

/// The plots and the other files of `report` beside the JSON at `json`.
fn write_beside(json: &std::path::Path, report: &Report) -> Result<(), String> {
    let stem = json
        .file_stem()
        .map_or_else(|| "bench".into(), |s| s.to_string_lossy().into_owned());
    for artifact in &report.artifacts {
        let path = json.with_file_name(format!("{stem}.{}", artifact.name));
        std::fs::write(&path, &artifact.content)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    for series in &report.series {
        let path = bench::plots::path_for(json, series);
        bench::plots::draw(series, &path)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
