//! PLACEHOLDER until the BPF build lands.
pub static BPF_OBJECT: &[u8] = &[];
