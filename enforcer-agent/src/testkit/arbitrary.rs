//! Random clusters and packets for differential tests: the compiler's property test
//! (`compile/tests.rs`, simulated lookups) and the BPF differential test
//! (`tests/tests/bpf_differential.rs`, the real programs under `BPF_PROG_TEST_RUN`).
//!
//! Everything is driven by a seed through [`Gen`], so a case is reproduced by its seed.
//! Clusters are lists of JSON documents (what a user would write), built into a
//! [`Cluster`] by [`build`]; [`minimise`] shrinks a failing case.
//!
//! A cluster has namespaces, pods (IPv4, IPv6 or both, named container ports, service
//! accounts), network sets, nodes, Services with backends ([`services`]), a tier, and
//! policies of every kind the agent enforces: Kubernetes `NetworkPolicy`, Calico
//! `NetworkPolicy`/`GlobalNetworkPolicy` (actions, protocols, ICMP type/code, nets,
//! selectors, namespace selectors, service accounts, ports, notPorts, ranges and named
//! ports, `services`, source ports and notPorts) and
//! `AdminNetworkPolicy`/`BaselineAdminNetworkPolicy` ([`admin`]).

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde_json::{Value, json};

use crate::eval::Packet;
use crate::model::load_value;
use crate::policy::Cluster;

mod admin;
mod minimise;
mod services;

pub use minimise::minimise;

/// Small deterministic generator; proptest supplies the seed (shrinking a seed is
/// meaningless, so failures are minimised by [`minimise`] instead).
pub struct Gen(pub u64);

impl Gen {
    /// A generator for `seed` (xorshift needs a non-zero state).
    pub fn new(seed: u64) -> Self {
        Gen(seed | 1)
    }
    #[expect(
        clippy::should_implement_trait,
        reason = "an endless generator, not an iterator"
    )]
    pub fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

pub const NAMESPACES: [&str; 3] = ["ns0", "ns1", "ns2"];
const V4_NETS: [&str; 7] = [
    "10.0.0.0/16",
    "10.0.1.0/24",
    "10.0.0.4/30",
    "10.0.1.5/32",
    "192.168.0.0/16",
    "0.0.0.0/0",
    "10.0.0.2/32",
];
const V6_NETS: [&str; 4] = ["fd00::/64", "fd00::4/126", "::/0", "fd00::3/128"];
const SELECTORS: [&str; 10] = [
    "app == 'web'",
    "has(tier)",
    "!has(tier)",
    "app in {'web', 'db'}",
    "tier != 'x'",
    "all()",
    "kind == 'ext'",
    "app == 'db' || kind == 'int'",
    "projectcalico.org/namespace == 'ns1'",
    "app not in {'api'}",
];
const NS_SELECTORS: [&str; 5] = [
    "team == 'a'",
    "all()",
    "global()",
    "!has(team)",
    "kubernetes.io/metadata.name == 'ns2'",
];
pub const EXTERNAL: [&str; 8] = [
    "10.0.0.200",
    "10.0.1.5",
    "10.0.0.5",
    "192.168.3.3",
    "8.8.8.8",
    "fd00::99",
    "fd00::5",
    "2001:db8::1",
];

fn labels(g: &mut Gen) -> Value {
    let mut m = serde_json::Map::new();
    if g.chance(80) {
        m.insert("app".into(), json!(g.pick(&["web", "db", "api"])));
    }
    if g.chance(40) {
        m.insert("tier".into(), json!(g.pick(&["x", "y"])));
    }
    Value::Object(m)
}

fn label_selector(g: &mut Gen) -> Value {
    let mut s = serde_json::Map::new();
    if g.chance(60) {
        s.insert(
            "matchLabels".into(),
            json!({"app": g.pick(&["web", "db", "api"])}),
        );
    }
    if g.chance(30) {
        let op = *g.pick(&["In", "NotIn", "Exists", "DoesNotExist"]);
        let mut e = json!({"key": g.pick(&["tier", "app"]), "operator": op});
        if op == "In" || op == "NotIn" {
            e["values"] = json!([g.pick(&["x", "web"]), "y"]);
        }
        s.insert("matchExpressions".into(), json!([e]));
    }
    Value::Object(s)
}

pub struct Generated {
    pub objects: Vec<Value>,
    pub packets: Vec<Packet>,
}

