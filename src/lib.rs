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

// Without `internals`, the engine's helpers used only by its own tests, fuzz targets and
// benchmarks are unused: that is expected, and what lints them is the build with it.
#![cfg_attr(not(feature = "internals"), allow(dead_code, unused_imports))]
#![warn(unnameable_types)]
#![deny(missing_docs)]

// The engine's modules. Only what the re-exports below and the `device` and `kv` seams name is
// the API; the `internals` feature opens the modules to this crate's own tests, fuzz targets
// and benchmarks (it is no API: anything behind it may change in any release).
macro_rules! internal_modules {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {$(
        $(#[$attr])*
        #[cfg(feature = "internals")]
        #[doc(hidden)]
        pub mod $name;
        $(#[$attr])*
        #[cfg(not(feature = "internals"))]
        pub(crate) mod $name;
    )*};
}
pub(crate) use internal_modules;

internal_modules!(
    alloc, completion, csum, format, fsck, journal, onode, store, txn, error
);
pub mod device;
pub mod kv;
/// The seeded random number generator the crash tests use (`BSTORE_SEED` replays a run).
#[cfg(feature = "testing")]
pub mod rng;
#[cfg(not(feature = "testing"))]
pub(crate) mod rng;

/// Export streams (FORMAT.md §12) read and written frame by frame, for tools that check or
/// transform a stream without a store: [`Store::export`] and [`Store::import`] use them.
pub mod stream {
    pub use crate::format::export::{
        DATA_FRAME_BYTES_MAX, Frame, ObjectHead, READ_BUFFER_BYTES, STREAM_VERSION, StreamError,
        StreamHeader, StreamReader, StreamTrailer, StreamWriter,
    };
}

pub use alloc::{DeviceExtent, ScoreVariant, format_g17};
pub use error::{Error, Missing, Result};
pub use format::DecodeError;
pub use format::label::{Label, LabelError};
pub use format::onode::{AllocHint, CsumType};
pub use format::records::{JournalPosition, JournalRegion, StatfsRecord};
pub use fsck::FsckError;
pub use fsck::{
    BadChunk, ChunkProblem, DeepReport, FsckOptions, FsckProgress, FsckReport, Repair,
    RepairOptions, RepairReport,
};
pub use journal::JournalSummary;
pub use journal::{JournalReplay, JournalStatus};
pub use store::OmapIter;
pub use store::mkfs::{format_uuid, parse_uuid};
#[cfg(feature = "rocksdb")]
pub use store::mkfs_dir::ZapReport;
pub use store::{
    Background, BlockSource, CollectionStatfs, CountersSnapshot, DeferredPolicy, ExportOptions,
    ExportProgress, ExportReport, ExtentInfo, FormatOptions, ImportOptions, ImportProgress,
    ImportReport, JournalSize, MkfsOptions, ObjectListing, ObjectStat, OmapSnapshot, OpenOptions,
    ScrubOptions, ScrubReport, Statfs, Store, Work,
};
#[cfg(feature = "rocksdb")]
pub use store::{SalvageReport, SalvageTarget};
pub use txn::Transaction;
/// A deliberate bug for proving that crash tests catch it (debug builds only).
#[cfg(debug_assertions)]
#[doc(hidden)]
pub use txn::engine::Mutation;
pub use txn::{ObjectHash, ObjectOp, Op};
