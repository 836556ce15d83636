//! `bstool repair`: put a stopped store right from its object metadata.
//!
//! Prints fsck's findings before, every repair, and what is left (the same JSON shapes as
//! fsck); exits 0 when the store is clean afterwards, 1 when findings remain for the operator.
//! `--dry-run` opens everything read-only and changes nothing; `--drop-lost` removes objects
//! whose metadata does not decode, so that their space can be reclaimed.

use std::process::ExitCode;

use bstore::{FsckReport, RepairOptions, Store};
use serde_json::{Value, json};

use crate::output::{Format, Out};
use crate::{Cli, CmdResult};

/// `bstool repair` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Work out and check the repairs, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Remove objects whose onode or extent shards do not decode (their data is lost), so their
    /// space, shards and omap can be reclaimed. Without it, nothing they may own is freed.
    #[arg(long)]
    drop_lost: bool,
}

/// Repairs the store and prints what was done.
pub fn run(cli: &Cli, args: &Args) -> CmdResult {
    let path = cli.store_path()?;
    let options = RepairOptions {
        dry_run: args.dry_run,
        drop_lost: args.drop_lost,
    };
    let report =
        Store::repair(path, options).map_err(|e| format!("repair {}: {e}", path.display()))?;
    let repairs: Vec<_> = report
        .repairs
        .iter()
        .map(|r| json!({"what": r.what, "detail": r.detail}))
        .collect();
    let value = json!({
        "dry_run": report.dry_run,
        "clean": report.after.is_clean(),
        "repair_count": report.repairs.len(),
        "repairs": repairs,
        "before": findings(&report.before),
        "left": findings(&report.after),
    });
    let mut out = Out::new();
    out.value(cli.format_or(Format::Json), &value)?;
    out.flush()?;
    Ok(if report.after.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn findings(report: &FsckReport) -> Value {
    let errors: Vec<_> = report
        .errors
        .iter()
        .map(|e| json!({"check": e.check, "detail": e.detail}))
        .collect();
    json!({"clean": report.is_clean(), "error_count": errors.len(), "errors": errors})
}
