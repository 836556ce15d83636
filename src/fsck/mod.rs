//! fsck: checks a store's metadata invariants (FORMAT.md §8) without mounting it.
//!
//! fsck reads through the lower layers only (device label, KV records, the freelist), so it can
//! examine a store that will not mount. Each invariant has its own function; a violation becomes
//! an entry in the [`FsckReport`], never a panic or an early return, so one run reports every
//! problem it can see. Only failing to read at all (an I/O error) is an `Err`.
//!
//! Shallow checks: the label and superblock agree; every collection, onode and extent shard
//! decodes; ids are unique and below their counters; no shard or omap key lacks its object;
//! every allocation unit is referenced exactly once or is free, and the freelist is exactly the
//! complement of referenced space plus the reserved start; the statistics record equals the sums
//! over all objects. A format-2 store's commit journal is replayed into an in-memory overlay
//! first, as a mount would, so the checks see every acknowledged commit; a damaged journal is
//! reported and ends the run.
//!
//! Deep fsck ([`FsckOptions::deep`]) then reads every byte the objects reference and verifies
//! every checksum chunk (`deep.rs`).

mod deep;
mod metadata;
mod repair;
mod space;

use std::collections::{BTreeMap, BTreeSet};

use bitvec::prelude::*;

use crate::device::BlockDevice;
use crate::device::label::read_label;
use crate::error::{Error, Result};
use crate::format::keys::{CID_MAX_KEY, KeySpace, NID_MAX_KEY, SBID_MAX_KEY, STATFS_KEY};
use crate::format::records::{StatfsRecord, Superblock, decode_counter};
use crate::journal::{self, JournalSummary};
use crate::kv::records::read_superblock;
use crate::kv::{Kv, OverlayKv};

pub(crate) use deep::PendingWrites;
pub use deep::{BadChunk, ChunkProblem, DeepReport};
#[cfg(feature = "rocksdb")]
pub(crate) use repair::repair_with;
pub use repair::{Repair, RepairOptions, RepairReport, repair};

/// One violated invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FsckError {
    /// Which check found it (e.g. `"space.leaked"`).
    pub check: &'static str,
    /// What and where.
    pub detail: String,
}

/// What fsck found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Every violation found.
    pub errors: Vec<FsckError>,
    /// Collections seen.
    pub collections: u64,
    /// Objects seen.
    pub objects: u64,
    /// Extent shards seen.
    pub extent_shards: u64,
    /// Omap keys (headers and values) seen.
    pub omap_keys: u64,
    /// Device bytes referenced by objects.
    pub referenced_bytes: u64,
    /// Device bytes the freelist calls free.
    pub free_bytes: u64,
    /// Deferred-write records still waiting to be applied.
    pub deferred_records: u64,
    /// Bytes those records carry.
    pub deferred_bytes: u64,
    /// The commit journal (format-2 stores): the records fsck replayed in memory before its
    /// checks, as a mount would.
    pub journal: Option<JournalSummary>,
    /// The data pass of a deep fsck (`None` for a shallow one, or when the metadata could not
    /// be read far enough to locate the data).
    pub deep: Option<DeepReport>,
}

/// How thoroughly to check, and whom to tell how far it got: built from the defaults (a
/// metadata check, no progress) with `with_*` methods.
#[derive(Default)]
#[non_exhaustive]
pub struct FsckOptions<'a> {
    /// Also read every referenced byte and verify every checksum chunk.
    pub deep: bool,
    /// Called after each batch of the data pass.
    pub progress: Option<&'a mut dyn FnMut(FsckProgress)>,
}

impl<'a> FsckOptions<'a> {
    /// Sets `deep`.
    pub fn with_deep(mut self, deep: bool) -> Self {
        self.deep = deep;
        self
    }

    /// Sets the `progress` callback.
    pub fn with_progress(mut self, progress: &'a mut dyn FnMut(FsckProgress)) -> Self {
        self.progress = Some(progress);
        self
    }
}

/// How far the data pass of a deep fsck has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FsckProgress {
    /// Bytes read and verified so far.
    pub bytes_read: u64,
    /// Bytes the objects reference (what a deep fsck reads, less what clones share).
    pub bytes_total: u64,
}

impl FsckReport {
    /// True when no invariant is violated.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }

    fn error(&mut self, check: &'static str, detail: impl Into<String>) {
        self.errors.push(FsckError {
            check,
            detail: detail.into(),
        });
    }
}

/// What the object scan gathers for the later checks.
#[derive(Debug, Default)]
struct Inventory {
    /// Live object ids with their expected shard offsets.
    nids: BTreeMap<u64, BTreeSet<u64>>,
    stats: StatfsRecord,
    /// One bit per allocation unit: referenced by an object, or reserved.
    used: BitVec<u64, Lsb0>,
    /// Blob instances referencing each (shared blob, unit offset).
    shared_refs: BTreeMap<(u64, u64), u32>,
    /// Units found referenced by two blobs that do not share them.
    referenced_twice: BTreeSet<u64>,
    /// Where each shared blob the objects reference lies: (device offset, length).
    shared_blobs: BTreeMap<u64, (u64, u32)>,
    /// Onode keys whose object could not be decoded (with how fsck names it).
    lost: Vec<(Vec<u8>, String)>,
}

/// Checks the store on `device` and `kv` (shallow: metadata only).
pub fn fsck(device: &dyn BlockDevice, kv: &dyn Kv) -> Result<FsckReport> {
    fsck_with(device, kv, FsckOptions::default())
}

