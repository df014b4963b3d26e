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
