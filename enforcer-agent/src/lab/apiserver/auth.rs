//! Who may do what on the lab's API server: bearer tokens, and for the agent's token
//! the RBAC rules the agent's `ClusterRole` grants ([`required_rules`], which a test
//! compares with `deploy/kubernetes/`). A rule can be taken away and given back while
//! the server runs, to show what the agent does with a 403.

use std::collections::BTreeSet;
use std::sync::Mutex;

use crate::datastore::kubernetes::resources::{Rule, required_rules};

/// The identity behind a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// The lab's own commands: everything.
    Admin,
    /// The agents: what the `ClusterRole` grants.
    Agent,
}

/// The user name a real cluster would give the agent's service account.
pub const AGENT_USER: &str = "system:serviceaccount:kube-system:enforcer";

pub struct Access {
    admin_token: String,
    agent_token: String,
    rules: Vec<Rule>,
    /// (group, resource) taken away from the agent.
    revoked: Mutex<BTreeSet<(String, String)>>,
}

impl Access {
    pub fn new(admin_token: String, agent_token: String) -> Self {
        Self {
            admin_token,
            agent_token,
            rules: required_rules(),
            revoked: Mutex::new(BTreeSet::new()),
        }
    }

    /// The identity of a request's `Authorization` header.
    pub fn who(&self, authorization: Option<&str>) -> Option<Who> {
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        if token == self.admin_token {
            Some(Who::Admin)
        } else if token == self.agent_token {
            Some(Who::Agent)
        } else {
            None
        }
    }

    /// Whether `who` may `verb` the resource.
    pub fn allows(&self, who: Who, verb: &str, group: &str, resource: &str) -> bool {
        match who {
            Who::Admin => true,
            Who::Agent => {
                let revoked = self
                    .revoked
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                !revoked.contains(&(group.to_owned(), resource.to_owned()))
                    && self.rules.iter().any(|r| {
                        r.group == group
                            && r.resource == resource
                            && r.verbs.iter().any(|v| v == verb)
                    })
            }
        }
    }

    /// Takes the agent's permissions on a resource away (`revoke`) or gives them back.
    pub fn set_revoked(&self, group: &str, resource: &str, revoke: bool) {
        let mut revoked = self
            .revoked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = (group.to_owned(), resource.to_owned());
        if revoke {
            revoked.insert(entry);
        } else {
            revoked.remove(&entry);
        }
    }
}

/// The message a Kubernetes API server gives for a 403.
pub fn forbidden_message(
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
) -> String {
    let scope = match namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_owned(),
    };
    format!(
        "{resource} is forbidden: User \"{AGENT_USER}\" cannot {verb} resource \"{resource}\" in API group \"{group}\" {scope}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_gets_exactly_its_rules() {
        let access = Access::new("a".into(), "g".into());
        assert_eq!(access.who(Some("Bearer a")), Some(Who::Admin));
        assert_eq!(access.who(Some("Bearer g")), Some(Who::Agent));
        assert_eq!(access.who(Some("Bearer x")), None);
        assert_eq!(access.who(None), None);
        assert!(access.allows(Who::Agent, "watch", "", "pods"));
        assert!(!access.allows(Who::Agent, "create", "", "pods"));
        assert!(!access.allows(Who::Agent, "list", "", "secrets"));
        assert!(access.allows(Who::Agent, "create", "events.k8s.io", "events"));
        access.set_revoked("", "pods", true);
        assert!(!access.allows(Who::Agent, "list", "", "pods"));
        assert!(access.allows(Who::Admin, "list", "", "pods"));
        access.set_revoked("", "pods", false);
        assert!(access.allows(Who::Agent, "list", "", "pods"));
    }
}
