//! Objects' metadata in memory: onodes, their extent maps, and the cache that holds them.
//!
//! An [`Onode`] is the decoded form of an onode record plus its whole extent map (inline, or
//! loaded from its shard records). [`Onode::write_to`] puts it back into a KV batch: the onode
//! record, and, for a sharded map, only the shards whose logical range changed.

mod blob_table;
pub mod cache;
pub mod extent_map;
mod id_map;
pub mod read;
pub mod shard;

use std::collections::BTreeMap;

pub use cache::{OnodeBudget, OnodeCache, OnodeSlot};
pub use extent_map::{BlobId, ExtentMap, Mapping, Piece, Punched, Released};

use crate::error::{Error, Result};
use crate::format::keys::{self, KeySpace};
use crate::format::onode::{
    AllocHint, ExtentMapBody, ExtentMapLayout, LayoutView, OnodeHeader, OnodeRecord, ShardInfo,
    check_extents_within, decode_shard, encode_onode, encode_shard_view,
};
use crate::kv::{Batch, Kv};
use shard::{INLINE_BYTES_MAX, SHARD_BYTES_MAX, choose_boundaries};

/// One object's metadata, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onode {
    /// Object id: keys the omap and extent shards; never reused.
    pub nid: u64,
    /// Logical size in bytes.
    pub size: u64,
    /// `ONODE_FLAG_*` bits.
    pub flags: u32,
    /// Allocation hint.
    pub alloc_hint: AllocHint,
    /// Extended attributes.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Logical-to-device mapping.
    pub extent_map: ExtentMap,
    /// Stored shard layout: `None` while the map is inline in the onode.
    pub shards: Option<Vec<ShardInfo>>,
}

impl Onode {
    /// A new, empty object.
    pub fn new(nid: u64, au_bytes: u32) -> Self {
        Onode {
            nid,
            size: 0,
            flags: 0,
            alloc_hint: AllocHint::default(),
            xattrs: BTreeMap::new(),
            extent_map: ExtentMap::new(au_bytes),
            shards: None,
        }
    }

    /// Decodes an onode value, reading its shard records from `kv` when the map is sharded.
    pub fn decode(kv: &dyn Kv, value: &[u8], au_bytes: u32) -> Result<Onode> {
        let record = OnodeRecord::decode(value)?;
        let (extent_map, shards) = match &record.extent_map {
            ExtentMapLayout::Inline(body) => (ExtentMap::from_bodies(au_bytes, [body])?, None),
            ExtentMapLayout::Sharded(shards) => {
                let bodies = read_shards(kv, record.nid, record.size, shards)?;
                (
                    ExtentMap::from_bodies(au_bytes, &bodies)?,
                    Some(shards.clone()),
                )
            }
        };
        Ok(Onode {
            nid: record.nid,
            size: record.size,
            flags: record.flags,
            alloc_hint: record.alloc_hint,
            xattrs: record.xattrs,
            extent_map,
            shards,
        })
    }

    /// Shard starts strictly inside `(offset, end)`: a write over the range is split there so
    /// that no new blob spans two shards.
    pub fn shard_starts_within(&self, offset: u64, end: u64) -> Vec<u64> {
        self.shards
            .iter()
            .flatten()
            .map(|s| s.logical_offset)
            .filter(|s| *s > offset && *s < end)
            .collect()
    }

    /// Puts the onode into `batch` under `onode_key`: inline, or every shard whose range
    /// changed since it was loaded or last written (resharding as sizes demand) plus the onode
    /// record, unless the record would say what `stored` (the object as its stored record
    /// has it) says already. `chunk` is the write unit (checksum chunk and allocation unit)
    /// shard boundaries are aligned to.
    pub fn write_to(
        &mut self,
        batch: &mut Batch,
        onode_key: &[u8],
        chunk: u64,
        stored: Option<&Onode>,
    ) {
        let total = self.extent_map.encoded_bytes();
        let go_inline = match &self.shards {
            None => total <= INLINE_BYTES_MAX,
            Some(_) => total <= INLINE_BYTES_MAX / 2,
        };
        if go_inline {
            if self.shards.take().is_some() {
                delete_all_shards(batch, self.nid);
            }
        } else {
            let shards = match self.shards.take() {
                Some(shards) => self.rewrite_dirty_shards(batch, shards, chunk),
                None => {
                    let boundaries = choose_boundaries(&self.extent_map, 0, u64::MAX, chunk);
                    self.write_shards(batch, &boundaries, u64::MAX)
                }
            };
            self.shards = Some(shards);
        }
        self.extent_map.clear_dirty();
        if stored.is_some_and(|stored| self.record_matches(stored)) {
            // A small overwrite of a sharded object changes shards only: its record (about
            // a kilobyte for a 4 MiB object) need not be written again. Only the shards'
            // `encoded_length` would differ, which nothing reads (FORMAT.md §5.1).
            return;
        }
        let header = OnodeHeader {
            nid: self.nid,
            size: self.size,
            flags: self.flags,
            alloc_hint: self.alloc_hint,
            xattrs: &self.xattrs,
        };
        let layout = match &self.shards {
            None => LayoutView::Inline(self.extent_map.body_view(0, u64::MAX)),
            Some(shards) => LayoutView::Sharded(shards),
        };
        batch.put(
            KeySpace::Onodes,
            onode_key.to_vec(),
            encode_onode(&header, &layout),
        );
    }

