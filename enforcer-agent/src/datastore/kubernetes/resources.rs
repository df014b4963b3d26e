//! The API resources the Kubernetes datastore reads, in one table: what is watched,
//! where the API serves it, and which model kind it becomes. Everything else derives
//! from it: the watchers, the RBAC rules the agent needs (a test compares them with
//! `deploy/kubernetes/`), and the lab's API server, which serves the same table.
//!
//! Calico's kinds come in two API groups with the same spec schema: the CRDs Calico
//! installs (`crd.projectcalico.org/v1`, what calico-node itself reads) and, when
//! Calico's API server runs, the aggregated `projectcalico.org/v3` view of the same
//! objects. The agent reads v3 when the cluster serves it (its names are the ones users
//! wrote) and the CRDs otherwise, never both.

use crate::model::{KIND_CALICO_NETWORK_POLICY, KIND_GLOBAL_NETWORK_POLICY};

/// One API resource (a REST collection) the agent lists and watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resource {
    /// API group (`""` for the core group).
    pub group: &'static str,
    pub version: &'static str,
    /// `kind` of its objects.
    pub kind: &'static str,
    /// The collection's name in URLs and RBAC rules.
    pub plural: &'static str,
    pub namespaced: bool,
    /// `ObjectId::kind` of the model object it becomes.
    pub model_kind: &'static str,
}

