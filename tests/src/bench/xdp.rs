//! `p4_xdp_drop_vs_nft`: how many packets per second the node discards of a UDP flood
//! from the `external` netns to a denied `NodePort` on the node's address, with
//! (a) the enforcer agent and seed 002's policies (the preDNAT deny dropped by
//! `enf_host_xdp`), vs (b) no enforcer programs and the same deny as an nftables
//! rule in the node netns's prerouting at priority `raw` (before the `NodePort` DNAT).
//!
//! Both labs are up side by side; the floods alternate a, b, a, b, … so that noise from
//! the shared machine hits both alike. A drop is counted where it happens: the
//! `ENF_COUNTERS` slot (host-xdp, `deny_policy`) for (a), the rule's `counter` for
//! (b); the rate is that delta over the flood's duration. The sender is one thread
//! (`traffic::udp_flood`), as fast as it can. `Mode::quick`: 3 × 1 s, else 5 × 3 s.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{Goal, Metric, Mode, Report};
use crate::lab::{LabGuard, fixture, unique_name};
use crate::traffic::{self, median};

/// The node's address and the denied `NodePort` (seed 002 allows only TCP 31852
/// from outside; UDP 30080 hits the preDNAT `Deny`).
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 255, 1);
pub const DENIED_PORT: u16 = 30_080;
/// Payload of a flood datagram (small packets: the per-packet cost is what counts).
pub const PAYLOAD: usize = 18;

/// The goal: XDP discards at least three times as many packets per second as
/// the same deny in nftables prerouting.
pub const GOAL: f64 = 3.0;

/// The nftables table the baseline adds to the (no-agent) lab's node netns; gone with
/// the netns at `lab down`.
const NFT_TABLE: &str = "enfbench";

/// How much to measure.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub runs: usize,
    pub flood: Duration,
}

impl Config {
    pub fn of(mode: Mode) -> Self {
        if mode.quick { Self::QUICK } else { Self::FULL }
    }
    pub const FULL: Self = Self {
        runs: 5,
        flood: Duration::from_secs(3),
    };
    pub const QUICK: Self = Self {
        runs: 3,
        flood: Duration::from_secs(1),
    };
}

/// One flood.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Datagrams the sender got out per second.
    pub sent_pps: f64,
    /// Datagrams the node discarded per second (the drop counter's delta).
    pub dropped_pps: f64,
    /// Datagrams that reached the node's socket anyway (should be 0).
    pub received: u64,
}

/// One a/b pair and the medians.
#[derive(Clone, Debug)]
pub struct Drops {
    pub xdp: Vec<Sample>,
    pub nft: Vec<Sample>,
}

impl Drops {
    pub fn median_xdp_pps(&self) -> f64 {
        median(&mut self.xdp.iter().map(|s| s.dropped_pps).collect::<Vec<_>>())
    }
    pub fn median_nft_pps(&self) -> f64 {
        median(&mut self.nft.iter().map(|s| s.dropped_pps).collect::<Vec<_>>())
    }
    /// Ratios of each run's pair.
    pub fn ratios(&self) -> Vec<f64> {
        self.xdp
            .iter()
            .zip(&self.nft)
            .map(|(a, b)| a.dropped_pps / b.dropped_pps.max(1.0))
            .collect()
    }
    /// `p4_xdp_drop_vs_nft`: median XDP drop rate / median nftables drop rate.
    pub fn ratio(&self) -> f64 {
        self.median_xdp_pps() / self.median_nft_pps().max(1.0)
    }
}

fn seed_002() -> Vec<std::path::PathBuf> {
    [
        "nodeport-app.yaml",
        "002-allow-cluster-internal-ingress-only.yaml",
        "002-allow-outbound-external.yaml",
        "002-node1-eth0.yaml",
        "002-allow-nodeport.yaml",
    ]
    .iter()
    .map(|f| fixture(&format!("hostendpoints/{f}")))
    .collect()
}

fn netns_of(lab: &LabGuard, suffix: &str) -> String {
    format!("enf-{}-{suffix}", lab.name)
}

