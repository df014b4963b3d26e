//! The labs of the lab benchmarks (`p3`, `p5` and the lab part of `p6`): an
//! `enforcer lab` built from the [`scenario`](super::scenario) documents (client and
//! server on `node1`, background pods on `node2`: remote, no netns), torn down on
//! drop; commands in its node netns; the agent's memory.

use std::path::PathBuf;
use std::process::Command;

use enforcer::lab::{Lab, LabName, PodInfo, UpOptions};
use serde_json::Value;

use super::{BenchResult, Context as _, scenario};

/// A lab torn down on drop (also when a benchmark fails half-way).
pub struct LabGuard {
    pub name: LabName,
    lab: Option<Lab>,
    dir: PathBuf,
}

impl LabGuard {
    pub fn up(name: &str, docs: &[Value], agent: bool) -> BenchResult<Self> {
        let name = LabName::new(name).ctx("lab name")?;
        // A leftover of an interrupted run goes first.
        let _ = Lab::down(&name);
        let dir = std::env::temp_dir().join(format!(
            "enforcer-bench-{}-{}",
            name.as_str(),
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).ctx("temp dir")?;
        // The YAML reader (serde-saphyr's default budget) caps a stream at 1,024
        // documents and 250,000 nodes: several files, each well under both.
        let mut files = Vec::new();
        for (i, chunk) in chunks(docs, 1_000, 100_000).iter().enumerate() {
            let file = dir.join(format!("cluster-{i:03}.yaml"));
            std::fs::write(&file, enforcer::testkit::synth::to_yaml_stream(chunk))
                .ctx("writing the documents")?;
            files.push(file);
        }
        let mut guard = Self {
            name: name.clone(),
            lab: None,
            dir,
        };
        let opts = UpOptions {
            name,
            agent,
            nodes: 1,
            encap: enforcer::lab::Encap::None,
            binary: enforcer_binary()?,
            agent_binary: None,
            kubernetes: false,
            attach: None,
            // The agent's production default (the lab's own is `all`): benchmarks
            // measure what a node runs.
            agent_args: vec!["--flow-log=denied".to_owned()],
            kube_proxy_masquerade: false,
        };
        guard.lab = Some(Lab::up(&opts, &files).ctx("lab up")?);
        Ok(guard)
    }

    pub fn lab(&self) -> BenchResult<&Lab> {
        self.lab.as_ref().ok_or_else(|| "lab is gone".to_owned())
    }

    pub fn pod(&self, name: &str) -> BenchResult<PodInfo> {
        self.lab()?
            .get_pods()
            .ctx("get pods")?
            .into_iter()
            .find(|p| p.namespace == scenario::NAMESPACE && p.name == name)
            .ok_or_else(|| format!("pod {name} missing from lab {}", self.name))
    }

    pub fn node_netns(&self) -> String {
        self.name.node_netns()
    }

    /// The agent's pid, from the lab state.
    pub fn agent_pid(&self) -> BenchResult<i32> {
        let state = enforcer::lab::state::LabState::load(&self.name.paths().state_file())
            .ctx("lab state")?
            .ok_or("no lab state")?;
        Ok(state
            .agents
            .get(enforcer::cluster::nodes::DEFAULT_NODE)
            .ok_or("the lab has no agent")?
            .pid)
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        // `ENFORCER_BENCH_LOGS=DIR`: the agent's log (one "applied" line per revision,
        // with its microseconds) is kept as DIR/<lab>-agent.log, to see where a
        // latency went.
        if let (Some(keep), Some(lab)) = (std::env::var_os("ENFORCER_BENCH_LOGS"), &self.lab) {
            let from = lab.paths().logs().join("agent.log");
            let to = PathBuf::from(keep).join(format!("{}-agent.log", self.name.as_str()));
            if let Err(e) = std::fs::copy(&from, &to) {
                eprintln!("bench: keeping {}: {e}", from.display());
            }
        }
        drop(self.lab.take());
        let report = Lab::down(&self.name);
        for p in report.problems {
            eprintln!("bench: lab {} cleanup: {p}", self.name);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `enforcer` next to this binary (`cargo xtask bench` builds both in release).
pub(super) fn enforcer_binary() -> BenchResult<PathBuf> {
    if let Some(bin) = std::env::var_os("ENFORCER_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe().ctx("current_exe")?;
    let bin = exe.with_file_name("enforcer");
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!(
            "{} missing: cargo build --release --bin enforcer",
            bin.display()
        ))
    }
}

/// Runs `program args` in netns `netns` with `stdin`, failing on a non-zero exit.
pub fn in_netns(netns: &str, program: &str, args: &[&str], stdin: Option<&str>) -> BenchResult<()> {
    use std::io::Write as _;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, program]).args(args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().ctx(program)?;
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.unwrap_or("").as_bytes())
            .ctx("writing stdin")?;
    }
    let out = child.wait_with_output().ctx(program)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip netns exec {netns} {program} {}: {}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        ))
    }
}

