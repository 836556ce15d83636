//! Goal: a power cut at any I/O point never loses an acknowledged transaction, never exposes
//! part of one, never reorders one collection's transactions, and never leaves a store that
//! fails to mount, reads a checksum error, or fails fsck; and the harness proves it checks what
//! it claims.
//!
//! Workloads run on the simulated device and in-memory KV, which share a [`PowerCut`] switch,
//! with the store's background work stepped by a seeded scheduler (`tests/common/crash.rs`):
//! device requests complete out of order, a flush makes durable only what completed, groups form
//! and the flush of one overlaps the commit of the one before. Two kinds of workload:
//! - *sequential*: generated steps of every op kind (small and large, aligned and unaligned
//!   writes, so new-space, fill-unused and deferred writes; creates, removes, truncates, attrs,
//!   omap, renames, clones; remounts, which replay deferred records), one transaction at a
//!   time, some read while in flight (they must be visible at once);
//! - *concurrent*: three clients, each submitting its own collection's transactions without
//!   waiting (up to a seeded number in flight), some touching another client's collection too,
//!   so groups hold many transactions.
//!
//! Run `k` of a workload cuts the power at its `k`-th I/O event (device write, device flush or
//! KV write); `k` runs from 1 until a run ends without reaching its cut, so every I/O point is
//! a crash point. After the cut the device keeps, drops or tears each unflushed write, loses
//! what had not completed, and the KV store keeps a random prefix of its unsynced batches (and
//! the batch whose write the power failed during, half the time). Half the survivors with
//! deferred records are cut again during the replay of their mount. The survivor, seen first
//! through a read-only mount and then through a read-write one, must equal the model after:
//! sequential, every acknowledged transaction, optionally plus the one in flight; concurrent,
//! for each collection some prefix of its submission order containing every acknowledged
//! transaction, with every cross-collection transaction in all of its collections' prefixes or
//! in none. Then fsck must be clean. Any error that is not a modelled outcome must come with the
//! power off.
//!
//! At least 20,000 crash points run by default; `BSTORE_CRASH_POINTS` sets the number and
//! `BSTORE_SEED` replays a run exactly (the seed is printed).

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use bstore::device::{AlignedBuf, DataBuf};
use bstore::rng::SplitMix64;
use bstore::store::options::Mutation;
use bstore::txn::{ObjectOp, Op};
use bstore::{Error, Store, Work};
use common::crash::{
    FaultTally, Scheduler, Stepped, World, arm, has_deferred_records, power_loss, read_everything,
    summary, transaction,
};
use common::model::{Failure, Model};
use common::workload::{self, COLLECTIONS, Step};
use parking_lot::Mutex;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// What a run found, or why it failed (the harness reports instead of panicking, so that the
/// mutation tests can require a failure).
type Found<T> = Result<T, String>;

#[test]
fn no_power_cut_loses_an_acknowledged_write_or_exposes_a_partial_one() {
    let seed = bstore::rng::test_seed();
    let target: u64 = std::env::var("BSTORE_CRASH_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    println!("crash simulation seed {seed}: rerun with BSTORE_SEED={seed}");
    let started = Instant::now();
    // Two independent streams of workloads, one per core.
    let tallies: Vec<Tally> = std::thread::scope(|scope| {
        let streams: Vec<_> = (0..2u64)
            .map(|stream| scope.spawn(move || run_stream(seed, stream, target.div_ceil(2))))
            .collect();
        streams.into_iter().map(|s| s.join().unwrap()).collect()
    });
    let mut total = Tally::default();
    for tally in &tallies {
        total.add(tally);
    }
    println!(
        "{} crash points in {} workloads ({} concurrent, with {} points) in {:.1} s",
        total.points,
        total.workloads,
        total.concurrent_workloads,
        total.concurrent_points,
        started.elapsed().as_secs_f64()
    );
    total.print();
    total.assert_the_faults_did_their_job(target);
}

/// Counts over many crash points.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    points: u64,
    workloads: u64,
    concurrent_workloads: u64,
    /// Crash points in concurrent workloads.
    concurrent_points: u64,
    /// Crash points that fell in a group of two or more transactions.
    grouped_points: u64,
    /// Cuts that also hit the recovery mount's replay.
    replay_cuts: u64,
    /// Of those, cuts while the journal had records to replay.
    journal_replay_cuts: u64,
    replayed_records: u64,
    /// Journal records replayed by recovery mounts.
    journal_records_replayed: u64,
    /// Recovery mounts that found the journal's last record torn (cut mid-write).
    journal_torn_tails: u64,
    /// Recovery mounts that dropped a whole last record whose data never reached the media.
    journal_dropped_records: u64,
    /// Workloads whose uncut run went round the journal's ring at least once.
    wrapped_workloads: u64,
    /// Workloads whose uncut run wrote two journal records or more and yet did not go round
    /// the ring (a bug of the harness's setup or of the ring).
    unwrapped_long_workloads: u64,
    in_flight_applied: u64,
    in_flight_absent: u64,
    faults: FaultTally,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.points += other.points;
        self.workloads += other.workloads;
        self.concurrent_workloads += other.concurrent_workloads;
        self.concurrent_points += other.concurrent_points;
        self.grouped_points += other.grouped_points;
        self.replay_cuts += other.replay_cuts;
        self.journal_replay_cuts += other.journal_replay_cuts;
        self.replayed_records += other.replayed_records;
        self.journal_records_replayed += other.journal_records_replayed;
        self.journal_torn_tails += other.journal_torn_tails;
        self.journal_dropped_records += other.journal_dropped_records;
        self.wrapped_workloads += other.wrapped_workloads;
        self.unwrapped_long_workloads += other.unwrapped_long_workloads;
        self.in_flight_applied += other.in_flight_applied;
        self.in_flight_absent += other.in_flight_absent;
        self.faults.add(&other.faults);
    }

    fn print(&self) {
        let (d, k) = (&self.faults.device, &self.faults.kv);
        println!(
            "in groups of 2+: {} points; unflushed writes kept {}, dropped {}, torn {}, lost in \
             flight {}; KV batches kept {} and lost {} (unsynced), {} and {} (cut during their \
             write); in-flight transactions found applied {}, absent {}; deferred records \
             replayed {}; recovery mounts cut during replay {} ({} with journal records \
             pending); journal records replayed {}, torn tails {}, last records dropped for \
             missing data {}; workloads that wrapped the journal {} of {}",
            self.grouped_points,
            d.kept,
            d.dropped,
            d.torn,
            d.in_flight_lost,
            k.unsynced_kept,
            k.unsynced_lost,
            k.cut_batch_kept,
            k.cut_batch_lost,
            self.in_flight_applied,
            self.in_flight_absent,
            self.replayed_records,
            self.replay_cuts,
            self.journal_replay_cuts,
            self.journal_records_replayed,
            self.journal_torn_tails,
            self.journal_dropped_records,
            self.wrapped_workloads,
            self.workloads
        );
    }

    /// The harness checks itself: every kind of fault it claims to inject happened.
    fn assert_the_faults_did_their_job(&self, target: u64) {
        let (d, k) = (&self.faults.device, &self.faults.kv);
        assert!(self.points >= target, "{} crash points", self.points);
        assert!(
            self.grouped_points * 4 >= self.points,
            "at least a quarter of the points in groups of two or more: {} of {}",
            self.grouped_points,
            self.points
        );
        let counts = [
            ("unflushed writes kept", d.kept),
            ("unflushed writes dropped", d.dropped),
            ("unflushed writes torn", d.torn),
            ("writes lost in flight", d.in_flight_lost),
            ("KV batches cut during their write kept", k.cut_batch_kept),
            ("KV batches cut during their write lost", k.cut_batch_lost),
            (
                "in-flight transactions found applied",
                self.in_flight_applied,
            ),
            ("in-flight transactions found absent", self.in_flight_absent),
            ("deferred records replayed", self.replayed_records),
            ("recovery mounts cut during replay", self.replay_cuts),
            (
                "recovery mounts cut while replaying the journal",
                self.journal_replay_cuts,
            ),
            ("journal records replayed", self.journal_records_replayed),
            ("torn journal tails", self.journal_torn_tails),
            (
                "last journal records dropped for missing data",
                self.journal_dropped_records,
            ),
        ];
        for (what, count) in counts {
            assert!(count > 0, "{what}: none in the run");
        }
        // Every workload starts with the journal's head in the ring's last block, so any
        // workload that writes two records or one larger than a block goes round the ring;
        // one whose commits all fit in one small record cannot (about 1 % of them).
        assert_eq!(
            self.unwrapped_long_workloads, 0,
            "workloads of two records or more that did not go round the journal's ring"
        );
        assert!(
            self.wrapped_workloads * 10 >= self.workloads * 9,
            "the journal wrapped in only {} of {} workloads",
            self.wrapped_workloads,
            self.workloads
        );
    }
}

