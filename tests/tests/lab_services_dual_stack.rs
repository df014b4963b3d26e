//! Services as users define them, on real packets (issue 13): a dual-stack Service
//! (`ipFamilyPolicy: PreferDualStack`) gets a `ClusterIP` of each family and an
//! IPv6-only one (`ipFamilies: [IPv6]`) an IPv6 one, written back into
//! `spec.clusterIPs`; the lab's kube-proxy translates each to the backends of its
//! family, and a Service's `externalIPs` and load balancer address to the same
//! backends. Egress policy judges the backend after that translation, whichever
//! address the client sent to: a `NetworkPolicy` egress rule to the backend pods admits
//! every Service address; without it, or with a rule to the Service addresses
//! themselves, the packets are dropped (a timeout, not an error).
//!
//! Privileged: `cargo build --bin enforcer && cargo test -p enforcer-tests --test lab_services_dual_stack`.

use enforcer::datastore::file::FileDatastore;
use enforcer::model::Object;
use enforcer_tests::lab::{LabGuard, fixture, serial};

const WORKLOADS: &str = "services-dual-stack/workloads.yaml";
const DENY: &str = "services-dual-stack/deny-client-egress.yaml";
const ALLOW_BACKENDS: &str = "services-dual-stack/allow-client-to-web.yaml";
const ALLOW_ADDRESSES: &str = "services-dual-stack/allow-client-to-service-addresses.yaml";

/// Every Service address the client probes: (target, extra `lab probe` flags, how many
/// addresses that is).
const TARGETS: &[(&str, &[&str], usize)] = &[
    ("svc/a/web", &[], 1),
    ("svc/a/web", &["--ipv6"], 1),
    ("svc/a/web6", &["--ipv6"], 1),
    // The external IPv4 address and the load balancer's.
    ("svc/a/ext", &["--external-ips"], 2),
    ("svc/a/ext", &["--external-ips", "--ipv6"], 1),
];

/// Probes every target from the client; all must connect (`want`), or all must time
/// out. Every failure is reported.
fn expect(lab: &LabGuard, what: &str, want: bool) {
    let mut wrong = Vec::new();
    for &(to, flags, count) in TARGETS {
        let mut args = vec!["--from", "a/client", "--to", to, "--timeout-ms", "700"];
        args.extend_from_slice(flags);
        let rows = lab.probe(&args);
        assert_eq!(rows.len(), count, "{to} {flags:?}: {rows:#?}");
        for row in rows {
            let ok = if want {
                row.connected
            } else {
                row.result == "timeout"
            };
            if !ok {
                wrong.push(format!(
                    "{to} {flags:?} port {}: expected {}, got {}",
                    row.port,
                    if want { "connected" } else { "timeout" },
                    row.result
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{what}:\n{}", wrong.join("\n"));
}

/// The Services as the lab stored them.
fn cluster_ips(lab: &LabGuard, name: &str) -> (Vec<String>, Vec<String>, Option<String>) {
    let store = FileDatastore::open(lab.state_dir().join("datastore"))
        .unwrap_or_else(|e| panic!("datastore: {e}"));
    let objects = store.list().unwrap_or_else(|e| panic!("list: {e}"));
    let svc = objects
        .iter()
        .find_map(|l| match &l.object {
            Object::Service(s)
                if s.metadata.name == name && s.metadata.namespace.as_deref() == Some("a") =>
            {
                Some(s.clone())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("Service a/{name} not stored"));
    (
        svc.spec.cluster_ips,
        svc.spec.ip_families,
        svc.spec.cluster_ip,
    )
}

#[test]
fn ipv6_dual_stack_and_external_service_addresses_are_judged_by_their_backends() {
    let _serial = serial();
    let lab = LabGuard::new("svc6");
    lab.up(&[&fixture(WORKLOADS)], true);

    // The API server's write-back: one ClusterIP per family, primary first.
    let (ips, families, primary) = cluster_ips(&lab, "web");
    assert_eq!(families, ["IPv4", "IPv6"], "{ips:?}");
    assert!(
        ips[0].starts_with("198.19.") && ips[1].starts_with("2001:2:0:19::"),
        "{ips:?}"
    );
    assert_eq!(primary.as_deref(), Some(ips[0].as_str()));
    let (ips, families, primary) = cluster_ips(&lab, "web6");
    assert_eq!(families, ["IPv6"], "{ips:?}");
    assert_eq!(ips.len(), 1, "{ips:?}");
    assert_eq!(primary.as_deref(), Some(ips[0].as_str()));

    // No policy: every address reaches a backend.
    expect(&lab, "no policy", true);

    // Egress denied: every address is dropped.
    lab.apply(&fixture(DENY));
    expect(&lab, "egress denied", false);

    // A rule to the Service addresses admits nothing: they are not what is judged.
    lab.apply(&fixture(ALLOW_ADDRESSES));
    expect(&lab, "egress to the Service addresses only", false);

    // A rule to the backends admits every Service address, of both families.
    lab.apply(&fixture(ALLOW_BACKENDS));
    expect(&lab, "egress to the backends", true);
}
