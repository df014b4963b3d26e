//! `bench-xdp [--quick]`: `p4_xdp_drop_vs_nft`, the drop rate of a UDP flood from the
//! lab's `external` netns to a denied `NodePort` with the XDP preDNAT deny vs the same
//! deny as an nftables prerouting rule (see `enforcer_tests::xdp_drop`). Run as root
//! from the target directory next to the `enforcer` binary (or set `ENFORCER_BIN`).
//! Prints each run and the medians; `--quick` (3 × 1 s) never fails on the goal, the
//! full run (5 × 3 s) exits 1 when the ratio is below 1 (XDP should drop faster).

use std::process::ExitCode;

use enforcer_tests::xdp_drop::{Config, measure};

/// The goal: XDP drops at least as fast as nftables.
const GOAL: f64 = 1.0;

fn main() -> ExitCode {
    let quick = std::env::args().any(|a| a == "--quick");
    if std::env::var_os("ENFORCER_BIN").is_none()
        && let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(ToOwned::to_owned))
    {
        // SAFETY: single-threaded here, before any thread is spawned.
        unsafe { std::env::set_var("ENFORCER_BIN", dir.join("enforcer")) };
    }
    let cfg = if quick { Config::QUICK } else { Config::FULL };
    let report = match measure(cfg, &mut |line| eprintln!("{line}")) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench-xdp: {e:#}");
            return ExitCode::from(2);
        }
    };
    let ratios: Vec<String> = report.ratios().iter().map(|r| format!("{r:.2}")).collect();
    println!(
        "p4_xdp_drop_vs_nft {:.2} (median xdp {:.0} pps / median nft {:.0} pps; per run {})",
        report.ratio(),
        report.median_xdp_pps(),
        report.median_nft_pps(),
        ratios.join(" ")
    );
    if !quick && report.ratio() < GOAL {
        eprintln!("bench-xdp: goal {GOAL} missed");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
