//! `enforcer inspect`: decode a node's pinned maps.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use enforcer::inspect::{self, policy as policy_view};
use enforcer::model::load_paths;
use enforcer::policy::Cluster;

use super::output::{self, Output, OutputArg};
use super::table;

/// Show what a node's dataplane holds and counts: packets by outcome, per-rule
/// counters, the policy in force for an endpoint, conntrack, endpoints, config.
///
/// Reads the maps the agent pinned under --bpffs (a lab's are under
/// /sys/fs/bpf/enforcer/<lab>; --lab NAME finds them). The same maps are readable with
/// bpftool (`bpftool map dump pinned <bpffs>/ENF_RULE_COUNTERS`), which prints their
/// fields by name.
///
/// Exit status: 0 on success, 1 on an error (maps not pinned, no such endpoint).
///
/// Examples:
///
///   enforcer inspect counters --lab lab
///
///   enforcer inspect rules --lab lab --policy allow-frontend-to-backend
///
///   enforcer inspect policy dev-app/frontend-0 --lab lab
///
///   enforcer inspect conntrack --bpffs /sys/fs/bpf/enforcer/node1 -o json
#[derive(Args, Debug)]
#[command(
    verbatim_doc_comment,
    about = "Show what a node's dataplane holds and counts"
)]
pub struct InspectArgs {
    #[command(subcommand)]
    pub what: InspectWhat,
    /// bpffs directory of the node (default: /sys/fs/bpf/enforcer/node1).
    #[arg(long, global = true, conflicts_with = "lab")]
    pub bpffs: Option<PathBuf>,
    /// The node of a running `enforcer lab` (its maps, and its objects for `policy`).
    #[arg(long, global = true)]
    pub lab: Option<String>,
    #[command(flatten)]
    pub output: OutputArg,
}

#[derive(Subcommand, Debug)]
pub enum InspectWhat {
    /// Packets allowed and dropped, by hook and reason, and what became of flow events
    /// (non-zero only).
    ///
    /// Example:
    ///
    ///   enforcer inspect counters --lab lab
    #[command(verbatim_doc_comment)]
    Counters,
    /// Packets and bytes per policy rule, direction and action.
    ///
    /// Counted where policy judges a packet: new flows and denied packets (the
    /// established packets conntrack passes are not), summed over the node. A tier's
    /// end-of-tier deny is counted under its last policy with rule `default`.
    ///
    /// Examples:
    ///
    ///   enforcer inspect rules --lab lab
    ///
    ///   enforcer inspect rules --lab lab --policy dev-app/default-deny -o json
    #[command(verbatim_doc_comment)]
    Rules {
        /// Only the rules of the policies named NAME (or NAMESPACE/NAME).
        #[arg(long, value_name = "NAME")]
        policy: Option<String>,
    },
    /// The tiers, policies and rules in force for one pod, in evaluation order, with
    /// their counters on this node.
    ///
    /// The policies come from the objects (--lab, --datastore or -f files); the
    /// counters from the node's maps (--lab or --bpffs).
    ///
    /// Examples:
    ///
    ///   enforcer inspect policy dev-app/frontend-0 --lab lab
    ///
    ///   enforcer inspect policy dev-app/frontend-0 -f tests/fixtures/tutorial/ -o yaml
    #[command(verbatim_doc_comment)]
    Policy {
        /// The pod: NAMESPACE/NAME.
        endpoint: String,
        /// The agent's datastore directory, for the objects.
        #[arg(long, conflicts_with = "files")]
        datastore: Option<PathBuf>,
        /// Files or directories of YAML, for the objects (`-` reads standard input).
        #[arg(short = 'f', long = "filename")]
        files: Vec<PathBuf>,
    },
    /// The connection-tracking table.
    ///
    /// One line per tracked flow: protocol, source and destination address and port,
    /// the entry's flags and the policy generation that allowed it.
    ///
    /// Examples:
    ///
    ///   enforcer inspect conntrack --lab lab
    ///
    ///   enforcer inspect conntrack --bpffs /sys/fs/bpf/enforcer/node1 -o json
    #[command(verbatim_doc_comment)]
    Conntrack,
    /// Endpoint entries per generation.
    ///
    /// The interfaces the programs judge, by interface index, with the endpoint id and
    /// profile the compiled policy gave them, for each live generation.
    ///
    /// Examples:
    ///
    ///   enforcer inspect endpoints --lab lab
    ///
    ///   enforcer inspect endpoints --lab lab -o yaml
    #[command(verbatim_doc_comment)]
    Endpoints,
    /// The active generation and flags.
    ///
    /// The generation the programs read (`active_gen`), the generations whose maps are
    /// filled (`live_gens`, a bit each) and the dataplane's flags.
    ///
    /// Examples:
    ///
    ///   enforcer inspect config --lab lab
    ///
    ///   enforcer inspect config --bpffs /sys/fs/bpf/enforcer/node1 -o json
    #[command(verbatim_doc_comment)]
    Config,
}

