//! The README's `sh lab` examples run as written, in order, in one lab (issue 14,
//! acceptance 5): `lab up` on the tutorial's files, `get`, `exec`, `apply`, `probe`,
//! `explain --lab`, `inspect … --lab`, `restart-agent`, then "Inspecting a node":
//! `inspect counters|rules|policy|conntrack --lab`, `flows --lab`, `down`. Only the lab's name is
//! changed (`lab --name NAME …`, `--lab NAME`), so the test cannot collide with a lab
//! of someone's; the exit status is the one the line's comment gives (default 0).
//! `lab get` is also run into a closed pipe (`| head`): it must end quietly.

#[path = "../../enforcer-agent/tests/support/readme.rs"]
#[allow(dead_code, reason = "shared with enforcer-agent/tests/readme.rs")]
mod readme;

use std::process::{Command, Stdio};
use std::time::Instant;

use enforcer_tests::lab::{LabGuard, serial};

#[test]
fn lab_examples_run_as_written() {
    let _serial = serial();
    let lab = LabGuard::new("rdme");
    let examples = readme::examples("lab");
    assert!(examples.len() >= 5, "{examples:?}");
    let started = Instant::now();
    for ex in &examples {
        let mut args: Vec<String> = Vec::new();
        let mut words = ex.args.iter();
        while let Some(word) = words.next() {
            args.push(word.clone());
            if args.len() == 1 && word == "lab" {
                args.extend(["--name".to_owned(), lab.name.clone()]);
            } else if word == "--lab" {
                words.next();
                args.push(lab.name.clone());
            }
        }
        let stdin = match &ex.stdin {
            Some(file) => Stdio::from(
                std::fs::File::open(readme::workspace().join(file))
                    .unwrap_or_else(|e| panic!("README line {}: {file}: {e}", ex.number)),
            ),
            None => Stdio::null(),
        };
        let out = Command::new(&lab.bin)
            .args(&args)
            .current_dir(readme::workspace())
            .stdin(stdin)
            .output()
            .unwrap_or_else(|e| panic!("README line {}: {e}", ex.number));
        assert_eq!(
            out.status.code(),
            Some(ex.exit),
            "README line {}: {}\n(run as enforcer {})\nstdout:\n{}\nstderr:\n{}",
            ex.number,
            ex.line,
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if ex.args.first().map(String::as_str) == Some("lab")
            && ex.args.get(1).map(String::as_str) == Some("get")
        {
            closed_pipe(&lab, &args);
        }
    }
    eprintln!(
        "{} README lab examples in {:.1} s",
        examples.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(lab.leftovers().is_empty(), "{:?}", lab.leftovers());
}

/// `enforcer lab get pods -o json | head -0`: the reader is gone before the output is
/// written; the command ends quietly (SIGPIPE, as kubectl), without a panic message.
fn closed_pipe(lab: &LabGuard, args: &[String]) {
    use std::os::unix::process::ExitStatusExt as _;
    let mut args = args.to_vec();
    args.extend(["-o".to_owned(), "json".to_owned()]);
    let mut child = Command::new(&lab.bin)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "enforcer {}: {stderr}", args.join(" "));
    assert!(
        out.status.signal() == Some(libc::SIGPIPE) || out.status.success(),
        "enforcer {}: {:?}",
        args.join(" "),
        out.status
    );
}
