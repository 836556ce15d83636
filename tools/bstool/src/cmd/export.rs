//! `bstool export`, `import` and `verify-export`: backup and restore through export streams
//! (FORMAT.md §12).
//!
//! `verify-export` reads the whole stream (a file, or `-` for stdin) through the same checks an import makes:
//! every frame's crc32c and index, the order of frames, and the trailer's counts and digest.
//! Prints what the stream holds; exits 0 when it is whole and valid, 1 when it is not (saying
//! where and why), 2 when it cannot be read at all.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bstore::stream::{
    Frame, READ_BUFFER_BYTES, StreamError, StreamHeader, StreamReader, StreamTrailer,
};
use bstore::{ExportOptions, ExportProgress, ImportOptions, ImportProgress};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::output::{Format, Out, error_text};
use crate::{Cli, CmdResult, arg_bytes};

/// `bstool verify-export` options.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The stream: a file, or `-` for standard input.
    file: PathBuf,
    /// No spinner (it is shown only when stderr is a terminal anyway).
    #[arg(long)]
    quiet: bool,
}

/// Checks the stream and prints what it holds.
pub fn verify(cli: &Cli, args: &VerifyArgs) -> CmdResult {
    let source: Box<dyn Read> = if args.file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(&args.file)
            .map_err(|e| format!("opening {}: {}", args.file.display(), error_text(e)))?;
        Box::new(file)
    };
    let spinner = crate::cmd::fsck::spinner(!args.quiet, "verify-export: reading the stream");
    let outcome = read_whole(StreamReader::new(BufReader::with_capacity(
        READ_BUFFER_BYTES,
        source,
    )));
    spinner.finish_and_clear();
    let (value, valid) = match outcome {
        Ok((header, trailer, bytes)) => (summary(&header, &trailer, bytes), true),
        Err((StreamError::Io(error), _)) => {
            return Err(format!(
                "reading {}: {}",
                args.file.display(),
                error_text(error)
            ));
        }
        Err((StreamError::Invalid(error), bytes)) => (
            json!({"valid": false, "error": error.detail, "bytes_read": bytes}),
            false,
        ),
    };
    let mut out = Out::new();
    out.value(cli.format_or(Format::Json), &value)?;
    Ok(if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Reads every frame; the header, the trailer and the stream's length, or why it is not whole
/// (and how far it got).
fn read_whole<R: Read>(
    mut reader: StreamReader<R>,
) -> Result<(StreamHeader, StreamTrailer, u64), (StreamError, u64)> {
    let mut header = None;
    let mut trailer = None;
    loop {
        match reader.next_frame() {
            Ok(Some(Frame::Header(read))) => header = Some(read),
            Ok(Some(Frame::Trailer(read))) => trailer = Some(read),
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(error) => return Err((error, reader.position())),
        }
    }
    // The reader yields `None` only after a valid trailer, which follows a header.
    match (header, trailer) {
        (Some(header), Some(trailer)) => Ok((header, trailer, reader.position())),
        _ => Err((
            StreamError::Invalid(bstore::DecodeError::new(
                "export stream",
                "no header or trailer",
            )),
            reader.position(),
        )),
    }
}

fn summary(header: &StreamHeader, trailer: &StreamTrailer, bytes: u64) -> Value {
    let uuid: String = header
        .source_uuid
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    json!({
        "valid": true,
        "stream_version": header.version,
        "source_uuid": uuid,
        "commit_point": header.commit_point,
        "created_secs": header.created_secs,
        "bytes": bytes,
        "frames": trailer.frames + 1,
        "collections": trailer.collections,
        "objects": trailer.objects,
        "data_bytes": trailer.data_bytes,
        "shared_bytes": trailer.shared_bytes,
        "omap_entries": trailer.omap_entries,
    })
}

/// `bstool export` options.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Export only this collection (repeatable; default: every collection).
    #[arg(long = "collection", value_name = "C")]
    collections: Vec<OsString>,
    /// Where the stream goes: a new file, or `-` for standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE|-")]
    output: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
    /// No progress bar (it is shown only when stderr is a terminal anyway).
    #[arg(long)]
    quiet: bool,
}

