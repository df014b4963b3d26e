//! The BPF object with both TC programs, built by `build.rs` from `enforcer-ebpf` and
//! embedded in the binary.
//!
//! Program names: `enforcer_common::PROG_*` (listed in `enforcer_common::PROGRAMS`);
//! map names: `enforcer_common::MAP_*`.

/// The ELF object, 8-byte aligned as `aya::EbpfLoader::load` requires.
pub static BPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/enforcer-ebpf.o"));
