//! bstore: an object store engine modelled on Ceph BlueStore.
//!
//! Object data goes straight to a raw block device (or a regular file standing in for one),
//! written with io_uring and O_DIRECT into space handed out by an allocator in `min_alloc_size`
//! units; every chunk is checksummed with crc32c and verified on every read. All metadata
//! (collections, onodes, extent maps, the freelist, statistics) lives in RocksDB and changes in
//! one synced batch per group of transactions.
//!
//! Layers, each calling only downward:
//!
//! ```text
//! store  (public facade: mkfs, open, transactions, reads)
//!   txn    (transactions: prepare, write planner, commit pipeline)
//!     onode  (onodes, extent maps, cache, reads)
//!       alloc  (allocator, freelist, fragmentation score)
//!         device (io_uring / pread / simulated)   kv (RocksDB / in-memory)
//!           format (pure encoders and decoders; the on-disk specification)
//! ```
//!
//! ```no_run
//! use bstore::{BlockSource, MkfsOptions, OpenOptions, Store};
//!
//! # #[cfg(not(feature = "rocksdb"))] fn main() {} // stores on files need RocksDB
//! # #[cfg(feature = "rocksdb")]
//! # fn main() -> bstore::Result<()> {
//! Store::mkfs(&MkfsOptions::new("/var/tmp/store", BlockSource::File { size_bytes: 1 << 30 }))?;
//! let store = Store::open("/var/tmp/store", &OpenOptions::default())?;
//! store.create_collection("pg1")?;
//! store.put("pg1", "greeting", b"hello")?;
//! assert_eq!(store.get("pg1", "greeting")?, b"hello");
//! store.close()
//! # }
//! ```

pub mod alloc;
pub mod completion;
pub mod csum;
pub mod device;
pub mod error;
pub mod format;
pub mod fsck;
pub mod journal;
pub mod kv;
pub mod onode;
pub mod rng;
pub mod store;
pub mod txn;

pub use alloc::ScoreVariant;
pub use error::{Error, Missing, Result};
pub use fsck::{
    BadChunk, ChunkProblem, DeepReport, FsckOptions, FsckProgress, FsckReport, Repair,
    RepairOptions, RepairReport,
};
pub use journal::{JournalReplay, JournalStatus};
pub use store::{
    Background, BlockSource, CountersSnapshot, DeferredPolicy, ExportOptions, ExportProgress,
    ExportReport, ExtentInfo, FormatOptions, ImportOptions, ImportProgress, ImportReport,
    JournalSize, MkfsOptions, ObjectStat, OpenOptions, ScrubOptions, ScrubReport, Statfs, Store,
    Work,
};
#[cfg(feature = "rocksdb")]
pub use store::{SalvageReport, SalvageTarget};
pub use txn::Transaction;