fn nft(netns: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "nft"])
        .args(args)
        .output()
        .context("running nft")?;
    if !out.status.success() {
        bail!(
            "nft {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Adds the baseline deny to the node netns: prerouting, priority raw (-300, before
/// the NAT prerouting chain's DNAT), with a counter.
fn add_nft_deny(node: &str) -> Result<()> {
    let rules = format!(
        "table inet {NFT_TABLE} {{\n  chain pre {{\n    type filter hook prerouting priority raw; policy accept;\n    ip daddr {NODE_IP} udp dport {DENIED_PORT} counter drop\n  }}\n}}\n"
    );
    let path = std::env::temp_dir().join(format!("{NFT_TABLE}-{}.nft", std::process::id()));
    std::fs::write(&path, rules).context("writing the nft rules")?;
    let r = nft(node, &["-f", &path.to_string_lossy()]);
    let _ = std::fs::remove_file(&path);
    r.map(|_| ())
}

fn nft_dropped(node: &str) -> Result<u64> {
    let out = nft(node, &["list", "chain", "inet", NFT_TABLE, "pre"])?;
    out.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no counter in:\n{out}"))
}

fn xdp_dropped(lab: &LabGuard) -> Result<u64> {
    let pin = Path::new("/sys/fs/bpf/enforcer").join(&lab.name);
    let counters = enforcer::inspect::counters(&pin).context("reading ENF_COUNTERS")?;
    Ok(enforcer::inspect::counter(
        &counters,
        "host-xdp",
        "deny_policy",
    ))
}

fn flood(lab: &LabGuard, cfg: Config, dropped: &dyn Fn() -> Result<u64>) -> Result<Sample> {
    let before = dropped()?;
    let r = traffic::udp_flood(
        &netns_of(lab, "ext"),
        &netns_of(lab, "node"),
        SocketAddr::new(IpAddr::V4(NODE_IP), DENIED_PORT),
        PAYLOAD,
        cfg.flood,
    )
    .context("UDP flood")?;
    let after = dropped()?;
    let secs = cfg.flood.as_secs_f64();
    Ok(Sample {
        sent_pps: r.sent as f64 / secs,
        dropped_pps: after.saturating_sub(before) as f64 / secs,
        received: r.received,
    })
}

/// A lab guard (down on drop) that is up, or the error of `lab up`.
fn lab_up(prefix: &str, files: &[&Path], agent: bool) -> Result<LabGuard> {
    let lab = LabGuard {
        name: unique_name(prefix),
        bin: super::lab::enforcer_binary().map_err(anyhow::Error::msg)?,
        nodes: 1,
        encap: None,
        // The agent's production default (the lab's own is `all`).
        agent_args: vec!["--flow-log=denied".to_owned()],
    };
    let mut args = vec!["up".to_owned()];
    if agent {
        args.extend(lab.agent_args.iter().map(|a| format!("--agent-arg={a}")));
    } else {
        args.push("--no-agent".to_owned());
    }
    for f in files {
        args.extend(["-f".to_owned(), f.to_string_lossy().into_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = lab.run(&args);
    if !out.status.success() {
        bail!(
            "lab up {}: {}",
            lab.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(lab)
}

/// Brings up both labs (torn down on return, also on error or panic), then floods.
/// `progress` gets one line per flood.
pub fn measure(cfg: Config, progress: &mut dyn FnMut(&str)) -> Result<Drops> {
    let files = seed_002();
    let files: Vec<&Path> = files.iter().map(std::path::PathBuf::as_path).collect();
    let xdp_lab = lab_up("bx", &files, true)?;
    let nft_lab = lab_up("bn", &files[..1], false)?;
    let nft_node = netns_of(&nft_lab, "node");
    add_nft_deny(&nft_node)?;
    let mut report = Drops {
        xdp: Vec::new(),
        nft: Vec::new(),
    };
    // A short warm-up of each (ARP, caches), not counted.
    let warm = Config {
        runs: 1,
        flood: Duration::from_millis(300),
    };
    flood(&xdp_lab, warm, &|| xdp_dropped(&xdp_lab))?;
    flood(&nft_lab, warm, &|| nft_dropped(&nft_node))?;
    for run in 0..cfg.runs {
        let a = flood(&xdp_lab, cfg, &|| xdp_dropped(&xdp_lab))?;
        progress(&format!(
            "run {run}: xdp  sent {:>10.0}/s dropped {:>10.0}/s received {}",
            a.sent_pps, a.dropped_pps, a.received
        ));
        let b = flood(&nft_lab, cfg, &|| nft_dropped(&nft_node))?;
        progress(&format!(
            "run {run}: nft  sent {:>10.0}/s dropped {:>10.0}/s received {}",
            b.sent_pps, b.dropped_pps, b.received
        ));
        report.xdp.push(a);
        report.nft.push(b);
    }
    Ok(report)
}

/// The suite's `p4` group: `p4_xdp_drop_vs_nft` and the two medians.
pub fn run(mode: Mode, report: &mut Report) -> super::BenchResult<()> {
    let cfg = Config::of(mode);
    let r = measure(cfg, &mut |line| eprintln!("bench: p4 {line}"))
        .map_err(|e| format!("p4: {e:#}"))?;
    let per_run: Vec<String> = r.ratios().iter().map(|x| format!("{x:.2}")).collect();
    let sent = median(
        &mut r
            .xdp
            .iter()
            .chain(&r.nft)
            .map(|s| s.sent_pps)
            .collect::<Vec<_>>(),
    );
    let detail = format!(
        "UDP {PAYLOAD} B flood external -> {NODE_IP}:{DENIED_PORT} (seed 002 preDNAT deny), one sender thread (median {sent:.0} pps sent), all dropped in both; XDP {:.0} pps (host-xdp deny_policy) / nft prerouting raw {:.0} pps (rule counter); {} alternating rounds of {} s, medians; per round {}; veth native XDP copies each skb (see docs/performance.md)",
        r.median_xdp_pps(),
        r.median_nft_pps(),
        cfg.runs,
        cfg.flood.as_secs(),
        per_run.join(" ")
    );
    report.push(
        Metric::new("p4_xdp_drop_vs_nft", r.ratio(), "ratio", detail).goal(Goal::AtLeast(GOAL)),
    );
    report.push(Metric::new(
        "p4_xdp_drop_pps",
        r.median_xdp_pps(),
        "pps",
        "host-xdp deny_policy, median",
    ));
    report.push(Metric::new(
        "p4_nft_drop_pps",
        r.median_nft_pps(),
        "pps",
        "nft prerouting priority raw counter, median",
    ));
    Ok(())
}
