//! The Kubernetes datastore: the agent's objects read from the API server, as
//! calico-node reads them, through kube-rs.
//!
//! - A reflector per resource ([`reflect`], the table in [`resources`]) lists then
//!   watches; a supervisor task first asks the server whether Calico's v3 API is served
//!   (then Calico's kinds are read from it, otherwise from the CRDs).
//! - Updates are applied to a table of what is known (per object: its
//!   `resourceVersion` and model id), and only objects whose version changed are
//!   converted ([`convert`]) — when the next event is handed to the agent, after a
//!   short [`DEBOUNCE`] that batches a burst of changes into one compile.
//! - The first event is a `Reset` once every resource is listed; then `Changes`. A
//!   relist after `410 Gone` becomes the difference to what was known (no object is
//!   dropped and re-added, no gap in enforcement).
//! - Failures (server unreachable, 403) become `Unavailable` events: the agent keeps
//!   the policy in force and reports not ready; the reflectors retry with backoff. The
//!   next event after every resource works again clears it.
//! - Objects the agent refuses are named in Kubernetes Events ([`events`]).
//!
//! The revision of an event is the lowest `resourceVersion` up to which every working
//! resource is known complete (bookmarks included) when versions are numbers, as
//! etcd's and the lab's are; otherwise a counter.

pub mod convert;
pub mod error;
pub mod events;
pub mod reflect;
pub mod resources;
pub mod transport;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::model::ObjectId;

use super::{Change, Datastore, DatastoreError, DatastoreEvent, EventFuture, Snapshot, Stored};
use error::KubeError;
use reflect::Update;
use resources::{CALICO_V3_GROUP, CALICO_V3_VERSION, CalicoSource, Resource};

/// How long after a change the batch is handed over (more changes join it).
pub const DEBOUNCE: Duration = Duration::from_millis(50);

/// How to reach the API server.
#[derive(Clone, Debug, Default)]
pub struct KubernetesOptions {
    /// A kubeconfig file; `None`: the in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
}

/// Builds a client; no request is made yet (the agent starts, and keeps enforcing
/// what is pinned, while the API server is unreachable).
pub async fn client(options: &KubernetesOptions) -> Result<kube::Client, KubeError> {
    let config = match &options.kubeconfig {
        None => kube::Config::incluster().map_err(|source| KubeError::InCluster { source })?,
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|source| {
                KubeError::Kubeconfig {
                    path: path.clone(),
                    source,
                }
            })?;
            kube::Config::from_custom_kubeconfig(
                kubeconfig,
                &kube::config::KubeConfigOptions::default(),
            )
            .await
            .map_err(|source| KubeError::Kubeconfig {
                path: path.clone(),
                source,
            })?
        }
    };
    transport::client(config).map_err(|source| KubeError::Client {
        source: Box::new(source),
    })
}

/// Counters the datastore keeps for metrics.
#[derive(Debug, Default)]
pub struct DatastoreStats {
    /// Watches started over with a relist (410, or a list that failed midway).
    pub watch_restarts: AtomicU64,
    /// Failed requests (each retried).
    pub request_failures: AtomicU64,
}

/// What is known of one resource.
#[derive(Debug, Default)]
struct Progress {
    /// Listed at least once.
    listed: bool,
    /// Complete up to this version (`None`: not served, or not listed yet).
    version: Option<String>,
    /// Why its last request failed, until one succeeds.
    failure: Option<String>,
}

/// An object the agent has been told about.
#[derive(Debug)]
struct Known {
    version: String,
    id: ObjectId,
}

/// (resource index, namespace, API name).
type Key = (usize, String, String);

/// What the supervisor and reflectors send.
enum Message {
    /// Discovery is done: these resources are watched, their reflectors started.
    Resources(Vec<Resource>),
    DiscoveryFailed(KubeError),
    Update(Update),
}

