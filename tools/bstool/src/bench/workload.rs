//! The workloads, and the timed loop that runs one with a number of operations in flight.
//!
//! Every workload keeps `queue_depth` operations in flight by running that many worker threads,
//! each issuing one durable operation at a time (bstore's reads are synchronous, so threads are
//! how it reaches a queue depth, as fio's jobs would). Each operation's latency goes into a
//! per-thread histogram; random choices come from per-thread generators seeded from one seed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bstore::device::AlignedBuf;
use bstore::rng::SplitMix64;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use super::engine::BenchEngine;
use super::metrics::{latency_histogram, record};

/// A benchmark workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Whole 4 MiB objects written in turn.
    SeqWrite,
    /// Whole 4 MiB objects read in turn.
    SeqRead,
    /// 4 KiB aligned overwrites at random places of existing objects.
    RandWrite,
    /// 1 KiB overwrites at random (unaligned) offsets: the read-modify-write path.
    RandWriteUnaligned,
    /// 64 KiB aligned overwrites at random places.
    #[value(name = "rand-write-64k")]
    RandWrite64k,
    /// 4 KiB aligned reads at random places.
    RandRead,
    /// Creating many 4 KiB objects.
    SmallObjects,
    /// Setting 16 small omap keys per operation on 64 index objects.
    Omap,
    /// Fill to 80%, delete a quarter at random, refill; three rounds.
    Aging,
    /// Cloning a 4 MiB object and overwriting 4 KiB of the clone, in one transaction.
    Clone,
    /// What `ceph tell osd.N bench 204800000 4096 4194304 100` does: 100 objects of 4 MiB in one
    /// collection written whole (untimed), then 50,000 4 KiB writes at random aligned offsets,
    /// submitted without waiting (at most 64 MiB in flight, BlueStore's throttle), until every
    /// commit is in (bstore only).
    OsdBench,
    /// Durable 4 KiB random overwrites one at a time (queue depth 1): the latency of a commit.
    WriteLatency,
}

/// The standard suite, in the order it runs.
pub const STANDARD_SUITE: [Workload; 12] = [
    Workload::SeqWrite,
    Workload::SeqRead,
    Workload::RandWrite,
    Workload::RandWriteUnaligned,
    Workload::RandWrite64k,
    Workload::RandRead,
    Workload::WriteLatency,
    Workload::OsdBench,
    Workload::SmallObjects,
    Workload::Omap,
    Workload::Clone,
    Workload::Aging,
];

impl Workload {
    /// Name in reports (as on the command line).
    pub fn name(self) -> &'static str {
        match self {
            Workload::SeqWrite => "seq-write",
            Workload::SeqRead => "seq-read",
            Workload::RandWrite => "rand-write",
            Workload::RandWriteUnaligned => "rand-write-unaligned",
            Workload::RandWrite64k => "rand-write-64k",
            Workload::RandRead => "rand-read",
            Workload::SmallObjects => "small-objects",
            Workload::Omap => "omap",
            Workload::Clone => "clone",
            Workload::Aging => "aging",
            Workload::OsdBench => "osd-bench",
            Workload::WriteLatency => "write-latency",
        }
    }

    /// True when the workload works on the 4 MiB dataset objects.
    pub fn needs_dataset(self) -> bool {
        matches!(
            self,
            Workload::SeqRead
                | Workload::RandWrite
                | Workload::RandWriteUnaligned
                | Workload::RandWrite64k
                | Workload::RandRead
                | Workload::Clone
                | Workload::WriteLatency
        )
    }

    /// The equivalent fio pattern and block size, when there is one.
    pub fn fio_pattern(self) -> Option<(&'static str, u64)> {
        match self {
            Workload::SeqWrite => Some(("write", OBJECT_SIZE)),
            Workload::SeqRead => Some(("read", OBJECT_SIZE)),
            Workload::RandWrite | Workload::OsdBench | Workload::WriteLatency => {
                Some(("randwrite", 4096))
            }
            Workload::RandWrite64k => Some(("randwrite", 64 << 10)),
            Workload::RandRead => Some(("randread", 4096)),
            _ => None,
        }
    }

    /// fio's queue depth when it differs from the run's (the reference each workload is
    /// measured against), and whether fio syncs every write.
    pub fn fio_shape(self) -> (Option<usize>, bool) {
        match self {
            Workload::OsdBench => (Some(32), false),
            Workload::WriteLatency => (Some(1), true),
            _ => (None, false),
        }
    }
}