pub fn generate(seed: u64) -> Generated {
    let mut g = Gen(seed | 1);
    let mut objects = Vec::new();
    for ns in NAMESPACES {
        let mut meta = json!({"name": ns});
        if g.chance(50) {
            meta["labels"] = json!({"team": g.pick(&["a", "b"])});
        }
        objects.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta}));
    }
    let mut addrs: Vec<IpAddr> = Vec::new();
    let pods = 1 + g.below(6);
    for i in 0..pods {
        let v4 = format!("10.0.{}.{}", g.below(2), 1 + g.below(8));
        let mut ips = Vec::new();
        if !addrs.iter().any(|a| a.to_string() == v4) && g.chance(90) {
            ips.push(v4);
        }
        let v6 = format!("fd00::{}", 1 + g.below(8));
        if g.chance(40) && !addrs.iter().any(|a| a.to_string() == v6) {
            ips.push(v6);
        }
        if ips.is_empty() {
            continue;
        }
        addrs.extend(ips.iter().filter_map(|s| s.parse::<IpAddr>().ok()));
        let mut ports = Vec::new();
        if g.chance(60) {
            ports.push(json!({"name": "http", "containerPort": *g.pick(&[80, 8080, 81])}));
        }
        if g.chance(30) {
            ports.push(json!({"name": "dns", "containerPort": 53, "protocol": "UDP"}));
        }
        let ip_list: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
        let mut spec = json!({"containers": [{"name": "c", "ports": ports}]});
        if g.chance(20) {
            spec["serviceAccountName"] = json!("robot");
        }
        objects.push(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("pod{i}"), "namespace": g.pick(&NAMESPACES), "labels": labels(&mut g)},
            "spec": spec,
            "status": {"podIPs": ip_list},
        }));
    }
    for i in 0..g.below(3) {
        let nets: Vec<&str> = (0..=g.below(2))
            .map(|_| {
                if g.chance(70) {
                    *g.pick(&V4_NETS)
                } else {
                    *g.pick(&V6_NETS)
                }
            })
            .collect();
        let global = g.chance(50);
        let mut meta =
            json!({"name": format!("set{i}"), "labels": {"kind": g.pick(&["ext", "int"])}});
        if !global {
            meta["namespace"] = json!(g.pick(&NAMESPACES));
        }
        objects.push(json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": if global { "GlobalNetworkSet" } else { "NetworkSet" },
            "metadata": meta,
            "spec": {"nets": nets},
        }));
    }
    objects.extend(admin::nodes(&mut g));
    let svcs = services::services(&mut g, &objects);
    let known: Vec<(String, String)> = svcs
        .iter()
        .filter(|o| o["kind"] == "Service")
        .map(|o| {
            let meta = &o["metadata"];
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (text(&meta["namespace"]), text(&meta["name"]))
        })
        .collect();
    objects.extend(svcs);
    if g.chance(50) {
        objects.push(json!({
            "apiVersion": "projectcalico.org/v3", "kind": "Tier",
            "metadata": {"name": "t1"},
            "spec": {"order": *g.pick(&[10, 2_000_000]), "defaultAction": g.pick(&["Deny", "Pass"])},
        }));
    }
    let has_t1 = objects.iter().any(|o| o["kind"] == "Tier");
    for i in 0..g.below(5) {
        objects.push(match g.below(3) {
            0 => kubernetes_policy(&mut g, i),
            1 => {
                let ns = *g.pick(&NAMESPACES);
                calico_policy(&mut g, i, Some(ns), has_t1, &known)
            }
            _ => calico_policy(&mut g, i, None, has_t1, &known),
        });
    }
    if g.chance(30) {
        for i in 0..=g.below(2) {
            objects.push(admin::admin_network_policy(&mut g, i));
        }
    }
    if g.chance(25) {
        objects.push(admin::baseline_admin_network_policy(&mut g));
    }
    let mut pool: Vec<IpAddr> = addrs.clone();
    pool.extend(EXTERNAL.iter().filter_map(|s| s.parse::<IpAddr>().ok()));
    let mut packets = Vec::new();
    for _ in 0..16 {
        let src = if g.chance(70) && !addrs.is_empty() {
            *g.pick(&addrs)
        } else {
            *g.pick(&pool)
        };
        let same_family: Vec<IpAddr> = pool
            .iter()
            .copied()
            .filter(|a| a.is_ipv4() == src.is_ipv4() && *a != src)
            .collect();
        if same_family.is_empty() {
            continue;
        }
        let dst = *g.pick(&same_family);
        let proto = if src.is_ipv4() {
            *g.pick(&[6u8, 6, 17, 1, 132, 47])
        } else {
            *g.pick(&[6u8, 17, 58, 47])
        };
        let port = if g.chance(70) {
            *g.pick(&[
                53u16, 79, 80, 81, 90, 91, 443, 1000, 1500, 2001, 8080, 9090, 0, 65535,
            ])
        } else {
            g.next() as u16
        };
        packets.push(Packet {
            src,
            dst,
            proto,
            src_port: source_port(&mut g),
            dst_port: port,
            icmp_type: *g.pick(if src.is_ipv4() {
                &V4_ICMP_TYPES
            } else {
                &V6_ICMP_TYPES
            }),
            icmp_code: *g.pick(&ICMP_CODES),
        });
    }
    Generated { objects, packets }
}

