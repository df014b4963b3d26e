//! Network namespaces, veth pairs, addresses and routes, Calico style.
//!
//! Every pod is joined to the node by a veth pair: the host side, in the node netns,
//! is named as Calico names it (`Pod::host_iface`), the pod side is `eth0`. The pod
//! holds only its /32 and /128 and routes everything via a gateway that does not
//! exist (`169.254.1.1`, answered by proxy ARP on the host veth; IPv6 `fe80::1`,
//! owned by every host veth). The node routes each pod address to its veth.
//! All commands go through `ip -n` / `ip netns exec`, so a failure names the command.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use super::command::{self, CommandError, ip_in, sysctl_in};

/// The pods' IPv4 default gateway, as in Calico.
pub const GATEWAY_V4: &str = "169.254.1.1";
/// The link-local address every host-side veth owns: the pods' IPv6 gateway.
pub const GATEWAY_V6: &str = "fe80::1";

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Creates the node netns with forwarding on and the route that makes proxy ARP answer
/// for the gateway (proxy ARP only answers for addresses routed via another device).
pub fn create_node(node: &str) -> Result<(), NetnsError> {
    command::run("ip", &["netns", "add", node])?;
    ip_in(node, &["link", "set", "lo", "up"])?;
    sysctl_in(
        node,
        &[
            "net.ipv4.ip_forward=1".to_owned(),
            "net.ipv6.conf.all.forwarding=1".to_owned(),
            "net.ipv6.conf.default.forwarding=1".to_owned(),
            // No duplicate address detection (a netns of our own has no duplicates):
            // until it ends, the link-local address is tentative, and a router resolves
            // the next hop of forwarded packets from it, so cross-node IPv6 would fail
            // for a second or two after `lab up`.
            "net.ipv6.conf.all.accept_dad=0".to_owned(),
            "net.ipv6.conf.default.accept_dad=0".to_owned(),
        ],
    )?;
    ip_in(
        node,
        &["route", "add", &format!("{GATEWAY_V4}/32"), "dev", "lo"],
    )?;
    Ok(())
}

/// Everything a pod's network needs; see the module doc.
pub struct PodLink<'a> {
    pub node: &'a str,
    pub netns: &'a str,
    pub host_iface: &'a str,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
}

pub fn create_pod(link: &PodLink<'_>) -> Result<(), NetnsError> {
    let PodLink {
        node,
        netns,
        host_iface,
        ..
    } = *link;
    let v4 = format!("{}/32", link.ipv4);
    let v6 = format!("{}/128", link.ipv6);
    command::run("ip", &["netns", "add", netns])?;
    ip_in(
        node,
        &[
            "link", "add", host_iface, "type", "veth", "peer", "name", "eth0", "netns", netns,
        ],
    )?;
    // Pod side.
    ip_in(netns, &["link", "set", "lo", "up"])?;
    ip_in(netns, &["addr", "add", &v4, "dev", "eth0"])?;
    ip_in(netns, &["addr", "add", &v6, "dev", "eth0", "nodad"])?;
    ip_in(netns, &["link", "set", "eth0", "up"])?;
    ip_in(
        netns,
        &[
            "route", "add", "default", "via", GATEWAY_V4, "dev", "eth0", "onlink",
        ],
    )?;
    ip_in(
        netns,
        &[
            "-6", "route", "add", "default", "via", GATEWAY_V6, "dev", "eth0",
        ],
    )?;
    // A pod reaching itself through a Service comes back with its own source address.
    sysctl_in(netns, &["net.ipv4.conf.eth0.accept_local=1".to_owned()])?;
    // Host side.
    ip_in(
        node,
        &[
            "addr",
            "add",
            &format!("{GATEWAY_V6}/64"),
            "dev",
            host_iface,
            "nodad",
        ],
    )?;
    ip_in(node, &["link", "set", host_iface, "up"])?;
    sysctl_in(
        node,
        &[
            format!("net.ipv4.conf.{host_iface}.proxy_arp=1"),
            // Proxy ARP answers broadcast requests after a random delay unless this is 0.
            format!("net.ipv4.neigh.{host_iface}.proxy_delay=0"),
        ],
    )?;
    ip_in(node, &["route", "add", &v4, "dev", host_iface])?;
    ip_in(node, &["-6", "route", "add", &v6, "dev", host_iface])?;
    Ok(())
}

/// Deletes a netns (its veth ends go with it; the node's routes with the veth).
pub fn delete(netns: &str) -> Result<(), NetnsError> {
    command::run("ip", &["netns", "delete", netns])?;
    Ok(())
}

/// Named netns starting with `prefix`, from `/run/netns`.
pub fn list_with_prefix(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

pub fn exists(netns: &str) -> bool {
    Path::new("/run/netns").join(netns).exists()
}

/// `/etc/netns/<netns>/resolv.conf`, which `ip netns exec` mounts over
/// `/etc/resolv.conf`: the cluster DNS and the Kubernetes search path.
pub fn write_resolv_conf(
    netns: &str,
    namespace: &str,
    nameserver: Ipv4Addr,
) -> Result<(), NetnsError> {
    let dir = Path::new(super::paths::ETC_NETNS).join(netns);
    std::fs::create_dir_all(&dir).map_err(|source| NetnsError::Io {
        op: "create directory",
        path: dir.clone(),
        source,
    })?;
    let path = dir.join("resolv.conf");
    let text = format!(
        "nameserver {nameserver}\nsearch {namespace}.svc.cluster.local svc.cluster.local cluster.local\n"
    );
    std::fs::write(&path, text).map_err(|source| NetnsError::Io {
        op: "write",
        path,
        source,
    })
}

/// Removes `/etc/netns/<netns>` if present.
pub fn remove_etc(netns: &str) -> Result<(), NetnsError> {
    let dir = Path::new(super::paths::ETC_NETNS).join(netns);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetnsError::Io {
            op: "remove",
            path: dir,
            source,
        }),
    }
}

/// `/etc/netns` entries starting with `prefix`.
pub fn list_etc_with_prefix(prefix: &str) -> Vec<String> {
    std::fs::read_dir(super::paths::ETC_NETNS)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Moves the calling thread into a named netns (only this thread: network namespaces
/// are per thread). Used by probe workers.
pub fn enter(netns: &str) -> Result<(), NetnsError> {
    let path = Path::new("/run/netns").join(netns);
    let file = std::fs::File::open(&path).map_err(|source| NetnsError::Io {
        op: "open netns",
        path: path.clone(),
        source,
    })?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|errno| NetnsError::Io {
        op: "setns into",
        path,
        source: errno.into(),
    })
}