/// Size of the dataset objects.
pub const OBJECT_SIZE: u64 = 4 << 20;

/// How to run a workload.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// How long a timed workload runs.
    pub duration: Duration,
    /// Operations in flight (worker threads).
    pub queue_depth: usize,
    /// Dataset objects of `OBJECT_SIZE`.
    pub dataset_objects: u64,
    /// Seed of the workers' random choices.
    pub seed: u64,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// One round of the aging workload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgingRound {
    /// Bytes written per second while refilling.
    pub bytes_per_sec: f64,
    /// Free-space fragmentation score at the end of the round.
    pub free_score: f64,
}

/// What a run measured (besides what the engine and process counters say).
#[derive(Debug, Clone)]
pub struct Measured {
    /// Operations done.
    pub ops: u64,
    /// User bytes written or read.
    pub bytes: u64,
    /// Wall-clock time.
    pub elapsed: Duration,
    /// Latency of every operation, in microseconds.
    pub histogram: Histogram<u64>,
    /// Aging rounds, for the aging workload.
    pub rounds: Vec<AgingRound>,
}

/// The name of dataset object `index`.
pub fn dataset_object(index: u64) -> String {
    format!("data-{index:06}")
}

/// Writes the dataset (untimed), with `queue_depth` writers.
pub fn create_dataset(
    engine: &dyn BenchEngine,
    params: &Params,
    data: &[u8],
) -> Result<(), String> {
    let next = AtomicU64::new(0);
    let error: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..params.queue_depth {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= params.dataset_objects {
                        return;
                    }
                    if let Err(e) = engine.put(&dataset_object(index), data) {
                        *error.lock().expect("not poisoned") = Some(e);
                        return;
                    }
                }
            });
        }
    });
    match error.into_inner().expect("not poisoned") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Runs one workload (for `Aging`, see [`run_aging`]).
pub fn run(
    engine: &dyn BenchEngine,
    workload: Workload,
    params: &Params,
    data: &Arc<AlignedBuf>,
) -> Result<Measured, String> {
    let objects = params.dataset_objects.max(1);
    let next = AtomicU64::new(0);
    let op = |rng: &mut SplitMix64, thread: usize, iteration: u64| -> Result<u64, String> {
        match workload {
            Workload::SeqWrite => {
                let index = next.fetch_add(1, Ordering::Relaxed) % objects;
                engine
                    .put_shared(&dataset_object(index), data)
                    .map(|()| OBJECT_SIZE)
            }
            Workload::SeqRead => {
                let index = next.fetch_add(1, Ordering::Relaxed) % objects;
                engine
                    .read(&dataset_object(index), 0, OBJECT_SIZE as usize)
                    .map(|n| n as u64)
            }
            Workload::RandWrite => random_write(engine, rng, objects, 4096, 4096, data),
            Workload::RandWriteUnaligned => random_write(engine, rng, objects, 1024, 1, data),
            Workload::RandWrite64k => random_write(engine, rng, objects, 64 << 10, 64 << 10, data),
            Workload::RandRead => {
                let object = dataset_object(rng.below(objects));
                let offset = rng.below(OBJECT_SIZE / 4096) * 4096;
                engine.read(&object, offset, 4096).map(|n| n as u64)
            }
            Workload::SmallObjects => {
                let name = format!("small-{thread}-{iteration}");
                engine.put(&name, &data[..4096]).map(|()| 4096)
            }
            Workload::Omap => omap_op(engine, rng),
            Workload::Clone => {
                let source = dataset_object(rng.below(objects));
                let target = format!("clone-{thread}-{iteration}");
                let offset = rng.below(OBJECT_SIZE / 4096) * 4096;
                match engine.clone_and_write(&source, &target, offset, &data[..4096]) {
                    Some(result) => result.map(|()| 4096),
                    None => Err(format!("the {} engine has no clone", engine.name())),
                }
            }
            Workload::WriteLatency => random_write(engine, rng, objects, 4096, 4096, data),
            Workload::Aging | Workload::OsdBench => {
                Err(format!("{} is not a timed workload", workload.name()))
            }
        }
    };
    match workload {
        Workload::WriteLatency => timed(
            &Params {
                queue_depth: 1,
                ..*params
            },
            workload.name(),
            op,
        ),
        _ => timed(params, workload.name(), op),
    }
}