/// Checks the store on `device` and `kv` as `options` say.
pub fn fsck_with(
    device: &dyn BlockDevice,
    kv: &dyn Kv,
    mut options: FsckOptions<'_>,
) -> Result<FsckReport> {
    let mut report = FsckReport::default();
    let label = match read_label(device) {
        Ok(label) => label,
        Err(error) => {
            report.error("label", error.to_string());
            return Ok(report);
        }
    };
    let superblock = match read_superblock(kv, &label) {
        Ok(superblock) => superblock,
        Err(error) => {
            report.error("superblock", error.to_string());
            return Ok(report);
        }
    };
    let overlay = OverlayKv::over(kv);
    if let Some(region) = superblock.journal {
        let replayed = journal::durable_position(kv, region).and_then(|tail| {
            let replay = journal::replay(device, &overlay, region, &label.store_uuid, tail, true)?;
            Ok(JournalSummary {
                region,
                tail,
                replay,
            })
        });
        match replayed {
            Ok(summary) => report.journal = Some(summary),
            Err(error @ Error::Corruption(_)) => {
                report.error("journal", error.to_string());
                return Ok(report);
            }
            Err(other) => return Err(other),
        }
    }
    let device_end = device.info().size_bytes;
    if device_end < superblock.device_size {
        report.error(
            "device.truncated",
            format!(
                "the device has {device_end} bytes but the store uses {} (a truncated block file, \
                 or another device behind the link)",
                superblock.device_size
            ),
        );
    }
    let kv: &dyn Kv = &overlay;
    let collections = metadata::check_collections(kv, &mut report, read_max(kv, CID_MAX_KEY)?)?;
    if !options.deep {
        check_metadata(kv, &superblock, &collections, device_end, &mut report)?;
        return Ok(report);
    }
    // The data pass waits on the device, the metadata checks on the CPU: run them side by side.
    let mut quiet = |_: FsckProgress| {};
    let progress = options.progress.take().unwrap_or(&mut quiet);
    let total = recorded_allocation(kv);
    let (metadata, data) = std::thread::scope(|scope| {
        let metadata = scope.spawn(|| {
            check_metadata(kv, &superblock, &collections, device_end, &mut report).map(|()| report)
        });
        let data = deep::check_data(device, kv, &superblock, &collections, total, progress);
        (metadata.join(), data)
    });
    // A panic there is a bug; pass it on as if the checks had run on this thread.
    let mut report = metadata.unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
    let data = data?;
    deep::report_bad_chunks(&data, &mut report);
    report.deep = Some(data);
    Ok(report)
}

/// Every shallow check after the collections'.
fn check_metadata(
    kv: &dyn Kv,
    superblock: &Superblock,
    collections: &BTreeMap<u64, Vec<u8>>,
    device_end: u64,
    report: &mut FsckReport,
) -> Result<()> {
    let nid_max = read_max(kv, NID_MAX_KEY)?;
    let mut inventory =
        metadata::check_onodes(kv, superblock, collections, nid_max, device_end, report)?;
    let sbid_max = read_max(kv, SBID_MAX_KEY)?;
    metadata::check_shared_blobs(kv, superblock, sbid_max, &mut inventory, report)?;
    if !inventory.referenced_twice.is_empty() {
        let twice = &inventory.referenced_twice;
        metadata::name_owners(kv, superblock, collections, twice, report)?;
    }
    metadata::check_shard_keys(kv, &inventory, report)?;
    metadata::check_omap_keys(kv, &inventory, report)?;
    (report.deferred_records, report.deferred_bytes) =
        metadata::check_deferred(kv, superblock, report)?;
    space::check_space(kv, superblock, &inventory.used, report)?;
    check_stats(kv, &inventory, report)
}

/// Bytes allocated to objects as the statistics record says (0 if it cannot be read): what a
/// deep fsck expects to read, for its progress.
fn recorded_allocation(kv: &dyn Kv) -> u64 {
    kv.get(KeySpace::Stats, STATFS_KEY)
        .ok()
        .flatten()
        .and_then(|value| StatfsRecord::decode(&value).ok())
        .map_or(0, |record| record.allocated_bytes)
}

/// The statistics record equals the sums over every object.
fn check_stats(kv: &dyn Kv, inventory: &Inventory, report: &mut FsckReport) -> Result<()> {
    let recorded = match kv.get(KeySpace::Stats, STATFS_KEY)? {
        Some(value) => match StatfsRecord::decode(&value) {
            Ok(record) => record,
            Err(error) => {
                report.error("stats.decode", error.to_string());
                return Ok(());
            }
        },
        None => {
            report.error("stats.missing", "no statfs record");
            return Ok(());
        }
    };
    if recorded != inventory.stats {
        report.error(
            "stats.mismatch",
            format!(
                "statfs record {recorded:?} but the objects sum to {:?}",
                inventory.stats
            ),
        );
    }
    Ok(())
}

fn read_max(kv: &dyn Kv, key: &[u8]) -> Result<Option<u64>> {
    Ok(kv
        .get(KeySpace::Super, key)?
        .and_then(|value| decode_counter(&value).ok()))
}

/// How fsck, deep fsck, scrub and salvage name an object: `collection/object`, escaped (the
/// collection's id when no collection has it).
fn object_name(collections: &BTreeMap<u64, Vec<u8>>, collection_id: u64, name: &[u8]) -> String {
    let collection = collections.get(&collection_id).map_or_else(
        || collection_id.to_string(),
        |collection| collection.escape_ascii().to_string(),
    );
    format!("{collection}/{}", name.escape_ascii())
}

/// The allocation unit of a superblock, in bytes.
fn unit_bytes(superblock: &Superblock) -> u64 {
    u64::from(superblock.min_alloc_size)
}
