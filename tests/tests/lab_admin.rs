//! `AdminNetworkPolicy` and `BaselineAdminNetworkPolicy` on real packets, in one lab
//! with the agent enforcing: the network-policy-api conformance base (four house
//! namespaces, two pods each, serving 80/TCP `web`, 8080/TCP, 53/UDP `dns` and
//! 5353/UDP, and a hostNetwork server; `tests/fixtures/admin-conformance/base.yaml`),
//! then
//!
//! 1. our own cases (`tests/fixtures/admin-lab/`): ANP priority order both ways, `Pass`
//!    handing over to `NetworkPolicy` (and past lower-priority ANPs), the baseline only
//!    where no `NetworkPolicy` selects, port numbers, named ports and ranges, TCP and
//!    UDP, ingress and egress;
//! 2. the upstream conformance suite (`tests/fixtures/admin-conformance/`, transcribed
//!    from kubernetes-sigs/network-policy-api's last v1alpha1 suite): every subtest's
//!    policy changes and probes, in upstream's order.
//!
//! Each case's policies are applied, its steps change them as upstream's subtests do
//! (the changes stay for the later steps), each step's probes run from the client's
//! netns with conntrack emptied first, and the policies are deleted before the next
//! case (which must find no policy left). SCTP probes are listed as not applicable
//! with the fixture's reason and never counted as passed. For the node-peer cases the
//! lab's nodes are written as Node objects labelled `kubernetes.io/os: linux`, and
//! forbidden-forrest's hostNetwork server is one pod (`centaur-1`).
//! Before the lab comes up the tables are checked: enough cases, every probe readable,
//! every change applicable, every applicable case expecting some denial and some
//! connection (so a dataplane that allows, or drops, everything fails).
//!
//! Privileged: `cargo build --bin enforcer && cargo test -p enforcer-tests --test lab_admin -- --nocapture`.
//! `ADMIN_CASE=<substring>` runs only the cases whose file name matches.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Instant;

use enforcer::datastore::file::FileDatastore;
use enforcer::model::Object;
use enforcer_tests::admin::{self, Case, Changed, Probe};
use enforcer_tests::lab::{EXIT_NO, LabGuard, ProbeResult, TempDir, fixture, forget_flows, serial};
use serde_json::Value;

/// Per-probe timeout: what a denied probe costs (a step's probes run in parallel).
const TIMEOUT_MS: &str = "500";
/// Upstream's case files: 24 tests (13 ANP, 11 BANP), with 92 subtests (`t.Run`).
const UPSTREAM_CASES: usize = 24;
const UPSTREAM_SUBTESTS: usize = 92;

/// The lab and what the cases need to know of it.
struct Ctx {
    lab: LabGuard,
    tmp: TempDir,
    bpffs: Vec<PathBuf>,
    store: FileDatastore,
    /// Pod name → namespace (the conformance pods' names are unique).
    namespace_of: BTreeMap<String, String>,
    /// Pod name → IPv4 address.
    ipv4: BTreeMap<String, String>,
}

#[derive(Default)]
struct Tally {
    /// Case files run.
    files: usize,
    /// Steps with probes run.
    steps: usize,
    probes: usize,
    failed: Vec<String>,
    /// Probes not run, with why.
    not_applicable: Vec<String>,
    /// Steps with nothing but such probes.
    steps_not_applicable: usize,
    /// Whole cases not run, with why.
    cases_not_applicable: Vec<String>,
}