/// Workloads of stream `stream` until `target` crash points ran.
fn run_stream(seed: u64, stream: u64, target: u64) -> Tally {
    let mut rng = SplitMix64::new(seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut tally = Tally::default();
    while tally.points < target {
        // Every sixth workload makes the allocator wrap around. Of the others, sequential ones
        // get a third of the points, but only while 30 % of the points so far fell in groups
        // of two or more: concurrent workloads are where groups form, yet one whose points
        // come mostly from one client's long transactions, run alone, groups little, and a
        // seed with many of those must still reach the quarter asserted below.
        let workload = if tally.workloads % 6 == 5 {
            Workload::Concurrent(Concurrent::churn(rng.next_u64()))
        } else {
            let sequential_points = tally.points - tally.concurrent_points;
            let grouped_enough = tally.grouped_points * 10 >= tally.points * 3;
            let sequential = grouped_enough && sequential_points * 3 < tally.points;
            Workload::generate(rng.next_u64(), !sequential)
        };
        let is_concurrent = matches!(workload, Workload::Concurrent(_));
        let workload_seed = rng.next_u64();
        let grouped = match &workload {
            Workload::Concurrent(plan) => profile(plan, workload_seed),
            Workload::Sequential(_) => Vec::new(),
        };
        let number = tally.workloads;
        let context = |cut_at| {
            format!(
                "seed {seed}, stream {stream}, workload {number} ({}), cut at I/O event {cut_at}",
                workload.kind()
            )
        };
        for cut_at in 1.. {
            match crash_at(&workload, cut_at, workload_seed, Mutation::None) {
                Ok(Ran::Cut(point)) => {
                    tally.add(&point);
                    let index = cut_at as usize - 1;
                    tally.grouped_points += u64::from(grouped.get(index) == Some(&true));
                    tally.concurrent_points += u64::from(is_concurrent);
                }
                Ok(Ran::Finished { journal }) => {
                    tally.wrapped_workloads += u64::from(journal.wrapped);
                    tally.unwrapped_long_workloads +=
                        u64::from(journal.records >= 2 && !journal.wrapped);
                    break;
                }
                Err(failure) => panic!("{}: {failure}", context(cut_at)),
            }
        }
        tally.workloads += 1;
        tally.concurrent_workloads += u64::from(is_concurrent);
    }
    tally
}

/// A generated workload.
enum Workload {
    Sequential(Vec<Step>),
    Concurrent(Concurrent),
}

impl Workload {
    fn generate(seed: u64, concurrent: bool) -> Workload {
        if concurrent {
            Workload::Concurrent(Concurrent::generate(seed))
        } else {
            Workload::Sequential(generate_sequential(seed))
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Workload::Sequential(_) => "sequential",
            Workload::Concurrent(_) => "concurrent",
        }
    }

    fn device_bytes(&self) -> u64 {
        match self {
            Workload::Sequential(_) => common::crash::DEVICE_BYTES,
            Workload::Concurrent(plan) => plan.device_bytes,
        }
    }
}

/// What one run of a workload came to.
enum Ran {
    /// The power was cut, and recovery checked: what it saw.
    Cut(Tally),
    /// The workload finished before the cut's event (no crash point left).
    Finished {
        /// What its journal records did to the ring.
        journal: common::crash::JournalLap,
    },
}

/// Runs the workload with the power cut at I/O event `cut_at`, recovers, and checks.
fn crash_at(workload: &Workload, cut_at: u64, seed: u64, mutation: Mutation) -> Found<Ran> {
    // The run up to the cut is the same for every `cut_at` (same completion order, same
    // scheduling); only what the power loss keeps depends on it.
    let mut rng = SplitMix64::new(seed ^ cut_at.wrapping_mul(0xd6e8_feb8_6659_fd93));
    let world = World::with_device(cut_at, seed, workload.device_bytes());
    let mut scheduler = Scheduler::new(seed);
    let outcome = match workload {
        Workload::Sequential(steps) => drive_sequential(&world, steps, &mut scheduler, mutation)?,
        Workload::Concurrent(plan) => {
            drive_concurrent(&world, plan, &mut scheduler, mutation, None)?
        }
    };
    if !world.power.is_off() {
        return Ok(Ran::Finished {
            journal: common::crash::journal_lap(&world),
        });
    }
    let mut tally = Tally {
        points: 1,
        ..Tally::default()
    };
    let survivor = recover(&world, &mut rng, &mut tally, mutation)?;
    outcome.check(&survivor, &mut tally)?;
    Ok(Ran::Cut(tally))
}

/// What a driven workload acknowledged before the power went, in the form its check needs.
struct Outcome {
    expected: Expected,
}

enum Expected {
    /// Sequential: the model after every acknowledged transaction, and with the one in flight.
    Sequential {
        acknowledged: Model,
        in_flight: Option<Model>,
    },
    /// Concurrent: what was submitted, in which order per collection, and what was
    /// acknowledged.
    Concurrent(Submitted),
}

impl Outcome {
    fn check(&self, seen: &Model, tally: &mut Tally) -> Found<()> {
        match &self.expected {
            Expected::Sequential {
                acknowledged,
                in_flight,
            } => {
                if seen == acknowledged {
                    tally.in_flight_absent += u64::from(in_flight.is_some());
                    return Ok(());
                }
                if in_flight.as_ref() == Some(seen) {
                    tally.in_flight_applied += 1;
                    return Ok(());
                }
                Err(format!(
                    "the store after the crash is neither the acknowledged state nor that plus \
                     the transaction in flight\nstore: {}\nacknowledged: {}",
                    summary(seen),
                    summary(acknowledged)
                ))
            }
            Expected::Concurrent(submitted) => submitted.check(seen, tally),
        }
    }
}

/// Mounts what the crash left (after a second cut during replay, sometimes), read-only first
/// and then for writing; both must show the same; fsck must be clean.
fn recover(
    world: &World,
    rng: &mut SplitMix64,
    tally: &mut Tally,
    mutation: Mutation,
) -> Found<Model> {
    let mut survivor = power_loss(world, rng, &mut tally.faults);
    let journal_pending = journal_records_pending(&survivor, mutation);
    if (has_deferred_records(&survivor) || journal_pending) && rng.chance(1, 2) {
        arm(&mut survivor, 1 + rng.below(6));
        drop(survivor.open(mutation));
        if survivor.power.is_off() {
            tally.replay_cuts += 1;
            tally.journal_replay_cuts += u64::from(journal_pending);
        }
        survivor = power_loss(&survivor, rng, &mut tally.faults);
    }
    let before_replay = Store::open_read_only_on(
        survivor.device.clone(),
        survivor.kv.clone(),
        &common::crash::stepped_options(mutation),
    )
    .map_err(|e| format!("read-only mount after the crash failed: {e}"))?;
    let inspected = read_everything(&before_replay)
        .map_err(|e| format!("reading read-only after the crash failed: {e}"))?;
    let inspected_journal = before_replay.journal_replay();
    drop(before_replay);
    let store = survivor
        .open(mutation)
        .map_err(|e| format!("mount after the crash failed: {e}"))?;
    tally.replayed_records += store.counters().deferred_records_replayed;
    let replay = store.journal_replay().ok_or("a store without a journal")?;
    if inspected_journal != Some(replay) {
        return Err(format!(
            "the read-only mount replayed the journal differently: {inspected_journal:?}, then \
             {replay:?}"
        ));
    }
    tally.journal_records_replayed += replay.records;
    tally.journal_torn_tails += u64::from(replay.torn_tail);
    tally.journal_dropped_records += u64::from(replay.dropped.is_some());
    let seen =
        read_everything(&store).map_err(|e| format!("reading after the crash failed: {e}"))?;
    store.close().map_err(|e| format!("close: {e}"))?;
    if inspected != seen {
        return Err(format!(
            "a read-only mount showed another state than the mount that replayed\nread-only: \
             {}\nreplayed: {}",
            summary(&inspected),
            summary(&seen)
        ));
    }
    let report = Store::fsck_on(survivor.device.as_ref(), survivor.kv.as_ref())
        .map_err(|e| format!("fsck: {e}"))?;
    if !report.is_clean() {
        return Err(format!("fsck: {:?}", report.errors));
    }
    Ok(seen)
}

/// True when a mount would replay records of the commit journal (a read-only look).
fn journal_records_pending(world: &World, mutation: Mutation) -> bool {
    Store::open_read_only_on(
        world.device.clone(),
        world.kv.clone(),
        &common::crash::stepped_options(mutation),
    )
    .ok()
    .and_then(|store| store.journal_replay())
    .is_some_and(|replay| replay.records > 0 || replay.dropped.is_some())
}

/// An error the model does not predict is acceptable only once the power is off.
fn unmodelled(world: &World, what: &str, error: &Error) -> Found<()> {
    if world.power.is_off() {
        return Ok(());
    }
    Err(format!("{what} failed with the power on: {error}"))
}

/// Where a commit callback leaves its result.
type Acked = Arc<Mutex<Option<bstore::Result<()>>>>;

/// Runs one sequential workload until it ends or the power fails.
fn drive_sequential(
    world: &World,
    steps: &[Step],
    scheduler: &mut Scheduler,
    mutation: Mutation,
) -> Found<Outcome> {
    let mut run = SequentialRun {
        world,
        scheduler,
        model: Model::default(),
    };
    let mut store = match world.open(mutation) {
        Ok(store) => store,
        Err(error) => {
            unmodelled(world, "mount", &error)?;
            return Ok(run.finish(None));
        }
    };
    for step in steps {
        let in_flight = match step {
            Step::Remount => match run.remount(store, mutation)? {
                Some(reopened) => {
                    store = reopened;
                    continue;
                }
                None => return Ok(run.finish(None)),
            },
            Step::Apply(ops) => run.apply(&store, ops, false)?,
            Step::ApplyWhileReading(ops) => run.apply(&store, ops, true)?,
        };
        if world.power.is_off() {
            return Ok(run.finish(in_flight));
        }
    }
    let _ = run.settle(&store, &Arc::new(Mutex::new(None)));
    if let Err(error) = store.close() {
        unmodelled(world, "close", &error)?;
    }
    Ok(run.finish(None))
}

struct SequentialRun<'a> {
    world: &'a World,
    scheduler: &'a mut Scheduler,
    model: Model,
}

