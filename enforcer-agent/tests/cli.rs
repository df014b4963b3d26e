//! Golden tests of the command line's habits (issue 14): every subcommand's `--help`,
//! `-o yaml` and refused formats, `-f -` (standard input), manifests with kinds the
//! enforcer does not use, the exit codes, and a closed pipe.
//!
//! The real binary runs from the workspace root; its exit status, stdout and stderr
//! are compared byte for byte with `tests/golden/cli/<name>.txt` (help texts under
//! `tests/golden/cli/help/`). `ENFORCER_BLESS=1` (or `UPDATE_GOLDEN=1`) rewrites them:
//! review the diff before committing. A help text changed without blessing fails.

#[path = "support/golden.rs"]
mod golden_file;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/cli")
}

/// Runs `enforcer args` (standard input from the workspace file `stdin`, if any).
fn run(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_enforcer"))
        .args(args)
        .current_dir(workspace())
        .env("RUST_LOG", "off")
        .env_remove("ENFORCER_LOG_FORMAT")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running enforcer {args:?}: {e}"));
    if let Some(file) = stdin {
        let text = std::fs::read(workspace().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut input = child.stdin.take().unwrap_or_else(|| panic!("no stdin"));
        input
            .write_all(&text)
            .unwrap_or_else(|e| panic!("writing stdin: {e}"));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for enforcer {args:?}: {e}"))
}

/// The transcript of one run: command, exit status, stdout, stderr.
fn transcript(args: &[&str], stdin: Option<&str>) -> (String, i32) {
    let output = run(args, stdin);
    let code = output.status.code().unwrap_or(-1);
    let mut text = format!(
        "$ enforcer {}{}\n[exit {code}]\n{}",
        args.join(" "),
        stdin.map(|f| format!(" < {f}")).unwrap_or_default(),
        String::from_utf8_lossy(&output.stdout)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stderr.is_empty() {
        text.push_str("[stderr]\n");
        text.push_str(&stderr);
    }
    (text, code)
}

/// Compares `actual` with the golden file `name` (or rewrites it when blessing).
fn compare(name: &str, actual: &str) {
    golden_file::compare(&golden_dir().join(format!("{name}.txt")), name, actual);
}

/// Runs and compares; returns the exit status (also part of the golden file).
fn golden(name: &str, args: &[&str], stdin: Option<&str>) -> i32 {
    let (text, code) = transcript(args, stdin);
    compare(name, &text);
    code
}

/// The subcommands listed under "Commands:" in a help text (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        if line == "Commands:" {
            inside = true;
            continue;
        }
        if !inside {
            continue;
        }
        if !line.starts_with("  ") {
            break;
        }
        // A summary's continuation lines are indented further.
        if line.starts_with("   ") {
            continue;
        }
        if let Some(name) = line.split_whitespace().next()
            && name != "help"
        {
            out.push(name.to_owned());
        }
    }
    out
}

