//! Preparing a transaction: ops applied to working copies, all-or-nothing.
//!
//! A [`TxnContext`] loads each object it touches into a working copy, applies the ops in order,
//! and collects everything the commit needs: the KV batch, new data writes, space allocated and
//! released, the statistics change. Nothing shared changes until [`TxnContext::install`]; if an
//! op fails, [`TxnContext::abandon`] returns the space it allocated and the store is as before.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::engine::{Collection, Engine, IdCounters, ObjectTotals, display_bytes};
use super::pipeline::{Prepared, StatsDelta};
use super::{ObjectOp, Op, metadata};
use super::{clone, write};
use crate::alloc::{DeviceExtent, FreelistDelta};
use crate::device::{AlignedBuf, IoRequest};
use crate::error::{Error, Result};
use crate::format::journal::DataCheck;
use crate::format::keys::{self, KeySpace};
use crate::format::records::CollectionRecord;
use crate::format::shared::SharedBlobRecord;
use crate::kv::Batch;
use crate::onode::{Onode, OnodeSlot, Punched};

/// Identifies a loaded object in a transaction: (collection id, object name).
pub type ObjectKey = (u64, Vec<u8>);

/// An object being changed by the transaction.
struct WorkingObject {
    collection: Arc<Collection>,
    slot: Arc<OnodeSlot>,
    /// The object as the transaction leaves it (`None`: absent).
    onode: Option<Onode>,
    /// Whether it existed before the transaction.
    existed: bool,
    /// What its stored record says once this transaction's batch is applied, so far: the
    /// object before the transaction, `None` once the batch deletes the record (a rename
    /// away, a removal) or when there was none.
    stored: Option<Arc<Onode>>,
    /// Its share of its collection's totals before the transaction, when the collection
    /// keeps totals (`None`: it does not).
    counted_before: Option<ObjectTotals>,
}

/// A transaction being prepared.
pub struct TxnContext<'e> {
    engine: &'e Engine,
    /// Collections by name as the transaction sees them (`None`: absent).
    collections: BTreeMap<Vec<u8>, Option<Arc<Collection>>>,
    created_collections: Vec<Arc<Collection>>,
    removed_collections: Vec<Vec<u8>>,
    /// Collections renamed, with their new names, in order.
    renamed_collections: Vec<(Arc<Collection>, Vec<u8>)>,
    objects: BTreeMap<ObjectKey, WorkingObject>,
    /// Metadata changes.
    pub batch: Batch,
    freelist: FreelistDelta,
    allocated: Vec<DeviceExtent>,
    released: Vec<DeviceExtent>,
    /// New data to write, one request per allocated extent, keyed by device offset.
    pub data_writes: BTreeMap<u64, IoRequest>,
    /// The journal's data checks of those requests, by the same key, where the blob checksums
    /// already are the checks (see [`TxnContext::add_data_write`]).
    pub known_checks: BTreeMap<u64, Vec<DataCheck>>,
    /// In-place overwrites of live data, in op order: the deferred record.
    pub deferred_writes: Vec<(u64, AlignedBuf)>,
    /// Statistics change so far.
    pub stats: StatsDelta,
    ids: IdCounters,
    /// Working copies of the shared-blob records the transaction changes.
    shared: BTreeMap<u64, SharedBlobRecord>,
}

