//! The engines a benchmark drives: bstore itself, and the two alternatives users pick today.
//!
//! - `bstore`: the public API; every write is a transaction, durable when it returns.
//! - `rocksdb`: objects as values in RocksDB, one key per 4 KiB block (so a small write does not
//!   rewrite a whole object), BlobDB on (block values go to blob files), synced writes. Partial
//!   block writes read, modify and write the block.
//! - `files`: one file per object on the host file system, FileStore-style: `pwrite` then
//!   `fdatasync`; creating or removing a file also syncs the directory. No omap.
//!
//! Every write returns only when durable, so the engines are compared on the same promise.

use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bstore::device::AlignedBuf;
use bstore::{Error, Store, Transaction};
use rocksdb::{DB, Options, WriteBatch, WriteOptions, statistics::Ticker};

use super::osd;
use super::workload::Measured;
use crate::output::error_text;

/// Bytes written so far, by destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineBytes {
    /// Object data written to its device (or blob files, or object files).
    pub data: u64,
    /// Metadata written (commit journal, KV log, tables, compactions).
    pub metadata: u64,
    /// Transactions committed (bstore only).
    pub transactions: u64,
    /// Group commits (bstore only).
    pub group_commits: u64,
}

/// What a workload can ask of an engine. Objects are numbered; every call is durable on return.
pub trait BenchEngine: Send + Sync {
    /// Short name for reports.
    fn name(&self) -> &'static str;
    /// Replaces an object's content.
    fn put(&self, object: &str, data: &[u8]) -> Result<(), String>;
    /// [`BenchEngine::put`] of a buffer the engine may keep a reference to instead of copying.
    fn put_shared(&self, object: &str, data: &Arc<AlignedBuf>) -> Result<(), String> {
        self.put(object, data)
    }
    /// Writes `data` at `offset` of an existing object.
    fn write(&self, object: &str, offset: u64, data: &[u8]) -> Result<(), String>;
    /// Reads `length` bytes at `offset`.
    fn read(&self, object: &str, offset: u64, length: usize) -> Result<usize, String>;
    /// Removes an object.
    fn remove(&self, object: &str) -> Result<(), String>;
    /// Sets omap keys of an object; `None` when the engine has no omap.
    fn omap_set(&self, object: &str, pairs: &[(Vec<u8>, Vec<u8>)]) -> Option<Result<(), String>>;
    /// Makes `target` a copy of `source` and writes `data` at `offset` of the copy, in one
    /// transaction; `None` when the engine cannot clone.
    fn clone_and_write(
        &self,
        _source: &str,
        _target: &str,
        _offset: u64,
        _data: &[u8],
    ) -> Option<Result<(), String>> {
        None
    }
    /// Prepares `osd-bench` (its objects, written whole); `None` when the engine has none.
    fn prepare_osd_bench(&self, _data: &[u8]) -> Option<Result<(), String>> {
        None
    }
    /// Runs `osd-bench`; `None` when the engine has none.
    fn osd_bench(&self, _seed: u64) -> Option<Result<Measured, String>> {
        None
    }
    /// Removes what `osd-bench` wrote.
    fn clean_up_osd_bench(&self) -> Result<(), String> {
        Ok(())
    }
    /// Bytes written so far.
    fn bytes(&self) -> EngineBytes;
    /// The bstore store, when this engine is bstore.
    fn store(&self) -> Option<&Store> {
        None
    }
    /// Fraction of capacity in use, when the engine knows its capacity.
    fn fill_ratio(&self) -> Option<f64> {
        None
    }
    /// Ceph's free-space fragmentation score, for bstore.
    fn free_score(&self) -> Option<f64> {
        None
    }
    /// Flushes and closes (nothing to do for engines that sync every write).
    fn close(self: Box<Self>) -> Result<(), String> {
        Ok(())
    }
}

/// bstore through its public API. Objects are spread over collections by a hash of their name,
/// as a Ceph OSD spreads objects over placement groups: transactions on one collection are
/// prepared one at a time, so a single collection would measure one PG, not a store.
pub struct BstoreEngine {
    store: Store,
    collections: Vec<String>,
}

