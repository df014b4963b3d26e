//! The agent's memory does not grow with policy changes: the reconcile loop (object
//! cache, model, compiler, self-check, the dataplane's policy ids and generation
//! contents) driven through many datastore changes holds as many live heap bytes after
//! them as after a warm-up. Bytes are counted by a global allocator of this test
//! binary (not RSS: what the allocator keeps or returns to the kernel is not the
//! program's retention), so the test sees a leak of a few KiB per change whatever
//! the allocator does with freed memory.

#![expect(clippy::unwrap_used, reason = "a failing test panics with context")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicIsize, Ordering};

use serde_json::{Value, json};
use tokio::sync::watch;

use enforcer::agent::reconcile::Reconciler;
use enforcer::compile::DataplaneSpec;
use enforcer::dataplane::bindings::{Binding, Bindings};
use enforcer::dataplane::content::GenerationContent;
use enforcer::dataplane::interfaces::NodeInterfaces;
use enforcer::dataplane::policy_ids::PolicyIds;
use enforcer::dataplane::{Dataplane, DataplaneError};
use enforcer::datastore::Datastore as _;
use enforcer::datastore::memory::{MemoryDatastore, MemoryWriter};
use enforcer::datastore::status::AgentStatus;
use enforcer::model::{Object, ObjectId, PolicyName, load_value};
use enforcer::testkit::synth::{self, SynthParams, TargetedParams};

/// Counts the bytes allocated and not yet freed, over every thread.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; the counter only adds and
// subtracts the sizes of what `System` allocated and freed.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is `System`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size().cast_signed(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size().cast_signed(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size().cast_signed(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size.cast_signed() - layout.size().cast_signed(),
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

const NODE: &str = "node1";

/// What `BpfDataplane::apply` computes without the maps: stable policy ids, the
/// generation's content renumbered with them, and the content each of the two slots
/// holds (as `GenerationWriter` keeps it to diff the next write against).
#[derive(Default)]
struct MapsDouble {
    policy_ids: PolicyIds,
    slots: [Option<GenerationContent>; 2],
    applies: u32,
    attached: BTreeMap<String, u32>,
}

impl Dataplane for MapsDouble {
    fn apply(&mut self, spec: &DataplaneSpec, bindings: &Bindings) -> Result<u32, DataplaneError> {
        let assigned = self.policy_ids.assign_used(
            &spec.policies,
            &spec.policy_fingerprints,
            &spec.referenced_policies(),
        );
        let mut content = GenerationContent::from_bindings(spec, bindings);
        content.renumber_policies(&assigned.ids);
        let generation = self.applies % 2;
        self.applies += 1;
        self.slots[generation as usize] = Some(content);
        self.policy_ids.written(generation, &assigned.ids);
        Ok(generation)
    }

    fn attach(&mut self, iface: &str, binding: &Binding) -> Result<(), DataplaneError> {
        self.attached.insert(iface.to_owned(), binding.ifindex);
        Ok(())
    }

    fn detach(&mut self, iface: &str) {
        self.attached.remove(iface);
    }

    fn attached(&self) -> &BTreeMap<String, u32> {
        &self.attached
    }

    fn policy_name(&self, id: u32, _spec: &DataplaneSpec) -> Option<PolicyName> {
        self.policy_ids.name(id).cloned()
    }
}

fn objects(doc: &Value) -> Vec<Object> {
    load_value(Path::new("memory.json"), doc)
        .unwrap()
        .into_iter()
        .map(|l| l.object)
        .collect()
}

