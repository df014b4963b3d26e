//! Where packet bytes come from ([`Bytes`]: an skb, an XDP buffer, an skb from its
//! network header) and the bounds-checked copies every header read goes through.

use core::{
    ffi::c_void,
    mem::{MaybeUninit, size_of},
};

use aya_ebpf::{
    bindings::{__sk_buff, bpf_hdr_start_off::BPF_HDR_START_NET},
    helpers::generated::{bpf_skb_load_bytes, bpf_skb_load_bytes_relative, bpf_xdp_load_bytes},
    programs::{TcContext, XdpContext},
};
use network_types::{
    eth::EthHdr,
    icmp::{Icmpv4Hdr, Icmpv6Hdr},
    ip::{Ipv4Hdr, Ipv6Hdr},
    sctp::SctpHdr,
    tcp::TcpHdr,
    udp::UdpHdr,
    vlan::VlanHdr,
};

use super::{Ipv6ExtHdr, Ipv6FragHdr};
use crate::Drop;

/// A header type that may be filled from packet bytes.
///
/// # Safety
/// Implementors are `repr(C)` and made only of integers and byte arrays, so every bit
/// pattern is a valid value: a copy of packet bytes is a well-formed header.
pub unsafe trait Header: Copy {}

// SAFETY (all): `repr(C)` structs of `u8`, `u16` and byte arrays (`TcpHdr`'s bitfield
// is a byte array too); no padding-sensitive or niche-carrying field.
unsafe impl Header for EthHdr {}
unsafe impl Header for VlanHdr {}
unsafe impl Header for Ipv4Hdr {}
unsafe impl Header for Ipv6Hdr {}
unsafe impl Header for Ipv6ExtHdr {}
unsafe impl Header for Ipv6FragHdr {}
unsafe impl Header for TcpHdr {}
unsafe impl Header for UdpHdr {}
unsafe impl Header for SctpHdr {}
unsafe impl Header for Icmpv4Hdr {}
unsafe impl Header for Icmpv6Hdr {}
unsafe impl Header for u8 {}
unsafe impl Header for [u8; 8] {}

/// Where packet bytes come from: an skb (TC) or an XDP buffer. Both copy through a
/// helper that checks the offset against the packet length.
pub trait Bytes {
    /// Copies a `T` at `offset` out of the packet; fails if the packet is shorter.
    fn load<T: Header>(&self, offset: usize) -> Result<T, Drop>;
    /// Copies `N` bytes at `offset` straight into `dst` (which may be map memory: no
    /// stack copy); fails if the packet is shorter.
    fn load_into<const N: usize>(&self, offset: usize, dst: &mut [u8; N]) -> Result<(), Drop>;
    /// Length of the whole frame (linear and paged parts).
    fn frame_len(&self) -> u32;
}

/// A program context that crosses a BPF-to-BPF call as its raw pointer (the verifier
/// tracks a context pointer in a register, not one behind a stack pointer).
pub trait RawContext: Bytes {
    fn raw(&self) -> *mut c_void;
    fn from_raw(raw: *mut c_void) -> Self;
}

impl RawContext for TcContext {
    #[inline(always)]
    fn raw(&self) -> *mut c_void {
        self.skb.skb.cast()
    }
    #[inline(always)]
    fn from_raw(raw: *mut c_void) -> Self {
        TcContext::new(raw.cast())
    }
}

impl RawContext for XdpContext {
    #[inline(always)]
    fn raw(&self) -> *mut c_void {
        self.ctx.cast()
    }
    #[inline(always)]
    fn from_raw(raw: *mut c_void) -> Self {
        XdpContext::new(raw.cast())
    }
}

/// The status a load helper returned, as a result.
#[inline(always)]
fn loaded(ret: i64) -> Result<(), Drop> {
    if ret == 0 {
        Ok(())
    } else {
        Err(Drop::Malformed)
    }
}

impl Bytes for TcContext {
    #[inline(always)]
    fn load<T: Header>(&self, offset: usize) -> Result<T, Drop> {
        // `T: Header`: any bytes the helper copies make a valid `T`.
        TcContext::load::<T>(self, offset).map_err(|_| Drop::Malformed)
    }

    #[inline(always)]
    fn load_into<const N: usize>(&self, offset: usize, dst: &mut [u8; N]) -> Result<(), Drop> {
        let offset = u32::try_from(offset).map_err(|_| Drop::Malformed)?;
        // SAFETY: `self.skb.skb` is the context pointer the kernel passed to the TC
        // program; `dst` is a valid, writable `N`-byte buffer; the helper checks
        // offset + N against the packet and fails otherwise.
        loaded(unsafe {
            bpf_skb_load_bytes(
                self.skb.skb.cast(),
                offset,
                dst.as_mut_ptr().cast(),
                N as u32,
            )
        })
    }

