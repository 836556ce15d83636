//! Goal: a power cut at any I/O point never loses an acknowledged transaction, never exposes
//! part of one, and never leaves a store that fails to mount, reads a checksum error, or fails
//! fsck.
//!
//! Each generated workload (every op kind: overwrites big and small, aligned and unaligned, so
//! new-space, fill-unused and deferred writes; creates, removes, truncates, attrs, omap,
//! renames; remounts, which replay deferred records) runs on the simulated device and in-memory
//! KV, which share a [`PowerCut`] switch. Run `k` of a workload cuts the power at its `k`-th I/O
//! event (device write request, device flush, or KV write): that event and every later one
//! fail. Then the device keeps, drops or tears each unflushed write at random, and the KV store
//! keeps a random prefix of its unsynced batches. The survivor is mounted and must equal the
//! model after every acknowledged transaction, optionally plus the one in flight (transactions
//! are applied one at a time, so that is every prefix allowed). `k` runs from 1 until a run ends
//! without reaching its cut, so every I/O point of every workload is a crash point.
//!
//! At least 20,000 crash points run by default; `BSTORE_CRASH_POINTS` sets the number, and
//! `BSTORE_SEED` replays a run (the seed is printed).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bstore::device::{BlockDevice, CrashMode, PowerCut, SimDevice};
use bstore::kv::{KeySpace, Kv, MemKv};
use bstore::rng::SplitMix64;
use bstore::txn::Op;
use bstore::{FormatOptions, Store, Transaction};
use common::model::{Failure, Model, ModelObject};
use common::sim_options;
use common::workload::{self, Step};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

const DEVICE_BYTES: u64 = 64 << 20;
const SECTOR: u32 = 512;

/// What the store acknowledged before the power went.
struct Outcome {
    /// The model after every acknowledged transaction.
    acknowledged: Model,
    /// The model with the transaction in flight at the cut applied too, if it was valid.
    in_flight: Option<Model>,
}

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
    let total = tallies.iter().fold(Tally::default(), |a, b| Tally {
        points: a.points + b.points,
        workloads: a.workloads + b.workloads,
        replayed_records: a.replayed_records + b.replayed_records,
    });
    println!(
        "{} crash points in {} workloads ({} deferred records replayed by recovery mounts) in \
         {:.1} s",
        total.points,
        total.workloads,
        total.replayed_records,
        started.elapsed().as_secs_f64()
    );
    assert!(total.points >= target);
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    points: u64,
    workloads: u64,
    replayed_records: u64,
}

