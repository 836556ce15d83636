//! Deferred writes: small in-place overwrites logged in the KV commit, applied to the device later.
//!
//! A transaction that overwrites live data in place puts the new bytes in a record
//! (FORMAT.md §6.5) in its own KV batch, together with the checksums that describe them, so it is
//! acknowledged as soon as its group commit is synced: one synced KV write, no data flush. The
//! life of a record:
//!
//! 1. *Staged* when the transaction is installed: its bytes enter the overlay, so reads (and
//!    read-modify-writes of later transactions) see them at once.
//! 2. *Queued* when its commit is durable ([`Deferred::enqueue`]).
//! 3. *Applied* by the applier thread in batches: when enough records or bytes are queued, or
//!    the oldest has waited `max_delay`. A batch coalesces its records by device offset (the
//!    later record wins), writes, drops the bytes from the overlay, flushes the device, and only
//!    then deletes the records in one synced KV write.
//! 4. A record still in the KV store at mount is applied again by [`replay`] before anything
//!    reads the device. Applying a record twice writes the same bytes.
//!
//! Space freed while records are outstanding is held ([`Deferred::release_when_applied`]) until
//! every record committed before the release is applied and deleted (FORMAT.md invariant 7), so
//! neither a pending apply nor a replay after a crash can land on reused space.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::background::Background;
use super::engine::{Counters, Engine, EngineConfig};
use super::segments::SegmentMap;
use crate::alloc::DeviceExtent;
use crate::device::{AlignedBuf, BlockDevice, IoRequest};
use crate::error::{Error, Result};
use crate::format::deferred::{DeferredRecord, encode_writes};
use crate::format::keys::{self, KeySpace};
use crate::journal::NoHooks;
use crate::kv::{Batch, Durability, Kv};
use crate::onode::read::PendingBytes;

/// Largest single device write an apply batch issues.
const APPLY_RUN_MAX: u64 = 1 << 20;

/// When the applier starts a batch, and how much may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeferredPolicy {
    /// Apply once this many records are queued (BlueStore's `deferred_batch_ops`).
    pub batch_records: usize,
    /// Apply once this many bytes are queued.
    pub batch_bytes: u64,
    /// Apply once the oldest queued record has waited this long.
    pub max_delay: Duration,
    /// Commits wait while this many bytes are queued (backpressure).
    pub queued_bytes_max: u64,
}

/// Built from the defaults, field by field (the struct may grow: no literals outside this
/// crate).
impl DeferredPolicy {
    /// Sets `batch_records`.
    pub fn with_batch_records(mut self, batch_records: usize) -> Self {
        self.batch_records = batch_records;
        self
    }

    /// Sets `batch_bytes`.
    pub fn with_batch_bytes(mut self, batch_bytes: u64) -> Self {
        self.batch_bytes = batch_bytes;
        self
    }

    /// Sets `max_delay`.
    pub fn with_max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// Sets `queued_bytes_max`.
    pub fn with_queued_bytes_max(mut self, queued_bytes_max: u64) -> Self {
        self.queued_bytes_max = queued_bytes_max;
        self
    }
}

impl Default for DeferredPolicy {
    fn default() -> Self {
        DeferredPolicy {
            batch_records: 64,
            batch_bytes: 4 << 20,
            max_delay: Duration::from_millis(20),
            queued_bytes_max: 64 << 20,
        }
    }
}

/// A staged record: its sequence and its writes, shared with the overlay.
#[derive(Debug)]
pub struct StagedRecord {
    /// The record's key.
    pub sequence: u64,
    /// (device offset, bytes) in transaction order.
    pub writes: Vec<(u64, Arc<AlignedBuf>)>,
    /// The journal record that committed it, once committed through the journal: its bytes
    /// go in place only after that record is sealed.
    pub journal_sequence: Option<u64>,
}

impl StagedRecord {
    fn bytes(&self) -> u64 {
        self.writes.iter().map(|(_, buf)| buf.len() as u64).sum()
    }
}

struct Queued {
    generation: u64,
    record: StagedRecord,
    queued_at: Instant,
}

#[derive(Default)]
struct QueueState {
    records: VecDeque<Queued>,
    /// Bytes queued or being applied.
    bytes: u64,
    /// Records queued or being applied.
    count: usize,
    /// Generation of the last record queued.
    enqueued: u64,
    /// Every record up to this generation is applied and deleted.
    retired: u64,
    /// Freed space waiting for records up to a generation to retire.
    held: VecDeque<(u64, Vec<DeviceExtent>)>,
    /// A caller waits for everything queued up to this generation.
    drain_to: u64,
    shutdown: bool,
    failed: bool,
    /// When backpressure was last reported, and the waits since.
    pressure_reported: Option<Instant>,
    waits_unreported: u64,
}