impl<'e> TxnContext<'e> {
    /// A context seeing `collections` (every collection the ops name, present or not).
    pub fn new(
        engine: &'e Engine,
        collections: BTreeMap<Vec<u8>, Option<Arc<Collection>>>,
    ) -> Self {
        TxnContext {
            engine,
            collections,
            created_collections: Vec::new(),
            removed_collections: Vec::new(),
            renamed_collections: Vec::new(),
            objects: BTreeMap::new(),
            batch: Batch::new(),
            freelist: FreelistDelta::new(),
            allocated: Vec::new(),
            released: Vec::new(),
            data_writes: BTreeMap::new(),
            known_checks: BTreeMap::new(),
            deferred_writes: Vec::new(),
            stats: StatsDelta::default(),
            ids: IdCounters::default(),
            shared: BTreeMap::new(),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &'e Engine {
        self.engine
    }

    /// Applies one op to the working state.
    pub fn apply(&mut self, op: &Op) -> Result<()> {
        match op {
            Op::CreateCollection { collection } => self.create_collection(collection),
            Op::RemoveCollection { collection } => self.remove_collection(collection),
            Op::RenameCollection {
                collection,
                new_name,
            } => self.rename_collection(collection, new_name),
            Op::SplitCollection {
                collection,
                into,
                bits,
                rem,
                hash,
            } => self.move_objects(collection, into, |name| hash.selects(name, *bits, *rem)),
            Op::MergeCollection { collection, into } => {
                self.move_objects(collection, into, |_| true)?;
                self.remove_collection(collection)
            }
            Op::Object {
                collection,
                object,
                op,
            } => {
                let key = if op.creates() {
                    self.object_or_create(collection, object)?
                } else if let ObjectOp::TryRename { .. } = op {
                    // A missing object is no error: there is nothing to rename.
                    let key = self.load(collection, object)?;
                    if self.objects[&key].onode.is_none() {
                        return Ok(());
                    }
                    key
                } else {
                    self.existing_object(collection, object)?
                };
                self.apply_object(&key, op)
            }
        }
    }

    fn apply_object(&mut self, key: &ObjectKey, op: &ObjectOp) -> Result<()> {
        match op {
            ObjectOp::Touch => Ok(()),
            ObjectOp::Write { offset, data } => {
                check_range(*offset, data.len() as u64)?;
                write::write(self, key, *offset, data)
            }
            ObjectOp::Zero { offset, length } => {
                check_range(*offset, *length)?;
                write::zero(self, key, *offset, *length)
            }
            ObjectOp::Truncate { size } => {
                check_range(*size, 0)?;
                self.truncate(key, *size)
            }
            ObjectOp::Remove => self.remove_object(key),
            ObjectOp::Rename { new_name } | ObjectOp::TryRename { new_name } => {
                let collection = self.objects[key].collection.name();
                self.move_to(key, &collection, new_name)
            }
            ObjectOp::MoveTo { collection, name } => self.move_to(key, collection, name),
            ObjectOp::SetAttrs { attrs } => metadata::set_attrs(self.onode_mut(key), attrs),
            ObjectOp::RmAttr { name } => {
                self.onode_mut(key).xattrs.remove(name);
                Ok(())
            }
            ObjectOp::RmAttrs => {
                self.onode_mut(key).xattrs.clear();
                Ok(())
            }
            ObjectOp::SetAllocHint(hint) => {
                self.onode_mut(key).alloc_hint = *hint;
                Ok(())
            }
            ObjectOp::Clone { target } => clone::clone_object(self, key, target),
            ObjectOp::CloneRange {
                offset,
                length,
                target,
                target_offset,
            } => {
                check_range(*offset, *length)?;
                check_range(*target_offset, *length)?;
                let ranges = (*offset, *length, *target_offset);
                clone::clone_range(self, key, ranges, target)
            }
            ObjectOp::OmapSetKeys { .. }
            | ObjectOp::OmapRmKeys { .. }
            | ObjectOp::OmapRmKeyRange { .. }
            | ObjectOp::OmapClear
            | ObjectOp::OmapSetHeader { .. } => {
                let onode = self.objects.get_mut(key).and_then(|o| o.onode.as_mut());
                let onode = onode.expect("checked to exist");
                metadata::apply_omap(&mut self.batch, onode, op)
            }
        }
    }

    fn collection(&self, name: &[u8]) -> Result<Arc<Collection>> {
        self.collections
            .get(name)
            .cloned()
            .flatten()
            .ok_or_else(|| Error::collection_not_found(name))
    }

    fn create_collection(&mut self, name: &[u8]) -> Result<()> {
        if self.collections.get(name).is_some_and(Option::is_some) {
            return Err(Error::AlreadyExists(format!(
                "collection {}",
                display_bytes(name)
            )));
        }
        let id = {
            let mut ids = self.engine.ids.lock();
            ids.cid_last += 1;
            ids.cid_last
        };
        self.ids.cid_last = self.ids.cid_last.max(id);
        let collection = Arc::new(Collection::new(
            id,
            name.to_vec(),
            &self.engine.onode_budget,
        ));
        self.batch.put(
            KeySpace::Collections,
            name,
            CollectionRecord { collection_id: id }.encode(),
        );
        self.collections
            .insert(name.to_vec(), Some(Arc::clone(&collection)));
        self.created_collections.push(collection);
        Ok(())
    }

    fn remove_collection(&mut self, name: &[u8]) -> Result<()> {
        let collection = self.collection(name)?;
        if self.is_renamed(&collection) {
            return Err(renamed_and_changed(name));
        }
        if self.holds_objects(&collection)? {
            return Err(Error::NotEmpty(format!(
                "collection {}",
                display_bytes(name)
            )));
        }
        self.batch.delete(KeySpace::Collections, name);
        self.collections.insert(name.to_vec(), None);
        self.created_collections.retain(|c| c.id != collection.id);
        self.removed_collections.push(name.to_vec());
        Ok(())
    }

    /// Moves the collection's record to `new_name`: its id, and so the keys of its objects,
    /// stay, and so does its in-memory state (the one `Collection`, renamed at install), so
    /// readers holding it go on seeing its newest objects. Its objects may not be changed in
    /// the same transaction, before or after.
    fn rename_collection(&mut self, name: &[u8], new_name: &[u8]) -> Result<()> {
        let collection = self.collection(name)?;
        if name == new_name {
            return Ok(());
        }
        if self.collections.get(new_name).is_some_and(Option::is_some) {
            return Err(Error::AlreadyExists(format!(
                "collection {}",
                display_bytes(new_name)
            )));
        }
        if self.objects.keys().any(|(id, _)| *id == collection.id) {
            return Err(renamed_and_changed(name));
        }
        let record = CollectionRecord {
            collection_id: collection.id,
        };
        self.batch.delete(KeySpace::Collections, name);
        self.batch
            .put(KeySpace::Collections, new_name, record.encode());
        self.collections.insert(name.to_vec(), None);
        self.collections
            .insert(new_name.to_vec(), Some(Arc::clone(&collection)));
        self.renamed_collections
            .push((collection, new_name.to_vec()));
        Ok(())
    }

    /// Moves the objects of collection `from` that `select` picks into `into`, each under its
    /// own name (a split or merge). Each is a [`TxnContext::move_to`]: one onode key changes.
    fn move_objects(
        &mut self,
        from: &[u8],
        into: &[u8],
        select: impl Fn(&[u8]) -> bool,
    ) -> Result<()> {
        let source = self.collection(from)?;
        self.collection(into)?;
        for name in self.object_names(&source)? {
            if select(&name) {
                let key = self.existing_object(from, &name)?;
                self.move_to(&key, into, &name)?;
            }
        }
        Ok(())
    }

    /// The names of the collection's objects as this transaction leaves them so far. Like
    /// [`TxnContext::holds_objects`], it waits for the collection's transactions in flight
    /// (none can start: the submit holds its prepare lock or the namespace), after which the
    /// KV store is current.
    fn object_names(&self, collection: &Collection) -> Result<Vec<Vec<u8>>> {
        collection.sequencer.wait_settled(self.engine.waiting());
        let mut names: std::collections::BTreeSet<Vec<u8>> =
            stored_object_names(self.engine, collection)?.into_iter().collect();
        for ((id, name), object) in &self.objects {
            if *id != collection.id {
                continue;
            }
            match object.onode {
                Some(_) => names.insert(name.clone()),
                None => names.remove(name),
            };
        }
        Ok(names.into_iter().collect())
    }

    fn is_renamed(&self, collection: &Collection) -> bool {
        self.renamed_collections
            .iter()
            .any(|(renamed, _)| renamed.id == collection.id)
    }

    /// Whether the collection has any object once this transaction's changes are counted.
    /// Called with the namespace held exclusively, so no other transaction can start on it;
    /// those in flight are waited for, after which the KV store is current.
    fn holds_objects(&self, collection: &Collection) -> Result<bool> {
        let working = |name: &[u8]| self.objects.get(&(collection.id, name.to_vec()));
        if self
            .objects
            .iter()
            .any(|((id, _), object)| *id == collection.id && object.onode.is_some())
        {
            return Ok(true);
        }
        collection.sequencer.wait_settled(self.engine.waiting());
        let mut found = false;
        let start = keys::onode_key_first(collection.id);
        let end = keys::onode_key_end(collection.id);
        self.engine
            .kv
            .scan(KeySpace::Onodes, &start, Some(&end), &mut |key, _| {
                let (_, name) = keys::split_onode_key(key)?;
                let removed_here = working(name).is_some_and(|o| o.onode.is_none());
                found = !removed_here;
                Ok(!found)
            })?;
        Ok(found)
    }

    /// Loads (once) the working copy of an object; returns its key in `objects`.
    pub(super) fn load(&mut self, collection_name: &[u8], name: &[u8]) -> Result<ObjectKey> {
        let collection = self.collection(collection_name)?;
        if self.is_renamed(&collection) {
            return Err(renamed_and_changed(collection_name));
        }
        let key = (collection.id, name.to_vec());
        if !self.objects.contains_key(&key) {
            let slot = collection.onodes.slot(name);
            let onode = load_slot(self.engine, &collection, &slot, name)?;
            let counted = collection.totals.lock().is_some();
            let counted_before = counted
                .then(|| onode.as_deref().map(ObjectTotals::of).unwrap_or_default());
            self.objects.insert(
                key.clone(),
                WorkingObject {
                    collection,
                    slot,
                    onode: onode.as_deref().cloned(),
                    existed: onode.is_some(),
                    stored: onode,
                    counted_before,
                },
            );
        }
        Ok(key)
    }

    fn existing_object(&mut self, collection: &[u8], name: &[u8]) -> Result<ObjectKey> {
        let key = self.load(collection, name)?;
        if self.objects[&key].onode.is_none() {
            return Err(Error::object_not_found(collection, name));
        }
        Ok(key)
    }

    pub(super) fn object_or_create(&mut self, collection: &[u8], name: &[u8]) -> Result<ObjectKey> {
        let key = self.load(collection, name)?;
        if self.objects[&key].onode.is_none() {
            let onode = Onode::new(self.new_nid(), self.engine.config.min_alloc_size);
            self.objects.get_mut(&key).expect("loaded above").onode = Some(onode);
        }
        Ok(key)
    }

    /// The working onode of a loaded, existing object.
    pub fn onode(&self, key: &ObjectKey) -> &Onode {
        self.objects
            .get(key)
            .and_then(|o| o.onode.as_ref())
            .expect("ops load and check the object first")
    }

    /// The working onode of a loaded, existing object, for changing it.
    pub fn onode_mut(&mut self, key: &ObjectKey) -> &mut Onode {
        self.objects
            .get_mut(key)
            .and_then(|o| o.onode.as_mut())
            .expect("ops load and check the object first")
    }

    /// Whether a loaded object exists as the transaction leaves it so far.
    pub fn exists(&self, key: &ObjectKey) -> bool {
        self.objects.get(key).is_some_and(|o| o.onode.is_some())
    }

    /// Waits until every transaction submitted earlier on the object's collection finished, so
    /// the KV store holds everything they wrote (the object may have had other names in them).
    pub fn wait_collection_settled(&self, key: &ObjectKey) {
        self.objects[key]
            .collection
            .sequencer
            .wait_settled(self.engine.waiting());
    }

    /// Name of the collection of a loaded object.
    pub fn collection_name(&self, key: &ObjectKey) -> Vec<u8> {
        self.objects[key].collection.name()
    }

    /// Replaces the (absent) object `key` with `onode`.
    pub fn put_onode(&mut self, key: &ObjectKey, onode: Onode) {
        let object = self.objects.get_mut(key).expect("loaded");
        assert!(object.onode.is_none(), "replacing a live object");
        object.onode = Some(onode);
    }

    /// A fresh object id.
    pub fn new_nid(&mut self) -> u64 {
        let nid = {
            let mut ids = self.engine.ids.lock();
            ids.nid_last += 1;
            ids.nid_last
        };
        self.ids.nid_last = self.ids.nid_last.max(nid);
        nid
    }

    /// Registers a new shared blob with its first reference counts; returns its id.
    pub fn new_shared_blob(&mut self, record: SharedBlobRecord) -> u64 {
        let sbid = {
            let mut ids = self.engine.ids.lock();
            ids.sbid_last += 1;
            ids.sbid_last
        };
        self.ids.sbid_last = self.ids.sbid_last.max(sbid);
        self.shared.insert(sbid, record);
        sbid
    }

    /// The working copy of shared blob `sbid`'s record: this transaction's, else the newest
    /// an earlier transaction installed, else the KV store's.
    pub fn shared_record(&mut self, sbid: u64) -> Result<&mut SharedBlobRecord> {
        if !self.shared.contains_key(&sbid) {
            let record = load_shared_record(self.engine, sbid)?;
            self.shared.insert(sbid, record);
        }
        Ok(self.shared.get_mut(&sbid).expect("inserted above"))
    }

    /// Drops one reference to each allocation unit of `extent` in shared blob `sbid`; returns
    /// the units nothing references any more.
    fn drop_shared_references(
        &mut self,
        sbid: u64,
        extent: DeviceExtent,
    ) -> Result<Vec<DeviceExtent>> {
        let record = self.shared_record(sbid)?;
        let unit = u64::from(record.unit_bytes());
        let mut freed = Vec::new();
        let mut offset = extent.offset;
        while offset < extent.end() {
            let index = offset
                .checked_sub(record.device_offset)
                .map(|within| (within / unit) as usize)
                .filter(|index| *index < record.refs.len());
            let count = index.and_then(|i| record.refs[i].checked_sub(1));
            let (Some(index), Some(count)) = (index, count) else {
                return Err(Error::corruption(format!(
                    "shared blob {sbid}: the unit at {offset:#x} is released more often than \
                     it is referenced"
                )));
            };
            record.refs[index] = count;
            if count == 0 {
                freed.push(DeviceExtent::new(offset, unit));
            }
            offset += unit;
        }
        Ok(freed)
    }

    /// Printable `collection/object` for messages.
    pub fn object_name(&self, key: &ObjectKey) -> String {
        let collection = &self.objects[key].collection;
        format!("{}/{}", collection.display_name(), display_bytes(&key.1))
    }

    /// The object's slot (for waiting on earlier transactions before reading its data).
    pub fn slot(&self, key: &ObjectKey) -> Arc<OnodeSlot> {
        Arc::clone(&self.objects[key].slot)
    }

    fn truncate(&mut self, key: &ObjectKey, size: u64) -> Result<()> {
        let onode = self.onode_mut(key);
        if size < onode.size {
            let old_size = onode.size;
            let punched = onode.extent_map.punch(size, old_size - size);
            self.release(punched)?;
        }
        self.onode_mut(key).size = size;
        Ok(())
    }

    /// Moves an object to a new name in its collection. The onode keeps its nid, so its omap
    /// and extent shards stay where they are; only the onode key changes.
    /// Moves the object to `new_name` in `collection` (its own, or another): its onode record
    /// changes key; its shards, omap and blobs are keyed by its nid and stay where they are.
    fn move_to(&mut self, key: &ObjectKey, collection: &[u8], new_name: &[u8]) -> Result<()> {
        let target = self.load(collection, new_name)?;
        if target == *key {
            return Ok(());
        }
        if self.objects[&target].onode.is_some() {
            return Err(Error::AlreadyExists(format!(
                "object {}/{}",
                self.objects[&target].collection.display_name(),
                display_bytes(new_name)
            )));
        }
        let onode = self.take_onode(key);
        self.batch
            .delete(KeySpace::Onodes, keys::onode_key(key.0, &key.1));
        self.objects.get_mut(&target).expect("loaded above").onode = Some(onode);
        Ok(())
    }

    /// Takes an existing object's onode out of its name, whose stored record the caller
    /// deletes.
    fn take_onode(&mut self, key: &ObjectKey) -> Onode {
        let object = self.objects.get_mut(key).expect("loaded");
        object.stored = None;
        object.onode.take().expect("checked")
    }

    pub(super) fn remove_object(&mut self, key: &ObjectKey) -> Result<()> {
        let mut onode = self.take_onode(key);
        let punched = onode.extent_map.punch(0, u64::MAX);
        self.release(punched)?;
        onode.delete_from(&mut self.batch, &keys::onode_key(key.0, &key.1));
        Ok(())
    }

    /// Allocates `bytes` of new space for this transaction (recorded for rollback and in the
    /// freelist delta).
    pub fn allocate(&mut self, bytes: u64) -> Result<Vec<DeviceExtent>> {
        let mut attempt = self.engine.allocator.lock().allocate(bytes);
        if attempt.is_err() && self.engine.deferred.holds_space() {
            // Freed space may be waiting only for deferred records to be applied: apply them
            // now rather than fail a write the device has room for.
            self.engine.deferred.drain(self.engine)?;
            attempt = self.engine.allocator.lock().allocate(bytes);
        }
        let extents = attempt.map_err(|e| Error::NoSpace {
            requested_bytes: e.requested_bytes,
            available_bytes: e.available_bytes,
        })?;
        let geometry = self
            .engine
            .config
            .freelist_geometry(&self.engine.superblock);
        for extent in &extents {
            self.freelist.flip(&geometry, *extent);
            self.stats.allocated_bytes += extent.length as i64;
        }
        self.allocated.extend_from_slice(&extents);
        Ok(extents)
    }

    /// Accounts for a punch: unmapped bytes leave the statistics, and space the object stopped
    /// referencing is freed in the freelist with this commit and returned to the allocator
    /// after it.
    /// Space of a shared blob is freed only when its last reference goes.
    pub fn release(&mut self, punched: Punched) -> Result<()> {
        self.stats.stored_bytes -= punched.unmapped_bytes as i64;
        let geometry = self
            .engine
            .config
            .freelist_geometry(&self.engine.superblock);
        for item in punched.released {
            let freed = match item.shared_blob_id {
                None => vec![item.extent],
                Some(sbid) => self.drop_shared_references(sbid, item.extent)?,
            };
            for extent in freed {
                self.freelist.flip(&geometry, extent);
                self.stats.allocated_bytes -= extent.length as i64;
                self.released.push(extent);
            }
        }
        Ok(())
    }

    /// Gives back everything allocated: the transaction is abandoned and nothing changed.
    pub fn abandon(self) {
        // Ids handed out stay used (they are never reused); only space needs returning.
        if !self.allocated.is_empty() {
            self.engine.allocator.lock().release(&self.allocated);
        }
    }

    /// Makes the transaction visible: new onodes into their slots, collections into the
    /// namespace. Returns what the pipeline needs to commit it.
    pub fn install(
        mut self,
        namespace: Option<&mut BTreeMap<Vec<u8>, Arc<Collection>>>,
    ) -> Prepared {
        let mut touched: BTreeMap<u64, Arc<Collection>> = BTreeMap::new();
        let changes_namespace = !self.created_collections.is_empty()
            || !self.removed_collections.is_empty()
            || !self.renamed_collections.is_empty();
        assert!(
            !changes_namespace || namespace.is_some(),
            "namespace changes are installed with the namespace held"
        );
        if let Some(namespace) = namespace {
            for name in &self.removed_collections {
                if let Some(removed) = namespace.remove(name) {
                    touched.insert(removed.id, removed);
                }
            }
            for (collection, new_name) in &self.renamed_collections {
                namespace.remove(&collection.name());
                collection.rename(new_name.clone());
                namespace.insert(new_name.clone(), Arc::clone(collection));
                touched.insert(collection.id, Arc::clone(collection));
            }
            for collection in &self.created_collections {
                namespace.insert(collection.name(), Arc::clone(collection));
                touched.insert(collection.id, Arc::clone(collection));
            }
        }
        let mut slots = Vec::with_capacity(self.objects.len());
        let mut installs = Vec::with_capacity(self.objects.len());
        for ((collection_id, name), object) in std::mem::take(&mut self.objects) {
            let mut object = object;
            if let Some(onode) = &mut object.onode {
                let chunk = u64::from(self.engine.config.write_unit());
                onode.write_to(
                    &mut self.batch,
                    &keys::onode_key(collection_id, &name),
                    chunk,
                    object.stored.as_deref(),
                );
            }
            self.stats.object_count +=
                i64::from(object.onode.is_some()) - i64::from(object.existed);
            if let Some(before) = object.counted_before {
                let after = object.onode.as_ref().map(ObjectTotals::of);
                if let Some(totals) = object.collection.totals.lock().as_mut() {
                    totals.replace(before, after.unwrap_or_default());
                }
            }
            slots.push(object.slot);
            installs.push((Arc::clone(&object.collection), name, object.onode));
            touched.insert(collection_id, object.collection);
        }
        self.freelist.write_to(&mut self.batch);
        self.install_shared_records();
        // The new onodes and their deferred bytes become visible together: with every slot
        // locked (in key order, so two installs cannot deadlock), a reader sees either the old
        // onode and no new bytes, or both. One that snapshotted the old onode before and then
        // meets the new bytes finds its onode replaced and retries (see `Store::read`).
        let mut states: Vec<_> = slots.iter().map(|slot| slot.lock()).collect();
        let (data_writes, inflight_offsets) = self.register_inflight();
        let deferred = (!self.deferred_writes.is_empty()).then(|| {
            let writes = std::mem::take(&mut self.deferred_writes);
            self.engine.deferred.stage(writes, &mut self.batch)
        });
        let objects = slots.iter().zip(installs).zip(states.iter_mut());
        for ((slot, (collection, name, onode)), state) in objects {
            // The version this one replaces goes first: once no reader holds it either, the
            // new version's blob table is no longer shared and settles in place.
            drop(state.onode.take());
            let onode = onode.map(|mut onode| {
                onode.extent_map.settle();
                Arc::new(onode)
            });
            collection.onodes.store(slot, state, &name, onode);
            state.submitted += 1;
        }
        drop(states);
        self.stats.apply_to(&mut self.engine.applied_stats.lock());
        let collections: Vec<Arc<Collection>> = touched.into_values().collect();
        for collection in &collections {
            collection.sequencer.submit_one();
        }
        Prepared {
            batch: self.batch,
            data_writes,
            released: self.released,
            stats_delta: self.stats,
            ids: self.ids,
            slots,
            collections,
            changes_namespace,
            on_commit: None,
            submitted: Instant::now(),
            inflight_offsets,
            deferred,
            known_checks: self.known_checks,
            data_checks: Vec::new(),
        }
    }
}

impl TxnContext<'_> {
    /// Adds a new data write, with its journal data checks when the caller already has them.
    pub fn add_data_write(&mut self, request: IoRequest, checks: Option<Vec<DataCheck>>) {
        let offset = request.device_offset;
        match checks {
            Some(checks) => self.known_checks.insert(offset, checks),
            None => self.known_checks.remove(&offset),
        };
        self.data_writes.insert(offset, request);
    }

