//! Offline repair: the object metadata is the truth; everything derived from it is rebuilt.
//!
//! The onodes and their extent maps say which space is in use, how much is stored, which
//! shared-blob units each clone references, and which ids are taken. From that, repair rebuilds
//! what is derived: the freelist (the complement of referenced space), the statistics, the
//! shared-blob reference counts, the id counters; and it removes what nothing owns (extent
//! shards and omap keys of no object, shared-blob records no blob references). It never
//! changes object data and never frees a unit an object references; a unit two unshared blobs
//! both reference stays in use, and both objects are named for the operator.
//!
//! An onode that does not decode is a *lost object*. Its space, shards and omap cannot be told
//! from leaks, so while one exists repair frees nothing and removes nothing it might own; with
//! `drop_lost` the lost onodes are removed and then their remains are cleaned up like any other
//! leak. Every change goes into one KV batch, written at once (a crash leaves the store as it
//! was, or repaired); `dry_run` applies the batch to an in-memory overlay instead and checks the
//! result there, so the report says what a real run would leave.

use std::collections::{BTreeMap, BTreeSet};

use bitvec::prelude::*;

use super::{FsckError, FsckReport, Inventory, fsck, metadata, read_max, unit_bytes};
use crate::device::BlockDevice;
use crate::device::label::read_label;
use crate::error::Result;
use crate::format::keys::{
    self, CID_MAX_KEY, KeySpace, NID_MAX_KEY, SBID_MAX_KEY, STATFS_KEY, freelist_key,
};
use crate::format::records::{StatfsRecord, Superblock, encode_counter};
use crate::format::shared::SharedBlobRecord;
use crate::journal;
use crate::kv::records::read_superblock;
use crate::kv::{Batch, Durability, Kv, OverlayKv};

/// What repair may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepairOptions {
    /// Work out and check the repairs in memory; change nothing.
    pub dry_run: bool,
    /// Remove objects whose onode does not decode (their data is lost either way), so that
    /// their space, shards and omap can be reclaimed.
    pub drop_lost: bool,
}

/// Built from the defaults, field by field (the struct may grow: no literals outside this
/// crate).
impl RepairOptions {
    /// Sets `dry_run`.
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Sets `drop_lost`.
    pub fn with_drop_lost(mut self, drop_lost: bool) -> Self {
        self.drop_lost = drop_lost;
        self
    }
}

/// One change repair made (or, in a dry run, would make).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// What was repaired (`"freelist"`, `"stats"`, `"shard.stray"`, ...).
    pub what: &'static str,
    /// What changed.
    pub detail: String,
}

/// What repair found, did, and left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// fsck before repair.
    pub before: FsckReport,
    /// The changes, in the order they were worked out.
    pub repairs: Vec<Repair>,
    /// fsck after repair (after the in-memory repair, in a dry run): what is left for the
    /// operator.
    pub after: FsckReport,
    /// Nothing was written.
    pub dry_run: bool,
    /// The statistics record as the store held it (after the journal's replay), before repair
    /// rewrote it; `None` if it was missing or did not decode.
    pub recorded_stats: Option<StatfsRecord>,
}

impl RepairReport {
    fn repair(&mut self, what: &'static str, detail: impl Into<String>) {
        self.repairs.push(Repair {
            what,
            detail: detail.into(),
        });
    }

    /// Findings repair does not fix (lost objects without `drop_lost`, bad data, two objects
    /// claiming one unit, a damaged journal, ...).
    pub fn left(&self) -> &[FsckError] {
        &self.after.errors
    }
}

/// Repairs the stopped store on `device` and `kv` (the device must be writable unless
/// `dry_run`: a commit journal is replayed first, as a mount would).
pub fn repair(
    device: &dyn BlockDevice,
    kv: &dyn Kv,
    options: RepairOptions,
) -> Result<RepairReport> {
    repair_with(device, kv, options, !options.dry_run)
}