/// Backpressure is reported at most this often, however many commits wait.
const PRESSURE_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Deferred writes of a mounted store: overlay, queue and the applier's state.
pub struct Deferred {
    policy: DeferredPolicy,
    next_sequence: AtomicU64,
    overlay: Mutex<SegmentMap>,
    queue: Mutex<QueueState>,
    work: Condvar,
    progress: Condvar,
}

/// Gauges of the deferred queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeferredGauges {
    /// Records committed and not yet applied and deleted.
    pub records: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl Deferred {
    /// Deferred state whose next record gets `next_sequence`.
    pub fn new(policy: DeferredPolicy, next_sequence: u64) -> Deferred {
        Deferred {
            policy,
            next_sequence: AtomicU64::new(next_sequence.max(1)),
            overlay: Mutex::new(SegmentMap::default()),
            queue: Mutex::new(QueueState::default()),
            work: Condvar::new(),
            progress: Condvar::new(),
        }
    }

    /// Stages a transaction's in-place writes: assigns the record's sequence, puts the record
    /// in `batch` and the bytes in the overlay. Called at install, under the prepare locks of
    /// the transaction's collections, so records of one object are numbered in order.
    pub fn stage(&self, writes: Vec<(u64, AlignedBuf)>, batch: &mut Batch) -> StagedRecord {
        let sequence = self.next_sequence.fetch_add(1, Ordering::Relaxed);
        let value = encode_writes(writes.iter().map(|(offset, buf)| (*offset, &buf[..])));
        batch.put(KeySpace::Deferred, keys::deferred_key(sequence), value);
        let writes: Vec<(u64, Arc<AlignedBuf>)> = writes
            .into_iter()
            .map(|(offset, buf)| (offset, Arc::new(buf)))
            .collect();
        let mut overlay = self.overlay.lock();
        for (offset, buf) in &writes {
            overlay.insert(*offset, Arc::clone(buf), sequence);
        }
        StagedRecord {
            sequence,
            writes,
            journal_sequence: None,
        }
    }

    /// Forgets a staged record whose transaction failed to commit.
    pub fn unstage(&self, record: &StagedRecord) {
        self.drop_from_overlay(std::slice::from_ref(record));
    }

    /// Queues records whose commit is durable, in commit order. Waits while too many bytes
    /// are queued, so a slow device holds back commits instead of filling memory (a stepped
    /// store applies a batch itself instead).
    pub fn enqueue(&self, engine: &Engine, records: Vec<StagedRecord>) {
        if records.is_empty() {
            return;
        }
        let mut queue = self.queue.lock();
        self.wait_for_room_locked(engine, &mut queue);
        let now = Instant::now();
        for record in records {
            queue.enqueued += 1;
            queue.bytes += record.bytes();
            queue.count += 1;
            let generation = queue.enqueued;
            queue.records.push_back(Queued {
                generation,
                record,
                queued_at: now,
            });
        }
        self.work.notify_one();
    }

    /// Waits while too many bytes are queued (see [`Deferred::enqueue`]). The journal's
    /// committer calls this before it commits a record, so that queueing the record's deferred
    /// writes once it is durable (under the journal's lock, which the applier needs) never
    /// waits: it is the only thread that queues.
    pub fn wait_for_room(&self, engine: &Engine) {
        self.wait_for_room_locked(engine, &mut self.queue.lock());
    }

    fn wait_for_room_locked(&self, engine: &Engine, queue: &mut MutexGuard<'_, QueueState>) {
        let full = |queue: &QueueState| {
            queue.bytes >= self.policy.queued_bytes_max && !queue.failed && !queue.shutdown
        };
        if full(queue) {
            self.report_pressure(queue);
        }
        while full(queue) {
            match engine.config.background {
                Background::Threads => self.progress.wait(queue),
                Background::Stepped => {
                    MutexGuard::unlocked(queue, || self.apply_step(engine));
                }
            }
        }
    }

    /// Says, at most every [`PRESSURE_REPORT_INTERVAL`], that commits wait for deferred writes
    /// to reach the device: the device is slower than the small overwrites sent to it.
    fn report_pressure(&self, queue: &mut QueueState) {
        queue.waits_unreported += 1;
        let now = Instant::now();
        if queue
            .pressure_reported
            .is_some_and(|at| now.duration_since(at) < PRESSURE_REPORT_INTERVAL)
        {
            return;
        }
        tracing::warn!(
            queued_bytes = queue.bytes,
            queued_records = queue.count,
            queued_bytes_max = self.policy.queued_bytes_max,
            commits_waited = queue.waits_unreported,
            "deferred queue full: commits wait until deferred writes are applied"
        );
        queue.pressure_reported = Some(now);
        queue.waits_unreported = 0;
    }

    /// Hands `extents` to `give` once no record committed so far can still write to them:
    /// at once when nothing is outstanding, else when those records are applied and deleted.
    pub fn release_when_applied(
        &self,
        extents: Vec<DeviceExtent>,
        give: impl FnOnce(Vec<DeviceExtent>),
    ) {
        if extents.is_empty() {
            return;
        }
        {
            let mut queue = self.queue.lock();
            if queue.retired < queue.enqueued {
                let generation = queue.enqueued;
                queue.held.push_back((generation, extents));
                return;
            }
        }
        give(extents);
    }

    /// Applies everything queued so far and waits until it is deleted from the KV store.
    pub fn drain(&self, engine: &Engine) -> Result<()> {
        let mut queue = self.queue.lock();
        let target = queue.enqueued;
        queue.drain_to = queue.drain_to.max(target);
        self.work.notify_one();
        while queue.retired < target && !queue.failed {
            match engine.config.background {
                Background::Threads => self.progress.wait(&mut queue),
                Background::Stepped => {
                    MutexGuard::unlocked(&mut queue, || self.apply_step(engine));
                }
            }
        }
        if queue.failed {
            return Err(Error::Poisoned("a deferred write failed".into()));
        }
        Ok(())
    }

    /// Whether freed space is waiting for records to be applied.
    pub fn holds_space(&self) -> bool {
        !self.queue.lock().held.is_empty()
    }

    /// Bytes of freed space waiting for records to be applied.
    pub fn held_bytes(&self) -> u64 {
        let queue = self.queue.lock();
        queue
            .held
            .iter()
            .flat_map(|(_, e)| e)
            .map(|e| e.length)
            .sum()
    }

    /// Records and bytes outstanding.
    pub fn gauges(&self) -> DeferredGauges {
        let queue = self.queue.lock();
        DeferredGauges {
            records: queue.count as u64,
            bytes: queue.bytes,
        }
    }

    /// Bytes of `[device_offset, +length)` that are waiting in the overlay.
    pub fn pending_bytes_within(&self, device_offset: u64, length: u64) -> u64 {
        let end = device_offset + length;
        self.overlay
            .lock()
            .iter()
            .filter(|(start, segment)| *start < end && segment.end > device_offset)
            .map(|(start, segment)| segment.end.min(end) - start.max(device_offset))
            .sum()
    }

    /// Asks the applier to finish what is queued and stop.
    pub fn shutdown(&self) {
        self.queue.lock().shutdown = true;
        self.work.notify_all();
        self.progress.notify_all();
    }

    /// The applier thread's loop: batches until shutdown, then whatever is left.
    pub fn run_applier(&self, engine: &Engine) {
        while let Some(batch) = self.next_batch() {
            self.apply_batch(engine, batch);
        }
    }

    /// Stepped: applies every record queued now, whatever the policy's batch size and delay
    /// (the caller chooses when); the number applied, `None` when the queue was empty.
    pub fn apply_step(&self, engine: &Engine) -> Option<usize> {
        let batch: Vec<Queued> = {
            let mut queue = self.queue.lock();
            if queue.failed {
                queue.records.clear();
            }
            queue.records.drain(..).collect()
        };
        if batch.is_empty() {
            return None;
        }
        let records = batch.len();
        self.apply_batch(engine, batch);
        Some(records)
    }

    fn apply_batch(&self, engine: &Engine, batch: Vec<Queued>) {
        let last = batch.last().map(|q| q.generation).unwrap_or_default();
        let records: Vec<StagedRecord> = batch.into_iter().map(|q| q.record).collect();
        match self.apply(engine, &records) {
            Ok(()) => self.retire(engine, last, &records),
            Err(error) => {
                // Fail-stop: the records stay in the KV store for replay at the next mount.
                engine.poison(&error);
                self.queue.lock().failed = true;
                self.progress.notify_all();
            }
        }
    }

    /// Waits until a batch is due; takes every queued record. `None` at shutdown once empty.
    fn next_batch(&self) -> Option<Vec<Queued>> {
        let mut queue = self.queue.lock();
        loop {
            if queue.failed {
                queue.records.clear();
            }
            let due = match queue.records.front() {
                None => None,
                Some(oldest) => {
                    let waited = oldest.queued_at.elapsed();
                    let full = queue.records.len() >= self.policy.batch_records
                        || queue.bytes >= self.policy.batch_bytes;
                    let asked = queue.drain_to > queue.retired || queue.shutdown;
                    if full || asked || waited >= self.policy.max_delay {
                        return Some(queue.records.drain(..).collect());
                    }
                    Some(self.policy.max_delay - waited)
                }
            };
            match due {
                None if queue.shutdown => return None,
                None => self.work.wait(&mut queue),
                Some(wait) => {
                    self.work.wait_for(&mut queue, wait);
                }
            }
        }
    }

    /// Writes a batch to the device, drops it from the overlay, flushes, deletes the records.
    fn apply(&self, engine: &Engine, records: &[StagedRecord]) -> Result<()> {
        engine.check_poison()?;
        let journal = engine.journal.as_ref();
        let committed_in = records.iter().filter_map(|r| r.journal_sequence).max();
        if let (Some(journal), Some(sequence)) = (journal, committed_in) {
            journal.seal(engine.device.as_ref(), engine.kv.as_ref(), sequence)?;
        }
        let mut coalesced = SegmentMap::default();
        for record in records {
            for (offset, buf) in &record.writes {
                coalesced.insert(*offset, Arc::clone(buf), record.sequence);
            }
        }
        let requests = coalesced_writes(&coalesced);
        let bytes: u64 = requests.iter().map(|r| r.buf.len() as u64).sum();
        engine.device.run(requests)?;
        Counters::add(&engine.counters.data_bytes_written, bytes);
        Counters::add(&engine.counters.deferred_bytes_applied, bytes);
        // The bytes are on the device (not yet durable, but every read now finds them there),
        // so the overlay may let go of them.
        self.drop_from_overlay(records);
        // Durability point: the in-place bytes must be stable before the records that could
        // repair them are deleted.
        engine.device.flush()?;
        let mut batch = Batch::new();
        for record in records {
            batch.delete(KeySpace::Deferred, keys::deferred_key(record.sequence));
        }
        match journal {
            Some(journal) => {
                journal.commit(
                    engine.device.as_ref(),
                    engine.kv.as_ref(),
                    batch,
                    &[],
                    &mut NoHooks,
                    true,
                )?;
            }
            None => engine.kv.write(batch, Durability::Sync)?,
        }
        Counters::add(&engine.counters.deferred_batches, 1);
        Counters::add(
            &engine.counters.deferred_records_applied,
            records.len() as u64,
        );
        Ok(())
    }

    fn drop_from_overlay(&self, records: &[StagedRecord]) {
        let mut overlay = self.overlay.lock();
        for record in records {
            for (offset, buf) in &record.writes {
                overlay.remove_tagged(*offset, offset + buf.len() as u64, record.sequence);
            }
        }
    }

    /// Marks records up to `generation` retired and releases the space that waited for them.
    fn retire(&self, engine: &Engine, generation: u64, records: &[StagedRecord]) {
        let mut queue = self.queue.lock();
        queue.retired = generation;
        queue.count -= records.len();
        queue.bytes -= records.iter().map(StagedRecord::bytes).sum::<u64>();
        let mut released = Vec::new();
        while queue.held.front().is_some_and(|(g, _)| *g <= generation) {
            released.extend(queue.held.pop_front().expect("checked").1);
        }
        // Still under the queue lock (order: queue, reclaimer, allocator), so whoever sees
        // these records retired (`drain`) also sees their space back.
        engine.reclaimer.release(&engine.allocator, released);
        drop(queue);
        self.progress.notify_all();
    }
}