/// Workloads of stream `stream` until `target` crash points ran.
fn run_stream(seed: u64, stream: u64, target: u64) -> Tally {
    let mut rng = SplitMix64::new(seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut tally = Tally::default();
    while tally.points < target {
        let steps = generate_workload(rng.next_u64());
        let workload_seed = rng.next_u64();
        for cut_at in 1.. {
            let context = format!(
                "seed {seed}, stream {stream}, workload {}, cut at I/O event {cut_at}",
                tally.workloads
            );
            match crash_at(&steps, cut_at, workload_seed ^ cut_at, &context) {
                Some(replayed) => {
                    tally.points += 1;
                    tally.replayed_records += replayed;
                }
                None => break,
            }
        }
        tally.workloads += 1;
    }
    tally
}

/// Runs `steps` with the power cut at I/O event `cut_at`, recovers, and checks. `None` when the
/// workload finished before that event (no crash point left); else how many deferred records
/// the recovery mount replayed.
fn crash_at(steps: &[Step], cut_at: u64, seed: u64, context: &str) -> Option<u64> {
    let device = Arc::new(SimDevice::new(DEVICE_BYTES, SECTOR, false));
    let kv = Arc::new(MemKv::new());
    Store::mkfs_on(device.as_ref(), kv.as_ref(), &FormatOptions::default()).unwrap();
    let power = PowerCut::at(cut_at);
    device.set_power(Arc::clone(&power));
    kv.set_power(Arc::clone(&power));
    let outcome = drive(&device, &kv, steps, context);
    if !power.is_off() {
        return None;
    }
    let mut rng = SplitMix64::new(seed);
    let (mut device, mut kv) = power_loss(&device, &kv, &mut rng);
    if kv.key_count(KeySpace::Deferred) > 0 && rng.chance(1, 2) {
        // Cut the power again while the recovery mount replays the deferred records.
        let power = PowerCut::at(1 + rng.below(6));
        device.set_power(Arc::clone(&power));
        kv.set_power(power);
        drop(Store::open_on(device.clone(), kv.clone(), &sim_options()));
        (device, kv) = power_loss(&device, &kv, &mut rng);
    }
    Some(recover_and_check(device, kv, &outcome, context))
}

/// What a power cut leaves: unflushed device writes kept, dropped or torn at random; a random
/// prefix of the unsynced KV batches.
fn power_loss(
    device: &SimDevice,
    kv: &MemKv,
    rng: &mut SplitMix64,
) -> (Arc<SimDevice>, Arc<MemKv>) {
    let image = device.crash(CrashMode::Random(rng.next_u64()));
    let kv = Arc::new(kv.crash(CrashMode::Random(rng.next_u64())));
    let device = Arc::new(SimDevice::from_image(image, DEVICE_BYTES, SECTOR, false));
    (device, kv)
}

/// Applies the steps one transaction at a time until they end or the power fails.
fn drive(device: &Arc<SimDevice>, kv: &Arc<MemKv>, steps: &[Step], context: &str) -> Outcome {
    let mut model = Model::default();
    let open = || Store::open_on(device.clone(), kv.clone(), &sim_options());
    let Ok(mut store) = open() else {
        return Outcome::acknowledged(model);
    };
    for (index, step) in steps.iter().enumerate() {
        let ops = match step {
            Step::Apply(ops) | Step::ApplyWhileReading(ops) => ops,
            Step::Remount => {
                if store.close().is_err() {
                    return Outcome::acknowledged(model);
                }
                match open() {
                    Ok(reopened) => store = reopened,
                    Err(_) => return Outcome::acknowledged(model),
                }
                continue;
            }
        };
        let mut next = model.clone();
        let predicted = next.apply(ops);
        match store.apply(&transaction(ops)) {
            Ok(()) => {
                assert!(predicted.is_ok(), "{context}: step {index} should fail");
                model = next;
            }
            Err(error) => match Failure::of(&error) {
                Some(failure) => {
                    assert_eq!(predicted, Err(failure), "{context}: step {index}: {error}")
                }
                // The power failed: the store is poisoned and acknowledges nothing more.
                None => {
                    return Outcome {
                        acknowledged: model,
                        in_flight: predicted.is_ok().then_some(next),
                    };
                }
            },
        }
    }
    let _ = store.close();
    Outcome::acknowledged(model)
}

impl Outcome {
    fn acknowledged(model: Model) -> Outcome {
        Outcome {
            acknowledged: model,
            in_flight: None,
        }
    }
}

/// Mounts what the crash left and compares it with the allowed states; then fsck.
fn recover_and_check(
    device: Arc<SimDevice>,
    kv: Arc<MemKv>,
    outcome: &Outcome,
    context: &str,
) -> u64 {
    let store = Store::open_on(device.clone(), kv.clone(), &sim_options())
        .unwrap_or_else(|e| panic!("{context}: mount after the crash failed: {e}"));
    let replayed = store.counters().deferred_records_replayed;
    let seen = read_everything(&store)
        .unwrap_or_else(|e| panic!("{context}: reading after the crash failed: {e}"));
    let matches_in_flight = outcome.in_flight.as_ref() == Some(&seen);
    assert!(
        seen == outcome.acknowledged || matches_in_flight,
        "{context}: the store after the crash is neither the acknowledged state nor that plus \
         the transaction in flight\nstore: {}\nacknowledged: {}",
        summary(&seen),
        summary(&outcome.acknowledged)
    );
    store
        .close()
        .unwrap_or_else(|e| panic!("{context}: close: {e}"));
    let device: Arc<dyn BlockDevice> = device;
    let kv: Arc<dyn Kv> = kv;
    let report = Store::fsck_on(device.as_ref(), kv.as_ref()).unwrap();
    assert!(report.is_clean(), "{context}: fsck: {:?}", report.errors);
    replayed
}

/// Everything the store shows, as a model (allocation hints are not readable and stay default).
fn read_everything(store: &Store) -> bstore::Result<Model> {
    let mut model = Model::default();
    for collection in store.list_collections()? {
        let mut objects = BTreeMap::new();
        for name in store.list_objects(&collection, None, usize::MAX)? {
            let omap = store
                .omap_iter(&collection, &name, b"", None)?
                .collect::<bstore::Result<BTreeMap<_, _>>>()?;
            let object = ModelObject {
                data: store.get(&collection, &name)?,
                xattrs: store.getattrs(&collection, &name)?,
                omap_header: store.omap_get_header(&collection, &name)?,
                omap,
                alloc_hint: Default::default(),
            };
            objects.insert(name, object);
        }
        model.collections.insert(collection, objects);
    }
    Ok(model)
}

/// Object names and sizes, for a failure message.
fn summary(model: &Model) -> String {
    let objects: Vec<String> = model
        .collections
        .iter()
        .flat_map(|(c, objects)| {
            objects.iter().map(move |(name, o)| {
                format!(
                    "{}/{}: {} bytes, {} xattrs, {} omap",
                    c.escape_ascii(),
                    name.escape_ascii(),
                    o.data.len(),
                    o.xattrs.len(),
                    o.omap.len()
                )
            })
        })
        .collect();
    objects.join("; ")
}

fn transaction(ops: &[Op]) -> Transaction {
    let mut txn = Transaction::new();
    for op in ops {
        txn.push(op.clone());
    }
    txn
}

/// A workload from the model tests' generator, drawn with a deterministic seed. Allocation
/// hints are dropped from the model's comparison, so they are kept out of the workload too.
fn generate_workload(seed: u64) -> Vec<Step> {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let tree = workload::steps(3..10)
        .new_tree(&mut runner)
        .expect("the generator has no filters");
    let mut steps = tree.current();
    for step in &mut steps {
        if let Step::Apply(ops) | Step::ApplyWhileReading(ops) = step {
            ops.retain(|op| !is_alloc_hint(op));
        }
    }
    let mut rng = SplitMix64::new(seed);
    if rng.chance(2, 3) {
        let at = 1 + rng.below(steps.len() as u64) as usize;
        steps.splice(at..at, small_overwrites(&mut rng));
    }
    steps
}

/// An object written whole, then a few small overwrites of it (aligned and not, within one
/// chunk and across two): the transactions that take the deferred path.
fn small_overwrites(rng: &mut SplitMix64) -> Vec<Step> {
    const LENGTH: u64 = 96 << 10;
    let write = |offset: u64, length: u64, fill: u64| Op::Object {
        collection: b"c0".to_vec(),
        object: b"deferred".to_vec(),
        op: bstore::txn::ObjectOp::Write {
            offset,
            data: (0..length).map(|i| (i * 13 + fill) as u8).collect(),
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
            op: bstore::txn::ObjectOp::SetAllocHint(_),
            ..
        }
    )
}