/// [`repair`], writing the device only if `write_device` (a salvage into a copy of the KV
/// store leaves the device as it is: a dropped last journal record is then invalidated by the
/// first read-write mount instead, as after any crash).
pub(crate) fn repair_with(
    device: &dyn BlockDevice,
    kv: &dyn Kv,
    options: RepairOptions,
    write_device: bool,
) -> Result<RepairReport> {
    let mut report = RepairReport {
        before: fsck(device, kv)?,
        dry_run: options.dry_run,
        ..RepairReport::default()
    };
    let label = read_label(device)?;
    let superblock = read_superblock(kv, &label)?;
    let overlay = OverlayKv::over(kv);
    let target: &dyn Kv = if options.dry_run { &overlay } else { kv };
    let writes = (!options.dry_run, write_device && !options.dry_run);
    replay_journal(device, target, &superblock, &label.store_uuid, writes)?;
    report.recorded_stats = target
        .get(KeySpace::Stats, STATFS_KEY)?
        .and_then(|value| StatfsRecord::decode(&value).ok());

    let truth = Truth::gather(target, &superblock, device.info().size_bytes)?;
    let mut batch = Batch::new();
    let lost_kept = !truth.inventory.lost.is_empty() && !options.drop_lost;
    drop_lost(&truth, options, &mut batch, &mut report);
    let used = truth.used_units(&superblock);
    rebuild_freelist(
        target,
        &superblock,
        &used,
        lost_kept,
        &mut batch,
        &mut report,
    )?;
    let shared_units = recount_shared_blobs(target, &truth, lost_kept, &mut batch, &mut report)?;
    if !lost_kept {
        remove_strays(target, &truth, &mut batch, &mut report)?;
    }
    let unit = unit_bytes(&superblock);
    let allocated = truth.unshared_allocated + shared_units * unit;
    rewrite_stats(target, &truth, allocated, &mut batch, &mut report)?;
    raise_counters(target, &truth, &mut batch, &mut report)?;

    if !batch.is_empty() {
        target.write(batch, Durability::Sync)?;
    }
    report.after = fsck(device, target)?;
    Ok(report)
}

/// Replays a format-2 store's commit journal into `target`, as a mount would: a real run then
/// makes the records durable in the KV store (so no later mount applies them again), and
/// invalidates a dropped last record on the device; a dry run's target is an overlay.
fn replay_journal(
    device: &dyn BlockDevice,
    target: &dyn Kv,
    superblock: &Superblock,
    store_uuid: &[u8; 16],
    (write_kv, write_device): (bool, bool),
) -> Result<()> {
    let Some(region) = superblock.journal else {
        return Ok(());
    };
    let tail = journal::durable_position(target, region)?;
    let replay = journal::replay(device, target, region, store_uuid, tail, true)?;
    let unwanted = replay.dropped.into_iter().chain(replay.torn);
    for position in unwanted.filter(|_| write_device) {
        journal::invalidate(device, region, position)?;
    }
    if write_kv {
        journal::settle(target, &replay)?;
    }
    Ok(())
}

/// What the onodes say: the truth the rest is rebuilt from.
struct Truth {
    inventory: Inventory,
    /// Units referenced by unshared blobs, and the reserved start.
    unshared_used: BitVec<u64, Lsb0>,
    /// Bytes of those units.
    unshared_allocated: u64,
    collection_ids: BTreeSet<u64>,
    unit_bytes: u32,
}

impl Truth {
    fn gather(kv: &dyn Kv, superblock: &Superblock, device_end: u64) -> Result<Truth> {
        // The findings are in the report fsck made before; this pass only gathers.
        let mut scratch = FsckReport::default();
        let collections =
            metadata::check_collections(kv, &mut scratch, read_max(kv, CID_MAX_KEY)?)?;
        let nid_max = read_max(kv, NID_MAX_KEY)?;
        let inventory = metadata::check_onodes(
            kv,
            superblock,
            &collections,
            nid_max,
            device_end,
            &mut scratch,
        )?;
        Ok(Truth {
            unshared_used: inventory.used.clone(),
            unshared_allocated: inventory.stats.allocated_bytes,
            collection_ids: collections.keys().copied().collect(),
            unit_bytes: superblock.min_alloc_size,
            inventory,
        })
    }

    /// Units the objects use: what unshared blobs reference (and the reserved start), and the
    /// shared-blob units some blob instance references.
    fn used_units(&self, superblock: &Superblock) -> BitVec<u64, Lsb0> {
        let unit = unit_bytes(superblock);
        let mut used = self.unshared_used.clone();
        for ((_, offset), found) in &self.inventory.shared_refs {
            if *found > 0
                && let Some(mut bit) = used.get_mut((offset / unit) as usize)
            {
                *bit = true;
            }
        }
        used
    }
}

/// With `drop_lost`, removes every onode that does not decode.
fn drop_lost(truth: &Truth, options: RepairOptions, batch: &mut Batch, report: &mut RepairReport) {
    if !options.drop_lost {
        return;
    }
    for (key, shown) in &truth.inventory.lost {
        batch.delete(KeySpace::Onodes, key.clone());
        report.repair(
            "onode.lost",
            format!("{shown}: removed (it did not decode)"),
        );
    }
}

