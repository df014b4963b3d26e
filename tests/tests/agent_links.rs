//! The agent's interface table follows the kernel's link events: a veth that appears,
//! is renamed or vanishes in the agent's network namespace is an event from its
//! `RTMGRP_LINK` netlink subscription, with no polling and no datastore change.
//!
//! Privileged: `cargo test -p enforcer-tests --test agent_links`.

use std::process::Command;
use std::time::Duration;

use enforcer::agent::links::{LinkSource, NetlinkLinks};
use enforcer::dataplane::bindings::Links;
use enforcer_tests::bpf::OrPanic as _;
use enforcer_tests::bpf::netns::NetNs;

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .or_panic("running ip (iproute2)");
    assert!(status.success(), "ip {args:?}: {status}");
}

/// Waits for link events until `done` holds for the table.
async fn until(links: &mut NetlinkLinks, what: &str, done: impl Fn(&Links) -> bool) {
    while !done(links.current()) {
        // Bounded only so a lost event fails the test instead of hanging it.
        tokio::time::timeout(Duration::from_secs(30), links.changed())
            .await
            .unwrap_or_else(|_| panic!("no link event for {what}; links: {:?}", links.current()))
            .or_panic("link events");
    }
}

#[test]
fn the_interface_table_follows_netlink_link_events() {
    // A private namespace of this thread's (gone with its interfaces when the test ends);
    // `ip` runs in it as a child of this thread, and so does the netlink socket.
    let _netns = NetNs::enter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .or_panic("tokio runtime");
    runtime.block_on(async {
        let mut links = NetlinkLinks::open().await.or_panic("netlink");
        assert_eq!(links.current().keys().collect::<Vec<_>>(), ["lo"]);

        ip(&[
            "link", "add", "enf-la", "type", "veth", "peer", "name", "enf-lb",
        ]);
        until(&mut links, "the new veth pair", |l| {
            l.contains_key("enf-la") && l.contains_key("enf-lb")
        })
        .await;
        let index = links.current()["enf-la"];

        // A rename keeps the ifindex and drops the old name.
        ip(&["link", "set", "enf-la", "name", "enf-lc"]);
        until(&mut links, "the rename", |l| {
            l.get("enf-lc") == Some(&index) && !l.contains_key("enf-la")
        })
        .await;

        // Deleting one end removes both.
        ip(&["link", "del", "enf-lc"]);
        until(&mut links, "the deletion", |l| {
            !l.contains_key("enf-lc") && !l.contains_key("enf-lb")
        })
        .await;
        assert_eq!(links.current().keys().collect::<Vec<_>>(), ["lo"]);
    });
}

/// The node's addresses (security item 3) and what each link is (item 12) follow the
/// kernel too: an address added or removed is an event, a `tun` device (no Ethernet
/// header) is no Ethernet link, and IPv4 on a loopback device is its whole prefix.
#[test]
fn addresses_and_link_kinds_follow_netlink_events() {
    use enforcer::dataplane::interfaces::{LinkKind, NodeInterfaces};

    let _netns = NetNs::enter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .or_panic("tokio runtime");
    runtime.block_on(async {
        let mut links = NetlinkLinks::open().await.or_panic("netlink");
        let has = |i: &NodeInterfaces, net: &str| {
            let net = net.parse().or_panic("a prefix");
            i.addresses.iter().any(|(_, n)| *n == net)
        };
        let until_interfaces =
            async |links: &mut NetlinkLinks, what: &str, done: &dyn Fn(&NodeInterfaces) -> bool| {
                while !done(links.interfaces()) {
                    tokio::time::timeout(Duration::from_secs(30), links.changed())
                        .await
                        .unwrap_or_else(|_| {
                            panic!("no event for {what}; now: {:?}", links.interfaces())
                        })
                        .or_panic("link events");
                }
            };

        ip(&["link", "set", "lo", "up"]);
        until_interfaces(&mut links, "lo's address", &|i| has(i, "127.0.0.0/8")).await;
        let lo = links.current()["lo"];
        assert_eq!(links.interfaces().kind(lo), LinkKind::Loopback);

        ip(&[
            "link", "add", "enf-aa", "type", "veth", "peer", "name", "enf-ab",
        ]);
        ip(&["addr", "add", "198.18.9.1/24", "brd", "+", "dev", "enf-aa"]);
        ip(&["addr", "add", "2001:2:0:9::1/64", "dev", "enf-aa", "nodad"]);
        until_interfaces(&mut links, "the veth's addresses", &|i| {
            has(i, "198.18.9.1/32") && has(i, "2001:2:0:9::1/128")
        })
        .await;
        let aa = links.current()["enf-aa"];
        assert_eq!(links.interfaces().kind(aa), LinkKind::Ethernet);
        // The broadcast address is delivered to the host too.
        assert!(has(links.interfaces(), "198.18.9.255/32"));
        let own = links.interfaces().node_addresses();
        assert!(own.contains("198.18.9.1".parse().or_panic("address")));
        assert!(!own.contains("198.18.9.2".parse().or_panic("address")));

        ip(&["addr", "del", "198.18.9.1/24", "dev", "enf-aa"]);
        until_interfaces(&mut links, "the address removal", &|i| {
            !has(i, "198.18.9.1/32")
        })
        .await;

        ip(&["tuntap", "add", "mode", "tun", "enf-tun"]);
        until_interfaces(&mut links, "the tun device", &|i| {
            i.links.contains_key("enf-tun")
        })
        .await;
        let tun = links.current()["enf-tun"];
        assert_eq!(links.interfaces().kind(tun), LinkKind::Other);

        // Deleting the veth takes its addresses along.
        ip(&["link", "del", "enf-aa"]);
        until_interfaces(&mut links, "the veth's deletion", &|i| {
            !i.links.contains_key("enf-aa")
        })
        .await;
        assert!(!has(links.interfaces(), "2001:2:0:9::1/128"));
        ip(&["tuntap", "del", "mode", "tun", "enf-tun"]);
    });
}
