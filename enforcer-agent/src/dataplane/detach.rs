//! Taking pinned links off their hooks on purpose (`enforcer uninstall`): each link
//! pinned under the node's directory is detached with `BPF_LINK_DETACH` (kernel 5.9)
//! before its pin is removed, so that its program judges nothing once the command
//! returns.
//!
//! Removing a pin alone detaches too, but later: the kernel drops the pin's reference
//! after an RCU grace period, from a workqueue (and a TCX release waits for the RTNL
//! lock), so a packet sent right after the pins are gone may still be judged.

use std::ffi::CString;
use std::os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use aya_obj::generated::bpf_cmd;

/// `bpf_attr` of `BPF_OBJ_GET` (the kernel zero-extends a shorter attribute).
#[repr(C)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// `bpf_attr` of `BPF_LINK_DETACH`.
#[repr(C)]
struct LinkDetachAttr {
    link_fd: u32,
}

/// The `bpf(2)` system call with an attribute of type `A`.
fn bpf<A>(cmd: bpf_cmd, attr: &A) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a `repr(C)` prefix of the kernel's `bpf_attr` for `cmd`, valid
    // for its whole size during the call; these commands only read it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            std::ptr::from_ref(attr),
            size_of::<A>(),
        )
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Opens the BPF object pinned at `path`.
fn obj_get(path: &Path) -> std::io::Result<OwnedFd> {
    let name = CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let attr = ObjGetAttr {
        pathname: name.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
    };
    let fd = bpf(bpf_cmd::BPF_OBJ_GET, &attr)?;
    let fd = i32::try_from(fd).map_err(std::io::Error::other)?;
    // SAFETY: BPF_OBJ_GET returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Detaches the link `fd` from its hook now (the link object lives on, defunct, until
/// its last reference goes).
fn link_detach(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    let attr = LinkDetachAttr {
        link_fd: u32::try_from(fd.as_raw_fd()).map_err(std::io::Error::other)?,
    };
    bpf(bpf_cmd::BPF_LINK_DETACH, &attr).map(drop)
}

/// Detaches every link pinned under `dir` (its subdirectories included; maps, named
/// `ENF_…`, are left alone); returns how many were detached. A pin that is no link, or
/// a link already off its hook (its interface gone), is skipped: removing the pins
/// afterwards releases whatever is left.
pub fn detach_pinned_links(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut detached = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            detached += detach_pinned_links(&path);
            continue;
        }
        if entry.file_name().to_string_lossy().starts_with("ENF_") {
            continue;
        }
        let Ok(fd) = obj_get(&path) else {
            continue;
        };
        match link_detach(fd.as_fd()) {
            Ok(()) => detached += 1,
            Err(error) => {
                tracing::debug!(pin = %path.display(), %error, "not detached (no link, or off its hook already)");
            }
        }
    }
    detached
}
