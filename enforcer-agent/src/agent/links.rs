//! The interfaces of this node and their addresses, kept current from netlink: one
//! `NETLINK_ROUTE` socket subscribed to `RTMGRP_LINK`, `RTMGRP_IPV4_IFADDR` and
//! `RTMGRP_IPV6_IFADDR` before a full dump, so a link that appears, vanishes, is
//! renamed or comes back with a new ifindex, and an address added or removed, is an
//! event, never a poll. If the kernel drops notifications (socket buffer overrun),
//! everything is dumped again.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use futures_util::{StreamExt as _, TryStreamExt as _};
use ipnet::IpNet;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{
    InfoPortKind, LinkAttribute, LinkInfo, LinkLayerType, LinkMessage,
};

use crate::dataplane::bindings::Links;
use crate::dataplane::interfaces::{LinkKind, NodeInterfaces};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("netlink: opening a route socket subscribed to link events: {source}")]
    Open {
        #[source]
        source: std::io::Error,
    },
    #[error("netlink: dumping {what}: {source}")]
    Dump {
        what: &'static str,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("netlink: the link event socket closed")]
    Closed,
}

/// What [`LinkSource::changed`] returns.
pub type ChangedFuture<'a> = Pin<Box<dyn Future<Output = Result<(), LinkError>> + Send + 'a>>;

/// Where the agent learns which interfaces exist and which addresses they carry.
pub trait LinkSource: Send {
    /// The interfaces, their kinds and addresses now.
    fn interfaces(&self) -> &NodeInterfaces;
    /// The interfaces now.
    fn current(&self) -> &Links {
        &self.interfaces().links
    }
    /// Waits until [`LinkSource::interfaces`] changed. Cancel-safe.
    fn changed(&mut self) -> ChangedFuture<'_>;
}

/// Link notifications as `rtnetlink` hands them over.
type Messages = futures_util::stream::BoxStream<
    'static,
    (
        NetlinkMessage<RouteNetlinkMessage>,
        rtnetlink::sys::SocketAddr,
    ),
>;

/// Links and addresses of the agent's network namespace, from netlink.
pub struct NetlinkLinks {
    interfaces: NodeInterfaces,
    /// ifindex → name, to follow renames and deletions (which carry the index).
    names: BTreeMap<u32, String>,
    handle: rtnetlink::Handle,
    messages: Messages,
    connection: tokio::task::JoinHandle<()>,
    /// Set while a dump is owed (an overrun, or a dump that was cancelled).
    resync: bool,
}

impl Drop for NetlinkLinks {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl NetlinkLinks {
    /// Subscribes, then dumps: a change during the dump is queued, not lost. Must be
    /// called from within a tokio runtime.
    pub async fn open() -> Result<Self, LinkError> {
        let (connection, handle, messages) = rtnetlink::new_multicast_connection(&[
            rtnetlink::MulticastGroup::Link,
            rtnetlink::MulticastGroup::Ipv4Ifaddr,
            rtnetlink::MulticastGroup::Ipv6Ifaddr,
        ])
        .map_err(|source| LinkError::Open { source })?;
        let mut links = Self {
            interfaces: NodeInterfaces::default(),
            names: BTreeMap::new(),
            handle,
            messages: messages.boxed(),
            connection: tokio::spawn(connection),
            resync: true,
        };
        links.dump().await?;
        Ok(links)
    }

    async fn dump(&mut self) -> Result<(), LinkError> {
        self.resync = true;
        let dumped: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|source| LinkError::Dump {
                what: "links",
                source,
            })?;
        let addresses: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|source| LinkError::Dump {
                what: "addresses",
                source,
            })?;
        self.interfaces = NodeInterfaces::default();
        self.names.clear();
        for link in &dumped {
            self.upsert(link);
        }
        for address in &addresses {
            self.add_address(address);
        }
        self.resync = false;
        tracing::debug!(
            links = self.interfaces.links.len(),
            addresses = self.interfaces.addresses.len(),
            "links and addresses dumped"
        );
        Ok(())
    }

    /// Records a link; whether the table changed.
    fn upsert(&mut self, link: &LinkMessage) -> bool {
        let Some(name) = link.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(name) => Some(name),
            _ => None,
        }) else {
            return false;
        };
        let index = link.header.index;
        let kind = link_kind(link);
        let links = &mut self.interfaces.links;
        let kind_changed = self.interfaces.kinds.insert(index, kind) != Some(kind);
        if self.names.get(&index) == Some(name) && links.get(name) == Some(&index) {
            return kind_changed;
        }
        if let Some(old) = self.names.insert(index, name.clone()) {
            links.remove(&old);
        }
        if let Some(stale) = links.insert(name.clone(), index) {
            self.names.remove(&stale);
            self.names.insert(index, name.clone());
            self.interfaces.kinds.remove(&stale);
            self.interfaces.kinds.insert(index, kind);
        }
        true
    }

    fn remove(&mut self, link: &LinkMessage) -> bool {
        let index = link.header.index;
        self.interfaces.kinds.remove(&index);
        // The kernel announces the addresses' removal too; do not depend on it.
        self.interfaces.addresses.retain(|(i, _)| *i != index);
        match self.names.remove(&index) {
            Some(name) => {
                self.interfaces.links.remove(&name);
                true
            }
            None => false,
        }
    }

    /// Records an address; whether the table changed.
    fn add_address(&mut self, message: &AddressMessage) -> bool {
        let kind = self.interfaces.kind(message.header.index);
        let mut changed = false;
        for net in address_nets(message, kind) {
            changed |= self
                .interfaces
                .addresses
                .insert((message.header.index, net));
        }
        changed
    }

    fn remove_address(&mut self, message: &AddressMessage) -> bool {
        let kind = self.interfaces.kind(message.header.index);
        let mut changed = false;
        for net in address_nets(message, kind) {
            changed |= self
                .interfaces
                .addresses
                .remove(&(message.header.index, net));
        }
        changed
    }

    async fn next_change(&mut self) -> Result<(), LinkError> {
        if self.resync {
            self.dump().await?;
            return Ok(());
        }
        loop {
            let Some((message, _)) = self.messages.next().await else {
                return Err(LinkError::Closed);
            };
            let changed = match &message.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                    self.upsert(link)
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
                    self.remove(link)
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(address)) => {
                    self.add_address(address)
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(address)) => {
                    self.remove_address(address)
                }
                NetlinkPayload::Overrun(_) => {
                    tracing::warn!(
                        "netlink events lost (socket buffer full); dumping links and addresses again"
                    );
                    self.dump().await?;
                    true
                }
                _ => false,
            };
            if changed {
                return Ok(());
            }
        }
    }
}

