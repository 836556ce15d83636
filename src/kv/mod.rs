//! The metadata store: ordered key spaces with atomic, optionally synced, batches.
//!
//! [`Kv`] is what bstore needs of RocksDB and no more: point reads, ordered scans, and atomic
//! batches of puts, deletes, range deletes and freelist merges, written either synced (durable
//! when the call returns) or not. Two implementations:
//! - [`RocksKv`]: RocksDB, one column family per [`KeySpace`], the freelist XOR merge operator,
//!   an optional separate WAL directory.
//! - [`MemKv`]: ordered maps in memory that remember which batches were synced; a simulated crash
//!   discards the unsynced ones, as a power cut discards RocksDB's unsynced WAL tail.

crate::internal_modules!(
    mem,
    overlay,
    records,
    #[cfg(feature = "rocksdb")]
    rocks
);

pub use crate::format::keys::KeySpace;
#[cfg(feature = "testing")]
pub use mem::{MemCrashCounts, MemKv, MemKvFaults};
#[cfg(not(feature = "testing"))]
#[allow(unused_imports)]
pub(crate) use mem::{MemCrashCounts, MemKv, MemKvFaults};
#[cfg(feature = "internals")]
#[doc(hidden)]
pub use overlay::OverlayKv;
#[cfg(not(feature = "internals"))]
pub(crate) use overlay::OverlayKv;
#[cfg(all(feature = "rocksdb", feature = "internals"))]
#[doc(hidden)]
pub use rocks::{KvOpenMode, RocksKv};
#[cfg(all(feature = "rocksdb", not(feature = "internals")))]
pub(crate) use rocks::{KvOpenMode, RocksKv};

use crate::error::Result;

/// Whether a batch must be on stable storage when `write` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the WAL before returning.
    Sync,
    /// Visible at once, durable with the next synced write (or never, after a crash).
    NoSync,
    /// Already durable in the commit journal: not logged by the KV store at all (RocksDB's
    /// log is skipped), made durable by the KV store's next flush; a crash may lose it, and
    /// journal replay brings it back.
    Journaled,
}

/// One change in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    /// Set `key` to `value`.
    Put {
        /// Key space.
        space: KeySpace,
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// Remove `key`.
    Delete {
        /// Key space.
        space: KeySpace,
        /// Key.
        key: Vec<u8>,
    },
    /// Remove every key in `[start, end)`.
    DeleteRange {
        /// Key space.
        space: KeySpace,
        /// First key removed.
        start: Vec<u8>,
        /// First key kept.
        end: Vec<u8>,
    },
    /// Fold `operand` into `key` with the key space's merge operator (freelist XOR only).
    Merge {
        /// Key space.
        space: KeySpace,
        /// Key.
        key: Vec<u8>,
        /// Operand.
        operand: Vec<u8>,
    },
}

/// Changes applied atomically by [`Kv::write`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<BatchOp>,
    bytes: usize,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, space: KeySpace, key: impl Into<Vec<u8>>, value: Vec<u8>) {
        let key = key.into();
        self.bytes += key.len() + value.len();
        self.ops.push(BatchOp::Put { space, key, value });
    }

    /// Removes `key`.
    pub fn delete(&mut self, space: KeySpace, key: impl Into<Vec<u8>>) {
        let key = key.into();
        self.bytes += key.len();
        self.ops.push(BatchOp::Delete { space, key });
    }

    /// Removes `[start, end)`.
    pub fn delete_range(&mut self, space: KeySpace, start: Vec<u8>, end: Vec<u8>) {
        self.bytes += start.len() + end.len();
        self.ops.push(BatchOp::DeleteRange { space, start, end });
    }

    /// Merges `operand` into `key`.
    pub fn merge(&mut self, space: KeySpace, key: impl Into<Vec<u8>>, operand: Vec<u8>) {
        let key = key.into();
        self.bytes += key.len() + operand.len();
        self.ops.push(BatchOp::Merge {
            space,
            key,
            operand,
        });
    }

    /// Moves every op of `other` to the end of this batch.
    pub fn append(&mut self, other: &mut Batch) {
        self.bytes += other.bytes;
        other.bytes = 0;
        self.ops.append(&mut other.ops);
    }

    /// The ops, in order.
    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }

    /// Number of ops.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Key and value bytes carried (an estimate of what the write costs).
    pub fn payload_bytes(&self) -> usize {
        self.bytes
    }
}

/// What the KV store wrote to stable storage, by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KvIoStats {
    /// Write-ahead log bytes.
    pub log_bytes: u64,
    /// Bytes of tables written by memtable flushes.
    pub flush_bytes: u64,
    /// Bytes of tables written by compactions.
    pub compaction_bytes: u64,
}

impl KvIoStats {
    /// Every byte written.
    pub fn total(&self) -> u64 {
        self.log_bytes + self.flush_bytes + self.compaction_bytes
    }
}

/// A visitor over scanned entries: return `Ok(false)` to stop early.
pub type ScanVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'a;

