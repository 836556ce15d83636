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
#[non_exhaustive]
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

/// Built from the defaults, field by field (the struct may grow: no literals outside this
/// crate).
impl FormatOptions {
    /// Sets `min_alloc_size`.
    pub fn with_min_alloc_size(mut self, min_alloc_size: u32) -> Self {
        self.min_alloc_size = min_alloc_size;
        self
    }

    /// Sets `csum_type`.
    pub fn with_csum_type(mut self, csum_type: CsumType) -> Self {
        self.csum_type = csum_type;
        self
    }

    /// Sets `csum_chunk`.
    pub fn with_csum_chunk(mut self, csum_chunk: u32) -> Self {
        self.csum_chunk = csum_chunk;
        self
    }

    /// Sets `blob_length_max`.
    pub fn with_blob_length_max(mut self, blob_length_max: u32) -> Self {
        self.blob_length_max = blob_length_max;
        self
    }

    /// Sets `freelist_blocks_per_key`.
    pub fn with_freelist_blocks_per_key(mut self, freelist_blocks_per_key: u32) -> Self {
        self.freelist_blocks_per_key = freelist_blocks_per_key;
        self
    }

    /// Sets `journal`.
    pub fn with_journal(mut self, journal: JournalSize) -> Self {
        self.journal = journal;
        self
    }

    /// Sets `store_uuid`.
    pub fn with_store_uuid(mut self, store_uuid: Option<[u8; 16]>) -> Self {
        self.store_uuid = store_uuid;
        self
    }

    /// Sets `created`.
    pub fn with_created(mut self, created: Option<(u64, u32)>) -> Self {
        self.created = created;
        self
    }
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
#[non_exhaustive]
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

/// Built from the defaults, field by field (the struct may grow: no literals outside this
/// crate).
impl MkfsOptions {
    /// Sets `path`.
    pub fn with_path(mut self, path: PathBuf) -> Self {
        self.path = path;
        self
    }

    /// Sets `block`.
    pub fn with_block(mut self, block: BlockSource) -> Self {
        self.block = block;
        self
    }

    /// Sets `db_dir`.
    pub fn with_db_dir(mut self, db_dir: Option<PathBuf>) -> Self {
        self.db_dir = db_dir;
        self
    }

    /// Sets `wal_dir`.
    pub fn with_wal_dir(mut self, wal_dir: Option<PathBuf>) -> Self {
        self.wal_dir = wal_dir;
        self
    }

    /// Sets `force`.
    pub fn with_force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Sets `io_backend`.
    pub fn with_io_backend(mut self, io_backend: IoBackend) -> Self {
        self.io_backend = io_backend;
        self
    }

    /// Sets `format`.
    pub fn with_format(mut self, format: FormatOptions) -> Self {
        self.format = format;
        self
    }
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
#[non_exhaustive]
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

/// Built from the defaults: `OpenOptions::default().with_onode_cache_bytes(1 << 30)`. The
/// struct may grow, so it is never written as a literal outside this crate.
impl OpenOptions {
    /// Sets `io_backend`: Device I/O implementation.
    pub fn with_io_backend(mut self, io_backend: IoBackend) -> Self {
        self.io_backend = io_backend;
        self
    }

    /// Sets `prefer_deferred_size`: Deferred-write threshold (`None`: by the device's kind).
    pub fn with_prefer_deferred_size(mut self, prefer_deferred_size: Option<u32>) -> Self {
        self.prefer_deferred_size = prefer_deferred_size;
        self
    }

    /// Sets `onode_cache_bytes`: Byte budget of all onode caches together.
    pub fn with_onode_cache_bytes(mut self, onode_cache_bytes: usize) -> Self {
        self.onode_cache_bytes = onode_cache_bytes;
        self
    }

    /// Sets `queue_depth_max`: Transactions in the commit pipeline before submitters wait.
    pub fn with_queue_depth_max(mut self, queue_depth_max: usize) -> Self {
        self.queue_depth_max = queue_depth_max;
        self
    }

    /// Sets `slow_transaction`: The age past which a transaction is reported slow.
    pub fn with_slow_transaction(mut self, slow_transaction: Duration) -> Self {
        self.slow_transaction = slow_transaction;
        self
    }

    /// Sets `deferred`: When deferred writes are applied.
    pub fn with_deferred(mut self, deferred: DeferredPolicy) -> Self {
        self.deferred = deferred;
        self
    }

    /// Sets `background`: Threads, or steps the caller drives.
    pub fn with_background(mut self, background: Background) -> Self {
        self.background = background;
        self
    }
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