impl InspectArgs {
    fn pin_dir(&self) -> anyhow::Result<PathBuf> {
        Ok(match (&self.lab, &self.bpffs) {
            (Some(lab), _) => super::lab::bpffs_dir(lab)?,
            (None, Some(dir)) => dir.clone(),
            (None, None) => PathBuf::from("/sys/fs/bpf/enforcer/node1"),
        })
    }

    pub fn execute(self) -> anyhow::Result<i32> {
        let pin_dir = self.pin_dir()?;
        let structured = [Output::Table, Output::Json, Output::Yaml];
        match &self.what {
            InspectWhat::Counters => {
                let format = self.output.check("inspect counters", &structured)?;
                let rows = inspect::counters(&pin_dir)?;
                if format == Output::Table {
                    let mut t = table::new(&["HOOK", "REASON", "PACKETS"], &[2]);
                    for r in rows {
                        t.add_row([
                            r.hook.to_string(),
                            r.reason.to_string(),
                            r.packets.to_string(),
                        ]);
                    }
                    print!("{}", table::text(&t));
                } else {
                    print!("{}", output::structured(format, &rows)?);
                }
            }
            InspectWhat::Rules { policy } => {
                let format = self.output.check(
                    "inspect rules",
                    &[Output::Table, Output::Wide, Output::Json, Output::Yaml],
                )?;
                let rows = inspect::rules(&pin_dir, policy.as_deref())?;
                if matches!(format, Output::Table | Output::Wide) {
                    print!("{}", rules_table(&rows, format == Output::Wide));
                } else {
                    print!("{}", output::structured(format, &rows)?);
                }
            }
            InspectWhat::Policy {
                endpoint,
                datastore,
                files,
            } => {
                let format = self.output.check("inspect policy", &structured)?;
                let objects = match (&self.lab, datastore, files.is_empty()) {
                    (Some(lab), _, true) => super::lab::datastore_objects(lab)
                        .with_context(|| format!("reading lab {lab:?}'s datastore"))?,
                    (_, Some(dir), _) => {
                        enforcer::datastore::file::FileDatastore::open(dir)?.list()?
                    }
                    (_, None, false) => enforcer::offline::complete(&load_paths(files)?)?.objects,
                    _ => anyhow::bail!(
                        "give --lab NAME, --datastore DIR or -f FILE... for the objects"
                    ),
                };
                let (cluster, _warnings) = Cluster::from_objects(&objects)?;
                // Counters when the node's maps are there (not for plain files).
                let pins =
                    (self.lab.is_some() || self.bpffs.is_some()).then_some(pin_dir.as_path());
                let view = policy_view::endpoint_policy(&cluster, endpoint, pins)?;
                if format == Output::Table {
                    print!("{}", policy_text(&view));
                } else {
                    print!("{}", output::structured(format, &view)?);
                }
            }
            InspectWhat::Conntrack => {
                let format = self.output.check("inspect conntrack", &structured)?;
                let rows = inspect::conntrack(&pin_dir)?;
                if format == Output::Table {
                    for r in rows {
                        println!(
                            "proto {:>3} {}:{} -> {}:{} flags {:#x} gen {}",
                            r.proto, r.src, r.sport, r.dst, r.dport, r.flags, r.generation
                        );
                    }
                } else {
                    print!("{}", output::structured(format, &rows)?);
                }
            }
            InspectWhat::Endpoints => {
                let format = self.output.check("inspect endpoints", &structured)?;
                let rows = inspect::endpoints(&pin_dir)?;
                if format == Output::Table {
                    let mut t = table::new(
                        &["GENERATION", "IFINDEX", "ENDPOINT ID", "PROFILE"],
                        &[0, 1, 2, 3],
                    );
                    for r in rows {
                        t.add_row([
                            r.generation.to_string(),
                            r.ifindex.to_string(),
                            r.endpoint_id.to_string(),
                            r.profile.to_string(),
                        ]);
                    }
                    print!("{}", table::text(&t));
                } else {
                    print!("{}", output::structured(format, &rows)?);
                }
            }
            InspectWhat::Config => {
                let format = self.output.check("inspect config", &structured)?;
                let c = inspect::config(&pin_dir)?;
                if format == Output::Table {
                    println!(
                        "active_gen {} live_gens {:#b} flags {:#x}",
                        c.active_gen, c.live_gens, c.flags
                    );
                } else {
                    let value = serde_json::json!({
                        "active_gen": c.active_gen,
                        "live_gens": c.live_gens,
                        "flags": c.flags,
                    });
                    print!("{}", output::structured(format, &value)?);
                }
            }
        }
        Ok(0)
    }
}

