//! Located YAML: documents read into a tree that remembers each value's line and
//! column ([`tree`]), and a serde deserializer over that tree that names the field path
//! and position of every error ([`de`]). Loading reads typed objects through them, so
//! a typo deep in a policy is reported at its line and column.

pub(crate) mod de;
pub(crate) mod tree;
