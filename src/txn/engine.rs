//! The engine: everything a transaction, a read or fsck needs, shared by all threads.
//!
//! `Engine` owns the device, the KV store, the allocator, the collections (each with its onode
//! cache and sequencer), the id counters, the applied statistics, the counters and the poison
//! latch. The public [`crate::Store`] is a thin facade over an `Arc<Engine>` and the commit
//! pipeline's thread.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};

use super::background::{Background, Stepper};
use super::deferred::{Deferred, DeferredPolicy};
use super::inflight::InflightData;
use super::reclaim::Reclaimer;
use crate::alloc::{BitmapAllocator, FreelistGeometry};
use crate::completion::{Help, Waiting};
use crate::device::BlockDevice;
use crate::error::{Error, Result};
use crate::format::label::Label;
use crate::format::onode::CsumType;
use crate::format::records::{StatfsRecord, Superblock};
use crate::format::shared::SharedBlobRecord;
use crate::journal::{Journal, JournalSummary};
use crate::kv::Kv;
use crate::onode::read::PendingBytes;
use crate::onode::{Onode, OnodeBudget, OnodeCache};

/// Geometry and policy fixed for the life of a mounted store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Allocation unit in bytes.
    pub min_alloc_size: u32,
    /// Checksum algorithm of new blobs.
    pub csum_type: CsumType,
    /// log2 of the checksum chunk of new blobs.
    pub csum_chunk_order: u8,
    /// Largest blob a write creates.
    pub blob_length_max: u32,
    /// Bytes of device in use.
    pub device_size: u64,
    /// Bytes at the start of the device never allocated.
    pub reserved_bytes: u64,
    /// Writes smaller than this that overwrite live data take the deferred path.
    pub prefer_deferred_size: u32,
    /// Byte budget of the onode caches of all collections together.
    pub onode_cache_bytes: usize,
    /// Transactions queued in the commit pipeline before submitters wait.
    pub queue_depth_max: usize,
    /// A transaction durable later than this after its submission is reported.
    pub slow_transaction: Duration,
    /// When deferred writes are applied.
    pub deferred: DeferredPolicy,
    /// Threads, or steps the caller drives.
    pub background: Background,
    /// A deliberate bug, for proving that the crash tests catch it (debug builds only).
    #[cfg(debug_assertions)]
    pub mutation: Mutation,
}

/// A deliberate bug a test can switch on, to show that the crash simulation catches it. Only a
/// debug build (what `cargo test` runs) has the switch (`OpenOptions::mutation`); in a release
/// build no mutation can be set.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mutation {
    /// No bug.
    #[default]
    None,
    /// Commit a group's metadata without flushing its data to the device first.
    SkipFlushBeforeCommit,
    /// Give space a transaction frees back to the allocator at once, before its commit is
    /// durable.
    ReuseSpaceBeforeCommit,
    /// Mount without replaying deferred records or the commit journal.
    SkipReplay,
    /// Replay the journal's last record without checking that its data reached the media.
    TrustLastRecord,
    /// Flush a group's journal record without waiting for its data writes to complete.
    FlushBeforeDataWritten,
}

impl EngineConfig {
    /// Checksum chunk in bytes.
    pub fn csum_chunk(&self) -> u32 {
        1 << self.csum_chunk_order
    }

    /// Smallest unit new data is laid out in: a whole checksum chunk and allocation unit.
    pub fn write_unit(&self) -> u32 {
        self.min_alloc_size.max(self.csum_chunk())
    }

    /// The freelist geometry.
    pub fn freelist_geometry(&self, superblock: &Superblock) -> FreelistGeometry {
        FreelistGeometry {
            unit_bytes: u64::from(self.min_alloc_size),
            blocks_per_key: u64::from(superblock.freelist_blocks_per_key),
            device_size: self.device_size,
        }
    }

    /// True when the deliberate bug `mutation` is switched on (never in a release build).
    pub fn mutated(&self, mutation: Mutation) -> bool {
        #[cfg(debug_assertions)]
        return self.mutation == mutation;
        #[cfg(not(debug_assertions))]
        {
            let _ = mutation;
            false
        }
    }
}

/// Per-collection commit order: counts transactions submitted and finished.
#[derive(Debug, Default)]
pub struct Sequencer {
    counts: Mutex<(u64, u64)>,
    finished_changed: Condvar,
}

