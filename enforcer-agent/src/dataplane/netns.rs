//! The network namespace the agent enforces in, as the kernel names it to BPF programs:
//! its cookie (`SO_NETNS_COOKIE`, what `bpf_get_netns_cookie` returns). Programs that
//! run for every namespace (the cgroup program) judge only packets of this one.

use std::net::UdpSocket;
use std::os::fd::AsRawFd as _;

/// The cookie of the calling thread's network namespace.
///
/// # Minimum kernel version
/// 5.14 (`SO_NETNS_COOKIE`).
pub fn cookie() -> std::io::Result<u64> {
    // Any socket of the namespace answers for it; this one is never bound.
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    let mut cookie: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: the descriptor is open for the duration of the call; `cookie` and `len`
    // are valid for writes of the sizes given.
    let ret = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &raw mut len,
        )
    };
    if ret != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cookie)
}
