//! Reading YAML/JSON files (multi-document, directories, `List`) into objects.
//! MINIMAL: the policy-core work makes errors name file, object, field and line.

use std::path::{Path, PathBuf};

use super::Object;

/// Where an object came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub file: PathBuf,
    /// 0-based document index in the file.
    pub document: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    pub source: Source,
    pub object: Object,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: YAML syntax error: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: document {document}: {message}")]
    Object {
        path: PathBuf,
        document: usize,
        message: String,
    },
}

/// Loads every `.yaml`/`.yml`/`.json` file under the given files or directories.
pub fn load_paths(paths: &[PathBuf]) -> Result<Vec<Loaded>, LoadError> {
    let mut files = Vec::new();
    for path in paths {
        collect_files(path, &mut files)?;
    }
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| LoadError::Read {
            path: file.clone(),
            source,
        })?;
        out.extend(load_str(&file, &text)?);
    }
    Ok(out)
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let read_err = |source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    };
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(read_err)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            let is_manifest = entry
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json");
            if entry.is_dir() || is_manifest {
                collect_files(&entry, out)?;
            }
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// Parses one file's text.
pub fn load_str(path: &Path, text: &str) -> Result<Vec<Loaded>, LoadError> {
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(text).map_err(|e| LoadError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let mut out = Vec::new();
    for (document, doc) in docs.into_iter().enumerate() {
        if doc.is_null() {
            continue;
        }
        let err = |message: String| LoadError::Object {
            path: path.to_path_buf(),
            document,
            message,
        };
        let kind = doc.get("kind").and_then(|k| k.as_str()).unwrap_or_default().to_owned();
        let api = doc.get("apiVersion").and_then(|k| k.as_str()).unwrap_or_default().to_owned();
        let object = match (api.as_str(), kind.as_str()) {
            (_, "Namespace") => Object::Namespace(from_value(doc).map_err(err)?),
            (_, "Pod") => Object::Pod(from_value(doc).map_err(err)?),
            (_, "Deployment") => Object::Deployment(from_value(doc).map_err(err)?),
            (_, "Service") => Object::Service(from_value(doc).map_err(err)?),
            ("networking.k8s.io/v1", "NetworkPolicy") => {
                Object::NetworkPolicy(from_value(doc).map_err(err)?)
            }
            (_, "NetworkPolicy") => Object::CalicoNetworkPolicy(from_value(doc).map_err(err)?),
            (_, "GlobalNetworkPolicy") => Object::GlobalNetworkPolicy(from_value(doc).map_err(err)?),
            (_, "Tier") => Object::Tier(from_value(doc).map_err(err)?),
            (_, "NetworkSet") => Object::NetworkSet(from_value(doc).map_err(err)?),
            (_, "GlobalNetworkSet") => Object::GlobalNetworkSet(from_value(doc).map_err(err)?),
            (_, "HostEndpoint") => Object::HostEndpoint(from_value(doc).map_err(err)?),
            _ => return Err(err(format!("unknown kind {kind:?} (apiVersion {api:?})"))),
        };
        out.push(Loaded {
            source: Source {
                file: path.to_path_buf(),
                document,
            },
            object,
        });
    }
    Ok(out)
}

fn from_value<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}
