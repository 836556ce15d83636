//! Online scrub: the checksums of live objects verified while the store serves clients.
//!
//! Each object is read the way a client read is (`store/read.rs`): a snapshot of its onode and
//! of the bytes memory holds, taken together under the object's slot lock and released before
//! any I/O, so a writer waits at most for that snapshot; space freed meanwhile stays allocated
//! until the read is done. Unlike a read, a scrub does not stop at the first bad chunk: every
//! chunk that fails is reported. A chunk that fails under an onode that changed since the
//! snapshot (an in-place overwrite landed) is read again from the newer one; only a failure
//! under an unchanged onode is reported. The pace is held to a byte budget per second.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::Store;
use crate::error::{Error, Result};
use crate::fsck::{BadChunk, ChunkProblem};
use crate::onode::read::{Mismatch, plan_read, verify_read};
use crate::txn::context::load_slot;
use crate::txn::engine::{Collection, Counters, EnginePending, display_bytes};

/// Bytes of an object verified per snapshot: a large object is scrubbed a piece at a time.
const PIECE_BYTES: u64 = 4 << 20;
/// Attempts at a piece whose object keeps changing under the scrub.
const PIECE_ATTEMPTS_MAX: u32 = 16;
/// Objects listed per KV scan.
const LIST_BATCH: usize = 256;

/// What to scrub, and how fast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrubOptions {
    /// One collection, or every collection.
    pub collection: Option<Vec<u8>>,
    /// Device bytes read per second at most (0: no limit).
    pub bytes_per_second: u64,
}

/// Default scrub pace: 16 MiB/s, a few percent of a small SSD's read bandwidth, so clients
/// barely notice it (see `docs/design.md`, "Scrub").
pub const SCRUB_BYTES_PER_SECOND_DEFAULT: u64 = 16 << 20;

impl Default for ScrubOptions {
    fn default() -> Self {
        ScrubOptions {
            collection: None,
            bytes_per_second: SCRUB_BYTES_PER_SECOND_DEFAULT,
        }
    }
}

/// What a scrub read and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrubReport {
    /// Objects scrubbed (objects removed while the scrub ran are not counted).
    pub objects: u64,
    /// Device bytes read and verified.
    pub bytes_read: u64,
    /// Every chunk that failed its checksum.
    pub bad_chunks: Vec<BadChunk>,
    /// How long it took.
    pub elapsed: Duration,
    /// It was asked to stop before it was done.
    pub stopped: bool,
}

impl Store {
    /// Verifies the checksums of every live object (of one collection, or all) while the
    /// store keeps serving, at most `options.bytes_per_second`. Bad chunks are reported, and
    /// counted in [`Store::counters`]; they are never repaired (a client read of one fails).
    pub fn scrub(&self, options: &ScrubOptions) -> Result<ScrubReport> {
        self.scrub_until(options, &AtomicBool::new(false))
    }

    /// Like [`Store::scrub`], ending early (within one piece of an object, or 50 ms of a
    /// pause) once `stop` is set: a daemon shutting down, or a scrub window closing.
    pub fn scrub_until(&self, options: &ScrubOptions, stop: &AtomicBool) -> Result<ScrubReport> {
        let started = Instant::now();
        let mut report = ScrubReport::default();
        let mut pace = Pace::new(options.bytes_per_second, stop);
        let collections = match &options.collection {
            Some(name) => vec![name.clone()],
            None => self.list_collections()?,
        };
        for name in collections {
            let collection = self.engine.collection(&name)?;
            let mut after: Option<Vec<u8>> = None;
            loop {
                let objects = self.list_objects(&name, after.as_deref(), LIST_BATCH)?;
                for object in &objects {
                    if pace.stopped() {
                        report.stopped = true;
                        report.elapsed = started.elapsed();
                        return Ok(report);
                    }
                    self.scrub_object(&collection, object, &mut pace, &mut report)?;
                }
                match objects.last() {
                    Some(last) if objects.len() == LIST_BATCH => after = Some(last.clone()),
                    _ => break,
                }
            }
        }
        report.elapsed = started.elapsed();
        Ok(report)
    }

