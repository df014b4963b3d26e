//! The names the cluster DNS serves, as the Kubernetes DNS specification gives them:
//! `<service>.<namespace>.svc.cluster.local` → the cluster IPs (A, and AAAA for an IPv6
//! or dual-stack Service; headless Services: the selected pods' addresses),
//! `<a-b-c-d>.<namespace>.pod.cluster.local` → the pod, and PTR records for pod and
//! `ClusterIP` addresses. Serving them is someone else's job
//! (the lab's DNS pod); this is the zone's content.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::model::Service;

use super::plan::PlannedPod;

pub const DOMAIN: &str = "cluster.local";

/// Records of one name.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Records {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub a: Vec<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aaaa: Vec<Ipv6Addr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ptr: Vec<String>,
}

/// Lowercase names without the trailing dot → records.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Zone {
    pub records: BTreeMap<String, Records>,
}

/// The reverse-lookup name of an address (`in-addr.arpa` / `ip6.arpa`).
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::new();
            for byte in v6.octets().iter().rev() {
                let _ = write!(s, "{:x}.{:x}.", byte & 0xf, byte >> 4);
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

impl Zone {
    /// The records for `services` and `pods`.
    pub fn build(services: &[Service], pods: &BTreeMap<String, PlannedPod>) -> Self {
        let mut zone = Zone::default();
        for pod in pods.values() {
            let name = format!(
                "{}.{}.pod.{DOMAIN}",
                pod.ipv4.to_string().replace('.', "-"),
                pod.namespace()
            );
            let rec = zone.records.entry(name.clone()).or_default();
            rec.a.push(pod.ipv4);
            rec.aaaa.push(pod.ipv6);
            for ip in [IpAddr::V4(pod.ipv4), IpAddr::V6(pod.ipv6)] {
                zone.records
                    .entry(reverse_name(ip))
                    .or_default()
                    .ptr
                    .push(name.clone());
            }
        }
        for svc in services {
            let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
            let name = format!("{}.{ns}.svc.{DOMAIN}", svc.metadata.name);
            let cluster_ips: Vec<IpAddr> = svc
                .spec
                .cluster_ip
                .iter()
                .chain(&svc.spec.cluster_ips)
                .filter_map(|ip| ip.parse().ok())
                .collect();
            if cluster_ips.is_empty() {
                // Headless: the selected pods themselves.
                let rec = zone.records.entry(name).or_default();
                for pod in pods.values().filter(|p| p.namespace() == ns) {
                    let selected = !svc.spec.selector.is_empty()
                        && svc
                            .spec
                            .selector
                            .iter()
                            .all(|(k, v)| pod.pod.metadata.labels.get(k) == Some(v));
                    if selected {
                        rec.a.push(pod.ipv4);
                        rec.aaaa.push(pod.ipv6);
                    }
                }
            } else {
                // A dual-stack Service answers A and AAAA, each with its address.
                for ip in cluster_ips {
                    let rec = zone.records.entry(name.clone()).or_default();
                    match ip {
                        IpAddr::V4(v4) if !rec.a.contains(&v4) => rec.a.push(v4),
                        IpAddr::V6(v6) if !rec.aaaa.contains(&v6) => rec.aaaa.push(v6),
                        _ => continue,
                    }
                    zone.records
                        .entry(reverse_name(ip))
                        .or_default()
                        .ptr
                        .push(name.clone());
                }
            }
        }
        zone
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
    fn reverse_names() {
        assert_eq!(
            reverse_name("198.19.0.10".parse().unwrap()),
            "10.0.19.198.in-addr.arpa"
        );
        assert!(reverse_name("2001:2::a".parse().unwrap()).starts_with("a.0.0.0.0.0.0.0"));
    }
}
