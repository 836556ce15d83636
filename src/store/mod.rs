//! The public facade: make, open and close a store; submit transactions; read objects.
//!
//! A [`Store`] is `Send + Sync`: share it between threads behind an `Arc`. Transactions are
//! visible to reads once submitted and durable when their commit callback fires (or when
//! [`Store::apply`] returns).

pub mod collection_stats;
pub mod export;
pub mod import;
pub mod layout;
pub mod mkfs;
#[cfg(feature = "rocksdb")]
pub mod mkfs_dir;
pub mod mount;
pub mod open;
pub mod options;
pub mod read;
pub mod salvage;
pub mod scrub;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub use export::{ExportOptions, ExportProgress, ExportReport};
pub use import::{ImportOptions, ImportProgress, ImportReport};
pub use options::{
    Background, BlockSource, DeferredPolicy, FormatOptions, JournalSize, MkfsOptions, OpenOptions,
    Work,
};
pub use read::OmapIter;
#[cfg(feature = "rocksdb")]
pub use salvage::{SalvageReport, SalvageTarget};
pub use scrub::{SCRUB_BYTES_PER_SECOND_DEFAULT, ScrubOptions, ScrubReport};

use crate::alloc::{DeviceExtent, ScoreVariant, fragmentation_score};
use crate::completion::Completion;
use crate::device::{Access, BlockDevice, DeviceInfo, IoBackend};
use crate::error::{Error, Result};
use crate::format::label::Label;
use crate::fsck::{FsckOptions, FsckReport, RepairOptions, RepairReport, fsck, fsck_with};
use crate::journal::{JournalReplay, JournalStatus};
use crate::kv::{Kv, KvIoStats};
#[cfg(feature = "rocksdb")]
use crate::kv::{KvOpenMode, RocksKv};

/// Opens the store's RocksDB (with its separate WAL directory when it has one).
#[cfg(feature = "rocksdb")]
fn open_kv(dir: &StoreDir, mode: KvOpenMode) -> Result<Arc<dyn Kv>> {
    let wal = dir.wal_if_present();
    Ok(Arc::new(RocksKv::open(&dir.db(), wal.as_deref(), mode)?))
}
use crate::txn::engine::Engine;
use crate::txn::pipeline::Pipeline;
use crate::txn::{Transaction, submit};
use layout::StoreDir;

/// Space accounting of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Statfs {
    /// Bytes of the data device the store uses.
    pub total_bytes: u64,
    /// Bytes free for new data.
    pub available_bytes: u64,
    /// Device bytes allocated to object data.
    pub allocated_bytes: u64,
    /// Logical bytes of object data (holes excluded).
    pub stored_bytes: u64,
    /// Bytes at the start of the device never allocated (label and commit journal).
    pub reserved_bytes: u64,
    /// Number of objects.
    pub object_count: u64,
}

/// How [`Store::submit_applied`] holds back a commit that came before its applied callback.
struct AppliedFirst {
    applied: bool,
    on_commit: Option<Box<dyn FnOnce(Result<()>) + Send>>,
    /// The commit's result, when it came first.
    early: Option<Result<()>>,
}

/// Objects and space of one collection or a group of them ([`Store::collection_statfs`],
/// [`Store::statfs_of`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CollectionStatfs {
    /// How many collections the figures sum.
    pub collections: u64,
    /// Number of objects.
    pub object_count: u64,
    /// Logical bytes of object data (holes excluded).
    pub stored_bytes: u64,
    /// Device bytes the objects reference. Data shared by clones counts once for each object
    /// sharing it, so a group's figure can exceed the store-wide `Statfs::allocated_bytes`.
    pub allocated_bytes: u64,
}

/// An object's omap at one commit point ([`Store::omap_get`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OmapSnapshot {
    /// The omap header, if set.
    pub header: Option<Vec<u8>>,
    /// Every entry, by key.
    pub values: std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
}

/// A page of [`Store::list_objects_range`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectListing {
    /// Object names, in byte order.
    pub objects: Vec<Vec<u8>>,
    /// The first name of the range not returned: where the next page starts (`None`: the
    /// range is done).
    pub next: Option<Vec<u8>>,
}

