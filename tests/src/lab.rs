//! Harness for lab scenarios: runs the real `enforcer` binary, one uniquely named lab
//! per test, torn down (`lab down`) when the guard drops, even when the test panics.
//!
//! The binary is `$ENFORCER_BIN`, else `<target dir>/<profile>/enforcer` next to the
//! test executable (`cargo build -p enforcer-agent` first; cargo does not build other
//! packages' binaries for a test).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

pub use enforcer::connectivity::ProbeResult;
pub use enforcer::lab::{NodeInfo, PodInfo};

/// `enforcer`'s exit status when the answer is no (a probe did not connect, a flow is
/// denied, a change opens or closes flows).
pub const EXIT_NO: i32 = 3;

/// The `enforcer` binary under test.
pub fn enforcer_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ENFORCER_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    // <target>/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("unexpected test executable path {}", exe.display()));
    let bin = profile_dir.join("enforcer");
    assert!(
        bin.exists(),
        "{} does not exist: build it first (`cargo build -p enforcer-agent`, same profile) or set ENFORCER_BIN",
        bin.display()
    );
    bin
}

/// A file under `tests/fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// Lab tests need root (netns, veths, nftables); they fail, not skip, without it.
pub fn require_root() {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective uid.
    let euid = std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid());
    assert_eq!(
        euid, 0,
        "lab tests create network namespaces and must run as root"
    );
}

static SERIAL: Mutex<()> = Mutex::new(());

/// Serializes lab tests within a test binary: they spawn many processes and probe
/// with timeouts, so running them side by side on a small machine makes them flaky.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A unique lab name: `<prefix><pid hex><counter>` (at most 12 characters).
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{:x}{n}", std::process::id());
    assert!(
        name.len() <= 12,
        "lab name {name} too long: use a shorter prefix"
    );
    name
}

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("enf-test-{tag}-{}", unique_name("d")));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        Self(dir)
    }

    /// Writes `name` with `text` and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `&'static str` of an environment value (a few per test process).
fn leak(value: String) -> &'static str {
    Box::leak(value.into_boxed_str())
}

/// A lab that is torn down on drop.
pub struct LabGuard {
    pub name: String,
    pub bin: PathBuf,
    /// `lab up --nodes` (1: the option is left out).
    pub nodes: u32,
    /// `lab up --encap` (`None`: left out).
    pub encap: Option<&'static str>,
    /// `lab up --agent-arg` (each an argument of every node agent).
    pub agent_args: Vec<String>,
    /// Further `lab up` options (`--kube-proxy-masquerade`).
    pub up_args: Vec<&'static str>,
}

impl LabGuard {
    /// A guard for a fresh, unique lab name (nothing is created yet).
    pub fn new(prefix: &str) -> Self {
        require_root();
        Self {
            name: unique_name(prefix),
            bin: enforcer_bin(),
            nodes: 1,
            encap: None,
            agent_args: Vec::new(),
            up_args: Vec::new(),
        }
    }

    /// `lab up` will get `args` too (`--kube-proxy-masquerade`).
    #[must_use]
    pub fn with_up_args(mut self, args: &[&'static str]) -> Self {
        self.up_args.extend_from_slice(args);
        self
    }

    /// The lab's agents will run with `args` on top of the lab's own.
    #[must_use]
    pub fn with_agent_args(mut self, args: &[&str]) -> Self {
        self.agent_args = args.iter().map(|a| (*a).to_owned()).collect();
        self
    }

    /// The lab will have `nodes` nodes.
    #[must_use]
    pub fn with_nodes(mut self, nodes: u32) -> Self {
        self.nodes = nodes;
        self
    }

    /// The lab's nodes will tunnel pod traffic with `encap` (`vxlan`).
    #[must_use]
    pub fn with_encap(mut self, encap: &'static str) -> Self {
        self.encap = Some(encap);
        self
    }

    /// `enforcer lab --name <name> <args>`.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .args(["lab", "--name", &self.name])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.bin.display()))
    }

