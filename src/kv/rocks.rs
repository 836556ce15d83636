//! RocksDB behind the [`Kv`] trait: one column family per key space.
//!
//! The database lives in `db/` of the store directory (tables, manifest, and the WAL unless a
//! separate `wal/` directory is given, which RocksDB's `wal_dir` then holds). Compression is off:
//! values are small, mostly checksums and offsets, and BlueStore found compression not worth the
//! CPU for them. The freelist column family has the XOR merge operator of
//! [`crate::format::freelist`], so allocation bitmaps are updated without reads.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, MergeOperands, Options,
    ReadOptions, WriteBatch, WriteOptions, statistics::Ticker,
};

use super::{Batch, BatchOp, Durability, KeySpace, Kv, KvIoStats, ScanVisitor};
use crate::error::{Error, Result};
use crate::format::freelist;

/// How the database is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvOpenMode {
    /// mkfs: create the database and its column families; fail if one exists.
    Create,
    /// mount: the database must exist with every column family.
    ReadWrite,
    /// inspection: RocksDB's read-only mode. Nothing in the directory is written (no log
    /// replay into tables, no MANIFEST, OPTIONS or info LOG file, no lock), so it works on a
    /// read-only file system and beside a process that has the database open for writing (it
    /// then sees the state of the moment it opened). Every write is refused.
    ReadOnly,
}

/// RocksDB-backed [`Kv`].
pub struct RocksKv {
    db: DB,
    db_dir: PathBuf,
    mode: KvOpenMode,
    bytes_written: AtomicU64,
    /// Kept for its statistics object (write-amplification figures).
    options: Options,
}

impl std::fmt::Debug for RocksKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RocksKv({})", self.db_dir.display())
    }
}

impl RocksKv {
    /// Opens (or creates) the database in `db_dir`, with its WAL in `wal_dir` when given.
    pub fn open(db_dir: &Path, wal_dir: Option<&Path>, mode: KvOpenMode) -> Result<RocksKv> {
        if mode != KvOpenMode::Create {
            // The rocksdb crate creates the directory in every mode: an open that must find a
            // database would otherwise make an empty one (behind a dangling link, even outside
            // the store).
            for dir in std::iter::once(db_dir).chain(wal_dir) {
                if !dir.is_dir() {
                    return Err(Error::NotFormatted(format!(
                        "{}: no database directory here",
                        dir.display()
                    )));
                }
            }
        }
        let mut options = Options::default();
        options.create_if_missing(mode == KvOpenMode::Create);
        options.create_missing_column_families(mode == KvOpenMode::Create);
        options.set_error_if_exists(mode == KvOpenMode::Create);
        options.set_compression_type(DBCompressionType::None);
        // Writes that skip the log (journaled ones) are durable only by a flush: every column
        // family must flush together, or a crash could leave one's changes without another's.
        options.set_atomic_flush(true);
        // The log that remains (format-1 stores, mkfs) must never lose a record in the middle
        // quietly: a torn tail is dropped, any other damage refuses the open, and a missing
        // log file is caught by the manifest's record of live logs.
        options.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
        options.set_track_and_verify_wals_in_manifest(true);
        options.set_max_background_jobs(2);
        options.set_keep_log_file_num(4);
        options.enable_statistics();
        if let Some(wal_dir) = wal_dir {
            options.set_wal_dir(wal_dir);
        }
        let descriptors = KeySpace::ALL
            .iter()
            .map(|space| ColumnFamilyDescriptor::new(space.name(), column_family_options(*space)));
        let opened = match mode {
            KvOpenMode::Create | KvOpenMode::ReadWrite => {
                DB::open_cf_descriptors(&options, db_dir, descriptors)
            }
            KvOpenMode::ReadOnly => {
                DB::open_cf_descriptors_read_only(&options, db_dir, descriptors, false)
            }
        };
        let db = opened.map_err(|e| {
            Error::io(
                format!("opening RocksDB in {}", db_dir.display()),
                std::io::Error::other(e.into_string()),
            )
        })?;
        Ok(RocksKv {
            db,
            db_dir: db_dir.to_path_buf(),
            mode,
            bytes_written: AtomicU64::new(0),
            options,
        })
    }