fn random_write(
    engine: &dyn BenchEngine,
    rng: &mut SplitMix64,
    objects: u64,
    length: u64,
    alignment: u64,
    data: &[u8],
) -> Result<u64, String> {
    let object = dataset_object(rng.below(objects));
    let offset = rng.below((OBJECT_SIZE - length) / alignment + 1) * alignment;
    let start = (offset % 4096) as usize;
    engine
        .write(&object, offset, &data[start..start + length as usize])
        .map(|()| length)
}

fn omap_op(engine: &dyn BenchEngine, rng: &mut SplitMix64) -> Result<u64, String> {
    let object = format!("index-{:02}", rng.below(64));
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..16)
        .map(|_| {
            (
                format!("{:016x}", rng.next_u64()).into_bytes(),
                vec![b'v'; 100],
            )
        })
        .collect();
    let bytes = pairs.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
    match engine.omap_set(&object, &pairs) {
        Some(result) => result.map(|()| bytes),
        None => Err(format!("the {} engine has no omap", engine.name())),
    }
}

/// What one worker counted: operations, bytes, latencies.
type WorkerTally = (u64, u64, Histogram<u64>);

/// Runs `op` on `queue_depth` threads until the duration is up; merges what they measured.
fn timed(
    params: &Params,
    label: &str,
    op: impl Fn(&mut SplitMix64, usize, u64) -> Result<u64, String> + Sync,
) -> Result<Measured, String> {
    let start = Instant::now();
    let deadline = start + params.duration;
    let failed = AtomicBool::new(false);
    let progress = progress_bar(params, label);
    let outcomes: Vec<Result<WorkerTally, String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..params.queue_depth)
            .map(|thread| {
                let (op, failed) = (&op, &failed);
                scope.spawn(move || {
                    let mut rng =
                        SplitMix64::new(params.seed ^ (thread as u64).wrapping_mul(0x9e37_79b9));
                    let mut histogram = latency_histogram();
                    let (mut ops, mut bytes) = (0u64, 0u64);
                    while Instant::now() < deadline && !failed.load(Ordering::Relaxed) {
                        let began = Instant::now();
                        let moved = op(&mut rng, thread, ops)
                            .inspect_err(|_| failed.store(true, Ordering::Relaxed))?;
                        record(&mut histogram, began.elapsed());
                        ops += 1;
                        bytes += moved;
                    }
                    Ok((ops, bytes, histogram))
                })
            })
            .collect();
        while workers.iter().any(|w| !w.is_finished()) {
            progress.set_position(start.elapsed().as_millis() as u64);
            std::thread::sleep(Duration::from_millis(100));
        }
        workers
            .into_iter()
            .map(|w| w.join().expect("worker panicked"))
            .collect()
    });
    progress.finish_and_clear();
    let mut measured = Measured {
        ops: 0,
        bytes: 0,
        elapsed: start.elapsed(),
        histogram: latency_histogram(),
        rounds: Vec::new(),
    };
    for outcome in outcomes {
        let (ops, bytes, histogram) = outcome?;
        measured.ops += ops;
        measured.bytes += bytes;
        measured.histogram.add(&histogram).expect("same bounds");
    }
    Ok(measured)
}