fn rules_table(
    rows: &[enforcer::dataplane::rule_counters::RuleCounterSample],
    wide: bool,
) -> String {
    let mut header = vec![
        "TIER",
        "POLICY",
        "RULE",
        "DIRECTION",
        "ACTION",
        "PACKETS",
        "BYTES",
    ];
    if wide {
        header.extend(["KIND", "ID"]);
    }
    let mut t = table::new(&header, &[5, 6]);
    for r in rows {
        let (tier, name, kind) = r.policy.as_ref().map_or_else(
            || ("-".to_owned(), "(profile)".to_owned(), "-".to_owned()),
            |p| {
                let name = if p.namespace.is_empty() {
                    p.name.clone()
                } else {
                    format!("{}/{}", p.namespace, p.name)
                };
                (p.tier.clone(), name, p.kind.clone())
            },
        );
        let mut row = vec![
            tier,
            name,
            r.rule
                .map_or_else(|| "default".to_owned(), |i| i.to_string()),
            r.direction.to_owned(),
            r.action.to_owned(),
            r.packets.to_string(),
            r.bytes.to_string(),
        ];
        if wide {
            row.push(kind);
            row.push(
                r.policy_id
                    .map_or_else(|| "-".to_owned(), |i| i.to_string()),
            );
        }
        t.add_row(row);
    }
    table::text(&t)
}

fn counts(c: Option<policy_view::Counts>) -> String {
    c.map_or_else(String::new, |c| {
        format!("{} packets, {} bytes", c.packets, c.bytes)
    })
}

fn policy_text(v: &policy_view::EndpointPolicy) -> String {
    let mut out = String::new();
    let labels: Vec<String> = v
        .labels
        .iter()
        .map(|(k, val)| format!("{k}={val}"))
        .collect();
    let _ = writeln!(
        out,
        "{} ({}) labels: {}",
        v.endpoint,
        v.addresses.join(", "),
        labels.join(",")
    );
    for (name, dir) in [("INGRESS", &v.ingress), ("EGRESS", &v.egress)] {
        let _ = writeln!(out, "\n{name}");
        if dir.tiers.is_empty() {
            let _ = writeln!(out, "  no policy selects this endpoint");
        }
        for tier in &dir.tiers {
            let order = tier
                .order
                .map_or_else(|| "none".to_owned(), |o| o.to_string());
            let _ = writeln!(out, "  tier {} (order {order})", tier.tier);
            for (i, p) in tier.policies.iter().enumerate() {
                let name = if p.namespace.is_empty() {
                    p.name.clone()
                } else {
                    format!("{}/{}", p.namespace, p.name)
                };
                let order = p.order.map_or_else(|| "none".to_owned(), |o| o.to_string());
                let id = p.id.map_or_else(
                    || "not enforced on this node".to_owned(),
                    |id| format!("id {id}"),
                );
                let _ = writeln!(
                    out,
                    "    {}. {} {name} (order {order}; {id})",
                    i + 1,
                    p.kind
                );
                if p.rules.is_empty() {
                    let _ = writeln!(out, "         (no rules in this direction)");
                }
                for r in &p.rules {
                    let _ = writeln!(
                        out,
                        "         {} {:<5} {}  [{}]  {}",
                        r.index,
                        r.action,
                        r.matches,
                        r.field,
                        counts(r.counters)
                    );
                }
            }
            let _ = writeln!(
                out,
                "    end of tier: {}  {}",
                tier.end_of_tier,
                counts(tier.end_of_tier_counters)
            );
        }
        let _ = writeln!(
            out,
            "  profile {}: allow  {}",
            dir.profile,
            counts(dir.profile_counters)
        );
    }
    out
}
