//! The commit pipeline: data I/O from many transactions, group commit in two stages.
//!
//! A prepared transaction is queued with a sequence number, its data writes go to the device,
//! and when they complete it becomes eligible. The flush thread takes every eligible transaction
//! whose earlier same-collection transactions are committed or in an earlier group, flushes the
//! device once (if any data was written since the last flush), and hands the group on. The
//! KV-sync thread writes all of a group's metadata, freelist and statistics changes in one synced
//! KV batch, releases the space it freed, marks its objects settled and runs its callbacks.
//! Groups commit in order; the flush of one group overlaps the KV sync of the one before.
//!
//! The queue is bounded: a submitter waits while it is full. A failed data write, flush or KV
//! sync poisons the engine; every queued transaction then fails and nothing more is acknowledged.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::background::{Background, Steps, Work};
use super::deferred::StagedRecord;
use super::engine::{Collection, Counters, Engine, IdCounters, Mutation};
use super::state::{TxnEvent, TxnState, next};
use crate::alloc::DeviceExtent;
use crate::device::{IoKind, IoRequest};
use crate::error::{Error, Result};
use crate::format::keys::{CID_MAX_KEY, NID_MAX_KEY, SBID_MAX_KEY, STATFS_KEY};
use crate::format::records::{StatfsRecord, encode_counter};
use crate::kv::{Batch, Durability, KeySpace};
use crate::onode::OnodeSlot;

/// Most transactions committed in one group.
pub const GROUP_TRANSACTIONS_MAX: usize = 1024;

/// Called once with the outcome when a transaction is durable (or has failed).
pub type CommitCallback = Box<dyn FnOnce(Result<()>) + Send>;

/// Change in the store statistics made by one transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsDelta {
    /// Device bytes newly referenced minus bytes no longer referenced.
    pub allocated_bytes: i64,
    /// Logical bytes added minus removed.
    pub stored_bytes: i64,
    /// Objects created minus removed.
    pub object_count: i64,
}

impl StatsDelta {
    /// Applies the delta to a statistics record.
    pub fn apply_to(&self, stats: &mut StatfsRecord) {
        stats.allocated_bytes = stats
            .allocated_bytes
            .saturating_add_signed(self.allocated_bytes);
        stats.stored_bytes = stats.stored_bytes.saturating_add_signed(self.stored_bytes);
        stats.object_count = stats.object_count.saturating_add_signed(self.object_count);
    }
}

/// A transaction ready to queue: everything the pipeline needs to finish it.
pub struct Prepared {
    /// Metadata changes (onodes, collections, freelist).
    pub batch: Batch,
    /// New data to write before the metadata may commit.
    pub data_writes: Vec<IoRequest>,
    /// Space to return to the allocator once the commit is durable.
    pub released: Vec<DeviceExtent>,
    /// Statistics change.
    pub stats_delta: StatsDelta,
    /// Highest ids this transaction used (persisted with it).
    pub ids: IdCounters,
    /// Objects touched: marked settled when the transaction finishes.
    pub slots: Vec<Arc<OnodeSlot>>,
    /// Collections touched: ordering and settling.
    pub collections: Vec<Arc<Collection>>,
    /// Creates or removes collections: such transactions commit in submission order.
    pub changes_namespace: bool,
    /// Completion callback.
    pub on_commit: Option<CommitCallback>,
    /// Device offsets of its data buffers registered as in flight (dropped when it finishes).
    pub inflight_offsets: Vec<u64>,
    /// Its in-place overwrites, applied after the commit.
    pub deferred: Option<StagedRecord>,
}

struct Entry {
    state: TxnState,
    collection_ids: Vec<u64>,
    prepared: Option<Prepared>,
}

#[derive(Default)]
struct QueueState {
    entries: BTreeMap<u64, Entry>,
    next_sequence: u64,
    shutdown: bool,
    device_dirty: bool,
}

struct Shared {
    engine: Arc<Engine>,
    queue: Mutex<QueueState>,
    work_ready: Condvar,
    room_free: Condvar,
    /// The durable statistics and id maxima, advanced by each commit.
    committed: Mutex<CommittedState>,
    /// Stepped: groups flushed and waiting for their commit (the channel between the threads).
    flushed: Mutex<VecDeque<Group>>,
}

/// Flushed groups that may wait for their commit: one being committed and one more, as the
/// threads allow (a group's flush overlaps the previous group's sync, and no further).
const FLUSHED_GROUPS_MAX: usize = 2;