impl Deferred {
    /// Keeps a committed record's bytes in the overlay for good (a read-only mount never
    /// applies them), counted in the gauges as outstanding (`bytes`: the record's, as a live
    /// store counts them).
    pub fn hold_unapplied(&self, sequence: u64, coalesced: &SegmentMap, bytes: u64) {
        let mut overlay = self.overlay.lock();
        for (start, segment) in coalesced.iter() {
            let mut buf = AlignedBuf::zeroed((segment.end - start) as usize);
            buf.copy_from_slice(segment.bytes(start));
            overlay.insert(start, Arc::new(buf), sequence);
        }
        drop(overlay);
        let mut queue = self.queue.lock();
        queue.count += 1;
        queue.bytes += bytes;
    }

    /// One look at the overlay for a read: `None` when it holds no byte of the range (older
    /// layers may serve it), else whether it supplied all of it into `target`.
    pub fn copy_out_if_held(&self, device_offset: u64, target: &mut [u8]) -> Option<bool> {
        let overlay = self.overlay.lock();
        let end = device_offset + target.len() as u64;
        if overlay.is_empty() || !overlay.holds_any(device_offset, end) {
            return None;
        }
        Some(overlay.copy_out(device_offset, target))
    }
}

impl PendingBytes for Deferred {
    fn copy_out(&self, device_offset: u64, target: &mut [u8]) -> bool {
        self.overlay.lock().copy_out(device_offset, target)
    }