/// The benchmark's cluster (`tests/src/bench/scenario.rs`, `scale`), at a size of
/// the caller's: two local pods on this node (`app: bench-client`, `bench-server`),
/// remote pods, `rules` rules selecting the server in policies of 100, and
/// Kubernetes (80 %) and Calico policies up to `policies`.
fn cluster(rules: usize, policies: usize, pods: usize) -> Vec<Value> {
    let local = |name: &str, ip: &str| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "bench", "labels": {"app": format!("bench-{name}")}},
            "spec": {"nodeName": NODE, "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
            "status": {"podIP": ip},
        })
    };
    let mut docs = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench", "labels": {"env": "bench"}}}),
        local("client", "198.18.0.10"),
        local("server", "198.18.0.11"),
        json!({
            "apiVersion": "projectcalico.org/v3", "kind": "Tier",
            "metadata": {"name": "flip"}, "spec": {"order": 1},
        }),
    ];
    let targeted = synth::targeted_policies(&TargetedParams {
        seed: 7,
        rules,
        rules_per_policy: 100,
        namespace: "bench".to_owned(),
        apps: 32,
        ..TargetedParams::default()
    });
    let others = policies.saturating_sub(targeted.len());
    let k8s = others * 4 / 5;
    docs.extend(synth::generate(&SynthParams {
        seed: 7,
        namespaces: 50,
        pods,
        k8s_policies: k8s,
        calico_policies: others - k8s,
        rules_per_policy: 1,
        apps: 200,
        node: "node2".to_owned(),
        address_offset: 100,
    }));
    docs.extend(targeted);
    docs
}

fn flip_policy() -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "flip.deny-client"},
        "spec": {
            "tier": "flip",
            "selector": "app == 'bench-server'",
            "types": ["Ingress"],
            "ingress": [{"action": "Deny", "source": {"selector": "app == 'bench-client'"}}],
        },
    })
}

/// The benchmark's mix of changes (`p5.rs`, `many_changes`): change `i` adds or
/// deletes the flip policy, edits a Kubernetes policy's port, or relabels a remote pod.
struct Changes {
    docs: Vec<Value>,
    flip: Vec<Object>,
    flipped: bool,
}

impl Changes {
    fn new(docs: Vec<Value>) -> Self {
        Self {
            docs,
            flip: objects(&flip_policy()),
            flipped: false,
        }
    }

    fn write(&mut self, writer: &MemoryWriter, i: usize) -> u64 {
        let of_kind = |kind: &str, api: &str| -> Vec<usize> {
            (0..self.docs.len())
                .filter(|&d| self.docs[d]["kind"] == kind && self.docs[d]["apiVersion"] == api)
                .collect()
        };
        match i % 4 {
            0 => {
                self.flipped = !self.flipped;
                if self.flipped {
                    writer.apply(&self.flip)
                } else {
                    let ids: Vec<ObjectId> = self.flip.iter().map(Object::id).collect();
                    writer.delete(&ids)
                }
            }
            1 | 2 => {
                let policies = of_kind("NetworkPolicy", "networking.k8s.io/v1");
                let mut doc = self.docs[policies[(i * 7919) % policies.len()]].clone();
                doc["spec"]["ingress"][0]["ports"] =
                    json!([{"protocol": "TCP", "port": 1_000 + (i % 50_000)}]);
                writer.apply(&objects(&doc))
            }
            _ => {
                let pods: Vec<usize> = of_kind("Pod", "v1")
                    .into_iter()
                    .filter(|&d| self.docs[d]["metadata"]["namespace"] != "bench")
                    .collect();
                let mut doc = self.docs[pods[(i * 104_729) % pods.len()]].clone();
                doc["metadata"]["labels"]["version"] = json!(format!("c{}", i % 7));
                writer.apply(&objects(&doc))
            }
        }
    }
}

/// Drives the reconciler as the agent's loop does (one datastore event, then the end
/// of the grace period) through `changes` changes; returns the live bytes after each.
struct Agent {
    runtime: tokio::runtime::Runtime,
    datastore: MemoryDatastore,
    writer: MemoryWriter,
    reconciler: Reconciler,
    interfaces: NodeInterfaces,
    status: watch::Receiver<AgentStatus>,
    changes: Changes,
    next: usize,
}