/// A datastore reading the Kubernetes API.
pub struct KubernetesDatastore {
    describe: String,
    messages: mpsc::Receiver<Message>,
    supervisor: JoinHandle<()>,
    resources: Vec<Resource>,
    progress: Vec<Progress>,
    discovery_failure: Option<String>,
    known: BTreeMap<Key, Known>,
    /// Objects changed since the last event: the new object, or `None` when deleted.
    dirty: BTreeMap<Key, Option<Value>>,
    /// When the pending batch is handed over.
    deadline: Option<Instant>,
    revision: u64,
    reset_sent: bool,
    /// The failure last reported, so that it is reported once, and its end too.
    reported: Option<String>,
    stats: Arc<DatastoreStats>,
}

impl Drop for KubernetesDatastore {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

impl KubernetesDatastore {
    /// Starts discovery and the reflectors on the current tokio runtime.
    pub fn start(client: kube::Client, describe: String) -> Self {
        let (tx, messages) = mpsc::channel(1024);
        let supervisor = tokio::spawn(supervise(client, tx));
        Self::with(describe, messages, supervisor)
    }

    fn with(
        describe: String,
        messages: mpsc::Receiver<Message>,
        supervisor: JoinHandle<()>,
    ) -> Self {
        Self {
            describe,
            messages,
            supervisor,
            resources: Vec::new(),
            progress: Vec::new(),
            discovery_failure: None,
            known: BTreeMap::new(),
            dirty: BTreeMap::new(),
            deadline: None,
            revision: 0,
            reset_sent: false,
            reported: None,
            stats: Arc::default(),
        }
    }

    /// Connects with `options` (see [`client`]) and starts.
    pub async fn connect(options: &KubernetesOptions) -> Result<Self, KubeError> {
        Ok(Self::start(
            client(options).await?,
            Self::describe_options(options),
        ))
    }

    /// What a datastore reached with `options` is, for logs.
    pub fn describe_options(options: &KubernetesOptions) -> String {
        match &options.kubeconfig {
            None => "kubernetes:in-cluster".to_owned(),
            Some(path) => format!("kubernetes:{}", path.display()),
        }
    }

    /// Counters for metrics.
    pub fn stats(&self) -> Arc<DatastoreStats> {
        Arc::clone(&self.stats)
    }

    /// The resources watched (known once discovery is done).
    pub fn resources(&self) -> &[Resource] {
        &self.resources
    }

    fn receive(&mut self, message: Message) {
        match message {
            Message::Resources(resources) => {
                self.discovery_failure = None;
                self.progress = resources.iter().map(|_| Progress::default()).collect();
                self.resources = resources;
            }
            Message::DiscoveryFailed(error) => {
                self.stats.request_failures.fetch_add(1, Ordering::Relaxed);
                self.discovery_failure = Some(error.to_string());
            }
            Message::Update(update) => self.apply(update),
        }
    }

