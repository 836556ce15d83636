//! Objects' metadata in memory: onodes, their extent maps, and the cache that holds them.
//!
//! An [`Onode`] is the decoded form of an onode record plus its extent map (inline, or loaded
//! from its shard records). It is written back whole into a KV batch by [`Onode::write_to`]:
//! the onode record, and the shard records when the map is sharded.

pub mod cache;
pub mod extent_map;
pub mod read;

use std::collections::BTreeMap;

pub use cache::{OnodeCache, OnodeSlot};
pub use extent_map::{BlobId, ExtentMap, Mapping, Piece, Released};

use crate::error::{Error, Result};
use crate::format::keys::{self, KeySpace};
use crate::format::onode::{AllocHint, ExtentMapLayout, OnodeRecord};
use crate::kv::Batch;

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
        }
    }

    /// Decodes an onode value.
    pub fn decode(value: &[u8], au_bytes: u32) -> Result<Onode> {
        let record = OnodeRecord::decode(value)?;
        let extent_map = match &record.extent_map {
            ExtentMapLayout::Inline(body) => ExtentMap::from_bodies(au_bytes, [body])?,
            ExtentMapLayout::Sharded(_) => {
                return Err(Error::corruption(format!(
                    "onode {} has a sharded extent map, which this build does not read",
                    record.nid
                )));
            }
        };
        Ok(Onode {
            nid: record.nid,
            size: record.size,
            flags: record.flags,
            alloc_hint: record.alloc_hint,
            xattrs: record.xattrs,
            extent_map,
        })
    }

    /// Puts the onode (and its extent map) into `batch` under `onode_key`.
    pub fn write_to(&self, batch: &mut Batch, onode_key: &[u8]) {
        let record = OnodeRecord {
            nid: self.nid,
            size: self.size,
            flags: self.flags,
            alloc_hint: self.alloc_hint,
            xattrs: self.xattrs.clone(),
            extent_map: ExtentMapLayout::Inline(self.extent_map.to_body(0, u64::MAX)),
        };
        batch.put(KeySpace::Onodes, onode_key.to_vec(), record.encode());
    }

    /// Deletes the onode record and everything keyed by its nid (shards, omap).
    pub fn delete_from(&self, batch: &mut Batch, onode_key: &[u8]) {
        batch.delete(KeySpace::Onodes, onode_key.to_vec());
        let (start, end) = keys::omap_object_range(self.nid);
        batch.delete_range(KeySpace::Omap, start, end);
        batch.delete_range(
            KeySpace::ExtentShards,
            keys::shard_key(self.nid, 0).to_vec(),
            keys::shard_key(self.nid + 1, 0).to_vec(),
        );
    }
}