impl Sequencer {
    /// One more transaction submitted.
    pub fn submit_one(&self) {
        self.counts.lock().0 += 1;
    }

    /// One transaction finished (durable or failed).
    pub fn finish_one(&self) {
        let mut counts = self.counts.lock();
        counts.1 += 1;
        self.finished_changed.notify_all();
    }

    /// Waits until every transaction submitted before the call has finished.
    pub fn wait_settled(&self, waiting: Waiting<'_>) {
        let mut counts = self.counts.lock();
        let target = counts.0;
        while counts.1 < target {
            waiting.wait(&self.finished_changed, &mut counts);
        }
    }
}

/// A named group of objects.
#[derive(Debug)]
pub struct Collection {
    /// Collection id: prefixes the keys of its objects.
    pub id: u64,
    /// Name (changed only by a rename, installed with the namespace held exclusively).
    name: RwLock<Vec<u8>>,
    /// Newest onodes of the collection's objects.
    pub onodes: OnodeCache,
    /// Held while a transaction touching the collection is prepared and queued, so that
    /// transactions on one collection are queued (and therefore committed) in submission order.
    pub prepare_lock: Mutex<()>,
    /// Counts transactions in flight, for listing and removal.
    pub sequencer: Sequencer,
    /// What its objects hold, kept current by every transaction installed on it once the
    /// first statistics query counted them (`None`: not counted since the store opened, and
    /// transactions skip the bookkeeping).
    pub totals: Mutex<Option<ObjectTotals>>,
}

/// Objects and their space, summed over a collection's objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObjectTotals {
    /// Number of objects.
    pub objects: u64,
    /// Logical bytes of data (holes excluded).
    pub stored_bytes: u64,
    /// Device bytes each object references (shared data counts for each object sharing it).
    pub allocated_bytes: u64,
}

impl ObjectTotals {
    /// One object's share.
    pub fn of(onode: &Onode) -> Self {
        ObjectTotals {
            objects: 1,
            stored_bytes: onode.extent_map.stored_bytes(),
            allocated_bytes: onode.extent_map.allocated_bytes(),
        }
    }

    /// Adds another's totals.
    pub fn add(&mut self, other: ObjectTotals) {
        self.objects += other.objects;
        self.stored_bytes += other.stored_bytes;
        self.allocated_bytes += other.allocated_bytes;
    }

    /// Replaces an object's share `before` by `after`.
    pub fn replace(&mut self, before: ObjectTotals, after: ObjectTotals) {
        let change = |total: u64, before: u64, after: u64| {
            total.saturating_sub(before).saturating_add(after)
        };
        self.objects = change(self.objects, before.objects, after.objects);
        self.stored_bytes = change(self.stored_bytes, before.stored_bytes, after.stored_bytes);
        self.allocated_bytes = change(
            self.allocated_bytes,
            before.allocated_bytes,
            after.allocated_bytes,
        );
    }
}

impl Collection {
    /// A collection with an empty cache.
    pub fn new(id: u64, name: Vec<u8>, onode_budget: &Arc<OnodeBudget>) -> Self {
        Collection {
            id,
            name: RwLock::new(name),
            onodes: OnodeCache::new(onode_budget),
            prepare_lock: Mutex::new(()),
            sequencer: Sequencer::default(),
            totals: Mutex::new(None),
        }
    }

    /// Its name.
    pub fn name(&self) -> Vec<u8> {
        self.name.read().clone()
    }

    /// Gives it a new name (a rename being installed).
    pub fn rename(&self, new_name: Vec<u8>) {
        *self.name.write() = new_name;
    }

    /// Printable name for messages.
    pub fn display_name(&self) -> String {
        display_bytes(&self.name.read())
    }
}

/// Monotonic ids handed out to new objects, collections and shared blobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdCounters {
    /// Highest object id handed out.
    pub nid_last: u64,
    /// Highest collection id handed out.
    pub cid_last: u64,
    /// Highest shared-blob id handed out.
    pub sbid_last: u64,
}

