//! The in-memory extent map of one object: logical ranges mapped into checksummed blobs.
//!
//! Extents are kept in a `BTreeMap` keyed by logical offset (sorted, disjoint); blobs in a slab
//! addressed by [`BlobId`]. Each blob tracks, per allocation unit, how many of its bytes are
//! referenced by extents (`au_used`, rebuilt from the extents on load, never stored). Punching a
//! range drops references, and an allocation unit whose count falls to zero is returned to the
//! caller as released space (or, for a shared blob, as a dropped reference), so space is freed
//! exactly when nothing in the object refers to it any more.
//!
//! Everything here is pure: no I/O, no KV. The write planner decides what to change; this map
//! applies it and reports what space it frees.

use imbl::OrdMap;
use std::ops::Bound;

use super::blob_table::BlobTable;
use super::id_map::IdMap;
use crate::alloc::DeviceExtent;
use crate::error::{Error, Result};
use crate::format::onode::{
    BODY_HEADER_LENGTH, Blob, BodyView, EXTENT_ENCODED_LENGTH, Extent, ExtentMapBody,
};

/// Index of a blob in an [`ExtentMap`].
pub type BlobId = u32;

/// A logical extent: `length` bytes mapped at `blob_offset` within `blob`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// Bytes mapped.
    pub length: u32,
    /// The blob.
    pub blob: BlobId,
    /// Offset of the first byte within the blob.
    pub blob_offset: u32,
}

/// A piece of a logical range: a hole (reads as zeros) or data in a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// No data: reads as zeros.
    Hole {
        /// Start within the object.
        logical_offset: u64,
        /// Bytes.
        length: u64,
    },
    /// Data in a blob.
    Data {
        /// Start within the object.
        logical_offset: u64,
        /// Bytes.
        length: u64,
        /// The blob.
        blob: BlobId,
        /// Where the piece starts within the blob.
        blob_offset: u32,
    },
}

/// What a punch did: logical bytes that stopped being mapped, and space no longer referenced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Punched {
    /// Logical bytes unmapped (for the stored-bytes statistic).
    pub unmapped_bytes: u64,
    /// Allocation units nothing in the object refers to any more.
    pub released: Vec<Released>,
}

/// Space that stopped being referenced by a punch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// The device range (whole allocation units).
    pub extent: DeviceExtent,
    /// `Some(sbid)` when the space belongs to a shared blob: drop one reference rather than free.
    pub shared_blob_id: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct BlobEntry {
    blob: Blob,
    /// Referenced bytes per allocation unit.
    au_used: Vec<u32>,
    /// Extents referencing this blob.
    extent_refs: u32,
}

/// One object's extent map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtentMap {
    au_bytes: u32,
    /// Persistent (structurally shared) maps: a transaction's working copy of an onode costs
    /// O(1) to make, and each change copies only the tree path it touches.
    extents: OrdMap<u64, Mapping>,
    /// Blobs are shared between versions too: only a blob a transaction changes is copied,
    /// and its version keeps it aside until [`ExtentMap::settle`].
    blobs: BlobTable<BlobEntry>,
    free_ids: Vec<BlobId>,
    /// Encoded size of the whole map as one body, kept up to date on every change.
    encoded_bytes: usize,
    /// Logical ranges changed since the map was last written (which shards to rewrite).
    dirty: Vec<(u64, u64)>,
}

impl ExtentMap {
    /// An empty map for a store with allocation unit `au_bytes`.
    pub fn new(au_bytes: u32) -> Self {
        ExtentMap {
            au_bytes,
            extents: OrdMap::new(),
            blobs: BlobTable::default(),
            free_ids: Vec::new(),
            encoded_bytes: BODY_HEADER_LENGTH,
            dirty: Vec::new(),
        }
    }

