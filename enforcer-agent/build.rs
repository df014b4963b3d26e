//! Builds the BPF programs (`enforcer-ebpf`) into `$OUT_DIR/enforcer-ebpf.o`, which
//! `src/dataplane/object.rs` embeds.
//!
//! The BPF crate needs the nightly toolchain (`-Z build-std=core` for
//! `bpfel-unknown-none`) and links with `bpf-linker` (the toolchain notes' recipe B),
//! which emits BTF (`--btf`): the maps are BTF-defined, so the kernel knows their key
//! and value types (`bpftool map dump` prints fields by name) and verifier logs carry
//! source lines. It is built by a nested `cargo` with its own target directory
//! (`<workspace>/target/bpf`), in the dev or release profile matching this build, so
//! dev and release tests each verify their own object.
//!
//! Needs: `rustup toolchain install nightly`,
//! `rustup component add rust-src --toolchain nightly`, and bpf-linker built against
//! an LLVM of nightly's major version (`cargo xtask` installs both: Debian's
//! `llvm-22-dev`, then `LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker
//! --no-default-features --features llvm-22`).

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
    let linker = bpf_linker()?;
    let rust_src = sysroot.join("lib/rustlib/src/rust/library/core");
    ensure!(
        rust_src.is_dir(),
        "{} is missing: run `rustup component add rust-src --toolchain {TOOLCHAIN}`",
        rust_src.display()
    );
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
    .arg(format!("linker={}", linker.display()))
    // The programs use BPF v3 instructions (32-bit jumps, atomics).
    .args(["-C", "target-cpu=v3"])
    .args(["-C", "link-arg=--btf"])
    // BPF global functions (verified once, not once per call site): kept global.
    .args(["-C", "link-arg=--export=enf_observe"]);
    scrub_env(&mut cmd);

    let status = cmd
        .status()
        .context("running `rustup run nightly cargo` (is rustup installed and on PATH?)")?;
    if !status.success() {
        bail!(
            "building enforcer-ebpf failed ({status}); it needs the `{TOOLCHAIN}` toolchain with \
             the `rust-src` component (`rustup component add rust-src --toolchain {TOOLCHAIN}`) \
             and bpf-linker (`cargo xtask test` installs it)"
        );
    }
    let object = target_dir
        .join(TARGET)
        .join(if release { "release" } else { "debug" })
        .join("enforcer-ebpf");
    ensure!(object.is_file(), "{} was not produced", object.display());
    Ok(object)
}

/// `bpf-linker` on the PATH or in cargo's bin directory.
fn bpf_linker() -> Result<PathBuf> {
    let cargo_bin = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|h| h.join("bin"));
    let candidates = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(cargo_bin);
    for dir in candidates {
        let path = dir.join("bpf-linker");
        if path.is_file() {
            return Ok(path);
        }
    }
    bail!(
        "bpf-linker is missing (it links the BPF programs and emits their BTF): install \
         Debian's llvm-22-dev, then `LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker \
         --no-default-features --features llvm-22` (`cargo xtask test` does both)"
    )
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
         --component rust-src`): {}",
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
