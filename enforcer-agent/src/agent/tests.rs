//! The agent's loop driven end to end without BPF or netlink: the in-memory datastore
//! in, a recording dataplane and the published status out.

#![expect(clippy::unwrap_used, reason = "a failing test panics with context")]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::links::{ChangedFuture, LinkError, LinkSource};
use super::reconcile::Reconciler;
use super::watchdog::Watchdog;
use super::{AgentError, serve, status};
use crate::compile::DataplaneSpec;
use crate::dataplane::bindings::{Binding, Bindings, Links};
use crate::dataplane::interfaces::NodeInterfaces;
use crate::dataplane::writer::WriterError;
use crate::dataplane::{Dataplane, DataplaneError, GENERATION_GRACE, Verification};
use crate::datastore::memory::{MemoryDatastore, MemoryWriter};
use crate::datastore::status::{AgentStatus, Fallback};
use crate::model::{Object, ObjectId, load_str};

/// What the agent asked of the dataplane.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Call {
    Apply {
        generation: u32,
        /// Names of the policies in the spec.
        policies: Vec<String>,
        /// Interfaces bound to an endpoint (an entry in the maps) → ifindex.
        bound: Vec<(String, u32)>,
    },
    Attach(String, u32),
    Detach(String),
}

#[derive(Default)]
struct Recording {
    calls: Arc<Mutex<Vec<Call>>>,
    attached: BTreeMap<String, u32>,
    applies: u32,
    /// Interfaces whose attach fails (as the kernel may refuse it).
    failing: Arc<Mutex<std::collections::BTreeSet<String>>>,
    /// What the next verification reports as repaired.
    repairs: Arc<Mutex<Vec<String>>>,
    /// The maps are full: every apply is refused (as the writer's capacity check does).
    full: Arc<Mutex<bool>>,
    /// How many grace periods were ended.
    retired: Arc<Mutex<u32>>,
    /// Per compile announced (`Dataplane::prepare`): how many applies came before it.
    prepared: Arc<Mutex<Vec<u32>>>,
}

impl Dataplane for Recording {
    fn apply(&mut self, spec: &DataplaneSpec, bindings: &Bindings) -> Result<u32, DataplaneError> {
        if *self.full.lock().unwrap() {
            return Err(DataplaneError::Writer(WriterError::Capacity {
                map: "ENF_VERDICTS",
                need: 3,
                max: 2,
            }));
        }
        // Two slots, as in the maps: the generation alternates.
        let generation = self.applies % 2;
        self.applies += 1;
        self.calls.lock().unwrap().push(Call::Apply {
            generation,
            policies: spec.policies.iter().map(|p| p.name.clone()).collect(),
            bound: bindings
                .iter()
                .filter(|(_, b)| b.endpoint.is_some())
                .map(|(n, b)| (n.to_owned(), b.ifindex))
                .collect(),
        });
        Ok(generation)
    }

    fn attach(&mut self, iface: &str, binding: &Binding) -> Result<(), DataplaneError> {
        if self.failing.lock().unwrap().contains(iface) {
            return Err(DataplaneError::Loader(
                crate::dataplane::loader::LoaderError::MissingProgram {
                    program: "refused by the test",
                },
            ));
        }
        if self.attached.get(iface) != Some(&binding.ifindex) {
            self.attached.insert(iface.to_owned(), binding.ifindex);
            self.calls
                .lock()
                .unwrap()
                .push(Call::Attach(iface.to_owned(), binding.ifindex));
        }
        Ok(())
    }

    fn detach(&mut self, iface: &str) {
        self.attached.remove(iface);
        self.calls
            .lock()
            .unwrap()
            .push(Call::Detach(iface.to_owned()));
    }

    fn attached(&self) -> &BTreeMap<String, u32> {
        &self.attached
    }

    fn retire_previous(&mut self) -> Result<bool, DataplaneError> {
        *self.retired.lock().unwrap() += 1;
        Ok(true)
    }

    fn prepare(&mut self) {
        self.prepared.lock().unwrap().push(self.applies);
    }

    fn verify(&mut self) -> Verification {
        Verification {
            repairs: std::mem::take(&mut *self.repairs.lock().unwrap()),
            xdp_missing: Vec::new(),
        }
    }
}

/// Links the test sets, as netlink would announce them (all Ethernet).
struct TestLinks {
    interfaces: NodeInterfaces,
    updates: mpsc::UnboundedReceiver<NodeInterfaces>,
}