    /// Rebuilds a map from decoded bodies (the inline map, or every shard in order).
    pub fn from_bodies<'a>(
        au_bytes: u32,
        bodies: impl IntoIterator<Item = &'a ExtentMapBody>,
    ) -> Result<Self> {
        let mut map = ExtentMap::new(au_bytes);
        for body in bodies {
            map.load_body(body)?;
        }
        map.dirty.clear();
        map.settle();
        Ok(map)
    }

    /// Folds the changes this version keeps aside into its blob table (see
    /// [`BlobTable::settle`]): called when the version is installed, after the one it
    /// replaces was dropped, so that the next working copy starts from a plain table.
    pub fn settle(&mut self) {
        self.blobs.settle();
    }

    fn load_body(&mut self, body: &ExtentMapBody) -> Result<()> {
        let mut ids = Vec::with_capacity(body.blobs.len());
        for blob in &body.blobs {
            if blob.length % self.au_bytes != 0
                || blob.device_offset % u64::from(self.au_bytes) != 0
            {
                return Err(Error::corruption(format!(
                    "blob at device offset {:#x} is not aligned to the allocation unit",
                    blob.device_offset
                )));
            }
            ids.push(self.add_blob(blob.clone()));
        }
        let mut anchors: IdMap<u64> = IdMap::default();
        for extent in &body.extents {
            let Some(&blob) = ids.get(extent.blob as usize) else {
                return Err(Error::corruption("extent references a missing blob"));
            };
            // Extents of an unshared blob are pieces of one write: they all map the blob at the
            // same logical place (splitting and trimming rely on it).
            let anchor = extent
                .logical_offset
                .wrapping_sub(u64::from(extent.blob_offset));
            let unshared = self.blob(blob).shared_blob_id.is_none();
            if unshared && *anchors.entry(extent.blob).or_insert(anchor) != anchor {
                return Err(Error::corruption(format!(
                    "extent {:#x}+{:#x} maps its blob at a different place than the blob's other extents",
                    extent.logical_offset, extent.length
                )));
            }
            if let Some((start, end)) =
                self.overlap_with_existing(extent.logical_offset, u64::from(extent.length))
            {
                return Err(Error::corruption(format!(
                    "extent {:#x}+{:#x} overlaps another at {start:#x}..{end:#x}",
                    extent.logical_offset, extent.length
                )));
            }
            self.map(
                extent.logical_offset,
                extent.length,
                blob,
                extent.blob_offset,
            );
        }
        for id in ids {
            if self.entry(id).extent_refs == 0 {
                return Err(Error::corruption("blob referenced by no extent"));
            }
        }
        Ok(())
    }

    fn overlap_with_existing(&self, offset: u64, length: u64) -> Option<(u64, u64)> {
        let end = offset + length;
        let before = self.extents.range(..end).next_back();
        before
            .map(|(start, m)| (*start, start + u64::from(m.length)))
            .filter(|(_, existing_end)| *existing_end > offset)
    }

    /// Encodes the extents starting in `[start, end)` and the blobs they reference.
    pub fn to_body(&self, start: u64, end: u64) -> ExtentMapBody {
        let view = self.body_view(start, end);
        ExtentMapBody {
            blobs: view.blobs.into_iter().cloned().collect(),
            extents: view.extents,
        }
    }

    /// Like [`ExtentMap::to_body`], borrowing the blobs instead of copying them.
    pub fn body_view(&self, start: u64, end: u64) -> BodyView<'_> {
        let mut view = BodyView::default();
        let mut local: IdMap<u32> = IdMap::default();
        for (offset, mapping) in self.extents.range(start..end) {
            let next_index = view.blobs.len() as u32;
            let index = *local.entry(mapping.blob).or_insert_with(|| {
                view.blobs.push(self.blob(mapping.blob));
                next_index
            });
            view.extents.push(Extent {
                logical_offset: *offset,
                length: mapping.length,
                blob: index,
                blob_offset: mapping.blob_offset,
            });
        }
        view
    }

    /// The blob with id `id`.
    pub fn blob(&self, id: BlobId) -> &Blob {
        &self.entry(id).blob
    }

    /// Changes a blob's checksums or unused bits (never its geometry); `logical` is the range
    /// of the object whose data the change concerns, marked dirty.
    pub fn update_blob(&mut self, id: BlobId, logical: (u64, u64), change: impl FnOnce(&mut Blob)) {
        let entry = self.entry_mut(id);
        let before = entry.blob.encoded_length();
        let (device_offset, length) = (entry.blob.device_offset, entry.blob.length);
        change(&mut entry.blob);
        assert_eq!(
            (device_offset, length),
            (entry.blob.device_offset, entry.blob.length)
        );
        let after = entry.blob.encoded_length();
        self.encoded_bytes = self.encoded_bytes + after - before;
        self.dirty.push(logical);
    }

    /// Marks blob `id` shared as `sbid` (`logical` is the object range it maps, to rewrite);
    /// returns its first reference counts: 1 for each allocation unit this map references.
    pub fn share_blob(&mut self, id: BlobId, sbid: u64, logical: (u64, u64)) -> Vec<u32> {
        self.update_blob(id, logical, |blob| blob.shared_blob_id = Some(sbid));
        self.entry(id)
            .au_used
            .iter()
            .map(|used| u32::from(*used > 0))
            .collect()
    }

    /// Indexes of the allocation units of blob `id` that this map references.
    pub fn held_units(&self, id: BlobId) -> Vec<usize> {
        let entry = self.entry(id);
        (0..entry.au_used.len())
            .filter(|unit| entry.au_used[*unit] > 0)
            .collect()
    }

    /// Allocation unit in bytes.
    pub fn au_bytes(&self) -> u32 {
        self.au_bytes
    }

    /// Encoded size of the whole map as a single body.
    pub fn encoded_bytes(&self) -> usize {
        self.encoded_bytes
    }

    /// Logical ranges changed since [`ExtentMap::clear_dirty`].
    pub fn dirty_ranges(&self) -> &[(u64, u64)] {
        &self.dirty
    }

    /// Forgets the changed ranges (after the map was written).
    pub fn clear_dirty(&mut self) {
        self.dirty.clear();
    }

    /// Every extent, in logical order.
    pub fn extents(&self) -> impl Iterator<Item = (u64, Mapping)> + '_ {
        self.extents
            .iter()
            .map(|(offset, mapping)| (*offset, *mapping))
    }

    /// Every live blob.
    pub fn blobs(&self) -> impl Iterator<Item = (BlobId, &Blob)> + '_ {
        self.blobs
            .iter()
            .filter_map(|(id, entry)| entry.map(|e| (id, &e.blob)))
    }

    /// True when no extent exists.
    pub fn is_empty(&self) -> bool {
        self.extents.is_empty()
    }

    /// One past the last mapped byte (0 when empty).
    pub fn logical_end(&self) -> u64 {
        self.extents
            .iter()
            .next_back()
            .map_or(0, |(offset, m)| offset + u64::from(m.length))
    }

    /// Bytes mapped (holes excluded).
    pub fn stored_bytes(&self) -> u64 {
        self.extents.values().map(|m| u64::from(m.length)).sum()
    }

    /// Device bytes referenced: every allocation unit with a referenced byte.
    pub fn allocated_bytes(&self) -> u64 {
        self.referenced_units()
            .map(|(_, extent)| extent.length)
            .sum()
    }

    /// Every referenced allocation unit, as (blob, device extent of one unit).
    pub fn referenced_units(&self) -> impl Iterator<Item = (BlobId, DeviceExtent)> + '_ {
        let au = u64::from(self.au_bytes);
        self.blobs.iter().flat_map(move |(id, entry)| {
            entry.into_iter().flat_map(move |e| {
                e.au_used
                    .iter()
                    .enumerate()
                    .filter(|(_, used)| **used > 0)
                    .map(move |(index, _)| {
                        (
                            id,
                            DeviceExtent::new(e.blob.device_offset + index as u64 * au, au),
                        )
                    })
            })
        })
    }

    /// Splits `[offset, offset + length)` into holes and data pieces, in order.
    pub fn pieces(&self, offset: u64, length: u64) -> Vec<Piece> {
        let end = offset + length;
        let mut pieces = Vec::new();
        let mut position = offset;
        for (start, mapping) in self.overlapping(offset, end) {
            let extent_end = start + u64::from(mapping.length);
            let piece_start = start.max(position);
            if piece_start > position {
                pieces.push(Piece::Hole {
                    logical_offset: position,
                    length: piece_start - position,
                });
            }
            let piece_end = extent_end.min(end);
            pieces.push(Piece::Data {
                logical_offset: piece_start,
                length: piece_end - piece_start,
                blob: mapping.blob,
                blob_offset: mapping.blob_offset + (piece_start - start) as u32,
            });
            position = piece_end;
        }
        if position < end {
            pieces.push(Piece::Hole {
                logical_offset: position,
                length: end - position,
            });
        }
        pieces
    }

    /// The last extent starting before `offset`.
    pub fn extent_before(&self, offset: u64) -> Option<(u64, Mapping)> {
        self.extents
            .range(..offset)
            .next_back()
            .map(|(o, m)| (*o, *m))
    }

    /// The first extent starting at or after `offset`.
    pub fn extent_at_or_after(&self, offset: u64) -> Option<(u64, Mapping)> {
        self.extents.range(offset..).next().map(|(o, m)| (*o, *m))
    }

    /// True when every allocation unit overlapping `[blob_offset, +length)` of `blob` is still
    /// referenced (so the blob still owns it and may be written there).
    pub fn units_held(&self, blob: BlobId, blob_offset: u32, length: u32) -> bool {
        let entry = self.entry(blob);
        let first = blob_offset / self.au_bytes;
        let last = (blob_offset + length).div_ceil(self.au_bytes);
        (first..last).all(|unit| {
            entry
                .au_used
                .get(unit as usize)
                .is_some_and(|used| *used > 0)
        })
    }

    /// True when any byte of the range is mapped.
    pub fn has_data(&self, offset: u64, length: u64) -> bool {
        self.overlapping(offset, offset + length).next().is_some()
    }

    /// Extents overlapping `[offset, end)`, in order.
    fn overlapping(&self, offset: u64, end: u64) -> impl Iterator<Item = (u64, Mapping)> + '_ {
        let first = self
            .extents
            .range(..=offset)
            .next_back()
            .filter(|(start, m)| *start + u64::from(m.length) > offset)
            .map(|(start, _)| *start)
            .unwrap_or(offset);
        self.extents
            .range((Bound::Included(first), Bound::Excluded(end)))
            .map(|(start, mapping)| (*start, *mapping))
            .filter(move |(start, m)| start + u64::from(m.length) > offset)
    }

    /// Adds a new blob (referenced by no extent yet) and returns its id.
    pub fn add_blob(&mut self, blob: Blob) -> BlobId {
        let units = (blob.length / self.au_bytes) as usize;
        self.encoded_bytes += blob.encoded_length();
        let entry = BlobEntry {
            blob,
            au_used: vec![0; units],
            extent_refs: 0,
        };
        match self.free_ids.pop() {
            Some(id) => {
                self.blobs.set(id, Some(entry));
                id
            }
            None => self.blobs.push(entry),
        }
    }

    /// Maps `[logical_offset, +length)` to `blob` at `blob_offset`. The range must be unmapped.
    pub fn map(&mut self, logical_offset: u64, length: u32, blob: BlobId, blob_offset: u32) {
        assert!(length > 0, "empty extent");
        assert!(
            !self.has_data(logical_offset, u64::from(length)),
            "mapping over live data at {logical_offset:#x}"
        );
        let au = self.au_bytes;
        let entry = self.entry_mut(blob);
        assert!(
            blob_offset + length <= entry.blob.length,
            "extent past its blob"
        );
        for_each_unit(au, blob_offset, length, |unit, bytes| {
            entry.au_used[unit] += bytes
        });
        entry.extent_refs += 1;
        self.encoded_bytes += EXTENT_ENCODED_LENGTH;
        self.dirty
            .push((logical_offset, logical_offset + u64::from(length)));
        self.extents.insert(
            logical_offset,
            Mapping {
                length,
                blob,
                blob_offset,
            },
        );
    }

    /// Unmaps `[offset, offset + length)`; reports the bytes unmapped and the space released.
    pub fn punch(&mut self, offset: u64, length: u64) -> Punched {
        let end = offset.saturating_add(length);
        let hits: Vec<(u64, Mapping)> = self.overlapping(offset, end).collect();
        let mut released = Vec::new();
        let mut unmapped_bytes = 0;
        if let (Some((first, _)), Some((last, m))) = (hits.first(), hits.last()) {
            self.dirty.push((*first, last + u64::from(m.length)));
        }
        let mut shrunk: Vec<(BlobId, u64)> = Vec::new();
        for (start, mapping) in hits {
            self.extents.remove(&start);
            self.encoded_bytes -= EXTENT_ENCODED_LENGTH;
            let extent_end = start + u64::from(mapping.length);
            let cut_start = start.max(offset);
            let cut_end = extent_end.min(end);
            let cut_blob_offset = mapping.blob_offset + (cut_start - start) as u32;
            let cut_length = (cut_end - cut_start) as u32;
            unmapped_bytes += u64::from(cut_length);
            self.entry_mut(mapping.blob).extent_refs -= 1;
            if start < cut_start {
                self.reinsert(
                    start,
                    (cut_start - start) as u32,
                    mapping.blob,
                    mapping.blob_offset,
                );
            }
            if cut_end < extent_end {
                let right_offset = mapping.blob_offset + (cut_end - start) as u32;
                self.reinsert(
                    cut_end,
                    (extent_end - cut_end) as u32,
                    mapping.blob,
                    right_offset,
                );
            }
            let freed = self.unreference(mapping.blob, cut_blob_offset, cut_length);
            if !freed.is_empty() && self.blobs.get(mapping.blob).is_some() {
                // The blob's anchor; a shared blob cloned to a lower offset has none (its
                // extents may sit at any place), but shared blobs are never split.
                let anchor = start.wrapping_sub(u64::from(mapping.blob_offset));
                shrunk.push((mapping.blob, anchor));
            }
            released.extend(freed);
        }
        // Only blobs still alive after every cut: a blob whose last extent went is gone, and its
        // id may be reused by the pieces of another split.
        shrunk.sort_unstable();
        shrunk.dedup();
        shrunk.retain(|(blob, _)| self.blobs.get(*blob).is_some());
        for (blob, anchor) in shrunk {
            self.split_at_unreferenced_units(blob, anchor);
        }
        Punched {
            unmapped_bytes,
            released: coalesce(released),
        }
    }

    /// Cuts a blob into one blob per run of still-referenced allocation units, dropping the
    /// released units between and around them: their checksums leave the metadata, and a blob
    /// with a hole punched in its middle becomes two blobs that shard boundaries may separate.
    /// `anchor` is the logical offset of the blob's byte 0 (the same for all its extents: they
    /// are only ever cut, never moved). Shared blobs are left whole (their reference counts are
    /// kept per device range), and so are blobs whose checksum chunk is larger than the
    /// allocation unit (a cut there would split a chunk).
    fn split_at_unreferenced_units(&mut self, id: BlobId, anchor: u64) {
        let au = self.au_bytes;
        let (runs, whole) = {
            let entry = self.entry(id);
            if entry.blob.shared_blob_id.is_some() || entry.blob.csum_chunk() > au {
                return;
            }
            let runs = referenced_runs(&entry.au_used);
            let whole = runs.len() == 1 && runs[0] == (0, entry.au_used.len());
            (runs, whole)
        };
        if whole || runs.is_empty() {
            return;
        }
        let old = self.blobs.set(id, None).expect("live blob");
        self.free_ids.push(id);
        self.encoded_bytes -= old.blob.encoded_length();
        let blob_end = anchor + u64::from(old.blob.length);
        self.dirty.push((anchor, blob_end));
        let pieces: Vec<(usize, BlobId)> = runs
            .iter()
            .map(|(first, last)| (*first, self.add_blob_piece(&old, *first, *last)))
            .collect();
        let members: Vec<(u64, Mapping)> = self
            .extents
            .range(anchor..blob_end)
            .filter(|(_, m)| m.blob == id)
            .map(|(o, m)| (*o, *m))
            .collect();
        for (offset, mapping) in members {
            let unit = (mapping.blob_offset / au) as usize;
            let (first, piece) = *pieces
                .iter()
                .rev()
                .find(|(first, _)| *first <= unit)
                .expect("a referenced extent lies in a referenced run");
            let moved = Mapping {
                blob: piece,
                blob_offset: mapping.blob_offset - first as u32 * au,
                ..mapping
            };
            self.extents.insert(offset, moved);
            self.entry_mut(piece).extent_refs += 1;
        }
    }

    /// A new blob for allocation units `[first, last)` of `old`, with their checksums, unused
    /// bits and use counts; referenced by no extent yet.
    fn add_blob_piece(&mut self, old: &BlobEntry, first: usize, last: usize) -> BlobId {
        let au = self.au_bytes as usize;
        let chunk = old.blob.csum_chunk() as usize;
        let (chunk_first, chunk_last) = (first * au / chunk, last * au / chunk);
        let csums = if old.blob.csums.is_empty() {
            Vec::new()
        } else {
            old.blob.csums[chunk_first..chunk_last].to_vec()
        };
        let unused = old.blob.unused.as_ref().and_then(|bits| {
            let count = chunk_last - chunk_first;
            let mut piece = vec![0u8; count.div_ceil(8)];
            for i in 0..count {
                let j = chunk_first + i;
                if bits[j / 8] & (1 << (j % 8)) != 0 {
                    piece[i / 8] |= 1 << (i % 8);
                }
            }
            piece.iter().any(|b| *b != 0).then_some(piece)
        });
        let blob = Blob {
            device_offset: old.blob.device_offset + (first * au) as u64,
            length: ((last - first) * au) as u32,
            csums,
            unused,
            ..old.blob.clone()
        };
        let id = self.add_blob(blob);
        let entry = self.entry_mut(id);
        entry.au_used.copy_from_slice(&old.au_used[first..last]);
        id
    }

    /// Re-adds a remainder of a punched extent; its bytes are still counted in `au_used`.
    fn reinsert(&mut self, logical_offset: u64, length: u32, blob: BlobId, blob_offset: u32) {
        self.entry_mut(blob).extent_refs += 1;
        self.encoded_bytes += EXTENT_ENCODED_LENGTH;
        self.extents.insert(
            logical_offset,
            Mapping {
                length,
                blob,
                blob_offset,
            },
        );
    }

    /// Drops references to `[blob_offset, +length)` of a blob; returns units that reached zero.
    fn unreference(&mut self, blob: BlobId, blob_offset: u32, length: u32) -> Vec<Released> {
        let au = self.au_bytes;
        let entry = self.entry_mut(blob);
        let device_offset = entry.blob.device_offset;
        let shared_blob_id = entry.blob.shared_blob_id;
        let mut released = Vec::new();
        for_each_unit(au, blob_offset, length, |unit, bytes| {
            let used = &mut entry.au_used[unit];
            assert!(*used >= bytes, "unreferencing more bytes than referenced");
            *used -= bytes;
            if *used == 0 {
                released.push(Released {
                    extent: DeviceExtent::new(
                        device_offset + unit as u64 * u64::from(au),
                        u64::from(au),
                    ),
                    shared_blob_id,
                });
            }
        });
        if entry.extent_refs == 0 {
            assert!(
                entry.au_used.iter().all(|u| *u == 0),
                "unreferenced blob with used units"
            );
            self.encoded_bytes -= entry.blob.encoded_length();
            self.blobs.set(blob, None);
            self.free_ids.push(blob);
        }
        released
    }

    fn entry(&self, id: BlobId) -> &BlobEntry {
        self.blobs.get(id).expect("blob id refers to a live blob")
    }

    fn entry_mut(&mut self, id: BlobId) -> &mut BlobEntry {
        self.blobs
            .get_mut(id)
            .expect("blob id refers to a live blob")
    }
}

