//! fsck checks of space: each allocation unit is referenced at most once, and the freelist is
//! exactly the complement of the referenced units plus the reserved start.

use std::collections::BTreeSet;

use bitvec::prelude::*;

use super::{FsckReport, unit_bytes};
use crate::alloc::{DeviceExtent, FreelistGeometry, load_freelist};
use crate::error::Result;
use crate::format::records::Superblock;
use crate::kv::Kv;

/// Most individual ranges listed per kind of space error; the rest are counted.
const RANGES_REPORTED_MAX: usize = 32;

/// Marks the never-allocated start of the device (label, journal) as used.
pub fn mark_reserved(used: &mut BitSlice<u64, Lsb0>, unit: u64, reserved_end: u64) {
    let units = (reserved_end.div_ceil(unit) as usize).min(used.len());
    used[..units].fill(true);
}

/// Marks one referenced allocation unit; a unit already marked is referenced twice (its
/// offset goes into `twice`, so that every owner can be named afterwards).
pub fn mark_referenced(
    used: &mut BitSlice<u64, Lsb0>,
    twice: &mut BTreeSet<u64>,
    extent: DeviceExtent,
    owner: &str,
    report: &mut FsckReport,
) {
    let unit = extent.length;
    let index = (extent.offset / unit) as usize;
    match used.get_mut(index) {
        None => report.error(
            "space.past_device",
            format!(
                "{owner} references {:#x}+{:#x} past the device end",
                extent.offset, extent.length
            ),
        ),
        Some(bit) if *bit => {
            report.error(
                "space.referenced_twice",
                format!(
                    "{owner} references {:#x}+{:#x}, which another blob references too",
                    extent.offset, extent.length
                ),
            );
            twice.insert(extent.offset);
        }
        Some(mut bit) => {
            *bit = true;
            report.referenced_bytes += extent.length;
        }
    }
}

/// Compares the referenced units with the freelist: a unit must be exactly one of free or used.
pub fn check_space(
    kv: &dyn Kv,
    superblock: &Superblock,
    used: &BitSlice<u64, Lsb0>,
    report: &mut FsckReport,
) -> Result<()> {
    let unit = unit_bytes(superblock);
    let geometry = FreelistGeometry {
        unit_bytes: unit,
        blocks_per_key: u64::from(superblock.freelist_blocks_per_key),
        device_size: superblock.device_size,
    };
    let allocator = match load_freelist(kv, &geometry) {
        Ok(allocator) => allocator,
        Err(error) => {
            report.error("freelist.decode", error.to_string());
            return Ok(());
        }
    };
    report.free_bytes = allocator.free_bytes();
    let mut free = bitvec![u64, Lsb0; 0; used.len()];
    for extent in allocator.free_extents() {
        free[(extent.offset / unit) as usize..(extent.end() / unit) as usize].fill(true);
    }
    let leaked = runs(used.len(), |i| !free[i] && !used[i]);
    let false_free = runs(used.len(), |i| free[i] && used[i]);
    report_runs(
        report,
        "space.leaked",
        "allocated in the freelist but referenced by nothing",
        &leaked,
        unit,
    );
    report_runs(
        report,
        "space.false_free",
        "free in the freelist but referenced",
        &false_free,
        unit,
    );
    Ok(())
}

/// Runs of consecutive indices in `0..length` where `predicate` holds.
fn runs(length: usize, predicate: impl Fn(usize) -> bool) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut start = None;
    for index in 0..length {
        match (predicate(index), start) {
            (true, None) => start = Some(index),
            (false, Some(first)) => {
                found.push((first, index));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(first) = start {
        found.push((first, length));
    }
    found
}

fn report_runs(
    report: &mut FsckReport,
    check: &'static str,
    what: &str,
    runs: &[(usize, usize)],
    unit: u64,
) {
    for (start, end) in runs.iter().take(RANGES_REPORTED_MAX) {
        let offset = *start as u64 * unit;
        let length = (end - start) as u64 * unit;
        report.error(check, format!("{offset:#x}+{length:#x} is {what}"));
    }
    if runs.len() > RANGES_REPORTED_MAX {
        report.error(
            check,
            format!("... and {} more ranges", runs.len() - RANGES_REPORTED_MAX),
        );
    }
}