impl SequentialRun<'_> {
    fn finish(self, in_flight: Option<Model>) -> Outcome {
        Outcome {
            expected: Expected::Sequential {
                acknowledged: self.model,
                in_flight,
            },
        }
    }

    /// Submits one transaction and steps the store until it is acknowledged or the power
    /// fails; with `read_while_in_flight`, first checks that reads already show it. The model
    /// with the transaction applied when it was in flight at the cut.
    fn apply(
        &mut self,
        store: &Store,
        ops: &[Op],
        read_while_in_flight: bool,
    ) -> Found<Option<Model>> {
        let mut next = self.model.clone();
        let predicted = next.apply(ops);
        let acked: Acked = Arc::new(Mutex::new(None));
        let deliver = Arc::clone(&acked);
        let submitted = store.submit(&transaction(ops), move |result| {
            *deliver.lock() = Some(result);
        });
        match (submitted, predicted) {
            (Ok(()), Ok(())) => {}
            (Ok(()), Err(failure)) => {
                return Err(format!("submitted, but should fail: {failure:?}"));
            }
            (Err(error), predicted) => {
                return match Failure::of(&error) {
                    Some(failure) if predicted == Err(failure) => Ok(None),
                    Some(_) => Err(format!(
                        "submit: {error}, but the model predicts {predicted:?}"
                    )),
                    None => unmodelled(self.world, "submit", &error).map(|()| None),
                };
            }
        }
        if read_while_in_flight {
            match read_everything(store) {
                Ok(seen) if seen == next => {}
                Ok(seen) if !self.world.power.is_off() => {
                    return Err(format!(
                        "a submitted transaction is not visible: {} vs {}",
                        summary(&seen),
                        summary(&next)
                    ));
                }
                Ok(_) => {}
                Err(error) => unmodelled(self.world, "a read in flight", &error)?,
            }
        }
        match self.settle(store, &acked)? {
            Some(Ok(())) => {
                self.model = next;
                Ok(None)
            }
            Some(Err(error)) => unmodelled(self.world, "a commit", &error).map(|()| Some(next)),
            None => Ok(Some(next)),
        }
    }

    /// Steps until `acked` holds a result, the power fails, or nothing is left to do.
    fn settle(&mut self, store: &Store, acked: &Acked) -> Found<Option<bstore::Result<()>>> {
        loop {
            if let Some(result) = acked.lock().take() {
                return Ok(Some(result));
            }
            if self.world.power.is_off() {
                return Ok(None);
            }
            if self.scheduler.step(store).is_none() {
                return Ok(None);
            }
        }
    }

    /// Closes and reopens; `None` when the power failed on the way.
    fn remount(&mut self, store: Store, mutation: Mutation) -> Found<Option<Store>> {
        if let Err(error) = store.close() {
            unmodelled(self.world, "close", &error)?;
            return Ok(None);
        }
        match self.world.open(mutation) {
            Ok(store) => Ok(Some(store)),
            Err(error) => unmodelled(self.world, "remount", &error).map(|()| None),
        }
    }
}

