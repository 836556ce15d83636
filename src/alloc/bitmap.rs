//! The bitmap allocator: one bit per allocation unit, with summaries that bound every search.
//!
//! Level 0 is a bit per unit (1 = free). Level 1 counts the free units of each chunk of
//! [`CHUNK_UNITS`] units, level 2 those of each group of [`GROUP_CHUNKS`] chunks. A search skips
//! full groups and full chunks without looking at their bits, and crosses wholly free chunks
//! without scanning them, so finding a run costs time in proportion to the runs it passes, not to
//! the device size: on a 1 TiB device of 4 KiB units the summaries are 1 MiB and 4 KiB.
//!
//! Policy: next-fit from a cursor that follows the last allocation (sequential writes get
//! sequential space), taking the first run long enough for the whole request among the first
//! [`RUNS_EXAMINED_MAX`] runs it meets; failing that, it gathers runs in order until satisfied.
//! A request larger than the free space fails before anything changes.

use bitvec::prelude::*;

use super::DeviceExtent;

/// Units per level-1 chunk.
pub const CHUNK_UNITS: u64 = 512;
/// Chunks per level-2 group.
pub const GROUP_CHUNKS: u64 = 512;
/// Runs shorter than the request looked at before giving up on a contiguous allocation.
pub const RUNS_EXAMINED_MAX: usize = 128;

const GROUP_UNITS: u64 = CHUNK_UNITS * GROUP_CHUNKS;

/// Not enough free space for a request; nothing was allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfSpace {
    /// Bytes asked for.
    pub requested_bytes: u64,
    /// Bytes free.
    pub available_bytes: u64,
}

/// Bitmap allocator over `[0, size)` in units of `unit_bytes`.
#[derive(Debug, Clone)]
pub struct BitmapAllocator {
    unit_bytes: u64,
    unit_shift: u32,
    units: u64,
    free: BitVec<u64, Lsb0>,
    chunk_free: Vec<u32>,
    group_free: Vec<u64>,
    free_units: u64,
    cursor: u64,
}

impl BitmapAllocator {
    /// An allocator with every unit of a `size_bytes` device allocated (callers free what is
    /// free: mkfs everything past the reserved start, mount what the freelist says).
    pub fn new(size_bytes: u64, unit_bytes: u64) -> Self {
        assert!(
            unit_bytes.is_power_of_two(),
            "allocation unit must be a power of two"
        );
        let units = size_bytes / unit_bytes;
        let chunks = units.div_ceil(CHUNK_UNITS) as usize;
        let groups = units.div_ceil(GROUP_UNITS) as usize;
        BitmapAllocator {
            unit_bytes,
            unit_shift: unit_bytes.trailing_zeros(),
            units,
            free: bitvec![u64, Lsb0; 0; units as usize],
            chunk_free: vec![0; chunks],
            group_free: vec![0; groups],
            free_units: 0,
            cursor: 0,
        }
    }

    /// Allocation unit in bytes.
    pub fn unit_bytes(&self) -> u64 {
        self.unit_bytes
    }

    /// Bytes managed (whole units).
    pub fn capacity_bytes(&self) -> u64 {
        self.units << self.unit_shift
    }

    /// Bytes free.
    pub fn free_bytes(&self) -> u64 {
        self.free_units << self.unit_shift
    }

    /// Marks an allocated range free (mkfs, mount, `release`). Freeing a free unit is a bug.
    pub fn mark_free(&mut self, extent: DeviceExtent) {
        let (start, end) = self.unit_range(extent);
        let range = start as usize..end as usize;
        assert!(
            self.free[range.clone()].not_any(),
            "double free in {extent:?}"
        );
        self.free[range].fill(true);
        self.free_units += end - start;
        self.adjust_summaries(start, end, true);
    }

    /// Marks a free range allocated (mount). Allocating an allocated unit is a bug.
    pub fn mark_allocated(&mut self, extent: DeviceExtent) {
        let (start, end) = self.unit_range(extent);
        let range = start as usize..end as usize;
        assert!(
            self.free[range.clone()].all(),
            "double allocation in {extent:?}"
        );
        self.free[range].fill(false);
        self.free_units -= end - start;
        self.adjust_summaries(start, end, false);
    }

    /// True when every unit of `extent` is free.
    pub fn is_free(&self, extent: DeviceExtent) -> bool {
        let (start, end) = self.unit_range(extent);
        self.free[start as usize..end as usize].all()
    }

    /// True when every unit of `extent` is allocated.
    pub fn is_allocated(&self, extent: DeviceExtent) -> bool {
        let (start, end) = self.unit_range(extent);
        self.free[start as usize..end as usize].not_any()
    }

