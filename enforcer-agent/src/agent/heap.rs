//! The agent's use of glibc's allocator: one arena for every thread, and freed memory
//! handed back to the kernel after the work that frees the most (a recompile, a flow-log
//! interval). Without these the agent's RSS holds what nothing uses any more.

/// Hands the memory a recompile or a flow-log interval freed back to the kernel. A
/// compile allocates and frees tens of MiB in many sizes; glibc keeps freed chunks in
/// its heaps and returns only the top of the main heap by itself, so without this the
/// agent's RSS grew by ~12 MiB per 100 changes at 500 policies (`cargo xtask bench`,
/// p6) with nothing live behind it. `malloc_trim` also releases free pages inside the
/// heaps (`MADV_DONTNEED`); it costs well under a millisecond at this size. A flow-log
/// interval of a flood names and writes thousands of lines: the p5 benchmark's
/// one-packet flows (5,000 a second) left +12.5 MiB of anon RSS after its last
/// interval, until the next datastore event trimmed it; the flow log's thread trims
/// after each interval it writes (`flowlog/writer.rs`), in its own time.
pub fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no
    // pointer of ours and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// One malloc arena for every thread of the agent. The flow log's thread
/// (`flowlog/writer.rs`) takes events named on the loop and frees them there; with an
/// arena of its own (glibc's default per thread), the two heaps fragmented each other:
/// +40 MiB of RSS at 10k/5k and +4.5 MiB over p6's 1,000 changes, against +0.6 with
/// one heap (`enforcer-bench --only p5` at 10k, one run each). The loop and the
/// thread rarely allocate at the same moment, so sharing the arena's lock is cheap.
pub fn one_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets the allocator's tunables; called before the agent
    // starts its threads.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
