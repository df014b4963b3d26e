//! A rogue BPF program, as another tool (or an attacker with `CAP_BPF` and
//! `CAP_NET_ADMIN`) would place next to ours: two instructions that pass every packet,
//! loaded and linked with raw `bpf(2)` calls, so the tests need no second object.
//! Closing the link (dropping [`RogueLink`]) detaches it.
//!
//! Used by the `attacks_*` tests of security item 13: a TCX program placed before ours
//! that returns `TCX_PASS` ends the chain before our verdict; an XDP program already on
//! an interface makes our XDP attach fail.

use std::os::fd::{FromRawFd as _, OwnedFd};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type`.
const BPF_XDP: u32 = 37;
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;
/// `BPF_F_BEFORE` with no relative program: first in the chain.
const BPF_F_BEFORE: u32 = 1 << 3;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// `TC_ACT_OK`, which TCX reads as `TCX_PASS`.
const TCX_PASS: i32 = 0;
const XDP_PASS: i32 = 2;

/// An attached rogue program; dropping it detaches it.
pub struct RogueLink {
    _link: OwnedFd,
    _prog: OwnedFd,
}

/// `bpf(cmd, attr, size)`.
fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> std::io::Result<OwnedFd> {
    // SAFETY: `attr` is a zeroed `union bpf_attr` of sufficient size for the command,
    // filled at the offsets the kernel's UAPI defines; the kernel copies what it needs.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| std::io::Error::other("fd out of range"))?;
    // SAFETY: the kernel just returned this new descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn put_u32(attr: &mut [u8; 128], offset: usize, value: u32) {
    attr[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
}

fn put_u64(attr: &mut [u8; 128], offset: usize, value: u64) {
    attr[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
}

/// Loads `r0 = verdict; exit` as a program of `prog_type`.
fn load_constant(prog_type: u32, verdict: i32) -> std::io::Result<OwnedFd> {
    // struct bpf_insn { u8 code; u8 dst_reg:4, src_reg:4; s16 off; s32 imm; }
    let mut insns = [0u8; 16];
    insns[0] = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K, dst r0
    insns[4..8].copy_from_slice(&verdict.to_ne_bytes());
    insns[8] = 0x95; // BPF_JMP | BPF_EXIT
    let license = c"GPL";
    let mut attr = [0u8; 128];
    put_u32(&mut attr, 0, prog_type);
    put_u32(&mut attr, 4, 2);
    put_u64(&mut attr, 8, insns.as_ptr() as u64);
    put_u64(&mut attr, 16, license.as_ptr() as u64);
    attr[48..54].copy_from_slice(b"rogue\0");
    bpf(BPF_PROG_LOAD, &mut attr)
}

fn link_create(
    prog: &OwnedFd,
    ifindex: u32,
    attach_type: u32,
    flags: u32,
) -> std::io::Result<OwnedFd> {
    use std::os::fd::AsRawFd as _;
    let mut attr = [0u8; 128];
    let prog_fd = u32::try_from(prog.as_raw_fd()).map_err(|_| std::io::Error::other("fd"))?;
    put_u32(&mut attr, 0, prog_fd);
    put_u32(&mut attr, 4, ifindex);
    put_u32(&mut attr, 8, attach_type);
    put_u32(&mut attr, 12, flags);
    bpf(BPF_LINK_CREATE, &mut attr)
}

/// Links a program that passes everything first in the TCX chain of `ifindex` (an
/// interface of the calling thread's network namespace), ingress or egress.
pub fn tcx_pass_first(ifindex: u32, ingress: bool) -> std::io::Result<RogueLink> {
    let prog = load_constant(BPF_PROG_TYPE_SCHED_CLS, TCX_PASS)?;
    let attach_type = if ingress {
        BPF_TCX_INGRESS
    } else {
        BPF_TCX_EGRESS
    };
    let link = link_create(&prog, ifindex, attach_type, BPF_F_BEFORE)?;
    Ok(RogueLink {
        _link: link,
        _prog: prog,
    })
}

/// Links an XDP program that passes everything to `ifindex` in native (driver) mode.
pub fn xdp_pass_native(ifindex: u32) -> std::io::Result<RogueLink> {
    let prog = load_constant(BPF_PROG_TYPE_XDP, XDP_PASS)?;
    let link = link_create(&prog, ifindex, BPF_XDP, XDP_FLAGS_DRV_MODE)?;
    Ok(RogueLink {
        _link: link,
        _prog: prog,
    })
}