    /// Allocates `want_bytes` (rounded up to whole units) as few extents as it can find quickly.
    pub fn allocate(&mut self, want_bytes: u64) -> Result<Vec<DeviceExtent>, OutOfSpace> {
        let want = want_bytes.div_ceil(self.unit_bytes);
        if want == 0 {
            return Ok(Vec::new());
        }
        if want > self.free_units {
            return Err(OutOfSpace {
                requested_bytes: want << self.unit_shift,
                available_bytes: self.free_bytes(),
            });
        }
        let runs = match self.find_contiguous(want) {
            Some(start) => vec![(start, want)],
            None => self.gather_runs(want),
        };
        let extents = runs
            .into_iter()
            .map(|(start, length)| {
                let extent = DeviceExtent::new(start << self.unit_shift, length << self.unit_shift);
                self.mark_allocated(extent);
                self.cursor = (start + length) % self.units.max(1);
                extent
            })
            .collect();
        Ok(extents)
    }

    /// Returns extents to the free pool.
    pub fn release(&mut self, extents: &[DeviceExtent]) {
        for extent in extents {
            self.mark_free(*extent);
        }
    }

    /// Every free extent, in offset order.
    pub fn free_extents(&self) -> FreeExtents<'_> {
        FreeExtents {
            allocator: self,
            position: 0,
        }
    }

    /// First run of at least `want` units, next-fit from the cursor, within the search bound.
    fn find_contiguous(&self, want: u64) -> Option<u64> {
        let mut examined = 0;
        for (start, length) in self.runs_from_cursor(want) {
            if length >= want {
                return Some(start);
            }
            examined += 1;
            if examined >= RUNS_EXAMINED_MAX {
                return None;
            }
        }
        None
    }

    /// Runs in order from the cursor until `want` units are covered (the caller checked there
    /// is enough free space, so this always succeeds).
    fn gather_runs(&self, want: u64) -> Vec<(u64, u64)> {
        let mut runs = Vec::new();
        let mut needed = want;
        for (start, length) in self.runs_from_cursor(want) {
            let take = length.min(needed);
            runs.push((start, take));
            needed -= take;
            if needed == 0 {
                break;
            }
        }
        assert_eq!(needed, 0, "free-unit count disagrees with the bitmap");
        runs
    }

    /// Free runs starting at the cursor, wrapping around once, each measured only up to
    /// `length_cap` units (a longer run is reported in pieces): a search for `n` units never
    /// needs to know how far beyond `n` a run goes, and measuring it could cross the device.
    fn runs_from_cursor(&self, length_cap: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let cursor = self.cursor;
        let tail = RunIter::new(self, cursor, self.units, length_cap);
        let head = RunIter::new(self, 0, cursor, length_cap);
        tail.chain(head)
    }

    /// Next free run within `[from, limit)`, at most `length_cap` units long.
    fn next_run(&self, from: u64, limit: u64, length_cap: u64) -> Option<(u64, u64)> {
        let start = self.next_free_unit(from, limit)?;
        let end = self.next_allocated_unit(start, limit.min(start.saturating_add(length_cap)));
        Some((start, end - start))
    }

    /// First free unit in `[from, limit)`, skipping full groups and chunks by their summaries.
    fn next_free_unit(&self, mut from: u64, limit: u64) -> Option<u64> {
        while from < limit {
            let group = from / GROUP_UNITS;
            if self.group_free[group as usize] == 0 {
                from = (group + 1) * GROUP_UNITS;
                continue;
            }
            let chunk = from / CHUNK_UNITS;
            let chunk_end = ((chunk + 1) * CHUNK_UNITS).min(limit);
            if self.chunk_free[chunk as usize] == 0 {
                from = chunk_end;
                continue;
            }
            if let Some(offset) = self.free[from as usize..chunk_end as usize].first_one() {
                return Some(from + offset as u64);
            }
            from = chunk_end;
        }
        None
    }

    /// First allocated unit in `[from, limit)`, or `limit`; crosses wholly free chunks in a step.
    fn next_allocated_unit(&self, mut from: u64, limit: u64) -> u64 {
        while from < limit {
            let group = from / GROUP_UNITS;
            let group_end = (group + 1) * GROUP_UNITS;
            if from == group * GROUP_UNITS
                && group_end <= limit
                && self.group_free[group as usize] == GROUP_UNITS
            {
                from = group_end;
                continue;
            }
            let chunk = from / CHUNK_UNITS;
            let chunk_start = chunk * CHUNK_UNITS;
            let chunk_end = ((chunk + 1) * CHUNK_UNITS).min(limit);
            let whole_chunk_free = u64::from(self.chunk_free[chunk as usize]) == CHUNK_UNITS;
            if from == chunk_start && whole_chunk_free {
                from = chunk_end;
                continue;
            }
            if let Some(offset) = self.free[from as usize..chunk_end as usize].first_zero() {
                return from + offset as u64;
            }
            from = chunk_end;
        }
        limit
    }

    fn adjust_summaries(&mut self, start: u64, end: u64, freed: bool) {
        let mut position = start;
        while position < end {
            let chunk = position / CHUNK_UNITS;
            let piece_end = ((chunk + 1) * CHUNK_UNITS).min(end);
            let piece = piece_end - position;
            let group = (chunk / GROUP_CHUNKS) as usize;
            let chunk = chunk as usize;
            if freed {
                self.chunk_free[chunk] += piece as u32;
                self.group_free[group] += piece;
            } else {
                self.chunk_free[chunk] -= piece as u32;
                self.group_free[group] -= piece;
            }
            position = piece_end;
        }
    }

    fn unit_range(&self, extent: DeviceExtent) -> (u64, u64) {
        let mask = self.unit_bytes - 1;
        assert!(
            extent.offset & mask == 0 && extent.length & mask == 0,
            "extent {extent:?} not aligned to {} bytes",
            self.unit_bytes
        );
        let start = extent.offset >> self.unit_shift;
        let end = extent.end() >> self.unit_shift;
        assert!(end <= self.units, "extent {extent:?} past the device end");
        (start, end)
    }
}

