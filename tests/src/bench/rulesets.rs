//! The same policy set as iptables and as nftables rules, for the side-by-side of `p3`.
//!
//! Both translations render, like Calico's iptables dataplane, one chain per local
//! endpoint and direction in the node's FORWARD path, dispatched by interface:
//! packets from a pod's veth run its egress chain, packets to a pod's veth its
//! ingress chain. An endpoint chain starts as Calico's `cali-fw-*`/`cali-tw-*` chains
//! do: `--ctstate RELATED,ESTABLISHED -j ACCEPT`, then `--ctstate INVALID -j DROP`
//! (nftables: `ct state established,related accept`, `ct state invalid drop`), so only
//! a flow's first packet walks the policy. Then it calls one chain per tier (in tier
//! order) holding the tier's applicable policies' rules in policy order, linear:
//!
//! - Allow: set the accept mark `0x10000` and return (iptables: a MARK rule and a
//!   mark test, as Calico renders it; nftables: one rule `meta mark set … return`);
//! - Deny: drop; Pass: return without the mark (on to the next tier);
//! - end of a tier that selected the endpoint: drop (tier default Deny);
//! - after the tiers: the namespace profile allows (return, FORWARD accepts).
//!
//! Selectors become sets of the selected pods' addresses (ipset `hash:net` for
//! iptables, as Calico does; named nftables sets), CIDRs are matched directly (one)
//! or through a set (several), ports with `multiport` / anonymous sets. IPv4 only
//! (the benchmark traffic is IPv4); Log rules render as nothing; the destination side
//! of an ingress rule (and the source side of an egress rule) is the endpoint itself
//! and is evaluated at translation time, as Calico's per-endpoint rendering allows.
//! A feature the synthetic policies never use (service accounts, ICMP matches, named
//! ports on the peer side) is an error, not a silent approximation.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use enforcer::policy::{
    Cluster, Direction, Endpoint, Entity, EntityMatch, PortMatch, Rule, RuleAction, TierAction,
};
use ipnet::{IpNet, Ipv4Net};

use super::BenchResult;

/// The accept mark bit (Calico's default).
const MARK_ACCEPT: u32 = 0x10000;

/// Rules for one node.
#[derive(Debug, Default)]
pub struct Rendered {
    /// `ipset restore` input.
    pub ipset: String,
    /// `iptables-restore --noflush` input (table filter).
    pub iptables: String,
    /// `nft -f` input (table `ip enf_bench`).
    pub nft: String,
    /// Policy rules rendered (per endpoint chain, both translations render the same).
    pub rules: usize,
    /// iptables rules in all (an Allow is two).
    pub iptables_rules: usize,
    pub sets: usize,
}

/// One policy rule as both translations need it.
struct Flat {
    action: RuleAction,
    proto: Option<u8>,
    not_proto: Option<u8>,
    /// Peer address constraints: each is a set the address must (or must not) be in.
    peer_in: Vec<SetRef>,
    peer_not_in: Vec<SetRef>,
    ports: Vec<(u16, u16)>,
    not_ports: Vec<(u16, u16)>,
}

/// A peer address constraint: a single CIDR or a named set.
#[derive(Clone)]
enum SetRef {
    Net(Ipv4Net),
    Named(String),
}

/// Named address sets, deduplicated by content.
#[derive(Default)]
struct Sets {
    by_content: BTreeMap<Vec<Ipv4Net>, String>,
}

impl Sets {
    fn get(&mut self, mut nets: Vec<Ipv4Net>) -> SetRef {
        nets.sort_unstable();
        nets.dedup();
        if nets.len() == 1 {
            return SetRef::Net(nets[0]);
        }
        let n = self.by_content.len();
        SetRef::Named(
            self.by_content
                .entry(nets)
                .or_insert_with(|| format!("enf-s{n}"))
                .clone(),
        )
    }
}

fn v4_nets(nets: &[IpNet]) -> Vec<Ipv4Net> {
    nets.iter()
        .filter_map(|n| match n {
            IpNet::V4(v4) => Some(*v4),
            IpNet::V6(_) => None,
        })
        .collect()
}

/// IPv4 addresses (as /32) and network-set CIDRs an entity selector picks.
fn selected_nets(cluster: &Cluster, side: &EntityMatch) -> Vec<Ipv4Net> {
    let Some(sel) = &side.selector else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in &cluster.endpoints {
        if sel.matches(cluster, &Entity::Endpoint(e))
            && let Some(IpAddr::V4(v4)) = e.ipv4()
        {
            out.push(Ipv4Net::from(v4));
        }
    }
    for set in &cluster.network_sets {
        if sel.matches(cluster, &Entity::NetworkSet(set)) {
            out.extend(v4_nets(&set.nets));
        }
    }
    out
}

