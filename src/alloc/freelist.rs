//! The persistent freelist: allocation bitmaps in the freelist key space (FORMAT.md §7).
//!
//! Region `r` covers units `[r*blocks_per_key, (r+1)*blocks_per_key)`; its value has bit `i` set
//! when unit `r*blocks_per_key + i` is allocated. A transaction's allocations and releases are
//! accumulated in a [`FreelistDelta`] and written as one XOR operand per region it touched, in
//! the same batch as the metadata. Mount reads every region once ([`load_freelist`]): with the
//! default 4096 units per key, a 1 TiB device of 4 KiB units is 65,536 keys.

use std::collections::BTreeMap;

use super::{BitmapAllocator, DeviceExtent};
use crate::error::{Error, Result};
use crate::format::freelist::{check_value, encode_operand};
use crate::format::keys::{decode_be64_key, freelist_key};
use crate::kv::{Batch, KeySpace, Kv};

/// Shape of the freelist: unit size, units per key, device size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreelistGeometry {
    /// Bytes per unit (the allocation unit).
    pub unit_bytes: u64,
    /// Units per key (a multiple of 8).
    pub blocks_per_key: u64,
    /// Bytes of device covered.
    pub device_size: u64,
}

impl FreelistGeometry {
    fn units(&self) -> u64 {
        self.device_size / self.unit_bytes
    }
}

/// Bit flips to apply to the freelist: allocations and releases alike (XOR).
#[derive(Debug, Clone, Default)]
pub struct FreelistDelta {
    /// Region index -> bitmap of flipped units (full region width).
    regions: BTreeMap<u64, Vec<u8>>,
}

impl FreelistDelta {
    /// An empty delta.
    pub fn new() -> Self {
        FreelistDelta::default()
    }

    /// Flips every unit of `extent` (allocated -> free or free -> allocated).
    pub fn flip(&mut self, geometry: &FreelistGeometry, extent: DeviceExtent) {
        let mut unit = extent.offset / geometry.unit_bytes;
        let end = extent.end() / geometry.unit_bytes;
        let region_bytes = (geometry.blocks_per_key / 8) as usize;
        while unit < end {
            let region = unit / geometry.blocks_per_key;
            let bitmap = self
                .regions
                .entry(region)
                .or_insert_with(|| vec![0u8; region_bytes]);
            let region_end = ((region + 1) * geometry.blocks_per_key).min(end);
            for bit in unit - region * geometry.blocks_per_key
                ..region_end - region * geometry.blocks_per_key
            {
                bitmap[(bit / 8) as usize] ^= 1 << (bit % 8);
            }
            unit = region_end;
        }
    }

    /// True when nothing is flipped.
    pub fn is_empty(&self) -> bool {
        self.regions
            .values()
            .all(|bits| bits.iter().all(|b| *b == 0))
    }

    /// Moves every flip of `other` into this delta.
    pub fn absorb(&mut self, other: FreelistDelta) {
        for (region, bits) in other.regions {
            match self.regions.get_mut(&region) {
                Some(mine) => mine.iter_mut().zip(&bits).for_each(|(a, b)| *a ^= *b),
                None => {
                    self.regions.insert(region, bits);
                }
            }
        }
    }

    /// Appends one merge operand per touched region, covering only the bytes that changed.
    pub fn write_to(&self, batch: &mut Batch) {
        for (region, bits) in &self.regions {
            let Some(first) = bits.iter().position(|b| *b != 0) else {
                continue;
            };
            let last = bits.iter().rposition(|b| *b != 0).unwrap_or(first);
            let offset = u32::try_from(first).expect("regions are at most 8 KiB");
            batch.merge(
                KeySpace::Freelist,
                freelist_key(*region).to_vec(),
                encode_operand(offset, &bits[first..=last]),
            );
        }
    }
}

/// Builds the allocator from the freelist: every unit is free unless its bit is set.
pub fn load_freelist(kv: &dyn Kv, geometry: &FreelistGeometry) -> Result<BitmapAllocator> {
    let mut allocator = BitmapAllocator::new(geometry.device_size, geometry.unit_bytes);
    allocator.mark_free(DeviceExtent::new(0, allocator.capacity_bytes()));
    let units = geometry.units();
    kv.scan(KeySpace::Freelist, &[], None, &mut |key, value| {
        let region = decode_be64_key("freelist key", key)?;
        check_value(value)?;
        let first_unit = region
            .checked_mul(geometry.blocks_per_key)
            .filter(|first| *first < units)
            .ok_or_else(|| {
                Error::corruption(format!("freelist region {region} past the device end"))
            })?;
        for (start, length) in set_bit_runs(value) {
            let start_unit = first_unit + start;
            if start + length > geometry.blocks_per_key || start_unit + length > units {
                return Err(Error::corruption(format!(
                    "freelist region {region} marks units past the region or device end"
                )));
            }
            allocator.mark_allocated(DeviceExtent::new(
                start_unit * geometry.unit_bytes,
                length * geometry.unit_bytes,
            ));
        }
        Ok(true)
    })?;
    Ok(allocator)
}