#[test]
fn help_of_every_subcommand() {
    let mut queue: Vec<Vec<String>> = vec![Vec::new()];
    let mut seen = Vec::new();
    while let Some(path) = queue.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let output = run(&args, None);
        let help = String::from_utf8_lossy(&output.stdout).into_owned();
        let name = if path.is_empty() {
            "enforcer".to_owned()
        } else {
            format!("enforcer-{}", path.join("-"))
        };
        assert_eq!(output.status.code(), Some(0), "{name} --help: {output:?}");
        assert!(output.stderr.is_empty(), "{name} --help wrote to stderr");
        compare(
            &format!("help/{name}"),
            &format!("$ {}\n{help}", args.join(" ")),
        );
        // kubectl's habit: a description beyond the summary, and examples.
        assert!(
            help.contains("\nExample"),
            "{name} --help has no examples:\n{help}"
        );
        let summary_and_more = help
            .split("\nUsage:")
            .next()
            .unwrap_or_default()
            .trim()
            .lines()
            .count();
        assert!(
            summary_and_more > 1,
            "{name} --help has only a one-line description:\n{help}"
        );
        // Each command documents its exit status (its subcommands may share it).
        if path.len() == 1 {
            assert!(
                help.contains("Exit status"),
                "{name} --help does not document its exit status:\n{help}"
            );
        }
        for sub in subcommands(&help) {
            let mut next = path.clone();
            next.push(sub);
            queue.push(next);
        }
        seen.push(name);
    }
    // The walk found the commands (a broken parse would find only the root).
    for expected in [
        "enforcer-check",
        "enforcer-matrix",
        "enforcer-explain",
        "enforcer-lab-up",
        "enforcer-lab-get",
        "enforcer-inspect",
        "enforcer-flows",
        "enforcer-completion",
    ] {
        assert!(seen.iter().any(|s| s == expected), "{expected}: {seen:?}");
    }
    // No stale golden help files: each belongs to a subcommand that exists.
    if !golden_file::bless() {
        let seen: BTreeSet<String> = seen.into_iter().map(|s| format!("{s}.txt")).collect();
        let dir = golden_dir().join("help");
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let file = entry
                .unwrap_or_else(|e| panic!("{e}"))
                .file_name()
                .to_string_lossy()
                .into_owned();
            assert!(
                seen.contains(&file),
                "{file}: no such subcommand (remove it)"
            );
        }
    }
}

#[test]
fn root_help_documents_the_exit_codes() {
    let (help, _) = transcript(&["--help"], None);
    for needle in [
        "Exit status",
        "0  success",
        "1  an error",
        "2  a usage error",
        "3  the answer is no",
    ] {
        assert!(help.contains(needle), "missing {needle:?}:\n{help}");
    }
}

const TUTORIAL: &str = "tests/fixtures/tutorial/";
const FIXES: &str = "tests/fixtures/tutorial-fixes/";
const DEPLOYMENTS: &str = "tests/fixtures/tutorial/dev-app-deployments.yaml";
const SHOP: &str = "tests/fixtures/manifests/shop-helm-template.yaml";

#[test]
fn output_yaml_everywhere_and_refused_formats() {
    assert_eq!(
        golden(
            "check-yaml",
            &["check", "-f", FIXES, "-q", "-o", "yaml"],
            None
        ),
        0
    );
    assert_eq!(
        golden(
            "matrix-yaml",
            &[
                "matrix",
                "-f",
                TUTORIAL,
                "--from",
                "dev-app/frontend-0",
                "-o",
                "yaml"
            ],
            None
        ),
        0
    );
    golden(
        "explain-yaml",
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
            "-o",
            "yaml",
        ],
        None,
    );
    // `text` is the old name of `table`, still accepted.
    let (table, _) = transcript(&["matrix", "-f", TUTORIAL, "-o", "table"], None);
    let (text, _) = transcript(&["matrix", "-f", TUTORIAL, "-o", "text"], None);
    assert_eq!(
        table.lines().skip(1).collect::<Vec<_>>(),
        text.lines().skip(1).collect::<Vec<_>>()
    );
    // A format a command cannot write is an error, not ignored.
    assert_eq!(
        golden(
            "check-wide-refused",
            &["check", "-f", FIXES, "-o", "wide"],
            None
        ),
        1
    );
    assert_eq!(
        golden(
            "matrix-wide-refused",
            &["matrix", "-f", TUTORIAL, "-o", "wide"],
            None
        ),
        1
    );
    // A format nobody writes is a usage error.
    assert_eq!(
        golden(
            "matrix-bogus-format",
            &["matrix", "-f", TUTORIAL, "-o", "xml"],
            None
        ),
        2
    );
}

#[test]
fn standard_input() {
    assert_eq!(golden("check-stdin", &["check", "-f", "-"], Some(SHOP)), 0);
    assert_eq!(
        golden(
            "matrix-stdin",
            &["matrix", "-f", "-", "-f", FIXES],
            Some(DEPLOYMENTS)
        ),
        0
    );
    // The same as reading the file.
    let (from_stdin, _) = transcript(&["matrix", "-f", "-", "-o", "json"], Some(DEPLOYMENTS));
    let (from_file, _) = transcript(&["matrix", "-f", DEPLOYMENTS, "-o", "json"], None);
    assert_eq!(
        from_stdin.lines().skip(2).collect::<Vec<_>>(),
        from_file.lines().skip(2).collect::<Vec<_>>()
    );
    // Read once, used for both sides of a change.
    assert_eq!(
        golden(
            "matrix-stdin-apply",
            &["matrix", "-f", "-", "--apply", FIXES],
            Some(DEPLOYMENTS)
        ),
        3
    );
}