/// The commit pipeline and its KV-sync thread.
pub struct Pipeline {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    applier: Mutex<Option<JoinHandle<()>>>,
}

impl Pipeline {
    /// Starts the flush, KV-sync and deferred-apply threads; or, for a stepped store, registers
    /// the pipeline's steps with the engine and starts nothing.
    pub fn start(engine: Arc<Engine>) -> Result<Pipeline> {
        let committed = CommittedState {
            stats: *engine.applied_stats.lock(),
            ids: *engine.ids.lock(),
        };
        let shared = Arc::new(Shared {
            engine,
            queue: Mutex::new(QueueState::default()),
            work_ready: Condvar::new(),
            room_free: Condvar::new(),
            committed: Mutex::new(committed),
            flushed: Mutex::new(VecDeque::new()),
        });
        let pipeline = Pipeline {
            shared: Arc::clone(&shared),
            threads: Mutex::new(Vec::new()),
            applier: Mutex::new(None),
        };
        if shared.engine.config.background == Background::Stepped {
            let steps: Weak<dyn Steps> = Arc::downgrade(&shared) as Weak<dyn Steps>;
            shared.engine.stepper.set(steps);
            return Ok(pipeline);
        }
        // One group may wait between the flusher and the committer: enough to overlap a flush
        // with a sync, without letting the flusher run far ahead.
        let (sender, receiver) = crossbeam::channel::bounded(FLUSHED_GROUPS_MAX - 1);
        let flusher_shared = Arc::clone(&shared);
        let flusher = std::thread::Builder::new()
            .name("bstore-flush".into())
            .spawn(move || flusher_shared.flush_loop(sender))
            .map_err(|e| Error::io("starting the flush thread", e))?;
        let committer_shared = Arc::clone(&shared);
        let committer = std::thread::Builder::new()
            .name("bstore-kv-sync".into())
            .spawn(move || committer_shared.commit_loop(receiver))
            .map_err(|e| Error::io("starting the KV-sync thread", e))?;
        let applier_engine = Arc::clone(&shared.engine);
        let applier = std::thread::Builder::new()
            .name("bstore-deferred".into())
            .spawn(move || applier_engine.deferred.run_applier(&applier_engine))
            .map_err(|e| Error::io("starting the deferred-apply thread", e))?;
        *pipeline.threads.lock() = vec![flusher, committer];
        *pipeline.applier.lock() = Some(applier);
        Ok(pipeline)
    }

    /// Queues a prepared transaction and submits its data writes. Waits while the queue is full.
    /// Must be called with the prepare locks of its collections held, so that queue order is
    /// submission order within each collection.
    pub fn enqueue(&self, mut prepared: Prepared) {
        let data_writes = std::mem::take(&mut prepared.data_writes);
        let has_writes = data_writes.iter().any(|r| r.kind == IoKind::Write);
        let data_bytes: u64 = data_writes.iter().map(|r| r.buf.len() as u64).sum();
        let engine = &self.shared.engine;
        if engine.config.mutated(Mutation::ReuseSpaceBeforeCommit) {
            let released = std::mem::take(&mut prepared.released);
            engine.reclaimer.release(&engine.allocator, released);
        }
        let sequence = {
            let mut queue = self.shared.queue.lock();
            let depth_max = engine.config.queue_depth_max;
            while queue.entries.len() >= depth_max && !queue.shutdown {
                engine.waiting().wait(&self.shared.room_free, &mut queue);
            }
            let sequence = queue.next_sequence;
            queue.next_sequence += 1;
            let event = if data_writes.is_empty() {
                TxnEvent::NoData
            } else {
                TxnEvent::DataSubmitted
            };
            queue.entries.insert(
                sequence,
                Entry {
                    state: next(TxnState::Queued, event),
                    collection_ids: order_keys(&prepared),
                    prepared: Some(prepared),
                },
            );
            if data_writes.is_empty() {
                self.shared.work_ready.notify_one();
            }
            sequence
        };
        if data_writes.is_empty() {
            return;
        }
        Counters::add(&self.shared.engine.counters.data_bytes_written, data_bytes);
        let shared = Arc::clone(&self.shared);
        self.shared.engine.device.submit(
            data_writes,
            Box::new(move |outcome| shared.data_completed(sequence, has_writes, outcome.result)),
        );
    }

