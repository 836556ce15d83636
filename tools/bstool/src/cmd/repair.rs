//! `bstool repair`: put a stopped store right from its object metadata.
//!
//! Prints fsck's findings before, every repair, and what is left (the same JSON shapes as
//! fsck); exits 0 when the store is clean afterwards, 1 when findings remain for the operator.
//! `--dry-run` opens everything read-only and changes nothing; `--drop-lost` removes objects
//! whose metadata does not decode, so that their space can be reclaimed. `--salvage` is for a
//! store whose RocksDB cannot be read at all (`Store::salvage`).

use std::process::ExitCode;

use bstore::{FsckReport, RepairOptions, SalvageTarget, Store};
use serde_json::{Value, json};

use crate::output::{Format, Out, error_text};
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
    /// When RocksDB itself cannot read the store: run RocksDB's repair (unreadable tables are
    /// moved aside, what they held is lost), then this repair, on a copy made at --to (or on
    /// the store itself with --in-place); reports which objects survived and which were lost.
    #[arg(long, conflicts_with_all = ["dry_run", "drop_lost"])]
    salvage: bool,
    /// With --salvage: the new store directory for the salvaged copy (its block links to the
    /// original data device, which the salvage does not write).
    #[arg(long, requires = "salvage", conflicts_with = "in_place")]
    to: Option<std::path::PathBuf>,
    /// With --salvage: repair the store's own database where it is.
    #[arg(long, requires = "salvage")]
    in_place: bool,
    /// No spinner (it is shown only when stderr is a terminal anyway).
    #[arg(long)]
    quiet: bool,
}

/// Repairs the store and prints what was done.
pub fn run(cli: &Cli, args: &Args) -> CmdResult {
    let path = cli.store_path()?;
    if args.salvage {
        return salvage(cli, path, args);
    }
    let options = RepairOptions::default()
        .with_dry_run(args.dry_run)
        .with_drop_lost(args.drop_lost);
    let spinner = crate::cmd::fsck::spinner(!args.quiet, "repair: checking and rebuilding");
    let report = Store::repair(path, options);
    spinner.finish_and_clear();
    let report = report.map_err(|e| {
        format!(
            "repair {}: {}{}",
            path.display(),
            error_text(&e),
            salvage_hint(&e)
        )
    })?;
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

fn salvage(cli: &Cli, path: &std::path::Path, args: &Args) -> CmdResult {
    let target = match (&args.to, args.in_place) {
        (Some(copy), _) => SalvageTarget::Copy(copy.clone()),
        (None, true) => SalvageTarget::InPlace,
        (None, false) => {
            return Err(
                "--salvage works on a copy: give --to NEW_DIR, or --in-place to work on the store"
                    .to_string(),
            );
        }
    };
    let spinner = crate::cmd::fsck::spinner(!args.quiet, "salvage: repairing a copy");
    let salvaged = Store::salvage(path, &target);
    spinner.finish_and_clear();
    let report = salvaged.map_err(|e| format!("salvage {}: {}", path.display(), error_text(e)))?;
    let repairs: Vec<_> = report
        .repair
        .repairs
        .iter()
        .map(|r| json!({"what": r.what, "detail": r.detail}))
        .collect();
    let value = json!({
        "store": report.store.display().to_string(),
        "clean": report.repair.after.is_clean(),
        "tables_lost": report.tables_lost,
        "log_warning": report.log_warning,
        "survivor_count": report.survivors.len(),
        "lost": report.lost,
        "vanished": report.vanished,
        "repairs": repairs,
        "left": findings(&report.repair.after),
        "survivors": report.survivors,
    });
    let mut out = Out::new();
    out.value(cli.format_or(Format::Json), &value)?;
    out.flush()?;
    Ok(if report.repair.after.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// What to try when RocksDB cannot read its own tables.
pub fn salvage_hint(error: &bstore::Error) -> &'static str {
    match error {
        bstore::Error::Corruption(text) if text.contains("Corruption:") => {
            " (RocksDB cannot read its own tables: `bstool repair --salvage --to NEW_DIR` \
             recovers what it can into a copy)"
        }
        _ => "",
    }
}

fn findings(report: &FsckReport) -> Value {
    let errors: Vec<_> = report
        .errors
        .iter()
        .map(|e| json!({"check": e.check, "detail": e.detail}))
        .collect();
    json!({"clean": report.is_clean(), "error_count": errors.len(), "errors": errors})
}