/// A workload from the model tests' generator, drawn with a deterministic seed. Allocation
/// hints are dropped from the model's comparison, so they are kept out of the workload too.
fn generate_sequential(seed: u64) -> Vec<Step> {
    let mut steps = generated(seed, workload::steps(3..10));
    for step in &mut steps {
        if let Step::Apply(ops) | Step::ApplyWhileReading(ops) = step {
            ops.retain(|op| !is_alloc_hint(op));
        }
    }
    let mut rng = SplitMix64::new(seed);
    if rng.chance(2, 3) {
        let at = 1 + rng.below(steps.len() as u64) as usize;
        steps.splice(at..at, small_overwrites(&mut rng, b"c0"));
    }
    steps
}

fn generated<T: std::fmt::Debug>(seed: u64, strategy: impl Strategy<Value = T>) -> T {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    strategy
        .new_tree(&mut runner)
        .expect("the generator has no filters")
        .current()
}

/// An object written whole, then a few small overwrites of it (aligned and not, within one
/// chunk and across two): the transactions that take the deferred path.
fn small_overwrites(rng: &mut SplitMix64, collection: &[u8]) -> Vec<Step> {
    const LENGTH: u64 = 96 << 10;
    let write = |offset: u64, length: u64, fill: u64| Op::Object {
        collection: collection.to_vec(),
        object: b"deferred".to_vec(),
        op: ObjectOp::Write {
            offset,
            data: (0..length)
                .map(|i| (i * 13 + fill) as u8)
                .collect::<Vec<u8>>()
                .into(),
        },
    };
    let mut steps = vec![Step::Apply(vec![write(0, LENGTH, rng.next_u64() % 251)])];
    for _ in 0..2 + rng.below(4) {
        let ops = (0..1 + rng.below(3))
            .map(|_| {
                let length = [1, 512, 1000, 4096, 6000, 20000][rng.below(6) as usize];
                let offset = if rng.chance(1, 2) {
                    rng.below(LENGTH / 4096) * 4096
                } else {
                    rng.below(LENGTH - length)
                };
                write(offset, length.min(LENGTH - offset), rng.next_u64() % 251)
            })
            .collect();
        steps.push(Step::Apply(ops));
    }
    steps
}