/// Size and space of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectStat {
    /// Logical size in bytes.
    pub size: u64,
    /// Device bytes referenced by the object.
    pub allocated_bytes: u64,
    /// Bytes of data (holes excluded).
    pub stored_bytes: u64,
    /// Bytes of the object's blobs overwritten in place whose deferred write is committed (or
    /// being committed) but not yet applied to the device.
    pub deferred_bytes: u64,
}

/// Where a piece of an object lives on the data device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtentInfo {
    /// Offset within the object.
    pub logical_offset: u64,
    /// Bytes.
    pub length: u64,
    /// Offset of the first byte on the data device.
    pub device_offset: u64,
    /// True when the space is shared with clones.
    pub shared: bool,
}

/// What the store has done since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CountersSnapshot {
    /// Transactions made durable.
    pub transactions_committed: u64,
    /// Group commits: each made a group of transactions durable with one journal record (or,
    /// without a journal, one synced KV write).
    pub group_commits: u64,
    /// Synced KV writes (one per group commit without a journal; with one, only commits too
    /// large for a record).
    pub kv_syncs: u64,
    /// Journal records written (group commits, deferred-apply deletions, seals).
    pub journal_records: u64,
    /// Bytes of journal records written.
    pub journal_bytes: u64,
    /// Commits too large for a journal record, made durable by a checkpoint and a synced KV
    /// write.
    pub journal_bypasses: u64,
    /// Device flushes.
    pub device_flushes: u64,
    /// Bytes of object data written to the device.
    pub data_bytes_written: u64,
    /// Bytes read from the data device by object reads.
    pub data_bytes_read: u64,
    /// Key and value bytes written to the KV store.
    pub kv_bytes_written: u64,
    /// What the KV store wrote to its files (log, flushes, compactions).
    pub kv_io: KvIoStats,
    /// Writes laid out as new blobs in new space.
    pub writes_new_space: u64,
    /// Writes into unused chunks of an existing blob.
    pub writes_fill_unused: u64,
    /// Overwrites of live data done in place through deferred records.
    pub writes_deferred: u64,
    /// Partial checksum chunks completed from existing data (read-modify-write).
    pub write_chunk_merges: u64,
    /// Deferred records committed and not yet applied and deleted (the queue depth, a gauge).
    pub deferred_queued_records: u64,
    /// Bytes of those records (a gauge).
    pub deferred_queued_bytes: u64,
    /// Deferred records applied to the device and deleted.
    pub deferred_records_applied: u64,
    /// Device bytes written by deferred applies, after coalescing.
    pub deferred_bytes_applied: u64,
    /// Deferred apply batches (each: device writes, one flush, one synced KV delete).
    pub deferred_batches: u64,
    /// Deferred records found and applied again when the store was mounted.
    pub deferred_records_replayed: u64,
    /// Freed bytes not yet reusable: waiting for deferred records to be applied, or for reads
    /// that began before the space was freed (a gauge).
    pub freed_bytes_waiting: u64,
    /// Device bytes read and verified by scrubs.
    pub scrub_bytes_read: u64,
    /// Chunks scrubs found failing their checksum.
    pub scrub_bad_chunks: u64,
    /// Bytes the onode caches of all collections hold (a gauge).
    pub onode_cache_bytes: u64,
    /// Their budget (`OpenOptions::onode_cache_bytes`).
    pub onode_cache_budget_bytes: u64,
    /// Object lookups the onode cache served.
    pub onode_cache_hits: u64,
    /// Object lookups that read the KV store.
    pub onode_cache_misses: u64,
}

impl CountersSnapshot {
    /// Average transactions per group commit.
    pub fn transactions_per_group(&self) -> f64 {
        if self.group_commits == 0 {
            return 0.0;
        }
        self.transactions_committed as f64 / self.group_commits as f64
    }

    /// Share of object lookups the onode cache served (0 before any lookup).
    pub fn onode_cache_hit_rate(&self) -> f64 {
        let lookups = self.onode_cache_hits + self.onode_cache_misses;
        if lookups == 0 {
            return 0.0;
        }
        self.onode_cache_hits as f64 / lookups as f64
    }
}

