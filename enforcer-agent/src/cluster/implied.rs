//! What every cluster has although nobody declared it: the `default` and `kube-system`
//! Namespaces, a Namespace for every namespace objects use, the cluster DNS pod
//! (`kube-system/coredns-0`, `k8s-app: kube-dns`, 53 UDP and TCP) and the `kube-dns`
//! Service in front of it (198.19.0.10), as a kubeadm cluster has them.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::workload::{Container, ContainerPort, PodSpec, ServicePort, ServiceSpec};
use crate::model::{Namespace, Object, ObjectId, ObjectMeta, Pod, Service};

use super::addresses::DNS_SERVICE_IP;
use super::objects::Declared;

pub const DNS_NAMESPACE: &str = "kube-system";
pub const DNS_SERVICE: &str = "kube-dns";
pub const DNS_POD: &str = "coredns-0";
pub const DNS_LABEL: (&str, &str) = ("k8s-app", "kube-dns");

/// Whether a pod is a cluster DNS server (`kube-system`, `k8s-app: kube-dns`).
pub fn is_dns_pod(pod: &Pod) -> bool {
    pod.metadata.namespace.as_deref() == Some(DNS_NAMESPACE)
        && pod.metadata.labels.get(DNS_LABEL.0).map(String::as_str) == Some(DNS_LABEL.1)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn dns_pod() -> Pod {
    let port = |name: &str, protocol: &str| ContainerPort {
        name: Some(name.to_owned()),
        container_port: 53,
        protocol: Some(protocol.to_owned()),
        ..ContainerPort::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: DNS_POD.to_owned(),
            namespace: Some(DNS_NAMESPACE.to_owned()),
            labels: labels(&[DNS_LABEL]),
            ..ObjectMeta::default()
        },
        spec: PodSpec {
            containers: vec![Container {
                name: "coredns".to_owned(),
                image: Some("enforcer-lab-dns".to_owned()),
                ports: vec![port("dns", "UDP"), port("dns-tcp", "TCP")],
                ..Container::default()
            }],
            ..PodSpec::default()
        },
        status: None,
    }
}

fn dns_service() -> Service {
    let port = |name: &str, protocol: &str| ServicePort {
        name: Some(name.to_owned()),
        protocol: Some(protocol.to_owned()),
        port: 53,
        target_port: None,
        node_port: None,
    };
    Service {
        metadata: ObjectMeta {
            name: DNS_SERVICE.to_owned(),
            namespace: Some(DNS_NAMESPACE.to_owned()),
            labels: labels(&[DNS_LABEL]),
            ..ObjectMeta::default()
        },
        spec: ServiceSpec {
            selector: labels(&[DNS_LABEL]),
            ports: vec![port("dns", "UDP"), port("dns-tcp", "TCP")],
            service_type: None,
            cluster_ip: Some(DNS_SERVICE_IP.to_string()),
            ..ServiceSpec::default()
        },
        status: None,
    }
}

/// Adds the implied objects (module doc) that `declared` lacks; they have no source.
pub fn add_implied(declared: &mut BTreeMap<ObjectId, Declared>) {
    let add = |declared: &mut BTreeMap<ObjectId, Declared>, object: Object| {
        declared.entry(object.id()).or_insert(Declared {
            object,
            source: None,
        });
    };
    let has_dns_pod = declared.values().any(|d| match &d.object {
        Object::Pod(p) => is_dns_pod(p),
        Object::Deployment(dep) | Object::StatefulSet(dep) => dep.pods().iter().any(is_dns_pod),
        // Whatever the node: the template decides.
        Object::DaemonSet(ds) => ds.pods(["node"]).iter().any(is_dns_pod),
        _ => false,
    });
    if !has_dns_pod {
        add(declared, Object::Pod(dns_pod()));
    }
    add(declared, Object::Service(dns_service()));
    let mut namespaces: BTreeSet<String> = ["default", DNS_NAMESPACE]
        .into_iter()
        .map(str::to_owned)
        .collect();
    namespaces.extend(
        declared
            .values()
            .filter_map(|d| d.object.meta().namespace.clone()),
    );
    for name in namespaces {
        add(
            declared,
            Object::Namespace(Namespace {
                metadata: ObjectMeta {
                    name,
                    ..ObjectMeta::default()
                },
            }),
        );
    }
}
