//! `bstool bench`: end-to-end benchmarks through the public API, compared in the same run with
//! fio on the same device and with the engines users would otherwise pick.
//!
//! With no arguments: a temporary 8 GiB file-backed store under /var/tmp (blocks allocated up
//! front, so the file system's first-write cost is not measured), the standard suite, a table,
//! and the store removed.

mod engine;
mod fio;
mod metrics;
mod osd;
mod report;
mod target;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bstore::device::AlignedBuf;
use bstore::{OpenOptions, Store};
use serde_json::json;

use crate::output::error_text;
use crate::size::parse_size;
use crate::{Cli, CmdResult};
use engine::{BenchEngine, BstoreEngine, FilesEngine, RocksEngine};
use report::Row;
use workload::{Params, Workload};

/// Which engine to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    /// bstore (the default).
    Bstore,
    /// Objects as 4 KiB block values in RocksDB (BlobDB, synced writes).
    Rocksdb,
    /// One file per object with fdatasync (FileStore-style).
    Files,
}

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Make a new store on this block device and benchmark it (refused if the device holds a
    /// file system, a partition table or a store, unless --force).
    #[arg(long)]
    device: Option<PathBuf>,
    /// With --device: overwrite whatever the device holds (DESTROYS IT).
    #[arg(long, requires = "device")]
    force: bool,
    /// Size of the temporary file-backed store.
    #[arg(long, value_parser = parse_size, default_value = "8G")]
    size: u64,
    /// Workloads to run (repeatable; default: the standard suite).
    #[arg(long, value_enum)]
    workload: Vec<Workload>,
    /// Seconds per timed workload.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Operations in flight (worker threads), and fio's iodepth.
    #[arg(long, default_value_t = 16)]
    queue_depth: usize,
    /// Worker threads (the same as the queue depth: each worker has one operation in flight).
    #[arg(long)]
    threads: Option<usize>,
    /// Collections bstore's objects are spread over (like a Ceph OSD's placement groups).
    #[arg(long, default_value_t = 16)]
    collections: usize,
    /// Bytes of 4 MiB objects the read and overwrite workloads use.
    #[arg(long, value_parser = parse_size, default_value = "1G")]
    dataset: u64,
    /// Engines to run, in order (repeatable; default: bstore).
    #[arg(long, value_enum)]
    engine: Vec<EngineKind>,
    /// Run fio with the same pattern on the same device right before each workload.
    #[arg(long)]
    compare_fio: bool,
    /// The commit journal of the store the benchmark makes: auto, a size, or none (a format-1
    /// store committing through RocksDB's log, for comparison).
    #[arg(long, value_parser = crate::cmd::mkfs::parse_journal_size, default_value = "auto")]
    journal_size: bstore::JournalSize,
    /// Deferred-write threshold for bstore (default: 64 KiB on rotational media, 0 otherwise).
    #[arg(long, value_parser = parse_size)]
    prefer_deferred_size: Option<u64>,
    /// Directory for temporary stores and the other engines' data.
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// Write every figure as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Print the table as Markdown (for the README).
    #[arg(long)]
    markdown: bool,
    /// Seed of the workloads' random choices (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Scrub bstore's objects (at the default scrub pace) beside every timed workload, to see
    /// what an online scrub costs clients.
    #[arg(long)]
    scrub: bool,
}

/// Runs the benchmark.
pub fn run(cli: &Cli, args: &Args) -> CmdResult {
    let workloads = if args.workload.is_empty() {
        workload::STANDARD_SUITE.to_vec()
    } else {
        args.workload.clone()
    };
    let engines = if args.engine.is_empty() {
        vec![EngineKind::Bstore]
    } else {
        args.engine.clone()
    };
    let queue_depth = args.threads.unwrap_or(args.queue_depth).max(1);
    let seed = args.seed.unwrap_or_else(bstore::rng::test_seed);
    let target = target::prepare(
        cli.path.as_deref(),
        args.device.as_deref().map(|device| (device, args.force)),
        args.size,
        args.journal_size,
        &args.dir,
    )?;
    let params = Params {
        duration: Duration::from_secs(args.duration),
        queue_depth,
        dataset_objects: (args.dataset / workload::OBJECT_SIZE).max(1),
        seed,
        progress: true,
    };
    // Aligned, so that whole-object writes hand this very buffer to the device.
    let data: Arc<AlignedBuf> = {
        let mut rng = bstore::rng::SplitMix64::new(seed);
        let bytes: Vec<u8> = (0..workload::OBJECT_SIZE)
            .map(|_| rng.next_u64() as u8)
            .collect();
        Arc::new(AlignedBuf::copy_from(&bytes))
    };
    let fio_ready = args.compare_fio && fio::available();
    if args.compare_fio && !fio_ready {
        crate::output::warn("fio is not installed; running without the fio comparison");
    }
    let mut rows = Vec::new();
    let mut environment = json!({"target": target.description, "queue_depth": queue_depth, "seed": seed,
        "duration_secs": args.duration, "dataset_bytes": args.dataset});
    for kind in &engines {
        let engine = open_engine(*kind, &target, args)?;
        if let Some(store) = engine.store() {
            environment["device"] = device_json(store);
        }
        let fio_job =
            (fio_ready && engine.store().is_some()).then(|| fio_setup(&target, args, queue_depth));
        let suite = Suite {
            engine: engine.as_ref(),
            params: &params,
            data: &data,
            fio: fio_job,
            scrub: args.scrub,
        };
        rows.extend(suite.run(&workloads)?);
        engine.close()?;
    }
    print_report(&rows, &environment, args)?;
    Ok(ExitCode::SUCCESS)
}

