#![expect(clippy::unwrap_used, reason = "a failing test panics with context")]

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::model::load_str;
use crate::testkit::TempDir;

fn namespace(name: &str) -> Object {
    let text = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n");
    load_str(Path::new("t.yaml"), &text)
        .unwrap()
        .remove(0)
        .object
}

async fn next(store: &mut FileDatastore) -> DatastoreEvent {
    // Bounded only so a lost event fails the test instead of hanging it.
    tokio::time::timeout(Duration::from_secs(30), store.next_event())
        .await
        .unwrap()
        .unwrap()
}

/// (revision, upserted names with whether they load, deleted names).
fn summary(event: &DatastoreEvent) -> (u64, Vec<(String, bool)>, Vec<String>) {
    match event {
        DatastoreEvent::Changes { revision, changes } => {
            let mut up = Vec::new();
            let mut del = Vec::new();
            for c in changes {
                match c {
                    Change::Upsert(s) => up.push((s.id.name.clone(), s.object.is_ok())),
                    Change::Delete(id) => del.push(id.name.clone()),
                }
            }
            (*revision, up, del)
        }
        other => panic!("expected changes, got {other:?}"),
    }
}

#[tokio::test]
async fn only_changed_documents_are_published_at_each_revision() {
    let tmp = TempDir::new("filestore-changes");
    let writer = FileDatastore::open(tmp.path()).unwrap();
    writer.apply(&[namespace("a"), namespace("b")]).unwrap();
    let mut store = FileDatastore::open(tmp.path()).unwrap();

    let DatastoreEvent::Reset(snapshot) = next(&mut store).await else {
        panic!("first event must be a reset");
    };
    assert_eq!(snapshot.revision, 1);
    let names: Vec<&str> = snapshot
        .objects
        .iter()
        .map(|s| s.id.name.as_str())
        .collect();
    assert_eq!(names, ["a", "b"]);

    // One new object: only it is read and published.
    writer.apply(&[namespace("c")]).unwrap();
    assert_eq!(
        summary(&next(&mut store).await),
        (2, vec![("c".into(), true)], vec![])
    );

    // Rewritten with the same content: the revision counts, nothing changed.
    writer.apply(&[namespace("a")]).unwrap();
    assert_eq!(summary(&next(&mut store).await), (3, vec![], vec![]));

    // Two writes before one commit arrive together; a removal is a delete.
    let dir = tmp.path().join("objects");
    std::fs::remove_file(dir.join("Namespace._.b.json")).unwrap();
    writer.apply(&[namespace("d")]).unwrap();
    assert_eq!(
        summary(&next(&mut store).await),
        (4, vec![("d".into(), true)], vec!["b".into()])
    );

    // A broken rewrite of an object names that object.
    writer.put_raw("Namespace._.a.json", "{not json").unwrap();
    assert_eq!(
        summary(&next(&mut store).await),
        (5, vec![("a".into(), false)], vec![])
    );
    // Fixed again, it loads.
    writer.apply(&[namespace("a")]).unwrap();
    assert_eq!(
        summary(&next(&mut store).await),
        (6, vec![("a".into(), true)], vec![])
    );
}