/// Writes an export stream of the store (opened read-only: the store is not changed) and
/// prints what it holds: on stdout, or on stderr when the stream itself goes to stdout.
pub fn export(cli: &Cli, args: &ExportArgs) -> CmdResult {
    let store = cli.inspect_store()?;
    let to_stdout = args.output.as_os_str() == "-";
    // A file is written beside its final name and renamed into place once whole and synced,
    // so a failed export never leaves a cut stream there, nor destroys the backup it replaces.
    let special = std::fs::metadata(&args.output).is_ok_and(|meta| !meta.is_file());
    let partial = partial_path(&args.output);
    let file = if to_stdout {
        None
    } else {
        Some(create_output(&args.output, &partial, args.force)?)
    };
    let sink: Box<dyn Write> = match &file {
        None => Box::new(std::io::stdout().lock()),
        Some(file) => Box::new(file),
    };
    let bar = byte_bar(!args.quiet, "export");
    let mut show = |progress: ExportProgress| {
        bar.set_length(progress.bytes_total.max(progress.bytes));
        bar.set_position(progress.bytes);
    };
    let options = ExportOptions::default()
        .with_collections(
            args.collections
                .iter()
                .map(|c| arg_bytes(c).to_vec())
                .collect(),
        )
        .with_progress(Some(&mut show));
    let report = store.export(BufWriter::with_capacity(1 << 20, sink), options);
    bar.finish_and_clear();
    let finished = report
        .map_err(|e| format!("export: {}", error_text(e)))
        .and_then(|report| {
            if let Some(file) = file.as_ref().filter(|_| !special) {
                file.sync_all()
                    .and_then(|()| std::fs::rename(&partial, &args.output))
                    .map_err(|e| {
                        format!("finishing {}: {}", args.output.display(), error_text(e))
                    })?;
            }
            Ok(report)
        });
    let report = finished.inspect_err(|_| {
        if file.is_some() && !special {
            let _ = std::fs::remove_file(&partial);
        }
    })?;
    let seconds = report.elapsed.as_secs_f64();
    let value = json!({
        "collections": report.collections,
        "objects": report.objects,
        "data_bytes": report.data_bytes,
        "shared_bytes": report.shared_bytes,
        "omap_entries": report.omap_entries,
        "stream_bytes": report.stream_bytes,
        "commit_point": report.commit_point,
        "seconds": seconds,
        "mib_per_second": mib_per_second(report.stream_bytes, seconds),
    });
    if to_stdout {
        crate::output::warn(&crate::output::pretty(&value));
    } else {
        let mut out = Out::new();
        out.value(cli.format_or(Format::Json), &value)?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `bstool import` options.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The stream: a file, or `-` for standard input.
    #[arg(short = 'i', long = "input", value_name = "FILE|-")]
    input: PathBuf,
    /// Import only this collection of the stream (repeatable; default: every collection).
    #[arg(long = "collection", value_name = "C")]
    collections: Vec<OsString>,
    /// Replace collections the store already has (otherwise: an error, nothing written).
    #[arg(long)]
    force: bool,
    /// No progress bar (it is shown only when stderr is a terminal anyway).
    #[arg(long)]
    quiet: bool,
}

/// Imports an export stream into the store: every collection appears whole once the stream
/// has verified, or the store is left as it was.
pub fn import(cli: &Cli, args: &ImportArgs) -> CmdResult {
    let (source, length) = open_input(&args.input)?;
    let store = cli.open_store()?;
    let bar = byte_bar(!args.quiet, "import");
    bar.set_length(length);
    let mut show = |progress: ImportProgress| {
        bar.set_length(length.max(progress.stream_bytes));
        bar.set_position(progress.stream_bytes);
    };
    let options = ImportOptions::default()
        .with_collections(
            args.collections
                .iter()
                .map(|c| arg_bytes(c).to_vec())
                .collect(),
        )
        .with_force(args.force)
        .with_progress(Some(&mut show));
    let report = store.import(BufReader::with_capacity(READ_BUFFER_BYTES, source), options);
    bar.finish_and_clear();
    let report =
        report.map_err(|e| format!("import: {}; the store is unchanged", error_text(e)))?;
    store
        .close()
        .map_err(|e| format!("closing the store: {}", error_text(e)))?;
    let seconds = report.elapsed.as_secs_f64();
    let value = json!({
        "collections": report.collections,
        "replaced": report.replaced,
        "objects": report.objects,
        "data_bytes": report.data_bytes,
        "shared_bytes": report.shared_bytes,
        "omap_entries": report.omap_entries,
        "stream_bytes": report.stream_bytes,
        "commit_point": report.commit_point,
        "seconds": seconds,
        "mib_per_second": mib_per_second(report.stream_bytes, seconds),
    });
    let mut out = Out::new();
    out.value(cli.format_or(Format::Json), &value)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn mib_per_second(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        (bytes as f64 / seconds / f64::from(1 << 20) * 10.0).round() / 10.0
    } else {
        0.0
    }
}

/// Where the stream is written before it is renamed to `path`.
fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// The file the stream is written to (`partial`, renamed to `path` when done). An existing
/// `path` is replaced only with `force`; a special file (`/dev/null`) is written in place.
fn create_output(path: &Path, partial: &Path, force: bool) -> Result<File, String> {
    let exists = std::fs::symlink_metadata(path).ok();
    if exists.is_some() && !force {
        return Err(format!(
            "creating {}: it exists (--force replaces it)",
            path.display()
        ));
    }
    if exists.is_some_and(|meta| !meta.is_file()) {
        return File::create(path)
            .map_err(|e| format!("opening {}: {}", path.display(), error_text(e)));
    }
    File::create(partial).map_err(|e| format!("creating {}: {}", partial.display(), error_text(e)))
}

/// The input and its length when known (a file), for the progress bar.
fn open_input(path: &Path) -> Result<(Box<dyn Read + Send>, u64), String> {
    if path.as_os_str() == "-" {
        return Ok((Box::new(std::io::stdin()), 0));
    }
    let file =
        File::open(path).map_err(|e| format!("opening {}: {}", path.display(), error_text(e)))?;
    let length = file.metadata().map_or(0, |m| m.len());
    Ok((Box::new(file), length))
}

/// A byte-count bar on stderr; hidden when stderr is not a terminal.
fn byte_bar(shown: bool, what: &str) -> ProgressBar {
    if !shown {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    let template =
        format!("{what} [{{bar:40}}] {{bytes}}/{{total_bytes}} {{binary_bytes_per_sec}} {{eta}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
