//! The HTTP side of the lab's API server: the subset of the Kubernetes REST API that
//! kube-rs clients use — discovery, list, watch (with `resourceVersion`, bookmarks,
//! timeouts, `410 Gone` in the stream), get, create, replace, delete, and merge-patch
//! of events — plus `/lab/…` control requests for fault tests.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::datastore::kubernetes::resources::{Resource, group_path};

use super::auth::{Access, Who, forbidden_message};
use super::store::{Key, Notice, Store, StoreError, key_of};

pub type Body = BoxBody<Bytes, Infallible>;

/// What a request handler needs.
pub struct Server {
    pub store: Arc<Store>,
    pub access: Access,
}

fn full(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// A `Status` object, as the API server answers errors.
fn status(code: StatusCode, reason: &str, message: &str, kind: Option<&str>) -> Response<Body> {
    let mut value = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
    });
    if let Some(kind) = kind {
        value["details"] = json!({"kind": kind});
    }
    full(code, &value)
}

/// The parts of a resource path.
struct Target {
    resource: usize,
    namespace: Option<String>,
    name: Option<String>,
}

/// `/api/v1/...` or `/apis/<g>/<v>/...` → (group, version, rest).
fn split_path(path: &str) -> Option<(String, String, Vec<String>)> {
    let parts: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    match parts.first().map(String::as_str) {
        Some("api") => Some((String::new(), parts.get(1)?.clone(), parts[2..].to_vec())),
        Some("apis") => Some((
            parts.get(1)?.clone(),
            parts.get(2)?.clone(),
            parts.get(3..).map(<[String]>::to_vec).unwrap_or_default(),
        )),
        _ => None,
    }
}

fn target(served: &[Resource], group: &str, version: &str, rest: &[String]) -> Option<Target> {
    let find = |plural: &str| {
        served
            .iter()
            .position(|r| r.group == group && r.version == version && r.plural == plural)
    };
    match rest {
        [plural] => Some(Target {
            resource: find(plural)?,
            namespace: None,
            name: None,
        }),
        [plural, name] => Some(Target {
            resource: find(plural)?,
            namespace: None,
            name: Some(name.clone()),
        }),
        [ns_word, ns, plural] if ns_word == "namespaces" => Some(Target {
            resource: find(plural)?,
            namespace: Some(ns.clone()),
            name: None,
        }),
        [ns_word, ns, plural, name] if ns_word == "namespaces" => Some(Target {
            resource: find(plural)?,
            namespace: Some(ns.clone()),
            name: Some(name.clone()),
        }),
        _ => None,
    }
}