    /// Registers the new data buffers as in flight, readable from memory until the commit
    /// finishes (called with the objects' slots locked, before the onodes that map them become
    /// visible); returns device writes sharing the buffers, and their offsets.
    fn register_inflight(&mut self) -> (Vec<IoRequest>, Vec<u64>) {
        let writes = std::mem::take(&mut self.data_writes);
        let mut offsets = Vec::with_capacity(writes.len());
        let requests = writes
            .into_values()
            .map(|request| {
                let buf = request.buf.into_shared();
                self.engine
                    .inflight
                    .insert(request.device_offset, Arc::clone(&buf));
                offsets.push(request.device_offset);
                IoRequest::write_shared(request.device_offset, buf)
            })
            .collect();
        (requests, offsets)
    }

    /// Puts the changed shared-blob records in the batch (deleting those nothing references)
    /// and makes them the newest versions later transactions see.
    fn install_shared_records(&mut self) {
        let mut newest = self.engine.shared_blobs.lock();
        for (sbid, record) in std::mem::take(&mut self.shared) {
            let key = keys::shared_blob_key(sbid);
            if record.is_unreferenced() {
                self.batch.delete(KeySpace::SharedBlobs, key);
                newest.remove(&sbid);
            } else {
                self.batch.put(KeySpace::SharedBlobs, key, record.encode());
                newest.insert(sbid, Arc::new(record));
            }
        }
    }
}