    fn holds_any(&self, device_offset: u64, length: u64) -> bool {
        let overlay = self.overlay.lock();
        !overlay.is_empty() && overlay.holds_any(device_offset, device_offset + length)
    }
}

/// One device write per run of adjacent coalesced bytes.
fn coalesced_writes(coalesced: &SegmentMap) -> Vec<IoRequest> {
    coalesced
        .runs(APPLY_RUN_MAX)
        .into_iter()
        .map(|(start, end)| {
            let mut buf = AlignedBuf::zeroed((end - start) as usize);
            assert!(coalesced.copy_out(start, &mut buf), "runs are covered");
            IoRequest::write(start, buf)
        })
        .collect()
}

/// What [`replay`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Records applied.
    pub records: u64,
    /// Bytes written.
    pub bytes: u64,
    /// The sequence the next record gets.
    pub next_sequence: u64,
}

/// Applies every record left in the KV store, in sequence order, flushes the device and
/// deletes them. Runs at mount, before anything reads object data. A record aimed outside the
/// allocatable part of the device is corruption, and nothing is written for it.
pub fn replay(
    device: &dyn BlockDevice,
    kv: &dyn Kv,
    config: &EngineConfig,
) -> Result<ReplaySummary> {
    let mut summary = ReplaySummary::default();
    let mut applied_keys = Vec::new();
    for_each_record(kv, config, &mut |sequence, record, coalesced| {
        device.run(coalesced_writes(coalesced))?;
        summary.records += 1;
        summary.bytes += record.data_bytes();
        summary.next_sequence = sequence + 1;
        applied_keys.push(keys::deferred_key(sequence));
        Ok(())
    })?;
    if applied_keys.is_empty() {
        return Ok(summary);
    }
    device.flush()?;
    let mut batch = Batch::new();
    for key in applied_keys {
        batch.delete(KeySpace::Deferred, key);
    }
    kv.write(batch, Durability::Sync)?;
    Ok(summary)
}