    #[inline(always)]
    fn frame_len(&self) -> u32 {
        self.len()
    }
}

impl Bytes for XdpContext {
    #[inline(always)]
    fn load<T: Header>(&self, offset: usize) -> Result<T, Drop> {
        let mut buf = MaybeUninit::<T>::uninit();
        let offset = u32::try_from(offset).map_err(|_| Drop::Malformed)?;
        // SAFETY: `buf` is a valid `size_of::<T>()`-byte buffer on our stack; the helper
        // checks offset + size against the XDP buffer (linear and fragments) and fails
        // otherwise.
        let ret = unsafe {
            bpf_xdp_load_bytes(
                self.ctx,
                offset,
                buf.as_mut_ptr().cast(),
                size_of::<T>() as u32,
            )
        };
        if ret == 0 {
            // SAFETY: the helper filled every byte, and any bytes are a valid `T: Header`.
            Ok(unsafe { buf.assume_init() })
        } else {
            Err(Drop::Malformed)
        }
    }

    #[inline(always)]
    fn load_into<const N: usize>(&self, offset: usize, dst: &mut [u8; N]) -> Result<(), Drop> {
        let offset = u32::try_from(offset).map_err(|_| Drop::Malformed)?;
        // SAFETY: `self.ctx` is the context pointer the kernel passed to the XDP program;
        // `dst` is a valid, writable `N`-byte buffer; the helper checks offset + N
        // against the XDP buffer and fails otherwise.
        loaded(unsafe { bpf_xdp_load_bytes(self.ctx, offset, dst.as_mut_ptr().cast(), N as u32) })
    }

    #[inline(always)]
    fn frame_len(&self) -> u32 {
        // The linear part; multi-buffer frames are rare on the interfaces we judge.
        self.data_end().saturating_sub(self.data()) as u32
    }
}

/// An skb read from its network header on: `offset` 0 is the IP header whatever the
/// device (Ethernet, an L3 tunnel without a link-layer header) or the program type (TC,
/// or cgroup, whose data starts at the network header).
pub struct NetBytes(pub *mut __sk_buff);

impl Bytes for NetBytes {
    #[inline(always)]
    fn load<T: Header>(&self, offset: usize) -> Result<T, Drop> {
        let mut buf = MaybeUninit::<T>::uninit();
        let offset = u32::try_from(offset).map_err(|_| Drop::Malformed)?;
        // SAFETY: `self.0` is the context pointer the kernel passed to the program;
        // `buf` is a valid `size_of::<T>()`-byte buffer on our stack; the helper checks
        // offset + size against the packet and fails otherwise.
        let ret = unsafe {
            bpf_skb_load_bytes_relative(
                self.0.cast(),
                offset,
                buf.as_mut_ptr().cast(),
                size_of::<T>() as u32,
                BPF_HDR_START_NET,
            )
        };
        if ret == 0 {
            // SAFETY: the helper filled every byte, and any bytes are a valid `T: Header`.
            Ok(unsafe { buf.assume_init() })
        } else {
            Err(Drop::Malformed)
        }
    }

    #[inline(always)]
    fn load_into<const N: usize>(&self, offset: usize, dst: &mut [u8; N]) -> Result<(), Drop> {
        let offset = u32::try_from(offset).map_err(|_| Drop::Malformed)?;
        // SAFETY: as `load`, into `dst`, a valid, writable `N`-byte buffer.
        loaded(unsafe {
            bpf_skb_load_bytes_relative(
                self.0.cast(),
                offset,
                dst.as_mut_ptr().cast(),
                N as u32,
                BPF_HDR_START_NET,
            )
        })
    }

    #[inline(always)]
    fn frame_len(&self) -> u32 {
        // SAFETY: `self.0` is the context pointer the kernel passed to the program;
        // reading `len` from `__sk_buff` is allowed to TC and cgroup programs alike (a
        // cgroup program's skb starts at the network header).
        unsafe { (*self.0).len }
    }
}

#[inline(always)]
pub(super) fn load<T: Header, C: Bytes>(ctx: &C, offset: usize) -> Result<T, Drop> {
    ctx.load::<T>(offset)
}

/// `off + delta`, an error instead of an overflow (offsets come from the packet).
#[inline(always)]
pub(super) fn advance(off: usize, delta: usize) -> Result<usize, Drop> {
    off.checked_add(delta).ok_or(Drop::Malformed)
}
