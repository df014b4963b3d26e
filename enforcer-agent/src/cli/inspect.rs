//! `enforcer inspect`: decode a node's pinned maps.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use enforcer::inspect;

use super::table;

/// Show what the dataplane holds: counters by reason, conntrack, endpoints, config.
///
/// Examples:
///   enforcer inspect counters --bpffs /sys/fs/bpf/enforcer/lab
///   enforcer inspect conntrack --bpffs /sys/fs/bpf/enforcer/lab -o json
#[derive(Args, Debug)]
pub struct InspectArgs {
    #[command(subcommand)]
    pub what: InspectWhat,
    /// bpffs directory of the node (default: /sys/fs/bpf/enforcer/node1).
    #[arg(long, global = true, default_value = "/sys/fs/bpf/enforcer/node1")]
    pub bpffs: PathBuf,
    /// Output format: table or json.
    #[arg(short = 'o', long, global = true, default_value = "table")]
    pub output: String,
}

#[derive(Subcommand, Debug)]
pub enum InspectWhat {
    /// Packets allowed and dropped, by hook and reason (non-zero only).
    Counters,
    /// The connection-tracking table.
    Conntrack,
    /// Endpoint entries per generation.
    Endpoints,
    /// The active generation and flags.
    Config,
}

impl InspectArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let json = self.output == "json";
        match self.what {
            InspectWhat::Counters => {
                let rows = inspect::counters(&self.bpffs)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                } else {
                    let mut t = table::new(&["HOOK", "REASON", "PACKETS"], &[2]);
                    for r in rows {
                        t.add_row([
                            r.hook.to_string(),
                            r.reason.to_string(),
                            r.packets.to_string(),
                        ]);
                    }
                    print!("{}", table::text(&t));
                }
            }
            InspectWhat::Conntrack => {
                let rows = inspect::conntrack(&self.bpffs)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                } else {
                    for r in rows {
                        println!(
                            "proto {:>3} {}:{} -> {}:{} flags {:#x} gen {}",
                            r.proto, r.src, r.sport, r.dst, r.dport, r.flags, r.generation
                        );
                    }
                }
            }
            InspectWhat::Endpoints => {
                let rows = inspect::endpoints(&self.bpffs)?;
                println!("{}", serde_json::to_string_pretty(&rows)?);
            }
            InspectWhat::Config => {
                let c = inspect::config(&self.bpffs)?;
                println!(
                    "active_gen {} live_gens {:#b} flags {:#x}",
                    c.active_gen, c.live_gens, c.flags
                );
            }
        }
        Ok(())
    }
}
