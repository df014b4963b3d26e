//! The policy compiler: the unified Calico model → one generation of map entries.
//! PLACEHOLDER module root; the policy-core work fills it in.

pub mod spec;

pub use spec::DataplaneSpec;