fn k8s_ports(g: &mut Gen) -> Value {
    let ports: Vec<Value> = (0..g.below(3))
        .map(|_| {
            let mut p = serde_json::Map::new();
            let proto = *g.pick(&["TCP", "UDP", "SCTP"]);
            if g.chance(70) {
                p.insert("protocol".into(), json!(proto));
            }
            match g.below(4) {
                0 => {}
                1 => {
                    p.insert("port".into(), json!(g.pick(&["http", "dns"])));
                }
                2 => {
                    p.insert("port".into(), json!(*g.pick(&[53, 80, 443, 8080])));
                }
                _ => {
                    p.insert("port".into(), json!(80));
                    p.insert("endPort".into(), json!(*g.pick(&[80, 90, 1000])));
                }
            }
            Value::Object(p)
        })
        .collect();
    json!(ports)
}

fn k8s_peers(g: &mut Gen) -> Value {
    let peers: Vec<Value> = (0..g.below(3))
        .map(|_| match g.below(4) {
            0 => {
                let family_v4 = g.chance(75);
                let cidr = if family_v4 { *g.pick(&V4_NETS[..6]) } else { *g.pick(&V6_NETS[..3]) };
                let mut block = json!({"cidr": cidr});
                if g.chance(40) {
                    let inner = if family_v4 { "10.0.0.4/30" } else { "fd00::4/126" };
                    let cidr_net: IpNet = cidr.parse().unwrap_or_default();
                    let inner_net: IpNet = inner.parse().unwrap_or_default();
                    if cidr_net.contains(&inner_net) && cidr_net != inner_net {
                        block["except"] = json!([inner]);
                    }
                }
                json!({"ipBlock": block})
            }
            1 => json!({"podSelector": label_selector(g)}),
            2 => json!({"namespaceSelector": if g.chance(50) { json!({}) } else { json!({"matchLabels": {"team": g.pick(&["a", "b"])}}) }}),
            _ => json!({"podSelector": label_selector(g), "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": g.pick(&NAMESPACES)}}}),
        })
        .collect();
    json!(peers)
}

fn kubernetes_policy(g: &mut Gen, i: usize) -> Value {
    let mut spec = json!({"podSelector": label_selector(g)});
    if g.chance(70) {
        let rules: Vec<Value> = (0..g.below(3))
            .map(|_| json!({"from": k8s_peers(g), "ports": k8s_ports(g)}))
            .collect();
        spec["ingress"] = json!(rules);
    }
    if g.chance(60) {
        let rules: Vec<Value> = (0..g.below(3))
            .map(|_| json!({"to": k8s_peers(g), "ports": k8s_ports(g)}))
            .collect();
        spec["egress"] = json!(rules);
    }
    if g.chance(50) {
        spec["policyTypes"] = json!(match g.below(3) {
            0 => json!(["Ingress"]),
            1 => json!(["Egress"]),
            _ => json!(["Ingress", "Egress"]),
        });
    }
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": format!("knp{i}"), "namespace": g.pick(&NAMESPACES)},
        "spec": spec,
    })
}

/// A Calico rule side; `ports_ok`: the rule's protocol has ports, so the side may
/// have `ports`/`notPorts`.
fn calico_entity(g: &mut Gen, family_v4: bool, ports_ok: bool, proto: &str) -> Value {
    let mut e = serde_json::Map::new();
    let nets = |g: &mut Gen| -> Value {
        let list: Vec<&str> = (0..=g.below(2))
            .map(|_| {
                if family_v4 {
                    *g.pick(&V4_NETS)
                } else {
                    *g.pick(&V6_NETS)
                }
            })
            .collect();
        json!(list)
    };
    if g.chance(25) {
        e.insert("nets".into(), nets(g));
    }
    if g.chance(15) {
        e.insert("notNets".into(), nets(g));
    }
    if g.chance(40) {
        e.insert("selector".into(), json!(g.pick(&SELECTORS)));
    }
    if g.chance(15) {
        e.insert("notSelector".into(), json!(g.pick(&SELECTORS)));
    }
    if g.chance(15) {
        e.insert("namespaceSelector".into(), json!(g.pick(&NS_SELECTORS)));
    }
    if g.chance(8) {
        e.insert("serviceAccounts".into(), json!({"names": ["robot"]}));
    }
    if ports_ok {
        let port = |g: &mut Gen| -> Value {
            match g.below(5) {
                0 => json!(80),
                1 => json!("80:90"),
                2 => json!(if proto == "UDP" { "dns" } else { "http" }),
                3 => json!(53),
                _ => json!("1000:2000"),
            }
        };
        if g.chance(50) {
            let list: Vec<Value> = (0..=g.below(2)).map(|_| port(g)).collect();
            e.insert("ports".into(), json!(list));
        }
        if g.chance(15) {
            e.insert("notPorts".into(), json!([port(g)]));
        }
    }
    Value::Object(e)
}