    /// Like [`run`](Self::run) but panics (with stdout and stderr) unless it exits 0;
    /// returns stdout.
    pub fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "`enforcer lab {}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `lab up --no-agent -f <files>` (or with the agent when `agent`), with the
    /// guard's nodes and encapsulation. The suite's environment picks how the agents
    /// run: `ENFORCER_LAB_DATASTORE=kubernetes` (through the lab's API server) and
    /// `ENFORCER_LAB_ATTACH=tc|tcx`.
    pub fn up(&self, files: &[&Path], agent: bool) -> String {
        let mut args = vec!["up"];
        if !agent {
            args.push("--no-agent");
        }
        let nodes = self.nodes.to_string();
        if self.nodes != 1 {
            args.extend(["--nodes", &nodes]);
        }
        if let Some(encap) = self.encap {
            args.extend(["--encap", encap]);
        }
        let datastore = std::env::var("ENFORCER_LAB_DATASTORE").unwrap_or_default();
        if !datastore.is_empty() {
            args.extend(["--datastore", leak(datastore.clone())]);
        }
        let attach = std::env::var("ENFORCER_LAB_ATTACH").unwrap_or_default();
        if !attach.is_empty() && agent {
            args.extend(["--attach", leak(attach.clone())]);
        }
        let agent_args: Vec<String> = self
            .agent_args
            .iter()
            .map(|a| format!("--agent-arg={a}"))
            .collect();
        args.extend(agent_args.iter().map(String::as_str));
        args.extend(self.up_args.iter().copied());
        let files: Vec<String> = files
            .iter()
            .map(|f| f.to_string_lossy().into_owned())
            .collect();
        for f in &files {
            args.extend(["-f", f]);
        }
        let out = self.run_ok(&args);
        if agent {
            // The agent really runs the way the environment asked.
            // Every node's agent log (`agent.log`, `agent-<node>.log`).
            let log: String = std::fs::read_dir(self.state_dir().join("logs"))
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("agent"))
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .collect();
            if datastore == "kubernetes" {
                assert!(
                    log.contains("datastore=kubernetes:"),
                    "agent not on the API:\n{log}"
                );
            }
            if !attach.is_empty() {
                let said = format!("attach=\"{attach}\"");
                assert!(
                    log.contains(&said),
                    "agent not attached with {attach}:\n{log}"
                );
            }
        }
        out
    }

    pub fn apply(&self, file: &Path) -> String {
        self.run_ok(&["apply", "-f", &file.to_string_lossy()])
    }

    pub fn delete(&self, file: &Path) -> String {
        self.run_ok(&["delete", "-f", &file.to_string_lossy()])
    }

    pub fn get_pods(&self) -> Vec<PodInfo> {
        let out = self.run_ok(&["get", "pods", "-o", "json"]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("get pods output: {e}:\n{out}"))
    }

    /// The pod `namespace/name` (panics when the lab has none).
    pub fn pod(&self, key: &str) -> PodInfo {
        self.get_pods()
            .into_iter()
            .find(|p| format!("{}/{}", p.namespace, p.name) == key)
            .unwrap_or_else(|| panic!("no pod {key}"))
    }

    pub fn get_nodes(&self) -> Vec<NodeInfo> {
        let out = self.run_ok(&["get", "nodes", "-o", "json"]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("get nodes output: {e}:\n{out}"))
    }

    /// With several nodes, checks that every node runs some pods (so flows between
    /// them cross nodes); returns the number of pods per node.
    pub fn assert_spread(&self) -> Vec<(String, usize)> {
        let pods = self.get_pods();
        let per_node: Vec<(String, usize)> = self
            .get_nodes()
            .into_iter()
            .map(|n| {
                let here = pods.iter().filter(|p| p.node == n.name).count();
                (n.name, here)
            })
            .collect();
        assert!(
            per_node.iter().all(|(_, n)| *n > 0),
            "pods are not spread over the nodes: {per_node:?}"
        );
        per_node
    }

    /// Every node's bpffs directory (where its agent pins maps and links).
    pub fn bpffs_dirs(&self) -> Vec<PathBuf> {
        self.get_nodes()
            .into_iter()
            .map(|n| PathBuf::from(n.bpffs))
            .collect()
    }

    /// `lab probe <args> -o json`, parsed. It exits 0 when every probe connected and
    /// [`EXIT_NO`] (3) when one did not; anything else fails the test.
    pub fn probe(&self, args: &[&str]) -> Vec<ProbeResult> {
        let mut full = vec!["probe"];
        full.extend_from_slice(args);
        full.extend(["-o", "json"]);
        let out = self.run(&full);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let results: Vec<ProbeResult> = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "probe output ({}): {e}:\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let want = if results.iter().all(|r| r.connected) {
            0
        } else {
            EXIT_NO
        };
        assert_eq!(
            out.status.code(),
            Some(want),
            "lab probe's exit status: {results:?}"
        );
        results
    }

    /// `lab exec <pod> -- <cmd...>`: (exit code, stdout, stderr).
    pub fn exec(&self, pod: &str, cmd: &[&str]) -> (i32, String, String) {
        let mut args = vec!["exec", pod, "--"];
        args.extend_from_slice(cmd);
        let out = self.run(&args);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn state_dir(&self) -> PathBuf {
        Path::new("/run/enforcer/lab").join(&self.name)
    }

    /// Everything of this lab still on the machine (empty when fully cleaned).
    pub fn leftovers(&self) -> Vec<String> {
        let prefix = format!("enf-{}-", self.name);
        let mut found = Vec::new();
        for dir in ["/run/netns", "/etc/netns"] {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(&prefix) {
                    found.push(format!("{dir}/{name}"));
                }
            }
        }
        if self.state_dir().exists() {
            found.push(self.state_dir().display().to_string());
        }
        found.extend(
            lab_processes(&self.name)
                .into_iter()
                .map(|p| format!("process {p}")),
        );
        found
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        // For debugging a failure by hand: `ENFORCER_TEST_KEEP_LAB=1` keeps a failed
        // test's lab (`enforcer lab --name NAME down` removes it).
        if std::thread::panicking() && std::env::var_os("ENFORCER_TEST_KEEP_LAB").is_some() {
            eprintln!("kept lab {} (ENFORCER_TEST_KEEP_LAB)", self.name);
            return;
        }
        let _ = self.run(&["down"]);
    }
}

