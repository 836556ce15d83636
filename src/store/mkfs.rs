//! Making a store: validate the geometry, write the KV records, then the label.
//!
//! The label goes last: until it is on the device (and flushed), the device is not a bstore
//! device, so an interrupted mkfs leaves nothing that mounts half-made. [`mkfs_on`] formats a
//! device and KV store the caller opened; `mkfs` (in `mkfs_dir`) makes a whole store directory
//! and takes care never to destroy what it did not make.

use std::collections::BTreeMap;
use std::io::Read;

use super::options::{FormatOptions, JournalSize};
use crate::alloc::{DeviceExtent, FreelistDelta, FreelistGeometry};
use crate::device::{AlignedBuf, BlockDevice};
use crate::error::{Error, Result};
use crate::format::journal::JOURNAL_BLOCK;
use crate::format::keys::{
    CID_MAX_KEY, JOURNAL_NEXT_KEY, KeySpace, NID_MAX_KEY, SBID_MAX_KEY, STATFS_KEY, SUPERBLOCK_KEY,
};
use crate::format::label::Label;
use crate::format::records::{JournalPosition, JournalRegion};
use crate::format::records::{StatfsRecord, Superblock, encode_counter};
use crate::format::{FORMAT_VERSION, JOURNAL_LENGTH_MIN, reserved_start_bytes};
use crate::kv::{Batch, Durability, Kv};

#[cfg(feature = "rocksdb")]
pub use super::mkfs_dir::{ZapReport, mkfs, zap, zap_device};

/// Smallest usable device: the reserved start plus this many allocation units.
const DEVICE_UNITS_MIN: u64 = 16;

/// Formats `device` and `kv` (both empty or to be overwritten) as a new store.
pub fn mkfs_on(device: &dyn BlockDevice, kv: &dyn Kv, options: &FormatOptions) -> Result<()> {
    let superblock = plan_superblock(device, options)?;
    let label = Label {
        format_version: superblock.format_version,
        store_uuid: superblock.store_uuid,
        device_size: superblock.device_size,
        min_alloc_size: superblock.min_alloc_size,
        created_secs: options.created.map_or_else(now, |(secs, _)| secs),
        created_nanos: options.created.map_or(0, |(_, nanos)| nanos),
        meta: BTreeMap::from([
            (
                "created_by".to_string(),
                format!("bstore {}", env!("CARGO_PKG_VERSION")),
            ),
            ("description".to_string(), "main".to_string()),
        ]),
    };
    kv.write(initial_batch(&superblock), Durability::Sync)?;
    if let Some(journal) = superblock.journal {
        // No stale record may sit where the first one goes (a reused device may hold one).
        let block = JOURNAL_BLOCK as usize;
        device.write_at(journal.device_offset, AlignedBuf::zeroed(block))?;
    }
    device.write_at(0, AlignedBuf::copy_from(&label.encode()))?;
    // Durability point: the label is what makes the device a store. Everything it refers to
    // (the KV records above) is already synced; a crash before this flush leaves no label, and
    // mount refuses the device as not formatted.
    device.flush()
}

/// Checks the geometry against the device and plans the superblock (nothing is written).
pub fn plan_superblock(device: &dyn BlockDevice, options: &FormatOptions) -> Result<Superblock> {
    let info = device.info();
    let block = info.logical_block_size;
    let check_unit = |what: &str, value: u32| {
        if !value.is_power_of_two() || value < block || value > (1 << 24) {
            return Err(Error::invalid(format!(
                "{what} {value} must be a power of two between the device block size {block} and 16 MiB"
            )));
        }
        Ok(())
    };
    check_unit("min_alloc_size", options.min_alloc_size)?;
    check_unit("csum chunk", options.csum_chunk)?;
    if options.csum_chunk > options.min_alloc_size {
        // A chunk is the smallest unit data is laid out in; larger than an allocation unit, a
        // short write would allocate units its extent never references (and never frees).
        return Err(Error::invalid(format!(
            "csum chunk {} is larger than min_alloc_size {}",
            options.csum_chunk, options.min_alloc_size
        )));
    }
    let unit = u64::from(options.min_alloc_size);
    let device_size = info.size_bytes / unit * unit;
    let journal = plan_journal(options, device_size)?;
    let reserved = journal.map_or(reserved_start_bytes(unit), |j| j.device_offset + j.length);
    if device_size < reserved + DEVICE_UNITS_MIN * unit {
        return Err(Error::invalid(format!(
            "device of {} bytes is too small: at least {} bytes are needed",
            info.size_bytes,
            reserved + DEVICE_UNITS_MIN * unit
        )));
    }
    let superblock = Superblock {
        format_version: if journal.is_some() { FORMAT_VERSION } else { 1 },
        store_uuid: options.store_uuid.map_or_else(random_uuid, Ok)?,
        min_alloc_size: options.min_alloc_size,
        device_size,
        csum_type: options.csum_type,
        csum_chunk_order: options.csum_chunk.trailing_zeros() as u8,
        blob_length_max: options.blob_length_max,
        freelist_blocks_per_key: options.freelist_blocks_per_key,
        journal,
    };
    superblock.validate().map_err(Error::invalid)?;
    Ok(superblock)
}

