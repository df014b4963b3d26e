//! `p3`: the enforcer against no enforcement, iptables and nftables at 10,000 rules on
//! the server, as Calico renders them (`rulesets`: conntrack shortcut first), three
//! ways side by side in one run:
//!
//! - established-flow packets/s (`p3_pps_vs_*`): one UDP flow whose request was
//!   answered, so netfilter calls it `ESTABLISHED` and Calico's shortcut accepts it
//!   before any policy rule (and the enforcer's conntrack approves it);
//! - new-flow packets/s (`p3_newflow_pps_vs_*`): every datagram a new 5-tuple, so
//!   every one walks the policy (the rules in netfilter, one verdict lookup in BPF);
//! - TCP connections/s between the two pods (`p3_tcp_cps_vs_*`): a handshake, a byte
//!   each way, a reset, one connection after the other.
//!
//! Two labs from the same documents are up side by side: lab "e" with the agent
//! (programs on the pods' veths), lab "n" without (`--no-agent`) for the no-policy,
//! iptables and nftables modes (rules loaded into, and flushed from, its node netns
//! between measurements). The node's netfilter conntrack table is emptied after each
//! measurement, so every mode starts alike. Modes take turns, round after round;
//! the figures are medians per mode.
//!
//! Then a sweep over the rule count (10 to 10,000 rules on the server) measures the
//! new-flow rate of each mode at each count, for the plot of cost against rules: the
//! enforcer lab's policies are replaced through its datastore, the netfilter rule
//! sets re-rendered.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use enforcer::datastore::file::FileDatastore;
use enforcer::model::Object;
use enforcer::policy::Cluster;

use super::generators::{ConnectResult, tcp_connections, udp_established, udp_new_flows};
use super::lab::{LabGuard, in_netns};
use super::rulesets::{self, Rendered};
use super::{
    BenchResult, Context as _, Goal, Line, Metric, Mode, Report, Series, median, scenario,
};
use crate::traffic::FloodResult;

const FLOOD_PORT: u16 = 7001;
const TCP_PORT: u16 = 7002;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dataplane {
    Enforcer,
    NoPolicy,
    Iptables,
    Nftables,
}

const MODES: [Dataplane; 4] = [
    Dataplane::Enforcer,
    Dataplane::NoPolicy,
    Dataplane::Iptables,
    Dataplane::Nftables,
];

impl Dataplane {
    fn name(self) -> &'static str {
        match self {
            Dataplane::Enforcer => "enforcer",
            Dataplane::NoPolicy => "no policy",
            Dataplane::Iptables => "iptables",
            Dataplane::Nftables => "nftables",
        }
    }
}

/// The two labs and the client/server addresses in each.
struct Labs {
    enforced: LabGuard,
    plain: LabGuard,
}

impl Labs {
    fn of(&self, dp: Dataplane) -> &LabGuard {
        if dp == Dataplane::Enforcer {
            &self.enforced
        } else {
            &self.plain
        }
    }
}

/// Loads a mode's rules into the plain lab's node (nothing for the others).
fn load(labs: &Labs, dp: Dataplane, rendered: &Rendered) -> BenchResult<()> {
    let node = labs.plain.node_netns();
    match dp {
        Dataplane::Iptables => in_netns(
            &node,
            "iptables-restore",
            &["--noflush"],
            Some(&rendered.iptables),
        ),
        Dataplane::Nftables => in_netns(&node, "nft", &["-f", "-"], Some(&rendered.nft)),
        _ => Ok(()),
    }
}

/// Removes what [`load`] added, and empties the lab's netfilter conntrack table.
fn unload(labs: &Labs, dp: Dataplane) -> BenchResult<()> {
    let node = labs.plain.node_netns();
    match dp {
        Dataplane::Iptables => {
            in_netns(&node, "iptables", &["-F", "FORWARD"], None)?;
            in_netns(
                &node,
                "iptables-restore",
                &[],
                Some("*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n"),
            )?;
        }
        Dataplane::Nftables => {
            in_netns(&node, "nft", &["delete", "table", "ip", "enf_bench"], None)?;
        }
        _ => {}
    }
    flush_conntrack(&labs.of(dp).node_netns())
}

fn flush_conntrack(node: &str) -> BenchResult<()> {
    // `conntrack -F` exits non-zero on some versions when there was nothing to flush;
    // only a missing tool is an error.
    match in_netns(node, "conntrack", &["-F"], None) {
        Err(e) if e.contains("No such file") => Err(e),
        _ => Ok(()),
    }
}