impl LinkSource for TestLinks {
    fn interfaces(&self) -> &NodeInterfaces {
        &self.interfaces
    }

    fn changed(&mut self) -> ChangedFuture<'_> {
        Box::pin(async {
            match self.updates.recv().await {
                Some(interfaces) => {
                    self.interfaces = interfaces;
                    Ok(())
                }
                None => Err(LinkError::Closed),
            }
        })
    }
}

const NODE: &str = "node1";

/// How often the agent under test checks its attachments.
const VERIFY_EVERY: Duration = Duration::from_millis(50);

const PODS: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: dev}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: dev, labels: {app: web}}
spec:
  nodeName: node1
  containers: [{name: c, ports: [{containerPort: 80}]}]
status: {podIP: 198.18.0.10}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: dev, labels: {app: db}}
spec:
  nodeName: node1
  containers: [{name: c}]
status: {podIP: 198.18.0.11}
";

const DENY_ALL: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: dev}
spec: {podSelector: {}, policyTypes: [Ingress]}
";

/// A policy whose CIDR does not parse, as a client that skipped validation writes it.
const BROKEN: &str = r#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy",
"metadata":{"name":"broken","namespace":"dev"},
"spec":{"podSelector":{},"ingress":[{"from":[{"ipBlock":{"cidr":"10.0.0.0/99"}}]}]}}"#;

fn objects(text: &str) -> Vec<Object> {
    load_str(Path::new("test.yaml"), text)
        .unwrap()
        .into_iter()
        .map(|l| l.object)
        .collect()
}

fn iface(pod: &str) -> String {
    crate::model::workload::host_iface_name("dev", pod)
}

/// Sends link tables as netlink events would announce them.
struct LinkEvents(mpsc::UnboundedSender<NodeInterfaces>);

impl LinkEvents {
    /// Every link Ethernet, no addresses.
    fn send(&self, links: Links) -> Result<(), mpsc::error::SendError<NodeInterfaces>> {
        self.0.send(NodeInterfaces::ethernet(links))
    }

    fn send_interfaces(
        &self,
        interfaces: NodeInterfaces,
    ) -> Result<(), mpsc::error::SendError<NodeInterfaces>> {
        self.0.send(interfaces)
    }
}

struct Harness {
    writer: MemoryWriter,
    links: LinkEvents,
    failing: Arc<Mutex<std::collections::BTreeSet<String>>>,
    repairs: Arc<Mutex<Vec<String>>>,
    full: Arc<Mutex<bool>>,
    retired: Arc<Mutex<u32>>,
    prepared: Arc<Mutex<Vec<u32>>>,
    updates: watch::Receiver<AgentStatus>,
    calls: Arc<Mutex<Vec<Call>>>,
    stop: Option<oneshot::Sender<()>>,
    agent: tokio::task::JoinHandle<Result<(), AgentError>>,
}

impl Harness {
    fn start(links: Links) -> Self {
        Self::start_with(links, None)
    }

    /// With a planted compiler bug (`Reconciler::with_planted_bug`).
    fn start_with(links: Links, bug: Option<fn(&mut DataplaneSpec)>) -> Self {
        let (mut datastore, writer) = MemoryDatastore::new();
        let recording = Recording::default();
        let calls = Arc::clone(&recording.calls);
        let failing = Arc::clone(&recording.failing);
        let repairs = Arc::clone(&recording.repairs);
        let full = Arc::clone(&recording.full);
        let retired = Arc::clone(&recording.retired);
        let prepared = Arc::clone(&recording.prepared);
        let (publisher, updates) = status::channel();
        let (links_tx, links_rx) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let agent = tokio::spawn(async move {
            let mut reconciler = Reconciler::new(NODE.to_owned(), Box::new(recording), publisher);
            if let Some(bug) = bug {
                reconciler = reconciler.with_planted_bug(bug);
            }
            let mut links = TestLinks {
                interfaces: NodeInterfaces::ethernet(links),
                updates: links_rx,
            };
            let mut watchdog = Watchdog::new(VERIFY_EVERY, None).unwrap();
            serve(
                &mut reconciler,
                &mut datastore,
                &mut links,
                &mut watchdog,
                None,
                async {
                    let _ = stopped.await;
                },
            )
            .await
        });
        Self {
            writer,
            links: LinkEvents(links_tx),
            failing,
            repairs,
            full,
            retired,
            prepared,
            updates,
            calls,
            stop: Some(stop),
            agent,
        }
    }