impl Resource {
    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods` or `networkpolicies.crd.projectcalico.org`, for messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The collection's path, cluster-wide: `/api/v1/pods`,
    /// `/apis/crd.projectcalico.org/v1/tiers`.
    pub fn cluster_path(&self) -> String {
        format!("{}/{}", group_path(self.group, self.version), self.plural)
    }

    /// Whether this is one of Calico's kinds (either API group).
    pub fn is_calico(&self) -> bool {
        self.group == CALICO_CRD_GROUP || self.group == CALICO_V3_GROUP
    }
}

/// `/api/v1` or `/apis/<group>/<version>`.
pub fn group_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

pub const CALICO_CRD_GROUP: &str = "crd.projectcalico.org";
pub const CALICO_CRD_VERSION: &str = "v1";
pub const CALICO_V3_GROUP: &str = "projectcalico.org";
pub const CALICO_V3_VERSION: &str = "v3";

const fn core(kind: &'static str, plural: &'static str, namespaced: bool) -> Resource {
    Resource {
        group: "",
        version: "v1",
        kind,
        plural,
        namespaced,
        model_kind: kind,
    }
}

/// The API group and version of network-policy-api's kinds (its CRDs).
pub const ADMIN_GROUP: &str = "policy.networking.k8s.io";
pub const ADMIN_VERSION: &str = "v1alpha1";

const fn admin(kind: &'static str, plural: &'static str) -> Resource {
    Resource {
        group: ADMIN_GROUP,
        version: ADMIN_VERSION,
        kind,
        plural,
        namespaced: false,
        model_kind: kind,
    }
}

/// The Kubernetes resources: always read. `AdminNetworkPolicy` and
/// `BaselineAdminNetworkPolicy` are CRDs a cluster may not have installed: their
/// reflectors read a 404 as an empty list (and look again later), as for Calico's.
pub const KUBERNETES: &[Resource] = &[
    core("Namespace", "namespaces", false),
    core("Pod", "pods", true),
    core("Service", "services", true),
    Resource {
        group: "networking.k8s.io",
        version: "v1",
        kind: "NetworkPolicy",
        plural: "networkpolicies",
        namespaced: true,
        model_kind: crate::model::KIND_K8S_NETWORK_POLICY,
    },
    admin("AdminNetworkPolicy", "adminnetworkpolicies"),
    admin("BaselineAdminNetworkPolicy", "baselineadminnetworkpolicies"),
    // Every node's addresses: the sources tunnel packets are accepted from, and what an
    // AdminNetworkPolicy `nodes` peer selects.
    core("Node", "nodes", false),
    // A selector-less Service's backends, for rule `services` matches (and the
    // backends a selector's pods stand for): without them such a match named no
    // address on a cluster, while the files and the lab resolved it.
    core("Endpoints", "endpoints", true),
    Resource {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        plural: "endpointslices",
        namespaced: true,
        model_kind: "EndpointSlice",
    },
];

const fn calico(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    model_kind: &'static str,
) -> Resource {
    Resource {
        group,
        version,
        kind,
        plural,
        namespaced,
        model_kind,
    }
}

macro_rules! calico_group {
    ($group:expr, $version:expr) => {
        [
            calico(
                $group,
                $version,
                "GlobalNetworkPolicy",
                "globalnetworkpolicies",
                false,
                KIND_GLOBAL_NETWORK_POLICY,
            ),
            calico(
                $group,
                $version,
                "NetworkPolicy",
                "networkpolicies",
                true,
                KIND_CALICO_NETWORK_POLICY,
            ),
            calico($group, $version, "Tier", "tiers", false, "Tier"),
            calico(
                $group,
                $version,
                "GlobalNetworkSet",
                "globalnetworksets",
                false,
                "GlobalNetworkSet",
            ),
            calico(
                $group,
                $version,
                "NetworkSet",
                "networksets",
                true,
                "NetworkSet",
            ),
            calico(
                $group,
                $version,
                "HostEndpoint",
                "hostendpoints",
                false,
                "HostEndpoint",
            ),
        ]
    };
}

/// Calico's kinds as the CRDs store them.
pub const CALICO_CRDS: &[Resource] = &calico_group!(CALICO_CRD_GROUP, CALICO_CRD_VERSION);
/// Calico's kinds as Calico's API server serves them.
pub const CALICO_V3: &[Resource] = &calico_group!(CALICO_V3_GROUP, CALICO_V3_VERSION);

/// Which form of Calico's kinds to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalicoSource {
    /// `crd.projectcalico.org/v1`.
    Crds,
    /// `projectcalico.org/v3` (Calico's API server is installed).
    V3,
}

/// Everything the agent watches when Calico's kinds come from `calico`.
pub fn watched(calico: CalicoSource) -> Vec<Resource> {
    let calico = match calico {
        CalicoSource::Crds => CALICO_CRDS,
        CalicoSource::V3 => CALICO_V3,
    };
    KUBERNETES.iter().chain(calico).copied().collect()
}

/// One RBAC rule: verbs on resources of an API group.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    pub group: String,
    pub resource: String,
    pub verbs: Vec<String>,
}

/// Verbs the watchers use on every resource they read: a paginated list, then watch.
pub const READ_VERBS: &[&str] = &["list", "watch"];
/// Events the agent records about refused objects (`events.k8s.io/v1`, through
/// kube-runtime's recorder, which patches a repeated event's series).
pub const EVENT_GROUP: &str = "events.k8s.io";
pub const EVENT_VERBS: &[&str] = &["create", "patch"];

/// Every permission the agent uses, one rule per (group, resource), sorted: what the
/// watchers of both Calico forms read, and the events it writes. `deploy/kubernetes/`
/// must grant exactly these.
pub fn required_rules() -> Vec<Rule> {
    let mut rules: Vec<Rule> = KUBERNETES
        .iter()
        .chain(CALICO_CRDS)
        .chain(CALICO_V3)
        .map(|r| Rule {
            group: r.group.to_owned(),
            resource: r.plural.to_owned(),
            verbs: READ_VERBS.iter().map(|v| (*v).to_owned()).collect(),
        })
        .collect();
    rules.push(Rule {
        group: EVENT_GROUP.to_owned(),
        resource: "events".to_owned(),
        verbs: EVENT_VERBS.iter().map(|v| (*v).to_owned()).collect(),
    });
    rules.sort();
    rules.dedup();
    rules
}

/// The resource serving `api_version` and `kind`, among everything the agent knows.
pub fn by_kind(api_version: &str, kind: &str) -> Option<Resource> {
    KUBERNETES
        .iter()
        .chain(CALICO_CRDS)
        .chain(CALICO_V3)
        .find(|r| r.kind == kind && r.api_version() == api_version)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::admin::ADMIN_API_VERSION;

    #[test]
    fn paths_and_names() {
        let pods = KUBERNETES[1];
        assert_eq!(pods.cluster_path(), "/api/v1/pods");
        assert_eq!(pods.api_version(), "v1");
        let gnp = CALICO_CRDS[0];
        assert_eq!(
            gnp.cluster_path(),
            "/apis/crd.projectcalico.org/v1/globalnetworkpolicies"
        );
        assert_eq!(
            gnp.qualified(),
            "globalnetworkpolicies.crd.projectcalico.org"
        );
        assert!(gnp.is_calico() && !pods.is_calico());
        assert_eq!(
            by_kind("projectcalico.org/v3", "NetworkPolicy").map(|r| r.model_kind),
            Some(KIND_CALICO_NETWORK_POLICY)
        );
        assert_eq!(
            by_kind("networking.k8s.io/v1", "NetworkPolicy").map(|r| r.model_kind),
            Some("NetworkPolicy")
        );
        let banp = by_kind(ADMIN_API_VERSION, "BaselineAdminNetworkPolicy")
            .unwrap_or_else(|| panic!("BaselineAdminNetworkPolicy is not watched"));
        assert_eq!(
            banp.cluster_path(),
            "/apis/policy.networking.k8s.io/v1alpha1/baselineadminnetworkpolicies"
        );
        assert!(!banp.namespaced && !banp.is_calico());
    }

    #[test]
    fn the_watched_set_reads_one_calico_form() {
        let crds = watched(CalicoSource::Crds);
        for set in [&crds, &watched(CalicoSource::V3)] {
            assert!(set.iter().any(|r| r.kind == "AdminNetworkPolicy"));
        }
        assert!(crds.iter().all(|r| r.group != CALICO_V3_GROUP));
        assert_eq!(crds.iter().filter(|r| r.is_calico()).count(), 6);
        let v3 = watched(CalicoSource::V3);
        assert!(v3.iter().all(|r| r.group != CALICO_CRD_GROUP));
    }

    #[test]
    fn rules_cover_both_calico_forms_and_events() {
        let rules = required_rules();
        assert!(
            rules
                .iter()
                .any(|r| r.group == CALICO_CRD_GROUP && r.resource == "tiers")
        );
        assert!(
            rules
                .iter()
                .any(|r| r.group == CALICO_V3_GROUP && r.resource == "tiers")
        );
        assert!(
            rules.iter().any(|r| r.group.is_empty()
                && r.resource == "pods"
                && r.verbs == ["list", "watch"])
        );
        assert!(
            rules
                .iter()
                .any(|r| r.group == EVENT_GROUP && r.verbs == ["create", "patch"])
        );
        for plural in ["adminnetworkpolicies", "baselineadminnetworkpolicies"] {
            assert!(
                rules
                    .iter()
                    .any(|r| r.group == ADMIN_GROUP && r.resource == plural),
                "{plural}"
            );
        }
    }
}