fn not_selected_nets(cluster: &Cluster, side: &EntityMatch) -> Vec<Ipv4Net> {
    let Some(sel) = &side.not_selector else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in &cluster.endpoints {
        if sel.matches(&e.labels)
            && let Some(IpAddr::V4(v4)) = e.ipv4()
        {
            out.push(Ipv4Net::from(v4));
        }
    }
    for set in &cluster.network_sets {
        if sel.matches(&set.labels) {
            out.extend(v4_nets(&set.nets));
        }
    }
    out
}

fn ranges(ports: &[PortMatch], what: &str) -> BenchResult<Vec<(u16, u16)>> {
    ports
        .iter()
        .map(|p| match p {
            PortMatch::Range(a, b) => Ok((*a, *b)),
            PortMatch::Named(n) => Err(format!(
                "{what}: named port {n} on the peer side is not translated"
            )),
        })
        .collect()
}

/// Flattens one rule for `ep` in `dir`; `None`: the rule can never match there.
fn flatten(
    cluster: &Cluster,
    ep: &Endpoint,
    dir: Direction,
    rule: &Rule,
    sets: &mut Sets,
) -> BenchResult<Option<Flat>> {
    if rule.ip_version == Some(6) || rule.icmp.is_some() || rule.not_icmp.is_some() {
        if rule.ip_version == Some(6) {
            return Ok(None);
        }
        return Err(format!("{}: ICMP matches are not translated", rule.field));
    }
    let (peer, local) = match dir {
        Direction::Ingress => (&rule.source, &rule.destination),
        Direction::Egress => (&rule.destination, &rule.source),
    };
    if peer.service_accounts.is_some() || local.service_accounts.is_some() {
        return Err(format!(
            "{}: service accounts are not translated",
            rule.field
        ));
    }
    let Some(IpAddr::V4(local_ip)) = ep.ipv4() else {
        return Ok(None);
    };
    // The endpoint's own side: known at translation time.
    let local_facts =
        enforcer::eval::side_facts(cluster, local, rule.protocol, IpAddr::V4(local_ip));
    if !local_facts.address_matches() {
        return Ok(None);
    }
    let mut flat = Flat {
        action: rule.action,
        proto: rule.protocol,
        not_proto: rule.not_protocol,
        peer_in: Vec::new(),
        peer_not_in: Vec::new(),
        ports: Vec::new(),
        not_ports: Vec::new(),
    };
    // Destination ports: on the local side for ingress (named ports resolved on the
    // endpoint), on the peer side for egress (numeric only).
    let dst = &rule.destination;
    if dir == Direction::Ingress {
        for p in &dst.ports {
            match p {
                PortMatch::Range(a, b) => flat.ports.push((*a, *b)),
                PortMatch::Named(_) => {}
            }
        }
        flat.ports
            .extend(local_facts.named_ports.iter().map(|p| (*p, *p)));
        if !dst.ports.is_empty() && flat.ports.is_empty() {
            return Ok(None); // only named ports, none of which the endpoint has
        }
        for p in &dst.not_ports {
            if let PortMatch::Range(a, b) = p {
                flat.not_ports.push((*a, *b));
            }
        }
        flat.not_ports
            .extend(local_facts.named_not_ports.iter().map(|p| (*p, *p)));
    } else {
        flat.ports = ranges(&dst.ports, &rule.field)?;
        flat.not_ports = ranges(&dst.not_ports, &rule.field)?;
    }
    if !rule.source.ports.is_empty() || !rule.source.not_ports.is_empty() {
        return Err(format!("{}: source ports are not translated", rule.field));
    }
    // Peer addresses.
    if !peer.nets.is_empty() {
        let nets = v4_nets(&peer.nets);
        if nets.is_empty() {
            return Ok(None);
        }
        flat.peer_in.push(sets.get(nets));
    }
    if !peer.not_nets.is_empty() {
        let nets = v4_nets(&peer.not_nets);
        if !nets.is_empty() {
            flat.peer_not_in.push(sets.get(nets));
        }
    }
    if peer.selector.is_some() {
        let nets = selected_nets(cluster, peer);
        if nets.is_empty() {
            return Ok(None);
        }
        flat.peer_in.push(sets.get(nets));
    }
    if peer.not_selector.is_some() {
        let nets = not_selected_nets(cluster, peer);
        if !nets.is_empty() {
            flat.peer_not_in.push(sets.get(nets));
        }
    }
    Ok(Some(flat))
}

