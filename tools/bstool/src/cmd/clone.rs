//! `bstool clone` and `bstool clone-range`: copy-on-write copies of objects and ranges.

use std::process::ExitCode;

use bstore::Transaction;

use crate::output::error_text;
use crate::size::parse_size;
use crate::{Cli, CmdResult};

/// Arguments of `clone`.
#[derive(Debug, clap::Args)]
pub struct CloneArgs {
    /// Collection name.
    collection: String,
    /// Object to copy.
    source: String,
    /// The copy (replaced if it exists).
    target: String,
}

/// Arguments of `clone-range`.
#[derive(Debug, clap::Args)]
pub struct CloneRangeArgs {
    /// Collection name.
    collection: String,
    /// Object to copy from.
    source: String,
    /// Object to copy into (created if missing).
    target: String,
    /// First byte of the source to copy.
    #[arg(long, value_parser = parse_size)]
    src_offset: u64,
    /// Bytes to copy.
    #[arg(long, value_parser = parse_size)]
    length: u64,
    /// Where the bytes land in the target.
    #[arg(long, value_parser = parse_size)]
    dst_offset: u64,
}

/// Makes TARGET a copy of SOURCE, sharing its data.
pub fn clone(cli: &Cli, args: &CloneArgs) -> CmdResult {
    let mut txn = Transaction::new();
    txn.clone_object(&args.collection, &args.source, &args.target);
    apply(cli, &txn)
}

/// Copies a range of SOURCE into TARGET, sharing its data.
pub fn clone_range(cli: &Cli, args: &CloneRangeArgs) -> CmdResult {
    let mut txn = Transaction::new();
    txn.clone_range(
        &args.collection,
        &args.source,
        args.src_offset,
        args.length,
        &args.target,
        args.dst_offset,
    );
    apply(cli, &txn)
}

fn apply(cli: &Cli, txn: &Transaction) -> CmdResult {
    let store = cli.open_store()?;
    store.apply(txn).map_err(error_text)?;
    store.close().map_err(error_text)?;
    Ok(ExitCode::SUCCESS)
}