/// Calls `f(unit index, bytes)` for each allocation unit overlapped by `[offset, +length)`.
fn for_each_unit(au: u32, offset: u32, length: u32, mut f: impl FnMut(usize, u32)) {
    let end = offset + length;
    let mut position = offset;
    while position < end {
        let unit = position / au;
        let unit_end = ((unit + 1) * au).min(end);
        f(unit as usize, unit_end - position);
        position = unit_end;
    }
}

/// Runs `[first, last)` of units with a non-zero use count.
fn referenced_runs(au_used: &[u32]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (index, used) in au_used.iter().enumerate() {
        match (*used > 0, start) {
            (true, None) => start = Some(index),
            (false, Some(first)) => {
                runs.push((first, index));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(first) = start {
        runs.push((first, au_used.len()));
    }
    runs
}

/// Merges adjacent released units of the same ownership into longer extents.
fn coalesce(mut released: Vec<Released>) -> Vec<Released> {
    released.sort_by_key(|r| (r.shared_blob_id, r.extent.offset));
    let mut merged: Vec<Released> = Vec::with_capacity(released.len());
    for item in released {
        match merged.last_mut() {
            Some(last)
                if last.shared_blob_id == item.shared_blob_id
                    && last.extent.end() == item.extent.offset =>
            {
                last.extent.length += item.extent.length;
            }
            _ => merged.push(item),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::onode::CsumType;

    const AU: u32 = 4096;

    fn blob(device_offset: u64, length: u32) -> Blob {
        Blob {
            device_offset,
            length,
            shared_blob_id: None,
            csum_type: CsumType::Crc32c,
            csum_chunk_order: 12,
            csums: vec![0; (length / 4096) as usize],
            unused: None,
        }
    }

    fn map_with_one_blob(length: u32) -> ExtentMap {
        let mut map = ExtentMap::new(AU);
        let id = map.add_blob(blob(1 << 20, length));
        map.map(0, length, id, 0);
        map
    }

    #[test]
    fn punching_the_middle_keeps_both_sides_and_frees_the_middle_units() {
        let mut map = map_with_one_blob(4 * AU);
        let punched = map.punch(u64::from(AU), 2 * u64::from(AU));
        assert_eq!(punched.unmapped_bytes, 2 * u64::from(AU));
        assert_eq!(
            punched.released,
            vec![Released {
                extent: DeviceExtent::new((1 << 20) + 4096, 8192),
                shared_blob_id: None
            }]
        );
        let pieces = map.pieces(0, 4 * u64::from(AU));
        assert_eq!(pieces.len(), 3);
        assert!(matches!(pieces[1], Piece::Hole { length: 8192, .. }));
        assert!(
            matches!(pieces[2], Piece::Data { blob_offset: 0, .. }),
            "the right remainder was split into a blob of its own"
        );
        assert_eq!(map.stored_bytes(), 2 * u64::from(AU));
        assert_eq!(map.allocated_bytes(), 2 * u64::from(AU));
    }

    #[test]
    fn a_hole_in_the_middle_splits_the_blob_and_drops_its_checksums() {
        let mut map = map_with_one_blob(8 * AU);
        let before = map.encoded_bytes();
        map.punch(3 * u64::from(AU), 2 * u64::from(AU));
        let blobs: Vec<_> = map
            .blobs()
            .map(|(_, b)| (b.device_offset, b.length, b.csums.len()))
            .collect();
        assert_eq!(
            blobs,
            vec![(1 << 20, 3 * AU, 3), ((1 << 20) + 5 * 4096, 3 * AU, 3)],
            "two blobs of three units each"
        );
        assert!(
            map.encoded_bytes() < before + 40,
            "two dropped checksums pay for the new header"
        );
        let pieces = map.pieces(0, 8 * u64::from(AU));
        assert!(
            matches!(pieces[2], Piece::Data { blob_offset: 0, .. }),
            "{pieces:?}"
        );
        let rebuilt = ExtentMap::from_bodies(AU, [&map.to_body(0, u64::MAX)]).unwrap();
        assert_eq!(rebuilt.pieces(0, 1 << 20), map.pieces(0, 1 << 20));
        assert_eq!(rebuilt.allocated_bytes(), 6 * u64::from(AU));
    }

    #[test]
    fn a_blob_that_loses_units_and_then_its_last_extent_in_one_punch_is_not_split() {
        // Regression: the split pass ran on a blob the same punch had already removed, whose id
        // another split could have reused.
        let mut map = ExtentMap::new(AU);
        let id = map.add_blob(blob(1 << 20, 4 * AU));
        map.map(0, 2 * AU, id, 0);
        map.map(3 * u64::from(AU), 2 * AU, id, 2 * AU);
        let punched = map.punch(0, 5 * u64::from(AU));
        assert_eq!(
            punched
                .released
                .iter()
                .map(|r| r.extent.length)
                .sum::<u64>(),
            4 * u64::from(AU)
        );
        assert!(map.is_empty());
        assert_eq!(map.blobs().count(), 0);
    }

    #[test]
    fn a_unit_is_freed_only_when_its_last_byte_is_unreferenced() {
        let mut map = map_with_one_blob(AU);
        assert!(map.punch(0, 1000).released.is_empty());
        assert!(map.punch(2000, 1000).released.is_empty());
        let punched = map.punch(0, u64::from(AU));
        assert_eq!(punched.released.len(), 1);
        assert_eq!(punched.unmapped_bytes, u64::from(AU) - 2000);
        assert!(map.is_empty());
        assert_eq!(map.blobs().count(), 0, "the blob went with its last extent");
    }

    #[test]
    fn bodies_round_trip_through_the_format() {
        let mut map = map_with_one_blob(4 * AU);
        map.punch(4096, 4096);
        let body = map.to_body(0, u64::MAX);
        assert_eq!(body.blobs.len(), 2, "the remainders became two blobs");
        let rebuilt = ExtentMap::from_bodies(AU, [&body]).unwrap();
        assert_eq!(rebuilt.pieces(0, 16384), map.pieces(0, 16384));
        assert_eq!(rebuilt.allocated_bytes(), map.allocated_bytes());
    }

    #[test]
    fn the_encoded_size_estimate_tracks_every_change() {
        let mut map = map_with_one_blob(4 * AU);
        let check = |map: &ExtentMap| {
            let body = map.to_body(0, u64::MAX);
            let sealed = crate::format::onode::encode_shard(&body);
            assert_eq!(map.encoded_bytes() + 10, sealed.len(), "body plus envelope");
        };
        check(&map);
        map.punch(4096, 4096);
        check(&map);
        let id = map.add_blob(blob(2 << 20, AU));
        map.map(4096, 100, id, 0);
        check(&map);
        map.punch(0, 1 << 20);
        check(&map);
    }

    #[test]
    fn overlapping_bodies_are_corruption() {
        let map = map_with_one_blob(AU);
        let body = map.to_body(0, u64::MAX);
        assert!(ExtentMap::from_bodies(AU, [&body, &body]).is_err());
    }

    #[test]
    fn pieces_of_a_range_inside_one_extent() {
        let map = map_with_one_blob(4 * AU);
        assert_eq!(
            map.pieces(100, 200),
            vec![Piece::Data {
                logical_offset: 100,
                length: 200,
                blob: 0,
                blob_offset: 100
            }]
        );
        assert_eq!(
            map.pieces(5 * u64::from(AU), 10),
            vec![Piece::Hole {
                logical_offset: 5 * u64::from(AU),
                length: 10
            }]
        );
    }
}
