//! `enforcer flows`: read (and follow) a node's flow log, as `hubble observe` does.

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use enforcer::agent::flowlog::record::FlowRecord;
use enforcer::flows::{FlowFilter, FlowLogs, Follower, VerdictFilter, read};

use super::output::{self, Output, OutputArg};
use super::table;

/// Show the flow log: one line per flow and interval, with the verdict, what decided
/// it (tier, policy, rule), both ends named, and the packet count.
///
/// The agent writes the log (`enforcer agent --flow-log denied|allowed|all`, default
/// denied; Log rules always); this reads it and its rotated files, oldest first, and
/// with --follow keeps printing new lines as they are written.
///
/// Endpoint patterns for --from and --to: NS/POD, NS/*, a host endpoint or global
/// network set name, an IP address, or `world`.
///
/// Output: -o table (default), wide (adds node, hook, reason, counts and bytes),
/// json (one JSON object per line, as `hubble observe -o json`) or yaml.
///
/// Exit status: 0 when the log was read (even with no matching line), 1 on an error.
///
/// Examples:
///
///   enforcer flows --lab lab --verdict denied
///
///   enforcer flows --lab lab --from dev-app/frontend-0 --to 'dev-app/*' -o json
///
///   enforcer flows --file /var/lib/enforcer/datastore/flows.jsonl --follow
#[derive(Args, Debug)]
#[command(
    verbatim_doc_comment,
    about = "Show the flow log (verdicts per flow, both ends named), or follow it"
)]
pub struct FlowsArgs {
    /// Read the flow log of a running `enforcer lab`.
    #[arg(long, conflicts_with_all = ["file", "datastore"])]
    pub lab: Option<String>,
    /// The agent's datastore directory (the log is its flows.jsonl).
    #[arg(long, conflicts_with = "file")]
    pub datastore: Option<PathBuf>,
    /// The flow log file (default: /var/lib/enforcer/datastore/flows.jsonl).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Only flows from these sources (repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub from: Vec<String>,
    /// Only flows to these destinations (repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub to: Vec<String>,
    /// Only allowed or only denied flows.
    #[arg(long, value_enum)]
    pub verdict: Option<VerdictArg>,
    /// Only flows logged by this node.
    #[arg(long)]
    pub node: Option<String>,
    /// Keep printing new lines as the agent writes them (until interrupted).
    #[arg(short = 'f', long)]
    pub follow: bool,
    #[command(flatten)]
    pub output: OutputArg,
}

/// `--verdict`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum VerdictArg {
    #[value(alias = "allow", alias = "forwarded")]
    Allowed,
    #[value(alias = "deny", alias = "dropped")]
    Denied,
}

impl FlowsArgs {
    pub fn execute(self) -> anyhow::Result<i32> {
        let format = self.output.check(
            "flows",
            &[Output::Table, Output::Wide, Output::Json, Output::Yaml],
        )?;
        let logs = || -> anyhow::Result<FlowLogs> {
            Ok(match (&self.lab, &self.datastore, &self.file) {
                (Some(lab), _, _) => FlowLogs::lab(&super::lab::datastore_dir(lab)?),
                (None, Some(ds), _) => FlowLogs::file(&ds.join("flows.jsonl")),
                (None, None, Some(file)) => FlowLogs::file(file),
                (None, None, None) => {
                    FlowLogs::file(&PathBuf::from("/var/lib/enforcer/datastore/flows.jsonl"))
                }
            })
        };
        let filter = FlowFilter {
            from: self.from,
            to: self.to,
            verdict: self.verdict.map(|v| match v {
                VerdictArg::Allowed => VerdictFilter::Allowed,
                VerdictArg::Denied => VerdictFilter::Denied,
            }),
            node: self.node,
        };
        // Follow from the end of what is read now: no line is printed twice or lost.
        let mut follower = if self.follow {
            Some(Follower::new(logs()?)?)
        } else {
            None
        };
        let logs = logs()?;
        let (records, skipped) = read(&logs, &filter)?;
        if skipped.0 > 0 {
            eprintln!("note: {} lines are not flow records", skipped.0);
        }
        if logs.current().is_empty() && follower.is_none() {
            eprintln!(
                "note: no flow log in {} yet (the agent writes it on the first flow event)",
                logs.dir.display()
            );
        }
        print(format, &records, true)?;
        if let Some(follower) = follower.as_mut() {
            loop {
                let more = follower.next(&filter)?;
                print(format, &more, false)?;
            }
        }
        Ok(0)
    }
}

fn print(format: Output, records: &[FlowRecord], header: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Output::Json => {
            for r in records {
                writeln!(out, "{}", serde_json::to_string(r)?)?;
            }
        }
        Output::Yaml => {
            for r in records {
                write!(out, "---\n{}", output::yaml(r)?)?;
            }
        }
        Output::Table | Output::Wide => {
            if records.is_empty() && !header {
                return Ok(());
            }
            let text = flow_table(records, format == Output::Wide);
            let text = if header {
                text
            } else {
                // Following: the header was printed with the first batch.
                text.split_once('\n')
                    .map_or(String::new(), |(_, rest)| rest.to_owned())
            };
            write!(out, "{text}")?;
        }
    }
    out.flush()?;
    Ok(())
}

fn endpoint(p: &enforcer::agent::flowlog::names::Peer) -> String {
    match p.port {
        Some(port) => format!("{}:{port}", p.display_name()),
        None => p.display_name(),
    }
}

fn flow_table(records: &[FlowRecord], wide: bool) -> String {
    let mut header = vec![
        "TIME",
        "SOURCE",
        "DESTINATION",
        "PROTO",
        "DIRECTION",
        "VERDICT",
        "POLICY",
        "RULE",
    ];
    if wide {
        header.extend(["NODE", "HOOK", "REASON", "PACKETS", "BYTES"]);
    } else {
        header.push("PACKETS");
    }
    let right: Vec<usize> = if wide { vec![11, 12] } else { vec![8] };
    let mut t = table::new(&header, &right);
    for r in records {
        // `2026-01-02T03:04:05.123456Z` → `03:04:05.123`.
        let time = r.end.get(11..23).unwrap_or(&r.end).to_owned();
        let policy = r.policy_ref.as_ref().map_or_else(
            || format!("({})", r.decided_by),
            |p| {
                if p.namespace.is_empty() {
                    format!("{}/{}", p.tier, p.name)
                } else {
                    format!("{}/{}/{}", p.tier, p.namespace, p.name)
                }
            },
        );
        let rule = match (r.rule, r.decided_by.as_str()) {
            (Some(i), _) => i.to_string(),
            (None, "tier-default") => "end-of-tier".to_owned(),
            (None, _) => "-".to_owned(),
        };
        let mut row = vec![
            time,
            endpoint(&r.source),
            endpoint(&r.destination),
            r.protocol.clone(),
            r.direction.clone(),
            r.verdict.to_uppercase(),
            policy,
            rule,
        ];
        if wide {
            row.extend([
                r.node.clone(),
                r.hook.clone(),
                r.reason.clone(),
                r.packets.to_string(),
                r.bytes.to_string(),
            ]);
        } else {
            row.push(r.packets.to_string());
        }
        t.add_row(row);
    }
    table::text(&t)
}
