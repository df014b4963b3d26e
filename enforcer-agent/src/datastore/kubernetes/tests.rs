//! The datastore's state machine, fed the messages reflectors send (no server): the
//! first Reset waits for every resource, only changed objects are converted, a relist
//! is a difference, failures are reported once and their end too.

#![expect(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use serde_json::json;
use tokio::sync::mpsc;

use super::*;
use crate::datastore::kubernetes::resources::{CALICO_CRDS, KUBERNETES};

fn datastore() -> (KubernetesDatastore, mpsc::Sender<Message>) {
    let (tx, rx) = mpsc::channel(64);
    let idle = tokio::spawn(std::future::pending());
    let mut ds = KubernetesDatastore::with("test".into(), rx, idle);
    ds.receive(Message::Resources(vec![KUBERNETES[0], CALICO_CRDS[0]]));
    (ds, tx)
}

fn namespace(name: &str, version: &str) -> Value {
    json!({"metadata": {"name": name, "resourceVersion": version}})
}

fn gnp(name: &str, version: &str, selector: &str) -> Value {
    json!({"metadata": {"name": name, "resourceVersion": version},
           "spec": {"selector": selector}})
}

async fn send(tx: &mpsc::Sender<Message>, update: Update) {
    tx.send(Message::Update(update)).await.unwrap();
}

async fn listed(tx: &mpsc::Sender<Message>, resource: usize, objects: Vec<Value>, version: &str) {
    send(
        tx,
        Update::Listed {
            resource,
            objects,
            version: Some(version.into()),
        },
    )
    .await;
}

fn names(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .map(|c| match c {
            Change::Upsert(s) => format!("+{}", s.id.name),
            Change::Delete(id) => format!("-{}", id.name),
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn reset_waits_for_every_resource_then_changes_follow() {
    let (mut ds, tx) = datastore();
    listed(&tx, 0, vec![namespace("dev", "5")], "7").await;
    // One resource is not listed yet: no Reset, the debounce passes in vain.
    let pending = tokio::time::timeout(Duration::from_secs(1), ds.next_event()).await;
    assert!(pending.is_err(), "a Reset before every resource was listed");
    listed(&tx, 1, vec![gnp("default.allow", "6", "all()")], "9").await;
    let DatastoreEvent::Reset(snapshot) = ds.next_event().await.unwrap() else {
        panic!("expected Reset")
    };
    // The lowest version both resources are complete to.
    assert_eq!(snapshot.revision, 7);
    let mut ids: Vec<String> = snapshot.objects.iter().map(|s| s.id.name.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["allow", "dev"]);
    // A watch event, then a bookmark moving the other resource on.
    send(
        &tx,
        Update::Applied {
            resource: 1,
            object: gnp("default.allow", "10", "has(app)"),
        },
    )
    .await;
    send(
        &tx,
        Update::Progress {
            resource: 0,
            version: "10".into(),
        },
    )
    .await;
    let DatastoreEvent::Changes { revision, changes } = ds.next_event().await.unwrap() else {
        panic!("expected Changes")
    };
    assert_eq!(revision, 10);
    assert_eq!(names(&changes), ["+allow"]);
}

#[tokio::test(start_paused = true)]
async fn a_relist_is_the_difference_and_unchanged_objects_are_not_converted() {
    let (mut ds, tx) = datastore();
    listed(&tx, 0, vec![namespace("a", "1"), namespace("b", "2")], "2").await;
    listed(&tx, 1, vec![], "2").await;
    let DatastoreEvent::Reset(_) = ds.next_event().await.unwrap() else {
        panic!()
    };
    send(
        &tx,
        Update::Restarted {
            resource: 0,
            reason: "410".into(),
        },
    )
    .await;
    // `a` unchanged (same version), `b` gone, `c` new.
    listed(&tx, 0, vec![namespace("a", "1"), namespace("c", "8")], "8").await;
    listed(&tx, 1, vec![], "8").await;
    let DatastoreEvent::Changes { revision, changes } = ds.next_event().await.unwrap() else {
        panic!()
    };
    assert_eq!(revision, 8);
    let mut got = names(&changes);
    got.sort();
    assert_eq!(got, ["+c", "-b"]);
    assert_eq!(ds.stats().watch_restarts.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn failures_are_reported_once_and_their_end_is_an_event() {
    let (mut ds, tx) = datastore();
    listed(&tx, 0, vec![], "3").await;
    listed(&tx, 1, vec![], "3").await;
    let DatastoreEvent::Reset(_) = ds.next_event().await.unwrap() else {
        panic!()
    };
    let forbidden = KubeError::Forbidden {
        verb: "watch",
        resource: "namespaces".into(),
        group: String::new(),
        message: "no".into(),
    };
    send(
        &tx,
        Update::Failed {
            resource: 0,
            error: forbidden,
        },
    )
    .await;
    let DatastoreEvent::Unavailable { error } = ds.next_event().await.unwrap() else {
        panic!()
    };
    let text = error.to_string();
    assert!(text.contains("may not watch namespaces"), "{text}");
    // The same failure again is not a new event.
    send(
        &tx,
        Update::Failed {
            resource: 0,
            error: KubeError::Forbidden {
                verb: "watch",
                resource: "namespaces".into(),
                group: String::new(),
                message: "no".into(),
            },
        },
    )
    .await;
    assert!(
        tokio::time::timeout(Duration::from_secs(1), ds.next_event())
            .await
            .is_err()
    );
    // The watch works again: one event, with nothing changed.
    send(
        &tx,
        Update::Progress {
            resource: 0,
            version: "3".into(),
        },
    )
    .await;
    let DatastoreEvent::Changes { changes, .. } = ds.next_event().await.unwrap() else {
        panic!()
    };
    assert!(changes.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_broken_object_is_refused_alone_and_named() {
    let (mut ds, tx) = datastore();
    listed(&tx, 0, vec![namespace("dev", "1")], "4").await;
    listed(
        &tx,
        1,
        vec![
            gnp("default.good", "2", "all()"),
            gnp("default.bad", "3", "app =="),
        ],
        "4",
    )
    .await;
    let DatastoreEvent::Reset(snapshot) = ds.next_event().await.unwrap() else {
        panic!()
    };
    let bad: Vec<&Stored> = snapshot
        .objects
        .iter()
        .filter(|s| s.object.is_err())
        .collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].id.name, "bad");
    assert_eq!(
        bad[0].origin,
        "apis/crd.projectcalico.org/v1/globalnetworkpolicies/default.bad"
    );
    assert_eq!(snapshot.objects.len(), 3);
}

/// A client whose API server serves nothing: every request gets the 404 `Status` an
/// API server answers for a resource whose CRD is not installed. The paths asked for
/// are kept.
fn client_without_crds() -> (kube::Client, Arc<std::sync::Mutex<Vec<String>>>) {
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&asked);
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        seen.lock().unwrap().push(request.uri().path().to_owned());
        let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "reason": "NotFound", "code": 404,
            "message": "the server could not find the requested resource"});
        let response = http::Response::builder()
            .status(404)
            .header("content-type", "application/json")
            .body(kube::client::Body::from(status.to_string().into_bytes()));
        async move { response }
    });
    (kube::Client::new(service, "default"), asked)
}

