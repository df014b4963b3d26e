//! What loading and attaching the BPF object can fail with.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error("bpffs: {op} {path}: {source}")]
    Bpffs {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("loading the BPF object (maps pinned under {pin_dir}): {source}")]
    Load {
        pin_dir: PathBuf,
        #[source]
        source: Box<aya::EbpfError>,
    },
    #[error("program {program} is missing from the BPF object")]
    MissingProgram { program: &'static str },
    #[error("map {map} is missing from the BPF object")]
    MissingMap { map: &'static str },
    #[error("the debug log's program array {map}: {op}: {source}")]
    DebugTail {
        map: &'static str,
        op: &'static str,
        #[source]
        source: Box<aya::maps::MapError>,
    },
    #[error("program {program}: {op}: {source}")]
    Program {
        program: &'static str,
        op: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("attaching {program} to {iface} ({hook}): {source}")]
    Attach {
        program: &'static str,
        iface: String,
        hook: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("opening cgroup {path}: {source}")]
    Cgroup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Layout(#[from] super::layout::LayoutError),
    #[error("pinning link {path}: {source}")]
    PinLink {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