fn is_alloc_hint(op: &Op) -> bool {
    matches!(
        op,
        Op::Object {
            op: ObjectOp::SetAllocHint(_),
            ..
        }
    )
}

// ---------------------------------------------------------------------------------------------
// Concurrent workloads

/// Clients that each submit their own collection's transactions without waiting.
struct Concurrent {
    /// Per client, its transactions in order.
    clients: Vec<Vec<Vec<Op>>>,
    /// Transactions in flight at most (submitted and not yet acknowledged).
    in_flight_max: usize,
    /// Size of the simulated device.
    device_bytes: u64,
}

impl Concurrent {
    fn generate(seed: u64) -> Concurrent {
        let mut rng = SplitMix64::new(seed);
        let clients = (0..COLLECTIONS.len())
            .map(|client| {
                let count = 3 + rng.below(5) as usize;
                let strategy = proptest::collection::vec(workload::transaction(), count);
                let mut txns: Vec<Vec<Op>> = generated(rng.next_u64(), strategy)
                    .into_iter()
                    .map(|ops| own_collection(client, ops))
                    .filter(|ops: &Vec<Op>| !ops.is_empty())
                    .collect();
                if rng.chance(1, 2) {
                    let mut small = small_overwrites(&mut rng, COLLECTIONS[client].as_bytes());
                    txns.extend(small.drain(..).filter_map(|step| match step {
                        Step::Apply(ops) => Some(ops),
                        _ => None,
                    }));
                }
                for (index, ops) in txns.iter_mut().enumerate() {
                    if rng.chance(1, 6) {
                        ops.extend(cross_collection_ops(client, index, &mut rng));
                    }
                }
                txns
            })
            .collect();
        Concurrent {
            clients,
            in_flight_max: 4 + rng.below(13) as usize,
            device_bytes: common::crash::DEVICE_BYTES,
        }
    }

    /// Each client overwrites its own object whole, again and again, on a device so small that
    /// the allocator wraps around every few writes: space freed by one transaction is soon
    /// handed to another, which is where reusing it too early would show.
    const OBJECT_BYTES: usize = 192 << 10;

    fn churn(seed: u64) -> Concurrent {
        let mut rng = SplitMix64::new(seed);
        let clients = (0..COLLECTIONS.len())
            .map(|client| {
                (0..8)
                    .map(|_| {
                        let fill = rng.next_u64() as u8;
                        vec![Op::Object {
                            collection: COLLECTIONS[client].as_bytes().to_vec(),
                            object: b"churn".to_vec(),
                            op: ObjectOp::Write {
                                offset: 0,
                                data: Self::churn_bytes(fill),
                            },
                        }]
                    })
                    .collect()
            })
            .collect();
        Concurrent {
            clients,
            in_flight_max: 6,
            device_bytes: 2 << 20,
        }
    }

    /// A churn write's bytes: in an aligned buffer for an odd `fill`, which the device then
    /// writes as it is (the buffer shared by the op, the commit and readers of data in flight).
    fn churn_bytes(fill: u8) -> DataBuf {
        let bytes: Vec<u8> = (0..Self::OBJECT_BYTES)
            .map(|i| fill ^ (i / 512) as u8)
            .collect();
        if fill & 1 == 1 {
            AlignedBuf::copy_from(&bytes).into()
        } else {
            bytes.into()
        }
    }
}

/// A client's transaction: every op on the client's collection (invalid names stay invalid, so
/// argument errors are still exercised); collection creates and removes dropped.
fn own_collection(client: usize, ops: Vec<Op>) -> Vec<Op> {
    let own = COLLECTIONS[client].as_bytes();
    ops.into_iter()
        .filter_map(|op| match op {
            Op::Object {
                collection,
                object,
                op,
            } if !is_alloc_hint_op(&op) => {
                let valid = COLLECTIONS.iter().any(|c| c.as_bytes() == collection);
                Some(Op::Object {
                    collection: if valid { own.to_vec() } else { collection },
                    object,
                    op,
                })
            }
            _ => None,
        })
        .collect()
}

fn is_alloc_hint_op(op: &ObjectOp) -> bool {
    matches!(op, ObjectOp::SetAllocHint(_))
}

/// Ops on another client's collection: the transaction then orders in both collections.
fn cross_collection_ops(client: usize, index: usize, rng: &mut SplitMix64) -> Vec<Op> {
    let other = (client + 1 + rng.below(COLLECTIONS.len() as u64 - 1) as usize) % COLLECTIONS.len();
    let collection = COLLECTIONS[other].as_bytes().to_vec();
    let object = b"shared".to_vec();
    vec![
        Op::Object {
            collection: collection.clone(),
            object: object.clone(),
            op: ObjectOp::Touch,
        },
        Op::Object {
            collection,
            object,
            op: ObjectOp::SetAttrs {
                attrs: vec![(
                    format!("from{client}").into_bytes(),
                    format!("{index}").into_bytes(),
                )],
            },
        },
    ]
}

/// What a concurrent run submitted and had acknowledged.
struct Submitted {
    /// The state every transaction started from: the clients' collections.
    setup: Model,
    /// Whether the creation of the collections was acknowledged (when not, nothing else was
    /// submitted).
    setup_acked: bool,
    /// Every transaction submitted successfully, by id.
    txns: Vec<Vec<Op>>,
    /// Per collection, the ids of the transactions touching it, in submission order.
    order: BTreeMap<Vec<u8>, Vec<usize>>,
    /// Ids acknowledged durable.
    acked: BTreeSet<usize>,
}

