//! Transforms: between sources and channels.

pub mod add_fields;
pub mod aggregate;
