//! fsck checks of the key spaces: collections, onodes (with their extent maps), extent-shard
//! keys and omap keys.

use std::collections::{BTreeMap, BTreeSet};

use bitvec::prelude::*;

use super::{FsckReport, Inventory, object_name, space, unit_bytes};
use crate::alloc::DeviceExtent;
use crate::error::Result;
use crate::format::deferred::DeferredRecord;
use crate::format::keys::{self, KeySpace, OMAP_TAG_HEADER, OMAP_TAG_VALUE};
use crate::format::records::{CollectionRecord, Superblock};
use crate::format::shared::SharedBlobRecord;
use crate::format::{COLLECTION_NAME_LENGTH_MAX, OBJECT_NAME_LENGTH_MAX};
use crate::kv::Kv;
use crate::onode::Onode;

/// Every collection record decodes, ids are unique and at most the counter. Returns id -> name.
pub fn check_collections(
    kv: &dyn Kv,
    report: &mut FsckReport,
    cid_max: Option<u64>,
) -> Result<BTreeMap<u64, Vec<u8>>> {
    let mut collections = BTreeMap::new();
    kv.scan(KeySpace::Collections, &[], None, &mut |name, value| {
        report.collections += 1;
        let shown = name.escape_ascii().to_string();
        if name.is_empty() || name.len() > COLLECTION_NAME_LENGTH_MAX {
            report.error(
                "collection.name",
                format!("collection name of {} bytes", name.len()),
            );
        }
        match CollectionRecord::decode(value) {
            Err(error) => report.error("collection.decode", format!("{shown}: {error}")),
            Ok(record) => {
                if cid_max.is_some_and(|max| record.collection_id > max) {
                    report.error(
                        "collection.id_above_max",
                        format!("{shown}: id {}", record.collection_id),
                    );
                }
                if let Some(other) = collections.insert(record.collection_id, name.to_vec()) {
                    report.error(
                        "collection.id_duplicate",
                        format!(
                            "{shown} and {} share id {}",
                            other.escape_ascii(),
                            record.collection_id
                        ),
                    );
                }
            }
        }
        Ok(true)
    })?;
    if cid_max.is_none() {
        report.error(
            "counter.cid_max",
            "collection id counter missing or undecodable",
        );
    }
    Ok(collections)
}

/// Every onode belongs to a collection, decodes with its shards, has a unique id at most the
/// counter, and references only space the device has (`device_end` bytes); marks the space it
/// references. Returns what later checks need.
pub fn check_onodes(
    kv: &dyn Kv,
    superblock: &Superblock,
    collections: &BTreeMap<u64, Vec<u8>>,
    nid_max: Option<u64>,
    device_end: u64,
    report: &mut FsckReport,
) -> Result<Inventory> {
    let unit = unit_bytes(superblock);
    let mut used = bitvec![u64, Lsb0; 0; (superblock.device_size / unit) as usize];
    space::mark_reserved(&mut used, unit, superblock.reserved_end());
    let mut inventory = Inventory::default();
    kv.scan(KeySpace::Onodes, &[], None, &mut |key, value| {
        report.objects += 1;
        let Ok((collection_id, name)) = keys::split_onode_key(key) else {
            let shown = format!("onode key of {} bytes", key.len());
            report.error("onode.key", shown.clone());
            inventory.lost.push((key.to_vec(), shown));
            return Ok(true);
        };
        let shown = format!("object {}", object_name(collections, collection_id, name));
        if !collections.contains_key(&collection_id) {
            report.error(
                "onode.stray",
                format!("{shown}: no collection has id {collection_id}"),
            );
        }
        if name.is_empty() || name.len() > OBJECT_NAME_LENGTH_MAX {
            report.error(
                "onode.name",
                format!("{shown}: name of {} bytes", name.len()),
            );
        }
        match Onode::decode(kv, value, superblock.min_alloc_size) {
            Err(error) => {
                report.error("onode.decode", format!("{shown}: {error}"));
                inventory.lost.push((key.to_vec(), shown));
            }
            Ok(onode) => {
                check_onode(&onode, &shown, nid_max, &mut used, &mut inventory, report);
                check_within_device(&onode, &shown, device_end, report);
            }
        }
        Ok(true)
    })?;
    if nid_max.is_none() {
        report.error(
            "counter.nid_max",
            "object id counter missing or undecodable",
        );
    }
    inventory.used = used;
    Ok(inventory)
}

