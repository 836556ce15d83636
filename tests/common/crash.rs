//! The crash simulation's machinery: a simulated pair sharing one power switch, a seeded
//! scheduler of a stepped store's background work, the power loss, and a tally of what the
//! faults actually did, so that the harness can check itself.
//!
//! Everything runs on one thread: the store's background work is stepped (no threads of its
//! own), the device completes requests only when the scheduler asks and in a seeded order, and
//! the scheduler picks each next unit of work from its own seed. So a seed names one sequence
//! of I/O events, the same every run (the trace of the power switch proves it), and cutting the
//! power at event `k` cuts it at the same operation every time.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use bstore::device::{BlockDevice, CrashMode, PowerCut, SimCrashCounts, SimDevice, SimIo};
use bstore::format::keys::JOURNAL_NEXT_KEY;
use bstore::format::records::JournalPosition;
use bstore::kv::{KeySpace, MemCrashCounts, MemKv};
use bstore::rng::SplitMix64;
use bstore::store::options::Mutation;
use bstore::txn::Op;
use bstore::{Background, FormatOptions, JournalSize, OpenOptions, Store, Transaction, Work};

use super::model::{Model, ModelObject};
use super::sim_options;

pub const DEVICE_BYTES: u64 = 64 << 20;
pub const SECTOR: u32 = 512;
/// The smallest journal there is, so that workloads go round its ring (and commits too large
/// for its records take the checkpoint road).
pub const JOURNAL_BYTES: u64 = 64 << 10;

/// Options of every store in the simulation: the simulated pair's (deferred writes under
/// 64 KiB, small apply batches), stepped background work, and the mutation under test.
pub fn stepped_options(mutation: Mutation) -> OpenOptions {
    #[allow(unused_mut)]
    let mut options = sim_options().with_background(Background::Stepped);
    #[cfg(debug_assertions)]
    {
        options.mutation = mutation;
    }
    #[cfg(not(debug_assertions))]
    let _ = mutation;
    options
}

/// A formatted simulated pair whose device completes out of order, and the power switch both
/// count their events on.
pub struct World {
    pub device: Arc<SimDevice>,
    pub kv: Arc<MemKv>,
    pub power: Arc<PowerCut>,
    /// Where the journal's head was when the workload began.
    pub journal_start: Option<JournalPosition>,
}

impl World {
    /// A fresh pair; the power fails at event `cut_at` (0: never).
    pub fn new(cut_at: u64, io_seed: u64) -> World {
        Self::with_device(cut_at, io_seed, DEVICE_BYTES)
    }

    /// A fresh pair with a device of `device_bytes`.
    pub fn with_device(cut_at: u64, io_seed: u64, device_bytes: u64) -> World {
        let device = Arc::new(SimDevice::new(device_bytes, SECTOR, false));
        let kv = Arc::new(MemKv::new());
        let format = FormatOptions::default().with_journal(JournalSize::Bytes(JOURNAL_BYTES));
        Store::mkfs_on(device.as_ref(), kv.as_ref(), &format).unwrap();
        // A lap and all but one block: the head starts in the ring's last block, so every
        // workload of two records or more goes past its end.
        let ring_blocks = JOURNAL_BYTES / bstore::format::journal::JOURNAL_BLOCK;
        age_journal(&device, &kv, 2 * ring_blocks - 1);
        let journal_start = journal_position(&kv);
        device.set_io(SimIo::Reordered { seed: io_seed });
        let power = if cut_at == 0 {
            PowerCut::never()
        } else {
            PowerCut::at(cut_at)
        };
        device.set_power(Arc::clone(&power));
        kv.set_power(Arc::clone(&power));
        World {
            device,
            kv,
            power,
            journal_start,
        }
    }

    /// Mounts the pair.
    pub fn open(&self, mutation: Mutation) -> bstore::Result<Store> {
        Store::open_on(
            self.device.clone(),
            self.kv.clone(),
            &stepped_options(mutation),
        )
    }
}

/// What the faults did over many crash points: each count must be above zero over a CI run, or
/// the fault injection is not doing its job.
#[derive(Debug, Default, Clone, Copy)]
pub struct FaultTally {
    pub device: SimCrashCounts,
    pub kv: MemCrashCounts,
}

impl FaultTally {
    pub fn add(&mut self, other: &FaultTally) {
        let (d, o) = (&mut self.device, &other.device);
        d.kept += o.kept;
        d.dropped += o.dropped;
        d.torn += o.torn;
        d.in_flight_lost += o.in_flight_lost;
        let (k, o) = (&mut self.kv, &other.kv);
        k.unsynced_kept += o.unsynced_kept;
        k.unsynced_lost += o.unsynced_lost;
        k.cut_batch_kept += o.cut_batch_kept;
        k.cut_batch_lost += o.cut_batch_lost;
    }
}