impl BstoreEngine {
    /// Uses `store`, creating `collections` benchmark collections.
    pub fn new(store: Store, collections: usize) -> Result<Self, String> {
        let names: Vec<String> = (0..collections.max(1))
            .map(|i| format!("bstool-bench-{i:02}"))
            .collect();
        for name in &names {
            match store.create_collection(name) {
                Ok(()) | Err(Error::AlreadyExists(_)) => {}
                Err(e) => return Err(error_text(e)),
            }
        }
        Ok(BstoreEngine {
            store,
            collections: names,
        })
    }

    /// The collection holding `object` (FNV-1a of the name).
    fn collection(&self, object: &str) -> &str {
        let hash = object.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x1000_0000_01b3)
        });
        &self.collections[(hash % self.collections.len() as u64) as usize]
    }

    fn apply(&self, txn: &Transaction) -> Result<(), String> {
        self.store.apply(txn).map_err(error_text)
    }
}

impl BenchEngine for BstoreEngine {
    fn name(&self) -> &'static str {
        "bstore"
    }

    fn put(&self, object: &str, data: &[u8]) -> Result<(), String> {
        let c = self.collection(object);
        let mut txn = Transaction::new();
        txn.touch(c, object)
            .truncate(c, object, 0)
            .write(c, object, 0, data);
        self.apply(&txn)
    }

    /// The device writes `data` itself where the object's new space takes it whole.
    fn put_shared(&self, object: &str, data: &Arc<AlignedBuf>) -> Result<(), String> {
        let c = self.collection(object);
        let mut txn = Transaction::new();
        txn.touch(c, object)
            .truncate(c, object, 0)
            .write_aligned(c, object, 0, Arc::clone(data));
        self.apply(&txn)
    }

    fn write(&self, object: &str, offset: u64, data: &[u8]) -> Result<(), String> {
        self.apply(Transaction::new().write(self.collection(object), object, offset, data))
    }

    fn read(&self, object: &str, offset: u64, length: usize) -> Result<usize, String> {
        self.store
            .read(self.collection(object), object, offset, length as u64)
            .map(|data| data.len())
            .map_err(error_text)
    }

    fn remove(&self, object: &str) -> Result<(), String> {
        self.apply(Transaction::new().remove(self.collection(object), object))
    }

    fn omap_set(&self, object: &str, pairs: &[(Vec<u8>, Vec<u8>)]) -> Option<Result<(), String>> {
        let mut txn = Transaction::new();
        let c = self.collection(object);
        txn.touch(c, object)
            .omap_setkeys(c, object, pairs.iter().cloned());
        Some(self.apply(&txn))
    }

    fn store(&self) -> Option<&Store> {
        Some(&self.store)
    }

    fn prepare_osd_bench(&self, data: &[u8]) -> Option<Result<(), String>> {
        Some(osd::prepare(&self.store, data))
    }

    fn osd_bench(&self, seed: u64) -> Option<Result<Measured, String>> {
        Some(osd::run(&self.store, seed))
    }

    fn clean_up_osd_bench(&self) -> Result<(), String> {
        osd::clean_up(&self.store)
    }

    fn clone_and_write(
        &self,
        source: &str,
        target: &str,
        offset: u64,
        data: &[u8],
    ) -> Option<Result<(), String>> {
        // The copy lives in its source's collection (clones never cross collections).
        let c = self.collection(source);
        let mut txn = Transaction::new();
        txn.clone_object(c, source, target)
            .write(c, target, offset, data.to_vec());
        Some(self.apply(&txn))
    }

    fn bytes(&self) -> EngineBytes {
        // Deferred writes still queued are part of the work done: apply them first so their
        // device bytes count (the benchmark reads this after its timed window).
        let _ = self.store.flush_deferred();
        let counters = self.store.counters();
        EngineBytes {
            data: counters.data_bytes_written,
            metadata: counters.kv_io.total() + counters.journal_bytes,
            transactions: counters.transactions_committed,
            group_commits: counters.group_commits,
        }
    }

    fn fill_ratio(&self) -> Option<f64> {
        let statfs = self.store.statfs().ok()?;
        Some(
            1.0 - statfs.available_bytes as f64
                / (statfs.total_bytes - statfs.reserved_bytes) as f64,
        )
    }

    fn free_score(&self) -> Option<f64> {
        Some(self.store.fragmentation_score(bstore::ScoreVariant::Reef))
    }

    fn close(self: Box<Self>) -> Result<(), String> {
        for collection in &self.collections {
            let objects = self
                .store
                .list_objects(collection, None, usize::MAX)
                .map_err(error_text)?;
            let mut txn = Transaction::new();
            for object in objects {
                txn.remove(collection, object);
            }
            txn.remove_collection(collection);
            self.store.apply(&txn).map_err(error_text)?;
        }
        self.store.close().map_err(error_text)
    }
}