fn query(request: &Request<Incoming>) -> Vec<(String, String)> {
    request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.replace("%2C", ",")))
        .collect()
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl Server {
    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        let who = self.access.who(
            request
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        );
        let Some(who) = who else {
            return Ok(status(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "Unauthorized",
                None,
            ));
        };
        let path = request.uri().path().to_owned();
        if let Some(control) = path.strip_prefix("/lab/") {
            return Ok(self.control(who, control, &query(&request)));
        }
        let Some((group, version, rest)) = split_path(&path) else {
            return Ok(self.discovery_root(&path));
        };
        if rest.is_empty() {
            return Ok(self.discovery(&group, &version));
        }
        let Some(target) = target(self.store.served(), &group, &version, &rest) else {
            return Ok(status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
                None,
            ));
        };
        Ok(self.resource(who, request, target).await)
    }

    fn discovery_root(&self, path: &str) -> Response<Body> {
        match path.trim_end_matches('/') {
            "/api" => full(
                StatusCode::OK,
                &json!({"kind": "APIVersions", "versions": ["v1"]}),
            ),
            "/apis" => {
                let mut groups: Vec<(String, String)> = self
                    .store
                    .served()
                    .iter()
                    .filter(|r| !r.group.is_empty())
                    .map(|r| (r.group.to_owned(), r.version.to_owned()))
                    .collect();
                groups.dedup();
                let groups: Vec<Value> = groups
                    .into_iter()
                    .map(|(g, v)| {
                        let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
                        json!({"name": g, "versions": [gv], "preferredVersion": gv})
                    })
                    .collect();
                full(
                    StatusCode::OK,
                    &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
                )
            }
            _ => status(StatusCode::NOT_FOUND, "NotFound", "not found", None),
        }
    }

    fn discovery(&self, group: &str, version: &str) -> Response<Body> {
        let resources: Vec<Value> = self
            .store
            .served()
            .iter()
            .filter(|r| r.group == group && r.version == version)
            .map(|r| {
                json!({"name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced,
                       "kind": r.kind, "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]})
            })
            .collect();
        if resources.is_empty() {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
                None,
            );
        }
        let group_version = if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        };
        full(
            StatusCode::OK,
            &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
        )
    }

    async fn resource(
        &self,
        who: Who,
        request: Request<Incoming>,
        target: Target,
    ) -> Response<Body> {
        let spec = self.store.served()[target.resource];
        let query = query(&request);
        let watching = matches!(param(&query, "watch"), Some("true" | "1"));
        let verb = match (request.method(), &target.name) {
            (&Method::GET, None) if watching => "watch",
            (&Method::GET, None) => "list",
            (&Method::GET, Some(_)) => "get",
            (&Method::POST, None) => "create",
            (&Method::PUT, Some(_)) => "update",
            (&Method::PATCH, Some(_)) => "patch",
            (&Method::DELETE, Some(_)) => "delete",
            _ => {
                return status(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    "method not allowed",
                    None,
                );
            }
        };
        if !self.access.allows(who, verb, spec.group, spec.plural) {
            let message =
                forbidden_message(verb, spec.group, spec.plural, target.namespace.as_deref());
            return status(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &message,
                Some(spec.plural),
            );
        }
        match verb {
            "list" => self.list(&spec, &target),
            "watch" => self.watch(&spec, &target, &query),
            "get" => self.get(&spec, &target),
            "delete" => self.delete(&target),
            _ => {
                let body = match request.into_body().collect().await {
                    Ok(body) => body.to_bytes(),
                    Err(e) => {
                        return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string(), None);
                    }
                };
                let Ok(object) = serde_json::from_slice::<Value>(&body) else {
                    return status(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        "the body is not JSON",
                        None,
                    );
                };
                self.write(verb, &spec, &target, object)
            }
        }
    }

    fn list(&self, spec: &Resource, target: &Target) -> Response<Body> {
        let (items, revision) = self
            .store
            .list(target.resource, target.namespace.as_deref());
        full(
            StatusCode::OK,
            &json!({"apiVersion": spec.api_version(), "kind": format!("{}List", spec.kind),
                    "metadata": {"resourceVersion": revision.to_string()}, "items": items}),
        )
    }

    fn key(target: &Target) -> Key {
        (
            target.resource,
            target.namespace.clone().unwrap_or_default(),
            target.name.clone().unwrap_or_default(),
        )
    }

    fn get(&self, spec: &Resource, target: &Target) -> Response<Body> {
        match self.store.get(&Self::key(target)) {
            Some(object) => full(StatusCode::OK, &object),
            None => not_found(spec, target),
        }
    }

    fn delete(&self, target: &Target) -> Response<Body> {
        match self.store.delete(&Self::key(target)) {
            Ok(object) => full(StatusCode::OK, &object),
            Err(e) => store_error(&e),
        }
    }

    fn write(
        &self,
        verb: &str,
        spec: &Resource,
        target: &Target,
        mut object: Value,
    ) -> Response<Body> {
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            if let Some(ns) = &target.namespace {
                meta.insert("namespace".to_owned(), ns.clone().into());
            }
            if let Some(name) = &target.name {
                meta.entry("name").or_insert_with(|| name.clone().into());
            }
        }
        if verb == "patch" {
            // Merge patch, for the event recorder's series updates.
            let Some(mut current) = self.store.get(&Self::key(target)) else {
                return not_found(spec, target);
            };
            merge(&mut current, &object);
            object = current;
        } else if verb == "update" && self.store.get(&Self::key(target)).is_none() {
            return not_found(spec, target);
        }
        if key_of(target.resource, &object).2.is_empty() {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                "metadata.name is required",
                None,
            );
        }
        match self.store.put(target.resource, object, verb == "create") {
            Ok(stored) if verb == "create" => full(StatusCode::CREATED, &stored),
            Ok(stored) => full(StatusCode::OK, &stored),
            Err(e) => store_error(&e),
        }
    }

    fn watch(
        &self,
        spec: &Resource,
        target: &Target,
        query: &[(String, String)],
    ) -> Response<Body> {
        let since_text = param(query, "resourceVersion").unwrap_or_default();
        let bookmarks = matches!(param(query, "allowWatchBookmarks"), Some("true" | "1"));
        let timeout = param(query, "timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .map_or(Duration::from_mins(30), Duration::from_secs);
        let (tx, rx) = mpsc::channel::<Bytes>(256);
        // Version "" or "0": the current objects as ADDED events first, then changes.
        let (since, initial) = match since_text.parse::<u64>() {
            Ok(v) if v > 0 => (v, Vec::new()),
            _ => {
                let (items, revision) = self
                    .store
                    .list(target.resource, target.namespace.as_deref());
                (revision, items)
            }
        };
        match self.store.watch(since) {
            Err(_) => {
                let message = format!(
                    "too old resource version: {since} ({})",
                    self.store.revision()
                );
                let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "message": message, "reason": "Expired", "code": 410}});
                let _ = tx.try_send(line(&gone));
            }
            Ok((receiver, replay)) => {
                for object in initial {
                    let _ = tx.try_send(line(&json!({"type": "ADDED", "object": object})));
                }
                let stream = WatchStream {
                    resource: target.resource,
                    namespace: target.namespace.clone(),
                    api_version: spec.api_version(),
                    kind: spec.kind,
                    bookmarks,
                    seen: since,
                    sent: since,
                };
                tokio::spawn(stream.run(receiver, replay, tx, timeout));
            }
        }
        let body = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|bytes| (Ok::<_, Infallible>(Frame::data(bytes)), rx))
        }));
        let mut response = Response::new(BodyExt::boxed(body));
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        response
    }

    fn control(&self, who: Who, control: &str, query: &[(String, String)]) -> Response<Body> {
        if who != Who::Admin {
            return status(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "lab control is for the lab's own commands",
                None,
            );
        }
        let group = param(query, "group").unwrap_or_default();
        let resource = param(query, "resource").unwrap_or_default();
        match control {
            "expire" => match self.store.expire() {
                Ok(revision) => full(StatusCode::OK, &json!({"compactedTo": revision})),
                Err(e) => store_error(&e),
            },
            "revoke" | "grant" => {
                self.access
                    .set_revoked(group, resource, control == "revoke");
                if let Some(index) = self
                    .store
                    .served()
                    .iter()
                    .position(|r| r.group == group && r.plural == resource)
                {
                    self.store.close_watches(index);
                }
                full(
                    StatusCode::OK,
                    &json!({"group": group, "resource": resource, control: true}),
                )
            }
            _ => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "unknown lab control",
                None,
            ),
        }
    }
}

