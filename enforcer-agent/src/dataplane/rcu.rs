//! Waiting for the programs that are running to finish: the kernel's RCU grace period,
//! as user space can ask for it.
//!
//! Our programs read `Config` once per packet and then look up the generation slot it
//! named. Before a slot that was live is rewritten, every program that may have read
//! the old `Config` must have finished. The kernel offers no direct call for that, but
//! one syscall implies it: updating an element of a map-of-maps makes the kernel wait
//! for a full RCU grace period before returning (`maybe_wait_bpf_programs`, so that
//! user space knows no program still sees the old inner map), and every non-sleepable
//! BPF program (ours) runs inside an RCU read-side section. [`RcuBarrier::wait`] is
//! that update on a private one-slot `ARRAY_OF_MAPS`.
//!
//! aya 0.14 cannot create a map-of-maps outside an object file, so the two maps are
//! made with the `bpf(2)` syscall directly: this module is the agent's only raw BPF
//! syscall.
//!
//! [`BarrierThread`] runs a barrier's waits on a thread of their own, so that one can
//! pass while the agent compiles.

use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::sync::mpsc;

// From <linux/bpf.h>.
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_ARRAY_OF_MAPS: u32 = 12;
/// Big enough for every `bpf_attr` variant used here; the kernel accepts a shorter
/// attribute than its own as long as the rest it knows is zero.
const ATTR_SIZE: usize = 128;

/// Waits until no BPF program that may have read an earlier `Config` still runs.
pub trait Barrier: Send {
    /// `config`: the configuration every program starting from now on reads (what
    /// the writer just wrote).
    fn wait(&mut self, config: &enforcer_common::Config) -> io::Result<()>;
}

/// A private map-of-maps whose updates wait for an RCU grace period.
pub struct RcuBarrier {
    outer: OwnedFd,
    inner: OwnedFd,
}

/// `bpf(cmd, attr)`.
fn bpf(cmd: libc::c_long, attr: &mut [u8; ATTR_SIZE]) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, writable buffer of `ATTR_SIZE` bytes for the duration
    // of the call, laid out as the command's `bpf_attr` variant (the callers fill it).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            ATTR_SIZE as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `BPF_MAP_CREATE` of a 4-byte-key, 4-byte-value map with one entry.
fn create(map_type: u32, inner: Option<&OwnedFd>, name: &[u8]) -> io::Result<OwnedFd> {
    let mut attr = [0u8; ATTR_SIZE];
    let mut put = |offset: usize, value: u32| {
        attr[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
    };
    put(0, map_type); // map_type
    put(4, 4); // key_size
    put(8, 4); // value_size
    put(12, 1); // max_entries
    if let Some(inner) = inner {
        put(20, inner.as_raw_fd().cast_unsigned()); // inner_map_fd
    }
    // map_name (at 28, after numa_node), at most 15 bytes and a NUL.
    let len = name.len().min(15);
    attr[28..28 + len].copy_from_slice(&name[..len]);
    let fd = bpf(BPF_MAP_CREATE, &mut attr)?;
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("bpf(2) returned a bad fd"))?;
    // SAFETY: a successful BPF_MAP_CREATE returns a new descriptor that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl RcuBarrier {
    pub fn new() -> io::Result<Self> {
        let inner = create(BPF_MAP_TYPE_ARRAY, None, b"ENF_RCU_INNER")?;
        let outer = create(BPF_MAP_TYPE_ARRAY_OF_MAPS, Some(&inner), b"ENF_RCU_BARRIER")?;
        Ok(Self { outer, inner })
    }

    /// Returns once every BPF program that was running when it was called has
    /// finished (a full RCU grace period: typically milliseconds).
    pub fn synchronize(&self) -> io::Result<()> {
        let key: u32 = 0;
        let value: u32 = self.inner.as_raw_fd().cast_unsigned();
        let mut attr = [0u8; ATTR_SIZE];
        attr[0..4].copy_from_slice(&self.outer.as_raw_fd().cast_unsigned().to_ne_bytes());
        // `key` and `value` are pointers, 8-byte aligned at offsets 8 and 16; flags 0
        // (BPF_ANY).
        attr[8..16].copy_from_slice(&(std::ptr::from_ref(&key) as u64).to_ne_bytes());
        attr[16..24].copy_from_slice(&(std::ptr::from_ref(&value) as u64).to_ne_bytes());
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr)?;
        Ok(())
    }
}

impl Barrier for RcuBarrier {
    fn wait(&mut self, _config: &enforcer_common::Config) -> io::Result<()> {
        self.synchronize()
    }
}

/// A [`Barrier`] on a thread of its own, so that a wait can run while the agent
/// compiles (`GenerationWriter::prepare`); every wait goes through it, one at a time.
pub struct BarrierThread {
    requests: mpsc::Sender<enforcer_common::Config>,
    outcomes: mpsc::Receiver<io::Result<()>>,
}

impl BarrierThread {
    pub fn spawn(mut barrier: Box<dyn Barrier>) -> io::Result<Self> {
        let (requests, received) = mpsc::channel::<enforcer_common::Config>();
        let (done, outcomes) = mpsc::channel();
        std::thread::Builder::new()
            .name("enforcer-rcu".to_owned())
            .spawn(move || {
                // Ends when the writer (the sender) is dropped.
                for config in received {
                    if done.send(barrier.wait(&config)).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Self { requests, outcomes })
    }

    /// Starts a wait after `config`.
    pub fn start(&self, config: enforcer_common::Config) -> io::Result<()> {
        self.requests.send(config).map_err(|_| thread_ended())
    }

    /// Returns when the wait started last is over.
    pub fn finish(&self) -> io::Result<()> {
        self.outcomes.recv().map_err(|_| thread_ended())?
    }
}

fn thread_ended() -> io::Error {
    io::Error::other("the RCU barrier's thread ended")
}
