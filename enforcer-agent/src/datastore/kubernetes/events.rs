//! Kubernetes Events naming the objects the agent refuses: `kubectl get events` (and
//! `kubectl describe` of the object) says which policy a node does not enforce as
//! written, and why, without reading the agent's logs.
//!
//! A task follows the agent's published status and records one `Warning` event
//! (`events.k8s.io/v1`, through kube-runtime's recorder) per refused object and reason,
//! about the object itself: its reference comes from where the datastore read it (the
//! object's API path, [`super::convert::origin`]). An object is told about again only
//! when its reason changes or after it was accepted in between. A failed write (the API
//! server away) is retried with backoff; it never holds up the agent.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::watch;

use super::error::error_chain;
use super::resources::{CALICO_CRDS, CALICO_V3, KUBERNETES, group_path};
use crate::datastore::status::{AgentStatus, Fallback, Refused};

/// The events' `reportingController`.
pub const REPORTER: &str = "enforcer";
/// The events' `reason`.
pub const REASON: &str = "PolicyRefused";
/// The events' `action`.
pub const ACTION: &str = "Enforce";
/// The API server refuses an event whose note is longer.
const NOTE_LIMIT: usize = 1024;
/// The longest wait between two attempts at a failed write.
const MAX_BACKOFF: Duration = Duration::from_mins(1);

/// The object read from the API path `origin` (`api/v1/namespaces/dev/pods/a`,
/// `apis/crd.projectcalico.org/v1/globalnetworkpolicies/default.x`), as an event's
/// `regarding`; `None` for anything else (nothing to attach an event to).
pub fn reference_of(origin: &str) -> Option<ObjectReference> {
    for resource in KUBERNETES.iter().chain(CALICO_CRDS).chain(CALICO_V3) {
        let base = group_path(resource.group, resource.version);
        let Some(rest) = origin
            .strip_prefix(base.trim_start_matches('/'))
            .and_then(|r| r.strip_prefix('/'))
        else {
            continue;
        };
        let (namespace, rest) = if resource.namespaced {
            let Some((namespace, rest)) = rest
                .strip_prefix("namespaces/")
                .and_then(|r| r.split_once('/'))
            else {
                continue;
            };
            (Some(namespace.to_owned()), rest)
        } else {
            (None, rest)
        };
        let Some(name) = rest
            .strip_prefix(resource.plural)
            .and_then(|r| r.strip_prefix('/'))
            .filter(|n| !n.is_empty() && !n.contains('/'))
        else {
            continue;
        };
        return Some(ObjectReference {
            api_version: Some(resource.api_version()),
            kind: Some(resource.kind.to_owned()),
            name: Some(name.to_owned()),
            namespace,
            ..ObjectReference::default()
        });
    }
    None
}

/// What is enforced instead, in words.
fn instead(fallback: Fallback) -> &'static str {
    match fallback {
        Fallback::LastGood => "its last enforced version stays in force",
        Fallback::DenyAll => {
            "deny-all for what its selector selects, in its tier position (never enforced before)"
        }
        Fallback::Ignored => "nothing: it is left out (its selector cannot be read)",
    }
}

/// The event telling about `refused` on `node`.
pub fn event_of(refused: &Refused, node: &str) -> Event {
    let mut note = format!(
        "node {node}: {} refused: {}; {}",
        refused.object,
        refused.reason,
        instead(refused.fallback)
    );
    if note.len() > NOTE_LIMIT {
        let mut end = NOTE_LIMIT - "…".len();
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push('…');
    }
    Event {
        type_: EventType::Warning,
        reason: REASON.to_owned(),
        note: Some(note),
        action: ACTION.to_owned(),
        secondary: None,
    }
}

