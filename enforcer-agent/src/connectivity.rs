//! The connectivity matrix's vocabulary, shared by `enforcer matrix` (the evaluator's
//! verdicts, no lab) and `enforcer lab probe` (real packets): what to probe
//! ([`ProbeRequest`]), the flows a request stands for ([`plan`]) and one result
//! ([`ProbeResult`], the JSON both commands print). Both plan with the same function
//! over the same pods, so they name the same flows.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cluster::PlannedPod;
use crate::model::{Pod, Service};

#[derive(Debug, thiserror::Error)]
pub enum ConnectivityError {
    #[error("bad {flag} {value:?}: expected {expected}")]
    BadSelector {
        flag: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{flag} {value:?} matches no {what}")]
    NoMatch {
        flag: &'static str,
        value: String,
        what: &'static str,
    },
    #[error("Service {service} has no {what} (headless, or not of that family?)")]
    NoServiceAddress { service: String, what: &'static str },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
}

impl Protocol {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
        }
    }
}

/// What to probe. Empty `from`/`to` mean every pod.
#[derive(Clone, Debug, Default)]
pub struct ProbeRequest {
    /// `NS/POD`, `NS/*` or `*`.
    pub from: Vec<String>,
    /// `NS/POD`, `NS/*`, `*`, `svc/NS/NAME` or `svc/NS/*`.
    pub to: Vec<String>,
    pub port: Option<u16>,
    pub protocol: Option<Protocol>,
    /// Probe pods' and Services' IPv6 addresses instead of IPv4.
    pub ipv6: bool,
    /// Probe Services' `externalIPs` and load balancer addresses instead of their
    /// `ClusterIPs`.
    pub service_external: bool,
    /// Send from this source port (`None`: the kernel's, or the UDP rotation).
    pub source_port: Option<u16>,
    pub timeout: Duration,
}

/// One line of `lab probe -o json` and `matrix -o json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub from: String,
    pub to: String,
    pub port: u16,
    pub protocol: Protocol,
    pub connected: bool,
    /// `connected`, `refused`, `timeout`, `unreachable` or `error: ...` (probes), or
    /// the leg that denies and why (`matrix`).
    pub result: String,
}

/// A pod as the planner sees it: its name, addresses and declared ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbePod {
    pub namespace: String,
    pub name: String,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
    /// Declared container ports with their protocols.
    pub ports: Vec<(u16, Protocol)>,
}

impl ProbePod {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// A planned pod with the ports its object declares.
    pub fn of(planned: &PlannedPod) -> Self {
        Self {
            namespace: planned.namespace().to_owned(),
            name: planned.name().to_owned(),
            ipv4: planned.ipv4,
            ipv6: planned.ipv6,
            ports: declared_ports(&planned.pod),
        }
    }
}

/// A pod's declared container ports (TCP and UDP) with their protocols.
pub fn declared_ports(pod: &Pod) -> Vec<(u16, Protocol)> {
    pod.spec
        .containers
        .iter()
        .flat_map(|c| &c.ports)
        .filter_map(|p| Protocol::parse(p.protocol()).map(|pr| (p.container_port, pr)))
        .collect()
}

/// One flow to probe or judge: from a pod (by key) to a target address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    pub from: String,
    /// The target's label: `NS/POD` or `svc/NS/NAME`.
    pub to: String,
    pub addr: SocketAddr,
    pub protocol: Protocol,
}

fn select_pods<'a>(
    pods: &'a BTreeMap<String, ProbePod>,
    flag: &'static str,
    value: &str,
) -> Result<Vec<&'a ProbePod>, ConnectivityError> {
    let matches: Vec<&ProbePod> = if value == "*" || value == "*/*" {
        pods.values().collect()
    } else {
        let Some((ns, name)) = value.split_once('/') else {
            return Err(ConnectivityError::BadSelector {
                flag,
                value: value.to_owned(),
                expected: "NS/POD, NS/* or *",
            });
        };
        pods.values()
            .filter(|p| p.namespace == ns && (name == "*" || p.name == name))
            .collect()
    };
    if matches.is_empty() {
        return Err(ConnectivityError::NoMatch {
            flag,
            value: value.to_owned(),
            what: "pod",
        });
    }
    Ok(matches)
}