/// Counters of what the engine did, for benchmarks and operators.
#[derive(Debug, Default)]
pub struct Counters {
    /// Transactions committed.
    pub transactions_committed: AtomicU64,
    /// Group commits (each makes a group of transactions durable at once).
    pub group_commits: AtomicU64,
    /// Synced KV writes (one per group commit without a journal).
    pub kv_syncs: AtomicU64,
    /// Device flushes issued by the commit pipeline.
    pub device_flushes: AtomicU64,
    /// Bytes written to the data device by transactions.
    pub data_bytes_written: AtomicU64,
    /// Bytes read from the data device.
    pub data_bytes_read: AtomicU64,
    /// Write decisions: new blobs in new space.
    pub writes_new_space: AtomicU64,
    /// Write decisions: into unused chunks of an existing blob.
    pub writes_fill_unused: AtomicU64,
    /// Write decisions: deferred overwrites of live data in place.
    pub writes_deferred: AtomicU64,
    /// Partial checksum chunks completed from existing data (read-modify-write).
    pub write_chunk_merges: AtomicU64,
    /// Deferred records applied to the device and deleted.
    pub deferred_records_applied: AtomicU64,
    /// Device bytes written by deferred applies (after coalescing).
    pub deferred_bytes_applied: AtomicU64,
    /// Deferred apply batches.
    pub deferred_batches: AtomicU64,
    /// Deferred records replayed at mount.
    pub deferred_records_replayed: AtomicU64,
    /// Commits too large for one record, made durable by a checkpoint and a synced KV write.
    pub journal_bypasses: AtomicU64,
    /// Device bytes read and verified by scrubs.
    pub scrub_bytes_read: AtomicU64,
    /// Chunks scrubs found failing their checksum.
    pub scrub_bad_chunks: AtomicU64,
}

impl Counters {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// The shared state of a mounted store.
pub struct Engine {
    /// The data device.
    pub device: Arc<dyn BlockDevice>,
    /// The metadata store.
    pub kv: Arc<dyn Kv>,
    /// The label read at mount.
    pub label: Label,
    /// The superblock read at mount.
    pub superblock: Superblock,
    /// Geometry and policy.
    pub config: EngineConfig,
    /// Free space.
    pub allocator: Mutex<BitmapAllocator>,
    /// Collections by name.
    pub collections: RwLock<BTreeMap<Vec<u8>, Arc<Collection>>>,
    /// The byte budget every collection's onode cache charges.
    pub onode_budget: Arc<OnodeBudget>,
    /// Id counters (the newest handed out, durable or not).
    pub ids: Mutex<IdCounters>,
    /// Statistics including every submitted transaction.
    pub applied_stats: Mutex<StatfsRecord>,
    /// What happened so far.
    pub counters: Counters,
    /// Holds freed space until no active read can still see it.
    pub reclaimer: Reclaimer,
    /// New data of transactions not yet durable, readable from memory.
    pub inflight: InflightData,
    /// Deferred writes staged, queued and being applied.
    pub deferred: Deferred,
    /// The commit journal (format-2 stores); `None` for a read-only mount or a format-1 store,
    /// whose commits are synced KV writes.
    pub journal: Option<Journal>,
    /// Newest versions of the shared-blob records transactions changed since mount (the KV
    /// store holds the rest; an entry goes when its record is deleted).
    pub shared_blobs: Mutex<HashMap<u64, Arc<SharedBlobRecord>>>,
    /// The pipeline's steps, when the background work is stepped.
    pub stepper: Stepper,
    /// Every transaction queued and every one finished (acknowledged transactions finish a
    /// little later: space released, deferred writes queued, counters updated).
    pub transactions: Sequencer,
    /// What mount found in the commit journal (format-2 stores).
    pub journal_at_mount: Option<JournalSummary>,
    /// Exports holding a commit point: while any does, no write goes in place (see
    /// `store::export`).
    pub exports_pinned: AtomicUsize,
    poison: Mutex<Option<String>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("device", self.device.info())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Everything needed to build an engine.
pub struct EngineParts {
    /// The data device.
    pub device: Arc<dyn BlockDevice>,
    /// The metadata store.
    pub kv: Arc<dyn Kv>,
    /// The label.
    pub label: Label,
    /// The superblock.
    pub superblock: Superblock,
    /// Geometry and policy.
    pub config: EngineConfig,
    /// Free space.
    pub allocator: BitmapAllocator,
    /// Collections loaded from the KV store.
    pub collections: BTreeMap<Vec<u8>, Arc<Collection>>,
    /// The budget their onode caches charge (new collections' too).
    pub onode_budget: Arc<OnodeBudget>,
    /// Id counters loaded from the KV store.
    pub ids: IdCounters,
    /// Statistics loaded from the KV store.
    pub stats: StatfsRecord,
    /// Sequence of the next deferred record.
    pub next_deferred_sequence: u64,
    /// The commit journal, when commits go through one.
    pub journal: Option<Journal>,
    /// What mount found in the journal.
    pub journal_at_mount: Option<JournalSummary>,
}

impl Engine {
    /// Assembles an engine from mounted parts.
    pub fn new(parts: EngineParts) -> Engine {
        let deferred = Deferred::new(parts.config.deferred, parts.next_deferred_sequence);
        Engine {
            device: parts.device,
            kv: parts.kv,
            label: parts.label,
            superblock: parts.superblock,
            config: parts.config,
            allocator: Mutex::new(parts.allocator),
            collections: RwLock::new(parts.collections),
            onode_budget: parts.onode_budget,
            ids: Mutex::new(parts.ids),
            applied_stats: Mutex::new(parts.stats),
            counters: Counters::default(),
            reclaimer: Reclaimer::default(),
            inflight: InflightData::default(),
            deferred,
            journal: parts.journal,
            shared_blobs: Mutex::new(HashMap::new()),
            stepper: Stepper::default(),
            transactions: Sequencer::default(),
            journal_at_mount: parts.journal_at_mount,
            exports_pinned: AtomicUsize::new(0),
            poison: Mutex::new(None),
        }
    }