impl Agent {
    fn start(docs: Vec<Value>) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let (datastore, writer) = MemoryDatastore::new();
        for doc in &docs {
            writer.apply(&objects(doc));
        }
        let (publisher, status) = watch::channel(AgentStatus::default());
        let reconciler = Reconciler::new(NODE.to_owned(), Box::<MapsDouble>::default(), publisher);
        let interfaces = NodeInterfaces::ethernet(
            [
                ("lo".to_owned(), 1),
                ("eth0".to_owned(), 2),
                (
                    enforcer::model::workload::host_iface_name("bench", "client"),
                    10,
                ),
                (
                    enforcer::model::workload::host_iface_name("bench", "server"),
                    11,
                ),
            ]
            .into(),
        );
        let mut agent = Self {
            runtime,
            datastore,
            writer,
            reconciler,
            interfaces,
            status,
            changes: Changes::new(docs),
            next: 0,
        };
        agent.step();
        agent
    }

    /// Reconciles the next datastore event and ends the grace period it started.
    fn step(&mut self) {
        let event = self.runtime.block_on(self.datastore.next_event()).unwrap();
        self.reconciler
            .on_datastore(event, &self.interfaces)
            .unwrap();
        self.reconciler.retire();
        let status = self.status.borrow();
        assert_eq!(status.error, None, "every change applies");
        assert_eq!(status.endpoints_attached, 2, "both local pods bound");
    }

    /// Writes and reconciles `n` more changes.
    fn change(&mut self, n: usize) {
        for _ in 0..n {
            self.changes.write(&self.writer, self.next);
            self.next += 1;
            self.step();
        }
    }
}

/// `RssAnon` of this process, in KiB.
fn rss_anon_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// What the agent's loop does after each event, and glibc's view of its heap then:
/// (bytes in use, bytes held: sbrk heap + mmapped chunks, `RssAnon` KiB).
fn heap_report() -> (usize, usize, u64) {
    // SAFETY: malloc_trim and mallinfo2 only read and trim the allocator's own state.
    let info = unsafe {
        libc::malloc_trim(0);
        libc::mallinfo2()
    };
    (
        info.uordblks + info.hblkhd,
        info.arena + info.hblkhd,
        rss_anon_kib(),
    )
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).map_or(default, |v| v.parse().unwrap())
}

/// On the main thread, alone (`harness = false`): the agent's loop runs on its main
/// thread, and no other test allocates meanwhile.
fn main() {
    let rules = env("MEMORY_RULES", 20);
    let policies = env("MEMORY_POLICIES", 60);
    let pods = env("MEMORY_PODS", 40);
    let n = env("MEMORY_CHANGES", 200);
    let report = std::env::var_os("MEMORY_REPORT").is_some();
    let mut agent = Agent::start(cluster(rules, policies, pods));
    let loaded = live();
    // Warm-up: every kind of change a few times (capacities of maps and vectors
    // settle, the flip tier's policy comes and goes).
    agent.change(16);
    let warm = live();
    let mut samples = Vec::new();
    // The mix repeats every 8 changes (the flip policy is added at every 8th, deleted
    // 4 later): samples taken at the same point of it compare like with like.
    let step = 40;
    let steps = n.div_ceil(step);
    let n = steps * step;
    for step_index in 0..steps {
        agent.change(step);
        samples.push(live());
        if report {
            let (used, held, rss) = heap_report();
            eprintln!(
                "after {:>5} changes: live {:>10} B, glibc in use {used:>10} B, held {held:>10} B, RssAnon {rss:>7} KiB",
                16 + (step_index + 1) * step,
                live()
            );
        }
    }
    let after = live();
    let growth = after - warm;
    eprintln!(
        "live heap at {policies} policies / {pods} pods: {loaded} B loaded, {warm} B after warm-up, \
         {after} B after {n} more changes (growth {growth} B, {} B per change); samples {samples:?}",
        growth / n.cast_signed()
    );
    // Anything kept per change (a revision's history, a cache keyed by revision or
    // generation) costs tens of bytes at least: 100 B per change over 200 changes is
    // 20 KB. Same-phase samples of a loop that keeps nothing differ by a few KB.
    let tolerance = 16 * 1024;
    assert!(
        growth < tolerance,
        "live heap grew by {growth} B over {n} changes after warm-up ({warm} -> {after} B); samples {samples:?}"
    );
    eprintln!("test live_heap_does_not_grow_with_policy_changes ... ok");
}
