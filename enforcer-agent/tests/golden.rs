//! Golden-output tests of `enforcer check`, `explain -f` and `matrix` on the seed and
//! tutorial YAML: the real binary, run from the workspace root, its exit status,
//! stdout and stderr compared with `tests/golden/<name>.txt`.
//!
//! `UPDATE_GOLDEN=1` (or `ENFORCER_BLESS=1`) `cargo test -p enforcer-agent --test golden`
//! rewrites the files;
//! review the diff before committing.

#[path = "support/golden.rs"]
mod golden_file;

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn golden(name: &str, args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_enforcer"))
        .args(args)
        .current_dir(workspace())
        .env("RUST_LOG", "off")
        .output()
        .unwrap_or_else(|e| panic!("running enforcer {args:?}: {e}"));
    let mut actual = format!(
        "$ enforcer {}\n[exit {}]\n{}",
        args.join(" "),
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stderr.is_empty() {
        actual.push_str("[stderr]\n");
        actual.push_str(&stderr);
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.txt"));
    golden_file::compare(&path, name, &actual);
}

/// Substrings a golden must keep: the findings the issue asks for.
fn assert_golden_contains(name: &str, needles: &[&str]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.txt"));
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    for needle in needles {
        assert!(text.contains(needle), "{name}: missing {needle:?}\n{text}");
    }
}

const TUTORIAL: &str = "tests/fixtures/tutorial/";
const FIXES: &str = "tests/fixtures/tutorial-fixes/";
const DEPLOYMENTS: &str = "tests/fixtures/tutorial/dev-app-deployments.yaml";
const SEED000: &str = "enforcer-agent/tests/fixtures/seed000_tutorial.yaml";
const SEED001: &str = "enforcer-agent/tests/fixtures/seed001_broken_gnp.yaml";
const SEED002: &str = "enforcer-agent/tests/fixtures/seed002_nodeports.yaml";
const SEED002_PASTED: &str = "enforcer-agent/tests/fixtures/seed002_insert_ip_here.yaml";
const CHECKS: &str = "enforcer-agent/tests/fixtures/check/";

// --- check ------------------------------------------------------------------------

#[test]
fn check_tutorial() {
    golden("check-tutorial", &["check", "-f", TUTORIAL]);
    assert_golden_contains(
        "check-tutorial",
        &[
            // Steps 5 and 6: the ingress allows whose peers' egress is still denied.
            "networkpolicy-allow-frontend-to-backend.yaml:14:11: warning[egress-still-denied]",
            "networkpolicy-allow-backend-to-database.yaml:14:11: warning[egress-still-denied]",
            // Step 8: has(k8s-app) selects kube-dns and denies all DNS.
            "globalnetworkpolicy-allow-monitoring.yaml:7:3: warning[newly-isolates]",
            "This cuts off cluster DNS",
            "k8s-app != 'kube-dns'",
            // Step 8's Kubernetes-style peers, with the Calico form.
            "write `namespaceSelector: kubernetes.io/metadata.name == 'monitoring'`",
            "write `selector: app == 'prometheus-agent'`",
            "[exit 0]",
        ],
    );
}

#[test]
fn check_tutorial_json() {
    golden(
        "check-tutorial-json",
        &["check", "-f", TUTORIAL, "-o", "json"],
    );
}

#[test]
fn check_tutorial_with_fixes() {
    golden(
        "check-tutorial-fixed",
        &["check", "-f", TUTORIAL, "-f", FIXES],
    );
}

#[test]
fn check_seed000() {
    golden("check-seed000", &["check", "-f", SEED000]);
}

#[test]
fn check_seed001() {
    golden("check-seed001", &["check", "-f", SEED001]);
    assert_golden_contains(
        "check-seed001",
        &[
            "seed001_broken_gnp.yaml:2:7: error[yaml-syntax]",
            "[exit 1]",
            "  name: default-deny",
        ],
    );
}

#[test]
fn check_seed002() {
    golden("check-seed002", &["check", "-f", SEED002]);
    golden("check-seed002-pasted", &["check", "-f", SEED002_PASTED]);
    assert_golden_contains(
        "check-seed002-pasted",
        &[
            "seed002_insert_ip_here.yaml:38:7: error[invalid-cidr]",
            "INSERT_IP_HERE is a placeholder",
            "[exit 1]",
        ],
    );
}

#[test]
fn check_dns_label_mismatch() {
    golden(
        "check-coredns-labels",
        &[
            "check",
            "-f",
            DEPLOYMENTS,
            "-f",
            "tests/fixtures/tutorial/networkpolicy-deny-all.yaml",
            "-f",
            "tests/fixtures/tutorial/networkpolicy-allow-dns-egress.yaml",
            "-f",
            "enforcer-agent/tests/fixtures/check/coredns-labels.yaml",
        ],
    );
    assert_golden_contains(
        "check-coredns-labels",
        &[
            "warning[selector-matches-nothing]",
            "k8s-app=coredns",
            "`k8s-app: coredns`",
        ],
    );
}

#[test]
fn check_validation_rules() {
    golden(
        "check-invalid-rules",
        &[
            "check",
            "-f",
            "enforcer-agent/tests/fixtures/check/invalid-rules.yaml",
        ],
    );
    assert_golden_contains(
        "check-invalid-rules",
        &[
            "error[pre-dnat-needs-apply-on-forward]",
            "error[ports-need-protocol]",
            "error[mixed-ip-versions]",
            "ipVersion must be 4 with protocol ICMP",
            "[exit 1]",
        ],
    );
}

#[test]
fn check_shadowed_rules() {
    golden(
        "check-shadowed",
        &[
            "check",
            "-f",
            "enforcer-agent/tests/fixtures/check/shadowed.yaml",
        ],
    );
    assert_golden_contains(
        "check-shadowed",
        &["warning[shadowed-rule]", "info[redundant-rule]"],
    );
}

#[test]
fn check_unknown_field() {
    golden(
        "check-typo",
        &[
            "check",
            "-f",
            "enforcer-agent/tests/fixtures/check/typo.yaml",
        ],
    );
    assert_golden_contains(
        "check-typo",
        &[
            "did you mean `destination`?",
            "rename `destinaton` to `destination`",
        ],
    );
}

#[test]
fn check_directory_of_checks() {
    golden(
        "check-all-fixtures",
        &["check", "-q", "-f", CHECKS, "-o", "json"],
    );
}

// --- explain -f -------------------------------------------------------------------

#[test]
fn explain_step5_egress_denied() {
    golden(
        "explain-frontend-backend",
        &[
            "explain",
            "-f",
            TUTORIAL,
            "--from",
            "dev-app/frontend-0",
            "--to",
            "dev-app/backend-0",
            "--port",
            "8080/TCP",
        ],
    );
    golden(
        "explain-frontend-backend-fixed",
        &[
            "explain",
            "-f",
            TUTORIAL,
            "-f",
            FIXES,
            "--from",
            "dev-app/frontend-0",
            "--to",
            "dev-app/backend-0",
            "--port",
            "8080/TCP",
        ],
    );
}

#[test]
fn explain_step8_dns() {
    golden(
        "explain-dns",
        &[
            "explain",
            "-f",
            TUTORIAL,
            "--from",
            "dev-app/frontend-0",
            "--to",
            "kube-system/coredns-0",
            "--port",
            "53/UDP",
        ],
    );
    golden(
        "explain-dns-json",
        &[
            "explain",
            "-f",
            SEED000,
            "--from",
            "dev-app/frontend-0",
            "--to",
            "kube-system/coredns-0",
            "--port",
            "53/UDP",
            "-o",
            "json",
        ],
    );
}

// --- matrix -----------------------------------------------------------------------

#[test]
fn matrix_tutorial() {
    golden("matrix-tutorial", &["matrix", "-f", TUTORIAL]);
    golden(
        "matrix-tutorial-fixed-json",
        &["matrix", "-f", TUTORIAL, "-f", FIXES, "-o", "json"],
    );
    golden("matrix-seed000", &["matrix", "-f", SEED000]);
}

#[test]
fn matrix_what_changes_open_and_close() {
    // What the tutorial's step-5/6 fixes open.
    golden(
        "matrix-apply-fixes",
        &["matrix", "-f", TUTORIAL, "--apply", FIXES],
    );
    // What step 8 closes: DNS.
    golden(
        "matrix-apply-step8",
        &[
            "matrix",
            "-f",
            DEPLOYMENTS,
            "-f",
            "tests/fixtures/tutorial/networkpolicy-deny-all.yaml",
            "-f",
            "tests/fixtures/tutorial/networkpolicy-allow-dns-egress.yaml",
            "-f",
            "tests/fixtures/tutorial/monitoring-namespace-and-agent.yaml",
            "--apply",
            "tests/fixtures/tutorial/globalnetworkpolicy-allow-monitoring.yaml",
        ],
    );
    assert_golden_contains(
        "matrix-apply-step8",
        &["- dev-app/frontend-0 -> kube-system/coredns-0:53/UDP"],
    );
    // From step 3 alone to every step of the tutorial: opens and closes.
    golden(
        "matrix-diff-step3-all",
        &[
            "matrix",
            "-f",
            DEPLOYMENTS,
            "--diff",
            "tests/fixtures/tutorial/networkpolicy-deny-all.yaml",
            TUTORIAL,
        ],
    );
}