    fn apply(&mut self, update: Update) {
        match update {
            Update::Listed {
                resource,
                objects,
                version,
            } => {
                let mut seen = std::collections::BTreeSet::new();
                for object in objects {
                    let key = key_of(resource, &object);
                    let changed = self
                        .known
                        .get(&key)
                        .is_none_or(|k| Some(k.version.as_str()) != version_of(&object));
                    seen.insert(key.clone());
                    if changed {
                        self.dirty.insert(key, Some(object));
                    } else {
                        self.dirty.remove(&key);
                    }
                }
                let gone: Vec<Key> = self
                    .known
                    .keys()
                    .chain(self.dirty.keys())
                    .filter(|k| k.0 == resource && !seen.contains(*k))
                    .cloned()
                    .collect();
                for key in gone {
                    self.dirty.insert(key, None);
                }
                if let Some(p) = self.progress.get_mut(resource) {
                    p.listed = true;
                    p.version = version;
                    p.failure = None;
                }
                self.touch();
            }
            Update::Applied { resource, object } => {
                self.advance(resource, version_of(&object).map(str::to_owned));
                self.dirty.insert(key_of(resource, &object), Some(object));
                self.touch();
            }
            Update::Deleted { resource, object } => {
                self.advance(resource, version_of(&object).map(str::to_owned));
                self.dirty.insert(key_of(resource, &object), None);
                self.touch();
            }
            Update::Progress { resource, version } => {
                let moved = self.progress.get(resource).is_some_and(|p| {
                    p.version.as_deref() != Some(version.as_str()) || p.failure.is_some()
                });
                self.advance(resource, Some(version));
                if moved {
                    self.touch();
                }
            }
            Update::Failed { resource, error } => {
                self.stats.request_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "Kubernetes API request failed; retrying with backoff");
                if let Some(p) = self.progress.get_mut(resource) {
                    p.failure = Some(error.to_string());
                }
            }
            Update::Restarted { .. } => {
                self.stats.watch_restarts.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn advance(&mut self, resource: usize, version: Option<String>) {
        if let Some(p) = self.progress.get_mut(resource) {
            if version.is_some() {
                p.version = version;
            }
            p.failure = None;
        }
    }

    /// Starts the debounce window, unless one is running.
    fn touch(&mut self) {
        if self.deadline.is_none() {
            self.deadline = Some(Instant::now() + DEBOUNCE);
        }
    }

    /// The failure to report now, if any.
    fn failure(&self) -> Option<String> {
        if let Some(f) = &self.discovery_failure {
            return Some(f.clone());
        }
        // One failure said once: when the server is down every resource fails alike.
        let failures: Vec<&str> = self
            .progress
            .iter()
            .filter_map(|p| p.failure.as_deref())
            .collect();
        match failures.as_slice() {
            [] => None,
            [one] => Some((*one).to_owned()),
            [first, rest @ ..] => Some(format!(
                "{first} (and {} more failing resource{})",
                rest.len(),
                if rest.len() == 1 { "" } else { "s" }
            )),
        }
    }

    fn synced(&self) -> bool {
        !self.resources.is_empty() && self.progress.iter().all(|p| p.listed)
    }

    /// The revision to report: the lowest version every resource is complete to, when
    /// versions are numbers; one more than the last otherwise.
    fn next_revision(&mut self) -> u64 {
        // A resource that fails is left out: the failure is reported on its own
        // (not ready), and everything else keeps flowing.
        let versions: Option<Vec<u64>> = self
            .progress
            .iter()
            .filter(|p| p.failure.is_none())
            .filter_map(|p| p.version.as_deref())
            .map(|v| v.parse().ok())
            .collect();
        self.revision = match versions.and_then(|v| v.into_iter().min()) {
            Some(min) => self.revision.max(min),
            None => self.revision + 1,
        };
        self.revision
    }

    /// Converts the dirty objects: the changes since the last event.
    fn take_changes(&mut self) -> Vec<Change> {
        let mut changes = Vec::new();
        for (key, object) in std::mem::take(&mut self.dirty) {
            let before = self.known.remove(&key);
            match object {
                Some(object) => {
                    let Some(resource) = self.resources.get(key.0).copied() else {
                        continue;
                    };
                    let version = version_of(&object).unwrap_or_default().to_owned();
                    let stored = convert::load(&resource, object);
                    if let Some(before) = before
                        && before.id != stored.id
                    {
                        changes.push(Change::Delete(before.id));
                    }
                    self.known.insert(
                        key,
                        Known {
                            version,
                            id: stored.id.clone(),
                        },
                    );
                    changes.push(Change::Upsert(Box::new(stored)));
                }
                None => {
                    if let Some(before) = before {
                        changes.push(Change::Delete(before.id));
                    }
                }
            }
        }
        changes
    }

    async fn next(&mut self) -> Result<DatastoreEvent, DatastoreError> {
        loop {
            let failure = self.failure();
            if failure.is_some() && failure != self.reported {
                self.reported.clone_from(&failure);
                let message = failure.unwrap_or_default();
                return Ok(DatastoreEvent::Unavailable {
                    error: DatastoreError::Kubernetes { message },
                });
            }
            let due = self.deadline.is_some_and(|d| d <= Instant::now());
            if due && !self.reset_sent && !self.synced() {
                // Nothing is handed over before every resource is listed; the next
                // listing starts a new window.
                self.deadline = None;
            }
            if due && !self.reset_sent && self.synced() {
                self.deadline = None;
                self.reset_sent = true;
                // The agent reads Reset and Changes as "available": a failure that goes
                // on is reported again by the next call.
                self.reported = None;
                let objects: Vec<Stored> = self
                    .take_changes()
                    .into_iter()
                    .filter_map(|c| match c {
                        Change::Upsert(stored) => Some(*stored),
                        Change::Delete(_) => None,
                    })
                    .collect();
                return Ok(DatastoreEvent::Reset(Snapshot {
                    revision: self.next_revision(),
                    objects,
                }));
            }
            let recovered = failure.is_none() && self.reported.is_some();
            if self.reset_sent && (due || (recovered && self.deadline.is_none())) {
                self.deadline = None;
                // The agent reads Reset and Changes as "available": a failure that goes
                // on is reported again by the next call.
                self.reported = None;
                let changes = self.take_changes();
                return Ok(DatastoreEvent::Changes {
                    revision: self.next_revision(),
                    changes,
                });
            }
            let deadline = self.deadline;
            tokio::select! {
                message = self.messages.recv() => match message {
                    Some(message) => self.receive(message),
                    None => return Err(DatastoreError::Kubernetes {
                        message: "the watchers stopped".to_owned(),
                    }),
                },
                () = sleep_until(deadline) => {}
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn version_of(object: &Value) -> Option<&str> {
    object.pointer("/metadata/resourceVersion")?.as_str()
}

fn key_of(resource: usize, object: &Value) -> Key {
    let field = |f: &str| {
        object
            .get("metadata")
            .and_then(|m| m.get(f))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (resource, field("namespace"), field("name"))
}

/// Which form of Calico's kinds the cluster serves: v3 when Calico's API server
/// answers for it, the CRDs otherwise.
async fn calico_source(client: &kube::Client) -> Result<CalicoSource, KubeError> {
    let api_version = format!("{CALICO_V3_GROUP}/{CALICO_V3_VERSION}");
    match client.list_api_group_resources(&api_version).await {
        Ok(list)
            if list
                .resources
                .iter()
                .any(|r| r.name == "globalnetworkpolicies") =>
        {
            Ok(CalicoSource::V3)
        }
        Ok(_) => Ok(CalicoSource::Crds),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 503 => {
            Ok(CalicoSource::Crds)
        }
        Err(error) => Err(KubeError::from_request(
            "get",
            &resources::CALICO_V3[0],
            error,
        )),
    }
}

/// Discovery (retried until it works), then one reflector per resource.
async fn supervise(client: kube::Client, tx: mpsc::Sender<Message>) {
    let mut wait = Duration::from_millis(200);
    let source = loop {
        match calico_source(&client).await {
            Ok(source) => break source,
            Err(error) => {
                if tx.send(Message::DiscoveryFailed(error)).await.is_err() {
                    return;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    };
    let watched = resources::watched(source);
    tracing::info!(
        calico = ?source,
        resources = watched.len(),
        "watching the Kubernetes API"
    );
    if tx.send(Message::Resources(watched.clone())).await.is_err() {
        return;
    }
    let (updates, mut received) = mpsc::channel(1024);
    let reflectors: Vec<JoinHandle<()>> = watched
        .into_iter()
        .enumerate()
        .map(|(index, resource)| {
            tokio::spawn(reflect::run(
                client.clone(),
                resource,
                index,
                updates.clone(),
            ))
        })
        .collect();
    drop(updates);
    // Aborting the supervisor drops this guard, which aborts the reflectors.
    let _reflectors = AbortOnDrop(reflectors);
    while let Some(update) = received.recv().await {
        if tx.send(Message::Update(update)).await.is_err() {
            return;
        }
    }
}

struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl Datastore for KubernetesDatastore {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn next_event(&mut self) -> EventFuture<'_> {
        Box::pin(self.next())
    }

    fn snapshot(&mut self) -> Result<Snapshot, DatastoreError> {
        Err(DatastoreError::Kubernetes {
            message: "a one-shot listing of the Kubernetes datastore is not supported; watch it with next_event".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests;
