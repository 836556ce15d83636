//! `bstool mkfs`: make a new store.

use std::path::PathBuf;
use std::process::ExitCode;

use bstore::{BlockSource, MkfsOptions, Store};

use crate::size::parse_size;
use crate::{Cli, CmdResult};

/// Arguments of `mkfs`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("device").required(true).args(["block", "size"])))]
pub struct Args {
    /// Use this block device (or existing file) as the data device.
    #[arg(long)]
    block: Option<PathBuf>,
    /// Create STORE_DIR/block as a sparse file of this size (e.g. 8G).
    #[arg(long, value_parser = parse_size)]
    size: Option<u64>,
    /// Allocation unit: a power of two, at least the device's block size.
    #[arg(long, value_parser = parse_size, default_value = "4K")]
    min_alloc_size: u64,
    /// Put RocksDB here (STORE_DIR/db becomes a symlink).
    #[arg(long)]
    db_dir: Option<PathBuf>,
    /// Put RocksDB's WAL here (STORE_DIR/wal becomes a symlink).
    #[arg(long)]
    wal_dir: Option<PathBuf>,
    /// Overwrite an existing store.
    #[arg(long)]
    force: bool,
}

/// Runs `mkfs`.
pub fn run(cli: &Cli, args: &Args) -> CmdResult {
    let path = cli.store_path()?;
    let block = match (&args.block, args.size) {
        (Some(device), _) => BlockSource::Device(device.clone()),
        (None, Some(size_bytes)) => BlockSource::File { size_bytes },
        (None, None) => return Err("one of --block or --size is required".into()),
    };
    let mut options = MkfsOptions::new(path, block);
    options.db_dir = args.db_dir.clone();
    options.wal_dir = args.wal_dir.clone();
    options.force = args.force;
    options.format.min_alloc_size = u32::try_from(args.min_alloc_size)
        .map_err(|_| format!("--min-alloc-size {} is too large", args.min_alloc_size))?;
    Store::mkfs(&options).map_err(|e| format!("mkfs {}: {e}", path.display()))?;
    Ok(ExitCode::SUCCESS)
}