    fn scrub_object(
        &self,
        collection: &Arc<Collection>,
        object: &[u8],
        pace: &mut Pace,
        report: &mut ScrubReport,
    ) -> Result<()> {
        let shown = format!("{}/{}", collection.display_name(), display_bytes(object));
        let mut offset = 0;
        loop {
            let Some((size, bytes, bad)) = self.scrub_piece(collection, object, offset)? else {
                return Ok(()); // removed while the scrub ran
            };
            Counters::add(&self.engine.counters.scrub_bytes_read, bytes);
            Counters::add(&self.engine.counters.scrub_bad_chunks, bad.len() as u64);
            report.bytes_read += bytes;
            report
                .bad_chunks
                .extend(bad.into_iter().map(|m| bad_chunk(&shown, m)));
            pace.spend(bytes);
            offset += PIECE_BYTES;
            if pace.stopped() {
                return Ok(());
            }
            if offset >= size {
                report.objects += 1;
                return Ok(());
            }
        }
    }

    /// Verifies `[offset, offset + PIECE_BYTES)` of the object: (object size, device bytes read,
    /// chunks that failed under an unchanged onode), or `None` if the object is gone.
    fn scrub_piece(
        &self,
        collection: &Arc<Collection>,
        object: &[u8],
        offset: u64,
    ) -> Result<Option<(u64, u64, Vec<Mismatch>)>> {
        let mut attempts = 0;
        loop {
            self.engine.check_poison()?;
            let _read = self.engine.reclaimer.begin_read(&self.engine.allocator);
            let slot = collection.onodes.slot(object);
            load_slot(&self.engine, collection, &slot, object)?;
            let (onode, plan) = {
                let state = slot.lock();
                let Some(onode) = state.onode.clone() else {
                    return Ok(None);
                };
                let plan = plan_read(&onode, offset, PIECE_BYTES, &EnginePending(&self.engine));
                (onode, plan)
            };
            let (bytes, bad) = verify_read(self.engine.device.as_ref(), &onode, plan)?;
            attempts += 1;
            if !bad.is_empty() && attempts < PIECE_ATTEMPTS_MAX {
                match self.newest_onode_in(collection, object) {
                    Ok((_, newest)) if !Arc::ptr_eq(&newest, &onode) => continue,
                    Err(Error::NotFound(_)) => return Ok(None),
                    _ => {}
                }
            }
            return Ok(Some((onode.size, bytes, bad)));
        }
    }
}

fn bad_chunk(object: &str, mismatch: Mismatch) -> BadChunk {
    BadChunk {
        object: object.to_string(),
        object_offset: mismatch.object_offset,
        device_offset: mismatch.device_offset,
        length: mismatch.length,
        problem: ChunkProblem::ChecksumMismatch {
            expected: mismatch.expected,
            actual: mismatch.actual,
        },
    }
}

/// Holds a reader to a byte budget per second, and tells it when to stop.
struct Pace<'a> {
    bytes_per_second: u64,
    started: Instant,
    spent: u64,
    stop: &'a AtomicBool,
}

/// Longest single sleep, so that a stop request is seen soon.
const PAUSE_SLICE: Duration = Duration::from_millis(50);

impl<'a> Pace<'a> {
    fn new(bytes_per_second: u64, stop: &'a AtomicBool) -> Pace<'a> {
        Pace {
            bytes_per_second,
            started: Instant::now(),
            spent: 0,
            stop,
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Counts `bytes` read and sleeps until the budget allows them (or a stop is asked).
    fn spend(&mut self, bytes: u64) {
        self.spent += bytes;
        if self.bytes_per_second == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.spent as f64 / self.bytes_per_second as f64);
        while let Some(ahead) = due.checked_sub(self.started.elapsed()) {
            if self.stopped() || ahead.is_zero() {
                return;
            }
            std::thread::sleep(ahead.min(PAUSE_SLICE));
        }
    }
}
