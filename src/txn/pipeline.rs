//! The commit pipeline: data I/O from many transactions, group commit in two stages.
//!
//! A prepared transaction is queued with a sequence number and its data writes go to the
//! device. The flush thread takes every eligible transaction whose earlier same-collection
//! transactions are committed or in an earlier group and makes the group durable:
//! - with the commit journal (format 2), a transaction is eligible once its data writes are
//!   submitted: the group's metadata, freelist and statistics changes (and deferred data) are
//!   written as one journal record while its data writes are still in flight, and once both
//!   have completed one device flush makes them durable; the batch is then applied to the KV
//!   store unlogged;
//! - without it (format 1), a transaction is eligible once its data writes have completed: the
//!   flush thread flushes the device (if any data was written since the last flush), and the
//!   KV-sync thread then writes the group's changes in one synced KV batch.
//!
//! A group is acknowledged once durable: its deferred writes are queued, the space it freed is
//! released and its callbacks run (with the journal, on the flush thread right after the
//! record's flush, before the batch is applied to the KV store; without it, on the KV-sync
//! thread after the synced KV write). The KV-sync thread then marks its objects settled.
//! Groups commit in order; making one group durable overlaps finishing (or KV-syncing) the one
//! before.
//!
//! The queue is bounded: a submitter waits while it is full. A failed data write, flush or KV
//! sync poisons the engine; every queued transaction then fails and nothing more is acknowledged.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::background::{Background, Steps, Work};
use super::deferred::StagedRecord;
use super::engine::{Collection, Counters, Engine, EngineConfig, IdCounters, Mutation};
use super::state::{TxnEvent, TxnState, next};
use crate::alloc::DeviceExtent;
use crate::device::{IoKind, IoRequest};
use crate::error::{Error, Result};
use crate::format::journal::DataCheck;
use crate::format::keys::{CID_MAX_KEY, NID_MAX_KEY, SBID_MAX_KEY, STATFS_KEY};
use crate::format::records::{StatfsRecord, encode_counter};
use crate::journal::{self, Journal, RecordHooks};
use crate::kv::{Batch, Durability, KeySpace};
use crate::onode::OnodeSlot;

/// Most transactions committed in one group.
pub const GROUP_TRANSACTIONS_MAX: usize = 1024;

/// Called once with the outcome when a transaction is durable (or has failed).
pub type CommitCallback = Box<dyn FnOnce(Result<()>) + Send>;