/// The rule sets of `docs` for the plain lab's local endpoints (with the lab's own
/// addresses for the local pods).
fn render(plain: &LabGuard, cluster: &Cluster) -> BenchResult<Rendered> {
    let ifaces: Vec<(String, String)> = [scenario::CLIENT, scenario::SERVER]
        .iter()
        .map(|p| plain.pod(p).map(|i| (i.name.clone(), i.interface)))
        .collect::<BenchResult<_>>()?;
    let mut lab_cluster = cluster.clone();
    for ep in &mut lab_cluster.endpoints {
        if ep.namespace == scenario::NAMESPACE {
            let info = plain.pod(&ep.name)?;
            ep.ips = info
                .ips
                .iter()
                .filter_map(|s| s.parse::<IpAddr>().ok())
                .collect();
        }
    }
    lab_cluster.reindex();
    rulesets::render(&lab_cluster, |ep| {
        (ep.namespace == scenario::NAMESPACE)
            .then(|| {
                ifaces
                    .iter()
                    .find(|(n, _)| *n == ep.name)
                    .map(|(_, i)| i.clone())
            })
            .flatten()
    })
}

/// Client and server of a lab: (client netns, server netns, client v4, server v4).
fn endpoints(lab: &LabGuard) -> BenchResult<(String, String, Ipv4Addr, Ipv4Addr)> {
    let client = lab.pod(scenario::CLIENT)?;
    let server = lab.pod(scenario::SERVER)?;
    Ok((
        client.netns,
        server.netns,
        client.ip.parse().ctx("client address")?,
        server.ip.parse().ctx("server address")?,
    ))
}

/// What one round measured for one mode.
#[derive(Default)]
struct Samples {
    established: Vec<FloodResult>,
    new_flows: Vec<FloodResult>,
    connections: Vec<ConnectResult>,
}

fn measure_round(
    labs: &Labs,
    dp: Dataplane,
    duration: Duration,
    samples: &mut Samples,
) -> BenchResult<()> {
    let (client, server, client_ip, server_ip) = endpoints(labs.of(dp))?;
    let to = SocketAddr::new(IpAddr::V4(server_ip), FLOOD_PORT);
    samples
        .established
        .push(udp_established(&client, &server, to, 64, duration).ctx("established flood")?);
    flush_conntrack(&labs.of(dp).node_netns())?;
    samples.new_flows.push(
        udp_new_flows(&client, &server, client_ip, server_ip, duration).ctx("new-flow flood")?,
    );
    flush_conntrack(&labs.of(dp).node_netns())?;
    let to = SocketAddr::new(IpAddr::V4(server_ip), TCP_PORT);
    samples
        .connections
        .push(tcp_connections(&client, &server, to, duration).ctx("TCP connections")?);
    Ok(())
}

