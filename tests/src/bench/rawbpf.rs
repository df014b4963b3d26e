//! Two tiny XDP programs written as raw instructions, for `p4`'s traffic source and
//! baseline (loaded with `bpf(2)` directly: they are not part of the product's object):
//!
//! - [`XdpProgram::redirect`]: `return bpf_redirect(ifindex, 0)`. Run through
//!   `BPF_PROG_TEST_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES`, every repetition sends its
//!   frame out of `ifindex` as an `xdp_frame` (no skb), the way a NIC driver hands
//!   frames to XDP: through a veth, the peer's XDP program sees it in its NAPI poll.
//! - [`XdpProgram::pass`]: `return XDP_PASS`, attached to the baseline's receiving veth
//!   so that it takes frames in NAPI too (a veth without an XDP program and without GRO
//!   refuses redirected frames); a passed frame becomes an skb there, as a driver
//!   without XDP would build it.

use std::ffi::CString;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::Path;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
const FUNC_REDIRECT: i32 = 23;
const XDP_PASS: i32 = 2;

/// One `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    /// The destination register in the low nibble, the source register in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

/// `r<dst> = imm` (64-bit move of an immediate).
const fn mov_imm(dst: u8, imm: i32) -> Insn {
    Insn {
        code: 0xb7,
        regs: dst,
        off: 0,
        imm,
    }
}

const fn call(helper: i32) -> Insn {
    Insn {
        code: 0x85,
        regs: 0,
        off: 0,
        imm: helper,
    }
}

const EXIT: Insn = Insn {
    code: 0x95,
    regs: 0,
    off: 0,
    imm: 0,
};

/// The `BPF_PROG_LOAD` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_TEST_RUN` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// The `BPF_OBJ_PIN` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ObjPinAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, initialised `bpf_attr` prefix of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr).cast::<libc::c_void>(),
            size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A loaded XDP program (closed on drop).
pub struct XdpProgram {
    fd: OwnedFd,
}

impl XdpProgram {
    fn load(name: &str, insns: &[Insn]) -> std::io::Result<Self> {
        let license = c"GPL";
        let mut log = vec![0u8; 4096];
        let mut prog_name = [0u8; 16];
        for (d, s) in prog_name.iter_mut().zip(name.bytes().take(15)) {
            *d = s;
        }
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 1,
            log_size: log.len() as u32,
            log_buf: log.as_mut_ptr() as u64,
            prog_name,
            ..ProgLoadAttr::default()
        };
        match bpf(BPF_PROG_LOAD, &mut attr) {
            // SAFETY: BPF_PROG_LOAD returned a fresh fd we own.
            Ok(fd) => Ok(Self {
                fd: unsafe { OwnedFd::from_raw_fd(fd as i32) },
            }),
            Err(e) => {
                let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
                Err(std::io::Error::new(
                    e.kind(),
                    format!(
                        "loading {name}: {e}: {}",
                        String::from_utf8_lossy(&log[..end])
                    ),
                ))
            }
        }
    }

    /// `return bpf_redirect(ifindex, 0)`.
    pub fn redirect(ifindex: u32) -> std::io::Result<Self> {
        Self::load(
            "bench_redirect",
            &[
                mov_imm(1, ifindex.cast_signed()),
                mov_imm(2, 0),
                call(FUNC_REDIRECT),
                EXIT,
            ],
        )
    }

    /// `return XDP_PASS`.
    pub fn pass() -> std::io::Result<Self> {
        Self::load("bench_pass", &[mov_imm(0, XDP_PASS), EXIT])
    }

    /// Pins the program at `path` (bpffs), e.g. for `ip link set … xdpdrv pinned`.
    pub fn pin(&self, path: &Path) -> std::io::Result<()> {
        let c = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let mut attr = ObjPinAttr {
            pathname: c.as_ptr() as u64,
            bpf_fd: self.fd.as_raw_fd() as u32,
            file_flags: 0,
        };
        bpf(BPF_OBJ_PIN, &mut attr).map(|_| ())
    }

    /// Runs the program `repeat` times over `frame` in live-frames mode: each run's
    /// verdict is carried out for real (a redirect sends the frame). Frames are made
    /// on the caller's network namespace's loopback device, so a redirect's ifindex is
    /// looked up there. Returns the kernel's mean nanoseconds per run.
    pub fn run_live(&self, frame: &[u8], repeat: u32) -> std::io::Result<u32> {
        let mut attr = TestRunAttr {
            prog_fd: self.fd.as_raw_fd() as u32,
            data_size_in: frame.len() as u32,
            data_in: frame.as_ptr() as u64,
            repeat,
            flags: BPF_F_TEST_XDP_LIVE_FRAMES,
            batch_size: 64,
            ..TestRunAttr::default()
        };
        bpf(BPF_PROG_TEST_RUN, &mut attr)?;
        Ok(attr.duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_layouts_match_the_kernel() {
        // Offsets of `union bpf_attr`'s members in include/uapi/linux/bpf.h.
        assert_eq!(size_of::<Insn>(), 8);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::offset_of!(TestRunAttr, repeat), 32);
        assert_eq!(std::mem::offset_of!(TestRunAttr, flags), 64);
        assert_eq!(std::mem::offset_of!(TestRunAttr, batch_size), 72);
    }
}