/// An open object store.
pub struct Store {
    engine: Arc<Engine>,
    /// The commit pipeline; `None` when the store is open read-only.
    pipeline: Option<Pipeline>,
    /// Why the device is not using io_uring, when the default backend fell back.
    io_fallback: Option<String>,
    _dir: Option<StoreDir>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Makes a new store in a directory. Refuses to overwrite a store, a file system, a
    /// partition table or any other data it recognises unless `options.force`; never removes
    /// a file the store did not make; a failed or interrupted mkfs is cleaned up by the next.
    #[cfg(feature = "rocksdb")]
    pub fn mkfs(options: &MkfsOptions) -> Result<()> {
        mkfs::mkfs(options)
    }

    /// Wipes the store in directory `path`: its label (when the device still carries the
    /// store's own label, not one another store wrote since), then its parts (the `block` link
    /// or file, RocksDB's files in `db/` and `wal/`, never unrelated files). The data device's
    /// contents beyond the label stay, unreachable.
    #[cfg(feature = "rocksdb")]
    pub fn zap(path: impl AsRef<Path>) -> Result<mkfs::ZapReport> {
        mkfs::zap(path.as_ref())
    }

    /// Zeroes the bstore label of a device or image (refusing one that has none); returns the
    /// uuid of the store it belonged to, when readable.
    #[cfg(feature = "rocksdb")]
    pub fn zap_device(path: impl AsRef<Path>) -> Result<Option<[u8; 16]>> {
        mkfs::zap_device(path.as_ref())
    }

    /// Formats an opened device and KV store (for tests and embedders managing their own).
    pub fn mkfs_on(device: &dyn BlockDevice, kv: &dyn Kv, format: &FormatOptions) -> Result<()> {
        mkfs::mkfs_on(device, kv, format)
    }

    /// Reads the label of the store in directory `path`. Takes no lock and writes nothing, so
    /// it works on a store that does not mount and on one a daemon has open.
    pub fn read_label(path: impl AsRef<Path>) -> Result<Label> {
        let dir = StoreDir::unlocked(path.as_ref())?;
        dir.require_store()?;
        Self::read_device_label(dir.block())
    }

    /// Reads the label of a data device or image directly, with no store directory.
    pub fn read_device_label(device: impl AsRef<Path>) -> Result<Label> {
        let device = open::open_device(device.as_ref(), IoBackend::Sync, Access::ReadOnly)?;
        mount::read_label(device.device.as_ref())
    }

    /// Checks the store in directory `path` without mounting it and without writing to it.
    /// The store must be stopped (fsck of a store that changes under it would report errors
    /// that are not there): an open store is `Busy`.
    #[cfg(feature = "rocksdb")]
    pub fn fsck(path: impl AsRef<Path>) -> Result<FsckReport> {
        Self::fsck_with(path, FsckOptions::default())
    }

    /// Like [`Store::fsck`], as `options` say: a deep fsck reads every referenced byte (through
    /// io_uring where the kernel allows it, so reads run at queue depth).
    #[cfg(feature = "rocksdb")]
    pub fn fsck_with(path: impl AsRef<Path>, options: FsckOptions<'_>) -> Result<FsckReport> {
        let path = path.as_ref();
        let dir = StoreDir::lock(path).map_err(|error| match error {
            Error::Busy(_) => Error::Busy(format!(
                "store {} is open by another process; fsck checks a stopped store (show-label, \
                 statfs, ls, stat and get work on a live one)",
                path.display()
            )),
            other => other,
        })?;
        dir.require_store()?;
        let backend = if options.deep {
            IoBackend::default()
        } else {
            IoBackend::Sync
        };
        let device = open::open_device(&dir.block(), backend, Access::ReadOnly)?;
        let kv = open_kv(&dir, KvOpenMode::ReadOnly)?;
        fsck_with(device.device.as_ref(), kv.as_ref(), options)
    }

    /// The commit journal of the store in directory `path` (`None` for a format-1 store), as a
    /// mount would find it: its records are replayed into memory only, so nothing is written,
    /// and a daemon may have the store open (the result is then a moment's view).
    #[cfg(feature = "rocksdb")]
    pub fn inspect_journal(path: impl AsRef<Path>) -> Result<Option<JournalStatus>> {
        let dir = StoreDir::unlocked(path.as_ref())?;
        dir.require_store()?;
        let device = open::open_device(&dir.block(), IoBackend::Sync, Access::ReadOnly)?;
        let kv = open_kv(&dir, KvOpenMode::ReadOnly)?;
        crate::journal::inspect(device.device.as_ref(), kv.as_ref())
    }