fn not_found(spec: &Resource, target: &Target) -> Response<Body> {
    let message = format!(
        "{}.{} \"{}\" not found",
        spec.plural,
        spec.group,
        target.name.as_deref().unwrap_or_default()
    );
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &message,
        Some(spec.plural),
    )
}

fn store_error(error: &StoreError) -> Response<Body> {
    match error {
        StoreError::NotFound(what) => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("{what} not found"),
            None,
        ),
        StoreError::Exists(what) => status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            &format!("{what} already exists"),
            None,
        ),
        StoreError::Invalid(what) => {
            status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", what, None)
        }
        StoreError::Datastore(e) => status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            &e.to_string(),
            None,
        ),
    }
}

/// JSON merge patch (RFC 7386).
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(fields) = target {
        for (key, value) in patch {
            if value.is_null() {
                fields.remove(key);
            } else {
                merge(fields.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

fn line(value: &Value) -> Bytes {
    let mut text = value.to_string();
    text.push('\n');
    Bytes::from(text)
}

/// One open watch.
struct WatchStream {
    resource: usize,
    namespace: Option<String>,
    api_version: String,
    kind: &'static str,
    bookmarks: bool,
    /// The last event revision handled (sent or not ours).
    seen: u64,
    /// The last revision the client was told (an event or a bookmark).
    sent: u64,
}

impl WatchStream {
    /// The event line for `notice`, if this watch sends one; `Err(())` ends the watch.
    fn render(&mut self, notice: &Notice) -> Result<Option<Bytes>, ()> {
        match notice {
            Notice::Object {
                resource,
                namespace,
                kind,
                object,
                revision,
            } => {
                // Replayed history and the live channel overlap: each event once.
                if *revision <= self.seen {
                    return Ok(None);
                }
                self.seen = *revision;
                let ours = *resource == self.resource
                    && self.namespace.as_ref().is_none_or(|n| n == namespace);
                if !ours {
                    return Ok(None);
                }
                self.sent = *revision;
                Ok(Some(line(
                    &json!({"type": kind.as_str(), "object": object}),
                )))
            }
            Notice::Bookmark(revision) => {
                if !self.bookmarks || *revision <= self.sent {
                    return Ok(None);
                }
                self.sent = *revision;
                Ok(Some(line(&json!({"type": "BOOKMARK", "object": {
                    "apiVersion": self.api_version, "kind": self.kind,
                    "metadata": {"resourceVersion": revision.to_string()}}}))))
            }
            Notice::Close(None) => Err(()),
            Notice::Close(Some(resource)) if *resource == self.resource => Err(()),
            Notice::Close(Some(_)) => Ok(None),
        }
    }

    async fn run(
        mut self,
        mut receiver: tokio::sync::broadcast::Receiver<Arc<Notice>>,
        replay: Vec<Arc<Notice>>,
        tx: mpsc::Sender<Bytes>,
        timeout: Duration,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        for notice in replay {
            match self.render(&notice) {
                Ok(Some(bytes)) => {
                    if tx.send(bytes).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {}
                Err(()) => return,
            }
        }
        loop {
            let notice = tokio::select! {
                notice = receiver.recv() => notice,
                () = tokio::time::sleep_until(deadline) => return,
                () = tx.closed() => return,
            };
            // Lagging (the channel overflowed): end; the client resumes or relists.
            let Ok(notice) = notice else { return };
            match self.render(&notice) {
                Ok(Some(bytes)) => {
                    if tx.send(bytes).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {}
                Err(()) => return,
            }
        }
    }
}

/// The path of a resource's collection in `namespace`.
pub fn collection_path(resource: &Resource, namespace: Option<&str>) -> String {
    let base = group_path(resource.group, resource.version);
    match namespace.filter(|_| resource.namespaced) {
        Some(ns) => format!("{base}/namespaces/{ns}/{}", resource.plural),
        None => format!("{base}/{}", resource.plural),
    }
}

#[cfg(test)]
#[expect(
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_targets() {
        let served = super::super::store::served();
        let (g, v, rest) = split_path("/api/v1/namespaces/dev/pods/a").unwrap_or_default();
        assert_eq!((g.as_str(), v.as_str()), ("", "v1"));
        let t = target(&served, &g, &v, &rest).expect("a pod");
        assert_eq!(served[t.resource].plural, "pods");
        assert_eq!(t.namespace.as_deref(), Some("dev"));
        assert_eq!(t.name.as_deref(), Some("a"));
        let (g, v, rest) =
            split_path("/apis/crd.projectcalico.org/v1/globalnetworkpolicies").unwrap_or_default();
        let t = target(&served, &g, &v, &rest).expect("a collection");
        assert_eq!(served[t.resource].kind, "GlobalNetworkPolicy");
        assert!(t.name.is_none());
        let (g, v, rest) = split_path("/api/v1/namespaces/dev").unwrap_or_default();
        let t = target(&served, &g, &v, &rest).expect("a namespace");
        assert_eq!(served[t.resource].plural, "namespaces");
        assert_eq!(t.name.as_deref(), Some("dev"));
        assert!(split_path("/healthz").is_none());
    }

    #[test]
    fn merge_patch_sets_and_removes() {
        let mut doc = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge(&mut doc, &json!({"a": null, "b": {"c": 5}, "e": [1]}));
        assert_eq!(doc, json!({"b": {"c": 5, "d": 3}, "e": [1]}));
    }
}