impl LinkSource for NetlinkLinks {
    fn interfaces(&self) -> &NodeInterfaces {
        &self.interfaces
    }

    fn changed(&mut self) -> ChangedFuture<'_> {
        Box::pin(self.next_change())
    }
}

/// What a link is: its link-layer type, and whether it is a bond's (or team's) port.
fn link_kind(link: &LinkMessage) -> LinkKind {
    match link.header.link_layer_type {
        LinkLayerType::Loopback => LinkKind::Loopback,
        LinkLayerType::Ether => {
            let bond_port = link.attributes.iter().any(|a| match a {
                LinkAttribute::LinkInfo(infos) => infos.iter().any(|i| {
                    matches!(
                        i,
                        LinkInfo::PortKind(InfoPortKind::Bond | InfoPortKind::Team)
                    )
                }),
                _ => false,
            });
            if bond_port {
                LinkKind::BondPort
            } else {
                LinkKind::Ethernet
            }
        }
        _ => LinkKind::Other,
    }
}

/// The local addresses an address message adds: the local address (`IFA_LOCAL`,
/// else `IFA_ADDRESS`: on a point-to-point link `IFA_ADDRESS` is the peer's), as a
/// host prefix, or the whole prefix for IPv4 on a loopback device (the kernel's
/// local route covers it all there); and the IPv4 broadcast address, delivered to
/// the host too.
fn address_nets(message: &AddressMessage, kind: LinkKind) -> Vec<IpNet> {
    let find = |want_local: bool| {
        message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(ip) if want_local => Some(*ip),
            AddressAttribute::Address(ip) if !want_local => Some(*ip),
            _ => None,
        })
    };
    let mut out = Vec::new();
    if let Some(local) = find(true).or_else(|| find(false)) {
        let prefix = match local {
            IpAddr::V4(_) if kind == LinkKind::Loopback => message.header.prefix_len,
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        out.extend(IpNet::new(local, prefix).ok().map(|n| n.trunc()));
    }
    for a in &message.attributes {
        if let AddressAttribute::Broadcast(b) = a {
            out.push(IpNet::from(IpAddr::V4(*b)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(layer: LinkLayerType, port: Option<InfoPortKind>) -> LinkMessage {
        let mut message = LinkMessage::default();
        message.header.link_layer_type = layer;
        if let Some(port) = port {
            message
                .attributes
                .push(LinkAttribute::LinkInfo(vec![LinkInfo::PortKind(port)]));
        }
        message
    }

    /// Security item 12 (the lab's kernel has no bonding module: the kinds are read
    /// from messages as the kernel sends them).
    #[test]
    fn bond_and_team_ports_l3_devices_and_loopback_are_told_apart() {
        assert_eq!(
            link_kind(&link(LinkLayerType::Ether, None)),
            LinkKind::Ethernet
        );
        assert_eq!(
            link_kind(&link(LinkLayerType::Ether, Some(InfoPortKind::Bridge))),
            LinkKind::Ethernet
        );
        for port in [InfoPortKind::Bond, InfoPortKind::Team] {
            assert_eq!(
                link_kind(&link(LinkLayerType::Ether, Some(port))),
                LinkKind::BondPort
            );
        }
        assert_eq!(
            link_kind(&link(LinkLayerType::Loopback, None)),
            LinkKind::Loopback
        );
        for layer in [
            LinkLayerType::Tunnel,
            LinkLayerType::Tunnel6,
            LinkLayerType::None,
            LinkLayerType::Sit,
        ] {
            assert_eq!(link_kind(&link(layer, None)), LinkKind::Other, "{layer:?}");
        }
    }

    #[test]
    fn an_address_message_gives_the_local_address_and_broadcast() {
        let mut message = AddressMessage::default();
        message.header.prefix_len = 24;
        message.attributes = vec![
            AddressAttribute::Address("198.18.9.2".parse().unwrap_or(IpAddr::from([0; 4]))),
            AddressAttribute::Local("198.18.9.1".parse().unwrap_or(IpAddr::from([0; 4]))),
            AddressAttribute::Broadcast([198, 18, 9, 255].into()),
        ];
        let nets: Vec<String> = address_nets(&message, LinkKind::Ethernet)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(nets, ["198.18.9.1/32", "198.18.9.255/32"]);
        message.attributes.truncate(2);
        let nets: Vec<String> = address_nets(&message, LinkKind::Loopback)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(nets, ["198.18.9.0/24"]);
    }
}