/// The tiers of `ep` in `dir`: (tier default action, its rules in order).
fn tiers(
    cluster: &Cluster,
    ep: &Endpoint,
    dir: Direction,
    sets: &mut Sets,
) -> BenchResult<Vec<(TierAction, Vec<Flat>)>> {
    let mut out: Vec<(usize, TierAction, Vec<Flat>)> = Vec::new();
    for p in enforcer::eval::applicable_policies(cluster, ep, dir) {
        let policy = &cluster.policies[p];
        if out.last().is_none_or(|(t, _, _)| *t != policy.tier) {
            out.push((
                policy.tier,
                cluster.tiers[policy.tier].default_action,
                Vec::new(),
            ));
        }
        for rule in policy.rules(dir) {
            if let Some(flat) = flatten(cluster, ep, dir, rule, sets)?
                && let Some(last) = out.last_mut()
            {
                last.2.push(flat);
            }
        }
    }
    Ok(out.into_iter().map(|(_, a, r)| (a, r)).collect())
}

fn proto_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        132 => "sctp".into(),
        1 => "icmp".into(),
        n => n.to_string(),
    }
}

fn port_list(ports: &[(u16, u16)], sep_range: &str) -> String {
    ports
        .iter()
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}{sep_range}{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn ipt_matches(f: &Flat, dir: Direction) -> String {
    let (addr_flag, set_dir) = match dir {
        Direction::Ingress => ("-s", "src"),
        Direction::Egress => ("-d", "dst"),
    };
    let mut m = String::new();
    if let Some(p) = f.proto {
        let _ = write!(m, " -p {}", proto_name(p));
    }
    if let Some(p) = f.not_proto {
        let _ = write!(m, " ! -p {}", proto_name(p));
    }
    for (s, neg) in f
        .peer_in
        .iter()
        .map(|s| (s, ""))
        .chain(f.peer_not_in.iter().map(|s| (s, "! ")))
    {
        match s {
            SetRef::Net(n) => {
                let _ = write!(m, " {neg}{addr_flag} {n}");
            }
            SetRef::Named(name) => {
                let _ = write!(m, " -m set {neg}--match-set {name} {set_dir}");
            }
        }
    }
    if !f.ports.is_empty() {
        let _ = write!(m, " -m multiport --dports {}", port_list(&f.ports, ":"));
    }
    if !f.not_ports.is_empty() {
        let _ = write!(
            m,
            " -m multiport ! --dports {}",
            port_list(&f.not_ports, ":")
        );
    }
    m
}

fn nft_matches(f: &Flat, dir: Direction) -> String {
    let addr = match dir {
        Direction::Ingress => "ip saddr",
        Direction::Egress => "ip daddr",
    };
    let mut m = String::new();
    if let Some(p) = f.proto {
        let _ = write!(m, " meta l4proto {}", proto_name(p));
    }
    if let Some(p) = f.not_proto {
        let _ = write!(m, " meta l4proto != {}", proto_name(p));
    }
    for (s, neg) in f
        .peer_in
        .iter()
        .map(|s| (s, ""))
        .chain(f.peer_not_in.iter().map(|s| (s, "!= ")))
    {
        match s {
            SetRef::Net(n) => {
                let _ = write!(m, " {addr} {neg}{n}");
            }
            SetRef::Named(name) => {
                let _ = write!(m, " {addr} {neg}@{}", name.replace('-', "_"));
            }
        }
    }
    if !f.ports.is_empty() {
        let _ = write!(m, " th dport {{ {} }}", port_list(&f.ports, "-"));
    }
    if !f.not_ports.is_empty() {
        let _ = write!(m, " th dport != {{ {} }}", port_list(&f.not_ports, "-"));
    }
    m
}

/// Renders the local endpoints of `node` (those whose host interface `iface_of`
/// names). `iface_of` returns `None` for endpoints without an interface on the node.
pub fn render(
    cluster: &Cluster,
    iface_of: impl Fn(&Endpoint) -> Option<String>,
) -> BenchResult<Rendered> {
    let mut sets = Sets::default();
    let mut out = Rendered::default();
    let mut ipt = String::from("*filter\n");
    let mut ipt_rules: Vec<String> = Vec::new();
    let mut nft_chains = String::new();
    let mut nft_dispatch_in = Vec::new();
    let mut nft_dispatch_out = Vec::new();
    let mut ipt_forward = Vec::new();
    for (e, ep) in cluster.endpoints.iter().enumerate() {
        let Some(iface) = iface_of(ep) else { continue };
        for dir in [Direction::Egress, Direction::Ingress] {
            let d = match dir {
                Direction::Egress => "fw",
                Direction::Ingress => "tw",
            };
            let chain = format!("enf-{d}-{e}");
            let nchain = chain.replace('-', "_");
            let tiers = tiers(cluster, ep, dir, &mut sets)?;
            let _ = writeln!(ipt, ":{chain} - [0:0]");
            // Calico's endpoint chains start with the conntrack shortcut: packets of
            // flows netfilter already accepted (and related ones) pass at once, and
            // packets conntrack calls INVALID drop.
            ipt_rules.push(format!(
                "-A {chain} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
            ));
            ipt_rules.push(format!("-A {chain} -m conntrack --ctstate INVALID -j DROP"));
            ipt_rules.push(format!(
                "-A {chain} -j MARK --set-xmark 0x0/{MARK_ACCEPT:#x}"
            ));
            let mut nbody = format!(
                "\tchain {nchain} {{\n\t\tct state established,related accept\n\t\tct state invalid drop\n\t\tmeta mark set meta mark & {:#x}\n",
                !MARK_ACCEPT
            );
            for (t, (default, rules)) in tiers.iter().enumerate() {
                let tchain = format!("{chain}-t{t}");
                let ntchain = tchain.replace('-', "_");
                let _ = writeln!(ipt, ":{tchain} - [0:0]");
                ipt_rules.push(format!("-A {chain} -j {tchain}"));
                ipt_rules.push(format!(
                    "-A {chain} -m mark --mark {MARK_ACCEPT:#x}/{MARK_ACCEPT:#x} -j RETURN"
                ));
                let _ = writeln!(
                    nbody,
                    "\t\tjump {ntchain}\n\t\tmeta mark & {MARK_ACCEPT:#x} == {MARK_ACCEPT:#x} return"
                );
                let mut tbody = format!("\tchain {ntchain} {{\n");
                for f in rules {
                    let im = ipt_matches(f, dir);
                    let nm = nft_matches(f, dir);
                    match f.action {
                        RuleAction::Allow => {
                            ipt_rules.push(format!("-A {tchain}{im} -j MARK --set-xmark {MARK_ACCEPT:#x}/{MARK_ACCEPT:#x}"));
                            ipt_rules.push(format!("-A {tchain} -m mark --mark {MARK_ACCEPT:#x}/{MARK_ACCEPT:#x} -j RETURN"));
                            let _ = writeln!(
                                tbody,
                                "\t\t{nm} meta mark set meta mark | {MARK_ACCEPT:#x} return"
                            );
                        }
                        RuleAction::Deny => {
                            ipt_rules.push(format!("-A {tchain}{im} -j DROP"));
                            let _ = writeln!(tbody, "\t\t{nm} drop");
                        }
                        RuleAction::Pass => {
                            ipt_rules.push(format!("-A {tchain}{im} -j RETURN"));
                            let _ = writeln!(tbody, "\t\t{nm} return");
                        }
                        RuleAction::Log => continue,
                    }
                    out.rules += 1;
                }
                if *default == TierAction::Deny {
                    ipt_rules.push(format!("-A {tchain} -j DROP"));
                    tbody.push_str("\t\tdrop\n");
                }
                tbody.push_str("\t}\n");
                nft_chains.push_str(&tbody);
            }
            nbody.push_str("\t}\n");
            nft_chains.push_str(&nbody);
            match dir {
                Direction::Egress => {
                    ipt_forward.push(format!("-A FORWARD -i {iface} -j {chain}"));
                    nft_dispatch_in.push(format!("\"{iface}\" : jump {nchain}"));
                }
                Direction::Ingress => {
                    ipt_forward.push(format!("-A FORWARD -o {iface} -j {chain}"));
                    nft_dispatch_out.push(format!("\"{iface}\" : jump {nchain}"));
                }
            }
        }
    }
    // Egress dispatch first, then ingress: a flow must pass both.
    ipt_forward.sort_by_key(|r| !r.contains(" -i "));
    for r in ipt_forward.iter().chain(&ipt_rules) {
        ipt.push_str(r);
        ipt.push('\n');
    }
    ipt.push_str("COMMIT\n");
    out.iptables_rules = ipt_forward.len() + ipt_rules.len();
    out.iptables = ipt;

    let mut nft =
        String::from("table ip enf_bench\ndelete table ip enf_bench\ntable ip enf_bench {\n");
    for (nets, name) in &sets.by_content {
        let elems = nets
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out.ipset,
            "create {name} hash:net family inet maxelem {}\n{}",
            (nets.len() * 2).max(1024),
            nets.iter()
                .map(|n| format!("add {name} {n}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let _ = writeln!(
            nft,
            "\tset {} {{\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = {{ {elems} }}\n\t}}",
            name.replace('-', "_")
        );
    }
    out.sets = sets.by_content.len();
    nft.push_str(&nft_chains);
    let _ = write!(
        nft,
        "\tchain forward {{\n\t\ttype filter hook forward priority filter; policy accept;\n"
    );
    if !nft_dispatch_in.is_empty() {
        let _ = writeln!(nft, "\t\tiifname vmap {{ {} }}", nft_dispatch_in.join(", "));
    }
    if !nft_dispatch_out.is_empty() {
        let _ = writeln!(
            nft,
            "\t\toifname vmap {{ {} }}",
            nft_dispatch_out.join(", ")
        );
    }
    nft.push_str("\t}\n}\n");
    out.nft = nft;
    Ok(out)
}