fn open_engine(
    kind: EngineKind,
    target: &target::Target,
    args: &Args,
) -> Result<Box<dyn BenchEngine>, String> {
    Ok(match kind {
        EngineKind::Bstore => {
            let options = OpenOptions::default()
                .with_prefer_deferred_size(args.prefer_deferred_size.map(|s| s as u32));
            let store = Store::open(&target.store_dir, &options).map_err(error_text)?;
            Box::new(BstoreEngine::new(store, args.collections)?)
        }
        EngineKind::Rocksdb => {
            Box::new(RocksEngine::create(&target.scratch.path().join("rocksdb"))?)
        }
        EngineKind::Files => Box::new(FilesEngine::create(&target.scratch.path().join("files"))?),
    })
}

fn device_json(store: &Store) -> serde_json::Value {
    let info = store.device_info();
    json!({
        "path": info.path.display().to_string(),
        "kind": format!("{:?}", info.kind),
        "size_bytes": info.size_bytes,
        "logical_block_size": info.logical_block_size,
        "rotational": info.rotational,
        "prefer_deferred_size": store.prefer_deferred_size(),
        "min_alloc_size": store.label().min_alloc_size,
    })
}

/// Where fio may write: the device, and how much of it fio uses. The region itself is chosen
/// right before each fio run, from the space the store has free at that moment.
#[derive(Debug, Clone)]
struct FioSetup {
    template: fio::FioJob,
}

fn fio_setup(target: &target::Target, args: &Args, queue_depth: usize) -> FioSetup {
    FioSetup {
        template: fio::FioJob {
            pattern: "write",
            block_size: 4 << 20,
            queue_depth,
            runtime_secs: args.duration,
            filename: target.block.clone(),
            offset: 0,
            size: args.dataset.max(4 << 20),
            sync_each_write: false,
        },
    }
}

/// The last `size` bytes (4 MiB aligned) of the largest free extent: space the store does not
/// use now and, allocating forward from its cursor, is least likely to reach soon. fio runs
/// only while the store is idle, and what it leaves in free space is never read by the store.
fn fio_region(store: &Store, wanted: u64) -> Option<(u64, u64)> {
    const ALIGN: u64 = 4 << 20;
    let largest = store.free_extents().into_iter().max_by_key(|e| e.length)?;
    let end = largest.end() / ALIGN * ALIGN;
    let start = largest.offset.next_multiple_of(ALIGN);
    let size = (end.saturating_sub(start) / 2 / ALIGN * ALIGN).min(wanted / ALIGN * ALIGN);
    (size >= ALIGN).then(|| (end - size, size))
}

/// One engine's run of the workloads.
struct Suite<'a> {
    engine: &'a dyn BenchEngine,
    params: &'a Params,
    data: &'a Arc<AlignedBuf>,
    fio: Option<FioSetup>,
    /// Scrub beside each timed workload.
    scrub: bool,
}

