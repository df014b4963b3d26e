//! One resource's list-then-watch loop (a reflector, as client-go and calico-node's
//! watcher caches do it), reporting to the datastore over a channel.
//!
//! - List (paginated), then watch from the list's `resourceVersion` with bookmarks; a
//!   watch that ends (server timeout) is resumed from the last version seen, so no
//!   event is lost and nothing is re-read.
//! - `410 Gone` (the version fell out of the server's history): relist. The datastore
//!   diffs the new list against what it had, so enforcement never drops in between.
//! - Any other failure (server unreachable, 5xx, 403): reported, then retried with
//!   exponential backoff and jitter from the last version seen. A 403 is reported with
//!   the verb and resource RBAC must grant.
//! - 404 on the list: the resource is not served (Calico's CRDs not installed): it
//!   counts as an empty, synced list and is checked again every [`ABSENT_RECHECK`].
//!
//! Bookmarks and established watches report progress: the datastore learns up to
//! which version each resource is complete, which is what `observed_revision` means.

use std::time::Duration;

use futures_util::StreamExt as _;
use kube::api::{Api, DynamicObject, ListParams, WatchEvent, WatchParams};
use kube::core::ApiResource;
use serde_json::Value;
use tokio::sync::mpsc;

use super::error::KubeError;
use super::resources::Resource;

/// A watch is ended by the server after this long (and resumed): the API server's own
/// default range, below kube's read timeout.
const WATCH_TIMEOUT_SECS: u32 = 290;
/// Objects per list page.
const PAGE: u32 = 500;
/// How often a resource the server does not serve is looked for again.
pub const ABSENT_RECHECK: Duration = Duration::from_mins(1);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What a reflector tells the datastore. `resource` indexes the datastore's table.
#[derive(Debug)]
pub enum Update {
    /// Every object of the resource (first sync or relist), complete up to `version`
    /// (`None`: the resource is not served).
    Listed {
        resource: usize,
        objects: Vec<Value>,
        version: Option<String>,
    },
    Applied {
        resource: usize,
        object: Value,
    },
    Deleted {
        resource: usize,
        object: Value,
    },
    /// The resource is complete up to `version` (a bookmark, or a watch established).
    Progress {
        resource: usize,
        version: String,
    },
    /// A request failed; the reflector retries.
    Failed {
        resource: usize,
        error: KubeError,
    },
    /// The watch is started over with a relist (410, or a failure mid-list).
    Restarted {
        resource: usize,
        reason: String,
    },
}

/// Exponential backoff with jitter, as kube-runtime's watcher uses by default.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self { next: BACKOFF_MIN }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    fn wait(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        // Up to a quarter more, so that agents of a cluster do not retry in step.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        base + base.mul_f64(f64::from(nanos % 1000) / 4000.0)
    }
}

fn api_resource(resource: &Resource) -> ApiResource {
    ApiResource {
        group: resource.group.to_owned(),
        version: resource.version.to_owned(),
        api_version: resource.api_version(),
        kind: resource.kind.to_owned(),
        plural: resource.plural.to_owned(),
    }
}

fn to_value(object: &DynamicObject) -> Value {
    // A DynamicObject is plain JSON data: serializing it cannot fail.
    serde_json::to_value(object).unwrap_or(Value::Null)
}

fn version_of(object: &DynamicObject) -> Option<String> {
    object.metadata.resource_version.clone()
}

enum ListOutcome {
    Listed(Vec<Value>, String),
    NotServed,
}

/// Lists every object, page by page; a continue token that expired starts over.
async fn list_all(api: &Api<DynamicObject>, resource: &Resource) -> Result<ListOutcome, KubeError> {
    let mut objects = Vec::new();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        match api.list(&params).await {
            Ok(page) => {
                objects.extend(page.items.iter().map(to_value));
                match page.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(token) => {
                        params = ListParams::default().limit(PAGE).continue_token(&token);
                    }
                    None => {
                        return Ok(ListOutcome::Listed(
                            objects,
                            page.metadata.resource_version.unwrap_or_default(),
                        ));
                    }
                }
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return Ok(ListOutcome::NotServed);
            }
            Err(kube::Error::Api(status))
                if status.code == 410 && params.continue_token.is_some() =>
            {
                objects.clear();
                params = ListParams::default().limit(PAGE);
            }
            Err(error) => return Err(KubeError::from_request("list", resource, error)),
        }
    }
}

/// How a watch ended.
enum WatchEnd {
    /// The server closed it (timeout): resume from the last version.
    Closed,
    /// 410: relist.
    Expired,
    /// Failed: back off, resume from the last version.
    Failed(KubeError),
}

