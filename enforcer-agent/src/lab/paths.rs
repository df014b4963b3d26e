//! Names and places of everything a lab creates, derived from the lab name alone, so
//! that `lab down` can find it all again even when the state file is gone.

use std::path::{Path, PathBuf};

/// Where lab state directories live.
pub const STATE_ROOT: &str = "/run/enforcer/lab";
/// Where each lab's agent pins its BPF objects (`<root>/<lab>`).
pub const BPFFS_ROOT: &str = "/sys/fs/bpf/enforcer";
/// Per-netns files that `ip netns exec` bind-mounts over `/etc`.
pub const ETC_NETNS: &str = "/etc/netns";
/// Longest lab name: keeps netns names short and readable.
pub const MAX_NAME_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
#[error("invalid lab name {name:?}: use 1 to {MAX_NAME_LEN} lowercase letters or digits")]
pub struct NameError {
    pub name: String,
}

/// A validated lab name. Only `[a-z0-9]` so that the netns prefix `enf-<name>-` of one
/// lab can never be a prefix of another lab's names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabName(String);

impl LabName {
    pub fn new(name: &str) -> Result<Self, NameError> {
        let valid = !name.is_empty()
            && name.len() <= MAX_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(NameError {
                name: name.to_owned(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Every netns of this lab starts with this.
    pub fn netns_prefix(&self) -> String {
        format!("enf-{}-", self.0)
    }

    /// The node's netns: the pods' host-side veths, routes, Service NAT, the agent.
    pub fn node_netns(&self) -> String {
        format!("enf-{}-node", self.0)
    }

    /// A pod's netns: `enf-<lab>-<namespace>.<pod>` (the dot cannot occur in the node's).
    pub fn pod_netns(&self, namespace: &str, pod: &str) -> String {
        format!("enf-{}-{namespace}.{pod}", self.0)
    }

    pub fn bpffs_dir(&self) -> PathBuf {
        Path::new(BPFFS_ROOT).join(&self.0)
    }

    pub fn paths(&self) -> LabPaths {
        LabPaths {
            root: Path::new(STATE_ROOT).join(&self.0),
        }
    }
}

impl std::fmt::Display for LabName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Files under a lab's state directory `/run/enforcer/lab/<name>/`.
#[derive(Clone, Debug)]
pub struct LabPaths {
    pub root: PathBuf,
}

impl LabPaths {
    /// `state.json`: pods, addresses, netns names, pids.
    pub fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }
    /// Held (flock) by every command that changes the lab.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("lock")
    }
    /// The `FileDatastore` the agent watches.
    pub fn datastore(&self) -> PathBuf {
        self.root.join("datastore")
    }
    /// Process logs: `agent.log`, `<namespace>.<pod>.log`.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// Ready markers the pod processes write once their sockets are bound.
    pub fn run(&self) -> PathBuf {
        self.root.join("run")
    }
    /// The DNS zone (JSON) the DNS pod serves; rewritten on every change.
    pub fn zone_file(&self) -> PathBuf {
        self.root.join("dns-zone.json")
    }
    /// The last Service NAT ruleset loaded into the node netns.
    pub fn nft_file(&self) -> PathBuf {
        self.root.join("services.nft")
    }
    pub fn pod_log(&self, namespace: &str, pod: &str) -> PathBuf {
        self.logs().join(format!("{namespace}.{pod}.log"))
    }
    pub fn pod_ready(&self, namespace: &str, pod: &str) -> PathBuf {
        self.run().join(format!("{namespace}.{pod}.ready"))
    }
    pub fn agent_log(&self) -> PathBuf {
        self.logs().join("agent.log")
    }
    /// Kubernetes labs: the API server's listeners (`apiserver.json`), its bearer
    /// tokens, the agents' and the lab commands' kubeconfigs, its log.
    pub fn apiserver_endpoints(&self) -> PathBuf {
        self.root.join("apiserver.json")
    }
    pub fn tokens(&self) -> PathBuf {
        self.root.join("tokens.json")
    }
    pub fn kubeconfig(&self) -> PathBuf {
        self.root.join("kubeconfig")
    }
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.root.join("admin.kubeconfig")
    }
    pub fn apiserver_log(&self) -> PathBuf {
        self.logs().join("apiserver.log")
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
    fn names() {
        assert!(LabName::new("lab1").is_ok());
        for bad in ["", "a-b", "Lab", "a.b", "abcdefghijklm", "a/b"] {
            assert!(LabName::new(bad).is_err(), "{bad}");
        }
        let n = LabName::new("x").unwrap();
        assert_eq!(n.node_netns(), "enf-x-node");
        assert_eq!(
            n.pod_netns("dev-app", "backend-0"),
            "enf-x-dev-app.backend-0"
        );
        assert!(n.pod_netns("a", "b").starts_with(&n.netns_prefix()));
    }
}