/// Rewrites every freelist region whose bits differ from the units in use.
fn rebuild_freelist(
    kv: &dyn Kv,
    superblock: &Superblock,
    used: &BitSlice<u64, Lsb0>,
    lost_kept: bool,
    batch: &mut Batch,
    report: &mut RepairReport,
) -> Result<()> {
    let per_key = superblock.freelist_blocks_per_key as usize;
    let unit = unit_bytes(superblock);
    let (mut freed, mut claimed, mut regions) = (0u64, 0u64, 0u64);
    for (region, wanted) in used.chunks(per_key).enumerate() {
        let key = freelist_key(region as u64);
        let stored = kv.get(KeySpace::Freelist, &key)?.unwrap_or_default();
        let mut bits = bitvec![u8, Lsb0; 0; per_key];
        for (index, bit) in wanted.iter().by_vals().enumerate() {
            let was = stored_bit(&stored, index);
            // While lost objects are kept, nothing the freelist calls allocated is freed.
            let now = bit || (lost_kept && was);
            bits.set(index, now);
            match (was, now) {
                (true, false) => freed += 1,
                (false, true) => claimed += 1,
                _ => {}
            }
        }
        let mut value = bits.into_vec();
        while value.last() == Some(&0) {
            value.pop();
        }
        if value != trimmed(&stored) {
            regions += 1;
            if value.is_empty() {
                batch.delete(KeySpace::Freelist, key.to_vec());
            } else {
                batch.put(KeySpace::Freelist, key.to_vec(), value);
            }
        }
    }
    if regions > 0 {
        report.repair(
            "freelist",
            format!(
                "{regions} regions rewritten: {} bytes freed that nothing references, {} bytes \
                 marked allocated that objects reference",
                freed * unit,
                claimed * unit
            ),
        );
    }
    Ok(())
}

fn stored_bit(value: &[u8], index: usize) -> bool {
    value
        .get(index / 8)
        .is_some_and(|byte| byte & (1 << (index % 8)) != 0)
}

fn trimmed(value: &[u8]) -> &[u8] {
    let end = value
        .iter()
        .rposition(|byte| *byte != 0)
        .map_or(0, |i| i + 1);
    &value[..end]
}

/// Sets every shared-blob record's counts to the blob instances found; removes records nothing
/// references. While lost objects are kept, counts are only raised (a lost clone may hold the
/// rest), and no record is removed or rebuilt. Returns the shared units still referenced
/// afterwards (what the statistics count as allocated, as fsck does).
fn recount_shared_blobs(
    kv: &dyn Kv,
    truth: &Truth,
    lost_kept: bool,
    batch: &mut Batch,
    report: &mut RepairReport,
) -> Result<u64> {
    let mut units_in_use = 0u64;
    let found = &truth.inventory.shared_refs;
    let mut recorded_sbids = BTreeSet::new();
    kv.scan(KeySpace::SharedBlobs, &[], None, &mut |key, value| {
        let Ok(sbid) = keys::decode_be64_key("shared blob", key) else {
            return Ok(true); // an undecodable key is left for the operator
        };
        recorded_sbids.insert(sbid);
        let Ok(mut record) = SharedBlobRecord::decode(value) else {
            return Ok(true); // so is an undecodable record
        };
        let unit = u64::from(record.unit_bytes());
        let mut changed = 0;
        for (index, recorded) in record.refs.iter_mut().enumerate() {
            let offset = record.device_offset + index as u64 * unit;
            let held = found.get(&(sbid, offset)).copied().unwrap_or(0);
            let wanted = if lost_kept { held.max(*recorded) } else { held };
            if wanted != *recorded {
                *recorded = wanted;
                changed += 1;
            }
            units_in_use += u64::from(wanted > 0);
        }
        if record.is_unreferenced() && !lost_kept {
            batch.delete(KeySpace::SharedBlobs, key.to_vec());
            report.repair(
                "shared.orphan",
                format!("shared blob {sbid}: removed (no blob references it)"),
            );
        } else if changed > 0 {
            batch.put(KeySpace::SharedBlobs, key.to_vec(), record.encode());
            report.repair(
                "shared.refs",
                format!("shared blob {sbid}: {changed} unit counts set to the references found"),
            );
        }
        Ok(true)
    })?;
    // Blobs naming a record that is gone get it back, counting what references them; not
    // while a lost clone may hold references nobody can count.
    if lost_kept {
        return Ok(units_in_use);
    }
    let unit = u64::from(truth.unit_bytes);
    for (sbid, (device_offset, length)) in &truth.inventory.shared_blobs {
        if recorded_sbids.contains(sbid) {
            continue;
        }
        let refs: Vec<u32> = (0..u64::from(*length) / unit)
            .map(|index| {
                let offset = device_offset + index * unit;
                found.get(&(*sbid, offset)).copied().unwrap_or(0)
            })
            .collect();
        units_in_use += refs.iter().filter(|count| **count > 0).count() as u64;
        let record = SharedBlobRecord {
            device_offset: *device_offset,
            length: *length,
            refs,
        };
        let key = keys::shared_blob_key(*sbid).to_vec();
        batch.put(KeySpace::SharedBlobs, key, record.encode());
        report.repair(
            "shared.missing",
            format!("shared blob {sbid}: record rebuilt from the blobs that reference it"),
        );
    }
    Ok(units_in_use)
}