#[tokio::test]
async fn admin_policies_not_served_are_an_empty_synced_list() {
    use crate::datastore::kubernetes::resources::ADMIN_GROUP;
    // Both network-policy-api kinds are watched, cluster-wide.
    let admin: Vec<Resource> = KUBERNETES
        .iter()
        .filter(|r| r.group == ADMIN_GROUP)
        .copied()
        .collect();
    assert_eq!(
        admin.iter().map(|r| r.kind).collect::<Vec<_>>(),
        ["AdminNetworkPolicy", "BaselineAdminNetworkPolicy"]
    );
    // Their CRDs are not installed: the reflector lists them as empty, no version.
    for (index, resource) in admin.iter().enumerate() {
        let (client, asked) = client_without_crds();
        let (tx, mut rx) = mpsc::channel(4);
        let reflector = tokio::spawn(reflect::run(client, *resource, index, tx));
        let update = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        reflector.abort();
        let Update::Listed {
            resource: got,
            objects,
            version,
        } = update
        else {
            panic!("{}: expected an empty list, got {update:?}", resource.kind)
        };
        assert_eq!((got, objects.len(), version), (index, 0, None));
        assert_eq!(
            asked.lock().unwrap().first().map(String::as_str),
            Some(resource.cluster_path().as_str())
        );
    }
    // And the datastore does not wait for them: the first Reset comes with the
    // namespaces, at their version.
    let (tx, rx) = mpsc::channel(64);
    let idle = tokio::spawn(std::future::pending());
    let mut ds = KubernetesDatastore::with("test".into(), rx, idle);
    ds.receive(Message::Resources(vec![KUBERNETES[0], admin[0], admin[1]]));
    listed(&tx, 0, vec![namespace("dev", "5")], "7").await;
    for resource in [1, 2] {
        send(
            &tx,
            Update::Listed {
                resource,
                objects: Vec::new(),
                version: None,
            },
        )
        .await;
    }
    let event = tokio::time::timeout(Duration::from_secs(10), ds.next_event())
        .await
        .unwrap()
        .unwrap();
    let DatastoreEvent::Reset(snapshot) = event else {
        panic!("expected Reset")
    };
    assert_eq!(snapshot.revision, 7);
    assert_eq!(snapshot.objects.len(), 1);
}