fn probes(step: &admin::Step) -> Vec<Probe> {
    step.probes
        .iter()
        .map(|p| admin::parse_probe(p).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// The tables, before anything is brought up.
fn check_table(cases: &[(String, Case)]) -> Vec<String> {
    let placeholder: BTreeMap<String, String> = cases
        .iter()
        .flat_map(|(_, c)| &c.steps)
        .flat_map(|s| {
            s.probes
                .iter()
                .chain(s.not_applicable.iter().map(|n| &n.probe))
        })
        .flat_map(|p| p.split_whitespace().take(3).collect::<Vec<_>>())
        .map(|w| (w.to_owned(), "198.18.0.1".to_owned()))
        .collect();
    let mut problems = Vec::new();
    for (file, c) in cases {
        let mut docs = match admin::documents(&c.policies) {
            Ok(d) if !d.is_empty() => d,
            Ok(_) => {
                problems.push(format!("{file}: no policies"));
                continue;
            }
            Err(e) => {
                problems.push(format!("{file}: policies: {e}"));
                continue;
            }
        };
        if c.steps.is_empty() {
            problems.push(format!("{file}: no steps"));
        }
        let mut expected = BTreeSet::new();
        for s in &c.steps {
            for change in &s.change {
                for (name, op) in change {
                    if let Err(e) = admin::apply_change(&mut docs, name, op, &placeholder) {
                        problems.push(format!("{file}: {}: {e}", s.name));
                    }
                }
            }
            for p in &s.probes {
                match admin::parse_probe(p) {
                    Ok(p) => {
                        expected.insert(p.allowed);
                    }
                    Err(e) => problems.push(format!("{file}: {e}")),
                }
            }
            if s.probes.is_empty() && s.not_applicable.is_empty() {
                problems.push(format!("{file}: {}: probes nothing", s.name));
            }
            if s.not_applicable.iter().any(|n| n.reason.trim().is_empty()) {
                problems.push(format!(
                    "{file}: {}: a probe not applicable without a reason",
                    s.name
                ));
            }
        }
        let probed = c.steps.iter().any(|s| !s.probes.is_empty());
        if c.not_applicable.is_none() && probed && expected.len() != 2 {
            problems.push(format!("{file}: expects only {expected:?} (vacuous)"));
        }
    }
    problems
}

fn run_lab(lab: &LabGuard, args: &[&str]) -> Result<String, String> {
    let out = lab.run(args);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`enforcer lab {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Ctx {
    fn apply(&self, tag: &str, verb: &str, docs: &[&Value]) -> Result<(), String> {
        let file = self
            .tmp
            .write(&format!("{tag}-{verb}.yaml"), &admin::to_yaml(docs));
        run_lab(&self.lab, &[verb, "-f", &file.to_string_lossy()]).map(|_| ())
    }

    /// One `lab probe` from every client of `probes` to every server, on the servers'
    /// declared ports.
    fn probe(&self, probes: &[Probe]) -> Result<Vec<ProbeResult>, String> {
        forget_flows(&self.bpffs)?;
        let key = |pod: &str| {
            self.namespace_of
                .get(pod)
                .map(|ns| format!("{ns}/{pod}"))
                .ok_or_else(|| format!("no pod {pod} in the lab"))
        };
        let mut args = vec!["probe".to_owned()];
        let from: BTreeSet<&str> = probes.iter().map(|p| p.from.as_str()).collect();
        let to: BTreeSet<&str> = probes.iter().map(|p| p.to.as_str()).collect();
        for f in from {
            args.extend(["--from".to_owned(), key(f)?]);
        }
        for t in to {
            args.extend(["--to".to_owned(), key(t)?]);
        }
        args.extend(["--timeout-ms", TIMEOUT_MS, "-o", "json"].map(str::to_owned));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // Exit 3 says a probe did not connect: an answer, not a failure.
        let out = self.lab.run(&args);
        if !(out.status.success() || out.status.code() == Some(EXIT_NO)) {
            return Err(format!(
                "`enforcer lab {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("probe output: {e}"))
    }

    /// Runs one case: its policies, each step's changes and probes, then the cleanup.
    fn run_case(&self, ci: usize, file: &str, case: &Case, tally: &mut Tally) {
        let why = case.not_applicable.as_deref();
        if let Some(why) = why {
            tally
                .cases_not_applicable
                .push(format!("{file} ({}): {}", case.test, why.trim()));
            return;
        }
        let started = Instant::now();
        let mut problems = Vec::new();
        let mut docs = admin::documents(&case.policies).unwrap_or_else(|e| panic!("{file}: {e}"));
        let (mut steps, mut compared) = (0, 0);
        // A change that cannot be made leaves the later steps meaningless.
        let mut broken = self
            .apply(&format!("c{ci}"), "apply", &docs.iter().collect::<Vec<_>>())
            .err();
        for (si, step) in case.steps.iter().enumerate() {
            if let Some(e) = broken.take() {
                problems.push(e);
                break;
            }
            let tag = format!("c{ci}s{si}");
            for change in &step.change {
                for (name, op) in change {
                    let done = match admin::apply_change(&mut docs, name, op, &self.ipv4) {
                        Ok(Changed::Edited(i)) => self.apply(&tag, "apply", &[&docs[i]]),
                        Ok(Changed::Deleted(doc)) => self.apply(&tag, "delete", &[&doc]),
                        Err(e) => Err(e),
                    };
                    if let Err(e) = done {
                        broken = Some(format!("{}: {e}", step.name));
                    }
                }
            }
            for na in &step.not_applicable {
                tally
                    .not_applicable
                    .push(format!("{file}: {}: {}", na.probe, na.reason));
            }
            if let Some(e) = broken.take() {
                problems.push(e);
                break;
            }
            let want = probes(step);
            if want.is_empty() {
                tally.steps_not_applicable += 1;
                continue;
            }
            steps += 1;
            match self.probe(&want) {
                Err(e) => problems.push(format!("{}: {e}", step.name)),
                Ok(rows) => {
                    let (n, wrong) = admin::compare(&want, &self.namespace_of, &rows);
                    compared += n;
                    problems.extend(wrong.into_iter().map(|w| format!("{}: {w}", step.name)));
                }
            }
        }
        // Clean up: what the case left (deleted objects are gone already).
        if let Err(e) = self.apply(
            &format!("c{ci}-cleanup"),
            "delete",
            &docs.iter().collect::<Vec<_>>(),
        ) {
            problems.push(format!("cleanup: {e}"));
        }
        let verdict = if problems.is_empty() { "PASS" } else { "FAIL" };
        eprintln!(
            "{verdict} {steps:>2} steps {compared:>3} probes {:>5.1}s  {file} ({})",
            started.elapsed().as_secs_f64(),
            case.test
        );
        tally.steps += steps;
        tally.probes += compared;
        if !problems.is_empty() {
            tally.failed.push(format!(
                "{file} ({}):\n    {}",
                case.test,
                problems.join("\n    ")
            ));
        }
        self.assert_clean(file);
    }

    /// Nothing of the previous case may remain.
    fn assert_clean(&self, after: &str) {
        let objects = self
            .store
            .list()
            .unwrap_or_else(|e| panic!("listing the datastore: {e}"));
        let left: Vec<String> = objects
            .iter()
            .filter(|l| {
                matches!(
                    l.object,
                    Object::NetworkPolicy(_)
                        | Object::AdminNetworkPolicy(_)
                        | Object::BaselineAdminNetworkPolicy(_)
                )
            })
            .map(|l| format!("{} {}", l.object.kind(), l.object.meta().name))
            .collect();
        assert!(left.is_empty(), "after {after}: policies left: {left:?}");
    }
}

fn run_suite(ctx: &Ctx, label: &str, cases: &[(String, Case)]) -> Tally {
    let filter = std::env::var("ADMIN_CASE").ok();
    let mut tally = Tally::default();
    let started = Instant::now();
    for (ci, (file, case)) in cases.iter().enumerate() {
        if filter.as_deref().is_some_and(|f| !file.contains(f)) {
            continue;
        }
        tally.files += 1;
        ctx.run_case(ci, file, case, &mut tally);
    }
    eprintln!(
        "{label}: {} cases, {} probes, {} failed ({} files, {:.0}s)",
        tally.steps,
        tally.probes,
        tally.failed.len(),
        tally.files,
        started.elapsed().as_secs_f64()
    );
    for na in &tally.cases_not_applicable {
        eprintln!("  not applicable: {na}");
    }
    eprintln!(
        "  not applicable: {} SCTP probes (this kernel has no SCTP sockets); {} cases probe nothing else",
        tally.not_applicable.len(),
        tally.steps_not_applicable
    );
    tally
}

#[test]
fn admin_network_policies_and_the_upstream_conformance_cases_in_one_lab() {
    let _serial = serial();
    let ours = admin::load_dir(&fixture("admin-lab"));
    let upstream = admin::load_dir(&fixture("admin-conformance"));
    assert!(ours.len() >= 4, "our cases: {}", ours.len());
    assert_eq!(upstream.len(), UPSTREAM_CASES, "upstream cases");
    let subtests: usize = upstream.iter().map(|(_, c)| c.steps.len()).sum();
    assert_eq!(subtests, UPSTREAM_SUBTESTS, "upstream subtests");
    let mut problems = check_table(&ours);
    problems.extend(check_table(&upstream));
    assert!(problems.is_empty(), "case tables:\n{}", problems.join("\n"));

    let lab = LabGuard::new("anp");
    let tmp = TempDir::new("admin");
    lab.up(&[&fixture("admin-conformance/base.yaml")], true);
    // The Node objects the node-peer cases select: the lab's nodes (which the lab
    // registers as a kubelet would), labelled as upstream's conformance nodes are.
    let nodes: Vec<String> = lab
        .get_nodes()
        .iter()
        .map(|n| {
            format!(
                "apiVersion: v1\nkind: Node\nmetadata: {{name: {}, labels: {{kubernetes.io/os: linux}}}}\nstatus: {{addresses: [{{type: InternalIP, address: '{}'}}, {{type: InternalIP, address: '{}'}}]}}\n",
                n.name, n.ipv4, n.ipv6
            )
        })
        .collect();
    lab.apply(&tmp.write("nodes.yaml", &nodes.join("---\n")));
    let store = FileDatastore::open(lab.state_dir().join("datastore"))
        .unwrap_or_else(|e| panic!("open datastore: {e}"));
    let pods = lab.get_pods();
    let ctx = Ctx {
        bpffs: lab.bpffs_dirs(),
        namespace_of: pods
            .iter()
            .map(|p| (p.name.clone(), p.namespace.clone()))
            .collect(),
        ipv4: pods
            .iter()
            .map(|p| (p.name.clone(), p.ip.clone()))
            .collect(),
        lab,
        tmp,
        store,
    };
    let filter = std::env::var("ADMIN_CASE").ok();
    let t_ours = run_suite(&ctx, "admin lab", &ours);
    let t_up = run_suite(&ctx, "admin conformance", &upstream);
    let failed: Vec<&String> = t_ours.failed.iter().chain(&t_up.failed).collect();
    assert!(
        failed.is_empty(),
        "{} case files failed:\n{}",
        failed.len(),
        failed
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        t_ours.files + t_up.files > 0,
        "no case ran (ADMIN_CASE={filter:?})"
    );
    if filter.is_none() {
        assert!(t_ours.probes > 0 && t_up.probes > 100, "too few probes ran");
    }
}
