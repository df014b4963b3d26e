//! Calico semantics on real packets in the lab: the tutorial's step 8
//! `GlobalNetworkPolicy`, tiers with Pass and the end-of-tier deny, a Pass-default tier,
//! NetworkSet/GlobalNetworkSet references, and notSelector vs `!has()` for an external
//! client. Each runs in a one-node lab and again in a two-node lab (pods spread, so
//! most flows cross nodes), with the same assertions.
//!
//! Privileged: `cargo build --bin enforcer && cargo test -p enforcer-tests --test lab_calico`.

use enforcer_tests::lab::{LabGuard, fixture, serial};

const APP: &str = "tutorial/dev-app-deployments.yaml";

fn connected(lab: &LabGuard, from: &str, to: &str, port: u16, protocol: &str) -> bool {
    let port = port.to_string();
    let rows = lab.probe(&[
        "--from",
        from,
        "--to",
        to,
        "--port",
        &port,
        "--protocol",
        protocol,
    ]);
    assert_eq!(
        rows.len(),
        1,
        "one probe expected for {from} -> {to}: {rows:#?}"
    );
    rows[0].connected
}

/// `(from, to, port, protocol, expected)` rows, all checked, all failures reported.
fn expect(lab: &LabGuard, what: &str, rows: &[(&str, &str, u16, &str, bool)]) {
    let wrong: Vec<String> = rows
        .iter()
        .filter(|(from, to, port, protocol, want)| {
            connected(lab, from, to, *port, protocol) != *want
        })
        .map(|(from, to, port, protocol, want)| {
            format!("{from} -> {to}:{port}/{protocol}: expected connected={want}")
        })
        .collect();
    assert!(wrong.is_empty(), "{what}:\n{}", wrong.join("\n"));
}

#[test]
fn tutorial_step_8_global_policy_admits_the_agent_and_cuts_off_dns() {
    tutorial_step_8_global_policy_admits_the_agent_and_cuts_off_dns_in(1);
}

#[test]
fn tutorial_step_8_global_policy_admits_the_agent_and_cuts_off_dns_on_two_nodes() {
    tutorial_step_8_global_policy_admits_the_agent_and_cuts_off_dns_in(2);
}

fn tutorial_step_8_global_policy_admits_the_agent_and_cuts_off_dns_in(nodes: u32) {
    let _serial = serial();
    let lab = LabGuard::new("gnp").with_nodes(nodes);
    lab.up(
        &[
            &fixture(APP),
            &fixture("tutorial/monitoring-namespace-and-agent.yaml"),
            &fixture("calico/exporter.yaml"),
        ],
        true,
    );
    lab.assert_spread();
    let exporter = "kube-system/node-exporter";
    let dns = "kube-system/coredns-0";
    expect(
        &lab,
        "before step 8 everything is open",
        &[
            ("monitoring/prometheus-agent", exporter, 9090, "TCP", true),
            ("dev-app/frontend-0", exporter, 9090, "TCP", true),
            ("dev-app/frontend-0", dns, 53, "UDP", true),
        ],
    );
    // The tutorial's YAML verbatim: Kubernetes-style selectors inside a Calico rule,
    // which enforcer converts (with a warning) to the Calico form the author meant:
    // namespace `monitoring` AND `app == 'prometheus-agent'`.
    lab.apply(&fixture(
        "tutorial/globalnetworkpolicy-allow-monitoring.yaml",
    ));
    expect(
        &lab,
        "after step 8",
        &[
            // The agent reaches every `has(k8s-app)` pod on 9090 ...
            ("monitoring/prometheus-agent", exporter, 9090, "TCP", true),
            // ... and nobody else does: the policy isolates the selected pods' ingress.
            ("dev-app/frontend-0", exporter, 9090, "TCP", false),
            ("dev-app/impostor", exporter, 9090, "TCP", false),
            // kube-dns carries `k8s-app` too: it is now isolated, and DNS is gone.
            ("dev-app/frontend-0", dns, 53, "UDP", false),
            ("monitoring/prometheus-agent", dns, 53, "UDP", false),
            // Pods without `k8s-app` are untouched.
            ("dev-app/database-0", "dev-app/backend-0", 8080, "TCP", true),
        ],
    );
}

#[test]
fn tiers_pass_end_of_tier_deny_and_a_pass_default_tier() {
    tiers_pass_end_of_tier_deny_and_a_pass_default_tier_in(1);
}

#[test]
fn tiers_pass_end_of_tier_deny_and_a_pass_default_tier_on_two_nodes() {
    tiers_pass_end_of_tier_deny_and_a_pass_default_tier_in(2);
}

