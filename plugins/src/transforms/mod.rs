//! Transforms: between sources and channels.

pub mod add_fields;
#[cfg(feature = "transform-aggregate")]
pub mod aggregate;