#[test]
fn manifest_with_unused_kinds() {
    // ConfigMap, Secret, ServiceAccount, Ingress, HorizontalPodAutoscaler skipped with a
    // note; the StatefulSet's pods (db-0, db-1) and the DaemonSet's (one per node) are
    // in the matrix.
    assert_eq!(
        golden("matrix-unused-kinds", &["matrix", "-f", SHOP], None),
        0
    );
    assert_eq!(
        golden("check-unused-kinds", &["check", "-f", SHOP], None),
        0
    );
    let (text, _) = transcript(&["matrix", "-f", SHOP], None);
    for needle in [
        "shop/db-0",
        "shop/db-1",
        "shop/node-exporter-node1",
        "skipped ConfigMap shop/shop-config",
        "skipped Ingress shop/web",
    ] {
        assert!(text.contains(needle), "missing {needle:?}:\n{text}");
    }
}

#[test]
fn exit_codes() {
    let explain = |to: &str, port: &str| {
        vec![
            "explain",
            "-f",
            TUTORIAL,
            "-f",
            FIXES,
            "--from",
            "dev-app/frontend-0",
            "--to",
            to,
            "--port",
            port,
            "--brief",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>()
    };
    let args = explain("dev-app/backend-0", "8080/TCP");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(golden("exit-explain-allowed", &args, None), 0);
    let args = explain("kube-system/coredns-0", "53/UDP");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(golden("exit-explain-denied", &args, None), 3);
    assert_eq!(
        golden(
            "exit-matrix-diff-same",
            &["matrix", "-f", DEPLOYMENTS, "--diff", FIXES, FIXES],
            None
        ),
        0
    );
    assert_eq!(
        golden(
            "exit-matrix-diff-differs",
            &["matrix", "-f", DEPLOYMENTS, "--diff", TUTORIAL, FIXES],
            None
        ),
        3
    );
    assert_eq!(
        golden(
            "exit-missing-file",
            &["matrix", "-f", "tests/fixtures/no-such-file.yaml"],
            None
        ),
        1
    );
    assert_eq!(
        golden("exit-usage-error", &["matrix", "--no-such-flag"], None),
        2
    );
}

#[test]
fn closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_enforcer"))
        .args(["matrix", "-f", TUTORIAL, "-f", FIXES, "-o", "json"])
        .current_dir(workspace())
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    // The reader goes away before anything is written (`| head -0`).
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.is_empty(), "{stderr}");
    assert!(
        output.status.signal() == Some(libc_sigpipe()) || output.status.success(),
        "{:?}",
        output.status
    );
}

/// SIGPIPE's number on Linux.
fn libc_sigpipe() -> i32 {
    13
}

#[test]
fn completions_and_man_pages() {
    for (shell, needle) in [
        ("bash", "_enforcer()"),
        ("zsh", "#compdef enforcer"),
        ("fish", "complete -c enforcer"),
    ] {
        let out = run(&["completion", shell], None);
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{shell}: {out:?}");
        assert!(script.contains(needle), "{shell}: no {needle:?}");
        assert!(script.contains("matrix"), "{shell}: no subcommands");
    }
    let dir = std::env::temp_dir().join(format!("enforcer-man-{}", std::process::id()));
    let dir_arg = dir.to_string_lossy().into_owned();
    let out = run(&["man", "--dir", &dir_arg], None);
    assert!(out.status.success(), "{out:?}");
    for page in ["enforcer.1", "enforcer-matrix.1", "enforcer-lab-up.1"] {
        let text = std::fs::read_to_string(dir.join(page)).unwrap_or_default();
        assert!(text.contains(".TH"), "{page}: {text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