/// An ordered key-value store with atomic batches.
pub trait Kv: Send + Sync {
    /// Reads one key.
    fn get(&self, space: KeySpace, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Applies `batch` atomically.
    fn write(&self, batch: Batch, durability: Durability) -> Result<()>;

    /// Visits the entries of `space` with `start <= key < end` (no end: to the last key) in key
    /// order, until the visitor returns `Ok(false)` or an error.
    fn scan(
        &self,
        space: KeySpace,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<()>;

    /// Bytes handed to `write` so far (keys plus values), for write-amplification figures.
    fn bytes_written(&self) -> u64;

    /// Bytes the store itself wrote to its files (log, flushes, compactions) so far.
    fn io_stats(&self) -> KvIoStats {
        KvIoStats {
            log_bytes: self.bytes_written(),
            ..KvIoStats::default()
        }
    }

    /// Moves buffered data into durable tables (RocksDB: flush memtables), so the next open
    /// does not replay the log. Called at clean close; durability never depends on it.
    fn flush(&self) -> Result<()>;

    /// Every key space as of this moment, unchanged by later writes: RocksDB's snapshot, a
    /// copy in memory. What a reader needs to see one commit point while writers go on (an
    /// export). The snapshot refuses writes (`ReadOnly`); a snapshot of it is itself.
    fn snapshot(&self) -> Result<Box<dyn Kv + '_>>;
}

/// A snapshot's snapshot: the same unchanging view, borrowed.
pub(crate) struct Unchanging<'a>(pub(crate) &'a dyn Kv);

impl Kv for Unchanging<'_> {
    fn get(&self, space: KeySpace, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.0.get(space, key)
    }

    fn write(&self, batch: Batch, durability: Durability) -> Result<()> {
        self.0.write(batch, durability)
    }

    fn scan(
        &self,
        space: KeySpace,
        start: &[u8],
        end: Option<&[u8]>,
        visit: &mut ScanVisitor<'_>,
    ) -> Result<()> {
        self.0.scan(space, start, end, visit)
    }

    fn bytes_written(&self) -> u64 {
        0
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn snapshot(&self) -> Result<Box<dyn Kv + '_>> {
        Ok(Box::new(Unchanging(self.0)))
    }
}

/// The error a snapshot's `write` returns.
pub(crate) fn snapshot_refuses_writes() -> crate::error::Error {
    crate::error::Error::ReadOnly("a KV snapshot does not take writes".into())
}

impl dyn Kv + '_ {
    /// Collects up to `limit` entries of `[start, end)`.
    pub fn scan_collect(
        &self,
        space: KeySpace,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut entries = Vec::new();
        if limit == 0 {
            return Ok(entries);
        }
        self.scan(space, start, end, &mut |key, value| {
            entries.push((key.to_vec(), value.to_vec()));
            Ok(entries.len() < limit)
        })?;
        Ok(entries)
    }
}

/// The property every [`Kv::snapshot`] has, checked by each implementation's tests.
#[cfg(test)]
pub(crate) fn assert_snapshots_ignore_later_writes(kv: &dyn Kv) {
    use crate::format::freelist::encode_operand;
    let mut before = Batch::new();
    for key in [b"a", b"b", b"c", b"d"] {
        before.put(KeySpace::Onodes, key.to_vec(), key.to_vec());
    }
    before.merge(
        KeySpace::Freelist,
        b"f".to_vec(),
        encode_operand(0, &[0x0f]),
    );
    kv.write(before, Durability::Sync).unwrap();
    let snapshot = kv.snapshot().unwrap();
    let mut after = Batch::new();
    after.put(KeySpace::Onodes, b"a".to_vec(), b"changed".to_vec());
    after.delete(KeySpace::Onodes, b"b".to_vec());
    after.delete_range(KeySpace::Onodes, b"c".to_vec(), b"d".to_vec());
    after.put(KeySpace::Onodes, b"e".to_vec(), b"new".to_vec());
    after.merge(
        KeySpace::Freelist,
        b"f".to_vec(),
        encode_operand(0, &[0xf0]),
    );
    kv.write(after, Durability::NoSync).unwrap();

    let nested = snapshot.snapshot().unwrap();
    let views: [&dyn Kv; 2] = [snapshot.as_ref(), nested.as_ref()];
    for view in views {
        let entries = view.scan_collect(KeySpace::Onodes, b"", None, 10).unwrap();
        let keys: Vec<_> = entries
            .iter()
            .map(|(key, value)| (key.as_slice(), value.as_slice()))
            .collect();
        assert_eq!(
            keys,
            [
                (&b"a"[..], &b"a"[..]),
                (b"b", b"b"),
                (b"c", b"c"),
                (b"d", b"d")
            ]
        );
        assert_eq!(view.get(KeySpace::Onodes, b"e").unwrap(), None);
        assert_eq!(
            view.get(KeySpace::Freelist, b"f").unwrap(),
            Some(vec![0x0f])
        );
        let refused = view.write(Batch::new(), Durability::Sync);
        assert!(
            matches!(refused, Err(crate::Error::ReadOnly(_))),
            "{refused:?}"
        );
    }
    assert_eq!(
        kv.get(KeySpace::Onodes, b"a").unwrap(),
        Some(b"changed".to_vec())
    );
    assert_eq!(kv.get(KeySpace::Freelist, b"f").unwrap(), Some(vec![0xff]));
}