/// The pair a power cut leaves: completed unflushed writes kept, dropped or torn at random,
/// pending ones lost; a random prefix of the unsynced KV batches, and the batch of the write
/// the power failed during half the time. The new pair completes in order again.
pub fn power_loss(world: &World, rng: &mut SplitMix64, tally: &mut FaultTally) -> World {
    let image = world.device.crash(CrashMode::Random(rng.next_u64()));
    let kv = Arc::new(world.kv.crash(CrashMode::Random(rng.next_u64())));
    tally.add(&FaultTally {
        device: world.device.last_crash(),
        kv: world.kv.last_crash(),
    });
    let size = world.device.info().size_bytes;
    let device = Arc::new(SimDevice::from_image(image, size, SECTOR, false));
    device.set_io(SimIo::Reordered {
        seed: rng.next_u64(),
    });
    World {
        device,
        kv,
        power: PowerCut::never(),
        journal_start: world.journal_start,
    }
}

/// Arms a new power cut on a pair (for a cut during recovery).
pub fn arm(world: &mut World, cut_at: u64) {
    world.power = PowerCut::at(cut_at);
    world.device.set_power(Arc::clone(&world.power));
    world.kv.set_power(Arc::clone(&world.power));
}

/// Goes round the journal's ring before a workload begins, with `records` empty commits (more
/// than a ring's worth): the workload then finds stale records of an earlier lap everywhere
/// behind its head.
fn age_journal(device: &Arc<SimDevice>, kv: &Arc<MemKv>, records: u64) {
    let store =
        Store::open_on(device.clone(), kv.clone(), &stepped_options(Mutation::None)).unwrap();
    for _ in 0..records {
        store.apply(&Transaction::new()).unwrap();
    }
    store.close().unwrap();
}

/// The journal position the KV store holds.
fn journal_position(kv: &MemKv) -> Option<JournalPosition> {
    use bstore::kv::Kv;
    let value = kv.get(KeySpace::Super, JOURNAL_NEXT_KEY).ok()??;
    JournalPosition::decode(&value).ok()
}

/// What a workload's journal records did to the ring.
#[derive(Debug, Clone, Copy, Default)]
pub struct JournalLap {
    /// Records the workload wrote.
    pub records: u64,
    /// They went past the ring's end (the head is behind where it started, or a whole ring's
    /// worth was written).
    pub wrapped: bool,
}

/// What the workload's journal records did (the head starts in the ring's last block, so two
/// records, or one of more than a block, go past its end).
pub fn journal_lap(world: &World) -> JournalLap {
    let (Some(start), Some(end)) = (world.journal_start, journal_position(&world.kv)) else {
        return JournalLap::default();
    };
    let block = bstore::format::journal::JOURNAL_BLOCK;
    let records = end.sequence - start.sequence;
    // The head came back to (or before) where it started: the records went past the ring's
    // end, unless the only one filled the ring's tail exactly (the head then sits at offset 0
    // without any record having been placed there).
    let filled_the_tail_only =
        records == 1 && end.ring_offset == (start.ring_offset + block) % JOURNAL_BYTES;
    let came_round = records > 0 && end.ring_offset <= start.ring_offset && !filled_the_tail_only;
    JournalLap {
        records,
        wrapped: came_round || records * block >= JOURNAL_BYTES,
    }
}

/// True when the pair holds deferred records a mount would replay.
pub fn has_deferred_records(world: &World) -> bool {
    world.kv.key_count(KeySpace::Deferred) > 0
}

/// Picks each next unit of a stepped store's background work from its seed.
pub struct Scheduler {
    rng: SplitMix64,
}

/// What one scheduler step did.
#[derive(Debug, Clone, Copy)]
pub struct Stepped {
    pub work: Work,
    /// Transactions (or records) the unit took.
    pub taken: usize,
}

impl Scheduler {
    pub fn new(seed: u64) -> Scheduler {
        Scheduler {
            rng: SplitMix64::new(seed),
        }
    }

    pub fn rng(&mut self) -> &mut SplitMix64 {
        &mut self.rng
    }

    /// Runs one unit of pending work, chosen at random (completions most often and group
    /// selection least, so that writes finish out of order and groups of several transactions
    /// form behind them); `None` when nothing is pending.
    pub fn step(&mut self, store: &Store) -> Option<Stepped> {
        const WEIGHTED: [(Work, u64); 4] = [
            (Work::CompleteIo, 8),
            (Work::FlushGroup, 1),
            (Work::CommitGroup, 1),
            (Work::ApplyDeferred, 1),
        ];
        let total: u64 = WEIGHTED.iter().map(|(_, w)| w).sum();
        let mut pick = self.rng.below(total);
        let first = WEIGHTED
            .iter()
            .position(|(_, w)| {
                if pick < *w {
                    return true;
                }
                pick -= w;
                false
            })
            .unwrap_or(0);
        (0..WEIGHTED.len()).find_map(|offset| {
            let work = WEIGHTED[(first + offset) % WEIGHTED.len()].0;
            store.step(work).map(|taken| Stepped { work, taken })
        })
    }
}

/// Everything the store shows, as a model (allocation hints are not readable and stay default).
pub fn read_everything(store: &Store) -> bstore::Result<Model> {
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
pub fn summary(model: &Model) -> String {
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

pub fn transaction(ops: &[Op]) -> Transaction {
    let mut txn = Transaction::new();
    for op in ops {
        txn.push(op.clone());
    }
    txn
}
