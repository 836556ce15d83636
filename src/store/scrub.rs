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
#[non_exhaustive]
pub struct ScrubOptions {
    /// One collection, or every collection.
    pub collection: Option<Vec<u8>>,
    /// Device bytes read per second at most (0: no limit).
    pub bytes_per_second: u64,
}

/// Built from the defaults, field by field (the struct may grow: no literals outside this
/// crate).
impl ScrubOptions {
    /// Sets `collection`.
    pub fn with_collection(mut self, collection: Option<Vec<u8>>) -> Self {
        self.collection = collection;
        self
    }

    /// Sets `bytes_per_second`.
    pub fn with_bytes_per_second(mut self, bytes_per_second: u64) -> Self {
        self.bytes_per_second = bytes_per_second;
        self
    }
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
#[non_exhaustive]
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
    /// Pieces of objects that were overwritten under every attempt to verify them: not
    /// verified this time (and never reported as bad).
    pub pieces_busy: u64,
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
            let (size, bytes) = match self.scrub_piece(collection, object, offset)? {
                Piece::Gone => return Ok(()), // removed while the scrub ran
                Piece::Verified { size, bytes, bad } => {
                    Counters::add(&self.engine.counters.scrub_bad_chunks, bad.len() as u64);
                    let bad = bad.into_iter().map(|m| bad_chunk(&shown, m));
                    report.bad_chunks.extend(bad);
                    (size, bytes)
                }
                Piece::Busy { size, bytes } => {
                    report.pieces_busy += 1;
                    (size, bytes)
                }
                Piece::Unreadable(unreadable) => {
                    Counters::add(&self.engine.counters.scrub_bad_chunks, 1);
                    let size = unreadable.size;
                    report.bad_chunks.push(unreadable.finding(&shown, offset));
                    (size, 0)
                }
            };
            Counters::add(&self.engine.counters.scrub_bytes_read, bytes);
            report.bytes_read += bytes;
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

    /// Verifies `[offset, offset + PIECE_BYTES)` of the object.
    fn scrub_piece(
        &self,
        collection: &Arc<Collection>,
        object: &[u8],
        offset: u64,
    ) -> Result<Piece> {
        let mut bytes = 0;
        for _ in 0..PIECE_ATTEMPTS_MAX {
            self.engine.check_poison()?;
            let _read = self.engine.reclaimer.begin_read(&self.engine.allocator);
            let slot = collection.onodes.slot(object);
            load_slot(&self.engine, collection, &slot, object)?;
            let (onode, plan) = {
                let state = slot.lock();
                let Some(onode) = state.onode.clone() else {
                    return Ok(Piece::Gone);
                };
                let plan = plan_read(&onode, offset, PIECE_BYTES, &EnginePending(&self.engine));
                (onode, plan)
            };
            let device_offset = plan.first_device_offset();
            let (read, bad) = match verify_read(self.engine.device.as_ref(), &onode, plan) {
                Ok(verified) => verified,
                Err(error) => {
                    return Ok(Piece::Unreadable(Unreadable {
                        size: onode.size,
                        length: PIECE_BYTES.min(onode.size.saturating_sub(offset)),
                        device_offset: device_offset.unwrap_or_default(),
                        error: error.to_string(),
                    }));
                }
            };
            bytes += read;
            if bad.is_empty() {
                return Ok(Piece::Verified {
                    size: onode.size,
                    bytes,
                    bad,
                });
            }
            match self.newest_onode_in(collection, object) {
                // Changed since the snapshot: the bytes may be newer than its checksums.
                Ok((_, newest)) if !Arc::ptr_eq(&newest, &onode) => continue,
                Err(Error::NotFound(_)) => return Ok(Piece::Gone),
                _ => {
                    return Ok(Piece::Verified {
                        size: onode.size,
                        bytes,
                        bad,
                    });
                }
            }
        }
        // Overwritten under every attempt: not verified this time, never reported as bad.
        let size = self
            .newest_onode_in(collection, object)
            .map_or(0, |(_, onode)| onode.size);
        Ok(Piece::Busy { size, bytes })
    }
}

/// What scrubbing one piece of an object came to.
enum Piece {
    /// The object is gone.
    Gone,
    /// Verified under an unchanged onode; `bad` failed their checksums.
    Verified {
        size: u64,
        bytes: u64,
        bad: Vec<Mismatch>,
    },
    /// The object changed under every attempt: not verified.
    Busy { size: u64, bytes: u64 },
    /// The device failed the read.
    Unreadable(Unreadable),
}

/// A piece the device would not read.
struct Unreadable {
    size: u64,
    length: u64,
    device_offset: u64,
    error: String,
}

impl Unreadable {
    fn finding(self, object: &str, object_offset: u64) -> BadChunk {
        BadChunk {
            object: object.to_string(),
            object_offset,
            device_offset: self.device_offset,
            length: self.length,
            problem: ChunkProblem::ReadFailed(self.error),
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