/// Runs a concurrent workload until every transaction is acknowledged or the power fails;
/// with a `profile`, records what each I/O event belonged to.
fn drive_concurrent(
    world: &World,
    plan: &Concurrent,
    scheduler: &mut Scheduler,
    mutation: Mutation,
    mut profile: Option<&mut Profile>,
) -> Found<Outcome> {
    let mut run = ConcurrentRun::new(world);
    let store = match world.open(mutation) {
        Ok(store) => store,
        Err(error) => {
            unmodelled(world, "mount", &error)?;
            return Ok(run.finish());
        }
    };
    if !run.set_up(&store, scheduler)? {
        return Ok(run.finish());
    }
    let mut queues: Vec<VecDeque<&Vec<Op>>> =
        plan.clients.iter().map(|t| t.iter().collect()).collect();
    loop {
        if world.power.is_off() {
            return Ok(run.finish());
        }
        let waiting: Vec<usize> = (0..queues.len())
            .filter(|c| !queues[*c].is_empty())
            .collect();
        let room = run.in_flight() < plan.in_flight_max;
        let events = world.power.events();
        if !waiting.is_empty() && room && scheduler.rng().chance(2, 3) {
            let client = waiting[scheduler.rng().below(waiting.len() as u64) as usize];
            let ops = queues[client].pop_front().expect("the client has work");
            let batches = world.device.batches_submitted();
            if !run.submit(&store, ops)? {
                return Ok(run.finish());
            }
            if let Some(profile) = profile.as_deref_mut() {
                profile.submitted(world, batches, run.submitted.txns.len(), events);
            }
            continue;
        }
        let finished = run.finished();
        match scheduler.step(&store) {
            Some(step) => {
                if let Some(profile) = profile.as_deref_mut() {
                    profile.stepped(world, &step, events, &run.finished(), &finished);
                }
            }
            None if waiting.is_empty() && run.in_flight() == 0 => break,
            None if waiting.is_empty() || !room => {
                return Err(format!(
                    "stuck with {} in flight and nothing to do",
                    run.in_flight()
                ));
            }
            None => {}
        }
    }
    if let Err(error) = store.close() {
        unmodelled(world, "close", &error)?;
    }
    Ok(run.finish())
}

/// What each I/O event of an uncut run belonged to, by event number. A cut run of the same
/// workload and seed does the same events up to its cut, so this says exactly which crash
/// points fall inside groups of two or more transactions: a member's data write, or the
/// group's flush or commit.
#[derive(Default)]
struct Profile {
    owners: Vec<Owner>,
    /// Transaction id of each device batch (a transaction's data writes are one batch).
    txn_of_batch: BTreeMap<u64, usize>,
    /// Size of each group, in flush order.
    group_sizes: Vec<usize>,
    /// Groups committed so far (groups commit in flush order).
    committed: usize,
    /// Group of each transaction, known when it is acknowledged.
    group_of: BTreeMap<usize, usize>,
}

#[derive(Debug, Clone, Copy)]
enum Owner {
    Txn(usize),
    Group(usize),
    Other,
}

impl Profile {
    fn record(&mut self, world: &World, events_before: u64, owner: Owner) {
        let events = world.power.events().saturating_sub(events_before);
        self.owners
            .extend(std::iter::repeat_n(owner, events as usize));
    }

    /// After transaction `count - 1` was submitted (`batches`: device batches before it).
    fn submitted(&mut self, world: &World, batches: u64, count: usize, events_before: u64) {
        if world.device.batches_submitted() > batches {
            self.txn_of_batch.insert(batches, count - 1);
        }
        self.record(world, events_before, Owner::Other);
    }

    /// After one scheduler step; `finished_before` and `finished` are the transactions
    /// acknowledged before and after it.
    fn stepped(
        &mut self,
        world: &World,
        step: &Stepped,
        events_before: u64,
        finished: &BTreeSet<usize>,
        finished_before: &BTreeSet<usize>,
    ) {
        let owner = match step.work {
            Work::CompleteIo => world
                .device
                .last_completed_batch()
                .and_then(|batch| self.txn_of_batch.get(&batch))
                .map_or(Owner::Other, |txn| Owner::Txn(*txn)),
            Work::FlushGroup if step.taken > 0 => {
                self.group_sizes.push(step.taken);
                Owner::Group(self.group_sizes.len() - 1)
            }
            Work::CommitGroup => {
                let group = self.committed;
                self.committed += 1;
                for txn in finished.difference(finished_before) {
                    self.group_of.insert(*txn, group);
                }
                Owner::Group(group)
            }
            _ => Owner::Other,
        };
        self.record(world, events_before, owner);
    }

    /// For each event number (from 1), whether it fell in a group of two or more.
    fn grouped(&self) -> Vec<bool> {
        let big = |group: usize| self.group_sizes.get(group).is_some_and(|n| *n >= 2);
        self.owners
            .iter()
            .map(|owner| match owner {
                Owner::Txn(txn) => self.group_of.get(txn).is_some_and(|g| big(*g)),
                Owner::Group(group) => big(*group),
                Owner::Other => false,
            })
            .collect()
    }
}

/// Profiles a concurrent workload's uncut run (see [`Profile`]).
fn profile(plan: &Concurrent, seed: u64) -> Vec<bool> {
    let world = World::with_device(0, seed, plan.device_bytes);
    let mut scheduler = Scheduler::new(seed);
    let mut profile = Profile::default();
    drive_concurrent(
        &world,
        plan,
        &mut scheduler,
        Mutation::None,
        Some(&mut profile),
    )
    .expect("the uncut run of a workload succeeds");
    profile.grouped()
}

struct ConcurrentRun<'a> {
    world: &'a World,
    /// The model after every submitted transaction (what submissions are validated against).
    model: Model,
    submitted: Submitted,
    results: Arc<Mutex<BTreeMap<usize, bstore::Result<()>>>>,
}

