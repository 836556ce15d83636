//! Options of mkfs and mount, with their defaults.

use std::path::PathBuf;
use std::time::Duration;

use crate::device::IoBackend;
use crate::format::onode::CsumType;
pub use crate::txn::background::{Background, Work};
pub use crate::txn::deferred::DeferredPolicy;
#[doc(hidden)]
pub use crate::txn::engine::Mutation;

/// Default allocation unit.
pub const MIN_ALLOC_SIZE_DEFAULT: u32 = 4096;
/// Default checksum chunk.
pub const CSUM_CHUNK_DEFAULT: u32 = 4096;
/// Default largest blob.
pub const BLOB_LENGTH_MAX_DEFAULT: u32 = 512 << 10;
/// Default allocation units per freelist key (16 MiB per key at 4 KiB).
pub const FREELIST_BLOCKS_PER_KEY_DEFAULT: u32 = 4096;
/// Deferred-write threshold on rotational media (BlueStore's `prefer_deferred_size_hdd`).
pub const PREFER_DEFERRED_SIZE_ROTATIONAL: u32 = 64 << 10;

/// How the data device is laid out: fixed at mkfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatOptions {
    /// Allocation unit: a power of two, at least the device's logical block size.
    pub min_alloc_size: u32,
    /// Checksum algorithm of object data.
    pub csum_type: CsumType,
    /// Checksum chunk: a power of two, at least the logical block size.
    pub csum_chunk: u32,
    /// Largest blob a write creates.
    pub blob_length_max: u32,
    /// Allocation units per freelist key.
    pub freelist_blocks_per_key: u32,
    /// The commit journal's ring on the data device.
    pub journal: JournalSize,
    /// Store identity; random when `None`.
    pub store_uuid: Option<[u8; 16]>,
    /// Creation time (seconds, nanoseconds); now when `None`.
    pub created: Option<(u64, u32)>,
}

impl Default for FormatOptions {
    fn default() -> Self {
        FormatOptions {
            min_alloc_size: MIN_ALLOC_SIZE_DEFAULT,
            csum_type: CsumType::Crc32c,
            csum_chunk: CSUM_CHUNK_DEFAULT,
            blob_length_max: BLOB_LENGTH_MAX_DEFAULT,
            freelist_blocks_per_key: FREELIST_BLOCKS_PER_KEY_DEFAULT,
            journal: JournalSize::Auto,
            store_uuid: None,
            created: None,
        }
    }
}

/// How large a commit journal mkfs makes (it lives on the data device, after the label).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum JournalSize {
    /// A 32nd of the device, between 1 MiB and 1 GiB.
    #[default]
    Auto,
    /// This many bytes (at least 64 KiB, a multiple of the allocation unit).
    Bytes(u64),
    /// No journal: a format-1 store, committing through RocksDB's own log (slower durable
    /// small writes; for comparison and for builds that read only format 1).
    Disabled,
}

/// Where the data device comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlockSource {
    /// An existing block device or file: `STORE_DIR/block` becomes a symlink to it.
    Device(PathBuf),
    /// A new sparse regular file `STORE_DIR/block` of this many bytes.
    File {
        /// Size in bytes.
        size_bytes: u64,
    },
}

/// Everything `Store::mkfs` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MkfsOptions {
    /// The store directory (created if missing).
    pub path: PathBuf,
    /// The data device.
    pub block: BlockSource,
    /// Put RocksDB here (`STORE_DIR/db` becomes a symlink to it).
    pub db_dir: Option<PathBuf>,
    /// Put RocksDB's WAL here (`STORE_DIR/wal` becomes a symlink to it).
    pub wal_dir: Option<PathBuf>,
    /// Overwrite an existing store.
    pub force: bool,
    /// Device I/O implementation used while formatting.
    pub io_backend: IoBackend,
    /// Layout.
    pub format: FormatOptions,
}

impl MkfsOptions {
    /// Options for a store at `path` on `block`, everything else default.
    pub fn new(path: impl Into<PathBuf>, block: BlockSource) -> Self {
        MkfsOptions {
            path: path.into(),
            block,
            db_dir: None,
            wal_dir: None,
            force: false,
            io_backend: IoBackend::default(),
            format: FormatOptions::default(),
        }
    }
}

/// Options of `Store::open`: runtime policy, not layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOptions {
    /// Device I/O implementation.
    pub io_backend: IoBackend,
    /// Overwrites smaller than this take the deferred path; `None`: 64 KiB on rotational
    /// devices, 0 otherwise (BlueStore's defaults).
    pub prefer_deferred_size: Option<u32>,
    /// Byte budget of the onode caches of all collections together (default 256 MiB): past
    /// it, the least recently used onodes of any collection that no transaction is using are
    /// dropped, to be read from the KV store again when next needed.
    pub onode_cache_bytes: usize,
    /// Transactions in the commit pipeline before submitters wait.
    pub queue_depth_max: usize,
    /// A transaction that becomes durable later than this after it was submitted is reported as
    /// a `tracing` warning (default 5 s, BlueStore's `bluestore_log_op_age`).
    pub slow_transaction: Duration,
    /// When deferred writes are applied to the device (batch size, delay, backpressure).
    pub deferred: DeferredPolicy,
    /// Background work on threads of the store's own (the default), or stepped by the caller
    /// (deterministic simulation: see `Store::step`).
    pub background: Background,
    /// A deliberate bug, for showing that the crash tests catch it. Debug builds only.
    #[cfg(debug_assertions)]
    #[doc(hidden)]
    pub mutation: Mutation,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            io_backend: IoBackend::default(),
            prefer_deferred_size: None,
            onode_cache_bytes: 256 << 20,
            queue_depth_max: 1024,
            slow_transaction: Duration::from_secs(5),
            deferred: DeferredPolicy::default(),
            background: Background::default(),
            #[cfg(debug_assertions)]
            mutation: Mutation::default(),
        }
    }
}