thread_local! {
    static IN_CALLBACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread is running a commit callback: it then holds up the commits
/// behind its own, so it must not wait for them.
pub fn in_commit_callback() -> bool {
    IN_CALLBACK.get()
}

/// Says when a transaction became durable later than `OpenOptions::slow_transaction` after it
/// was submitted (BlueStore logs such ops too, after `bluestore_log_op_age`).
fn report_if_slow(config: &EngineConfig, prepared: &Prepared) {
    let elapsed = prepared.submitted.elapsed();
    if elapsed >= config.slow_transaction {
        tracing::warn!(
            elapsed_ms = elapsed.as_millis() as u64,
            objects = prepared.slots.len(),
            collections = prepared.collections.len(),
            threshold_ms = config.slow_transaction.as_millis() as u64,
            "slow transaction: durable long after it was submitted"
        );
    }
}

fn run_callback(callback: CommitCallback, result: Result<()>) {
    struct Running;
    impl Drop for Running {
        fn drop(&mut self) {
            IN_CALLBACK.set(false);
        }
    }
    IN_CALLBACK.set(true);
    let _running = Running;
    callback(result);
}

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
    /// When it was submitted (for the slow-transaction report).
    pub submitted: Instant,
    /// Device offsets of its data buffers registered as in flight (dropped when it finishes).
    pub inflight_offsets: Vec<u64>,
    /// Its in-place overwrites, applied after the commit.
    pub deferred: Option<StagedRecord>,
    /// Data checks of some of its data writes, by device offset, that preparing them already
    /// gave (the blob checksums, when they are the checks).
    pub known_checks: BTreeMap<u64, Vec<DataCheck>>,
    /// What its new data must read back as, for journal replay to tell whether the data of a
    /// last record reached the media (filled in by [`Pipeline::enqueue`] when there is a
    /// journal).
    pub data_checks: Vec<DataCheck>,
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
        self.shared.engine.transactions.submit_one();
        let data_writes = std::mem::take(&mut prepared.data_writes);
        let has_writes = data_writes.iter().any(|r| r.kind == IoKind::Write);
        let data_bytes: u64 = data_writes.iter().map(|r| r.buf.len() as u64).sum();
        let engine = &self.shared.engine;
        if engine.journal.is_some() {
            let unit = u64::from(engine.config.min_alloc_size);
            let known = std::mem::take(&mut prepared.known_checks);
            prepared.data_checks = data_checks(&data_writes, unit, known);
        }
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
        if engine.journal.is_some() {
            // Eligible now: its record may be written while the data is in flight.
            self.shared.work_ready.notify_one();
        }
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
    /// Set once the journal made the group durable: the record whose seal its deferred writes
    /// wait for ([`Journal::seal`]).
    journaled: Option<u64>,
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

    /// Makes a group durable through the journal, or (without one) flushes the device for a
    /// group whose data needs it; the group, or `None` when that failed (and the group with
    /// it).
    fn flush_group(&self, mut group: Group) -> Option<Group> {
        let engine = &self.engine;
        if let Some(journal) = &engine.journal {
            return match self.journal_group(journal, &mut group) {
                Ok(sequence) => {
                    group.journaled = Some(sequence);
                    Some(group)
                }
                Err(error) => {
                    self.fail_group(group, &error);
                    None
                }
            };
        }
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

    /// Writes the group's batch as one journal record (one device write, one flush); a batch
    /// too large for a record goes through a checkpoint and a synced KV write instead. Returns
    /// the sequence the group's deferred writes must see sealed.
    fn journal_group(&self, journal: &Journal, group: &mut Group) -> Result<u64> {
        let engine = &self.engine;
        let batch = self.group_batch(&mut group.members, &mut self.committed.lock());
        let checks = group_checks(&group.members);
        let flush = !engine.config.mutated(Mutation::SkipFlushBeforeCommit);
        if journal::payload_estimate(&batch, checks.len()) > journal.payload_bytes_max() {
            self.wait_for_data(&group.members)?;
            if flush {
                engine.device.flush()?;
                Counters::add(&engine.counters.device_flushes, 1);
            }
            let sequence =
                journal.commit_outside(engine.device.as_ref(), engine.kv.as_ref(), batch)?;
            Counters::add(&engine.counters.journal_bypasses, 1);
            Counters::add(&engine.counters.kv_syncs, 1);
            self.acknowledge(&mut group.members, Some(sequence));
            return Ok(sequence);
        }
        engine.deferred.wait_for_room(engine);
        let mut record = GroupRecord {
            shared: self,
            members: &mut group.members,
        };
        let sequence = journal.commit(
            engine.device.as_ref(),
            engine.kv.as_ref(),
            batch,
            &checks,
            &mut record,
            flush,
        )?;
        Counters::add(&engine.counters.device_flushes, 1);
        Ok(sequence)
    }

    /// Returns once the data writes of every member of a group have completed (with the
    /// journal, a group is selected while they may still be in flight); fails once the engine
    /// is poisoned.
    fn wait_for_data(&self, members: &[(u64, Prepared)]) -> Result<()> {
        let mut queue = self.queue.lock();
        loop {
            self.engine.check_poison()?;
            let in_flight = members.iter().any(|(sequence, _)| {
                queue
                    .entries
                    .get(sequence)
                    .is_some_and(|entry| entry.state == TxnState::CommittingDataInFlight)
            });
            if !in_flight {
                return Ok(());
            }
            match self.engine.config.background {
                Background::Threads => self.work_ready.wait(&mut queue),
                // No thread completes requests: complete them here, one at a time, in the
                // order the device picks (as for any other waiter of a stepped store).
                Background::Stepped => {
                    if !MutexGuard::unlocked(&mut queue, || self.engine.device.complete_one()) {
                        return Err(Error::Poisoned(
                            "data writes of a group never completed".into(),
                        ));
                    }
                }
            }
        }
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
            && queue.entries.values().any(|e| !e.state.in_group())
        {
            let failed = take_all(queue);
            self.room_free.notify_all();
            MutexGuard::unlocked(queue, || self.finish_failed(failed));
            return Taken::Failed;
        }
        let journal = self.engine.journal.as_ref();
        let budget = journal.map_or(usize::MAX, |journal| {
            journal.payload_bytes_max().saturating_sub(GROUP_OPS_BYTES)
        });
        // With the journal, a group's record is written while its data is still in flight
        // (one flush then covers both); without it, the flush that precedes the KV sync must
        // follow the data.
        match select_group(queue, budget, journal.is_some()) {
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
        // A group the journal made durable is finished as committed whatever failed since.
        match self.engine.check_poison() {
            Err(error) if group.journaled.is_none() => self.fail_group(group, &error),
            _ => self.commit_group(group),
        }
    }

    fn commit_group(&self, group: Group) {
        let engine = &self.engine;
        let mut members = group.members;
        if group.journaled.is_none() {
            let batch = self.group_batch(&mut members, &mut self.committed.lock());
            // Durability point: one synced write makes the whole group's metadata, freelist
            // and statistics durable at once. A crash before it returns leaves either all of
            // the group (if RocksDB's WAL reached disk) or none of it; callbacks have not run,
            // so nothing unacknowledged was promised.
            if let Err(error) = engine.kv.write(batch, Durability::Sync) {
                return self.fail_group(
                    Group {
                        members,
                        flush_device: false,
                        journaled: None,
                    },
                    &error,
                );
            }
            Counters::add(&engine.counters.kv_syncs, 1);
        }
        Counters::add(&engine.counters.group_commits, 1);
        Counters::add(
            &engine.counters.transactions_committed,
            members.len() as u64,
        );
        self.remove_entries(&members);
        // A journaled group was acknowledged as soon as it was durable.
        if group.journaled.is_none() {
            self.acknowledge(&mut members, None);
        }
        for (_, prepared) in members {
            finish(&self.engine, prepared, Ok(()));
        }
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

    /// What follows from a group being durable: its deferred writes are queued, its in-memory
    /// copies of new data dropped, the space it freed released, and its callbacks told. (With
    /// the journal, this runs as soon as the record is durable, before its batch reaches the
    /// KV store and under the journal's lock, which nothing a callback may call takes; the
    /// members are finished, settling their objects, once the batch is in the KV store.)
    fn acknowledge(&self, members: &mut [(u64, Prepared)], journaled: Option<u64>) {
        let released: Vec<DeviceExtent> = members
            .iter()
            .flat_map(|(_, p)| p.released.iter().copied())
            .collect();
        let records: Vec<StagedRecord> = members
            .iter_mut()
            .filter_map(|(_, p)| p.deferred.take())
            .map(|record| StagedRecord {
                journal_sequence: journaled,
                ..record
            })
            .collect();
        // Queued before the space is released, so the release waits for this group's own
        // records too (a transaction may overwrite in place, then free the same blob).
        self.engine.deferred.enqueue(&self.engine, records);
        // The group's data is on the device: drop its in-memory copies before any of the space
        // they cover can be handed out again (a buffer left registered at reused space would
        // shadow the new data there).
        for (_, prepared) in members.iter_mut() {
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
        for (_, prepared) in members.iter_mut() {
            report_if_slow(&self.engine.config, prepared);
            if let Some(callback) = prepared.on_commit.take() {
                run_callback(callback, Ok(()));
            }
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

/// A group's part in the commit of its journal record: the record's flush waits for the
/// group's data, and the group is acknowledged (callbacks included) as soon as the record is
/// durable; applying its batch to the KV store, and finishing it on the KV-sync thread, come
/// after and are not needed for durability: a crash from then on replays the record.
struct GroupRecord<'a> {
    shared: &'a Shared,
    members: &'a mut [(u64, Prepared)],
}

impl RecordHooks for GroupRecord<'_> {
    fn data_written(&mut self) -> Result<()> {
        let engine = &self.shared.engine;
        if engine.config.mutated(Mutation::FlushBeforeDataWritten) {
            return Ok(());
        }
        self.shared.wait_for_data(self.members)
    }

    fn durable(&mut self, sequence: u64) {
        self.shared.acknowledge(self.members, Some(sequence));
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

/// Journal payload bytes a group adds to its members' own (statistics and id counters).
const GROUP_OPS_BYTES: usize = 512;

/// Picks every transaction whose data is done (or submitted, with `data_in_flight`) and whose
/// collections have no earlier transaction left behind, up to `budget` journal payload bytes
/// (the first always fits: one too large for the journal commits alone); marks them as in the
/// group.
fn select_group(queue: &mut QueueState, budget: usize, data_in_flight: bool) -> Option<Group> {
    let mut blocked: HashSet<u64> = HashSet::new();
    let mut members = Vec::new();
    let mut bytes = 0;
    for (sequence, entry) in &mut queue.entries {
        let free = !entry.collection_ids.iter().any(|id| blocked.contains(id));
        let fits = |prepared: &Prepared| {
            let estimate = journal::payload_estimate(&prepared.batch, prepared.data_checks.len());
            (members.is_empty() || bytes + estimate <= budget).then_some(estimate)
        };
        let estimate = entry.prepared.as_ref().and_then(fits);
        let ready = entry.state == TxnState::DataDone
            || (data_in_flight && entry.state == TxnState::DataInFlight);
        if ready
            && free
            && members.len() < GROUP_TRANSACTIONS_MAX
            && let Some(estimate) = estimate
        {
            entry.state = next(entry.state, TxnEvent::GroupSelected);
            let prepared = entry
                .prepared
                .take()
                .expect("queued entries carry their transaction");
            bytes += estimate;
            members.push((*sequence, prepared));
        } else if !entry.state.in_group() {
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
        journaled: None,
    })
}

/// Data checks of the new data writes, one per allocation unit each write touches (space is
/// freed in whole units, so a check never straddles freed and still-referenced space); those
/// `known` are taken as they are (debug builds compute them again, to compare).
fn data_checks(
    writes: &[IoRequest],
    unit: u64,
    mut known: BTreeMap<u64, Vec<DataCheck>>,
) -> Vec<DataCheck> {
    let mut checks = Vec::new();
    for request in writes.iter().filter(|r| r.kind == IoKind::Write) {
        if let Some(given) = known.remove(&request.device_offset) {
            debug_assert_eq!(given, computed_checks(request, unit), "known data checks");
            checks.extend(given);
        } else {
            checks.extend(computed_checks(request, unit));
        }
    }
    checks
}

/// The data checks of one write, computed from its bytes.
fn computed_checks(request: &IoRequest, unit: u64) -> Vec<DataCheck> {
    let mut checks = Vec::new();
    let mut at = request.device_offset;
    let end = at + request.buf.len() as u64;
    while at < end {
        let piece_end = (at + 1).next_multiple_of(unit).min(end);
        let bytes =
            &request.buf[(at - request.device_offset) as usize..][..(piece_end - at) as usize];
        checks.push(DataCheck {
            device_offset: at,
            length: (piece_end - at) as u32,
            crc: crc32c::crc32c(bytes),
        });
        at = piece_end;
    }
    checks
}

/// The data checks of a group's record: its members' checks, less those of units a member of
/// the same group frees again (no metadata of the record points at them, and their space may
/// be reused, and rewritten, as soon as the group commits).
fn group_checks(members: &[(u64, Prepared)]) -> Vec<DataCheck> {
    let mut released: Vec<DeviceExtent> = members
        .iter()
        .flat_map(|(_, p)| p.released.iter().copied())
        .collect();
    released.sort_unstable_by_key(|extent| extent.offset);
    let freed = |check: &DataCheck| {
        let end = check.device_offset + u64::from(check.length);
        // Space is freed once, so a group's extents never overlap: sorted by start they are
        // sorted by end too, and the last one starting before the check's end reaches
        // furthest.
        let before_end = released.partition_point(|extent| extent.offset < end);
        before_end > 0 && released[before_end - 1].end() > check.device_offset
    };
    members
        .iter()
        .flat_map(|(_, p)| p.data_checks.iter().copied())
        .filter(|check| !freed(check))
        .collect()
}

/// Removes every entry not already being committed, for failing them all.
fn take_all(queue: &mut QueueState) -> Vec<Prepared> {
    let doomed: Vec<u64> = queue
        .entries
        .iter()
        .filter(|(_, entry)| !entry.state.in_group())
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
    engine.transactions.finish_one();
    if let Some(callback) = prepared.on_commit {
        run_callback(callback, result);
    }
}