/// Ports of a target: the declared ones (with their protocols) unless overridden.
fn ports_of(declared: &[(u16, Protocol)], req: &ProbeRequest) -> Vec<(u16, Protocol)> {
    let set: BTreeSet<(u16, Protocol)> = match req.port {
        Some(port) => {
            let protocols: Vec<Protocol> = if let Some(p) = req.protocol {
                vec![p]
            } else {
                let declared: Vec<Protocol> = declared
                    .iter()
                    .filter(|(p, _)| *p == port)
                    .map(|(_, pr)| *pr)
                    .collect();
                if declared.is_empty() {
                    vec![Protocol::Tcp]
                } else {
                    declared
                }
            };
            protocols.into_iter().map(|p| (port, p)).collect()
        }
        None => declared
            .iter()
            .map(|(port, p)| (*port, req.protocol.unwrap_or(*p)))
            .collect(),
    };
    set.into_iter().collect()
}

/// A probe target: label, address, declared ports, pod key if it is a pod.
struct Target {
    label: String,
    addr: IpAddr,
    ports: Vec<(u16, Protocol)>,
    pod: Option<String>,
}

fn service_targets(
    services: &[Service],
    value: &str,
    rest: &str,
    req: &ProbeRequest,
) -> Result<Vec<Target>, ConnectivityError> {
    let Some((ns, name)) = rest.split_once('/') else {
        return Err(ConnectivityError::BadSelector {
            flag: "--to",
            value: value.to_owned(),
            expected: "svc/NS/NAME or svc/NS/*",
        });
    };
    let matched: Vec<&Service> = services
        .iter()
        .filter(|s| {
            s.metadata.namespace.as_deref() == Some(ns) && (name == "*" || s.metadata.name == name)
        })
        .collect();
    if matched.is_empty() {
        return Err(ConnectivityError::NoMatch {
            flag: "--to",
            value: value.to_owned(),
            what: "Service",
        });
    }
    let mut targets = Vec::new();
    for svc in matched {
        let label = format!("svc/{ns}/{}", svc.metadata.name);
        let addresses = service_addresses(svc, req);
        if addresses.is_empty() {
            let what = match (req.service_external, req.ipv6) {
                (false, false) => "IPv4 ClusterIP",
                (false, true) => "IPv6 ClusterIP",
                (true, false) => "IPv4 external or load balancer address",
                (true, true) => "IPv6 external or load balancer address",
            };
            return Err(ConnectivityError::NoServiceAddress {
                service: label,
                what,
            });
        }
        let ports: Vec<(u16, Protocol)> = svc
            .spec
            .ports
            .iter()
            .filter_map(|p| Protocol::parse(p.protocol()).map(|pr| (p.port, pr)))
            .collect();
        for addr in addresses {
            targets.push(Target {
                label: label.clone(),
                addr,
                ports: ports.clone(),
                pod: None,
            });
        }
    }
    Ok(targets)
}

/// The addresses of `svc` a request probes: its cluster IP of the family, or its
/// external and load balancer addresses of the family.
fn service_addresses(svc: &Service, req: &ProbeRequest) -> Vec<IpAddr> {
    let candidates: Vec<&String> = if req.service_external {
        svc.external_addresses().collect()
    } else {
        svc.spec
            .cluster_ip
            .iter()
            .chain(&svc.spec.cluster_ips)
            .collect()
    };
    let mut addresses: Vec<IpAddr> = Vec::new();
    for ip in candidates
        .into_iter()
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
    {
        if ip.is_ipv6() == req.ipv6 && !addresses.contains(&ip) {
            addresses.push(ip);
        }
    }
    addresses
}

/// The flows a request stands for: every selected source to every selected target
/// (a pod never to itself), on the target's declared ports unless the request names
/// a port or protocol. `pods` is keyed by `NS/POD`.
pub fn plan(
    pods: &BTreeMap<String, ProbePod>,
    services: &[Service],
    req: &ProbeRequest,
) -> Result<Vec<Flow>, ConnectivityError> {
    let all = ["*".to_owned()];
    let from_sel = if req.from.is_empty() {
        &all[..]
    } else {
        &req.from[..]
    };
    let to_sel = if req.to.is_empty() {
        &all[..]
    } else {
        &req.to[..]
    };
    let mut sources: Vec<&ProbePod> = Vec::new();
    for value in from_sel {
        for p in select_pods(pods, "--from", value)? {
            if !sources.iter().any(|s| s.key() == p.key()) {
                sources.push(p);
            }
        }
    }
    let mut targets: Vec<Target> = Vec::new();
    for value in to_sel {
        if let Some(rest) = value.strip_prefix("svc/") {
            targets.extend(service_targets(services, value, rest, req)?);
        } else {
            for p in select_pods(pods, "--to", value)? {
                targets.push(Target {
                    label: p.key(),
                    addr: if req.ipv6 {
                        IpAddr::V6(p.ipv6)
                    } else {
                        IpAddr::V4(p.ipv4)
                    },
                    ports: p.ports.clone(),
                    pod: Some(p.key()),
                });
            }
        }
    }
    let mut flows = Vec::new();
    for src in &sources {
        for target in &targets {
            if target.pod.as_deref() == Some(src.key().as_str()) {
                continue; // a pod reaching itself never leaves its netns
            }
            for (port, protocol) in ports_of(&target.ports, req) {
                flows.push(Flow {
                    from: src.key(),
                    to: target.label.clone(),
                    addr: SocketAddr::new(target.addr, port),
                    protocol,
                });
            }
        }
    }
    Ok(flows)
}

