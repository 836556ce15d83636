//! One module per group of subcommands.

pub mod attrs;
pub mod clone;
pub mod diff;
pub mod export;
pub mod free;
pub mod fsck;
pub mod info;
pub mod mkfs;
pub mod objects;
pub mod repair;