/// Puts every record left in the KV store into the overlay of a read-only mount instead of
/// applying it: reads then see the committed bytes while the device and the KV store stay
/// exactly as they were. Returns what [`replay`] would have applied.
pub fn overlay_pending(
    deferred: &Deferred,
    kv: &dyn Kv,
    config: &EngineConfig,
) -> Result<ReplaySummary> {
    let mut summary = ReplaySummary::default();
    for_each_record(kv, config, &mut |sequence, record, coalesced| {
        deferred.hold_unapplied(sequence, coalesced, record.data_bytes());
        summary.records += 1;
        summary.bytes += record.data_bytes();
        summary.next_sequence = sequence + 1;
        Ok(())
    })?;
    Ok(summary)
}

/// Visits every deferred record in sequence order: decoded, checked against the device's
/// allocatable space, and coalesced (a later write of the record wins where two overlap).
fn for_each_record(
    kv: &dyn Kv,
    config: &EngineConfig,
    visit: &mut dyn FnMut(u64, &DeferredRecord, &SegmentMap) -> Result<()>,
) -> Result<()> {
    kv.scan(KeySpace::Deferred, &[], None, &mut |key, value| {
        let sequence = keys::decode_be64_key("deferred", key)?;
        let record = DeferredRecord::decode(value)
            .map_err(|e| Error::corruption(format!("deferred record {sequence}: {}", e.detail)))?;
        let coalesced = coalesce_record(&record, sequence, config)?;
        visit(sequence, &record, &coalesced)?;
        Ok(true)
    })
}

/// The bytes of `record` by device offset, its writes coalesced in record order (a later write
/// wins where two overlap), because the requests of one batch may complete in any order.
fn coalesce_record(
    record: &DeferredRecord,
    sequence: u64,
    config: &EngineConfig,
) -> Result<SegmentMap> {
    let mut coalesced = SegmentMap::default();
    for write in &record.writes {
        let end = write.device_offset.saturating_add(write.data.len() as u64);
        if write.device_offset < config.reserved_bytes || end > config.device_size {
            return Err(Error::corruption(format!(
                "deferred record {sequence} writes [{:#x}, {end:#x}) outside the device's \
                 allocatable space",
                write.device_offset
            )));
        }
        let buf = Arc::new(AlignedBuf::copy_from(&write.data));
        coalesced.insert(write.device_offset, buf, sequence);
    }
    Ok(coalesced)
}