impl Suite<'_> {
    fn run(&self, workloads: &[Workload]) -> Result<Vec<Row>, String> {
        let mut rows = Vec::new();
        let mut dataset_ready = false;
        for workload in workloads {
            if (workload.needs_dataset() || *workload == Workload::SeqWrite) && !dataset_ready {
                workload::create_dataset(self.engine, self.params, self.data)?;
                dataset_ready = true;
            }
            if *workload == Workload::OsdBench
                && let Some(prepared) = self.engine.prepare_osd_bench(self.data)
            {
                prepared?;
            }
            let fio = self.compare_with_fio(*workload)?;
            rows.push(self.measure(*workload, fio));
            if *workload == Workload::OsdBench {
                self.engine.clean_up_osd_bench()?;
            }
        }
        Ok(rows)
    }

    fn compare_with_fio(&self, workload: Workload) -> Result<Option<fio::FioResult>, String> {
        let (Some(setup), Some((pattern, block_size)), Some(store)) =
            (&self.fio, workload.fio_pattern(), self.engine.store())
        else {
            return Ok(None);
        };
        let Some((offset, size)) = fio_region(store, setup.template.size) else {
            return Ok(None);
        };
        let (queue_depth, sync_each_write) = workload.fio_shape();
        let job = fio::FioJob {
            pattern,
            block_size,
            offset,
            size,
            queue_depth: queue_depth.unwrap_or(setup.template.queue_depth),
            sync_each_write,
            ..setup.template.clone()
        };
        if pattern.contains("read") {
            prefill_fio_region(&job)?;
        }
        fio::run(&job).map(Some)
    }

    fn measure(&self, workload: Workload, fio: Option<fio::FioResult>) -> Row {
        let cpu_before = metrics::cpu_seconds();
        let bytes_before = self.engine.bytes();
        let allocated = || {
            let store = self.engine.store()?;
            store.statfs().ok().map(|s| s.allocated_bytes as i64)
        };
        let allocated_before = allocated();
        let (outcome, scrub) = self.beside_scrub(|| match workload {
            Workload::Aging => workload::run_aging(self.engine, self.params, self.data),
            Workload::OsdBench => self.engine.osd_bench(self.params.seed).unwrap_or_else(|| {
                Err(format!(
                    "the {} engine has no osd-bench",
                    self.engine.name()
                ))
            }),
            _ => workload::run(self.engine, workload, self.params, self.data),
        });
        let cpu = metrics::cpu_seconds() - cpu_before;
        let bytes_after = self.engine.bytes();
        let mut row = Row {
            workload: workload.name(),
            engine: self.engine.name(),
            ops: 0,
            seconds: 0.0,
            user_bytes: 0,
            writes: !matches!(workload, Workload::SeqRead | Workload::RandRead),
            latency: metrics::Latency::default(),
            cpu_us_per_op: 0.0,
            data_bytes: bytes_after.data - bytes_before.data,
            metadata_bytes: bytes_after.metadata - bytes_before.metadata,
            transactions_per_sync: None,
            peak_rss_mib: metrics::peak_rss_mib(),
            free_score: self.engine.free_score(),
            fio,
            rounds: Vec::new(),
            skipped: None,
            allocated_bytes: allocated().zip(allocated_before).map(|(a, b)| a - b),
            scrub,
        };
        match outcome {
            Err(reason) => row.skipped = Some(reason),
            Ok(measured) => {
                row.ops = measured.ops;
                row.seconds = measured.elapsed.as_secs_f64();
                row.user_bytes = measured.bytes;
                row.latency = metrics::Latency::of(&measured.histogram);
                row.cpu_us_per_op = cpu * 1e6 / measured.ops.max(1) as f64;
                row.rounds = measured.rounds;
                let syncs = bytes_after.group_commits - bytes_before.group_commits;
                let transactions = bytes_after.transactions - bytes_before.transactions;
                row.transactions_per_sync = (syncs > 0).then(|| transactions as f64 / syncs as f64);
            }
        }
        row
    }
}

impl Suite<'_> {
    /// Runs `work`, with scrubs of the whole store going on beside it when asked (bstore
    /// only), and says what they verified meanwhile.
    fn beside_scrub<T>(&self, work: impl FnOnce() -> T) -> (T, Option<report::ScrubTotals>) {
        let (true, Some(store)) = (self.scrub, self.engine.store()) else {
            return (work(), None);
        };
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let options = bstore::ScrubOptions::default();
                    if let Err(error) = store.scrub_until(&options, &done) {
                        crate::output::warn(&format!(
                            "scrub beside the workload: {}",
                            error_text(error)
                        ));
                        return;
                    }
                }
            });
            let before = store.counters();
            let result = work();
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            let after = store.counters();
            let totals = report::ScrubTotals {
                bytes_read: after.scrub_bytes_read - before.scrub_bytes_read,
                bad_chunks: after.scrub_bad_chunks - before.scrub_bad_chunks,
            };
            crate::output::warn(&format!(
                "scrub beside the workload: {} bytes verified, {} bad chunks",
                totals.bytes_read, totals.bad_chunks
            ));
            (result, Some(totals))
        })
    }
}

/// Writes the fio region once, so fio's reads read written blocks.
fn prefill_fio_region(job: &fio::FioJob) -> Result<(), String> {
    let status = std::process::Command::new("fio")
        .arg("--name=bstool-prefill")
        .arg(format!("--filename={}", job.filename.display()))
        .arg(format!("--offset={}", job.offset))
        .arg(format!("--size={}", job.size))
        .args([
            "--rw=write",
            "--bs=4M",
            "--iodepth=8",
            "--ioengine=io_uring",
            "--direct=1",
        ])
        .output()
        .map_err(|e| format!("running fio: {}", error_text(e)))?;
    if !status.status.success() {
        return Err(format!(
            "fio prefill failed: {}",
            String::from_utf8_lossy(&status.stderr).trim()
        ));
    }
    Ok(())
}

fn print_report(rows: &[Row], environment: &serde_json::Value, args: &Args) -> Result<(), String> {
    let mut out = crate::output::Out::new();
    if args.markdown {
        out.bytes(report::markdown_table(rows).as_bytes())?;
    } else {
        out.line(&crate::output::pretty(environment))?;
        out.bytes(report::text_table(rows).as_bytes())?;
    }
    out.bytes(report::aging_lines(rows).as_bytes())?;
    out.flush()?;
    if let Some(path) = &args.json {
        let value = json!({
            "environment": environment,
            "results": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
        });
        std::fs::write(path, crate::output::pretty(&value))
            .map_err(|e| format!("writing {}: {}", path.display(), error_text(e)))?;
    }
    Ok(())
}
