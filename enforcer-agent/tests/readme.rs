//! The README's `sh offline` examples run as written (from the workspace root), with
//! the exit status their comment gives; every file any README example names exists.

#[path = "support/readme.rs"]
#[allow(
    dead_code,
    reason = "shared with tests/tests/lab_readme.rs, which uses a part"
)]
mod readme;

use std::io::Write as _;
use std::process::{Command, Stdio};

#[test]
fn offline_examples_run_as_written() {
    let examples = readme::examples("offline");
    assert!(
        examples.len() >= 5,
        "README: too few `sh offline` examples: {examples:?}"
    );
    for ex in examples {
        let mut child = Command::new(env!("CARGO_BIN_EXE_enforcer"))
            .args(&ex.args)
            .current_dir(readme::workspace())
            .env("RUST_LOG", "off")
            .stdin(if ex.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("README line {}: {e}", ex.number));
        if let Some(file) = &ex.stdin {
            let text = std::fs::read(readme::workspace().join(file))
                .unwrap_or_else(|e| panic!("README line {}: {file}: {e}", ex.number));
            let mut input = child.stdin.take().unwrap_or_else(|| panic!("stdin"));
            input
                .write_all(&text)
                .unwrap_or_else(|e| panic!("README line {}: {e}", ex.number));
        }
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("README line {}: {e}", ex.number));
        assert_eq!(
            out.status.code(),
            Some(ex.exit),
            "README line {}: {}\nstdout:\n{}\nstderr:\n{}",
            ex.number,
            ex.line,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.stdout.is_empty(),
            "README line {}: no output",
            ex.number
        );
    }
}

#[test]
fn every_example_names_files_that_exist() {
    let files = readme::named_files();
    assert!(files.len() >= 10, "{files:?}");
    let missing: Vec<_> = files
        .iter()
        .filter(|(_, f)| !readme::workspace().join(f).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "README examples name files that do not exist: {missing:?}"
    );
}

#[test]
fn lab_examples_parse() {
    let lab = readme::examples("lab");
    let first = lab.first().map(|e| e.args.join(" ")).unwrap_or_default();
    let last = lab.last().map(|e| e.args.join(" ")).unwrap_or_default();
    assert!(first.starts_with("lab up"), "{first}");
    assert_eq!(last, "lab down");
}