    /// Repairs the stopped store in directory `path` from its object metadata (see
    /// [`RepairOptions`]): the freelist, statistics, shared-blob counts and id counters are
    /// rebuilt, keys no object owns removed. A dry run opens everything read-only and writes
    /// nothing. An open store is `Busy`.
    #[cfg(feature = "rocksdb")]
    pub fn repair(path: impl AsRef<Path>, options: RepairOptions) -> Result<RepairReport> {
        let path = path.as_ref();
        let dir = StoreDir::lock(path).map_err(|error| match error {
            Error::Busy(_) => Error::Busy(format!(
                "store {} is open by another process; repair works on a stopped store",
                path.display()
            )),
            other => other,
        })?;
        dir.require_store()?;
        let (access, mode) = if options.dry_run {
            (Access::ReadOnly, KvOpenMode::ReadOnly)
        } else {
            (Access::ReadWrite, KvOpenMode::ReadWrite)
        };
        let device = open::open_device(&dir.block(), IoBackend::Sync, access)?;
        let kv = open_kv(&dir, mode)?;
        crate::fsck::repair(device.device.as_ref(), kv.as_ref(), options)
    }

    /// Repairs a store on an opened device and KV store that no one has mounted.
    pub fn repair_on(
        device: &dyn BlockDevice,
        kv: &dyn Kv,
        options: RepairOptions,
    ) -> Result<RepairReport> {
        crate::fsck::repair(device, kv, options)
    }

    /// Checks a store on an opened device and KV store that no one has mounted.
    pub fn fsck_on(device: &dyn BlockDevice, kv: &dyn Kv) -> Result<FsckReport> {
        fsck(device, kv)
    }

    /// Like [`Store::fsck_on`], as `options` say.
    pub fn fsck_on_with(
        device: &dyn BlockDevice,
        kv: &dyn Kv,
        options: FsckOptions<'_>,
    ) -> Result<FsckReport> {
        fsck_with(device, kv, options)
    }