/// Iterator over free runs of `[position, limit)`, in units, each at most `length_cap` long.
struct RunIter<'a> {
    allocator: &'a BitmapAllocator,
    position: u64,
    limit: u64,
    length_cap: u64,
}

impl<'a> RunIter<'a> {
    fn new(allocator: &'a BitmapAllocator, position: u64, limit: u64, length_cap: u64) -> Self {
        RunIter {
            allocator,
            position,
            limit,
            length_cap,
        }
    }
}

impl Iterator for RunIter<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        let (start, length) =
            self.allocator
                .next_run(self.position, self.limit, self.length_cap)?;
        self.position = start + length;
        Some((start, length))
    }
}

/// Every free extent of an allocator, in bytes and offset order.
pub struct FreeExtents<'a> {
    allocator: &'a BitmapAllocator,
    position: u64,
}

impl Iterator for FreeExtents<'_> {
    type Item = DeviceExtent;

    fn next(&mut self) -> Option<DeviceExtent> {
        let shift = self.allocator.unit_shift;
        let (start, length) =
            self.allocator
                .next_run(self.position, self.allocator.units, u64::MAX)?;
        self.position = start + length;
        Some(DeviceExtent::new(start << shift, length << shift))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT: u64 = 4096;

    fn empty(units: u64) -> BitmapAllocator {
        let mut allocator = BitmapAllocator::new(units * UNIT, UNIT);
        allocator.mark_free(DeviceExtent::new(0, units * UNIT));
        allocator
    }

    #[test]
    fn sequential_allocations_are_contiguous() {
        let mut a = empty(4096);
        let first = a.allocate(64 * UNIT).unwrap();
        let second = a.allocate(64 * UNIT).unwrap();
        assert_eq!(first, vec![DeviceExtent::new(0, 64 * UNIT)]);
        assert_eq!(second, vec![DeviceExtent::new(64 * UNIT, 64 * UNIT)]);
        assert_eq!(a.free_bytes(), (4096 - 128) * UNIT);
    }

    #[test]
    fn a_request_larger_than_free_space_changes_nothing() {
        let mut a = empty(16);
        a.allocate(10 * UNIT).unwrap();
        let err = a.allocate(7 * UNIT).unwrap_err();
        assert_eq!(err.available_bytes, 6 * UNIT);
        assert_eq!(a.free_bytes(), 6 * UNIT);
    }

    #[test]
    fn fragmented_space_is_gathered_when_no_run_is_long_enough() {
        let mut a = empty(2048);
        let all = a.allocate(2048 * UNIT).unwrap();
        assert_eq!(all.len(), 1);
        for unit in (0..2048).step_by(2) {
            a.release(&[DeviceExtent::new(unit * UNIT, UNIT)]);
        }
        let got = a.allocate(10 * UNIT).unwrap();
        assert_eq!(got.len(), 10);
        assert_eq!(got.iter().map(|e| e.length).sum::<u64>(), 10 * UNIT);
    }

    #[test]
    fn free_extents_cross_chunk_and_group_boundaries() {
        let units = GROUP_UNITS * 2 + 100;
        let mut a = empty(units);
        a.mark_allocated(DeviceExtent::new(0, UNIT));
        a.mark_allocated(DeviceExtent::new((units - 1) * UNIT, UNIT));
        let free: Vec<_> = a.free_extents().collect();
        assert_eq!(free, vec![DeviceExtent::new(UNIT, (units - 2) * UNIT)]);
    }

    #[test]
    fn the_cursor_wraps_around() {
        let mut a = empty(8);
        let first = a.allocate(6 * UNIT).unwrap();
        a.release(&first);
        let got = a.allocate(4 * UNIT).unwrap();
        assert_eq!(got.iter().map(|e| e.length).sum::<u64>(), 4 * UNIT);
        assert!(got.iter().all(|e| e.end() <= 8 * UNIT));
    }

    #[test]
    #[should_panic(expected = "double free")]
    fn double_free_is_a_bug() {
        let mut a = empty(8);
        a.release(&[DeviceExtent::new(0, UNIT)]);
    }
}
