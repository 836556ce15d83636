//! `bstool show-label` and `bstool statfs`: read-only, so they work beside a running daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use bstore::Store;
use serde_json::json;

use crate::output::{Format, Out, error_text};
use crate::{Cli, CmdResult};

/// Arguments of `show-label`.
#[derive(Debug, clap::Args)]
pub struct ShowLabelArgs {
    /// Read the label of this device or image directly (no store directory needed).
    #[arg(long)]
    dev: Option<PathBuf>,
}

/// Prints the label of the store's data device, or of `--dev` (works on a store that does not
/// mount, and on one a daemon has open).
pub fn show_label(cli: &Cli, args: &ShowLabelArgs) -> CmdResult {
    let label = match &args.dev {
        Some(device) => Store::read_device_label(device).map_err(|e| {
            format!(
                "reading the label of {}: {}",
                device.display(),
                error_text(e)
            )
        })?,
        None => Store::read_label(cli.store_path()?)
            .map_err(|e| format!("reading the label: {}", error_text(e)))?,
    };
    // The journal lives in the store, not the label: shown when there is a store to look in
    // (a damaged one is reported, and the label still printed).
    let journal = match &args.dev {
        Some(_) => None,
        None => Some(match Store::inspect_journal(cli.store_path()?) {
            Ok(status) => status.map_or(serde_json::Value::Null, |s| journal_json(&s)),
            Err(error) => json!({ "error": error_text(error) }),
        }),
    };
    let mut value = json!({
        "format_version": label.format_version,
        "store_uuid": bstore::format_uuid(&label.store_uuid),
        "device_size": label.device_size,
        "min_alloc_size": label.min_alloc_size,
        "created": rfc3339(label.created_secs, label.created_nanos),
        "created_secs": label.created_secs,
        "meta": label.meta,
    });
    if let Some(journal) = journal {
        value["journal"] = journal;
    }
    // The label is JSON, as ceph-bluestore-tool prints it, unless text is asked for.
    let mut out = Out::new();
    out.value(cli.format_or(Format::Json), &value)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The journal as scripts read it: where the ring is, where its head and tail are, and what
/// a mount would replay.
pub fn journal_json(status: &bstore::JournalStatus) -> serde_json::Value {
    json!({
        "device_offset": status.region.device_offset,
        "size": status.region.length,
        "head": {"sequence": status.head.sequence, "ring_offset": status.head.ring_offset},
        "tail": {"sequence": status.tail.sequence, "ring_offset": status.tail.ring_offset},
        "pending_records": status.pending_records,
        "pending_bytes": status.pending_bytes,
    })
}

/// Prints space accounting.
pub fn statfs(cli: &Cli) -> CmdResult {
    let store = cli.inspect_store()?;
    let statfs = store.statfs().map_err(error_text)?;
    let value = json!({
        "total_bytes": statfs.total_bytes,
        "available_bytes": statfs.available_bytes,
        "allocated_bytes": statfs.allocated_bytes,
        "stored_bytes": statfs.stored_bytes,
        "reserved_bytes": statfs.reserved_bytes,
        "object_count": statfs.object_count,
    });
    let mut out = Out::new();
    out.value(cli.format_or(Format::Json), &value)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `secs` since the epoch as an RFC 3339 UTC timestamp.
fn rfc3339(secs: u64, nanos: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        nanos
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(super::rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            super::rfc3339(1_700_000_000, 5),
            "2023-11-14T22:13:20.000000005Z"
        );
        assert_eq!(
            super::rfc3339(951_782_400, 0),
            "2000-02-29T00:00:00.000000000Z"
        );
    }
}