fn tiers_pass_end_of_tier_deny_and_a_pass_default_tier_in(nodes: u32) {
    let _serial = serial();
    let lab = LabGuard::new("tier").with_nodes(nodes);
    lab.up(
        &[&fixture(APP), &fixture("tutorial-fixes/client.yaml")],
        true,
    );
    lab.assert_spread();

    // A Pass-default tier with only a Log rule selects everything and decides nothing.
    lab.apply(&fixture("calico/observe-tier.yaml"));
    expect(
        &lab,
        "observe tier (Log, default Pass)",
        &[
            ("dev-app/backend-0", "dev-app/frontend-0", 80, "TCP", true),
            ("dev-app/database-0", "dev-app/frontend-1", 80, "TCP", true),
            ("client/client", "dev-app/database-0", 3306, "TCP", true),
        ],
    );
    lab.delete(&fixture("calico/observe-tier.yaml"));

    lab.apply(&fixture("calico/tiers.yaml"));
    expect(
        &lab,
        "security tier then default tier",
        &[
            // Pass in `security`, then the Kubernetes policy in `default` allows.
            ("dev-app/backend-0", "dev-app/frontend-0", 80, "TCP", true),
            // Deny in `security` wins before any later tier could allow.
            ("dev-app/database-0", "dev-app/frontend-0", 80, "TCP", false),
            ("client/client", "dev-app/frontend-1", 80, "TCP", false),
            // The database: Allow in `security` for backend:3306 ...
            ("dev-app/backend-1", "dev-app/database-0", 3306, "TCP", true),
            // ... and everything else meets the end of tier `security`: Deny.
            (
                "dev-app/frontend-0",
                "dev-app/database-0",
                3306,
                "TCP",
                false,
            ),
            ("client/client", "dev-app/database-0", 3306, "TCP", false),
            // Pods no policy selects stay open.
            ("client/client", "dev-app/backend-0", 8080, "TCP", true),
        ],
    );
}

#[test]
fn network_sets_and_not_selector_for_an_external_client() {
    network_sets_and_not_selector_for_an_external_client_in(1);
}

#[test]
fn network_sets_and_not_selector_for_an_external_client_on_two_nodes() {
    network_sets_and_not_selector_for_an_external_client_in(2);
}

fn network_sets_and_not_selector_for_an_external_client_in(nodes: u32) {
    let _serial = serial();
    let lab = LabGuard::new("nset").with_nodes(nodes);
    lab.up(&[&fixture(APP)], true);
    lab.assert_spread();
    expect(
        &lab,
        "before: the external client reaches the pods",
        &[
            ("external", "dev-app/frontend-0", 80, "TCP", true),
            ("external", "dev-app/backend-0", 8080, "TCP", true),
        ],
    );

    lab.apply(&fixture("calico/network-sets.yaml"));
    expect(
        &lab,
        "network sets",
        &[
            // 198.18.255.2 is in the GlobalNetworkSet `partners`: frontend admits it.
            ("external", "dev-app/frontend-0", 80, "TCP", true),
            ("external", "dev-app/frontend-1", 80, "TCP", true),
            // ... and only it: pods are no partners.
            ("dev-app/backend-0", "dev-app/frontend-0", 80, "TCP", false),
            // backend admits the NetworkSet `office` (198.18.254.0/24): not external.
            ("external", "dev-app/backend-0", 8080, "TCP", false),
        ],
    );
    lab.delete(&fixture("calico/network-sets.yaml"));

    lab.apply(&fixture("calico/not-selector.yaml"));
    expect(
        &lab,
        "notSelector vs !has(), global and namespaced",
        &[
            // Global notSelector: everything that is not the database, the external
            // client included.
            ("external", "dev-app/frontend-0", 80, "TCP", true),
            ("dev-app/backend-0", "dev-app/frontend-0", 80, "TCP", true),
            (
                "kube-system/coredns-0",
                "dev-app/frontend-1",
                80,
                "TCP",
                true,
            ),
            ("dev-app/database-0", "dev-app/frontend-0", 80, "TCP", false),
            // Namespaced notSelector: scoped to dev-app endpoints, so neither the
            // external client nor another namespace's pod matches.
            ("dev-app/frontend-0", "dev-app/backend-0", 8080, "TCP", true),
            (
                "dev-app/database-0",
                "dev-app/backend-0",
                8080,
                "TCP",
                false,
            ),
            ("external", "dev-app/backend-0", 8080, "TCP", false),
            (
                "kube-system/coredns-0",
                "dev-app/backend-1",
                8080,
                "TCP",
                false,
            ),
            // `!has(app)`: kube-dns (it has `k8s-app`, not `app`) yes; the external
            // client, no endpoint, no; labelled pods no.
            (
                "kube-system/coredns-0",
                "dev-app/database-0",
                3306,
                "TCP",
                true,
            ),
            ("external", "dev-app/database-0", 3306, "TCP", false),
            (
                "dev-app/frontend-0",
                "dev-app/database-0",
                3306,
                "TCP",
                false,
            ),
        ],
    );
}