    /// Runs RocksDB's own repair on the database in `db_dir`: tables it cannot read are moved
    /// to `db_dir/lost/` (what they held is gone), and the manifest is rebuilt from the rest.
    /// Destructive: run it on a copy (`Store::salvage` does).
    ///
    /// RocksDB's repair turns the log into tables with default options (no freelist merge
    /// operator, and only column families some table already names), and a log it cannot turn
    /// into a table it moves aside, losing what it held. So the database is first opened as
    /// the store opens it and flushed, which empties the log into tables properly; when even
    /// that fails, the returned warning says the log's contents may be lost.
    pub fn salvage(db_dir: &Path, wal_dir: Option<&Path>) -> Result<Option<String>> {
        let warning =
            match RocksKv::open(db_dir, wal_dir, KvOpenMode::ReadWrite).and_then(|kv| kv.flush()) {
                Ok(()) => None,
                Err(error) => Some(format!(
                    "the log could not be flushed into tables before RocksDB's repair ({error}): \
                 commits it held may be lost"
                )),
            };
        let mut options = Options::default();
        options.set_compression_type(DBCompressionType::None);
        if let Some(wal_dir) = wal_dir {
            options.set_wal_dir(wal_dir);
        }
        let failed = |e: rocksdb::Error| {
            Error::io(
                format!("RocksDB repair of {}", db_dir.display()),
                std::io::Error::other(e.into_string()),
            )
        };
        DB::repair(&options, db_dir).map_err(failed)?;
        // Repair recreates only the column families some table names: an empty one (no
        // extent shards ever flushed, say) must be made again before the store can open.
        options.create_missing_column_families(true);
        let descriptors = KeySpace::ALL
            .iter()
            .map(|space| ColumnFamilyDescriptor::new(space.name(), column_family_options(*space)));
        DB::open_cf_descriptors(&options, db_dir, descriptors)
            .map(drop)
            .map_err(failed)?;
        Ok(warning)
    }