    /// The first status that satisfies `done`.
    async fn status(&mut self, done: impl Fn(&AgentStatus) -> bool) -> AgentStatus {
        // Bounded only so a broken loop fails the test instead of hanging it.
        let waited =
            tokio::time::timeout(Duration::from_secs(30), self.updates.wait_for(|s| done(s)))
                .await
                .map(|r| r.map(|s| s.clone()));
        match waited {
            Ok(status) => status.unwrap(),
            Err(elapsed) => panic!(
                "{elapsed}: no such status; last: {:?}",
                *self.updates.borrow()
            ),
        }
    }

    fn calls(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.agent.await.unwrap().unwrap();
    }
}

fn applied(calls: &[Call]) -> Vec<(u32, Vec<String>)> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::Apply {
                generation,
                policies,
                ..
            } => Some((*generation, policies.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_change_becomes_a_generation_and_a_broken_object_is_refused() {
    let web = iface("web");
    let links: Links = [("lo".to_owned(), 1), (web.clone(), 10)].into();
    let mut h = Harness::start(links);

    // Pods in (before the agent's first event: its first snapshot has them): the
    // local pod present here is bound and attached, after the maps.
    let revision = h.writer.apply(&objects(PODS));
    let s = h.status(|s| s.observed_revision >= revision).await;
    assert_eq!((s.applied_revision, s.error.as_deref()), (revision, None));
    assert_eq!(s.endpoints_attached, 1, "db's interface is not here");
    let calls = h.calls();
    assert!(
        matches!(&calls[..], [Call::Apply { bound, .. }, Call::Attach(name, 10)]
            if *bound == [(web.clone(), 10)] && *name == web),
        "{calls:?}"
    );

    // A policy in → a new generation out, published.
    let before = s.generation;
    let revision = h.writer.apply(&objects(DENY_ALL));
    let s = h.status(|s| s.observed_revision >= revision).await;
    assert_eq!((s.applied_revision, s.error.as_deref()), (revision, None));
    assert_ne!(s.generation, before, "the other generation slot goes live");
    let calls = h.calls();
    assert_eq!(
        applied(&calls),
        [(s.generation, vec!["deny-all".to_owned()])],
        "{calls:?}"
    );

    // A broken object (security item 5: refused alone, never freezing the rest). It
    // never loaded, and its selector reads: it is enforced as a policy that allows
    // nothing to what it selects (here: isolates dev's pods on ingress), and the
    // status names it with why. The revision is applied.
    let broken = ObjectId {
        kind: "NetworkPolicy".into(),
        namespace: "dev".into(),
        name: "broken".into(),
    };
    let revision = h.writer.put_text(&broken, BROKEN);
    let s = h.status(|s| s.observed_revision >= revision).await;
    assert_eq!((s.applied_revision, s.error.as_deref()), (revision, None));
    let [refused] = &s.refused[..] else {
        panic!("one refused object: {:?}", s.refused)
    };
    assert!(
        refused.reason.contains("ipBlock.cidr"),
        "status must say why: {refused:?}"
    );
    assert!(refused.object.contains("dev/broken"), "{refused:?}");
    assert_eq!(refused.fallback, Fallback::DenyAll);
    assert_eq!(
        applied(&h.calls()),
        [(
            s.generation,
            vec!["broken".to_owned(), "deny-all".to_owned()]
        )],
        "the stand-in is enforced in the broken policy's place"
    );

    // Fixed: its real version applies. Broken again: the last good version stays.
    let fixed = BROKEN.replace("10.0.0.0/99", "10.0.0.0/8");
    let revision = h.writer.put_text(&broken, &fixed);
    let s = h.status(|s| s.observed_revision >= revision).await;
    assert_eq!(
        (s.applied_revision, s.refused.len()),
        (revision, 0),
        "{s:?}"
    );
    let good_generation = s.generation;
    h.calls();
    let revision = h.writer.put_text(&broken, BROKEN);
    let s = h.status(|s| s.observed_revision >= revision).await;
    assert_eq!(s.applied_revision, revision);
    assert_eq!(s.refused.len(), 1, "{s:?}");
    assert_eq!(s.refused[0].fallback, Fallback::LastGood);
    assert!(s.refused[0].reason.contains("ipBlock.cidr"), "{s:?}");
    // Same objects in force as before: written again, same content.
    assert_ne!(s.generation, good_generation);

    // Other changes still apply while it stays broken (a revision without changes
    // keeps the refusal); removing the object applies and clears it.
    let revision = h.writer.apply(&[]);
    let s = h.status(|s| s.observed_revision >= revision).await;
    assert!(s.error.is_none() && s.applied_revision == revision && s.refused.len() == 1);
    let revision = h.writer.delete(&[broken]);
    let s = h.status(|s| s.observed_revision >= revision).await;
    assert_eq!((s.applied_revision, s.error.as_deref()), (revision, None));
    assert!(s.refused.is_empty());
    assert_eq!(
        applied(&h.calls()).last(),
        Some(&(s.generation, vec!["deny-all".to_owned()]))
    );
    h.stop().await;
}

#[tokio::test]
async fn interfaces_from_link_events_are_bound_without_a_datastore_change() {
    let (web, db) = (iface("web"), iface("db"));
    let mut h = Harness::start([("lo".to_owned(), 1)].into());
    let revision = h
        .writer
        .apply(&objects(&format!("{PODS}\n---\n{DENY_ALL}")));
    let s = h.status(|s| s.observed_revision >= revision).await;
    assert_eq!(s.endpoints_attached, 0);
    h.calls();

    // db's veth appears: bound, written, attached, published; same revision.
    h.links
        .send([("lo".to_owned(), 1), (db.clone(), 20)].into())
        .unwrap();
    let s = h.status(|s| s.endpoints_attached == 1).await;
    assert_eq!(s.observed_revision, revision);
    let calls = h.calls();
    assert!(
        matches!(&calls[..], [Call::Apply { bound, .. }, Call::Attach(name, 20)]
            if *bound == [(db.clone(), 20)] && *name == db),
        "{calls:?}"
    );

    // An unrelated interface changes nothing.
    h.links
        .send(
            [
                ("lo".to_owned(), 1),
                (db.clone(), 20),
                ("dummy0".to_owned(), 5),
            ]
            .into(),
        )
        .unwrap();
    // db comes back with a new ifindex and web appears: one rewrite for both.
    h.links
        .send([("lo".to_owned(), 1), (db.clone(), 21), (web.clone(), 30)].into())
        .unwrap();
    let s = h.status(|s| s.endpoints_attached == 2).await;
    assert_eq!(s.observed_revision, revision);
    let calls = h.calls();
    assert_eq!(
        calls
            .iter()
            .filter(|c| matches!(c, Call::Apply { .. }))
            .count(),
        1,
        "{calls:?}"
    );
    assert!(calls.contains(&Call::Attach(db.clone(), 21)), "{calls:?}");
    assert!(calls.contains(&Call::Attach(web.clone(), 30)), "{calls:?}");

    // web's veth vanishes: detached.
    h.links
        .send([("lo".to_owned(), 1), (db.clone(), 21)].into())
        .unwrap();
    let s = h.status(|s| s.endpoints_attached == 1).await;
    assert_eq!(s.observed_revision, revision);
    assert!(h.calls().contains(&Call::Detach(web)));
    h.stop().await;
}

/// Security item 5: a workload interface carries the (fail-closed) pod programs as
/// soon as its link appears, before its pod is known and before any policy: with no
/// endpoint entry every packet through it is dropped. When the pod arrives the same
/// attachment judges it by policy (maps rewritten, no second attach).
#[tokio::test]
async fn a_new_workload_interface_is_attached_before_its_pod_is_known() {
    let (web, stranger) = (iface("web"), iface("stranger"));
    let mut h = Harness::start([("lo".to_owned(), 1), (stranger.clone(), 7)].into());
    // No pod of that name: attached, with no endpoint entry.
    let s = h
        .status(|s| s.interfaces_without_endpoint == [stranger.clone()])
        .await;
    assert_eq!(s.endpoints_attached, 0);
    let calls = h.calls();
    assert!(
        calls.contains(&Call::Attach(stranger.clone(), 7)),
        "{calls:?}"
    );
    assert!(
        !calls
            .iter()
            .any(|c| matches!(c, Call::Apply { bound, .. } if !bound.is_empty())),
        "{calls:?}"
    );

    let revision = h
        .writer
        .apply(&objects(&format!("{PODS}\n---\n{DENY_ALL}")));
    h.status(|s| s.observed_revision >= revision).await;
    h.calls();
    // web's veth appears before anything said which pod it is for... it is known
    // here, so it is bound to its endpoint; an unnamed cali veth fails closed.
    h.links
        .send(
            [
                ("lo".to_owned(), 1),
                (stranger.clone(), 7),
                (web.clone(), 10),
                ("cali0123456789a".to_owned(), 11),
            ]
            .into(),
        )
        .unwrap();
    let s = h.status(|s| s.endpoints_attached == 1).await;
    assert_eq!(
        s.interfaces_without_endpoint,
        ["cali0123456789a".to_owned(), stranger.clone()]
    );
    let calls = h.calls();
    assert!(calls.contains(&Call::Attach(web.clone(), 10)), "{calls:?}");
    assert!(
        calls.contains(&Call::Attach("cali0123456789a".to_owned(), 11)),
        "{calls:?}"
    );
    // Not bound to an endpoint: no entry for it in the maps.
    assert!(
        calls.iter().any(|c| matches!(c, Call::Apply { bound, .. }
            if !bound.iter().any(|(n, _)| *n == stranger))),
        "{calls:?}"
    );

    // The stranger's pod arrives: bound, written; the attachment stays.
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: stranger, namespace: dev}\nspec: {nodeName: node1, containers: [{name: c}]}\nstatus: {podIP: 198.18.0.12}\n";
    let revision = h.writer.apply(&objects(pod));
    let s = h.status(|s| s.observed_revision >= revision).await;
    assert_eq!(s.endpoints_attached, 2);
    assert_eq!(
        s.interfaces_without_endpoint,
        ["cali0123456789a".to_owned()]
    );
    let calls = h.calls();
    assert!(
        calls.iter().any(|c| matches!(c, Call::Apply { bound, .. }
            if bound.contains(&(stranger.clone(), 7)))),
        "{calls:?}"
    );
    assert!(
        !calls.iter().any(|c| matches!(c, Call::Attach(..))),
        "already attached: {calls:?}"
    );
    h.stop().await;
}

/// Security item 3: the node's own addresses come from its interfaces; when they
/// change, the policy is compiled again (a host endpoint must see the new address as
/// the host's) without any datastore change.
#[tokio::test]
async fn a_new_node_address_recompiles_the_policy() {
    let hep = "
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: node1-eth0}
spec: {node: node1, interfaceName: eth0, expectedIPs: [198.18.255.1]}
";
    let eth0 = |addresses: &[&str]| {
        let mut interfaces =
            NodeInterfaces::ethernet([("lo".to_owned(), 1), ("eth0".to_owned(), 2)].into());
        for a in addresses {
            interfaces.addresses.insert((2, a.parse().unwrap()));
        }
        interfaces
    };
    let mut h = Harness::start([("lo".to_owned(), 1), ("eth0".to_owned(), 2)].into());
    let revision = h.writer.apply(&objects(hep));
    let s = h.status(|s| s.observed_revision >= revision).await;
    assert_eq!(s.error, None);
    h.calls();
    h.links
        .send_interfaces(eth0(&["198.18.255.1/32", "2001:2:0:ff::1/128"]))
        .unwrap();
    let s = h
        .status(|s| s.generation != 0 || s.observed_revision != revision)
        .await;
    assert_eq!(s.observed_revision, revision, "no datastore change");
    let calls = h.calls();
    assert_eq!(
        applied(&calls).len(),
        1,
        "compiled and written again: {calls:?}"
    );
    // The same addresses again (a link-local one more): nothing to do.
    h.links
        .send_interfaces(eth0(&[
            "198.18.255.1/32",
            "2001:2:0:ff::1/128",
            "fe80::1/128",
        ]))
        .unwrap();
    h.links.send_interfaces(eth0(&["198.18.255.1/32"])).unwrap();
    let s = h.status(|s| s.generation == 0).await;
    assert_eq!(s.observed_revision, revision);
    let calls = h.calls();
    assert_eq!(applied(&calls).len(), 1, "one more compile: {calls:?}");
    h.stop().await;
}