    /// Waits for every queued transaction to finish, applies every deferred write, and stops
    /// the threads (a stepped store runs all of that work itself, in [`Work::ALL`] order).
    pub fn shutdown(&self) {
        let engine = &self.shared.engine;
        if engine.config.background == Background::Stepped {
            self.shared.queue.lock().shutdown = true;
            while engine.stepper.any() {}
            engine.deferred.shutdown();
            return;
        }
        self.shared.queue.lock().shutdown = true;
        self.shared.work_ready.notify_all();
        self.shared.room_free.notify_all();
        for thread in std::mem::take(&mut *self.threads.lock()) {
            // A panic in a pipeline thread leaves its transactions unacknowledged; nothing more
            // can be done for them at shutdown.
            let _ = thread.join();
        }
        // Only now: the committer may still have been queueing records.
        self.shared.engine.deferred.shutdown();
        if let Some(applier) = self.applier.lock().take() {
            let _ = applier.join();
        }
    }

    /// Transactions queued and not yet finished.
    pub fn queued(&self) -> usize {
        self.shared.queue.lock().entries.len()
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What the KV-sync thread alone tracks: the durable statistics and persisted id maxima.
struct CommittedState {
    stats: StatfsRecord,
    ids: IdCounters,
}

/// A group chosen for one commit.
struct Group {
    members: Vec<(u64, Prepared)>,
    flush_device: bool,
}

impl Shared {
    fn data_completed(&self, sequence: u64, wrote: bool, result: Result<()>) {
        let mut queue = self.queue.lock();
        if let Err(error) = result {
            self.engine.poison(&error);
        } else if let Some(entry) = queue.entries.get_mut(&sequence) {
            entry.state = next(entry.state, TxnEvent::DataCompleted);
            queue.device_dirty |= wrote;
        }
        self.work_ready.notify_one();
    }

    /// The flusher: takes each group of ready transactions, flushes the device if their data
    /// needs it, and hands the group to the committer. Runs one group ahead of the committer,
    /// so a group's device flush overlaps the previous group's KV sync.
    fn flush_loop(&self, groups: crossbeam::channel::Sender<Group>) {
        while let Some(group) = self.next_group() {
            let Some(group) = self.flush_group(group) else {
                continue;
            };
            if let Err(unsent) = groups.send(group) {
                self.fail_group(
                    unsent.0,
                    &Error::Poisoned("the KV-sync thread is gone".into()),
                );
            }
        }
    }

    /// Flushes the device for a group whose data needs it; the group, or `None` when the flush
    /// failed (and the group with it).
    fn flush_group(&self, group: Group) -> Option<Group> {
        let engine = &self.engine;
        if group.flush_device && !engine.config.mutated(Mutation::SkipFlushBeforeCommit) {
            // Durability point: every data write of the group is on stable media before any
            // metadata referencing it can be. A crash before this flush leaves the group's
            // metadata uncommitted, so its unflushed data is unreferenced and harmless.
            if let Err(error) = engine.device.flush() {
                self.fail_group(group, &error);
                return None;
            }
            Counters::add(&engine.counters.device_flushes, 1);
        }
        Some(group)
    }

    /// Waits for the next group; `None` at shutdown once every transaction has finished.
    /// Fails everything queued once the engine is poisoned.
    fn next_group(&self) -> Option<Group> {
        let mut queue = self.queue.lock();
        loop {
            match self.take_group(&mut queue) {
                Taken::Group(group) => return Some(group),
                Taken::Failed => {}
                Taken::Nothing if queue.shutdown && queue.entries.is_empty() => return None,
                Taken::Nothing => self.work_ready.wait(&mut queue),
            }
        }
    }

    /// The next group if one is ready; once the engine is poisoned, fails every queued
    /// transaction instead (the queue lock is released meanwhile).
    fn take_group(&self, queue: &mut MutexGuard<'_, QueueState>) -> Taken {
        if self.engine.check_poison().is_err()
            && queue
                .entries
                .values()
                .any(|e| e.state != TxnState::Committing)
        {
            let failed = take_all(queue);
            self.room_free.notify_all();
            MutexGuard::unlocked(queue, || self.finish_failed(failed));
            return Taken::Failed;
        }
        match select_group(queue) {
            Some(group) => Taken::Group(group),
            None => Taken::Nothing,
        }
    }

    /// Stepped: selects the next ready group and flushes for it, unless as many flushed groups
    /// as the threads allow already wait for their commit.
    fn flush_step(&self) -> Option<usize> {
        if self.flushed.lock().len() >= FLUSHED_GROUPS_MAX {
            return None;
        }
        let taken = self.take_group(&mut self.queue.lock());
        let group = match taken {
            Taken::Group(group) => group,
            Taken::Failed => return Some(0),
            Taken::Nothing => return None,
        };
        let members = group.members.len();
        if let Some(group) = self.flush_group(group) {
            self.flushed.lock().push_back(group);
        }
        Some(members)
    }

    /// Stepped: commits the oldest flushed group.
    fn commit_step(&self) -> Option<usize> {
        let group = self.flushed.lock().pop_front()?;
        let members = group.members.len();
        self.commit_or_fail(group);
        Some(members)
    }

    /// The committer: writes each group's metadata in one synced KV batch, in group order.
    fn commit_loop(&self, groups: crossbeam::channel::Receiver<Group>) {
        for group in groups {
            self.commit_or_fail(group);
        }
    }

    fn commit_or_fail(&self, group: Group) {
        match self.engine.check_poison() {
            Err(error) => self.fail_group(group, &error),
            Ok(()) => self.commit_group(group),
        }
    }

    fn commit_group(&self, group: Group) {
        let engine = &self.engine;
        let mut members = group.members;
        let batch = self.group_batch(&mut members, &mut self.committed.lock());
        // Durability point: one synced write makes the whole group's metadata, freelist and
        // statistics durable at once. A crash before it returns leaves either all of the group
        // (if RocksDB's WAL reached disk) or none of it; callbacks have not run, so nothing
        // unacknowledged was promised.
        if let Err(error) = engine.kv.write(batch, Durability::Sync) {
            return self.fail_group(
                Group {
                    members,
                    flush_device: false,
                },
                &error,
            );
        }
        Counters::add(&engine.counters.kv_syncs, 1);
        Counters::add(
            &engine.counters.transactions_committed,
            members.len() as u64,
        );
        self.remove_entries(&members);
        self.finish_committed(members);
    }

    /// Drops finished transactions from the queue and wakes submitters and the flusher.
    fn remove_entries(&self, members: &[(u64, Prepared)]) {
        let mut queue = self.queue.lock();
        for (sequence, _) in members {
            queue.entries.remove(sequence);
        }
        self.room_free.notify_all();
        self.work_ready.notify_all();
    }

    /// Concatenates the group's batches and adds the new statistics and id maxima.
    fn group_batch(
        &self,
        members: &mut [(u64, Prepared)],
        committed: &mut CommittedState,
    ) -> Batch {
        let mut batch = Batch::new();
        let mut ids = committed.ids;
        for (_, prepared) in members.iter_mut() {
            batch.append(&mut prepared.batch);
            prepared.stats_delta.apply_to(&mut committed.stats);
            ids.nid_last = ids.nid_last.max(prepared.ids.nid_last);
            ids.cid_last = ids.cid_last.max(prepared.ids.cid_last);
            ids.sbid_last = ids.sbid_last.max(prepared.ids.sbid_last);
        }
        batch.put(KeySpace::Stats, STATFS_KEY, committed.stats.encode());
        let counters = [
            (NID_MAX_KEY, ids.nid_last, committed.ids.nid_last),
            (CID_MAX_KEY, ids.cid_last, committed.ids.cid_last),
            (SBID_MAX_KEY, ids.sbid_last, committed.ids.sbid_last),
        ];
        for (key, new, old) in counters {
            if new > old {
                batch.put(KeySpace::Super, key, encode_counter(new));
            }
        }
        committed.ids = ids;
        batch
    }

    fn finish_committed(&self, mut members: Vec<(u64, Prepared)>) {
        let released: Vec<DeviceExtent> = members
            .iter()
            .flat_map(|(_, p)| p.released.iter().copied())
            .collect();
        let records: Vec<StagedRecord> = members
            .iter_mut()
            .filter_map(|(_, p)| p.deferred.take())
            .collect();
        // Queued before the space is released, so the release waits for this group's own
        // records too (a transaction may overwrite in place, then free the same blob).
        self.engine.deferred.enqueue(&self.engine, records);
        // The group's data is on the device: drop its in-memory copies before any of the space
        // they cover can be handed out again (a buffer left registered at reused space would
        // shadow the new data there).
        for (_, prepared) in &mut members {
            self.engine
                .inflight
                .remove(&std::mem::take(&mut prepared.inflight_offsets));
        }
        // Safe only now: the commit that stopped referencing this space is durable, so no
        // crash can bring back metadata pointing at it after it is reused; and once no
        // deferred record can still write to it. Reads that began before this point may still
        // look at it; the reclaimer waits for them.
        let engine = &self.engine;
        engine.deferred.release_when_applied(released, |extents| {
            engine.reclaimer.release(&engine.allocator, extents)
        });
        for (_, prepared) in members {
            finish(&self.engine, prepared, Ok(()));
        }
    }

    fn fail_group(&self, group: Group, error: &Error) {
        self.engine.poison(error);
        self.remove_entries(&group.members);
        let failed: Vec<Prepared> = group.members.into_iter().map(|(_, p)| p).collect();
        self.finish_failed(failed);
    }

    fn finish_failed(&self, failed: Vec<Prepared>) {
        let why = self
            .engine
            .poison_reason()
            .unwrap_or_else(|| "commit failed".to_string());
        for prepared in failed {
            finish(&self.engine, prepared, Err(Error::Poisoned(why.clone())));
        }
    }
}

/// What [`Shared::take_group`] found.
enum Taken {
    /// A group to flush and commit.
    Group(Group),
    /// The engine is poisoned: every queued transaction was failed.
    Failed,
    /// Nothing is ready.
    Nothing,
}

impl Steps for Shared {
    fn step(&self, work: Work) -> Option<usize> {
        match work {
            Work::CompleteIo => self.engine.device.complete_one().then_some(1),
            Work::FlushGroup => self.flush_step(),
            Work::CommitGroup => self.commit_step(),
            Work::ApplyDeferred => self.engine.deferred.apply_step(&self.engine),
        }
    }
}

/// Picks every transaction whose data is done and whose collections have no earlier
/// transaction left behind; marks them `Committing`.
fn select_group(queue: &mut QueueState) -> Option<Group> {
    let mut blocked: HashSet<u64> = HashSet::new();
    let mut members = Vec::new();
    for (sequence, entry) in &mut queue.entries {
        let free = !entry.collection_ids.iter().any(|id| blocked.contains(id));
        if entry.state == TxnState::DataDone && free && members.len() < GROUP_TRANSACTIONS_MAX {
            entry.state = next(entry.state, TxnEvent::GroupSelected);
            let prepared = entry
                .prepared
                .take()
                .expect("queued entries carry their transaction");
            members.push((*sequence, prepared));
        } else if entry.state != TxnState::Committing {
            blocked.extend(entry.collection_ids.iter().copied());
        }
    }
    if members.is_empty() {
        return None;
    }
    let flush_device = std::mem::take(&mut queue.device_dirty);
    Some(Group {
        members,
        flush_device,
    })
}

/// Removes every entry not already being committed, for failing them all.
fn take_all(queue: &mut QueueState) -> Vec<Prepared> {
    let doomed: Vec<u64> = queue
        .entries
        .iter()
        .filter(|(_, entry)| entry.state != TxnState::Committing)
        .map(|(sequence, _)| *sequence)
        .collect();
    doomed
        .into_iter()
        .filter_map(|sequence| queue.entries.remove(&sequence))
        .filter_map(|mut entry| {
            entry.state = next(entry.state, TxnEvent::Failed);
            entry.prepared.take()
        })
        .collect()
}

/// Namespace changes order among themselves as if they shared one collection.
const NAMESPACE_ORDER_KEY: u64 = u64::MAX;

/// What a transaction must stay ordered behind: its collections, and the namespace.
fn order_keys(prepared: &Prepared) -> Vec<u64> {
    let mut keys: Vec<u64> = prepared.collections.iter().map(|c| c.id).collect();
    if prepared.changes_namespace {
        keys.push(NAMESPACE_ORDER_KEY);
    }
    keys
}

fn finish(engine: &Engine, prepared: Prepared, result: Result<()>) {
    engine.inflight.remove(&prepared.inflight_offsets);
    if let Some(record) = &prepared.deferred {
        // Not committed (a committed record was taken for the apply queue): its bytes must not
        // be served as current. The store is poisoned, so nothing reads them anyway.
        engine.deferred.unstage(record);
    }
    for slot in &prepared.slots {
        slot.finish_one();
    }
    for collection in &prepared.collections {
        collection.sequencer.finish_one();
    }
    if let Some(callback) = prepared.on_commit {
        callback(result);
    }
}