#[cfg(test)]
#[expect(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
mod tests {
    use super::*;

    fn pod(ns: &str, name: &str, last: u8, ports: &[(u16, Protocol)]) -> (String, ProbePod) {
        let p = ProbePod {
            namespace: ns.into(),
            name: name.into(),
            ipv4: Ipv4Addr::new(198, 18, 0, last),
            ipv6: format!("2001:2::{last:x}").parse().unwrap(),
            ports: ports.to_vec(),
        };
        (p.key(), p)
    }

    #[test]
    fn every_source_to_every_other_pod_on_declared_ports() {
        let pods: BTreeMap<_, _> = [
            pod("a", "x", 10, &[(80, Protocol::Tcp)]),
            pod("a", "y", 11, &[(53, Protocol::Udp), (53, Protocol::Tcp)]),
            pod("b", "z", 12, &[]),
        ]
        .into();
        let flows = plan(&pods, &[], &ProbeRequest::default()).unwrap();
        let names: Vec<String> = flows
            .iter()
            .map(|f| {
                format!(
                    "{}->{}:{}/{}",
                    f.from,
                    f.to,
                    f.addr.port(),
                    f.protocol.as_str()
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                "a/x->a/y:53/TCP",
                "a/x->a/y:53/UDP",
                "a/y->a/x:80/TCP",
                "b/z->a/x:80/TCP",
                "b/z->a/y:53/TCP",
                "b/z->a/y:53/UDP",
            ]
        );
        let req = ProbeRequest {
            from: vec!["b/*".into()],
            to: vec!["a/x".into()],
            port: Some(9),
            ipv6: true,
            ..ProbeRequest::default()
        };
        let flows = plan(&pods, &[], &req).unwrap();
        assert_eq!(flows.len(), 1);
        assert_eq!(flows[0].addr, "[2001:2::a]:9".parse().unwrap());
        assert_eq!(flows[0].protocol, Protocol::Tcp);
        assert!(matches!(
            plan(
                &pods,
                &[],
                &ProbeRequest {
                    from: vec!["c/*".into()],
                    ..ProbeRequest::default()
                }
            ),
            Err(ConnectivityError::NoMatch { .. })
        ));
    }

    #[test]
    fn a_service_is_probed_on_the_address_of_the_family_and_kind_asked_for() {
        let pods: BTreeMap<_, _> = [pod("a", "x", 10, &[])].into();
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "a"},
            "spec": {
                "clusterIP": "198.19.0.11",
                "clusterIPs": ["198.19.0.11", "2001:2:0:19::b"],
                "externalIPs": ["198.19.255.200"],
                "ports": [{"port": 80}],
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "2001:2:0:e1::1"}]}},
        }))
        .unwrap();
        let addrs = |ipv6: bool, service_external: bool| -> Vec<String> {
            let req = ProbeRequest {
                from: vec!["a/x".into()],
                to: vec!["svc/a/web".into()],
                ipv6,
                service_external,
                ..ProbeRequest::default()
            };
            plan(&pods, std::slice::from_ref(&svc), &req)
                .unwrap()
                .iter()
                .map(|f| f.addr.to_string())
                .collect()
        };
        assert_eq!(addrs(false, false), ["198.19.0.11:80"]);
        assert_eq!(addrs(true, false), ["[2001:2:0:19::b]:80"]);
        assert_eq!(addrs(false, true), ["198.19.255.200:80"]);
        assert_eq!(addrs(true, true), ["[2001:2:0:e1::1]:80"]);
        let mut single = svc.clone();
        single.spec.cluster_ips.truncate(1);
        let req = ProbeRequest {
            to: vec!["svc/a/web".into()],
            ipv6: true,
            ..ProbeRequest::default()
        };
        assert!(matches!(
            plan(&pods, &[single], &req),
            Err(ConnectivityError::NoServiceAddress { .. })
        ));
    }
}
