//! Mapping profiles: the TOML files admins write (`mappings/*.toml`).

pub mod profile;

pub use profile::*;
