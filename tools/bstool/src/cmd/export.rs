//! `bstool verify-export`: check an export stream (FORMAT.md §12) without importing it.
//!
//! Reads the whole stream (a file, or `-` for stdin) through the same checks an import makes:
//! every frame's crc32c and index, the order of frames, and the trailer's counts and digest.
//! Prints what the stream holds; exits 0 when it is whole and valid, 1 when it is not (saying
//! where and why), 2 when it cannot be read at all.

use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use bstore::format::export::{Frame, StreamError, StreamHeader, StreamReader, StreamTrailer};
use serde_json::{Value, json};

use crate::output::{Format, Out};
use crate::{Cli, CmdResult};

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
            .map_err(|e| format!("opening {}: {e}", args.file.display()))?;
        Box::new(file)
    };
    let spinner = crate::cmd::fsck::spinner(!args.quiet, "verify-export: reading the stream");
    let outcome = read_whole(StreamReader::new(BufReader::with_capacity(1 << 20, source)));
    spinner.finish_and_clear();
    let (value, valid) = match outcome {
        Ok((header, trailer, bytes)) => (summary(&header, &trailer, bytes), true),
        Err((StreamError::Io(error), _)) => {
            return Err(format!("reading {}: {error}", args.file.display()));
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
            StreamError::Invalid(bstore::format::DecodeError::new(
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
