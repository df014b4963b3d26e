//! A scratch directory for one test, removed when dropped: also when the test fails (the
//! panic unwinds through the drop), so a failed run leaves nothing behind for the next.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// `<temp>/enforcer-<tag>-<pid>-<n>`, created empty: unique per process and per call,
/// since a test binary runs its tests on parallel threads.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates the directory (removing a leftover of the same name first).
    ///
    /// # Panics
    /// When the directory cannot be created: the test cannot run.
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("enforcer-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        if let Err(e) = std::fs::create_dir_all(&path) {
            panic!("creating {}: {e}", path.display());
        }
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::TempDir;

    #[test]
    fn the_directory_is_removed_also_when_the_test_fails() {
        let kept = std::panic::catch_unwind(|| {
            let dir = TempDir::new("tempdir-test");
            std::fs::write(dir.path().join("f"), "x").ok();
            let path = dir.path().to_owned();
            assert!(path.join("f").exists());
            panic!("{}", path.display());
        });
        let Err(payload) = kept;
        let Some(path) = payload.downcast_ref::<String>() else {
            panic!("the panic names the directory");
        };
        assert!(!std::path::Path::new(path).exists(), "{path} left behind");
    }
}
