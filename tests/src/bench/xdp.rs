//! `p4_xdp_drop_vs_nft`: how many frames per second the node discards of a UDP flood
//! from the `external` side to a denied `NodePort` on the node's address, with
//! (a) the enforcer agent and seed 002's policies (the preDNAT deny dropped by
//! `enf_host_xdp`), vs (b) no enforcer programs and the same deny as an nftables
//! rule in the node netns's prerouting at priority `raw` (before the `NodePort` DNAT).
//!
//! The traffic source is a live-frame generator (`rawbpf`): in the `external` netns,
//! `BPF_PROG_TEST_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES` runs an XDP program that
//! redirects one prepared frame (Ethernet, IPv4, UDP, 18 B payload) into that netns's
//! veth, so the frames reach the node's `eth0` as `xdp_frame`s with no skb, the way a
//! NIC driver hands them to XDP. In (a) the enforcer's XDP program drops them there;
//! in (b) a pass-through XDP program (`return XDP_PASS`, which is what lets the veth
//! take redirected frames at all) hands them on, the veth builds an skb, and nftables
//! drops it in prerouting. Generation, delivery and the drop all run in the
//! generator's softirq context on one CPU, so the drop rate is the frames that CPU
//! turns over per second: the cost of a dropped frame end to end.
//!
//! Both labs are up side by side; the floods alternate a, b, a, b, … so that noise from
//! the shared machine hits both alike. A drop is counted where it happens: the
//! `ENF_COUNTERS` slot (host-xdp, `deny_policy`) for (a), the rule's `counter` for
//! (b); the rate is that delta over the flood's wall time. `Mode::quick`: 3 × 1 s,
//! else 5 × 3 s.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::rawbpf::XdpProgram;
use super::{Goal, Metric, Mode, Report};
use crate::lab::{LabGuard, fixture, unique_name};
use crate::traffic::{enter_netns, median};

/// The node's address and the denied `NodePort` (seed 002 allows only TCP 31852
/// from outside; UDP 30080 hits the preDNAT `Deny`).
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 255, 1);
/// The external client's address (the source of the frames).
pub const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 255, 2);
pub const DENIED_PORT: u16 = 30_080;
/// Payload of a flood datagram (small packets: the per-packet cost is what counts).
pub const PAYLOAD: usize = 18;
/// Frames per `BPF_PROG_TEST_RUN` call (the flood loops over calls until its time is up).
const FRAMES_PER_CALL: u32 = 100_000;

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
    /// Frames the generator sent per second.
    pub sent_pps: f64,
    /// Frames the node discarded per second (the drop counter's delta).
    pub dropped_pps: f64,
    /// Frames sent in all.
    pub sent: u64,
    /// Frames counted as dropped in all.
    pub dropped: u64,
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
    /// Share of the frames sent that were counted as dropped, over all floods.
    pub fn dropped_share(&self) -> f64 {
        let (sent, dropped) = self
            .xdp
            .iter()
            .chain(&self.nft)
            .fold((0u64, 0u64), |(s, d), x| (s + x.sent, d + x.dropped));
        dropped as f64 / sent.max(1) as f64
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

/// The MAC address of `iface` in netns `netns`.
fn mac_of(netns: &str, iface: &str) -> Result<[u8; 6]> {
    let out = Command::new("ip")
        .args(["-n", netns, "-j", "link", "show", "dev", iface])
        .output()
        .context("running ip link show")?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("ip -j link show {iface} in {netns}"))?;
    let text = v[0]["address"]
        .as_str()
        .with_context(|| format!("no address for {iface} in {netns}"))?;
    let mut mac = [0u8; 6];
    for (d, part) in mac.iter_mut().zip(text.split(':')) {
        *d = u8::from_str_radix(part, 16).with_context(|| format!("MAC {text}"))?;
    }
    Ok(mac)
}