pub fn run(mode: Mode, report: &mut Report) -> BenchResult<()> {
    let rules = mode.rules();
    let docs = scenario::rule_set(rules, mode.pods());
    let cluster = scenario::cluster(&docs)?;
    let tag = std::process::id() % 1000;
    let labs = Labs {
        enforced: LabGuard::up(&format!("benche{tag}"), &docs, true)?,
        plain: LabGuard::up(&format!("benchn{tag}"), &docs, false)?,
    };
    let rendered = render(&labs.plain, &cluster)?;
    report.artifact("p3-ipset.rules", rendered.ipset.clone());
    report.artifact("p3-iptables.rules", rendered.iptables.clone());
    report.artifact("p3-nftables.nft", rendered.nft.clone());
    in_netns(
        &labs.plain.node_netns(),
        "ipset",
        &["restore"],
        Some(&rendered.ipset),
    )?;

    let duration = Duration::from_millis(if mode.quick { 1_000 } else { 3_000 });
    let rounds = if mode.quick { 2 } else { 5 };
    let mut samples: Vec<Samples> = MODES.iter().map(|_| Samples::default()).collect();
    for round in 0..rounds {
        for (m, dp) in MODES.iter().enumerate() {
            load(&labs, *dp, &rendered)?;
            let measured = measure_round(&labs, *dp, duration, &mut samples[m]);
            unload(&labs, *dp)?;
            measured?;
            eprintln!(
                "bench: p3 round {round} {}: established {:.0} pps, new flows {:.0} pps, {:.0} conn/s",
                dp.name(),
                samples[m]
                    .established
                    .last()
                    .map_or(0.0, FloodResult::received_pps),
                samples[m]
                    .new_flows
                    .last()
                    .map_or(0.0, FloodResult::received_pps),
                samples[m]
                    .connections
                    .last()
                    .map_or(0.0, ConnectResult::per_second),
            );
        }
    }
    let per_mode = |f: &dyn Fn(&Samples) -> Vec<f64>| -> Vec<f64> {
        samples.iter().map(|s| median(&f(s))).collect()
    };
    let est = per_mode(&|s| {
        s.established
            .iter()
            .map(FloodResult::received_pps)
            .collect()
    });
    let est_sent = per_mode(&|s| {
        s.established
            .iter()
            .map(|r| r.sent as f64 / duration.as_secs_f64())
            .collect()
    });
    let new = per_mode(&|s| s.new_flows.iter().map(FloodResult::received_pps).collect());
    let new_sent = per_mode(&|s| {
        s.new_flows
            .iter()
            .map(|r| r.sent as f64 / duration.as_secs_f64())
            .collect()
    });
    let cps = per_mode(&|s| {
        s.connections
            .iter()
            .map(ConnectResult::per_second)
            .collect()
    });
    let failed: u64 = samples
        .iter()
        .flat_map(|s| &s.connections)
        .map(|c| c.failed)
        .sum();
    let setting = format!(
        "{rules} rules on the server ({} iptables rules with {} ipsets, {} nft rules), Calico's conntrack shortcut first; {rounds} rounds of {} s per mode, modes in turn, medians",
        rendered.iptables_rules,
        rendered.sets,
        rendered.rules,
        duration.as_secs()
    );
    for (m, suffix) in [(1, "none"), (2, "iptables"), (3, "nftables")] {
        let metric = Metric::new(
            &format!("p3_pps_vs_{suffix}"),
            est[0] / est[m],
            "ratio",
            format!(
                "established UDP flow (request answered first), 64 B: enforcer {:.0} pps / {} {:.0} pps received (sent {:.0} / {:.0}); {setting}",
                est[0],
                MODES[m].name(),
                est[m],
                est_sent[0],
                est_sent[m]
            ),
        );
        report.push(if m == 1 {
            metric.goal(Goal::AtLeast(0.85))
        } else {
            metric
        });
    }
    for (m, suffix) in [(1, "none"), (2, "iptables"), (3, "nftables")] {
        report.push(Metric::new(
            &format!("p3_newflow_pps_vs_{suffix}"),
            new[0] / new[m],
            "ratio",
            format!(
                "every UDP datagram a new 5-tuple (raw socket, one sender thread): enforcer {:.0} pps / {} {:.0} pps received (sent {:.0} / {:.0}); {setting}",
                new[0],
                MODES[m].name(),
                new[m],
                new_sent[0],
                new_sent[m]
            ),
        ));
    }
    for (m, suffix) in [(1, "none"), (2, "iptables"), (3, "nftables")] {
        report.push(Metric::new(
            &format!("p3_tcp_cps_vs_{suffix}"),
            cps[0] / cps[m],
            "ratio",
            format!(
                "TCP connections between the two pods, one at a time (connect, 1 B each way, RST): enforcer {:.0} / {} {:.0} per s ({failed} attempts failed over the whole run); {setting}",
                cps[0],
                MODES[m].name(),
                cps[m]
            ),
        ));
    }
    for (m, dp) in MODES.iter().enumerate() {
        let key = dp.name().replace(' ', "_");
        report.push(Metric::new(
            &format!("p3_pps_{key}"),
            est[m],
            "pps",
            "established flow, receiver-side, median",
        ));
        report.push(Metric::new(
            &format!("p3_newflow_pps_{key}"),
            new[m],
            "pps",
            "new flows, receiver-side, median",
        ));
        report.push(Metric::new(
            &format!("p3_tcp_cps_{key}"),
            cps[m],
            "conn/s",
            "completed connections, median",
        ));
    }
    sweep(mode, &labs, &docs, report)
}

/// The rule counts of the sweep.
fn sweep_counts(mode: Mode) -> Vec<usize> {
    if mode.quick {
        vec![10, 100, 1_000]
    } else {
        vec![10, 100, 1_000, 10_000]
    }
}