/// Pids of the lab's pod processes and agent, found by command line.
pub fn lab_processes(lab: &str) -> Vec<i32> {
    let datastore = format!("/run/enforcer/lab/{lab}/datastore");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let pair = |flag: &str, value: &str| args.windows(2).any(|w| w[0] == flag && w[1] == value);
        let kubeconfig = format!("/run/enforcer/lab/{lab}/kubeconfig");
        if pair("--lab", lab)
            || pair("--datastore", &datastore)
            || pair("--kubeconfig", &kubeconfig)
        {
            pids.push(pid);
        }
    }
    pids
}

/// Empties every node's pinned conntrack map. Each probe stands for a new connection,
/// but a UDP probe's ephemeral source port may repeat the 5-tuple of an earlier probe
/// still in conntrack (60 s), which then passes as the established flow it is: correct
/// stateful behaviour, a wrong answer for this probe. So a step starts with no flows.
pub fn forget_flows(bpffs: &[PathBuf]) -> Result<(), String> {
    use aya::maps::{HashMap, Map, MapData};
    use enforcer_common::{CtKey, CtValue, MAP_CONNTRACK};
    for dir in bpffs {
        let path = dir.join(MAP_CONNTRACK);
        let path = path.display();
        let data = MapData::from_pin(path.to_string()).map_err(|e| format!("open {path}: {e}"))?;
        let map = Map::from_map_data(data).map_err(|e| format!("open {path}: {e}"))?;
        let mut ct: HashMap<MapData, CtKey, CtValue> =
            HashMap::try_from(map).map_err(|e| format!("{path}: {e}"))?;
        let keys: Vec<CtKey> = ct.keys().filter_map(Result::ok).collect();
        for k in keys {
            let _ = ct.remove(&k);
        }
    }
    Ok(())
}