/// Runs of set bits in an LSB-first bitmap, as (first bit, length). Whole-zero and whole-one
/// bytes are stepped over a byte at a time, so a region costs its byte length, not its bits.
fn set_bit_runs(bytes: &[u8]) -> Vec<(u64, u64)> {
    let mut runs = Vec::new();
    let mut run_start: Option<u64> = None;
    for (index, byte) in bytes.iter().enumerate() {
        let base = index as u64 * 8;
        match (*byte, run_start) {
            (0x00, None) | (0xff, Some(_)) => continue,
            (0x00, Some(start)) => {
                runs.push((start, base - start));
                run_start = None;
                continue;
            }
            (0xff, None) => {
                run_start = Some(base);
                continue;
            }
            _ => {}
        }
        for bit in 0..8u64 {
            let set = byte & (1 << bit) != 0;
            match (set, run_start) {
                (true, None) => run_start = Some(base + bit),
                (false, Some(start)) => {
                    runs.push((start, base + bit - start));
                    run_start = None;
                }
                _ => {}
            }
        }
    }
    if let Some(start) = run_start {
        runs.push((start, bytes.len() as u64 * 8 - start));
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{Durability, MemKv};

    const GEOMETRY: FreelistGeometry = FreelistGeometry {
        unit_bytes: 4096,
        blocks_per_key: 64,
        device_size: 1000 * 4096,
    };

    fn commit(kv: &MemKv, delta: &FreelistDelta) {
        let mut batch = Batch::new();
        delta.write_to(&mut batch);
        kv.write(batch, Durability::Sync).unwrap();
    }

    #[test]
    fn allocations_and_releases_round_trip_through_the_kv() {
        let kv = MemKv::new();
        let mut delta = FreelistDelta::new();
        delta.flip(&GEOMETRY, DeviceExtent::new(0, 8192));
        delta.flip(&GEOMETRY, DeviceExtent::new(60 * 4096, 10 * 4096)); // crosses a region
        commit(&kv, &delta);
        let allocator = load_freelist(&kv, &GEOMETRY).unwrap();
        let free: Vec<_> = allocator.free_extents().collect();
        assert_eq!(
            free,
            vec![
                DeviceExtent::new(8192, 58 * 4096),
                DeviceExtent::new(70 * 4096, 930 * 4096)
            ]
        );
        let mut release = FreelistDelta::new();
        release.flip(&GEOMETRY, DeviceExtent::new(60 * 4096, 10 * 4096));
        commit(&kv, &release);
        let allocator = load_freelist(&kv, &GEOMETRY).unwrap();
        assert_eq!(allocator.free_bytes(), 998 * 4096);
    }

    #[test]
    fn bit_runs_cross_byte_boundaries() {
        assert_eq!(
            set_bit_runs(&[0b1110_0000, 0xff, 0x01, 0, 0x80]),
            vec![(5, 12), (39, 1)]
        );
        assert_eq!(set_bit_runs(&[0xff, 0xff]), vec![(0, 16)]);
        assert!(set_bit_runs(&[0, 0]).is_empty());
    }

    #[test]
    fn flips_within_one_delta_cancel() {
        let mut delta = FreelistDelta::new();
        delta.flip(&GEOMETRY, DeviceExtent::new(4096, 4096));
        delta.flip(&GEOMETRY, DeviceExtent::new(4096, 4096));
        assert!(delta.is_empty());
        let mut batch = Batch::new();
        delta.write_to(&mut batch);
        assert!(batch.is_empty());
    }

    #[test]
    fn bits_past_the_device_end_are_corruption() {
        let kv = MemKv::new();
        let mut batch = Batch::new();
        // Region 15 covers units 960..1024; units 1000.. are past the end.
        batch.put(
            KeySpace::Freelist,
            freelist_key(15).to_vec(),
            vec![0, 0, 0, 0, 0, 0x01, 0, 0],
        );
        kv.write(batch, Durability::Sync).unwrap();
        assert!(matches!(
            load_freelist(&kv, &GEOMETRY),
            Err(Error::Corruption(_))
        ));
    }
}