/// Records an event for each object newly refused in the statuses `status` publishes,
/// as `node`'s agent, until the publisher is gone.
pub async fn record_refusals(
    mut status: watch::Receiver<AgentStatus>,
    client: kube::Client,
    node: String,
) {
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: REPORTER.to_owned(),
            instance: Some(node.clone()),
        },
    );
    // (origin, reason) told about, while the object stays refused for that reason.
    let mut recorded: BTreeSet<(String, String)> = BTreeSet::new();
    let mut backoff = Duration::from_secs(1);
    let mut retry = false;
    loop {
        tokio::select! {
            changed = status.changed() => if changed.is_err() {
                return;
            },
            () = tokio::time::sleep(backoff), if retry => {
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        let refused = status.borrow_and_update().refused.clone();
        recorded.retain(|(origin, reason)| {
            refused
                .iter()
                .any(|r| &r.origin == origin && &r.reason == reason)
        });
        retry = false;
        for object in &refused {
            let key = (object.origin.clone(), object.reason.clone());
            if recorded.contains(&key) {
                continue;
            }
            let Some(reference) = reference_of(&object.origin) else {
                recorded.insert(key);
                continue;
            };
            match recorder.publish(&event_of(object, &node), &reference).await {
                Ok(()) => {
                    recorded.insert(key);
                }
                Err(error) => {
                    tracing::warn!(
                        object = %object.object,
                        error = %error_chain(&error),
                        "could not record an event about a refused object; retrying"
                    );
                    retry = true;
                }
            }
        }
        if !retry {
            backoff = Duration::from_secs(1);
        }
    }
}

#[cfg(test)]
#[expect(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
mod tests {
    use super::*;

    #[test]
    fn references_come_from_the_api_path() {
        let gnp =
            reference_of("apis/crd.projectcalico.org/v1/globalnetworkpolicies/default.broken")
                .unwrap();
        assert_eq!(gnp.api_version.as_deref(), Some("crd.projectcalico.org/v1"));
        assert_eq!(gnp.kind.as_deref(), Some("GlobalNetworkPolicy"));
        assert_eq!(gnp.name.as_deref(), Some("default.broken"));
        assert_eq!(gnp.namespace, None);
        let np =
            reference_of("apis/networking.k8s.io/v1/namespaces/dev/networkpolicies/a").unwrap();
        assert_eq!(np.kind.as_deref(), Some("NetworkPolicy"));
        assert_eq!(np.api_version.as_deref(), Some("networking.k8s.io/v1"));
        assert_eq!(np.namespace.as_deref(), Some("dev"));
        let cnp =
            reference_of("apis/projectcalico.org/v3/namespaces/dev/networkpolicies/db").unwrap();
        assert_eq!(cnp.api_version.as_deref(), Some("projectcalico.org/v3"));
        let ns = reference_of("api/v1/namespaces/dev").unwrap();
        assert_eq!(
            (ns.kind.as_deref(), ns.name.as_deref(), ns.namespace),
            (Some("Namespace"), Some("dev"), None)
        );
        let pod = reference_of("api/v1/namespaces/dev/pods/web-0").unwrap();
        assert_eq!(pod.kind.as_deref(), Some("Pod"));
        assert_eq!(pod.namespace.as_deref(), Some("dev"));
        // Not an API path: a file datastore's origin.
        assert!(reference_of("objects/NetworkPolicy.dev.a.json").is_none());
        assert!(reference_of("apis/crd.projectcalico.org/v1/globalnetworkpolicies/").is_none());
    }

    #[test]
    fn the_note_names_node_object_reason_and_fallback_within_the_limit() {
        let refused = Refused {
            object: "GlobalNetworkPolicy broken".into(),
            origin: "apis/crd.projectcalico.org/v1/globalnetworkpolicies/default.broken".into(),
            reason: "spec.selector: unexpected token at column 12".into(),
            fallback: Fallback::Ignored,
        };
        let event = event_of(&refused, "node1");
        let note = event.note.unwrap();
        assert!(note.starts_with("node node1: GlobalNetworkPolicy broken refused: spec.selector"));
        assert!(note.contains("left out"), "{note}");
        assert_eq!(event.type_, EventType::Warning);
        assert_eq!(event.reason, REASON);
        let long = Refused {
            reason: "é".repeat(2000),
            ..refused
        };
        let note = event_of(&long, "node1").note.unwrap();
        assert!(note.len() <= NOTE_LIMIT && note.ends_with('…'));
    }
}