/// Objects as 4 KiB block values in RocksDB with BlobDB and synced writes.
pub struct RocksEngine {
    db: DB,
    options: Options,
    sync: WriteOptions,
}

const BLOCK: u64 = 4096;

impl RocksEngine {
    /// Creates a database in `dir`.
    pub fn create(dir: &Path) -> Result<Self, String> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_enable_blob_files(true);
        options.set_min_blob_size(BLOCK);
        options.set_compression_type(rocksdb::DBCompressionType::None);
        options.set_max_background_jobs(2);
        options.enable_statistics();
        let db = DB::open(&options, dir).map_err(error_text)?;
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        Ok(RocksEngine { db, options, sync })
    }

    fn block_key(object: &str, block: u64) -> Vec<u8> {
        let mut key = Vec::with_capacity(object.len() + 10);
        key.push(b'd');
        key.extend_from_slice(object.as_bytes());
        key.push(0);
        key.extend_from_slice(&block.to_be_bytes());
        key
    }
}

impl BenchEngine for RocksEngine {
    fn name(&self) -> &'static str {
        "rocksdb"
    }

    fn put(&self, object: &str, data: &[u8]) -> Result<(), String> {
        let mut batch = WriteBatch::default();
        for (index, block) in data.chunks(BLOCK as usize).enumerate() {
            batch.put(Self::block_key(object, index as u64), block);
        }
        self.db.write_opt(batch, &self.sync).map_err(error_text)
    }

    fn write(&self, object: &str, offset: u64, data: &[u8]) -> Result<(), String> {
        let mut batch = WriteBatch::default();
        let end = offset + data.len() as u64;
        let mut position = offset;
        while position < end {
            let block = position / BLOCK;
            let within = (position % BLOCK) as usize;
            let take = (BLOCK as usize - within).min((end - position) as usize);
            let source = &data[(position - offset) as usize..(position - offset) as usize + take];
            let key = Self::block_key(object, block);
            if take == BLOCK as usize {
                batch.put(&key, source);
            } else {
                let mut value = self.db.get(&key).map_err(error_text)?.unwrap_or_default();
                value.resize(value.len().max(within + take), 0);
                value[within..within + take].copy_from_slice(source);
                batch.put(&key, value);
            }
            position += take as u64;
        }
        self.db.write_opt(batch, &self.sync).map_err(error_text)
    }

    fn read(&self, object: &str, offset: u64, length: usize) -> Result<usize, String> {
        let first = offset / BLOCK;
        let last = (offset + length as u64).div_ceil(BLOCK);
        let keys: Vec<Vec<u8>> = (first..last).map(|b| Self::block_key(object, b)).collect();
        let mut read = 0;
        for value in self.db.multi_get(&keys) {
            read += value.map_err(error_text)?.map_or(0, |v| v.len());
        }
        Ok(read.min(length))
    }

    fn remove(&self, object: &str) -> Result<(), String> {
        let start = Self::block_key(object, 0);
        let end = Self::block_key(object, u64::MAX);
        let mut batch = WriteBatch::default();
        batch.delete_range(start, end);
        self.db.write_opt(batch, &self.sync).map_err(error_text)
    }

    fn omap_set(&self, object: &str, pairs: &[(Vec<u8>, Vec<u8>)]) -> Option<Result<(), String>> {
        let mut batch = WriteBatch::default();
        for (key, value) in pairs {
            let mut full = vec![b'o'];
            full.extend_from_slice(object.as_bytes());
            full.push(0);
            full.extend_from_slice(key);
            batch.put(full, value);
        }
        Some(self.db.write_opt(batch, &self.sync).map_err(error_text))
    }

    fn bytes(&self) -> EngineBytes {
        let ticker = |t| self.options.get_ticker_count(t);
        EngineBytes {
            data: ticker(Ticker::BlobDbBlobFileBytesWritten),
            metadata: ticker(Ticker::WalFileBytes)
                + ticker(Ticker::FlushWriteBytes)
                + ticker(Ticker::CompactWriteBytes),
            transactions: 0,
            group_commits: 0,
        }
    }
}

