//! `bstool fsck`: check a stopped store, read-only; exit 0 when clean, 1 when errors were found.
//!
//! Nothing is written (RocksDB opens read-only, the device `O_RDONLY`), so fsck works on a
//! read-only mount or snapshot of a damaged disk. The exit status survives a closed pipe
//! (`bstool fsck | head -1`).

use std::process::ExitCode;

use bstore::Store;
use serde_json::json;

use crate::output::{Format, Out};
use crate::{Cli, CmdResult};

/// Checks the store and prints the report.
pub fn run(cli: &Cli) -> CmdResult {
    let path = cli.store_path()?;
    let report = Store::fsck(path).map_err(|e| format!("fsck {}: {e}", path.display()))?;
    let errors: Vec<_> = report
        .errors
        .iter()
        .map(|e| json!({"check": e.check, "detail": e.detail}))
        .collect();
    let value = json!({
        "clean": report.is_clean(),
        "error_count": report.errors.len(),
        "collections": report.collections,
        "objects": report.objects,
        "extent_shards": report.extent_shards,
        "omap_keys": report.omap_keys,
        "referenced_bytes": report.referenced_bytes,
        "free_bytes": report.free_bytes,
        "deferred_records": report.deferred_records,
        "deferred_bytes": report.deferred_bytes,
        "journal": report.journal.map(|found| crate::cmd::info::journal_json(&found.status())),
        "errors": errors,
    });
    let mut out = Out::new();
    out.value(cli.format_or(Format::Json), &value)?;
    out.flush()?;
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