/// Removes extent shards and omap keys no live object owns.
fn remove_strays(
    kv: &dyn Kv,
    truth: &Truth,
    batch: &mut Batch,
    report: &mut RepairReport,
) -> Result<()> {
    let nids = &truth.inventory.nids;
    let mut shards = 0u64;
    kv.scan(KeySpace::ExtentShards, &[], None, &mut |key, _| {
        let owned = keys::split_shard_key(key).is_ok_and(|(nid, offset)| {
            nids.get(&nid)
                .is_some_and(|listed| listed.contains(&offset))
        });
        if !owned {
            batch.delete(KeySpace::ExtentShards, key.to_vec());
            shards += 1;
        }
        Ok(true)
    })?;
    let mut omap = BTreeMap::<u64, u64>::new();
    kv.scan(KeySpace::Omap, &[], None, &mut |key, _| {
        match keys::split_omap_key(key) {
            Ok((nid, _, _)) if nids.contains_key(&nid) => {}
            Ok((nid, _, _)) => {
                batch.delete(KeySpace::Omap, key.to_vec());
                *omap.entry(nid).or_default() += 1;
            }
            Err(_) => {
                batch.delete(KeySpace::Omap, key.to_vec());
                *omap.entry(u64::MAX).or_default() += 1;
            }
        }
        Ok(true)
    })?;
    if shards > 0 {
        report.repair(
            "shard.stray",
            format!("{shards} extent shards of no object removed"),
        );
    }
    for (nid, count) in omap {
        let owner = if nid == u64::MAX {
            "undecodable keys".to_string()
        } else {
            format!("nid {nid}")
        };
        report.repair(
            "omap.orphan",
            format!("{count} omap keys of {owner} (no object) removed"),
        );
    }
    Ok(())
}

/// Writes the statistics record the objects add up to, if it differs.
fn rewrite_stats(
    kv: &dyn Kv,
    truth: &Truth,
    allocated_bytes: u64,
    batch: &mut Batch,
    report: &mut RepairReport,
) -> Result<()> {
    let mut stats = truth.inventory.stats;
    stats.allocated_bytes = allocated_bytes;
    let recorded = kv.get(KeySpace::Stats, STATFS_KEY)?;
    let current = recorded.as_deref().map(StatfsRecord::decode);
    if !matches!(current, Some(Ok(ref record)) if *record == stats) {
        report.repair(
            "stats",
            format!("statistics set to what the objects add up to: {stats:?}"),
        );
        batch.put(KeySpace::Stats, STATFS_KEY.to_vec(), stats.encode());
    }
    Ok(())
}

/// Raises the id counters above every id in use (never lowers them: an id is never reused).
fn raise_counters(
    kv: &dyn Kv,
    truth: &Truth,
    batch: &mut Batch,
    report: &mut RepairReport,
) -> Result<()> {
    let mut sbids: BTreeSet<u64> = truth
        .inventory
        .shared_refs
        .keys()
        .map(|(sbid, _)| *sbid)
        .collect();
    kv.scan(KeySpace::SharedBlobs, &[], None, &mut |key, _| {
        if let Ok(sbid) = keys::decode_be64_key("shared blob", key) {
            sbids.insert(sbid);
        }
        Ok(true)
    })?;
    // Shards and omap keys left by objects that are gone (or lost) carry nids too: a new object
    // must not take one and inherit what is left under it.
    let mut highest_nid = truth.inventory.nids.keys().max().copied();
    kv.scan(KeySpace::ExtentShards, &[], None, &mut |key, _| {
        if let Ok((nid, _)) = keys::split_shard_key(key) {
            highest_nid = highest_nid.max(Some(nid));
        }
        Ok(true)
    })?;
    kv.scan(KeySpace::Omap, &[], None, &mut |key, _| {
        if let Ok((nid, _, _)) = keys::split_omap_key(key) {
            highest_nid = highest_nid.max(Some(nid));
        }
        Ok(true)
    })?;
    let in_use = [
        (NID_MAX_KEY, "nid_max", highest_nid),
        (
            CID_MAX_KEY,
            "cid_max",
            truth.collection_ids.iter().max().copied(),
        ),
        (SBID_MAX_KEY, "sbid_max", sbids.iter().max().copied()),
    ];
    for (key, name, highest) in in_use {
        let recorded = read_max(kv, key)?;
        let wanted = recorded.unwrap_or(0).max(highest.unwrap_or(0));
        if recorded != Some(wanted) {
            batch.put(KeySpace::Super, key.to_vec(), encode_counter(wanted));
            report.repair(
                "counter",
                format!("{name} set to {wanted} (was {recorded:?})"),
            );
        }
    }
    Ok(())
}
