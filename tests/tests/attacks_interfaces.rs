//! Attacks on how the programs are attached, in the lab, on real packets.
//!
//! Security item 13: a removed link pin, a program placed before ours in the TCX chain
//! and an XDP program that makes ours fail to attach must never leave an interface
//! unenforced. Item 12: `interfaceName: "*"` must not put the Ethernet programs on an
//! L3 device.
//!
//! Privileged: `cargo build --bin enforcer && cargo test -p enforcer-tests --test
//! attacks_interfaces -- --test-threads=1`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use enforcer::datastore::file::FileDatastore;
use enforcer::datastore::status::AgentStatus;
use enforcer_tests::attack::{ifindex_in, in_netns, tcp_attempt};
use enforcer_tests::lab::{LabGuard, TempDir, fixture, serial};
use enforcer_tests::rogue;

const APP: &str = "tutorial/dev-app-deployments.yaml";
const DENY_ALL: &str = "tutorial/networkpolicy-deny-all.yaml";

fn frontend_reaches_backend(lab: &LabGuard) -> bool {
    let rows = lab.probe(&[
        "--from",
        "dev-app/frontend-0",
        "--to",
        "dev-app/backend-0",
        "--port",
        "8080",
        "--timeout-ms",
        "700",
    ]);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    rows[0].connected
}

fn status(lab: &LabGuard) -> AgentStatus {
    let store = FileDatastore::open(lab.state_dir().join("datastore"))
        .unwrap_or_else(|e| panic!("open datastore: {e}"));
    store.read_status().ok().flatten().unwrap_or_default()
}