    /// Whether this onode's record, written now, would carry what `stored`'s does: the same
    /// header and a sharded map with the same shard offsets (an inline map is in the record).
    fn record_matches(&self, stored: &Onode) -> bool {
        let same_offsets = match (&self.shards, &stored.shards) {
            (Some(now), Some(before)) => {
                now.len() == before.len()
                    && now
                        .iter()
                        .zip(before)
                        .all(|(a, b)| a.logical_offset == b.logical_offset)
            }
            _ => false,
        };
        same_offsets
            && self.nid == stored.nid
            && self.size == stored.size
            && self.flags == stored.flags
            && self.alloc_hint == stored.alloc_hint
            && self.xattrs == stored.xattrs
    }

    /// Writes a shard at each boundary (the extents from it to the next boundary, or to `end`)
    /// and returns their layout entries.
    fn write_shards(&self, batch: &mut Batch, boundaries: &[u64], end: u64) -> Vec<ShardInfo> {
        let ends = boundaries.iter().skip(1).copied().chain([end]);
        boundaries
            .iter()
            .zip(ends)
            .map(|(start, end)| {
                let encoded = encode_shard_view(&self.extent_map.body_view(*start, end));
                self.put_shard(batch, *start, encoded)
            })
            .collect()
    }

    fn put_shard(&self, batch: &mut Batch, start: u64, encoded: Vec<u8>) -> ShardInfo {
        let info = ShardInfo {
            logical_offset: start,
            encoded_length: encoded.len() as u32,
        };
        batch.put(
            KeySpace::ExtentShards,
            keys::shard_key(self.nid, start).to_vec(),
            encoded,
        );
        info
    }

    /// Rewrites the shards overlapping changed ranges: an empty shard (other than the first)
    /// is dropped, an oversized one is split; the rest are written as they are.
    fn rewrite_dirty_shards(
        &self,
        batch: &mut Batch,
        old: Vec<ShardInfo>,
        chunk: u64,
    ) -> Vec<ShardInfo> {
        let dirty = self.extent_map.dirty_ranges();
        let ends: Vec<u64> = old
            .iter()
            .skip(1)
            .map(|s| s.logical_offset)
            .chain([u64::MAX])
            .collect();
        let mut layout = Vec::with_capacity(old.len());
        for (shard, end) in old.into_iter().zip(ends) {
            let start = shard.logical_offset;
            if !dirty.iter().any(|(a, b)| *a < end && *b > start) {
                layout.push(shard);
                continue;
            }
            let body = self.extent_map.body_view(start, end);
            if body.extents.is_empty() && start != 0 {
                batch.delete(
                    KeySpace::ExtentShards,
                    keys::shard_key(self.nid, start).to_vec(),
                );
                continue;
            }
            let encoded = encode_shard_view(&body);
            if encoded.len() > SHARD_BYTES_MAX {
                let boundaries = choose_boundaries(&self.extent_map, start, end, chunk);
                layout.extend(self.write_shards(batch, &boundaries, end));
            } else {
                layout.push(self.put_shard(batch, start, encoded));
            }
        }
        layout
    }

    /// Deletes the onode record and everything keyed by its nid (shards, omap).
    pub fn delete_from(&self, batch: &mut Batch, onode_key: &[u8]) {
        batch.delete(KeySpace::Onodes, onode_key.to_vec());
        let (start, end) = keys::omap_object_range(self.nid);
        batch.delete_range(KeySpace::Omap, start, end);
        delete_all_shards(batch, self.nid);
    }
}

fn delete_all_shards(batch: &mut Batch, nid: u64) {
    batch.delete_range(
        KeySpace::ExtentShards,
        keys::shard_key(nid, 0).to_vec(),
        keys::shard_key(nid + 1, 0).to_vec(),
    );
}

/// Reads and checks every shard a sharded onode lists.
fn read_shards(
    kv: &dyn Kv,
    nid: u64,
    size: u64,
    shards: &[ShardInfo],
) -> Result<Vec<ExtentMapBody>> {
    let ends = shards
        .iter()
        .skip(1)
        .map(|s| s.logical_offset)
        .chain([size]);
    shards
        .iter()
        .zip(ends)
        .map(|(shard, end)| {
            let key = keys::shard_key(nid, shard.logical_offset);
            let value = kv.get(KeySpace::ExtentShards, &key)?.ok_or_else(|| {
                Error::corruption(format!(
                    "object {nid}: shard at {:#x} missing",
                    shard.logical_offset
                ))
            })?;
            let body = decode_shard(&value)?;
            check_extents_within(&body, shard.logical_offset, end, "extent shard")?;
            Ok(body)
        })
        .collect()
}