/// One file per object, written and synced like FileStore, with O_DIRECT so that data goes to
/// the device as bstore's does (no page cache serving reads from memory). Writes that are not
/// 4 KiB aligned read, modify and write the blocks they touch.
pub struct FilesEngine {
    dir: PathBuf,
    dir_handle: File,
    device_stat: Option<PathBuf>,
}

impl FilesEngine {
    /// Uses (and creates) directory `dir`.
    pub fn create(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(error_text)?;
        let dir_handle = File::open(dir).map_err(error_text)?;
        Ok(FilesEngine {
            device_stat: super::metrics::device_stat_path(dir),
            dir: dir.to_path_buf(),
            dir_handle,
        })
    }

    fn path(&self, object: &str) -> PathBuf {
        self.dir.join(object)
    }

    fn open(&self, object: &str, create: bool) -> Result<File, String> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC)
            .open(self.path(object))
            .map_err(error_text)
    }

    fn sync_dir(&self) -> Result<(), String> {
        self.dir_handle.sync_all().map_err(error_text)
    }
}

/// An aligned copy of `data` padded with zeros to whole 4 KiB blocks (O_DIRECT needs both).
fn aligned(data: &[u8], length: usize) -> bstore::device::AlignedBuf {
    bstore::device::AlignedBuf::copy_padded(data, length.next_multiple_of(BLOCK as usize))
}

impl BenchEngine for FilesEngine {
    fn name(&self) -> &'static str {
        "files"
    }

    fn put(&self, object: &str, data: &[u8]) -> Result<(), String> {
        let existed = self.path(object).exists();
        let file = self.open(object, true)?;
        file.write_all_at(&aligned(data, data.len()), 0)
            .map_err(error_text)?;
        file.set_len(data.len() as u64).map_err(error_text)?;
        file.sync_data().map_err(error_text)?;
        if !existed {
            self.sync_dir()?;
        }
        Ok(())
    }

    fn write(&self, object: &str, offset: u64, data: &[u8]) -> Result<(), String> {
        let file = self.open(object, false)?;
        let start = offset / BLOCK * BLOCK;
        let end = (offset + data.len() as u64).div_ceil(BLOCK) * BLOCK;
        let mut buf = bstore::device::AlignedBuf::zeroed((end - start) as usize);
        if start != offset || end != offset + data.len() as u64 {
            file.read_at(&mut buf, start).map_err(error_text)?;
        }
        let within = (offset - start) as usize;
        buf[within..within + data.len()].copy_from_slice(data);
        file.write_all_at(&buf, start).map_err(error_text)?;
        file.sync_data().map_err(error_text)
    }

    fn read(&self, object: &str, offset: u64, length: usize) -> Result<usize, String> {
        let file = self.open(object, false)?;
        let start = offset / BLOCK * BLOCK;
        let end = (offset + length as u64).div_ceil(BLOCK) * BLOCK;
        let mut buf = bstore::device::AlignedBuf::zeroed((end - start) as usize);
        let read = file.read_at(&mut buf, start).map_err(error_text)?;
        Ok(read.saturating_sub((offset - start) as usize).min(length))
    }

    fn remove(&self, object: &str) -> Result<(), String> {
        std::fs::remove_file(self.path(object)).map_err(error_text)?;
        self.sync_dir()
    }

    fn omap_set(&self, _object: &str, _pairs: &[(Vec<u8>, Vec<u8>)]) -> Option<Result<(), String>> {
        None
    }

    /// Everything the file system's device wrote (data, journal, directories): the files
    /// engine has no separate metadata store, so its whole cost is "data" here.
    fn bytes(&self) -> EngineBytes {
        EngineBytes {
            data: self
                .device_stat
                .as_deref()
                .map_or(0, super::metrics::device_bytes_written),
            ..EngineBytes::default()
        }
    }
}
