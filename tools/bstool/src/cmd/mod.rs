//! One module per group of subcommands.

pub mod free;
pub mod info;
pub mod mkfs;
pub mod objects;
