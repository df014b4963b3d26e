//! Builds the BPF programs (`enforcer-ebpf`) into `$OUT_DIR/enforcer-ebpf.o`, which
//! `src/dataplane/object.rs` embeds.
//!
//! The BPF crate needs the nightly toolchain (`-Z build-std=core` for
//! `bpfel-unknown-none`) and links with the toolchain's own `llc` through
//! `enforcer-ebpf/bpf-link.sh` (no bpf-linker; see the toolchain notes). It is built by a
//! nested `cargo` with its own target directory (`<workspace>/target/bpf`), in the dev or
//! release profile matching this build, so dev and release tests each verify their own
//! object.
//!
//! Needs: `rustup toolchain install nightly` and
//! `rustup component add rust-src llvm-tools --toolchain nightly`.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail, ensure};

const TOOLCHAIN: &str = "nightly";
const TARGET: &str = "bpfel-unknown-none";

fn main() -> Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let workspace = manifest_dir
        .parent()
        .context("enforcer-agent has no parent directory")?
        .to_path_buf();
    let ebpf = workspace.join("enforcer-ebpf");
    let common = workspace.join("enforcer-common");
    for path in [
        ebpf.join("src"),
        ebpf.join("Cargo.toml"),
        ebpf.join("Cargo.lock"),
        ebpf.join("bpf-link.sh"),
        common.join("src"),
        common.join("Cargo.toml"),
    ] {
        println!("cargo:rerun-if-changed={}", path.display());
    }

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let object = build_bpf(&workspace, &ebpf, release)?;
    let dest = out_dir.join("enforcer-ebpf.o");
    std::fs::copy(&object, &dest)
        .with_context(|| format!("copying {} to {}", object.display(), dest.display()))?;
    Ok(())
}

/// Runs the nested nightly cargo and returns the path of the linked object.
fn build_bpf(workspace: &Path, ebpf: &Path, release: bool) -> Result<PathBuf> {
    let sysroot = nightly_sysroot()?;
    let llc = sysroot.join("lib/rustlib/x86_64-unknown-linux-gnu/bin/llc");
    ensure!(
        llc.is_file(),
        "{} is missing: run `rustup component add llvm-tools --toolchain {TOOLCHAIN}`",
        llc.display()
    );
    let rust_src = sysroot.join("lib/rustlib/src/rust/library/core");
    ensure!(
        rust_src.is_dir(),
        "{} is missing: run `rustup component add rust-src --toolchain {TOOLCHAIN}`",
        rust_src.display()
    );
    let linker = ebpf.join("bpf-link.sh");
    let target_dir = workspace.join("target").join("bpf");

    let mut cmd = Command::new("rustup");
    cmd.args([
        "run", TOOLCHAIN, "cargo", "rustc", "--locked", "--target", TARGET,
    ])
    .args(["-Z", "build-std=core"])
    .args(["--profile", if release { "release" } else { "dev" }])
    .arg("--manifest-path")
    .arg(ebpf.join("Cargo.toml"))
    .arg("--target-dir")
    .arg(&target_dir)
    .arg("--")
    .arg("-C")
    .arg(format!("linker={}", linker.display()));
    scrub_env(&mut cmd);
    cmd.env("ENFORCER_LLC", &llc);

    let status = cmd
        .status()
        .context("running `rustup run nightly cargo` (is rustup installed and on PATH?)")?;
    if !status.success() {
        bail!(
            "building enforcer-ebpf failed ({status}); it needs the `{TOOLCHAIN}` toolchain with \
             the `rust-src` and `llvm-tools` components: \
             `rustup component add rust-src llvm-tools --toolchain {TOOLCHAIN}`"
        );
    }
    let object = target_dir
        .join(TARGET)
        .join(if release { "release" } else { "debug" })
        .join("enforcer-ebpf");
    ensure!(object.is_file(), "{} was not produced", object.display());
    Ok(object)
}

fn nightly_sysroot() -> Result<PathBuf> {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", TOOLCHAIN, "rustc", "--print", "sysroot"]);
    scrub_env(&mut cmd);
    let out = cmd
        .output()
        .context("running `rustup run nightly rustc` (is rustup installed and on PATH?)")?;
    ensure!(
        out.status.success(),
        "the `{TOOLCHAIN}` toolchain is not usable (`rustup toolchain install {TOOLCHAIN} \
         --component rust-src,llvm-tools`): {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// Removes what the outer cargo (or clippy, or a wrapper) exported for *this* build, so
/// that the nested build uses nightly's own rustc, flags and target directory.
fn scrub_env(cmd: &mut Command) {
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let leaks = key.starts_with("CARGO_") && key != "CARGO_HOME"
            || key.starts_with("RUSTC")
            || key.starts_with("RUSTDOC")
            || key == "RUSTFLAGS"
            || key == "RUSTUP_TOOLCHAIN"
            || key == "CARGO"
            || key.starts_with("__CARGO");
        if leaks {
            cmd.env_remove(key);
        }
    }
}