/// Every compile is announced to the dataplane before it runs (`Dataplane::prepare`:
/// the wait for the programs still judging in the slot the write takes passes while
/// the compiler runs), so each apply follows an announcement; a revision that changes
/// nothing compiles nothing and announces nothing.
#[tokio::test]
async fn each_compile_is_announced_to_the_dataplane_before_it_runs() {
    let web = iface("web");
    let mut h = Harness::start([("lo".to_owned(), 1), (web.clone(), 10)].into());
    for (n, text) in [PODS, DENY_ALL].into_iter().enumerate() {
        let revision = h.writer.apply(&objects(text));
        let s = h.status(|s| s.observed_revision >= revision).await;
        assert_eq!((s.applied_revision, s.error.as_deref()), (revision, None));
        let prepared = h.prepared.lock().unwrap().clone();
        assert_eq!(
            prepared,
            (0..=n as u32).collect::<Vec<_>>(),
            "one announcement before each apply"
        );
    }
    let revision = h.writer.apply(&[]);
    let s = h.status(|s| s.observed_revision >= revision).await;
    assert_eq!(s.applied_revision, revision);
    assert_eq!(*h.prepared.lock().unwrap(), [0, 1], "nothing to compile");
    h.stop().await;
}

/// Security item 13: an interface whose attach fails is reported (not ready) and
/// retried on the watchdog's timer until it succeeds; repairs the dataplane makes
/// when it verifies its attachments are counted.
/// Issue 9 item 16: a generation the maps cannot hold next to the one in force is
/// refused as a whole: the agent keeps running (no crash loop), the policy in force
/// stays, the status says why, and the next change is tried again. Item 6: every
/// switch ends the previous generation's grace period after [`GENERATION_GRACE`].
#[tokio::test]
async fn a_generation_the_maps_cannot_hold_is_refused_and_the_agent_keeps_running() {
    let web = iface("web");
    let mut h = Harness::start([("lo".to_owned(), 1), (web.clone(), 10)].into());
    let revision = h.writer.apply(&objects(PODS));
    let s = h.status(|s| s.observed_revision >= revision).await;
    assert_eq!((s.applied_revision, s.error.as_deref()), (revision, None));
    let good = (s.applied_revision, s.generation);
    h.calls();

    // The previous generation's grace ends after GENERATION_GRACE.
    let started = std::time::Instant::now();
    while *h.retired.lock().unwrap() == 0 {
        assert!(
            started.elapsed() < GENERATION_GRACE * 10,
            "the grace period never ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started.elapsed() < GENERATION_GRACE * 10);

    *h.full.lock().unwrap() = true;
    let revision = h.writer.apply(&objects(DENY_ALL));
    let s = h.status(|s| s.observed_revision >= revision).await;
    assert_eq!(
        (s.applied_revision, s.generation),
        good,
        "the policy in force stays: {s:?}"
    );
    assert!(
        s.error
            .as_deref()
            .is_some_and(|e| e.contains("cannot hold") && e.contains("ENF_VERDICTS")),
        "the status says why: {s:?}"
    );
    assert_eq!(applied(&h.calls()), [], "nothing was switched");
    assert!(!h.agent.is_finished(), "the agent keeps running");

    // Room again: the next event writes the refused revision's objects.
    *h.full.lock().unwrap() = false;
    let revision = h.writer.apply(&[]);
    let s = h.status(|s| s.observed_revision >= revision).await;
    assert_eq!((s.applied_revision, s.error.as_deref()), (revision, None));
    assert_eq!(
        applied(&h.calls()),
        [(s.generation, vec!["deny-all".to_owned()])]
    );
    h.stop().await;
}

#[tokio::test]
async fn a_failed_attach_is_reported_and_retried_and_repairs_counted() {
    let web = iface("web");
    let mut h = Harness::start([("lo".to_owned(), 1), (web.clone(), 10)].into());
    h.failing.lock().unwrap().insert(web.clone());
    let revision = h.writer.apply(&objects(PODS));
    let s = h.status(|s| s.observed_revision >= revision).await;
    assert_eq!(s.endpoints_attached, 0);
    let error = s.attach_failed.get(&web).cloned().unwrap_or_default();
    assert!(error.contains("refused by the test"), "{s:?}");
    assert_eq!(
        s.applied_revision, revision,
        "the policy is written all the same"
    );

    // The kernel accepts it again: the next check attaches it.
    h.failing.lock().unwrap().clear();
    let s = h.status(|s| s.endpoints_attached == 1).await;
    assert!(s.attach_failed.is_empty(), "{s:?}");
    assert!(h.calls().contains(&Call::Attach(web.clone(), 10)));

    h.repairs.lock().unwrap().push(format!(
        "{web} pod-egress: its link pin was removed; pinned again"
    ));
    let s = h.status(|s| s.attach_repairs == 1).await;
    assert!(s.attach_failed.is_empty());
    h.stop().await;
}

/// The planted compiler bug: every verdict that a rule or a tier's default decided
/// gets the opposite action (profile verdicts, the only ones without policy, stay).
fn invert_policy_verdicts(spec: &mut DataplaneSpec) {
    use enforcer_common::{ACTION_ALLOW, ACTION_DENY, VERDICT_KIND_PROFILE};
    for (_, v) in &mut spec.verdicts {
        if v.kind != VERDICT_KIND_PROFILE {
            v.action = if v.action == ACTION_ALLOW {
                ACTION_DENY
            } else {
                ACTION_ALLOW
            };
        }
    }
}

/// Issue 13, acceptance 4: a planted compiler bug makes the self-check refuse the
/// switch; the old policy stays in force (no new generation is written), and the
/// status says why. Without policy the bug changes nothing, and that generation goes
/// live: the check refuses wrong maps, not every change.
#[tokio::test]
async fn a_planted_compiler_bug_is_refused_by_the_self_check() {
    let web = iface("web");
    let mut h = Harness::start_with(
        [("lo".to_owned(), 1), (web.clone(), 10)].into(),
        Some(invert_policy_verdicts),
    );
    let revision = h.writer.apply(&objects(PODS));
    let s = h.status(|s| s.observed_revision >= revision).await;
    assert_eq!((s.applied_revision, s.error.as_deref()), (revision, None));
    assert!(s.self_check.last_flows > 0, "{s:?}");
    let first = applied(&h.calls());
    assert_eq!(first.len(), 1, "{first:?}");

    let refused = h.writer.apply(&objects(DENY_ALL));
    let s = h.status(|s| s.observed_revision >= refused).await;
    assert_eq!(
        s.applied_revision, revision,
        "the old policy stays in force"
    );
    let error = s.error.clone().unwrap_or_default();
    assert!(
        error.contains("self-check failed") && error.contains("the policy says deny"),
        "{error}"
    );
    assert_eq!(s.self_check.refused, 1);
    assert_eq!(s.generation, first[0].0, "no switch");
    let calls = h.calls();
    assert!(applied(&calls).is_empty(), "nothing written: {calls:?}");
    h.stop().await;
}

/// Flow-log names are those of the spec in force: a relabelled pod is named with its
/// new labels once its revision is applied, and a policy change (after which the
/// address book is not rebuilt) leaves every name as it was.
#[test]
fn flow_names_follow_entity_changes_and_outlast_policy_changes() {
    use crate::datastore::{Change, DatastoreEvent, Snapshot, read_document};

    let (publisher, _updates) = status::channel();
    let mut reconciler =
        Reconciler::new(NODE.to_owned(), Box::new(Recording::default()), publisher);
    let interfaces = NodeInterfaces::ethernet([(iface("web"), 10)].into());
    let stored = |text: &str| read_document(Path::new("t.yaml"), "t.yaml", text, &[]);
    let upserts = |text: &str| {
        stored(text)
            .into_iter()
            .map(|s| Change::Upsert(Box::new(s)))
            .collect()
    };
    let app = |r: &Reconciler| {
        r.addresses()
            .peer("198.18.0.10".parse().unwrap(), None)
            .labels
            .get("app")
            .cloned()
    };
    let snapshot = Snapshot {
        revision: 1,
        objects: stored(PODS),
    };
    reconciler
        .on_datastore(DatastoreEvent::Reset(snapshot), &interfaces)
        .unwrap();
    assert_eq!(app(&reconciler).as_deref(), Some("web"));

    let policy = DatastoreEvent::Changes {
        revision: 2,
        changes: upserts(DENY_ALL),
    };
    reconciler.on_datastore(policy, &interfaces).unwrap();
    assert_eq!(app(&reconciler).as_deref(), Some("web"));

    let relabelled = DatastoreEvent::Changes {
        revision: 3,
        changes: upserts(&PODS.replace("labels: {app: web}", "labels: {app: shop}")),
    };
    reconciler.on_datastore(relabelled, &interfaces).unwrap();
    assert_eq!(app(&reconciler).as_deref(), Some("shop"));
}