impl<'a> ConcurrentRun<'a> {
    fn new(world: &'a World) -> ConcurrentRun<'a> {
        ConcurrentRun {
            world,
            model: Model::default(),
            submitted: Submitted {
                setup: Model::default(),
                setup_acked: false,
                txns: Vec::new(),
                order: BTreeMap::new(),
                acked: BTreeSet::new(),
            },
            results: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    fn finish(mut self) -> Outcome {
        for (id, result) in self.results.lock().iter() {
            if result.is_ok() {
                self.submitted.acked.insert(*id);
            }
        }
        Outcome {
            expected: Expected::Concurrent(self.submitted),
        }
    }

    fn in_flight(&self) -> usize {
        self.submitted.txns.len() - self.results.lock().len()
    }

    /// Ids of the transactions that have finished (acknowledged or failed).
    fn finished(&self) -> BTreeSet<usize> {
        self.results.lock().keys().copied().collect()
    }

    /// Creates the clients' collections and waits for it; false when the power failed first.
    fn set_up(&mut self, store: &Store, scheduler: &mut Scheduler) -> Found<bool> {
        let create: Vec<Op> = COLLECTIONS
            .iter()
            .map(|c| Op::CreateCollection {
                collection: c.as_bytes().to_vec(),
            })
            .collect();
        let acked: Acked = Arc::new(Mutex::new(None));
        let deliver = Arc::clone(&acked);
        let mut setup = Model::default();
        setup.apply(&create).expect("three new collections");
        self.submitted.setup = setup.clone();
        if let Err(error) = store.submit(&transaction(&create), move |r| *deliver.lock() = Some(r))
        {
            unmodelled(self.world, "creating the collections", &error)?;
            return Ok(false);
        }
        loop {
            if let Some(result) = acked.lock().take() {
                return match result {
                    Ok(()) => {
                        self.model = setup;
                        self.submitted.setup_acked = true;
                        Ok(true)
                    }
                    Err(error) => {
                        unmodelled(self.world, "creating the collections", &error).map(|()| false)
                    }
                };
            }
            if self.world.power.is_off() || scheduler.step(store).is_none() {
                return Ok(false);
            }
        }
    }

    /// Submits one transaction without waiting; false when the power failed.
    fn submit(&mut self, store: &Store, ops: &[Op]) -> Found<bool> {
        let mut next = self.model.clone();
        let predicted = next.apply(ops);
        let id = self.submitted.txns.len();
        let results = Arc::clone(&self.results);
        let submitted = store.submit(&transaction(ops), move |result| {
            results.lock().insert(id, result);
        });
        match (submitted, predicted) {
            (Ok(()), Ok(())) => {
                self.model = next;
                let touched: BTreeSet<&[u8]> = ops.iter().map(Op::collection).collect();
                for collection in touched {
                    self.submitted
                        .order
                        .entry(collection.to_vec())
                        .or_default()
                        .push(id);
                }
                self.submitted.txns.push(ops.to_vec());
                Ok(true)
            }
            (Ok(()), Err(failure)) => Err(format!("submitted, but should fail: {failure:?}")),
            (Err(error), predicted) => match Failure::of(&error) {
                Some(failure) if predicted == Err(failure) => Ok(true),
                Some(_) => Err(format!(
                    "submit: {error}, but the model predicts {predicted:?}"
                )),
                None => unmodelled(self.world, "submit", &error).map(|()| false),
            },
        }
    }
}

impl Submitted {
    /// The survivor must be, per collection, the setup plus a prefix of that collection's
    /// submission order that holds every acknowledged transaction; a transaction touching
    /// several collections is in all their prefixes or in none.
    fn check(&self, seen: &Model, tally: &mut Tally) -> Found<()> {
        if !self.setup_acked {
            // The power failed while the collections were created: that, or nothing.
            let applied = *seen == self.setup;
            if !applied && *seen != Model::default() {
                return Err(format!("after a cut during set-up: {}", summary(seen)));
            }
            tally.in_flight_applied += u64::from(applied);
            tally.in_flight_absent += u64::from(!applied);
            return Ok(());
        }
        if seen.collections.keys().ne(self.setup.collections.keys()) {
            return Err(format!(
                "collections {:?}",
                seen.collections.keys().collect::<Vec<_>>()
            ));
        }
        let mut candidates: BTreeMap<&[u8], Vec<usize>> = BTreeMap::new();
        for collection in self.setup.collections.keys() {
            let found = self.prefixes_matching(collection, seen)?;
            if found.is_empty() {
                return Err(format!(
                    "collection {} matches no prefix of its submissions holding every \
                     acknowledged one\nstore: {}",
                    collection.escape_ascii(),
                    summary(seen)
                ));
            }
            candidates.insert(collection.as_slice(), found);
        }
        let chosen = self.consistent_choice(&candidates).ok_or_else(|| {
            format!(
                "no choice of prefixes keeps cross-collection transactions whole: {candidates:?}"
            )
        })?;
        for id in 0..self.txns.len() {
            if self.acked.contains(&id) {
                continue;
            }
            let applied = self.included(id, &chosen);
            tally.in_flight_applied += u64::from(applied);
            tally.in_flight_absent += u64::from(!applied);
        }
        Ok(())
    }

    /// The prefix lengths of `collection`'s submissions after which the model's collection
    /// equals the survivor's, at least as long as the last acknowledged one.
    fn prefixes_matching(&self, collection: &[u8], seen: &Model) -> Found<Vec<usize>> {
        let order = self
            .order
            .get(collection)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let shortest = order
            .iter()
            .rposition(|id| self.acked.contains(id))
            .map_or(0, |last| last + 1);
        let mut state = Model::default();
        state.collections.insert(
            collection.to_vec(),
            self.setup.collections[collection].clone(),
        );
        let mut found = Vec::new();
        for length in 0..=order.len() {
            if length >= shortest && state.collections[collection] == seen.collections[collection] {
                found.push(length);
            }
            if let Some(id) = order.get(length) {
                let own: Vec<Op> = self.txns[*id]
                    .iter()
                    .filter(|op| op.collection() == collection)
                    .cloned()
                    .collect();
                state.apply(&own).map_err(|f| {
                    format!("transaction {id} replayed on its own collection: {f:?}")
                })?;
            }
        }
        Ok(found)
    }

    /// A prefix length per collection, from the candidates, that agrees on every
    /// cross-collection transaction.
    fn consistent_choice<'c>(
        &self,
        candidates: &BTreeMap<&'c [u8], Vec<usize>>,
    ) -> Option<BTreeMap<&'c [u8], usize>> {
        const COMBINATIONS_MAX: usize = 100_000;
        let collections: Vec<&[u8]> = candidates.keys().copied().collect();
        let total: usize = candidates.values().map(Vec::len).product();
        (0..total.min(COMBINATIONS_MAX)).find_map(|mut index| {
            let chosen: BTreeMap<&[u8], usize> = collections
                .iter()
                .map(|c| {
                    let options = &candidates[c];
                    let pick = options[index % options.len()];
                    index /= options.len();
                    (*c, pick)
                })
                .collect();
            self.keeps_transactions_whole(&chosen).then_some(chosen)
        })
    }

    fn keeps_transactions_whole(&self, chosen: &BTreeMap<&[u8], usize>) -> bool {
        (0..self.txns.len()).all(|id| {
            let mut verdicts = self.order.iter().filter_map(|(collection, order)| {
                let position = order.iter().position(|t| *t == id)?;
                Some(position < chosen[collection.as_slice()])
            });
            let first = verdicts.next();
            verdicts.all(|v| Some(v) == first)
        })
    }

    fn included(&self, id: usize, chosen: &BTreeMap<&[u8], usize>) -> bool {
        self.order.iter().any(|(collection, order)| {
            order
                .iter()
                .position(|t| *t == id)
                .is_some_and(|position| position < chosen[collection.as_slice()])
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The harness checks itself

#[test]
fn a_seed_names_the_same_io_events_every_time() {
    // Determinism by construction: the same workload, scheduler seed and cut give the same
    // trace of I/O events, run after run, so a crash point is one operation and a seed
    // reproduces a failure exactly.
    let seed = bstore::rng::test_seed();
    let mut events = 0;
    for index in 0..6u64 {
        let workload = Workload::generate(seed ^ index, index % 3 != 0);
        let traces: Vec<(u64, u64)> = (0..2)
            .map(|_| {
                let world = World::new(0, 7);
                let mut scheduler = Scheduler::new(seed);
                match &workload {
                    Workload::Sequential(steps) => {
                        drive_sequential(&world, steps, &mut scheduler, Mutation::None).unwrap();
                    }
                    Workload::Concurrent(plan) => {
                        drive_concurrent(&world, plan, &mut scheduler, Mutation::None, None)
                            .unwrap();
                    }
                }
                (world.power.events(), world.power.trace())
            })
            .collect();
        println!(
            "{} workload (seed {seed}): {} I/O events",
            workload.kind(),
            traces[0].0
        );
        assert_eq!(traces[0], traces[1], "seed {seed}: the same events twice");
        events += traces[0].0;
    }
    assert!(events > 100, "the workloads did I/O: {events} events");
}

/// Runs crash points of workloads from `make` with `mutation` on until the harness reports a
/// failure (or the store panics); how many points that took.
fn points_until_caught(
    mutation: Mutation,
    make: impl Fn(u64) -> Workload,
    budget: u64,
) -> Option<u64> {
    let seed = bstore::rng::test_seed();
    let mut rng = SplitMix64::new(seed ^ 0x6d75_7461_7469_6f6e);
    let mut points = 0;
    while points < budget {
        let workload = make(rng.next_u64());
        let workload_seed = rng.next_u64();
        for cut_at in 1.. {
            let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                crash_at(&workload, cut_at, workload_seed, mutation)
            }));
            points += 1;
            match attempt {
                Ok(Ok(Ran::Cut(_))) => {}
                Ok(Ok(Ran::Finished { .. })) => break,
                Ok(Err(failure)) => {
                    println!("{mutation:?} caught after {points} points: {failure}");
                    return Some(points);
                }
                Err(_) => {
                    println!("{mutation:?} caught after {points} points (the store panicked)");
                    return Some(points);
                }
            }
        }
    }
    None
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "mutations exist only in debug builds")]
fn the_harness_catches_a_commit_that_does_not_flush_the_data_first() {
    let sequential = |seed| Workload::generate(seed, false);
    let caught = points_until_caught(Mutation::SkipFlushBeforeCommit, sequential, 5_000);
    assert!(
        caught.is_some(),
        "a store committing unflushed data went unnoticed"
    );
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "mutations exist only in debug builds")]
fn the_harness_catches_space_reused_before_its_release_is_durable() {
    let churn = |seed| Workload::Concurrent(Concurrent::churn(seed));
    let caught = points_until_caught(Mutation::ReuseSpaceBeforeCommit, churn, 5_000);
    assert!(
        caught.is_some(),
        "a store reusing space early went unnoticed"
    );
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "mutations exist only in debug builds")]
fn the_harness_catches_a_mount_that_does_not_replay_deferred_writes() {
    let sequential = |seed| Workload::generate(seed, false);
    let caught = points_until_caught(Mutation::SkipReplay, sequential, 5_000);
    assert!(caught.is_some(), "a store skipping replay went unnoticed");
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "mutations exist only in debug builds")]
fn the_harness_catches_a_replay_that_trusts_the_last_record() {
    let concurrent = |seed| Workload::generate(seed, true);
    let caught = points_until_caught(Mutation::TrustLastRecord, concurrent, 20_000);
    assert!(
        caught.is_some(),
        "a replay applying a last record whose data is missing went unnoticed"
    );
}

#[test]
#[cfg_attr(not(debug_assertions), ignore = "mutations exist only in debug builds")]
fn the_harness_catches_a_journal_flush_that_does_not_wait_for_the_data() {
    let concurrent = |seed| Workload::generate(seed, true);
    let caught = points_until_caught(Mutation::FlushBeforeDataWritten, concurrent, 20_000);
    assert!(
        caught.is_some(),
        "a record flushed before its data writes completed went unnoticed"
    );
}

#[test]
fn churn_passes_without_the_mutation() {
    // The workload that catches early reuse is itself correct on a correct store.
    let seed = bstore::rng::test_seed();
    let workload = Workload::Concurrent(Concurrent::churn(seed));
    let mut points = 0;
    for cut_at in 1.. {
        match crash_at(&workload, cut_at, seed, Mutation::None) {
            Ok(Ran::Cut(_)) => points += 1,
            Ok(Ran::Finished { .. }) => break,
            Err(failure) => panic!("seed {seed}, cut at {cut_at}: {failure}"),
        }
    }
    assert!(points > 20, "{points} crash points");
}
