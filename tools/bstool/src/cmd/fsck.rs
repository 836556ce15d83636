//! `bstool fsck`: check a stopped store, read-only; exit 0 when clean, 1 when errors were found.
//!
//! Nothing is written (RocksDB opens read-only, the device `O_RDONLY`), so fsck works on a
//! read-only mount or snapshot of a damaged disk. The exit status survives a closed pipe
//! (`bstool fsck | head -1`). `--deep` reads every byte the objects reference and verifies
//! every checksum chunk, showing its progress on stderr when that is a terminal. `bstool scrub`
//! is the same deep read, reporting only what it found in the data.

use std::process::ExitCode;

use bstore::{DeepReport, FsckOptions, FsckProgress, Store};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::output::{Format, Out, error_text};
use crate::{Cli, CmdResult};

/// `bstool fsck` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also read every referenced byte and verify every checksum chunk.
    #[arg(long)]
    deep: bool,
    /// No progress bar (it is shown only when stderr is a terminal anyway).
    #[arg(long)]
    quiet: bool,
}

/// `bstool scrub` options.
#[derive(Debug, clap::Args)]
pub struct ScrubArgs {
    /// No progress bar (it is shown only when stderr is a terminal anyway).
    #[arg(long)]
    quiet: bool,
}

/// Checks the store and prints the report.
pub fn run(cli: &Cli, args: &Args) -> CmdResult {
    let path = cli.store_path()?;
    let report = check(path, args.deep, args.quiet)?;
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
        "deep": report.deep.as_ref().map(deep_json),
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

/// The offline scrub: a deep fsck, reported for its data only (`data.*` findings and what the
/// data pass read).
pub fn run_scrub(cli: &Cli, args: &ScrubArgs) -> CmdResult {
    let path = cli.store_path()?;
    let report = check(path, true, args.quiet)?;
    let errors: Vec<_> = report
        .errors
        .iter()
        .filter(|e| e.check.starts_with("data."))
        .map(|e| json!({"check": e.check, "detail": e.detail}))
        .collect();
    let clean = errors.is_empty();
    let value = json!({
        "clean": clean,
        "error_count": errors.len(),
        "objects": report.objects,
        "deep": report.deep.as_ref().map(deep_json),
        "errors": errors,
    });
    let mut out = Out::new();
    out.value(cli.format_or(Format::Json), &value)?;
    out.flush()?;
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Runs fsck on the store at `path`, with a byte progress bar for a deep one (a spinner for a
/// shallow one).
fn check(path: &std::path::Path, deep: bool, quiet: bool) -> Result<bstore::FsckReport, String> {
    let bar = if deep {
        progress_bar(!quiet)
    } else {
        spinner(!quiet, "fsck: checking the metadata")
    };
    let mut show = |progress: FsckProgress| {
        bar.set_length(progress.bytes_total.max(progress.bytes_read));
        bar.set_position(progress.bytes_read);
    };
    let options = FsckOptions::default()
        .with_deep(deep)
        .with_progress(&mut show);
    let report = Store::fsck_with(path, options);
    bar.finish_and_clear();
    report.map_err(|e| {
        let hint = crate::cmd::repair::salvage_hint(&e);
        format!("fsck {}: {}{hint}", path.display(), error_text(&e))
    })
}

fn deep_json(deep: &DeepReport) -> Value {
    let bad: Vec<_> = deep
        .bad_chunks
        .iter()
        .map(|bad| {
            json!({
                "object": bad.object,
                "object_offset": bad.object_offset,
                "device_offset": bad.device_offset,
                "length": bad.length,
                "problem": bad.to_string(),
            })
        })
        .collect();
    json!({
        "bytes_read": deep.bytes_read,
        "chunks_verified": deep.chunks_verified,
        "reads": deep.reads,
        "seconds": deep.elapsed.as_secs_f64(),
        "bytes_per_second": deep.bytes_per_second().round() as u64,
        "bad_chunks": bad,
    })
}

/// A byte-count bar on stderr for a deep fsck; hidden when stderr is not a terminal.
fn progress_bar(shown: bool) -> ProgressBar {
    if !shown {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    let template = "fsck --deep [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}";
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// A spinner with a message on stderr while an operation of unknown length runs; hidden when
/// stderr is not a terminal.
pub fn spinner(shown: bool, message: &'static str) -> ProgressBar {
    if !shown {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner().with_message(message);
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}
