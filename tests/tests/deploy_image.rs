//! The runtime image of `deploy/Dockerfile`, built on this machine without a registry:
//! buildah builds its `runtime` stage FROM a base image made here from scratch (a root
//! filesystem holding the binary's own shared libraries, found with `ldd`), with the
//! `build` stage replaced by a build context holding the binary this test runs
//! against. Then `enforcer --version` runs inside the image.
//!
//! Privileged (buildah stores images under /var/lib/containers): `cargo build --bin
//! enforcer && cargo test -p enforcer-tests --test deploy_image`.

use std::path::{Path, PathBuf};
use std::process::Command;

use enforcer_tests::lab::{TempDir, enforcer_bin, require_root};

/// buildah as this test runs it: the vfs driver and chroot isolation work in any
/// container or VM, with no kernel overlay or user namespaces needed.
fn buildah(args: &[&str]) -> String {
    let out = Command::new("buildah")
        .args(["--storage-driver", "vfs"])
        .args(args)
        .env("BUILDAH_ISOLATION", "chroot")
        .output()
        .unwrap_or_else(|e| panic!("buildah (install Debian's buildah): {e}"));
    assert!(
        out.status.success(),
        "buildah {}: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Removes the containers and images the test made, also when it fails.
struct Cleanup {
    containers: Vec<String>,
    images: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = Command::new("buildah")
                .args(["--storage-driver", "vfs", "rm", c])
                .output();
        }
        for i in &self.images {
            let _ = Command::new("buildah")
                .args(["--storage-driver", "vfs", "rmi", "-f", i])
                .output();
        }
    }
}

/// Copies the binary's shared libraries (and loader) under `root`, at their paths.
fn libraries_into(binary: &Path, root: &Path) {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .unwrap_or_else(|e| panic!("ldd: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let libs: Vec<&str> = text
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .collect();
    assert!(
        libs.iter().any(|l| l.contains("libc.so")),
        "ldd found no libc:\n{text}"
    );
    for lib in libs {
        let target = root.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().unwrap_or(root))
            .unwrap_or_else(|e| panic!("mkdir for {lib}: {e}"));
        std::fs::copy(lib, &target).unwrap_or_else(|e| panic!("copy {lib}: {e}"));
    }
}

#[test]
fn the_runtime_image_builds_without_a_registry_and_runs_the_binary() {
    require_root();
    let binary = enforcer_bin();
    let work = TempDir::new("image");
    let tag = format!("t{}", std::process::id());
    let base = format!("localhost/enforcer-test-base:{tag}");
    let image = format!("localhost/enforcer-test:{tag}");
    let mut cleanup = Cleanup {
        containers: Vec::new(),
        images: vec![image.clone(), base.clone()],
    };

    // A base image from scratch: only the C runtime the binary links.
    let rootfs = work.path().join("rootfs");
    libraries_into(&binary, &rootfs);
    let scratch = buildah(&["from", "scratch"]);
    cleanup.containers.push(scratch.clone());
    buildah(&["copy", &scratch, &rootfs.to_string_lossy(), "/"]);
    buildah(&["commit", "--rm", &scratch, &base]);
    cleanup.containers.retain(|c| c != &scratch);

    // The Dockerfile's runtime stage, its `build` stage replaced by this binary.
    let context: PathBuf = work.path().join("build");
    let bin_dir = context.join("out/usr/local/bin");
    std::fs::create_dir_all(&bin_dir).unwrap_or_else(|e| panic!("mkdir: {e}"));
    std::fs::copy(&binary, bin_dir.join("enforcer")).unwrap_or_else(|e| panic!("copy: {e}"));
    let dockerfile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/Dockerfile");
    buildah(&[
        "build",
        "--isolation",
        "chroot",
        "-f",
        &dockerfile.to_string_lossy(),
        "--target",
        "runtime",
        "--build-arg",
        &format!("RUNTIME={base}"),
        "--build-context",
        &format!("build={}", context.display()),
        "-t",
        &image,
        &context.to_string_lossy(),
    ]);

    // What the image runs, and that it runs.
    let config = buildah(&["inspect", "--type", "image", &image]);
    let config: serde_json::Value =
        serde_json::from_str(&config).unwrap_or_else(|e| panic!("inspect: {e}"));
    let oci = &config["OCIv1"]["config"];
    assert_eq!(
        oci["Entrypoint"],
        serde_json::json!(["/usr/local/bin/enforcer"])
    );
    assert_eq!(
        oci["Cmd"],
        serde_json::json!(["agent", "--datastore", "kubernetes"])
    );
    let container = buildah(&["from", &image]);
    cleanup.containers.push(container.clone());
    let inside = buildah(&[
        "run",
        "--isolation",
        "chroot",
        &container,
        "--",
        "/usr/local/bin/enforcer",
        "--version",
    ]);
    let outside = Command::new(&binary)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    assert_eq!(inside, String::from_utf8_lossy(&outside.stdout).trim());
    assert!(inside.starts_with("enforcer "), "{inside}");
}