/// The newest version of a shared-blob record.
fn load_shared_record(engine: &Engine, sbid: u64) -> Result<SharedBlobRecord> {
    if let Some(record) = engine.shared_blobs.lock().get(&sbid) {
        return Ok((**record).clone());
    }
    let value = engine
        .kv
        .get(KeySpace::SharedBlobs, &keys::shared_blob_key(sbid))?
        .ok_or_else(|| Error::corruption(format!("shared blob {sbid} has no record")))?;
    SharedBlobRecord::decode(&value)
        .map_err(|e| Error::corruption(format!("shared blob {sbid}: {e}")))
}

/// The newest version of an object: from its slot, loading it from the KV store on first use.
pub fn load_slot(
    engine: &Engine,
    collection: &Collection,
    slot: &OnodeSlot,
    name: &[u8],
) -> Result<Option<Arc<Onode>>> {
    let mut state = slot.lock();
    collection.onodes.count_lookup(state.loaded);
    if !state.loaded {
        let key = keys::onode_key(collection.id, name);
        let onode = match engine.kv.get(KeySpace::Onodes, &key)? {
            Some(value) => {
                let decoded =
                    Onode::decode(engine.kv.as_ref(), &value, engine.config.min_alloc_size)
                        .map_err(|e| {
                            Error::corruption(format!(
                                "object {}/{}: {e}",
                                collection.display_name(),
                                display_bytes(name)
                            ))
                        })?;
                Some(Arc::new(decoded))
            }
            None => None,
        };
        collection.onodes.store(slot, &mut state, name, onode);
    }
    Ok(state.onode.clone())
}

/// The names of the collection's objects the KV store holds, in byte order (current once the
/// caller has waited for the collection's transactions in flight).
pub fn stored_object_names(engine: &Engine, collection: &Collection) -> Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    let start = keys::onode_key_first(collection.id);
    let end = keys::onode_key_end(collection.id);
    engine
        .kv
        .scan(KeySpace::Onodes, &start, Some(&end), &mut |key, _| {
            names.push(keys::split_onode_key(key)?.1.to_vec());
            Ok(true)
        })?;
    Ok(names)
}

/// Rejects ranges past the maximum object size.
fn check_range(offset: u64, length: u64) -> Result<()> {
    let end = offset.saturating_add(length);
    if end > crate::format::OBJECT_SIZE_MAX {
        return Err(Error::TooBig {
            end_offset: end,
            size_max: crate::format::OBJECT_SIZE_MAX,
        });
    }
    Ok(())
}

fn renamed_and_changed(name: &[u8]) -> Error {
    Error::invalid(format!(
        "collection {} is renamed in a transaction that also changes it otherwise",
        display_bytes(name)
    ))
}
