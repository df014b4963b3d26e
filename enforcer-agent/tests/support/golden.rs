//! Golden files: a command's output compared byte for byte with a file kept in the
//! repository, rewritten instead when blessing (`ENFORCER_BLESS=1`, or
//! `UPDATE_GOLDEN=1`). Shared by `golden.rs` (check/matrix/explain outputs) and
//! `cli.rs` (help texts, formats, exit codes).

use std::path::Path;

/// Whether this run rewrites golden files instead of comparing with them.
pub fn bless() -> bool {
    std::env::var_os("ENFORCER_BLESS").is_some() || std::env::var_os("UPDATE_GOLDEN").is_some()
}

/// Compares `actual` with the golden file at `path` (named `name` in messages), or
/// rewrites it when blessing. Panics on a difference, naming the first differing line.
pub fn compare(path: &Path, name: &str, actual: &str) {
    if bless() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        }
        std::fs::write(path, actual).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with ENFORCER_BLESS=1 to create it)",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name}: output differs from {} (first at line {}; ENFORCER_BLESS=1 to accept)\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display(),
            first + 1
        );
    }
}
