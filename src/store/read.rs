//! The read side of the public API: data, size, xattrs, omap, listings.
//!
//! Metadata (size, xattrs, allocation) is served from the newest onode, which includes every
//! submitted transaction. Reads of bytes that live elsewhere — object data on the device, omap in
//! the KV store, listings of the KV store — first wait for the transactions submitted before the
//! call that touched the object (or collection) to finish, so they too see every submitted
//! transaction. A read never blocks writers: space a later transaction frees stays allocated
//! until reads that might still see it are done (see `txn::reclaim`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{ExtentInfo, ObjectListing, ObjectStat, OmapSnapshot, Store};
use crate::device::DataBuf;
use crate::error::{Error, Missing, Result};
use crate::format::keys::{self, KeySpace};
use crate::onode::{Onode, Piece};
use crate::onode::read::{finish_reads, plan_read};
use crate::txn::context::load_slot;
use crate::txn::engine::{Collection, EnginePending, display_bytes};

/// Reads of an object that keeps being overwritten in place while it is read give up after
/// this many attempts (each with a newer onode) and report the checksum mismatch.
const READ_RETRIES_MAX: u32 = 64;

/// Omap entries fetched per KV scan by [`OmapIter`].
const OMAP_PAGE_ENTRIES: usize = 256;

impl Store {
    /// Reads a whole object.
    pub fn get(&self, collection: impl AsRef<[u8]>, object: impl AsRef<[u8]>) -> Result<Vec<u8>> {
        self.read(collection, object, 0, u64::MAX)
    }

