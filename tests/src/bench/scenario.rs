//! The synthetic clusters of the suite, all from `enforcer::testkit::synth` (seeded, so every run
//! benchmarks the same documents):
//!
//! - two local pods in namespace `bench` on `node1`: `client` (`app: bench-client`) and
//!   `server` (`app: bench-server`, port 8080/TCP declared); traffic always goes from
//!   the client to the server;
//! - background pods on `node2` (remote: peers only, no netns in a lab), whose labels
//!   the rules' selectors pick;
//! - [`rule_set`]: policies selecting the server holding `rules` ingress rules, the
//!   last of which allows the client (`synth::targeted_policies`);
//! - [`scale`]: that, plus synthetic Kubernetes and Calico policies up to `policies`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use enforcer::model::Loaded;
use enforcer::policy::Cluster;
use enforcer::testkit::synth::{self, SynthParams, TargetedParams};
use serde_json::{Value, json};

use super::{BenchResult, Context as _};

pub const NAMESPACE: &str = "bench";
pub const CLIENT: &str = "client";
pub const SERVER: &str = "server";
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 11);
/// Generated pods start at this address index, clear of the two local pods.
const BACKGROUND_OFFSET: usize = 100;
/// Rules per targeted policy.
const RULES_PER_POLICY: usize = 100;
const SEED: u64 = 7;

fn local_pod(name: &str, app: &str, v4: Ipv4Addr, index: usize, ports: &Value) -> Value {
    let v6 = format!("2001:2::{index:x}");
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": app}},
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "ports": ports}]},
        "status": {"podIP": v4.to_string(), "podIPs": [{"ip": v4.to_string()}, {"ip": v6}]},
    })
}

/// The namespace and the two local pods.
fn locals() -> Vec<Value> {
    vec![
        json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": NAMESPACE, "labels": {"env": "bench"}},
        }),
        local_pod(CLIENT, "bench-client", CLIENT_V4, 10, &json!([])),
        local_pod(
            SERVER,
            "bench-server",
            SERVER_V4,
            11,
            &json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}]),
        ),
    ]
}

fn background(pods: usize, policies: usize) -> Vec<Value> {
    let k8s = policies * 4 / 5;
    synth::generate(&SynthParams {
        seed: SEED,
        namespaces: 50,
        pods,
        k8s_policies: k8s,
        calico_policies: policies - k8s,
        rules_per_policy: 1,
        apps: 200,
        node: "node2".to_owned(),
        address_offset: BACKGROUND_OFFSET,
    })
}

/// Number of policies [`targeted`] makes for `rules` rules.
pub fn targeted_policy_count(rules: usize) -> usize {
    rules.max(1).div_ceil(RULES_PER_POLICY)
}

/// The targeted policies of `rules` rules on the server.
pub fn targeted(rules: usize) -> Vec<Value> {
    synth::targeted_policies(&TargetedParams {
        seed: SEED,
        rules,
        rules_per_policy: RULES_PER_POLICY,
        namespace: NAMESPACE.to_owned(),
        // Selectors pick background apps app-0..app-31 (of 200).
        apps: 32,
        ..TargetedParams::default()
    })
}

/// `rules` rules on the server, `pods` background pods, no other policy.
pub fn rule_set(rules: usize, pods: usize) -> Vec<Value> {
    let mut docs = locals();
    docs.extend(background(pods, 0));
    docs.extend(targeted(rules));
    docs
}

/// `rules` rules on the server plus synthetic policies: `policies` policies in all.
pub fn scale(rules: usize, policies: usize, pods: usize) -> Vec<Value> {
    let mut docs = locals();
    let others = policies.saturating_sub(targeted_policy_count(rules));
    docs.extend(background(pods, others));
    docs.extend(targeted(rules));
    docs
}

/// The Cilium-comparison set of `p6`: `rules` rules over `pods` pods, each pod its own
/// label set (an "identity").
pub fn identities(rules: usize, pods: usize) -> Vec<Value> {
    let mut docs = synth::generate(&SynthParams {
        seed: SEED,
        namespaces: 30,
        pods,
        k8s_policies: rules / 2,
        calico_policies: 0,
        rules_per_policy: 2,
        apps: 300,
        node: "node1".to_owned(),
        address_offset: BACKGROUND_OFFSET,
    });
    // Make every label set unique: an identity per pod, as Cilium counts them.
    for d in &mut docs {
        if d["kind"] == "Pod"
            && let Some(name) = d["metadata"]["name"].as_str().map(str::to_owned)
        {
            d["metadata"]["labels"]["instance"] = json!(name);
        }
    }
    docs
}

/// Documents read back through the ordinary loader.
pub fn load(docs: &[Value]) -> BenchResult<Vec<Loaded>> {
    let mut out = Vec::with_capacity(docs.len());
    for d in docs {
        out.extend(
            enforcer::model::load_value(Path::new("synthetic"), d)
                .ctx("loading synthetic documents")?,
        );
    }
    Ok(out)
}

/// The unified model of the documents.
pub fn cluster(docs: &[Value]) -> BenchResult<Cluster> {
    let loaded = load(docs)?;
    let (cluster, _warnings) = Cluster::from_objects(&loaded).ctx("building the cluster")?;
    Ok(cluster)
}

/// Ingress rules of the policies that apply to the server's ingress.
pub fn server_rules(cluster: &Cluster) -> usize {
    let Some(server) = cluster
        .endpoints
        .iter()
        .find(|e| e.namespace == NAMESPACE && e.name == SERVER)
    else {
        return 0;
    };
    enforcer::eval::applicable_policies(cluster, server, enforcer::policy::Direction::Ingress)
        .iter()
        .map(|&p| cluster.policies[p].ingress.len())
        .sum()
}

/// Total rules of all policies.
pub fn total_rules(cluster: &Cluster) -> usize {
    cluster
        .policies
        .iter()
        .map(|p| p.ingress.len() + p.egress.len())
        .sum()
}

pub fn client_ip() -> IpAddr {
    IpAddr::V4(CLIENT_V4)
}

pub fn server_ip() -> IpAddr {
    IpAddr::V4(SERVER_V4)
}
