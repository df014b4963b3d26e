//! The prefixes the cluster's objects other than policies name: part of every compile's
//! peer LPM entries (`regions.rs`), kept between policy changes by the memo
//! (`memo.rs`).

use ipnet::IpNet;

use crate::policy::Cluster;

/// A prefix some object names: the endpoint whose address it is, whether it is a
/// Service VIP.
pub(super) type NamedPrefix = (IpNet, Option<usize>, bool);

/// The prefixes the cluster's objects other than policies name (network sets, host
/// endpoints, nodes, workload endpoints, Service VIPs), sorted stably by prefix (so an
/// address's endpoints stay in the cluster's order). They change only with those
/// objects: the compiler's memo keeps them between policy changes.
pub(super) fn entity_prefixes(cluster: &Cluster) -> Vec<NamedPrefix> {
    let mut named: Vec<NamedPrefix> = Vec::new();
    let mut add = |net: IpNet, endpoint: Option<usize>, vip: bool| {
        named.push((net.trunc(), endpoint, vip));
    };
    for set in &cluster.network_sets {
        for net in &set.nets {
            add(*net, None, false);
        }
    }
    for h in &cluster.host_endpoints {
        for ip in &h.ips {
            add(IpNet::from(*ip), None, false);
        }
    }
    for n in &cluster.nodes {
        for ip in &n.ips {
            add(IpNet::from(*ip), None, false);
        }
    }
    for (i, ep) in cluster.endpoints.iter().enumerate() {
        for ip in &ep.ips {
            add(IpNet::from(*ip), Some(i), false);
        }
    }
    for svc in &cluster.services {
        for ip in &svc.vips {
            add(IpNet::from(*ip), None, true);
        }
    }
    named.sort_by_key(|&(net, _, _)| net);
    named
}