    /// Reads `length` bytes at `offset` (short at the end of the object; holes are zeros).
    pub fn read(
        &self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>> {
        self.read_buf(collection, object, offset, length)
            .map(DataBuf::into_vec)
    }

    /// [`Store::read`] without a copy where it can: a read of whole checksum chunks (4 KiB by
    /// default) that one device read serves returns the aligned buffer the device filled
    /// ([`DataBuf::Aligned`]); other reads return the bytes assembled in a `Vec`.
    pub fn read_buf(
        &self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
        offset: u64,
        length: u64,
    ) -> Result<DataBuf> {
        let mut read = self.read_snapshot(collection.as_ref(), object.as_ref(), &[(offset, length)])?;
        Ok(read.pop().unwrap_or(DataBuf::Vec(Vec::new())))
    }

    /// Several ranges `(offset, length)` of one object, each as [`Store::read`] gives it, all
    /// from the same version of the object and read from the device in one batch (Ceph's
    /// `readv`).
    pub fn read_ranges(
        &self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
        ranges: &[(u64, u64)],
    ) -> Result<Vec<Vec<u8>>> {
        let read = self.read_snapshot(collection.as_ref(), object.as_ref(), ranges)?;
        Ok(read.into_iter().map(DataBuf::into_vec).collect())
    }

    /// The ranges of one version of the object: the newest when the read began.
    fn read_snapshot(
        &self,
        collection: &[u8],
        object: &[u8],
        ranges: &[(u64, u64)],
    ) -> Result<Vec<DataBuf>> {
        self.engine.check_poison()?;
        let collection = self.engine.collection(collection)?;
        let name = format!("{}/{}", collection.display_name(), display_bytes(object));
        let mut attempts = 0;
        loop {
            let _read = self.engine.reclaimer.begin_read(&self.engine.allocator);
            let slot = collection.onodes.slot(object);
            load_slot(&self.engine, &collection, &slot, object)?;
            // The snapshot and the bytes memory holds are taken together under the slot lock:
            // a transaction installs its onode and its in-memory bytes under the same lock, so
            // this read sees both or neither (never half a transaction).
            let (onode, plans) = {
                let state = slot.lock();
                let onode = state
                    .onode
                    .clone()
                    .ok_or_else(|| not_found(&collection, object))?;
                let pending = EnginePending(&self.engine);
                let plans: Vec<_> = ranges
                    .iter()
                    .map(|&(offset, length)| plan_read(&onode, offset, length, &pending))
                    .collect();
                (onode, plans)
            };
            let result = finish_reads(self.engine.device.as_ref(), &onode, plans, &name);
            // A transaction that overwrote these chunks in place after the snapshot may have
            // put bytes the snapshot's checksums do not describe on the device. Then the onode
            // has changed too: read again from the newer one. A mismatch under an unchanged
            // onode is real.
            if let Err(Error::ChecksumMismatch { .. }) = &result {
                let (_, newest) = self.newest_onode_in(&collection, object)?;
                attempts += 1;
                if !Arc::ptr_eq(&newest, &onode) && attempts < READ_RETRIES_MAX {
                    continue;
                }
            }
            let data = result?;
            let bytes: usize = data.iter().map(|d| d.len()).sum();
            self.engine
                .counters
                .data_bytes_read
                .fetch_add(bytes as u64, Ordering::Relaxed);
            return Ok(data);
        }
    }

    /// True when the object exists; a missing collection is `NotFound`, not `false`.
    pub fn exists(&self, collection: impl AsRef<[u8]>, object: impl AsRef<[u8]>) -> Result<bool> {
        match self.newest_onode(collection.as_ref(), object.as_ref()) {
            Ok(_) => Ok(true),
            Err(Error::NotFound(Missing::Object { .. })) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Size and space of an object.
    pub fn stat(
        &self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
    ) -> Result<ObjectStat> {
        let (_, onode) = self.newest_onode(collection.as_ref(), object.as_ref())?;
        let deferred = &self.engine.deferred;
        let deferred_bytes = onode
            .extent_map
            .blobs()
            .map(|(_, blob)| deferred.pending_bytes_within(blob.device_offset, blob.length.into()))
            .sum();
        Ok(ObjectStat {
            size: onode.size,
            allocated_bytes: onode.extent_map.allocated_bytes(),
            stored_bytes: onode.extent_map.stored_bytes(),
            deferred_bytes,
        })
    }

    /// The object's data extents in logical order (holes are absent), like `fiemap`.
    pub fn fiemap(
        &self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
    ) -> Result<Vec<ExtentInfo>> {
        let (_, onode) = self.newest_onode(collection.as_ref(), object.as_ref())?;
        Ok(onode
            .extent_map
            .extents()
            .map(|(logical_offset, mapping)| {
                let blob = onode.extent_map.blob(mapping.blob);
                ExtentInfo {
                    logical_offset,
                    length: u64::from(mapping.length),
                    device_offset: blob.device_offset + u64::from(mapping.blob_offset),
                    shared: blob.shared_blob_id.is_some(),
                }
            })
            .collect())
    }

    /// The extents of `[offset, offset + length)` of an object, clipped to the range (Ceph's
    /// `fiemap` over a range); holes are left out.
    pub fn fiemap_range(
        &self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
        offset: u64,
        length: u64,
    ) -> Result<Vec<ExtentInfo>> {
        let (_, onode) = self.newest_onode(collection.as_ref(), object.as_ref())?;
        let end = offset.saturating_add(length).min(onode.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        Ok(onode
            .extent_map
            .pieces(offset, end - offset)
            .into_iter()
            .filter_map(|piece| match piece {
                Piece::Data {
                    logical_offset,
                    length,
                    blob,
                    blob_offset,
                } => {
                    let blob = onode.extent_map.blob(blob);
                    Some(ExtentInfo {
                        logical_offset,
                        length,
                        device_offset: blob.device_offset + u64::from(blob_offset),
                        shared: blob.shared_blob_id.is_some(),
                    })
                }
                Piece::Hole { .. } => None,
            })
            .collect())
    }

    /// One extended attribute; `None` when the object has no attribute of that name.
    pub fn getattr(
        &self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
        name: impl AsRef<[u8]>,
    ) -> Result<Option<Vec<u8>>> {
        let (_, onode) = self.newest_onode(collection.as_ref(), object.as_ref())?;
        Ok(onode.xattrs.get(name.as_ref()).cloned())
    }

    /// Every extended attribute.
    pub fn getattrs(
        &self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
    ) -> Result<BTreeMap<Vec<u8>, Vec<u8>>> {
        let (_, onode) = self.newest_onode(collection.as_ref(), object.as_ref())?;
        Ok(onode.xattrs.clone())
    }

    /// The omap header, if set.
    pub fn omap_get_header(
        &self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
    ) -> Result<Option<Vec<u8>>> {
        let nid = self.settled_nid(collection.as_ref(), object.as_ref())?;
        self.engine
            .kv
            .get(KeySpace::Omap, &keys::omap_header_key(nid))
    }

    /// The values of those of `keys` that are set.
    pub fn omap_get_values<K: AsRef<[u8]>>(
        &self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<BTreeMap<Vec<u8>, Vec<u8>>> {
        let nid = self.settled_nid(collection.as_ref(), object.as_ref())?;
        let mut values = BTreeMap::new();
        for key in keys {
            let key = key.as_ref();
            if let Some(value) = self
                .engine
                .kv
                .get(KeySpace::Omap, &keys::omap_value_key(nid, key))?
            {
                values.insert(key.to_vec(), value);
            }
        }
        Ok(values)
    }

    /// An object's omap header and every entry, read at one commit point (Ceph's `omap_get`):
    /// a transaction that changes both is seen whole or not at all.
    pub fn omap_get(
        &self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
    ) -> Result<OmapSnapshot> {
        let nid = self.settled_nid(collection.as_ref(), object.as_ref())?;
        let snapshot = self.engine.kv.snapshot()?;
        let header = snapshot.get(KeySpace::Omap, &keys::omap_header_key(nid))?;
        let mut values = BTreeMap::new();
        let (start, end) = (keys::omap_value_key(nid, &[]), keys::omap_values_end(nid));
        snapshot.scan(KeySpace::Omap, &start, Some(&end), &mut |key, value| {
            values.insert(keys::split_omap_key(key)?.2.to_vec(), value.to_vec());
            Ok(true)
        })?;
        Ok(OmapSnapshot { header, values })
    }

    /// Omap entries with `start <= key` (and `key < end` when given), in key order.
    ///
    /// The iterator reads in pages; it is not a snapshot: a transaction committed while it runs
    /// may or may not be seen by pages not yet read.
    pub fn omap_iter(
        &self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Result<OmapIter<'_>> {
        let nid = self.settled_nid(collection.as_ref(), object.as_ref())?;
        let end_key = match end {
            Some(end) => keys::omap_value_key(nid, end),
            None => keys::omap_values_end(nid),
        };
        Ok(OmapIter {
            store: self,
            nid,
            next_key: keys::omap_value_key(nid, start),
            end_key,
            page: Vec::new(),
            done: false,
        })
    }

    /// Up to `limit` object names of a collection, in byte order, after `start_after` if given.
    pub fn list_objects(
        &self,
        collection: impl AsRef<[u8]>,
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>> {
        self.engine.check_poison()?;
        let collection = self.engine.collection(collection.as_ref())?;
        collection.sequencer.wait_settled(self.engine.waiting());
        self.engine.check_poison()?;
        let start = match start_after {
            Some(name) => {
                let mut key = keys::onode_key(collection.id, name);
                key.push(0);
                key
            }
            None => keys::onode_key_first(collection.id),
        };
        let end = keys::onode_key_end(collection.id);
        let entries = self
            .engine
            .kv
            .scan_collect(KeySpace::Onodes, &start, Some(&end), limit)?;
        entries
            .into_iter()
            .map(|(key, _)| Ok(keys::split_onode_key(&key)?.1.to_vec()))
            .collect()
    }

    /// Up to `limit` object names of a collection in `[start, end)` (byte order; `None`: from
    /// the first, to the last), and the cursor to go on from: the first name in the range not
    /// returned (`None` when none is left). As Ceph's `collection_list(c, start, end, max, &ls,
    /// &next)`: each call's `next` is the next call's `start`.
    pub fn list_objects_range(
        &self,
        collection: impl AsRef<[u8]>,
        start: Option<&[u8]>,
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<ObjectListing> {
        self.engine.check_poison()?;
        let collection = self.engine.collection(collection.as_ref())?;
        collection.sequencer.wait_settled(self.engine.waiting());
        self.engine.check_poison()?;
        let from = match start {
            Some(name) => keys::onode_key(collection.id, name),
            None => keys::onode_key_first(collection.id),
        };
        let to = match end {
            Some(name) => keys::onode_key(collection.id, name),
            None => keys::onode_key_end(collection.id),
        };
        if from >= to {
            return Ok(ObjectListing::default());
        }
        let entries =
            self.engine
                .kv
                .scan_collect(KeySpace::Onodes, &from, Some(&to), limit.saturating_add(1))?;
        let mut objects = entries
            .into_iter()
            .map(|(key, _)| Ok(keys::split_onode_key(&key)?.1.to_vec()))
            .collect::<Result<Vec<_>>>()?;
        let next = (objects.len() > limit).then(|| objects.split_off(limit).swap_remove(0));
        Ok(ObjectListing { objects, next })
    }

    /// The newest onode (including transactions not yet durable).
    fn newest_onode(
        &self,
        collection: &[u8],
        object: &[u8],
    ) -> Result<(Arc<Collection>, Arc<Onode>)> {
        self.engine.check_poison()?;
        let collection = self.engine.collection(collection)?;
        self.newest_onode_in(&collection, object)
    }

    pub(super) fn newest_onode_in(
        &self,
        collection: &Arc<Collection>,
        object: &[u8],
    ) -> Result<(Arc<Collection>, Arc<Onode>)> {
        let slot = collection.onodes.slot(object);
        let onode = load_slot(&self.engine, collection, &slot, object)?;
        let onode = onode.ok_or_else(|| not_found(collection, object))?;
        Ok((Arc::clone(collection), onode))
    }

    /// The newest onode, once every transaction submitted before the call that touched the
    /// object has finished (so its data is on the device and its omap in the KV store).
    fn settled_onode(&self, collection: &Collection, object: &[u8]) -> Result<Arc<Onode>> {
        let slot = collection.onodes.slot(object);
        let onode = load_slot(&self.engine, collection, &slot, object)?;
        slot.wait_settled(self.engine.waiting());
        self.engine.check_poison()?;
        onode.ok_or_else(|| not_found(collection, object))
    }

    fn settled_nid(&self, collection: &[u8], object: &[u8]) -> Result<u64> {
        self.engine.check_poison()?;
        let collection = self.engine.collection(collection)?;
        Ok(self.settled_onode(&collection, object)?.nid)
    }
}

fn not_found(collection: &Collection, object: &[u8]) -> Error {
    Error::object_not_found(&collection.name(), object)
}

/// Ordered omap entries of one object, read a page at a time.
pub struct OmapIter<'a> {
    store: &'a Store,
    nid: u64,
    next_key: Vec<u8>,
    end_key: Vec<u8>,
    page: Vec<(Vec<u8>, Vec<u8>)>,
    done: bool,
}

impl OmapIter<'_> {
    /// Moves to the first entry whose key is `key` or after it (Ceph's `lower_bound`); the end
    /// bound stays.
    pub fn lower_bound(&mut self, key: &[u8]) {
        self.seek(keys::omap_value_key(self.nid, key));
    }

    /// Moves to the first entry whose key is after `key` (Ceph's `upper_bound`).
    pub fn upper_bound(&mut self, key: &[u8]) {
        let mut next = keys::omap_value_key(self.nid, key);
        next.push(0);
        self.seek(next);
    }

    fn seek(&mut self, next_key: Vec<u8>) {
        self.next_key = next_key;
        self.page.clear();
        self.done = false;
    }

    fn refill(&mut self) -> Result<()> {
        let mut entries = self.store.engine.kv.scan_collect(
            KeySpace::Omap,
            &self.next_key,
            Some(&self.end_key),
            OMAP_PAGE_ENTRIES,
        )?;
        if entries.len() < OMAP_PAGE_ENTRIES {
            self.done = true;
        }
        if let Some((last, _)) = entries.last() {
            self.next_key = last.clone();
            self.next_key.push(0);
        }
        for (key, _) in &mut entries {
            *key = keys::split_omap_key(key)?.2.to_vec();
        }
        entries.reverse();
        self.page = entries;
        Ok(())
    }
}

impl Iterator for OmapIter<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.page.is_empty()
            && !self.done
            && let Err(error) = self.refill()
        {
            self.done = true;
            return Some(Err(error));
        }
        self.page.pop().map(Ok)
    }
}