fn check_onode(
    onode: &Onode,
    shown: &str,
    nid_max: Option<u64>,
    used: &mut BitVec<u64, Lsb0>,
    inventory: &mut Inventory,
    report: &mut FsckReport,
) {
    if nid_max.is_some_and(|max| onode.nid > max) {
        report.error("onode.nid_above_max", format!("{shown}: nid {}", onode.nid));
    }
    let shard_offsets: BTreeSet<u64> = onode
        .shards
        .iter()
        .flatten()
        .map(|s| s.logical_offset)
        .collect();
    report.extent_shards += shard_offsets.len() as u64;
    if inventory.nids.insert(onode.nid, shard_offsets).is_some() {
        report.error(
            "onode.nid_duplicate",
            format!("{shown}: nid {} used twice", onode.nid),
        );
    }
    for (_, blob) in onode.extent_map.blobs() {
        if let Some(sbid) = blob.shared_blob_id {
            inventory
                .shared_blobs
                .insert(sbid, (blob.device_offset, blob.length));
        }
    }
    for (id, extent) in onode.extent_map.referenced_units() {
        match onode.extent_map.blob(id).shared_blob_id {
            // Counted here, checked against the record (and marked once) later.
            Some(sbid) => {
                *inventory
                    .shared_refs
                    .entry((sbid, extent.offset))
                    .or_default() += 1
            }
            None => {
                let twice = &mut inventory.referenced_twice;
                space::mark_referenced(used, twice, extent, shown, report);
                inventory.stats.allocated_bytes += extent.length;
            }
        }
    }
    inventory.stats.stored_bytes += onode.extent_map.stored_bytes();
    inventory.stats.object_count += 1;
}

/// An object whose data lies past the end of the device (a truncated block file, or the wrong
/// device behind the link) has lost it: named, with how much.
fn check_within_device(onode: &Onode, shown: &str, device_end: u64, report: &mut FsckReport) {
    let beyond: u64 = onode
        .extent_map
        .referenced_units()
        .map(|(_, extent)| extent.end().saturating_sub(extent.offset.max(device_end)))
        .sum();
    if beyond > 0 {
        report.error(
            "onode.beyond_device",
            format!(
                "{shown}: {beyond} bytes of its space lie past the end of the device ({device_end} bytes)"
            ),
        );
    }
}

/// Names every object (and shared blob) referencing each unit referenced twice: which one holds
/// the right bytes is the operator's call, and fsck must say whom to ask about.
pub fn name_owners(
    kv: &dyn Kv,
    superblock: &Superblock,
    collections: &BTreeMap<u64, Vec<u8>>,
    units: &BTreeSet<u64>,
    report: &mut FsckReport,
) -> Result<()> {
    let mut owners: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    kv.scan(KeySpace::Onodes, &[], None, &mut |key, value| {
        let (Ok((collection_id, name)), Ok(onode)) = (
            keys::split_onode_key(key),
            Onode::decode(kv, value, superblock.min_alloc_size),
        ) else {
            return Ok(true);
        };
        for (id, extent) in onode.extent_map.referenced_units() {
            if units.contains(&extent.offset) {
                let via = match onode.extent_map.blob(id).shared_blob_id {
                    Some(sbid) => format!(" (shared blob {sbid})"),
                    None => String::new(),
                };
                owners.entry(extent.offset).or_default().push(format!(
                    "{}{via}",
                    object_name(collections, collection_id, name)
                ));
            }
        }
        Ok(true)
    })?;
    for (offset, names) in owners {
        report.error(
            "space.owners",
            format!("unit at {offset:#x} is referenced by {}", names.join(", ")),
        );
    }
    Ok(())
}

/// Every extent-shard key belongs to a live object and is one of its listed shards.
pub fn check_shard_keys(kv: &dyn Kv, inventory: &Inventory, report: &mut FsckReport) -> Result<()> {
    kv.scan(KeySpace::ExtentShards, &[], None, &mut |key, _| {
        match keys::split_shard_key(key) {
            Err(error) => report.error("shard.key", error.to_string()),
            Ok((nid, offset)) => {
                let listed = inventory
                    .nids
                    .get(&nid)
                    .is_some_and(|offsets| offsets.contains(&offset));
                if !listed {
                    report.error(
                        "shard.stray",
                        format!("shard {offset:#x} of nid {nid} has no onode listing it"),
                    );
                }
            }
        }
        Ok(true)
    })
}

/// Every omap key belongs to a live object and has a known tag.
pub fn check_omap_keys(kv: &dyn Kv, inventory: &Inventory, report: &mut FsckReport) -> Result<()> {
    kv.scan(KeySpace::Omap, &[], None, &mut |key, _| {
        report.omap_keys += 1;
        match keys::split_omap_key(key) {
            Err(error) => report.error("omap.key", error.to_string()),
            Ok((nid, tag, _)) => {
                if !inventory.nids.contains_key(&nid) {
                    report.error(
                        "omap.orphan",
                        format!("omap key of nid {nid}, which no onode has"),
                    );
                }
                if tag != OMAP_TAG_HEADER && tag != OMAP_TAG_VALUE {
                    report.error("omap.tag", format!("omap key of nid {nid} has tag {tag}"));
                }
            }
        }
        Ok(true)
    })
}

