//! The lab's commands as a client of its API server (kube-rs over the admin
//! listener): `lab apply` and `lab delete` write through the API, and the fault tests
//! send their `/lab/…` controls. Synchronous: each call runs on a small runtime of its
//! own, as the lab's commands are.

use std::path::Path;

use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::core::ApiResource;
use serde_json::Value;

use crate::datastore::kubernetes::convert;
use crate::datastore::kubernetes::error::error_chain;
use crate::model::Object;

use super::ApiServerError;
use super::store::{resource_of, served};

pub struct ApiClient {
    client: kube::Client,
    runtime: tokio::runtime::Runtime,
}

fn client_err(what: impl Into<String>, error: &dyn std::error::Error) -> ApiServerError {
    ApiServerError::Client {
        what: what.into(),
        message: error_chain(error),
    }
}

impl ApiClient {
    /// A client from the admin kubeconfig.
    pub fn open(kubeconfig: &Path) -> Result<Self, ApiServerError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| client_err("runtime", &e))?;
        let options = crate::datastore::kubernetes::KubernetesOptions {
            kubeconfig: Some(kubeconfig.to_path_buf()),
        };
        let client = runtime
            .block_on(crate::datastore::kubernetes::client(&options))
            .map_err(|e| client_err(kubeconfig.display().to_string(), &e))?;
        Ok(Self { client, runtime })
    }

    fn api(&self, object: &Object) -> Result<(Api<DynamicObject>, Value), ApiServerError> {
        let served = served();
        let document = object.to_document();
        let api_version = document["apiVersion"].as_str().unwrap_or_default();
        let kind = document["kind"].as_str().unwrap_or_default();
        let index =
            resource_of(&served, api_version, kind).ok_or_else(|| ApiServerError::Client {
                what: object.id().to_string(),
                message: "no resource of the lab's API server serves this kind".to_owned(),
            })?;
        let resource = served[index];
        let api_resource = ApiResource {
            group: resource.group.to_owned(),
            version: resource.version.to_owned(),
            api_version: resource.api_version(),
            kind: resource.kind.to_owned(),
            plural: resource.plural.to_owned(),
        };
        let api = match object
            .meta()
            .namespace
            .as_deref()
            .filter(|_| resource.namespaced)
        {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &api_resource),
            None => Api::all_with(self.client.clone(), &api_resource),
        };
        Ok((api, convert::to_api_object(&resource, document)))
    }

    /// Creates or replaces each object.
    pub fn apply(&self, objects: &[Object]) -> Result<(), ApiServerError> {
        self.runtime.block_on(async {
            for object in objects {
                let (api, value) = self.api(object)?;
                let what = || object.id().to_string();
                let dynamic: DynamicObject =
                    serde_json::from_value(value).map_err(|e| client_err(what(), &e))?;
                let name = dynamic.metadata.name.clone().unwrap_or_default();
                match api.replace(&name, &PostParams::default(), &dynamic).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 404 => {
                        api.create(&PostParams::default(), &dynamic)
                            .await
                            .map_err(|e| client_err(what(), &e))?;
                    }
                    Err(e) => return Err(client_err(what(), &e)),
                }
            }
            Ok(())
        })
    }

    /// Deletes each object (gone already is fine).
    pub fn delete(&self, objects: &[Object]) -> Result<(), ApiServerError> {
        self.runtime.block_on(async {
            for object in objects {
                let (api, value) = self.api(object)?;
                let name = value
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(e) => return Err(client_err(object.id().to_string(), &e)),
                }
            }
            Ok(())
        })
    }

    /// Sends a `/lab/<control>` request (fault injection); returns its JSON answer.
    pub fn control(&self, control: &str, query: &str) -> Result<Value, ApiServerError> {
        let uri = if query.is_empty() {
            format!("/lab/{control}")
        } else {
            format!("/lab/{control}?{query}")
        };
        let request = ::http::Request::post(&uri)
            .body(Vec::new())
            .map_err(|e| client_err(&uri, &e))?;
        self.runtime.block_on(async {
            let text = self
                .client
                .request_text(request)
                .await
                .map_err(|e| client_err(&uri, &e))?;
            serde_json::from_str(&text).map_err(|e| client_err(&uri, &e))
        })
    }

    /// `GET path` (tests read events and objects this way).
    pub fn get(&self, path: &str) -> Result<Value, ApiServerError> {
        self.raw(::http::Method::GET, path, None)
    }

    /// `POST` a raw API object to the collection at `path` (tests plant what the lab
    /// itself would refuse to write).
    pub fn create_raw(&self, path: &str, object: &Value) -> Result<Value, ApiServerError> {
        self.raw(::http::Method::POST, path, Some(object))
    }

    /// `DELETE path` (tests remove what they planted, which the lab's commands do not
    /// know as objects); returns the object as it was.
    pub fn delete_raw(&self, path: &str) -> Result<Value, ApiServerError> {
        self.raw(::http::Method::DELETE, path, None)
    }

    fn raw(
        &self,
        method: ::http::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiServerError> {
        let mut request = ::http::Request::builder().method(method).uri(path);
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(body.map(|b| b.to_string().into_bytes()).unwrap_or_default())
            .map_err(|e| client_err(path, &e))?;
        self.runtime.block_on(async {
            let text = self
                .client
                .request_text(request)
                .await
                .map_err(|e| client_err(path, &e))?;
            serde_json::from_str(&text).map_err(|e| client_err(path, &e))
        })
    }
}