pub fn proc_status_kb(pid: i32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Sum of `memlock` over the BPF maps the agent holds open (its fds), with the largest.
pub fn map_memory(pid: i32) -> Result<(u64, String), String> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut total = 0u64;
    let mut maps: Vec<(u64, u32)> = Vec::new();
    for entry in std::fs::read_dir(&dir)
        .map_err(|e| format!("{dir}: {e}"))?
        .flatten()
    {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let field = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        };
        if let (Some(mem), Some(id)) = (field("memlock:"), field("map_id:")) {
            if maps.iter().any(|(_, i)| u64::from(*i) == id) {
                continue;
            }
            total += mem;
            maps.push((mem, id as u32));
        }
    }
    maps.sort_unstable_by(|a, b| b.cmp(a));
    let names = map_names();
    let top: Vec<String> = maps
        .iter()
        .take(4)
        .map(|(mem, id)| {
            format!(
                "{} {:.1} MiB",
                names
                    .iter()
                    .find(|(i, _)| i == id)
                    .map_or("?", |(_, n)| n.as_str()),
                *mem as f64 / (1 << 20) as f64
            )
        })
        .collect();
    Ok((
        total,
        format!(
            "memlock of the agent's {} maps (kernel accounting); largest: {}",
            maps.len(),
            top.join(", ")
        ),
    ))
}

/// (id, name) of every BPF map, from `bpftool map show -j` (empty if unavailable).
fn map_names() -> Vec<(u32, String)> {
    let Ok(out) = Command::new("bpftool").args(["map", "show", "-j"]).output() else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) else {
        return Vec::new();
    };
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| Some((m["id"].as_u64()? as u32, m["name"].as_str()?.to_owned())))
        .collect()
}

/// `docs` in consecutive chunks of at most `max_docs` documents and `max_nodes` JSON
/// nodes each (a document larger than `max_nodes` is a chunk of its own).
fn chunks(docs: &[Value], max_docs: usize, max_nodes: usize) -> Vec<&[Value]> {
    let mut out = Vec::new();
    let (mut start, mut count) = (0, 0);
    for (i, d) in docs.iter().enumerate() {
        let n = json_nodes(d);
        if i > start && (count + n > max_nodes || i - start == max_docs) {
            out.push(&docs[start..i]);
            (start, count) = (i, 0);
        }
        count += n;
    }
    if start < docs.len() {
        out.push(&docs[start..]);
    }
    out
}

/// The YAML nodes a document becomes: itself, and per map entry a key and its value.
fn json_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(json_nodes).sum(),
        Value::Object(o) => o.values().map(|v| 1 + json_nodes(v)).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{chunks, json_nodes};

    /// Every chunk is under both caps (but for a lone oversized document), and the
    /// chunks are the documents in order.
    #[test]
    fn chunks_respect_both_caps_and_keep_the_order() {
        // 2,500 small documents (7 nodes each), one large (303 nodes).
        let mut docs: Vec<Value> = (0..2_500)
            .map(|i| json!({"kind": "Pod", "metadata": {"name": format!("p{i}")}}))
            .collect();
        docs.insert(1_200, json!({"items": vec![1; 300]}));
        for (max_docs, max_nodes) in [(1_000, 100_000), (1_000, 300), (7, 1_000_000)] {
            let out = chunks(&docs, max_docs, max_nodes);
            let joined: Vec<&Value> = out.iter().flat_map(|c| c.iter()).collect();
            assert_eq!(joined, docs.iter().collect::<Vec<_>>());
            for c in &out {
                assert!(
                    !c.is_empty() && c.len() <= max_docs,
                    "{} documents",
                    c.len()
                );
                let nodes: usize = c.iter().map(json_nodes).sum();
                assert!(c.len() == 1 || nodes <= max_nodes, "{nodes} nodes");
            }
        }
        // 2,501 documents, at most 1,000 each: three files.
        assert_eq!(chunks(&docs, 1_000, 100_000).len(), 3);
        // At a 300-node cap, the large document is a chunk of its own.
        assert!(
            chunks(&docs, 1_000, 300)
                .iter()
                .any(|c| c.len() == 1 && c[0].get("items").is_some())
        );
    }
}
