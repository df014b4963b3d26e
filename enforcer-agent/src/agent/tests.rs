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
use super::{AgentError, serve, status};
use crate::compile::DataplaneSpec;
use crate::dataplane::bindings::{Binding, Bindings, Links};
use crate::dataplane::{Dataplane, DataplaneError};
use crate::datastore::memory::{MemoryDatastore, MemoryWriter};
use crate::datastore::status::AgentStatus;
use crate::model::{Object, ObjectId, load_str};

/// What the agent asked of the dataplane.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Call {
    Apply {
        generation: u32,
        /// Names of the policies in the spec.
        policies: Vec<String>,
        /// Bound interfaces → ifindex.
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
}

impl Dataplane for Recording {
    fn apply(&mut self, spec: &DataplaneSpec, bindings: &Bindings) -> Result<u32, DataplaneError> {
        // Two slots, as in the maps: the generation alternates.
        let generation = self.applies % 2;
        self.applies += 1;
        self.calls.lock().unwrap().push(Call::Apply {
            generation,
            policies: spec.policies.iter().map(|p| p.name.clone()).collect(),
            bound: bindings
                .iter()
                .map(|(n, b)| (n.to_owned(), b.ifindex))
                .collect(),
        });
        Ok(generation)
    }

    fn attach(&mut self, iface: &str, binding: &Binding) -> Result<(), DataplaneError> {
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

    fn guard(&mut self, _links: &Links) -> Vec<(String, DataplaneError)> {
        Vec::new()
    }
}

/// Links the test sets, as netlink would announce them.
struct TestLinks {
    links: Links,
    updates: mpsc::UnboundedReceiver<Links>,
}

impl LinkSource for TestLinks {
    fn current(&self) -> &Links {
        &self.links
    }

    fn changed(&mut self) -> ChangedFuture<'_> {
        Box::pin(async {
            match self.updates.recv().await {
                Some(links) => {
                    self.links = links;
                    Ok(())
                }
                None => Err(LinkError::Closed),
            }
        })
    }
}

const NODE: &str = "node1";

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

struct Harness {
    writer: MemoryWriter,
    links: mpsc::UnboundedSender<Links>,
    updates: watch::Receiver<AgentStatus>,
    calls: Arc<Mutex<Vec<Call>>>,
    stop: Option<oneshot::Sender<()>>,
    agent: tokio::task::JoinHandle<Result<(), AgentError>>,
}

impl Harness {
    fn start(links: Links) -> Self {
        let (mut datastore, writer) = MemoryDatastore::new();
        let recording = Recording::default();
        let calls = Arc::clone(&recording.calls);
        let (publisher, updates) = status::channel();
        let (links_tx, links_rx) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let agent = tokio::spawn(async move {
            let mut reconciler = Reconciler::new(NODE.to_owned(), Box::new(recording), publisher);
            let mut links = TestLinks {
                links,
                updates: links_rx,
            };
            serve(&mut reconciler, &mut datastore, &mut links, None, async {
                let _ = stopped.await;
            })
            .await
        });
        Self {
            writer,
            links: links_tx,
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

    // A broken object → refused; the status says why; nothing is written.
    let broken = ObjectId {
        kind: "NetworkPolicy".into(),
        namespace: "dev".into(),
        name: "broken".into(),
    };
    let good = s;
    let revision = h.writer.put_text(&broken, BROKEN);
    let s = h.status(|s| s.observed_revision >= revision).await;
    let error = s.error.clone().unwrap_or_default();
    assert!(
        error.contains("ipBlock.cidr"),
        "status must say why: {error:?}"
    );
    assert_eq!(s.applied_revision, good.applied_revision, "{s:?}");
    assert_eq!(s.generation, good.generation, "the previous policy stays");
    assert_eq!(h.calls(), [], "a refused revision writes nothing");

    // A revision without changes keeps the refusal; removing the object applies.
    let revision = h.writer.apply(&[]);
    let s = h.status(|s| s.observed_revision >= revision).await;
    assert!(s.error.is_some() && s.applied_revision == good.applied_revision);
    let revision = h.writer.delete(&[broken]);
    let s = h.status(|s| s.observed_revision >= revision).await;
    assert_eq!((s.applied_revision, s.error.as_deref()), (revision, None));
    assert_eq!(
        applied(&h.calls()),
        [(s.generation, vec!["deny-all".to_owned()])]
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