/// The flood's frame: Ethernet (to the node's `eth0`), IPv4 external -> node, UDP to
/// the denied port, `PAYLOAD` bytes.
fn frame(dst_mac: [u8; 6], src_mac: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 28 + PAYLOAD);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let total = (20 + 8 + PAYLOAD) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&EXTERNAL_IP.octets());
    ip.extend_from_slice(&NODE_IP.octets());
    let sum = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum::<u32>();
    let folded = (sum & 0xffff) + (sum >> 16);
    let csum = !((folded & 0xffff) + (folded >> 16)) as u16;
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&40_000u16.to_be_bytes());
    f.extend_from_slice(&DENIED_PORT.to_be_bytes());
    f.extend_from_slice(&((8 + PAYLOAD) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend(std::iter::repeat_n(0x5a, PAYLOAD));
    f
}

/// Runs the live-frame generator in `ext_netns` for `duration`: (frames sent, wall time).
fn live_frames(ext_netns: &str, frame: &[u8], duration: Duration) -> Result<(u64, Duration)> {
    let ext_netns = ext_netns.to_owned();
    let frame = frame.to_vec();
    // A thread of its own: it enters the external netns (the frames are made on its
    // loopback device and redirected to its `eth0`).
    std::thread::spawn(move || -> Result<(u64, Duration)> {
        enter_netns(&ext_netns).context("entering the external netns")?;
        let c = std::ffi::CString::new("eth0")?;
        // SAFETY: a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
        if ifindex == 0 {
            bail!("no eth0 in {ext_netns}");
        }
        let prog = XdpProgram::redirect(ifindex).context("loading the redirect program")?;
        let started = Instant::now();
        let mut sent = 0u64;
        while started.elapsed() < duration {
            prog.run_live(&frame, FRAMES_PER_CALL)
                .context("BPF_PROG_TEST_RUN (live frames)")?;
            sent += u64::from(FRAMES_PER_CALL);
        }
        Ok((sent, started.elapsed()))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("generator thread panicked"))?
}

fn flood(
    lab: &LabGuard,
    frame: &[u8],
    cfg: Config,
    dropped: &dyn Fn() -> Result<u64>,
) -> Result<Sample> {
    let before = dropped()?;
    let (sent, elapsed) = live_frames(&netns_of(lab, "ext"), frame, cfg.flood)?;
    // Frames of the last batch may still be in the receiving NAPI poll.
    std::thread::sleep(Duration::from_millis(50));
    let after = dropped()?;
    let secs = elapsed.as_secs_f64();
    let dropped = after.saturating_sub(before);
    Ok(Sample {
        sent_pps: sent as f64 / secs,
        dropped_pps: dropped as f64 / secs,
        sent,
        dropped,
    })
}

/// Attaches `return XDP_PASS` natively to the baseline node's `eth0` (through a pin
/// that is removed at once: the attachment holds the program).
fn attach_pass(node: &str) -> Result<()> {
    let prog = XdpProgram::pass().context("loading the pass program")?;
    let pin = Path::new("/sys/fs/bpf").join(format!("enf-bench-pass-{}", std::process::id()));
    prog.pin(&pin).context("pinning the pass program")?;
    // `nsenter`, not `ip -n`: `ip -n` remounts /sys in the netns it enters, which hides
    // bpffs and with it the pin.
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{node}"))
        .args(["ip", "link", "set", "dev", "eth0", "xdpdrv", "pinned"])
        .arg(&pin)
        .output();
    let _ = std::fs::remove_file(&pin);
    let out = out.context("running ip link set xdpdrv")?;
    if !out.status.success() {
        bail!(
            "ip link set eth0 xdpdrv: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
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
        up_args: Vec::new(),
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
    attach_pass(&nft_node)?;
    // Both labs' `eth0` pairs are made alike; each frame is addressed to its own node.
    let frame_of = |lab: &LabGuard| -> Result<Vec<u8>> {
        Ok(frame(
            mac_of(&netns_of(lab, "node"), "eth0")?,
            mac_of(&netns_of(lab, "ext"), "eth0")?,
        ))
    };
    let (xdp_frame, nft_frame) = (frame_of(&xdp_lab)?, frame_of(&nft_lab)?);
    let mut report = Drops {
        xdp: Vec::new(),
        nft: Vec::new(),
    };
    // A short warm-up of each (caches, page pools), not counted.
    let warm = Config {
        runs: 1,
        flood: Duration::from_millis(300),
    };
    flood(&xdp_lab, &xdp_frame, warm, &|| xdp_dropped(&xdp_lab))?;
    flood(&nft_lab, &nft_frame, warm, &|| nft_dropped(&nft_node))?;
    for run in 0..cfg.runs {
        let a = flood(&xdp_lab, &xdp_frame, cfg, &|| xdp_dropped(&xdp_lab))?;
        progress(&format!(
            "run {run}: xdp  sent {:>10.0}/s dropped {:>10.0}/s",
            a.sent_pps, a.dropped_pps
        ));
        let b = flood(&nft_lab, &nft_frame, cfg, &|| nft_dropped(&nft_node))?;
        progress(&format!(
            "run {run}: nft  sent {:>10.0}/s dropped {:>10.0}/s",
            b.sent_pps, b.dropped_pps
        ));
        report.xdp.push(a);
        report.nft.push(b);
    }
    Ok(report)
}

/// The suite's `p4` group: `p4_xdp_drop_vs_nft`, `p4_xdp_drop_mpps` and the baseline.
pub fn run(mode: Mode, report: &mut Report) -> super::BenchResult<()> {
    let cfg = Config::of(mode);
    let r = measure(cfg, &mut |line| eprintln!("bench: p4 {line}"))
        .map_err(|e| format!("p4: {e:#}"))?;
    let per_run: Vec<String> = r.ratios().iter().map(|x| format!("{x:.2}")).collect();
    let detail = format!(
        "UDP {PAYLOAD} B frames external -> {NODE_IP}:{DENIED_PORT} (seed 002 preDNAT deny) from a live-frame generator (BPF_PROG_TEST_RUN + BPF_F_TEST_XDP_LIVE_FRAMES redirecting into the external veth: xdp_frames, no skb); XDP {:.0} pps dropped (host-xdp deny_policy) / XDP_PASS + nft prerouting raw {:.0} pps dropped (rule counter); {:.1} % of the frames sent counted as dropped; {} alternating rounds of {} s, medians; per round {}",
        r.median_xdp_pps(),
        r.median_nft_pps(),
        r.dropped_share() * 100.0,
        cfg.runs,
        cfg.flood.as_secs(),
        per_run.join(" ")
    );
    report.push(
        Metric::new("p4_xdp_drop_vs_nft", r.ratio(), "ratio", detail).goal(Goal::AtLeast(GOAL)),
    );
    report.push(Metric::new(
        "p4_xdp_drop_mpps",
        r.median_xdp_pps() / 1e6,
        "Mpps",
        "frames dropped per second by enforcer_host_xdp (preDNAT deny), median; generator, veth delivery and drop on one CPU",
    ));
    report.push(Metric::new(
        "p4_nft_drop_mpps",
        r.median_nft_pps() / 1e6,
        "Mpps",
        "frames dropped per second by nft prerouting priority raw after XDP_PASS and skb allocation, median",
    ));
    Ok(())
}