/// A Calico rule of an ingress (`ingress`) or egress rule list of a policy in
/// `namespace` (`None`: global); `known`: the cluster's Services (namespace, name).
fn calico_rule(
    g: &mut Gen,
    namespace: Option<&str>,
    ingress: bool,
    known: &[(String, String)],
) -> Value {
    let mut r = serde_json::Map::new();
    r.insert(
        "action".into(),
        json!(g.pick(&["Allow", "Allow", "Deny", "Pass", "Log"])),
    );
    let family_v4 = g.chance(70);
    // The peer side may be a `services` match instead (source of an ingress rule,
    // destination of an egress rule); such a rule keeps to the protocols Services
    // serve, so that it can match.
    let services = g.chance(12);
    let proto = if services {
        *g.pick(&["", "TCP", "UDP", "SCTP"])
    } else {
        *g.pick(&["", "", "TCP", "TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "47"])
    };
    if !proto.is_empty() {
        r.insert("protocol".into(), json!(proto));
    } else if g.chance(20) {
        r.insert("notProtocol".into(), json!(g.pick(&["TCP", "UDP"])));
    }
    if g.chance(15) {
        r.insert("ipVersion".into(), json!(if family_v4 { 4 } else { 6 }));
    }
    if proto == "ICMP" || proto == "ICMPv6" {
        let icmp = |g: &mut Gen| {
            if g.chance(50) {
                json!({"type": *g.pick(&[0, 3, 8, 11, 128, 1, 2])})
            } else {
                json!({"type": *g.pick(&[3, 8, 1, 2, 12]), "code": *g.pick(&[0, 1, 4])})
            }
        };
        if g.chance(50) {
            r.insert("icmp".into(), icmp(g));
        }
        if g.chance(20) {
            r.insert("notICMP".into(), icmp(g));
        }
    }
    let ports_ok = matches!(proto, "TCP" | "UDP" | "SCTP");
    let src = if ingress && services {
        services::services_side(g, namespace, known)
    } else if services && g.chance(60) {
        json!({})
    } else {
        calico_entity(g, family_v4, ports_ok, proto)
    };
    if src.as_object().is_some_and(|m| !m.is_empty()) {
        r.insert("source".into(), src);
    }
    let dst = if !ingress && services {
        services::services_side(g, namespace, known)
    } else if services && g.chance(60) {
        json!({})
    } else {
        calico_entity(g, family_v4, ports_ok, proto)
    };
    if dst.as_object().is_some_and(|m| !m.is_empty()) {
        r.insert("destination".into(), dst);
    }
    Value::Object(r)
}

/// A Calico policy: namespaced in `namespace`, or global.
fn calico_policy(
    g: &mut Gen,
    i: usize,
    namespace: Option<&str>,
    has_t1: bool,
    known: &[(String, String)],
) -> Value {
    let namespaced = namespace.is_some();
    let mut spec = serde_json::Map::new();
    if g.chance(70) {
        spec.insert("selector".into(), json!(g.pick(&SELECTORS)));
    }
    if !namespaced && g.chance(15) {
        spec.insert(
            "namespaceSelector".into(),
            json!(g.pick(&["team == 'a'", "all()"])),
        );
    }
    if g.chance(70) {
        spec.insert("order".into(), json!(*g.pick(&[1, 100, 1000, 1000, 5000])));
    }
    if has_t1 && g.chance(50) {
        spec.insert("tier".into(), json!("t1"));
    } else if g.chance(20) {
        spec.insert(
            "tier".into(),
            json!(g.pick(&["kube-admin", "kube-baseline"])),
        );
    }
    let ingress: Vec<Value> = (0..g.below(4))
        .map(|_| calico_rule(g, namespace, true, known))
        .collect();
    let egress: Vec<Value> = (0..g.below(4))
        .map(|_| calico_rule(g, namespace, false, known))
        .collect();
    if !ingress.is_empty() {
        spec.insert("ingress".into(), json!(ingress));
    }
    if !egress.is_empty() {
        spec.insert("egress".into(), json!(egress));
    }
    if g.chance(40) {
        spec.insert(
            "types".into(),
            json!(match g.below(3) {
                0 => json!(["Ingress"]),
                1 => json!(["Egress"]),
                _ => json!(["Ingress", "Egress"]),
            }),
        );
    }
    let mut meta = json!({"name": format!("cnp{i}")});
    if let Some(ns) = namespace {
        meta["namespace"] = json!(ns);
    }
    json!({
        "apiVersion": if g.chance(50) { "projectcalico.org/v3" } else { "crd.projectcalico.org/v1" },
        "kind": if namespaced { "NetworkPolicy" } else { "GlobalNetworkPolicy" },
        "metadata": meta,
        "spec": spec,
    })
}

/// The cluster the documents describe; `None` if they do not load or convert.
pub fn build(objects: &[Value]) -> Option<Cluster> {
    let text = Value::Array(objects.to_vec());
    let list = json!({"apiVersion": "v1", "kind": "List", "items": text});
    let loaded = load_value(Path::new("generated.json"), &list).ok()?;
    Cluster::from_objects(&loaded).ok().map(|(c, _)| c)
}

/// Packet protocols per family: mostly protocols with ports, ICMP of the family, and
/// protocols no rule port applies to (SCTP and `UDPLite` have ports; GRE has none).
const V4_PROTOCOLS: [u8; 10] = [6, 6, 6, 17, 17, 1, 1, 132, 136, 47];
const V6_PROTOCOLS: [u8; 10] = [6, 6, 6, 17, 17, 58, 58, 132, 136, 47];
/// Ports at and around every boundary the generated rules use (destination ports, and
/// source ports for source-port rules).
pub const PACKET_PORTS: [u16; 22] = [
    0, 1, 53, 54, 79, 80, 81, 89, 90, 91, 443, 999, 1000, 1001, 1999, 2000, 2001, 8080, 8081, 9090,
    65534, 65535,
];
/// ICMP types the rules name, and some they do not, per family: echo request and
/// reply, and the errors that quote a packet (IPv4: destination unreachable, time
/// exceeded, parameter problem; `ICMPv6`: destination unreachable, packet too big, time
/// exceeded, parameter problem), plus a type of the other family (a rule's `icmp` is
/// a number, whatever the family). Neighbor solicitation (135) is judged by policy
/// like any `ICMPv6` unless it is valid on-link neighbor discovery (hop limit 255,
/// link-scope addresses), which packets generated here never are.
pub const V4_ICMP_TYPES: [u8; 9] = [0, 8, 8, 3, 3, 11, 12, 5, 128];
pub const V6_ICMP_TYPES: [u8; 10] = [128, 128, 129, 1, 2, 3, 4, 135, 8, 3];
/// Codes: net/host/port unreachable, fragmentation needed (ICMP 3/4).
pub const ICMP_CODES: [u8; 4] = [0, 1, 3, 4];

/// A source port: one at a rule boundary a third of the time (for source-port
/// rules), else anywhere, mostly ephemeral as a client's would be.
pub fn source_port(g: &mut Gen) -> u16 {
    match g.below(6) {
        0 | 1 => *g.pick(&PACKET_PORTS),
        2 => g.next() as u16,
        _ => 32_768 + (g.next() % 28_232) as u16,
    }
}

/// A random first packet from `src` to `dst` (same family): protocol of that family,
/// destination port near a rule boundary (or anywhere), a varied source port
/// ([`source_port`]), ICMP type and code of the family (errors included). Fields that
/// the protocol does not carry are zero, as the dataplane reads them.
pub fn random_packet(g: &mut Gen, src: IpAddr, dst: IpAddr) -> Packet {
    let proto = *g.pick(if src.is_ipv4() {
        &V4_PROTOCOLS
    } else {
        &V6_PROTOCOLS
    });
    let mut packet = Packet {
        src,
        dst,
        proto,
        src_port: 0,
        dst_port: 0,
        icmp_type: 0,
        icmp_code: 0,
    };
    if crate::policy::has_ports(proto) {
        packet.src_port = source_port(g);
        packet.dst_port = if g.chance(75) {
            *g.pick(&PACKET_PORTS)
        } else {
            g.next() as u16
        };
    } else if crate::policy::is_icmp(proto) {
        packet.icmp_type = *g.pick(if src.is_ipv4() {
            &V4_ICMP_TYPES
        } else {
            &V6_ICMP_TYPES
        });
        packet.icmp_code = *g.pick(&ICMP_CODES);
    }
    packet
}

#[cfg(test)]
mod tests;