fn progress_bar(params: &Params, label: &str) -> ProgressBar {
    if !params.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(params.duration.as_millis() as u64);
    let style = ProgressStyle::with_template("{prefix:>22} [{bar:40}] {elapsed}/{duration}")
        .expect("valid template")
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(label.to_string());
    bar
}

/// The aging workload: fill to 80% with objects of random sizes (16 KiB to 1 MiB), then three
/// rounds of deleting a quarter of them at random and refilling to 80%. Reports each round's
/// refill throughput and the free-space score after it. Needs an engine that knows its capacity.
/// Fills use `queue_depth` writers; deletes are not timed.
pub fn run_aging(
    engine: &dyn BenchEngine,
    params: &Params,
    data: &[u8],
) -> Result<Measured, String> {
    const ROUNDS: usize = 3;
    if engine.fill_ratio().is_none() {
        return Err(format!(
            "the {} engine does not report its capacity",
            engine.name()
        ));
    }
    let start = Instant::now();
    let mut rng = SplitMix64::new(params.seed);
    let fill = AgingFill {
        engine,
        data,
        serial: AtomicU64::new(0),
        live: std::sync::Mutex::new(Vec::new()),
        histogram: std::sync::Mutex::new(latency_histogram()),
    };
    let (mut ops, mut bytes) = (0u64, 0u64);
    let mut rounds = Vec::new();
    for round in 0..=ROUNDS {
        if round > 0 {
            let mut live = fill.live.lock().expect("not poisoned");
            for _ in 0..live.len() / 4 {
                let index = rng.below(live.len() as u64) as usize;
                let victim = live.swap_remove(index);
                engine.remove(&victim)?;
            }
        }
        let round_start = Instant::now();
        let (round_ops, round_bytes) = fill.refill(params)?;
        ops += round_ops;
        bytes += round_bytes;
        rounds.push(AgingRound {
            bytes_per_sec: round_bytes as f64 / round_start.elapsed().as_secs_f64(),
            free_score: engine.free_score().unwrap_or(0.0),
        });
    }
    for name in fill.live.lock().expect("not poisoned").iter() {
        engine.remove(name)?;
    }
    Ok(Measured {
        ops,
        bytes,
        elapsed: start.elapsed(),
        histogram: fill.histogram.into_inner().expect("not poisoned"),
        rounds,
    })
}

/// Shared state of the aging writers.
struct AgingFill<'a> {
    engine: &'a dyn BenchEngine,
    data: &'a [u8],
    serial: AtomicU64,
    live: std::sync::Mutex<Vec<String>>,
    histogram: std::sync::Mutex<Histogram<u64>>,
}

impl AgingFill<'_> {
    /// Writes objects of random sizes from `queue_depth` threads until the store is 80% full.
    fn refill(&self, params: &Params) -> Result<(u64, u64), String> {
        const TARGET_FILL: f64 = 0.8;
        let outcomes: Vec<Result<(u64, u64), String>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..params.queue_depth)
                .map(|thread| {
                    scope.spawn(move || {
                        let mut rng = SplitMix64::new(params.seed ^ (thread as u64 + 1) << 32);
                        let (mut ops, mut bytes) = (0u64, 0u64);
                        while self.engine.fill_ratio().unwrap_or(1.0) < TARGET_FILL {
                            let size = (rng.below(253) + 4) * 4096;
                            let name =
                                format!("aging-{}", self.serial.fetch_add(1, Ordering::Relaxed));
                            let began = Instant::now();
                            self.engine.put(&name, &self.data[..size as usize])?;
                            record(
                                &mut self.histogram.lock().expect("not poisoned"),
                                began.elapsed(),
                            );
                            self.live.lock().expect("not poisoned").push(name);
                            ops += 1;
                            bytes += size;
                        }
                        Ok((ops, bytes))
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("worker panicked"))
                .collect()
        });
        outcomes
            .into_iter()
            .try_fold((0, 0), |(ops, bytes), outcome| {
                let (o, b) = outcome?;
                Ok((ops + o, bytes + b))
            })
    }
}