/// Waits (bounded) for `done` on the agent's status.
fn until_status(lab: &LabGuard, what: &str, bound: Duration, done: impl Fn(&AgentStatus) -> bool) {
    let deadline = Instant::now() + bound;
    loop {
        let s = status(lab);
        if done(&s) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {bound:?}; status: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn node_netns(lab: &LabGuard) -> String {
    format!("enf-{}-node", lab.name)
}

fn links_dir(lab: &LabGuard) -> PathBuf {
    let dirs = lab.bpffs_dirs();
    dirs.first()
        .unwrap_or_else(|| panic!("no node bpffs dir"))
        .join("links")
}

fn pins(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn host_iface(lab: &LabGuard, pod: &str) -> String {
    let (ns, name) = pod.split_once('/').unwrap_or_else(|| panic!("{pod}"));
    let _ = lab;
    enforcer::model::workload::host_iface_name(ns, name)
}

/// Removing every link pin (any root process on the node, or a privileged pod with
/// `/sys/fs/bpf` mounted) detached enforcement while nothing noticed. The agent holds
/// its links open: nothing detaches, and the pins come back.
#[test]
fn removed_link_pins_neither_detach_nor_stay_removed() {
    let _serial = serial();
    let lab = LabGuard::new("ai1");
    lab.up(&[&fixture(APP), &fixture(DENY_ALL)], true);
    assert!(!frontend_reaches_backend(&lab), "default deny in force");
    let dir = links_dir(&lab);
    let before = pins(&dir);
    assert!(!before.is_empty());
    for name in &before {
        std::fs::remove_file(dir.join(name)).unwrap_or_else(|e| panic!("rm {name}: {e}"));
    }
    assert!(
        !frontend_reaches_backend(&lab),
        "removing the pins must not detach the programs"
    );
    until_status(&lab, "the pins repaired", Duration::from_secs(10), |s| {
        s.attach_repairs >= before.len() as u64
    });
    assert_eq!(pins(&dir), before, "every pin restored");
    assert!(!frontend_reaches_backend(&lab));
}

/// A program linked before ours in the TCX chain that returns `TCX_PASS` ends the chain
/// before our verdict. Ours is attached first, and the agent moves it back to the
/// front when another program is placed there later (found by its periodic check).
#[test]
fn a_program_placed_before_ours_does_not_stay_there() {
    let _serial = serial();
    let lab = LabGuard::new("ai2");
    lab.up(&[&fixture(APP), &fixture(DENY_ALL)], true);
    assert!(!frontend_reaches_backend(&lab), "default deny in force");
    let node = node_netns(&lab);
    let repairs = status(&lab).attach_repairs;
    // Packets from the frontend enter its host veth (TCX ingress); packets to the
    // backend leave through its host veth (TCX egress).
    let frontend = ifindex_in(&node, &host_iface(&lab, "dev-app/frontend-0"));
    let backend = ifindex_in(&node, &host_iface(&lab, "dev-app/backend-0"));
    let rogues = in_netns(&node, move || {
        (
            rogue::tcx_pass_first(frontend, true),
            rogue::tcx_pass_first(backend, false),
        )
    });
    let _rogues = (
        rogues
            .0
            .unwrap_or_else(|e| panic!("rogue link (frontend): {e}")),
        rogues
            .1
            .unwrap_or_else(|e| panic!("rogue link (backend): {e}")),
    );
    until_status(
        &lab,
        "our programs moved first again",
        Duration::from_secs(15),
        |s| s.attach_repairs >= repairs + 2,
    );
    assert!(
        !frontend_reaches_backend(&lab),
        "a program passing everything before ours must not bypass the policy"
    );
}

/// When XDP cannot attach to a host interface (another XDP program is there), the TC
/// programs must still attach: XDP is an optimization, TC judges every packet.
#[test]
fn a_host_interface_where_xdp_cannot_attach_is_still_enforced() {
    let _serial = serial();
    let lab = LabGuard::new("ai3");
    lab.up(&[&fixture("hostendpoints/nodeport-app.yaml")], true);
    let node = node_netns(&lab);
    let ext = format!("enf-{}-ext", lab.name);
    let eth0 = ifindex_in(&node, "eth0");
    let _rogue = in_netns(&node, move || rogue::xdp_pass_native(eth0))
        .unwrap_or_else(|e| panic!("rogue XDP on the node's eth0: {e}"));
    let service = "198.18.255.1:8000"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        tcp_attempt(&ext, None, service, Duration::from_millis(700)).connected(),
        "no host endpoint yet: the node's service answers"
    );
    for f in [
        "hostendpoints/001-default-deny.yaml",
        "hostendpoints/002-node1-eth0.yaml",
    ] {
        lab.apply(&fixture(f));
    }
    let outcome = tcp_attempt(&ext, None, service, Duration::from_millis(700));
    assert!(
        !outcome.connected(),
        "the host endpoint's deny must hold without XDP: {outcome:?}"
    );
    until_status(&lab, "XDP reported missing", Duration::from_secs(10), |s| {
        s.xdp_unavailable.contains_key("eth0")
    });
    let s = status(&lab);
    assert!(s.attach_failed.is_empty(), "{s:?}");
}

/// `interfaceName: "*"` covers Ethernet links only: an L3 device (here `tun`, as
/// IPIP `tunl0` or `WireGuard` would be) has no Ethernet header for the programs to
/// parse (its packets' source address would be read as the `EtherType`), so it gets
/// none of them, while `eth0` does.
#[test]
fn a_wildcard_host_endpoint_leaves_l3_devices_alone() {
    let _serial = serial();
    let lab = LabGuard::new("ai4");
    let tmp = TempDir::new("ai4");
    let node = node_netns(&lab);
    lab.up(&[&fixture("hostendpoints/nodeport-app.yaml")], true);
    let out = std::process::Command::new("ip")
        .args(["-n", &node, "tuntap", "add", "mode", "tun", "enftun0"])
        .output()
        .unwrap_or_else(|e| panic!("ip tuntap: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = tmp.write(
        "all.yaml",
        "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: node1-all, labels: {kubernetes-host: ingress}}\nspec: {node: node1, interfaceName: \"*\"}\n",
    );
    lab.apply(&all);
    let dir = links_dir(&lab);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pins(&dir).iter().any(|p| p.starts_with("eth0_")) {
        assert!(
            Instant::now() < deadline,
            "eth0 not attached: {:?}",
            pins(&dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let attached = pins(&dir);
    assert!(
        !attached.iter().any(|p| p.starts_with("enftun0_")),
        "an L3 device got the Ethernet programs: {attached:?}"
    );
}
