//! Random Services with backends, and the Calico rule sides that match them
//! (`destination.services` in egress rules, `source.services` in ingress rules).
//!
//! A Service gets its backends from the pods its selector picks (target port by
//! number or by container port name), or, without a selector, from an `Endpoints` or
//! `EndpointSlice` object naming pod or external addresses. No Service has a front-end
//! (cluster IP, external IP, node port): a front-end is a Service VIP the pod programs
//! defer to the hook that sees the translated packet, which `BPF_PROG_TEST_RUN` of one
//! hook cannot follow; the rule matches are about the backends only.

use std::net::IpAddr;

use serde_json::{Value, json};

use super::{Gen, NAMESPACES};

/// Service names rules refer to; `svc2` exists in no cluster (a match on it matches
/// nothing).
const NAMES: [&str; 3] = ["svc0", "svc1", "svc2"];

/// Addresses a selector-less Service's endpoints may have besides pods' (in
/// [`super::EXTERNAL`]).
const OUTSIDE: [&str; 3] = ["10.0.0.5", "10.0.1.5", "fd00::5"];

/// A Service port (protocol, port, target port) and its name.
fn service_port(g: &mut Gen, name: &str) -> Value {
    match g.below(4) {
        0 => json!({"name": name, "port": 80, "targetPort": *g.pick(&[80, 8080, 81])}),
        1 => json!({"name": name, "port": 80, "targetPort": "http"}),
        2 => {
            json!({"name": name, "port": 53, "protocol": "UDP", "targetPort": g.pick(&[json!(53), json!("dns")])})
        }
        _ => json!({"name": name, "port": 90, "protocol": "SCTP"}),
    }
}

/// Services `svc0`, `svc1` (some of them), and for those without a selector the
/// `Endpoints`/`EndpointSlice` objects their owner wrote. `objects` are the cluster's
/// so far: a Service is mostly in the namespace of a pod, and selects its `app`.
pub(super) fn services(g: &mut Gen, objects: &[Value]) -> Vec<Value> {
    let pods: Vec<&Value> = objects.iter().filter(|o| o["kind"] == "Pod").collect();
    let addrs: Vec<IpAddr> = pods
        .iter()
        .filter_map(|p| p["status"]["podIPs"].as_array())
        .flatten()
        .filter_map(|ip| ip["ip"].as_str()?.parse().ok())
        .collect();
    let mut out = Vec::new();
    for name in &NAMES[..2] {
        if !g.chance(60) {
            continue;
        }
        let like = (!pods.is_empty() && g.chance(80)).then(|| *g.pick(&pods));
        let namespace = like
            .and_then(|p| p["metadata"]["namespace"].as_str())
            .unwrap_or_else(|| *g.pick(&NAMESPACES));
        let app = like
            .and_then(|p| p["metadata"]["labels"]["app"].as_str())
            .unwrap_or_else(|| *g.pick(&["web", "db", "api"]));
        let ports: Vec<Value> = (0..=g.below(2))
            .map(|k| service_port(g, &format!("p{k}")))
            .collect();
        let mut spec = json!({"ports": ports});
        if g.chance(30) {
            spec["clusterIP"] = json!("None");
        }
        let selector = g.chance(60);
        if selector {
            spec["selector"] = json!({"app": app});
        }
        out.push(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }));
        if !selector {
            out.push(backends(g, name, namespace, &ports, &addrs));
        }
    }
    out
}

/// The backends of a selector-less Service: 1-3 addresses, as an `Endpoints` object or
/// an `EndpointSlice` of one family.
fn backends(g: &mut Gen, name: &str, namespace: &str, ports: &[Value], addrs: &[IpAddr]) -> Value {
    let mut pool: Vec<IpAddr> = addrs.to_vec();
    pool.extend(OUTSIDE.iter().filter_map(|a| a.parse::<IpAddr>().ok()));
    let mut chosen: Vec<IpAddr> = (0..=g.below(3)).map(|_| *g.pick(&pool)).collect();
    chosen.sort_unstable();
    chosen.dedup();
    // The backend listens on the target port when it is a number, else on the port.
    let endpoint_ports: Vec<Value> = ports
        .iter()
        .map(|p| {
            let port = p["targetPort"].as_u64().unwrap_or_else(|| {
                if g.chance(50) {
                    p["port"].as_u64().unwrap_or(80)
                } else {
                    8080
                }
            });
            let mut e = json!({"name": p["name"], "port": port});
            if let Some(proto) = p.get("protocol") {
                e["protocol"] = proto.clone();
            }
            e
        })
        .collect();
    if g.chance(50) {
        let addresses: Vec<Value> = chosen.iter().map(|a| json!({"ip": a})).collect();
        return json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": name, "namespace": namespace},
            "subsets": [{"addresses": addresses, "ports": endpoint_ports}],
        });
    }
    let v4 = chosen.first().is_none_or(IpAddr::is_ipv4);
    let endpoints: Vec<Value> = chosen
        .iter()
        .filter(|a| a.is_ipv4() == v4)
        .map(|a| {
            let mut e = json!({"addresses": [a]});
            if g.chance(20) {
                e["conditions"] = json!({"ready": g.chance(50)});
            }
            e
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{name}-x"), "namespace": namespace,
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": if v4 { "IPv4" } else { "IPv6" },
        "endpoints": endpoints,
        "ports": endpoint_ports,
    })
}

/// A rule side that is only a `services` match (libcalico-go refuses any selector,
/// nets or, in a destination, ports beside it): mostly one of the cluster's Services
/// (`known`: namespace, name), else any name. A global policy must name the
/// namespace; a namespaced one (in `namespace`) defaults to its own.
pub(super) fn services_side(
    g: &mut Gen,
    namespace: Option<&str>,
    known: &[(String, String)],
) -> Value {
    let (ns, name) = if !known.is_empty() && g.chance(80) {
        let (ns, name) = g.pick(known);
        (ns.clone(), name.clone())
    } else {
        (
            (*g.pick(&NAMESPACES)).to_owned(),
            (*g.pick(&NAMES)).to_owned(),
        )
    };
    let mut svc = json!({"name": name});
    if namespace != Some(ns.as_str()) || g.chance(50) {
        svc["namespace"] = json!(ns);
    }
    json!({"services": svc})
}