#[tokio::test]
async fn links_are_refused_never_followed() {
    let tmp = TempDir::new("filestore-links");
    let root = tmp.path().join("ds");
    let writer = FileDatastore::open(&root).unwrap();
    let mut store = FileDatastore::open(&root).unwrap();
    let DatastoreEvent::Reset(_) = next(&mut store).await else {
        panic!("first event must be a reset");
    };
    // A document planted as a link to a file outside, and a link loop.
    let secret = tmp.path().join("secret.json");
    std::fs::write(
        &secret,
        r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"secret"}}"#,
    )
    .unwrap();
    let objects = root.join("objects");
    std::os::unix::fs::symlink(&secret, objects.join("x.json")).unwrap();
    std::os::unix::fs::symlink("loop.json", objects.join("loop.json")).unwrap();
    writer.apply(&[]).unwrap();
    let event = next(&mut store).await;
    let DatastoreEvent::Changes { changes, .. } = &event else {
        panic!("{event:?}");
    };
    assert_eq!(changes.len(), 2, "{event:?}");
    for change in changes {
        let Change::Upsert(stored) = change else {
            panic!("{change:?}");
        };
        assert_eq!(stored.id.kind, crate::datastore::UNREADABLE_KIND);
        let error = stored.object.as_ref().unwrap_err().to_string();
        assert!(error.contains("symbolic link"), "{error}");
        assert!(!error.contains("secret"), "{error}");
    }

    // status.json planted as a link: the status replaces the link, not its target.
    std::os::unix::fs::symlink(&secret, root.join("status.json")).unwrap();
    writer.write_status(&AgentStatus::default()).unwrap();
    assert!(std::fs::read_to_string(&secret).unwrap().contains("secret"));
    assert_eq!(writer.read_status().unwrap(), Some(AgentStatus::default()));

    // `objects/` replaced by a link: the datastore refuses to open it.
    std::fs::remove_dir_all(&objects).unwrap();
    std::os::unix::fs::symlink(tmp.path(), &objects).unwrap();
    assert!(matches!(
        FileDatastore::open(&root),
        Err(DatastoreError::NotRegularFile { .. })
    ));
}

#[tokio::test]
async fn a_replaced_directory_is_read_again_whole() {
    let tmp = TempDir::new("filestore-replaced");
    let writer = FileDatastore::open(tmp.path()).unwrap();
    writer.apply(&[namespace("a")]).unwrap();
    let mut store = FileDatastore::open(tmp.path()).unwrap();
    let DatastoreEvent::Reset(_) = next(&mut store).await else {
        panic!("first event must be a reset");
    };
    std::fs::remove_dir_all(tmp.path().join("objects")).unwrap();
    std::fs::create_dir(tmp.path().join("objects")).unwrap();
    writer.apply(&[namespace("z")]).unwrap();
    // Whatever the directory's removal produced first, the new directory is read
    // (a relist) and watched.
    loop {
        match next(&mut store).await {
            DatastoreEvent::Reset(snapshot) => {
                let names: Vec<&str> = snapshot
                    .objects
                    .iter()
                    .map(|s| s.id.name.as_str())
                    .collect();
                if names == ["z"] {
                    break;
                }
            }
            event @ DatastoreEvent::Changes { .. } => {
                if summary(&event).1.contains(&("z".into(), true)) {
                    break;
                }
            }
            DatastoreEvent::Unavailable { .. } => {}
        }
    }
}

#[tokio::test]
async fn a_missing_directory_is_unavailable_without_spinning_until_it_is_back() {
    use futures_util::FutureExt as _;
    let tmp = TempDir::new("filestore-missing");
    let writer = FileDatastore::open(tmp.path()).unwrap();
    writer.apply(&[namespace("a")]).unwrap();
    let mut store = FileDatastore::open(tmp.path()).unwrap();
    let DatastoreEvent::Reset(_) = next(&mut store).await else {
        panic!("first event must be a reset");
    };
    std::fs::remove_dir_all(tmp.path().join("objects")).unwrap();
    let event = next(&mut store).await;
    assert!(
        matches!(
            &event,
            DatastoreEvent::Unavailable {
                error: DatastoreError::Gone { .. }
            }
        ),
        "{event:?}"
    );
    // Only the events already queued may answer; then it waits (a spin would answer
    // every poll).
    let mut answered = 0;
    while let Some(event) = store.next_event().now_or_never() {
        assert!(
            matches!(event, Ok(DatastoreEvent::Unavailable { .. })),
            "{event:?}"
        );
        answered += 1;
        assert!(
            answered < 16,
            "the watcher spins while the directory is gone"
        );
    }
    std::fs::create_dir(tmp.path().join("objects")).unwrap();
    writer.apply(&[namespace("b")]).unwrap();
    loop {
        match next(&mut store).await {
            DatastoreEvent::Reset(snapshot) => {
                let names: Vec<&str> = snapshot
                    .objects
                    .iter()
                    .map(|s| s.id.name.as_str())
                    .collect();
                if names == ["b"] {
                    break;
                }
            }
            event @ DatastoreEvent::Changes { .. } => {
                if summary(&event).1.contains(&("b".into(), true)) {
                    break;
                }
            }
            DatastoreEvent::Unavailable { .. } => {}
        }
    }
}