    /// [`Kv::scan`] with `options` (a snapshot's).
    fn scan_with(
        &self,
        mut options: ReadOptions,
        space: KeySpace,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<()> {
        if let Some(end) = end {
            options.set_iterate_upper_bound(end.to_vec());
        }
        let mut iterator = self.db.raw_iterator_cf_opt(self.handle(space)?, options);
        iterator.seek(start);
        while iterator.valid() {
            let (Some(key), Some(value)) = (iterator.key(), iterator.value()) else {
                break;
            };
            if !visit(key, value)? {
                return Ok(());
            }
            iterator.next();
        }
        iterator
            .status()
            .map_err(|e| self.error(&format!("scanning {}", space.name()), e))
    }

    fn handle(&self, space: KeySpace) -> Result<&ColumnFamily> {
        self.db
            .cf_handle(space.name())
            .ok_or_else(|| Error::corruption(format!("column family {} missing", space.name())))
    }

    fn error(&self, what: &str, error: rocksdb::Error) -> Error {
        let message = format!("{what} in {}", self.db_dir.display());
        let kind = match error.kind() {
            rocksdb::ErrorKind::Corruption => {
                return Error::corruption(format!("{message}: {error}"));
            }
            rocksdb::ErrorKind::Busy | rocksdb::ErrorKind::TryAgain => {
                std::io::ErrorKind::WouldBlock
            }
            rocksdb::ErrorKind::TimedOut => std::io::ErrorKind::TimedOut,
            rocksdb::ErrorKind::NotSupported => std::io::ErrorKind::Unsupported,
            rocksdb::ErrorKind::InvalidArgument => std::io::ErrorKind::InvalidInput,
            _ => std::io::ErrorKind::Other,
        };
        // The RocksDB error itself is the source, so a caller can downcast to it.
        Error::io(message, std::io::Error::new(kind, error))
    }

    fn read_only_refusal(&self) -> Error {
        Error::ReadOnly(format!(
            "RocksDB in {} is open read-only: a write was refused",
            self.db_dir.display()
        ))
    }

    fn to_write_batch(&self, batch: &Batch) -> Result<WriteBatch> {
        let mut wb = WriteBatch::default();
        for op in batch.ops() {
            match op {
                BatchOp::Put { space, key, value } => wb.put_cf(self.handle(*space)?, key, value),
                BatchOp::Delete { space, key } => wb.delete_cf(self.handle(*space)?, key),
                BatchOp::DeleteRange { space, start, end } => {
                    wb.delete_range_cf(self.handle(*space)?, start, end);
                }
                BatchOp::Merge {
                    space,
                    key,
                    operand,
                } => wb.merge_cf(self.handle(*space)?, key, operand),
            }
        }
        Ok(wb)
    }
}

fn column_family_options(space: KeySpace) -> Options {
    let mut options = Options::default();
    options.set_compression_type(DBCompressionType::None);
    if space == KeySpace::Freelist {
        options.set_merge_operator(
            "bstore_freelist_xor",
            freelist_full_merge,
            freelist_partial_merge,
        );
    }
    if space == KeySpace::Deferred {
        // Deferred records are deleted soon after they are written: let several memtables
        // merge before flushing so that a record and its deletion cancel before reaching a table.
        options.set_min_write_buffer_number_to_merge(4);
        options.set_max_write_buffer_number(8);
    }
    options
}

/// RocksDB full merge: `None` makes RocksDB report corruption for the key.
fn freelist_full_merge(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &MergeOperands,
) -> Option<Vec<u8>> {
    freelist::full_merge(existing, operands.iter()).ok()
}

fn freelist_partial_merge(
    _key: &[u8],
    _existing: Option<&[u8]>,
    operands: &MergeOperands,
) -> Option<Vec<u8>> {
    let collected: Vec<&[u8]> = operands.iter().collect();
    freelist::partial_merge(collected.iter().copied()).ok()
}

impl Kv for RocksKv {
    fn get(&self, space: KeySpace, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db
            .get_pinned_cf(self.handle(space)?, key)
            .map(|value| value.map(|v| v.to_vec()))
            .map_err(|e| self.error(&format!("reading {}", space.name()), e))
    }

    fn write(&self, batch: Batch, durability: Durability) -> Result<()> {
        if self.mode == KvOpenMode::ReadOnly {
            return Err(self.read_only_refusal());
        }
        let payload = batch.payload_bytes() as u64;
        let write_batch = self.to_write_batch(&batch)?;
        let mut options = WriteOptions::default();
        options.set_sync(durability == Durability::Sync);
        options.disable_wal(durability == Durability::Journaled);
        self.db
            .write_opt(write_batch, &options)
            .map_err(|e| self.error("writing a batch", e))?;
        self.bytes_written.fetch_add(payload, Ordering::Relaxed);
        Ok(())
    }

    fn scan(
        &self,
        space: KeySpace,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<()> {
        self.scan_with(ReadOptions::default(), space, start, end, visit)
    }

    fn bytes_written(&self) -> u64 {
        self.bytes_written.load(Ordering::Relaxed)
    }

    fn io_stats(&self) -> KvIoStats {
        KvIoStats {
            log_bytes: self.options.get_ticker_count(Ticker::WalFileBytes),
            flush_bytes: self.options.get_ticker_count(Ticker::FlushWriteBytes),
            compaction_bytes: self.options.get_ticker_count(Ticker::CompactWriteBytes),
        }
    }

    fn flush(&self) -> Result<()> {
        if self.mode == KvOpenMode::ReadOnly {
            return Ok(()); // nothing was written, so nothing is buffered
        }
        let handles = KeySpace::ALL
            .iter()
            .map(|space| self.handle(*space))
            .collect::<Result<Vec<_>>>()?;
        self.db
            .flush_cfs_opt(&handles, &rocksdb::FlushOptions::default())
            .map_err(|e| self.error("flushing memtables", e))
    }

    fn snapshot(&self) -> Result<Box<dyn Kv + '_>> {
        Ok(Box::new(RocksSnapshot {
            kv: self,
            snapshot: self.db.snapshot(),
        }))
    }
}

/// A RocksDB snapshot of a [`RocksKv`].
struct RocksSnapshot<'a> {
    kv: &'a RocksKv,
    snapshot: rocksdb::Snapshot<'a>,
}