/// Runs the reflector of `table[index]` until the receiver is gone.
pub async fn run(client: kube::Client, resource: Resource, index: usize, tx: mpsc::Sender<Update>) {
    let api: Api<DynamicObject> = Api::all_with(client, &api_resource(&resource));
    let mut backoff = Backoff::new();
    // Where the watch resumes; `None`: list first.
    let mut version: Option<String> = None;
    loop {
        let Some(from) = version.clone() else {
            match list_all(&api, &resource).await {
                Ok(ListOutcome::Listed(objects, listed_at)) => {
                    backoff.reset();
                    version = Some(listed_at.clone());
                    let update = Update::Listed {
                        resource: index,
                        objects,
                        version: Some(listed_at),
                    };
                    if tx.send(update).await.is_err() {
                        return;
                    }
                }
                Ok(ListOutcome::NotServed) => {
                    backoff.reset();
                    tracing::info!(
                        resource = %resource.qualified(),
                        "not served by this cluster; read as empty"
                    );
                    let update = Update::Listed {
                        resource: index,
                        objects: Vec::new(),
                        version: None,
                    };
                    if tx.send(update).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(ABSENT_RECHECK).await;
                }
                Err(error) => {
                    if tx
                        .send(Update::Failed {
                            resource: index,
                            error,
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    tokio::time::sleep(backoff.wait()).await;
                }
            }
            continue;
        };
        match watch(
            &api,
            &resource,
            index,
            &from,
            &tx,
            &mut version,
            &mut backoff,
        )
        .await
        {
            None => return,
            Some(WatchEnd::Closed) => {}
            Some(WatchEnd::Expired) => {
                version = None;
                let reason = format!("resourceVersion {from} expired (410 Gone): relisting");
                tracing::info!(resource = %resource.qualified(), "{reason}");
                if tx
                    .send(Update::Restarted {
                        resource: index,
                        reason,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Some(WatchEnd::Failed(error)) => {
                if tx
                    .send(Update::Failed {
                        resource: index,
                        error,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(backoff.wait()).await;
            }
        }
    }
}

/// One watch from `from`; `None` when the datastore is gone.
async fn watch(
    api: &Api<DynamicObject>,
    resource: &Resource,
    index: usize,
    from: &str,
    tx: &mpsc::Sender<Update>,
    version: &mut Option<String>,
    backoff: &mut Backoff,
) -> Option<WatchEnd> {
    let params = WatchParams::default().timeout(WATCH_TIMEOUT_SECS);
    let stream = match api.watch(&params, from).await {
        Ok(stream) => stream,
        Err(kube::Error::Api(status)) if status.code == 410 => return Some(WatchEnd::Expired),
        Err(error) => {
            return Some(WatchEnd::Failed(KubeError::from_request(
                "watch", resource, error,
            )));
        }
    };
    // Established: whatever failed before works again.
    tx.send(Update::Progress {
        resource: index,
        version: from.to_owned(),
    })
    .await
    .ok()?;
    backoff.reset();
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        let update = match event {
            Ok(WatchEvent::Added(object) | WatchEvent::Modified(object)) => {
                *version = version_of(&object).or(version.take());
                Update::Applied {
                    resource: index,
                    object: to_value(&object),
                }
            }
            Ok(WatchEvent::Deleted(object)) => {
                *version = version_of(&object).or(version.take());
                Update::Deleted {
                    resource: index,
                    object: to_value(&object),
                }
            }
            Ok(WatchEvent::Bookmark(bookmark)) => {
                let at = bookmark.metadata.resource_version;
                *version = Some(at.clone());
                Update::Progress {
                    resource: index,
                    version: at,
                }
            }
            Ok(WatchEvent::Error(status)) if status.code == 410 => return Some(WatchEnd::Expired),
            Ok(WatchEvent::Error(status)) => {
                return Some(WatchEnd::Failed(KubeError::from_request(
                    "watch",
                    resource,
                    kube::Error::Api(status),
                )));
            }
            Err(error) => {
                return Some(WatchEnd::Failed(KubeError::from_request(
                    "watch", resource, error,
                )));
            }
        };
        tx.send(update).await.ok()?;
    }
    Some(WatchEnd::Closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_resets() {
        let mut backoff = Backoff::new();
        let first = backoff.wait();
        assert!(first >= BACKOFF_MIN && first <= BACKOFF_MIN.mul_f64(1.25));
        for _ in 0..20 {
            let wait = backoff.wait();
            assert!(wait <= BACKOFF_MAX.mul_f64(1.25), "{wait:?}");
        }
        assert_eq!(backoff.next, BACKOFF_MAX);
        backoff.reset();
        assert!(backoff.wait() <= BACKOFF_MIN.mul_f64(1.25));
    }
}