/// Every shared-blob record decodes and counts exactly the blob instances that reference each
/// of its units (fewer found: leaked references; more: over-referenced units); every shared
/// unit in use is marked once and counted as allocated; no blob names a missing record; no
/// shared-blob id is above the counter (the next clone would reuse it).
pub fn check_shared_blobs(
    kv: &dyn Kv,
    superblock: &Superblock,
    sbid_max: Option<u64>,
    inventory: &mut Inventory,
    report: &mut FsckReport,
) -> Result<()> {
    let unit = unit_bytes(superblock);
    match sbid_max {
        None => report.error(
            "counter.sbid_max",
            "shared-blob id counter missing or undecodable",
        ),
        Some(max) => {
            let above: Vec<u64> = kv
                .scan_collect(KeySpace::SharedBlobs, &[], None, usize::MAX)?
                .iter()
                .filter_map(|(key, _)| keys::decode_be64_key("shared blob", key).ok())
                .chain(inventory.shared_blobs.keys().copied())
                .filter(|sbid| *sbid > max)
                .collect::<BTreeSet<u64>>()
                .into_iter()
                .collect();
            if !above.is_empty() {
                report.error(
                    "shared.id_above_max",
                    format!("shared blob ids {above:?} above the counter {max}"),
                );
            }
        }
    }
    kv.scan(KeySpace::SharedBlobs, &[], None, &mut |key, value| {
        let sbid = match keys::decode_be64_key("shared blob", key) {
            Ok(sbid) => sbid,
            Err(error) => {
                report.error("shared.key", error.to_string());
                return Ok(true);
            }
        };
        let record = match SharedBlobRecord::decode(value) {
            Ok(record) if u64::from(record.unit_bytes()) == unit => record,
            Ok(_) => {
                report.error(
                    "shared.decode",
                    format!("shared blob {sbid}: wrong unit size"),
                );
                return Ok(true);
            }
            Err(error) => {
                report.error("shared.decode", format!("shared blob {sbid}: {error}"));
                return Ok(true);
            }
        };
        if record.is_unreferenced() {
            report.error(
                "shared.orphan",
                format!("shared blob {sbid} counts no reference"),
            );
        }
        let shown = format!("shared blob {sbid}");
        for (index, recorded) in record.refs.iter().enumerate() {
            let offset = record.device_offset + index as u64 * unit;
            let found = inventory.shared_refs.remove(&(sbid, offset)).unwrap_or(0);
            if found != *recorded {
                let what = if found < *recorded {
                    "leaked"
                } else {
                    "over-referenced"
                };
                report.error(
                    "shared.refs",
                    format!(
                        "{shown}: unit at {offset:#x} is {what}: the record counts {recorded} \
                         references, objects hold {found}"
                    ),
                );
            }
            if *recorded > 0 || found > 0 {
                let extent = DeviceExtent::new(offset, unit);
                let twice = &mut inventory.referenced_twice;
                space::mark_referenced(&mut inventory.used, twice, extent, &shown, report);
                inventory.stats.allocated_bytes += unit;
            }
        }
        Ok(true)
    })?;
    for ((sbid, offset), found) in std::mem::take(&mut inventory.shared_refs) {
        report.error(
            "shared.missing",
            format!("{found} blob instances reference {offset:#x} of shared blob {sbid}, which has no record of it"),
        );
    }
    Ok(())
}

/// Deferred-write records present (waiting to be applied, by the next mount if the store is
/// not mounted): each must decode and write only inside the allocatable part of the device.
/// Returns (records, bytes).
pub fn check_deferred(
    kv: &dyn Kv,
    superblock: &Superblock,
    report: &mut FsckReport,
) -> Result<(u64, u64)> {
    let (mut count, mut bytes) = (0, 0);
    let first = superblock.reserved_end();
    kv.scan(KeySpace::Deferred, &[], None, &mut |key, value| {
        count += 1;
        let record = match DeferredRecord::decode(value) {
            Ok(record) => record,
            Err(error) => {
                report.error("deferred.decode", format!("key {key:02x?}: {error}"));
                return Ok(true);
            }
        };
        bytes += record.data_bytes();
        for write in &record.writes {
            let end = write.device_offset.saturating_add(write.data.len() as u64);
            if write.device_offset < first || end > superblock.device_size {
                report.error(
                    "deferred.range",
                    format!(
                        "key {key:02x?} writes [{:#x}, {end:#x}) outside the allocatable space",
                        write.device_offset
                    ),
                );
            }
        }
        Ok(true)
    })?;
    Ok((count, bytes))
}
