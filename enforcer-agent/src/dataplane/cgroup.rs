//! Where the cgroup program goes: the root of the cgroup v2 hierarchy, found among the
//! mounts (`/sys/fs/cgroup` on a unified system, `/sys/fs/cgroup/unified` on a hybrid
//! one), or mounted by the agent when no cgroup2 file system is (as bpffs is).

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("reading /proc/self/mounts: {source}")]
    Mounts {
        #[source]
        source: std::io::Error,
    },
    #[error("mounting cgroup2 at {path}: {source}")]
    Mount {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where the agent mounts cgroup2 when nothing has.
const PRIVATE_MOUNT: &str = "/run/enforcer/cgroup2";

/// The first cgroup2 mount point of `mounts` (the text of `/proc/self/mounts`).
fn cgroup2_mount(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_source, target, fstype) = (fields.next()?, fields.next()?, fields.next()?);
        // Mount points with spaces are octal-escaped (`\040`); ours never have one.
        (fstype == "cgroup2" && !target.contains('\\')).then(|| PathBuf::from(target))
    })
}

/// The root of the cgroup v2 hierarchy, mounting it at `/run/enforcer/cgroup2` when
/// the system has not.
pub fn root() -> Result<PathBuf, CgroupError> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")
        .map_err(|source| CgroupError::Mounts { source })?;
    if let Some(path) = cgroup2_mount(&mounts) {
        return Ok(path);
    }
    let path = Path::new(PRIVATE_MOUNT);
    let mount_err = |source| CgroupError::Mount {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(path).map_err(mount_err)?;
    nix::mount::mount(
        Some("cgroup2"),
        path,
        Some("cgroup2"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| mount_err(e.into()))?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount_of_unified_and_hybrid_systems() {
        let hybrid = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n\
                      cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        assert_eq!(
            cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n";
        assert_eq!(
            cgroup2_mount(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(cgroup2_mount("proc /proc proc rw 0 0\n"), None);
    }
}
