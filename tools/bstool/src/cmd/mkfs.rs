//! `bstool mkfs` and `bstool zap`: make a store, and wipe one on purpose.
//!
//! mkfs refuses a device that holds a file system, a partition table, an LVM or MD member, a
//! Ceph OSD or another store, naming what it found, unless `--force` (see `Store::mkfs`). zap is
//! the deliberate way to remove a store: it needs `--yes-i-really-mean-it`, and it only ever
//! wipes a bstore label and the files a store consists of.

use std::path::PathBuf;
use std::process::ExitCode;

use bstore::{BlockSource, JournalSize, MkfsOptions, Store};
use serde_json::json;

use crate::output::{Format, Out, error_text};
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
    /// The commit journal's ring, on the data device after the label: `auto` (a 32nd of the
    /// device, 1 MiB to 1 GiB), a size (at least 64K, a multiple of --min-alloc-size), or
    /// `none` (a format-1 store committing through RocksDB's log: slower durable writes).
    #[arg(long, value_parser = parse_journal_size, default_value = "auto")]
    journal_size: JournalSize,
    /// Put RocksDB here (STORE_DIR/db becomes a symlink); must be new or empty.
    #[arg(long)]
    db_dir: Option<PathBuf>,
    /// Put RocksDB's WAL here (STORE_DIR/wal becomes a symlink); must be new or empty.
    #[arg(long)]
    wal_dir: Option<PathBuf>,
    /// Replace an existing store, and overwrite whatever the device holds (a file system, a
    /// partition table, another store): DESTROYS IT.
    #[arg(long)]
    force: bool,
}

/// Arguments of `zap`.
#[derive(Debug, clap::Args)]
pub struct ZapArgs {
    /// Wipe the bstore label of this device or image (instead of the store at --path).
    #[arg(long)]
    dev: Option<PathBuf>,
    /// Confirms that the store's data is to be destroyed.
    #[arg(long)]
    yes_i_really_mean_it: bool,
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
    options.io_backend = cli.io_backend();
    options.format.min_alloc_size = u32::try_from(args.min_alloc_size)
        .map_err(|_| format!("--min-alloc-size {} is too large", args.min_alloc_size))?;
    options.format.journal = args.journal_size;
    Store::mkfs(&options).map_err(|e| format!("mkfs {}: {}", path.display(), error_text(e)))?;
    Ok(ExitCode::SUCCESS)
}

/// `auto`, `none` or a size, as `--journal-size` takes it.
pub fn parse_journal_size(text: &str) -> Result<JournalSize, String> {
    match text {
        "auto" => Ok(JournalSize::Auto),
        "none" => Ok(JournalSize::Disabled),
        size => parse_size(size).map(JournalSize::Bytes),
    }
}

/// Runs `zap`: wipes the store at `--path` (label and files), or the label of `--dev`.
pub fn zap(cli: &Cli, args: &ZapArgs) -> CmdResult {
    if !args.yes_i_really_mean_it {
        return Err(
            "zap destroys the store's data: add --yes-i-really-mean-it to confirm".to_string(),
        );
    }
    let value = match &args.dev {
        Some(device) => {
            let uuid = Store::zap_device(device)
                .map_err(|e| format!("zap {}: {}", device.display(), error_text(e)))?;
            json!({
                "zapped": device.display().to_string(),
                "store_uuid": uuid.map(|u| bstore::format_uuid(&u)),
            })
        }
        None => {
            let path = cli.store_path()?;
            let report = Store::zap(path)
                .map_err(|e| format!("zap {}: {}", path.display(), error_text(e)))?;
            let uuid = |u: Option<[u8; 16]>| u.map(|u| bstore::format_uuid(&u));
            if let Some(other) = report.label_left {
                crate::output::warn(&format!(
                    "the device's label belongs to store {} now, not to this directory's: it \
                     was left alone (zap --dev wipes it)",
                    bstore::format_uuid(&other)
                ));
            }
            json!({
                "zapped": path.display().to_string(),
                "store_uuid": uuid(report.label_wiped),
                "label_left": uuid(report.label_left),
            })
        }
    };
    let mut out = Out::new();
    out.value(cli.format_or(Format::Json), &value)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
