//! The interfaces of this node, kept current from netlink: one `NETLINK_ROUTE` socket
//! subscribed to `RTMGRP_LINK` before a full dump, so a link that appears, vanishes,
//! is renamed or comes back with a new ifindex is an event, never a poll. If the
//! kernel drops notifications (socket buffer overrun), the table is dumped again.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use futures_util::{StreamExt as _, TryStreamExt as _};
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};

use crate::dataplane::bindings::Links;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("netlink: opening a route socket subscribed to link events: {source}")]
    Open {
        #[source]
        source: std::io::Error,
    },
    #[error("netlink: dumping links: {source}")]
    Dump {
        #[source]
        source: rtnetlink::Error,
    },
    #[error("netlink: the link event socket closed")]
    Closed,
}

/// What [`LinkSource::changed`] returns.
pub type ChangedFuture<'a> = Pin<Box<dyn Future<Output = Result<(), LinkError>> + Send + 'a>>;

/// Where the agent learns which interfaces exist.
pub trait LinkSource: Send {
    /// The interfaces now.
    fn current(&self) -> &Links;
    /// Waits until [`LinkSource::current`] changed. Cancel-safe.
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

/// Links of the agent's network namespace, from netlink.
pub struct NetlinkLinks {
    links: Links,
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
        let (connection, handle, messages) =
            rtnetlink::new_multicast_connection(&[rtnetlink::MulticastGroup::Link])
                .map_err(|source| LinkError::Open { source })?;
        let mut links = Self {
            links: Links::new(),
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
            .map_err(|source| LinkError::Dump { source })?;
        self.links.clear();
        self.names.clear();
        for link in &dumped {
            self.upsert(link);
        }
        self.resync = false;
        tracing::debug!(links = self.links.len(), "links dumped");
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
        if self.names.get(&index) == Some(name) && self.links.get(name) == Some(&index) {
            return false;
        }
        if let Some(old) = self.names.insert(index, name.clone()) {
            self.links.remove(&old);
        }
        if let Some(stale) = self.links.insert(name.clone(), index) {
            self.names.remove(&stale);
            self.names.insert(index, name.clone());
        }
        true
    }

    fn remove(&mut self, link: &LinkMessage) -> bool {
        match self.names.remove(&link.header.index) {
            Some(name) => {
                self.links.remove(&name);
                true
            }
            None => false,
        }
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
                NetlinkPayload::Overrun(_) => {
                    tracing::warn!(
                        "netlink link events lost (socket buffer full); dumping links again"
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
    fn current(&self) -> &Links {
        &self.links
    }

    fn changed(&mut self) -> ChangedFuture<'_> {
        Box::pin(self.next_change())
    }
}
