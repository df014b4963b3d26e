//! Set-up a fresh machine of this kind needs: rustup components and bpf-linker for the
//! BPF build, Debian packages the lab and tests call, bpffs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Programs the privileged parts call, and the Debian package that brings each.
const PACKAGES: [(&str, &str); 8] = [
    ("ip", "iproute2"),
    ("nft", "nftables"),
    ("bpftool", "bpftool"),
    ("curl", "curl"),
    ("nslookup", "bind9-dnsutils"),
    // The benchmark suite's iptables comparison (iptables-nft, with ipsets as Calico).
    ("iptables-restore", "iptables"),
    ("ipset", "ipset"),
    // p3 empties the node's netfilter conntrack table between floods.
    ("conntrack", "conntrack"),
];

/// Installs what is missing. `privileged`: also Debian packages and bpffs (needs root).
pub fn prepare(privileged: bool) -> Result<()> {
    rustup_components()?;
    bpf_linker()?;
    if privileged {
        if !nix_is_root() {
            bail!("the privileged tests and the lab need root (network namespaces, BPF)");
        }
        debian_packages()?;
        bpffs()?;
    }
    Ok(())
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The BPF crate builds with the nightly toolchain's rust-src (build-std); see
/// `shared/reference/toolchain.md`.
fn rustup_components() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", "nightly"])
        .output()
        .context("running rustup (the BPF build needs the nightly toolchain)")?;
    let installed = String::from_utf8_lossy(&installed.stdout);
    let missing: Vec<&str> = ["rust-src"]
        .into_iter()
        .filter(|c| !installed.lines().any(|l| l.starts_with(c)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing rustup components {missing:?} for nightly");
    let status = Command::new("rustup")
        .args(["component", "add", "--toolchain", "nightly"])
        .args(&missing)
        .status()?;
    if !status.success() {
        bail!("rustup component add {missing:?} --toolchain nightly failed");
    }
    Ok(())
}

/// bpf-linker links the BPF programs and emits their BTF (toolchain recipe B). It
/// needs an LLVM of nightly's major version: Debian's `llvm-22-dev`
/// (bookworm-security), then a build of bpf-linker against it (about ten minutes on
/// two cores; once per machine).
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PACKAGE: &str = "llvm-22-dev";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

fn bpf_linker() -> Result<()> {
    let in_cargo_bin = std::env::var_os("HOME")
        .map(|h| Path::new(&h).join(".cargo/bin/bpf-linker"))
        .is_some_and(|p| p.is_file());
    if have("bpf-linker") || in_cargo_bin {
        return Ok(());
    }
    if !Path::new(LLVM_PREFIX).join("lib/libLLVM.so").exists() {
        eprintln!("xtask: installing {LLVM_PACKAGE} (the LLVM bpf-linker builds against)");
        apt_install(&[LLVM_PACKAGE])?;
    }
    eprintln!("xtask: building bpf-linker {BPF_LINKER_VERSION} against {LLVM_PREFIX}");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "install",
            "bpf-linker",
            "--locked",
            "--version",
            BPF_LINKER_VERSION,
        ])
        .args(["--no-default-features", "--features", "llvm-22"])
        .env("LLVM_PREFIX", LLVM_PREFIX)
        .status()
        .context("running cargo install bpf-linker")?;
    if !status.success() {
        bail!("cargo install bpf-linker failed ({status})");
    }
    Ok(())
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn debian_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(program, _)| !have(program))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages {missing:?}");
    apt_install(&missing)
}

fn apt_install(packages: &[&str]) -> Result<()> {
    let update = Command::new("apt-get")
        .args(["update", "-q"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()?;
    if !update.success() {
        bail!("apt-get update failed");
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()?;
    if !status.success() {
        bail!("apt-get install {packages:?} failed");
    }
    Ok(())
}

fn bpffs() -> Result<()> {
    let mounted = std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf"));
    if !mounted {
        let status = Command::new("mount")
            .args(["-t", "bpf", "bpf", "/sys/fs/bpf"])
            .status()?;
        if !status.success() {
            bail!("mounting bpffs at /sys/fs/bpf failed");
        }
    }
    Ok(())
}
