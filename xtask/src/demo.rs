//! `cargo xtask demo`: seed 000's tutorial, steps 2–7, in `enforcer lab`, with the YAML
//! exactly as the tutorial prints it. After each step: the connectivity matrix, the
//! tutorial's own check (`curl`/`nslookup` through `lab exec`), and for every flow the
//! tutorial says should work but does not, one line from `enforcer explain` on why.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::setup::workspace_root;

const LAB: &str = "demo";

/// A flow the tutorial's text claims works after a step.
struct Claim {
    from: &'static str,
    to: &'static str,
    port: &'static str,
}

struct Step {
    title: &'static str,
    /// Tutorial file applied in this step (None for step 2: the lab comes up).
    file: Option<&'static str>,
    /// The tutorial's check, run inside a pod: (pod, command).
    check: Option<(&'static str, &'static [&'static str])>,
    claims: &'static [Claim],
}

const STEPS: &[Step] = &[
    Step {
        title: "Step 2: deploy dev-app (frontend x2, backend x2, database x1); all pods can talk",
        file: None,
        check: Some((
            "dev-app/frontend-0",
            &[
                "curl",
                "-s",
                "-m",
                "5",
                "backend.dev-app.svc.cluster.local:8080",
            ],
        )),
        claims: &[Claim {
            from: "dev-app/frontend-0",
            to: "dev-app/backend-0",
            port: "8080/TCP",
        }],
    },
    Step {
        title: "Step 3: default-deny (ingress and egress) for every dev-app pod",
        file: Some("networkpolicy-deny-all.yaml"),
        check: Some((
            "dev-app/frontend-0",
            &[
                "curl",
                "-s",
                "-m",
                "5",
                "backend.dev-app.svc.cluster.local:8080",
            ],
        )),
        claims: &[],
    },
    Step {
        title: "Step 4: allow ingress to frontend:80 from anywhere (checked from a pod in another namespace)",
        file: Some("networkpolicy-allow-frontend-ingress.yaml"),
        check: None,
        claims: &[Claim {
            from: "client/client",
            to: "dev-app/frontend-0",
            port: "80/TCP",
        }],
    },
    Step {
        title: "Step 5: allow frontend -> backend:8080 (ingress side only, as the tutorial writes it)",
        file: Some("networkpolicy-allow-frontend-to-backend.yaml"),
        check: Some((
            "dev-app/frontend-0",
            &[
                "curl",
                "-s",
                "-m",
                "5",
                "backend.dev-app.svc.cluster.local:8080",
            ],
        )),
        claims: &[Claim {
            from: "dev-app/frontend-0",
            to: "dev-app/backend-0",
            port: "8080/TCP",
        }],
    },
    Step {
        title: "Step 6: allow backend -> database:3306 (ingress side only)",
        file: Some("networkpolicy-allow-backend-to-database.yaml"),
        check: Some((
            "dev-app/backend-0",
            &[
                "curl",
                "-s",
                "-m",
                "5",
                "database.dev-app.svc.cluster.local:3306",
            ],
        )),
        claims: &[Claim {
            from: "dev-app/backend-0",
            to: "dev-app/database-0",
            port: "3306/TCP",
        }],
    },
    Step {
        title: "Step 7: allow DNS egress to kube-dns",
        file: Some("networkpolicy-allow-dns-egress.yaml"),
        check: Some(("dev-app/frontend-0", &["nslookup", "google.com"])),
        claims: &[Claim {
            from: "dev-app/frontend-0",
            to: "kube-system/coredns-0",
            port: "53/UDP",
        }],
    },
    Step {
        title: "What the tutorial misses: egress allows for frontend -> backend and backend -> database",
        file: Some("../tutorial-fixes/allow-egress-frontend-to-backend.yaml"),
        check: None,
        claims: &[],
    },
    Step {
        title: "... and backend -> database",
        file: Some("../tutorial-fixes/allow-egress-backend-to-database.yaml"),
        check: Some((
            "dev-app/frontend-0",
            &[
                "curl",
                "-s",
                "-m",
                "5",
                "backend.dev-app.svc.cluster.local:8080",
            ],
        )),
        claims: &[
            Claim {
                from: "dev-app/frontend-0",
                to: "dev-app/backend-0",
                port: "8080/TCP",
            },
            Claim {
                from: "dev-app/backend-0",
                to: "dev-app/database-0",
                port: "3306/TCP",
            },
        ],
    },
];

fn tutorial_dir() -> PathBuf {
    workspace_root().join("tests/fixtures/tutorial")
}

fn enforcer_bin() -> PathBuf {
    workspace_root().join("target/debug/enforcer")
}

fn enforcer(args: &[&str]) -> Result<std::process::Output> {
    Command::new(enforcer_bin())
        .args(args)
        .output()
        .with_context(|| format!("running enforcer {}", args.join(" ")))
}

/// `enforcer`'s exit status for "no" (`lab probe`: a probe did not connect).
const EXIT_NO: i32 = 3;

/// Runs enforcer, echoing its output; fails on an error (exit 3, "no", is an answer).
fn enforcer_echo(args: &[&str]) -> Result<()> {
    let out = enforcer(args)?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() && out.status.code() != Some(EXIT_NO) {
        bail!("enforcer {} failed ({})", args.join(" "), out.status);
    }
    Ok(())
}

/// Walks the tutorial; `up` are extra `enforcer lab up` options (`--nodes 2`).
pub fn run(keep: bool, up: &[String]) -> Result<()> {
    crate::cargo(&["build", "--bin", "enforcer"])?;
    // A demo left over from an interrupted run must not get in the way.
    let _ = enforcer(&["lab", "down", "--name", LAB]);
    let result = walk(up);
    if !keep {
        let down = enforcer(&["lab", "down", "--name", LAB]);
        if let Err(e) = down {
            eprintln!("demo: tearing down the lab failed: {e:#}");
        }
    }
    result
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

fn walk(up: &[String]) -> Result<()> {
    let dir = tutorial_dir();
    for step in STEPS {
        println!("\n=== {} ===", step.title);
        match step.file {
            None => {
                let deployments = path_arg(&dir.join("dev-app-deployments.yaml"));
                let client = path_arg(&dir.join("../tutorial-fixes/client.yaml"));
                let mut args = vec!["lab", "up", "--name", LAB];
                args.extend(up.iter().map(String::as_str));
                args.extend(["-f", &deployments, "-f", &client]);
                enforcer_echo(&args)?;
                if !up.is_empty() {
                    enforcer_echo(&["lab", "get", "pods", "--name", LAB])?;
                }
            }
            Some(file) => {
                println!("$ enforcer lab apply -f {file}");
                enforcer_echo(&[
                    "lab",
                    "apply",
                    "--name",
                    LAB,
                    "-f",
                    &path_arg(&dir.join(file)),
                ])?;
            }
        }
        enforcer_echo(&[
            "lab",
            "probe",
            "--name",
            LAB,
            "--from",
            "dev-app/*",
            "--from",
            "client/*",
            "-o",
            "table",
        ])?;
        if let Some((pod, command)) = step.check {
            println!("$ enforcer lab exec {pod} -- {}", command.join(" "));
            let mut args = vec!["lab", "exec", "--name", LAB, pod, "--"];
            args.extend_from_slice(command);
            let out = enforcer(&args)?;
            let text = String::from_utf8_lossy(&out.stdout);
            let text = text.trim();
            if out.status.success() {
                println!("{text}");
            } else {
                println!("{text}\n(command failed: {})", out.status);
            }
        }
        for claim in step.claims {
            explain_claim(claim)?;
        }
    }
    Ok(())
}

/// Probes a flow the tutorial says works; when it is blocked, prints why.
fn explain_claim(claim: &Claim) -> Result<()> {
    let (port, protocol) = claim.port.split_once('/').unwrap_or((claim.port, "TCP"));
    let out = enforcer(&[
        "lab",
        "probe",
        "--name",
        LAB,
        "--from",
        claim.from,
        "--to",
        claim.to,
        "--port",
        port,
        "--protocol",
        protocol,
        "-o",
        "json",
    ])?;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("probe output: {}", String::from_utf8_lossy(&out.stdout)))?;
    let connected = rows
        .as_array()
        .and_then(|r| r.first())
        .and_then(|r| r.get("connected"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    if connected {
        println!(
            "tutorial says {} -> {} {}: works, and it does",
            claim.from, claim.to, claim.port
        );
        return Ok(());
    }
    let out = enforcer(&[
        "explain", "--lab", LAB, "--from", claim.from, "--to", claim.to, "--port", claim.port,
        "--brief",
    ])?;
    println!(
        "tutorial says {} -> {} {} works, but it is blocked: {}",
        claim.from,
        claim.to,
        claim.port,
        String::from_utf8_lossy(&out.stdout).trim()
    );
    Ok(())
}