/// Replaces the enforcer lab's targeted policies with those of `rules` rules and
/// waits until its agent applied them.
fn set_rules(lab: &LabGuard, current: &[Object], wanted: &[Object]) -> BenchResult<()> {
    let ds = FileDatastore::open(lab.name.paths().datastore()).ctx("datastore")?;
    let wanted_ids: Vec<_> = wanted.iter().map(Object::id).collect();
    let gone: Vec<_> = current
        .iter()
        .map(Object::id)
        .filter(|id| !wanted_ids.contains(id))
        .collect();
    ds.apply(wanted).ctx("writing the policies")?;
    let revision = ds.delete(&gone).ctx("deleting the policies")?;
    let deadline = Instant::now() + Duration::from_mins(5);
    loop {
        let status = ds.read_status().ctx("agent status")?;
        if let Some(s) = status {
            if s.applied_revision >= revision {
                return Ok(());
            }
            if s.observed_revision >= revision
                && let Some(e) = s.error
            {
                return Err(format!("the agent refused the sweep's policies: {e}"));
            }
        }
        if Instant::now() > deadline {
            return Err("the agent did not apply the sweep's policies in 300 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn targeted_objects(rules: usize) -> BenchResult<Vec<Object>> {
    Ok(scenario::load(&scenario::targeted(rules))?
        .into_iter()
        .map(|l| l.object)
        .collect())
}

/// New-flow packets/s of every mode at every rule count of [`sweep_counts`].
fn sweep(
    mode: Mode,
    labs: &Labs,
    docs: &[serde_json::Value],
    report: &mut Report,
) -> BenchResult<()> {
    let duration = Duration::from_secs(1);
    let rounds = if mode.quick { 1 } else { 3 };
    let mut points: Vec<Vec<(f64, f64)>> = vec![Vec::new(); MODES.len()];
    let mut current = targeted_objects(mode.rules())?;
    let background: Vec<serde_json::Value> = docs
        .iter()
        .filter(|d| d["kind"] != "NetworkPolicy")
        .cloned()
        .collect();
    for rules in sweep_counts(mode) {
        let wanted = targeted_objects(rules)?;
        set_rules(&labs.enforced, &current, &wanted)?;
        current = wanted;
        let mut docs = background.clone();
        docs.extend(scenario::targeted(rules));
        let rendered = render(&labs.plain, &scenario::cluster(&docs)?)?;
        let mut pps: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
        for _ in 0..rounds {
            for (m, dp) in MODES.iter().enumerate() {
                load(labs, *dp, &rendered)?;
                let (client, server, client_ip, server_ip) = endpoints(labs.of(*dp))?;
                let r = udp_new_flows(&client, &server, client_ip, server_ip, duration);
                unload(labs, *dp)?;
                pps[m].push(r.ctx("sweep flood")?.received_pps());
            }
        }
        for (m, v) in pps.iter().enumerate() {
            points[m].push((rules as f64, median(v)));
        }
        eprintln!(
            "bench: p3 sweep {rules} rules: {}",
            MODES
                .iter()
                .zip(&points)
                .map(|(dp, p)| format!("{} {:.0}", dp.name(), p.last().map_or(0.0, |x| x.1)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    report.series(Series {
        name: "p3-cost-vs-rules".to_owned(),
        title: "Cost of a new flow's packet against rules on the server".to_owned(),
        x_label: "rules on the server".to_owned(),
        y_label: "microseconds per packet (1 / new-flow rate)".to_owned(),
        log_x: true,
        lines: MODES
            .iter()
            .zip(&points)
            .map(|(dp, points)| Line {
                label: dp.name().to_owned(),
                points: points
                    .iter()
                    .map(|(x, pps)| (*x, 1e6 / pps.max(1.0)))
                    .collect(),
            })
            .collect(),
    });
    report.series(Series {
        name: "p3-newflow-vs-rules".to_owned(),
        title: "New-flow rate against rules on the server (one sender thread)".to_owned(),
        x_label: "rules on the server".to_owned(),
        y_label: "new flows per second (received)".to_owned(),
        log_x: true,
        lines: MODES
            .iter()
            .zip(points)
            .map(|(dp, points)| Line {
                label: dp.name().to_owned(),
                points,
            })
            .collect(),
    });
    Ok(())
}