    /// How a call that must wait for background work waits: parked while threads do it, or
    /// doing it itself when the work is stepped.
    pub fn waiting(&self) -> Waiting<'_> {
        match self.config.background {
            Background::Threads => Waiting::Park,
            Background::Stepped => Waiting::Help(self),
        }
    }

    /// Fails with `Poisoned` once a device write, flush or KV sync has failed.
    pub fn check_poison(&self) -> Result<()> {
        match &*self.poison.lock() {
            Some(why) => Err(Error::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    /// Latches the store into the poisoned state (the first reason is kept). A `Poisoned`
    /// error passed on is unwrapped, so the reason is never nested in itself.
    pub fn poison(&self, why: &Error) {
        let mut poison = self.poison.lock();
        if poison.is_none() {
            let reason = match why {
                Error::Poisoned(reason) => reason.clone(),
                other => crate::error::Chain(other).to_string(),
            };
            tracing::error!(
                reason = %reason,
                "store poisoned: it refuses writes until it is reopened"
            );
            *poison = Some(reason);
        }
    }

    /// Why the store is poisoned, if it is.
    pub fn poison_reason(&self) -> Option<String> {
        self.poison.lock().clone()
    }

    /// The collection named `name`.
    pub fn collection(&self, name: &[u8]) -> Result<Arc<Collection>> {
        self.collections
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::collection_not_found(name))
    }
}

impl Help for Engine {
    fn help(&self) {
        assert!(
            self.stepper.any(),
            "a stepped store waits for background work, but none is pending"
        );
    }
}

/// Bytes newer in memory than on the device, newest first: deferred writes not yet applied,
/// then data of transactions not yet durable (a deferred overwrite of a blob is always newer
/// than the blob's own first write).
pub struct EnginePending<'e>(pub &'e Engine);

impl PendingBytes for EnginePending<'_> {
    fn copy_out(&self, device_offset: u64, target: &mut [u8]) -> bool {
        // A newer layer holding part of the range must supply all of it: falling through to
        // an older layer would return stale bytes for that part.
        match self.0.deferred.copy_out_if_held(device_offset, target) {
            Some(supplied) => supplied,
            None => self.0.inflight.copy_out(device_offset, target),
        }
    }

    fn holds_any(&self, device_offset: u64, length: u64) -> bool {
        self.0.deferred.holds_any(device_offset, length)
            || self.0.inflight.holds_any(device_offset, length)
    }
}

/// Bytes as text for messages: UTF-8 shown as is, other bytes escaped.
pub fn display_bytes(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}
