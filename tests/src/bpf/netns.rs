//! A private, unnamed network namespace for the calling thread.
//!
//! `unshare(CLONE_NEWNET)` moves only the calling thread; the guard moves it back on
//! drop (also while unwinding from a failed assertion). The namespace has no name and
//! no other user, so the kernel destroys it, with every interface created in it, as
//! soon as the thread has left: nothing can be left behind.

use std::{ffi::CString, fs::File, marker::PhantomData, os::fd::AsFd, process::Command};

use nix::sched::{CloneFlags, setns, unshare};

use super::OrPanic as _;

pub struct NetNs {
    old: File,
    /// The guard belongs to the thread that entered the namespace.
    _not_send: PhantomData<*mut ()>,
}

impl NetNs {
    /// Enters a new network namespace (root only).
    pub fn enter() -> Self {
        let old = File::open("/proc/thread-self/ns/net").or_panic("opening the current netns");
        unshare(CloneFlags::CLONE_NEWNET).or_panic("unshare(CLONE_NEWNET) (run as root)");
        Self {
            old,
            _not_send: PhantomData,
        }
    }

    /// Creates a veth pair `a`/`b` in this namespace (down, no addresses) and returns
    /// their ifindexes. Programs run through `BPF_PROG_TEST_RUN` only need the devices to
    /// exist: `__sk_buff.ifindex` is resolved in the caller's namespace.
    pub fn veth_pair(&self, a: &str, b: &str) -> (u32, u32) {
        let status = Command::new("ip")
            .args(["link", "add", a, "type", "veth", "peer", "name", b])
            .status()
            .or_panic("running ip link add (iproute2)");
        assert!(
            status.success(),
            "ip link add {a} type veth peer name {b}: {status}"
        );
        (ifindex(a), ifindex(b))
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = setns(self.old.as_fd(), CloneFlags::CLONE_NEWNET) {
            // Staying in the private namespace would confuse later tests on this thread.
            eprintln!("setns back to the original netns failed: {e}");
            std::process::abort();
        }
    }
}

fn ifindex(name: &str) -> u32 {
    let c = CString::new(name).or_panic("interface name");
    // SAFETY: a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert!(index != 0, "interface {name} not found");
    index
}