impl RocksSnapshot<'_> {
    fn options(&self) -> ReadOptions {
        let mut options = ReadOptions::default();
        options.set_snapshot(&self.snapshot);
        options
    }
}

impl Kv for RocksSnapshot<'_> {
    fn get(&self, space: KeySpace, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.kv
            .db
            .get_pinned_cf_opt(self.kv.handle(space)?, key, &self.options())
            .map(|value| value.map(|v| v.to_vec()))
            .map_err(|e| self.kv.error(&format!("reading {}", space.name()), e))
    }

    fn write(&self, _batch: Batch, _durability: Durability) -> Result<()> {
        Err(super::snapshot_refuses_writes())
    }

    fn scan(
        &self,
        space: KeySpace,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<()> {
        self.kv.scan_with(self.options(), space, start, end, visit)
    }

    fn bytes_written(&self) -> u64 {
        0
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn snapshot(&self) -> Result<Box<dyn Kv + '_>> {
        Ok(Box::new(super::Unchanging(self)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::freelist::encode_operand;

    #[test]
    fn batches_merges_and_scans_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db_dir = dir.path().join("db");
        let wal_dir = dir.path().join("wal");
        {
            let kv = RocksKv::open(&db_dir, Some(&wal_dir), KvOpenMode::Create).unwrap();
            let mut batch = Batch::new();
            batch.put(KeySpace::Onodes, b"b".to_vec(), b"2".to_vec());
            batch.put(KeySpace::Onodes, b"a".to_vec(), b"1".to_vec());
            batch.merge(
                KeySpace::Freelist,
                b"k".to_vec(),
                encode_operand(0, &[0x0f]),
            );
            batch.merge(
                KeySpace::Freelist,
                b"k".to_vec(),
                encode_operand(1, &[0xf0]),
            );
            kv.write(batch, Durability::Sync).unwrap();
        }
        assert!(
            std::fs::read_dir(&wal_dir).unwrap().any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".log")),
            "the WAL is in the separate directory"
        );
        let kv = RocksKv::open(&db_dir, Some(&wal_dir), KvOpenMode::ReadWrite).unwrap();
        assert_eq!(
            kv.get(KeySpace::Freelist, b"k").unwrap(),
            Some(vec![0x0f, 0xf0])
        );
        let kv: &dyn Kv = &kv;
        let entries = kv.scan_collect(KeySpace::Onodes, b"", None, 10).unwrap();
        assert_eq!(entries[0].0, b"a");
        assert_eq!(entries[1].0, b"b");
    }

    #[test]
    fn create_refuses_an_existing_database_and_open_refuses_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let db_dir = dir.path().join("db");
        assert!(RocksKv::open(&db_dir, None, KvOpenMode::ReadWrite).is_err());
        drop(RocksKv::open(&db_dir, None, KvOpenMode::Create).unwrap());
        assert!(RocksKv::open(&db_dir, None, KvOpenMode::Create).is_err());
    }

    #[test]
    fn a_snapshot_ignores_later_writes() {
        let dir = tempfile::tempdir().unwrap();
        let kv = RocksKv::open(&dir.path().join("db"), None, KvOpenMode::Create).unwrap();
        crate::kv::assert_snapshots_ignore_later_writes(&kv);
    }
}