    /// Opens (mounts) the store in directory `path` for reading and writing, exclusively.
    /// Deferred writes a crash left are applied before it returns.
    #[cfg(feature = "rocksdb")]
    pub fn open(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Store> {
        let dir = StoreDir::lock(path.as_ref())?;
        dir.require_store()?;
        let opened = open::open_device(&dir.block(), options.io_backend, Access::ReadWrite)?;
        mount::read_label(opened.device.as_ref())?;
        let kv = open_kv(&dir, KvOpenMode::ReadWrite)?;
        let mut store = Self::open_on(opened.device, kv, options)?;
        store.io_fallback = opened.io_fallback;
        store._dir = Some(dir);
        Ok(store)
    }

    /// Opens the store in directory `path` only to look at it: RocksDB read-only, the device
    /// `O_RDONLY`, no lock taken, nothing replayed, nothing written (reads still see deferred
    /// writes not yet applied: their records are overlaid in memory). Works beside a daemon
    /// that has the store open, showing the state of the moment it opened; a read that races
    /// the daemon's overwrites fails its checksum rather than return wrong bytes. Every call
    /// that would change the store fails with `ReadOnly`.
    #[cfg(feature = "rocksdb")]
    pub fn open_read_only(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Store> {
        let dir = StoreDir::unlocked(path.as_ref())?;
        dir.require_store()?;
        let opened = open::open_device(&dir.block(), options.io_backend, Access::ReadOnly)?;
        mount::read_label(opened.device.as_ref())?;
        let kv = open_kv(&dir, KvOpenMode::ReadOnly)?;
        let mut store = Self::open_read_only_on(opened.device, kv, options)?;
        store.io_fallback = opened.io_fallback;
        Ok(store)
    }

    /// Mounts a store on an opened device and KV store.
    pub fn open_on(
        device: Arc<dyn BlockDevice>,
        kv: Arc<dyn Kv>,
        options: &OpenOptions,
    ) -> Result<Store> {
        let engine = Arc::new(mount::mount(device, kv, options, Access::ReadWrite)?);
        let pipeline = Pipeline::start(Arc::clone(&engine))?;
        let store = Store {
            engine,
            pipeline: Some(pipeline),
            io_fallback: None,
            _dir: None,
        };
        store.remove_leftover_imports();
        Ok(store)
    }

    /// Mounts a store read-only on an opened device and KV store (see [`Store::open_read_only`]).
    pub fn open_read_only_on(
        device: Arc<dyn BlockDevice>,
        kv: Arc<dyn Kv>,
        options: &OpenOptions,
    ) -> Result<Store> {
        let engine = Arc::new(mount::mount(device, kv, options, Access::ReadOnly)?);
        Ok(Store {
            engine,
            pipeline: None,
            io_fallback: None,
            _dir: None,
        })
    }

    /// Runs one unit of background work of a stepped store (`OpenOptions::background` is
    /// [`Background::Stepped`]): `Some(n)` with the
    /// transactions or records it took (0 when it failed what a poisoned store had queued),
    /// `None` when there was no such work to do, and always `None` for a store with threads.
    /// Interleaving these calls as it likes, a simulation drives the store through every order
    /// its threads could take, the same way every time for a seed.
    pub fn step(&self, work: Work) -> Option<usize> {
        self.engine.stepper.step(work)
    }

    /// Whether the store can be changed.
    pub fn access(&self) -> Access {
        match self.pipeline {
            Some(_) => Access::ReadWrite,
            None => Access::ReadOnly,
        }
    }

    /// Why the data device uses pread/pwrite instead of io_uring, when the default backend had
    /// to fall back (`None` when io_uring is in use or another backend was asked for).
    pub fn io_fallback(&self) -> Option<&str> {
        self.io_fallback.as_deref()
    }

    fn pipeline(&self) -> Result<&Pipeline> {
        self.pipeline.as_ref().ok_or_else(|| {
            Error::ReadOnly(format!(
                "the store on {} is open read-only",
                self.engine.device.info().path.display()
            ))
        })
    }

    /// Waits until every transaction submitted before the call has finished committing: durable
    /// (or failed), its freed space back in the allocator, its deferred writes queued, the
    /// counters updated. A commit callback may run before that: it says the transaction is
    /// durable, which is all a caller needs to go on; [`Store::statfs`] and [`Store::counters`]
    /// wait for this themselves, so their accounting includes what was acknowledged.
    pub fn wait_for_commits(&self) {
        // Called from a commit callback it returns at once: the commits under way wait for
        // that callback to return.
        if crate::txn::pipeline::in_commit_callback() {
            return;
        }
        self.engine.transactions.wait_settled(self.engine.waiting());
    }

    /// Applies every deferred write committed so far and waits until it is on stable media and
    /// its record deleted (they are otherwise applied in batches, within
    /// `OpenOptions::deferred.max_delay`).
    pub fn flush_deferred(&self) -> Result<()> {
        self.pipeline()?;
        self.wait_for_commits();
        self.engine.check_poison()?;
        // A failed apply poisons the engine with the device's own error: report that one.
        self.engine
            .deferred
            .drain(&self.engine)
            .map_err(|e| self.engine.check_poison().err().unwrap_or(e))
    }

    /// Waits for every submitted transaction, applies every deferred write, and closes the store
    /// (clean umount). Fails with `Poisoned` if a write failed since open (what was
    /// acknowledged is durable regardless, and a reopen replays what was not applied).
    pub fn close(self) -> Result<()> {
        let Some(pipeline) = &self.pipeline else {
            return Ok(()); // read-only: nothing was written, nothing to put away
        };
        pipeline.shutdown();
        self.engine.check_poison()?;
        self.engine.kv.flush()
    }

    /// Submits a transaction. On `Ok`, its effects are visible to reads, and `on_commit` will be
    /// called once with `Ok` when it is durable (or with the error if the store failed first).
    /// On `Err`, nothing changed and `on_commit` is not called. `on_commit` runs on one of the
    /// store's commit threads, in commit order: it should be quick, and must not wait for the
    /// store (a callback that waits for another commit would wait for itself; `statfs` and
    /// `counters` called from one do not wait for the commits under way).
    pub fn submit(
        &self,
        txn: &Transaction,
        on_commit: impl FnOnce(Result<()>) + Send + 'static,
    ) -> Result<()> {
        submit::submit(&self.engine, self.pipeline()?, txn, Box::new(on_commit))
    }

    /// Submits a transaction with Ceph's two callbacks: `on_applied` once its effects are
    /// visible to reads, before `submit_applied` returns; `on_commit` once it is durable, never
    /// before `on_applied` has returned. (With [`Store::submit`] alone, a commit thread may run
    /// `on_commit` before the submitting thread gets `Ok` back.) `on_commit` runs on a commit
    /// thread, or on the submitting thread when the commit came first. On `Err`, nothing
    /// changed and neither is called.
    pub fn submit_applied(
        &self,
        txn: &Transaction,
        on_applied: impl FnOnce(),
        on_commit: impl FnOnce(Result<()>) + Send + 'static,
    ) -> Result<()> {
        let order = Arc::new(parking_lot::Mutex::new(AppliedFirst {
            applied: false,
            on_commit: Some(Box::new(on_commit)),
            early: None,
        }));
        let held = Arc::clone(&order);
        self.submit(txn, move |result| {
            let mut order = held.lock();
            if order.applied {
                let on_commit = order.on_commit.take();
                drop(order);
                if let Some(on_commit) = on_commit {
                    on_commit(result);
                }
            } else {
                order.early = Some(result);
            }
        })?;
        on_applied();
        let early = {
            let mut order = order.lock();
            order.applied = true;
            match (order.early.take(), order.on_commit.take()) {
                (Some(result), Some(on_commit)) => Some((on_commit, result)),
                (None, on_commit) => {
                    order.on_commit = on_commit;
                    None
                }
                (Some(_), None) => None,
            }
        };
        if let Some((on_commit, result)) = early {
            on_commit(result);
        }
        Ok(())
    }

    /// Submits several transactions as one (Ceph's `queue_transactions` with a vector of
    /// them): their ops apply in order, each seeing the ones before, and they commit together
    /// at one point, or none does. Visible on `Ok`; `on_commit` runs once, when all are
    /// durable.
    pub fn submit_all(
        &self,
        txns: impl IntoIterator<Item = Transaction>,
        on_commit: impl FnOnce(Result<()>) + Send + 'static,
    ) -> Result<()> {
        let mut all = Transaction::new();
        for txn in txns {
            all.append(txn);
        }
        self.submit(&all, on_commit)
    }

    /// Submits a transaction and waits until it is durable.
    pub fn apply(&self, txn: &Transaction) -> Result<()> {
        let completion = Arc::new(Completion::new());
        let deliver = Arc::clone(&completion);
        self.submit(txn, move |result| deliver.complete(result))?;
        completion.wait_with(self.engine.waiting())
    }

    /// Creates a collection.
    pub fn create_collection(&self, collection: impl AsRef<[u8]>) -> Result<()> {
        self.apply(Transaction::new().create_collection(collection))
    }

    /// Replaces the whole content of an object (creating it if needed) and waits until durable.
    pub fn put(
        &self,
        collection: impl AsRef<[u8]>,
        object: impl AsRef<[u8]>,
        data: &[u8],
    ) -> Result<()> {
        let (collection, object) = (collection.as_ref(), object.as_ref());
        let mut txn = Transaction::new();
        txn.touch(collection, object)
            .truncate(collection, object, 0);
        if !data.is_empty() {
            txn.write(collection, object, 0, data);
        }
        self.apply(&txn)
    }

    /// Removes an object and waits until durable.
    pub fn remove(&self, collection: impl AsRef<[u8]>, object: impl AsRef<[u8]>) -> Result<()> {
        self.apply(Transaction::new().remove(collection, object))
    }

    /// Names of all collections, in byte order.
    pub fn list_collections(&self) -> Result<Vec<Vec<u8>>> {
        self.engine.check_poison()?;
        let namespace = self.engine.collections.read();
        let visible = namespace
            .keys()
            .filter(|name| !import::is_hidden_collection(name));
        Ok(visible.cloned().collect())
    }

    /// Space accounting, including every transaction acknowledged before the call (it waits
    /// for the commits under way to finish).
    pub fn statfs(&self) -> Result<Statfs> {
        self.engine.check_poison()?;
        self.wait_for_commits();
        let stats = *self.engine.applied_stats.lock();
        Ok(Statfs {
            total_bytes: self.engine.config.device_size,
            available_bytes: self.engine.allocator.lock().free_bytes(),
            allocated_bytes: stats.allocated_bytes,
            stored_bytes: stats.stored_bytes,
            reserved_bytes: self.engine.config.reserved_bytes,
            object_count: stats.object_count,
        })
    }

    /// Every free extent of the data device, in offset order.
    pub fn free_extents(&self) -> Vec<DeviceExtent> {
        self.engine.allocator.lock().free_extents().collect()
    }

    /// Ceph's free-space fragmentation score (0: one free run, 1: every unit apart).
    pub fn fragmentation_score(&self, variant: ScoreVariant) -> f64 {
        let allocator = self.engine.allocator.lock();
        fragmentation_score(
            variant,
            allocator.unit_bytes(),
            allocator.free_extents().map(|e| e.length),
        )
    }

    /// The device label.
    pub fn label(&self) -> &Label {
        &self.engine.label
    }

    /// The data device.
    pub fn device_info(&self) -> &DeviceInfo {
        self.engine.device.info()
    }

    /// Bytes the onode caches of all collections hold together (bounded by
    /// `OpenOptions::onode_cache_bytes`, which only onodes in use may exceed).
    pub fn onode_cache_bytes(&self) -> usize {
        self.engine.onode_budget.bytes()
    }

    /// Deferred-write threshold in effect.
    pub fn prefer_deferred_size(&self) -> u32 {
        self.engine.config.prefer_deferred_size
    }

    /// The commit journal now (`None` for a format-1 store): a read-write store reports its
    /// live head and tail; a read-only one what its mount replayed into memory.
    pub fn journal_status(&self) -> Option<JournalStatus> {
        match &self.engine.journal {
            Some(journal) => Some(journal.status()),
            None => self.engine.journal_at_mount.map(|found| found.status()),
        }
    }

    /// What mount found in the commit journal and replayed (`None` for a format-1 store).
    pub fn journal_replay(&self) -> Option<JournalReplay> {
        self.engine.journal_at_mount.map(|found| found.replay)
    }

    /// What the store has done since it was opened, including every transaction acknowledged
    /// before the call (it waits for the commits under way to finish).
    pub fn counters(&self) -> CountersSnapshot {
        self.wait_for_commits();
        let c = &self.engine.counters;
        let deferred = self.engine.deferred.gauges();
        let journal = self.engine.journal.as_ref().map(|j| j.status());
        let onodes = &self.engine.onode_budget;
        let (hits, misses) = onodes.lookups();
        CountersSnapshot {
            transactions_committed: c.transactions_committed.load(Ordering::Relaxed),
            group_commits: c.group_commits.load(Ordering::Relaxed),
            kv_syncs: c.kv_syncs.load(Ordering::Relaxed),
            journal_records: journal.map_or(0, |j| j.records_written),
            journal_bytes: journal.map_or(0, |j| j.bytes_written),
            journal_bypasses: c.journal_bypasses.load(Ordering::Relaxed),
            device_flushes: c.device_flushes.load(Ordering::Relaxed),
            data_bytes_written: c.data_bytes_written.load(Ordering::Relaxed),
            data_bytes_read: c.data_bytes_read.load(Ordering::Relaxed),
            kv_bytes_written: self.engine.kv.bytes_written(),
            kv_io: self.engine.kv.io_stats(),
            writes_new_space: c.writes_new_space.load(Ordering::Relaxed),
            writes_fill_unused: c.writes_fill_unused.load(Ordering::Relaxed),
            writes_deferred: c.writes_deferred.load(Ordering::Relaxed),
            write_chunk_merges: c.write_chunk_merges.load(Ordering::Relaxed),
            deferred_queued_records: deferred.records,
            deferred_queued_bytes: deferred.bytes,
            deferred_records_applied: c.deferred_records_applied.load(Ordering::Relaxed),
            deferred_bytes_applied: c.deferred_bytes_applied.load(Ordering::Relaxed),
            deferred_batches: c.deferred_batches.load(Ordering::Relaxed),
            deferred_records_replayed: c.deferred_records_replayed.load(Ordering::Relaxed),
            freed_bytes_waiting: self.engine.deferred.held_bytes()
                + self.engine.reclaimer.pending_bytes(),
            scrub_bytes_read: c.scrub_bytes_read.load(Ordering::Relaxed),
            scrub_bad_chunks: c.scrub_bad_chunks.load(Ordering::Relaxed),
            onode_cache_bytes: onodes.bytes() as u64,
            onode_cache_budget_bytes: onodes.budget_bytes() as u64,
            onode_cache_hits: hits,
            onode_cache_misses: misses,
        }
    }
}