/// Default journal ring: a 32nd of the device, between 1 MiB and 1 GiB.
const JOURNAL_SHARE: u64 = 32;
const JOURNAL_LENGTH_DEFAULT_MAX: u64 = 1 << 30;
/// The smallest journal mkfs picks by itself (a smaller one is allowed when asked for).
const JOURNAL_LENGTH_AUTO_MIN: u64 = 1 << 20;

/// Where the journal goes: right after the label's reserved start, sized as asked.
fn plan_journal(options: &FormatOptions, device_size: u64) -> Result<Option<JournalRegion>> {
    let unit = u64::from(options.min_alloc_size);
    let length = match options.journal {
        JournalSize::Disabled => return Ok(None),
        JournalSize::Auto => (device_size / JOURNAL_SHARE)
            .clamp(JOURNAL_LENGTH_AUTO_MIN, JOURNAL_LENGTH_DEFAULT_MAX)
            .next_multiple_of(unit),
        JournalSize::Bytes(bytes) => {
            if bytes < JOURNAL_LENGTH_MIN || !bytes.is_multiple_of(unit) {
                return Err(Error::invalid(format!(
                    "journal of {bytes} bytes: at least {JOURNAL_LENGTH_MIN} and a multiple of \
                     min_alloc_size {unit}"
                )));
            }
            bytes
        }
    };
    let salt = u64::from_le_bytes(random_uuid()?[..8].try_into().expect("16 bytes"));
    Ok(Some(JournalRegion {
        device_offset: reserved_start_bytes(unit),
        length,
        salt,
    }))
}

/// Superblock, zeroed counters and statistics, the journal's start, and the reserved start
/// (with the journal's ring) marked allocated.
fn initial_batch(superblock: &Superblock) -> Batch {
    let mut batch = Batch::new();
    batch.put(KeySpace::Super, SUPERBLOCK_KEY, superblock.encode());
    if superblock.journal.is_some() {
        let start = JournalPosition {
            sequence: 1,
            ring_offset: 0,
            previous_ring_offset: None,
        };
        batch.put(KeySpace::Super, JOURNAL_NEXT_KEY, start.encode());
    }
    for key in [NID_MAX_KEY, CID_MAX_KEY, SBID_MAX_KEY] {
        batch.put(KeySpace::Super, key, encode_counter(0));
    }
    batch.put(
        KeySpace::Stats,
        STATFS_KEY,
        StatfsRecord::default().encode(),
    );
    let geometry = FreelistGeometry {
        unit_bytes: u64::from(superblock.min_alloc_size),
        blocks_per_key: u64::from(superblock.freelist_blocks_per_key),
        device_size: superblock.device_size,
    };
    let mut delta = FreelistDelta::new();
    delta.flip(&geometry, DeviceExtent::new(0, superblock.reserved_end()));
    delta.write_to(&mut batch);
    batch
}

/// A random (version 4) uuid.
pub fn random_uuid() -> Result<[u8; 16]> {
    let mut uuid = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut uuid))
        .map_err(|e| Error::io("reading /dev/urandom for the store uuid", e))?;
    uuid[6] = (uuid[6] & 0x0f) | 0x40; // version 4
    uuid[8] = (uuid[8] & 0x3f) | 0x80; // RFC 4122 variant
    Ok(uuid)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A uuid as the usual 8-4-4-4-12 hex string.
pub fn format_uuid(uuid: &[u8; 16]) -> String {
    let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Parses the 8-4-4-4-12 hex form [`format_uuid`] writes.
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = text.bytes().filter(|b| *b != b'-').collect();
    let dashes_at = [8, 13, 18, 23];
    let shaped = text.len() == 36
        && dashes_at
            .iter()
            .all(|i| text.as_bytes().get(*i) == Some(&b'-'))
        && hex.len() == 32
        && hex.iter().all(u8::is_ascii_hexdigit);
    if !shaped {
        return None;
    }
    let mut uuid = [0u8; 16];
    for (byte, pair) in uuid.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(uuid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_round_trip_through_text() {
        let uuid = *b"\x01\x23\x45\x67\x89\xab\xcd\xef\x00\x11\x22\x33\x44\x55\x66\x77";
        let text = format_uuid(&uuid);
        assert_eq!(text, "01234567-89ab-cdef-0011-223344556677");
        assert_eq!(parse_uuid(&text), Some(uuid));
        assert_eq!(parse_uuid("01234567-89ab-cdef-0011-22334455667"), None);
        assert_eq!(parse_uuid("0123456789ab-cdef-0011-223344556677-"), None);
        assert_eq!(parse_uuid("zz234567-89ab-cdef-0011-223344556677"), None);
        assert_eq!(parse_uuid("+1234567-89ab-cdef-0011-223344556677"), None);
    }
}
