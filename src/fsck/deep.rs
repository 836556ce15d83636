//! Deep fsck: every byte an object references is read back and every checksum chunk verified.
//!
//! Reads are planned object by object (the chunks its extents cover, each once), gathered into
//! batches, sorted by device offset and merged where they touch, so the device sees large reads
//! at queue depth rather than one chunk at a time. Deferred writes not yet applied are patched
//! over what the device returns before the checks, as a mount would apply them first. A chunk of
//! a shared blob is verified once, however many clones reference it. A chunk that fails is
//! reported with its object, object offset, device offset and length; a batch the device
//! refuses is read again run by run (each run belongs to one object), so one bad sector names
//! its own object and no others.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::device::{AlignedBuf, BlockDevice, IoRequest};
use crate::error::Result;
use crate::format::deferred::DeferredRecord;
use crate::format::keys::{self, KeySpace};
use crate::format::onode::{Blob, CsumType};
use crate::format::records::Superblock;
use crate::kv::Kv;
use crate::onode::read::PendingBytes;
use crate::onode::{Onode, Piece};

use super::{FsckProgress, FsckReport};

/// Bytes read per batch: enough requests to keep a deep queue busy. Up to `2 * READERS + 2`
/// batches are in memory at a time (planned, being read, waiting, being verified).
const BATCH_BYTES: u64 = 16 << 20;
/// Threads reading batches: two, so one's batch is at full queue depth while the other's last
/// reads drain.
const READERS: usize = 2;
/// Largest single read after merging neighbours.
const MERGED_READ_BYTES: u64 = 4 << 20;
/// Bytes of verified batches' buffers kept for the next batches' reads.
const POOLED_BYTES_MAX: usize = 4 * (BATCH_BYTES + MERGED_READ_BYTES) as usize;

/// What a deep fsck read and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeepReport {
    /// Device bytes read.
    pub bytes_read: u64,
    /// Checksum chunks verified (chunks of blobs without checksums are read, not counted).
    pub chunks_verified: u64,
    /// Reads issued to the device after merging.
    pub reads: u64,
    /// Wall-clock time of the data pass.
    pub elapsed: Duration,
    /// Every chunk that failed.
    pub bad_chunks: Vec<BadChunk>,
}

impl DeepReport {
    /// Read speed of the data pass in bytes per second.
    pub fn bytes_per_second(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.bytes_read as f64 / seconds
        } else {
            0.0
        }
    }
}

/// One chunk of object data that could not be verified.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BadChunk {
    /// `collection/object`, escaped.
    pub object: String,
    /// Offset of the chunk within the object.
    pub object_offset: u64,
    /// Offset of the chunk on the data device.
    pub device_offset: u64,
    /// Bytes of the chunk.
    pub length: u64,
    /// What was wrong.
    pub problem: ChunkProblem,
}

/// Why a chunk failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkProblem {
    /// The bytes read do not match the checksum the object's metadata records.
    ChecksumMismatch {
        /// crc32c recorded in the blob.
        expected: u32,
        /// crc32c of the bytes read.
        actual: u32,
    },
    /// The device failed the read.
    ReadFailed(String),
}

impl std::fmt::Display for BadChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} offset {} ({} bytes at device {:#x}): ",
            self.object, self.object_offset, self.length, self.device_offset
        )?;
        match &self.problem {
            ChunkProblem::ChecksumMismatch { expected, actual } => {
                write!(f, "crc32c {actual:#010x}, expected {expected:#010x}")
            }
            ChunkProblem::ReadFailed(error) => write!(f, "read failed: {error}"),
        }
    }
}

/// Reads and verifies the data of every object in `kv`.
///
/// Three stages overlap: this thread decodes onodes into batches of chunk runs, reader threads
/// read the batches (and patch in pending deferred writes), and this thread verifies finished
/// batches while the readers work on the next, so the device is not left idle while checksums
/// are computed. Batches finish in any order; bad chunks are sorted at the end.
pub fn check_data(
    device: &dyn BlockDevice,
    kv: &dyn Kv,
    superblock: &Superblock,
    collections: &BTreeMap<u64, Vec<u8>>,
    bytes_total: u64,
    progress: &mut dyn FnMut(FsckProgress),
) -> Result<DeepReport> {
    let started = Instant::now();
    let pending = PendingWrites::load(kv)?;
    let pool = BufferPool::default();
    let (to_reader, batches) = crossbeam::channel::bounded::<Vec<ChunkRun>>(1);
    let (done, from_reader) = crossbeam::channel::bounded::<ReadBatch>(1);
    let mut report = std::thread::scope(|scope| {
        for _ in 0..READERS {
            let (pending, pool) = (&pending, &pool);
            let (batches, done) = (batches.clone(), done.clone());
            scope.spawn(move || {
                for runs in batches {
                    if done.send(read_batch(device, pending, pool, runs)).is_err() {
                        return;
                    }
                }
            });
        }
        drop((batches, done));
        let mut pass = DataPass {
            to_reader,
            from_reader,
            pool: &pool,
            in_flight: 0,
            batch: Vec::new(),
            batch_bytes: 0,
            shared_seen: HashSet::new(),
            report: DeepReport::default(),
            bytes_total,
            device_end: device.info().size_bytes,
            progress,
        };
        let scanned = kv.scan(KeySpace::Onodes, &[], None, &mut |key, value| {
            // Undecodable onodes were reported by the shallow pass; their data cannot be found.
            let Ok((collection_id, name)) = keys::split_onode_key(key) else {
                return Ok(true);
            };
            let Ok(onode) = Onode::decode(kv, value, superblock.min_alloc_size) else {
                return Ok(true);
            };
            let object: Arc<str> = super::object_name(collections, collection_id, name).into();
            pass.plan_object(&onode, &object);
            if pass.batch_bytes >= BATCH_BYTES {
                pass.submit_batch();
            }
            Ok(true)
        });
        pass.submit_batch();
        pass.finish();
        // Closing the channel ends the reader before the scope waits for it.
        drop(pass.to_reader);
        scanned.map(|()| pass.report)
    })?;
    report
        .bad_chunks
        .sort_by(|a, b| (&a.object, a.object_offset).cmp(&(&b.object, b.object_offset)));
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Adds the deep pass's findings to the report's errors.
pub fn report_bad_chunks(deep: &DeepReport, report: &mut FsckReport) {
    for bad in &deep.bad_chunks {
        let check = match bad.problem {
            ChunkProblem::ChecksumMismatch { .. } => "data.checksum",
            ChunkProblem::ReadFailed(_) => "data.read",
        };
        report.error(check, bad.to_string());
    }
}

/// Consecutive chunks of one blob, to be read and verified together.
#[derive(Debug)]
struct ChunkRun {
    object: Arc<str>,
    /// Object offset of the first chunk.
    logical_offset: u64,
    device_offset: u64,
    chunk_bytes: u32,
    /// One expected crc32c per chunk; empty when the blob has no checksums.
    expected: Vec<u32>,
    chunks: u32,
}

impl ChunkRun {
    fn length(&self) -> u64 {
        u64::from(self.chunk_bytes) * u64::from(self.chunks)
    }
}

struct DataPass<'a> {
    to_reader: crossbeam::channel::Sender<Vec<ChunkRun>>,
    from_reader: crossbeam::channel::Receiver<ReadBatch>,
    /// Where verified batches' buffers go back for the readers to reuse.
    pool: &'a BufferPool,
    /// Batches handed to the reader and not yet verified.
    in_flight: usize,
    batch: Vec<ChunkRun>,
    batch_bytes: u64,
    /// Device offsets of shared-blob chunks already planned (shared blobs never change).
    shared_seen: HashSet<u64>,
    report: DeepReport,
    bytes_total: u64,
    device_end: u64,
    progress: &'a mut dyn FnMut(FsckProgress),
}

impl DataPass<'_> {
    /// Queues every chunk `onode`'s extents reference, each once.
    fn plan_object(&mut self, onode: &Onode, object: &Arc<str>) {
        let mut seen: HashSet<(u32, u64)> = HashSet::new();
        for piece in onode.extent_map.pieces(0, onode.size) {
            let Piece::Data {
                logical_offset,
                length,
                blob: id,
                blob_offset,
            } = piece
            else {
                continue;
            };
            let blob = onode.extent_map.blob(id);
            let chunk = u64::from(blob.csum_chunk());
            let first = u64::from(blob_offset) / chunk;
            let end = (u64::from(blob_offset) + length).div_ceil(chunk);
            // A clone may map a blob at an object offset below the blob's start.
            let blob_logical = logical_offset.saturating_sub(u64::from(blob_offset));
            let mut run: Option<ChunkRun> = None;
            for index in first..end {
                let device_offset = blob.device_offset + index * chunk;
                let fresh = if blob.shared_blob_id.is_some() {
                    self.shared_seen.insert(device_offset)
                } else {
                    seen.insert((id, index))
                };
                if !fresh || blob.chunk_unused(index) {
                    self.close_run(run.take());
                    continue;
                }
                match &mut run {
                    Some(open) => {
                        open.chunks += 1;
                        open.expected.extend(expected_crc(blob, index));
                    }
                    None => {
                        run = Some(ChunkRun {
                            object: object.clone(),
                            logical_offset: blob_logical + index * chunk,
                            device_offset,
                            chunk_bytes: chunk as u32,
                            expected: expected_crc(blob, index).into_iter().collect(),
                            chunks: 1,
                        })
                    }
                }
            }
            self.close_run(run);
        }
    }

    /// Queues `run`, less any chunks past the end of the device: the shallow checks name the
    /// objects that lost them (`onode.beyond_device`), once each rather than once per chunk.
    fn close_run(&mut self, run: Option<ChunkRun>) {
        let Some(mut run) = run else {
            return;
        };
        let within = self.device_end.saturating_sub(run.device_offset) / u64::from(run.chunk_bytes);
        if within < u64::from(run.chunks) {
            run.chunks = within as u32;
            run.expected.truncate(within as usize);
        }
        if run.chunks > 0 {
            self.batch_bytes += run.length();
            self.batch.push(run);
        }
    }

    /// Hands the queued runs to the readers, then verifies a batch they finished: each reader
    /// always has a batch to read.
    fn submit_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        self.batch_bytes = 0;
        let runs = std::mem::take(&mut self.batch);
        if self.to_reader.send(runs).is_ok() {
            self.in_flight += 1;
        }
        if self.in_flight > READERS {
            self.verify_next();
        }
    }

    /// Verifies every batch still with the reader.
    fn finish(&mut self) {
        while self.in_flight > 0 {
            self.verify_next();
        }
    }

    fn verify_next(&mut self) {
        self.in_flight -= 1;
        let Ok(batch) = self.from_reader.recv() else {
            return; // the reader is gone: nothing more will arrive
        };
        self.report.reads += batch.reads.len() as u64;
        for (read, buffer) in batch.reads.iter().zip(&batch.buffers) {
            for run in &batch.runs[read.runs.clone()] {
                let start = (run.device_offset - read.device_offset) as usize;
                let bytes = buffer
                    .as_ref()
                    .map(|buffer| &buffer[start..start + run.length() as usize]);
                self.verify_run(run, bytes);
            }
            self.report.bytes_read += read.length;
        }
        self.pool.give_back(batch.buffers.into_iter().flatten());
        (self.progress)(FsckProgress {
            bytes_read: self.report.bytes_read,
            bytes_total: self.bytes_total,
        });
    }

    fn verify_run(&mut self, run: &ChunkRun, bytes: std::result::Result<&[u8], &String>) {
        let chunk = run.chunk_bytes as usize;
        let bad = |index: usize, problem| BadChunk {
            object: run.object.to_string(),
            object_offset: run.logical_offset + (index * chunk) as u64,
            device_offset: run.device_offset + (index * chunk) as u64,
            length: chunk as u64,
            problem,
        };
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(error) => {
                let failed = (0..run.chunks as usize)
                    .map(|index| bad(index, ChunkProblem::ReadFailed(error.clone())));
                self.report.bad_chunks.extend(failed);
                return;
            }
        };
        if run.expected.is_empty() {
            return;
        }
        for (index, (bytes, expected)) in bytes.chunks_exact(chunk).zip(&run.expected).enumerate() {
            self.report.chunks_verified += 1;
            let actual = crate::csum::chunk_crc(bytes);
            if actual != *expected {
                let problem = ChunkProblem::ChecksumMismatch {
                    expected: *expected,
                    actual,
                };
                self.report.bad_chunks.push(bad(index, problem));
            }
        }
    }
}

/// A batch of runs, sorted by device offset, with the reads that served them.
struct ReadBatch {
    runs: Vec<ChunkRun>,
    reads: Vec<MergedRead>,
    /// The bytes of each read (deferred writes patched in), or why the device refused it.
    buffers: Vec<std::result::Result<AlignedBuf, String>>,
}

/// Sorts `runs`, merges neighbours into reads, and reads them at the device's queue depth.
fn read_batch(
    device: &dyn BlockDevice,
    pending: &PendingWrites,
    pool: &BufferPool,
    mut runs: Vec<ChunkRun>,
) -> ReadBatch {
    runs.sort_by_key(|run| run.device_offset);
    let mut reads = merge_reads(&runs);
    let requests = reads
        .iter()
        .map(|read| IoRequest::read_into(read.device_offset, pool.take(read.length as usize)))
        .collect();
    let results: Vec<_> = match device.run(requests) {
        Ok(done) => done
            .into_iter()
            .map(|request| Ok(request.buf.into_owned()))
            .collect(),
        // Find which runs fail, one by one: a merged read spans runs of several objects, and
        // a bad sector must name only the object whose run holds it.
        Err(_) => {
            reads = one_read_per_run(&runs);
            reads
                .iter()
                .map(|read| {
                    device
                        .read_at(read.device_offset, read.length as usize)
                        .map_err(|error| error.to_string())
                })
                .collect()
        }
    };
    let buffers = reads
        .iter()
        .zip(results)
        .map(|(read, result)| {
            result.map(|mut buf| {
                pending.patch(read.device_offset, &mut buf);
                buf
            })
        })
        .collect();
    ReadBatch {
        runs,
        reads,
        buffers,
    }
}

/// Read buffers of verified batches, by length, for the next batches to read into: a deep fsck
/// reads the whole store, and allocating (and zeroing) every read's buffer afresh cost a fifth
/// of its CPU, which on a small machine is taken from the device's own kernel threads.
#[derive(Default)]
struct BufferPool {
    free: parking_lot::Mutex<PooledBuffers>,
}

#[derive(Default)]
struct PooledBuffers {
    by_length: HashMap<usize, Vec<AlignedBuf>>,
    bytes: usize,
}

impl BufferPool {
    /// A buffer of `length` bytes: a pooled one, or a new one.
    fn take(&self, length: usize) -> AlignedBuf {
        let mut free = self.free.lock();
        match free.by_length.get_mut(&length).and_then(Vec::pop) {
            Some(buf) => {
                free.bytes -= length;
                buf
            }
            None => AlignedBuf::zeroed(length),
        }
    }

    /// Keeps `buffers` for reuse, up to [`POOLED_BYTES_MAX`]: room for one is made by freeing
    /// pooled buffers of other lengths, so lengths the reads have moved on from give way to the
    /// ones they use now.
    fn give_back(&self, buffers: impl IntoIterator<Item = AlignedBuf>) {
        let mut free = self.free.lock();
        for buf in buffers {
            let length = buf.len();
            while free.bytes + length > POOLED_BYTES_MAX && free.evict_other_than(length) {}
            if free.bytes + length <= POOLED_BYTES_MAX {
                free.bytes += length;
                free.by_length.entry(length).or_default().push(buf);
            }
        }
    }
}

impl PooledBuffers {
    /// Frees one pooled buffer of a length other than `length`; false when there is none.
    fn evict_other_than(&mut self, length: usize) -> bool {
        let Some(victim) = self
            .by_length
            .keys()
            .copied()
            .find(|other| *other != length)
        else {
            return false;
        };
        let buffers = self.by_length.entry(victim).or_default();
        if let Some(buf) = buffers.pop() {
            self.bytes -= buf.len();
        }
        if buffers.is_empty() {
            self.by_length.remove(&victim);
        }
        true
    }
}

/// One device read serving `runs` (a range of the sorted batch).
struct MergedRead {
    device_offset: u64,
    length: u64,
    runs: std::ops::Range<usize>,
}

/// One read for each run.
fn one_read_per_run(runs: &[ChunkRun]) -> Vec<MergedRead> {
    runs.iter()
        .enumerate()
        .map(|(index, run)| MergedRead {
            device_offset: run.device_offset,
            length: run.length(),
            runs: index..index + 1,
        })
        .collect()
}

/// Groups sorted `runs` into reads: neighbours on the device share one read, up to
/// [`MERGED_READ_BYTES`].
fn merge_reads(runs: &[ChunkRun]) -> Vec<MergedRead> {
    let mut reads: Vec<MergedRead> = Vec::new();
    for (index, run) in runs.iter().enumerate() {
        match reads.last_mut() {
            Some(read)
                if read.device_offset + read.length == run.device_offset
                    && read.length + run.length() <= MERGED_READ_BYTES =>
            {
                read.length += run.length();
                read.runs.end = index + 1;
            }
            _ => reads.push(MergedRead {
                device_offset: run.device_offset,
                length: run.length(),
                runs: index..index + 1,
            }),
        }
    }
    reads
}

fn expected_crc(blob: &Blob, index: u64) -> Option<u32> {
    match blob.csum_type {
        CsumType::None => None,
        _ => blob.csums.get(index as usize).copied(),
    }
}

/// Deferred writes committed but not yet applied: the device is older than the metadata there.
#[derive(Debug, Default)]
pub(crate) struct PendingWrites {
    /// `(device_offset, order, data)`, sorted by offset; `order` is the order of application.
    writes: Vec<(u64, usize, Vec<u8>)>,
    longest: u64,
}

impl PendingWrites {
    /// Every decodable deferred record, in the order a mount applies them (key order).
    pub(crate) fn load(kv: &dyn Kv) -> Result<PendingWrites> {
        let mut pending = PendingWrites::default();
        kv.scan(KeySpace::Deferred, &[], None, &mut |_, value| {
            // Undecodable records were reported by the shallow pass.
            if let Ok(record) = DeferredRecord::decode(value) {
                for write in record.writes {
                    let order = pending.writes.len();
                    pending.longest = pending.longest.max(write.data.len() as u64);
                    pending
                        .writes
                        .push((write.device_offset, order, write.data));
                }
            }
            Ok(true)
        })?;
        pending
            .writes
            .sort_by_key(|(offset, order, _)| (*offset, *order));
        Ok(pending)
    }

    /// The pending writes overlapping `[device_offset, end)`, by device offset.
    fn overlapping(&self, device_offset: u64, end: u64) -> Vec<&(u64, usize, Vec<u8>)> {
        let from = self
            .writes
            .partition_point(|(offset, _, _)| *offset + self.longest <= device_offset);
        self.writes[from..]
            .iter()
            .take_while(|(offset, _, _)| *offset < end)
            .filter(|(offset, _, data)| offset + data.len() as u64 > device_offset)
            .collect()
    }

    /// Applies every pending write over `bytes` (read at `device_offset`), in order.
    fn patch(&self, device_offset: u64, bytes: &mut [u8]) {
        let end = device_offset + bytes.len() as u64;
        let mut hits = self.overlapping(device_offset, end);
        hits.sort_by_key(|(_, order, _)| *order);
        for (offset, _, data) in hits {
            let start = (*offset).max(device_offset);
            let stop = (offset + data.len() as u64).min(end);
            bytes[(start - device_offset) as usize..(stop - device_offset) as usize]
                .copy_from_slice(&data[(start - offset) as usize..(stop - offset) as usize]);
        }
    }
}

/// The pending writes as a reader's layer over the device (an export reading a KV snapshot's
/// commit point): a range is served from them only when they cover all of it.
impl PendingBytes for PendingWrites {
    fn copy_out(&self, device_offset: u64, target: &mut [u8]) -> bool {
        let end = device_offset + target.len() as u64;
        let mut covered_to = device_offset;
        for (offset, _, data) in self.overlapping(device_offset, end) {
            if *offset > covered_to {
                return false;
            }
            covered_to = covered_to.max(offset + data.len() as u64);
        }
        if covered_to < end {
            return false;
        }
        self.patch(device_offset, target);
        true
    }

    fn holds_any(&self, device_offset: u64, length: u64) -> bool {
        !self
            .overlapping(device_offset, device_offset + length)
            .is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_writes_are_applied_in_order_over_the_bytes_read() {
        let mut pending = PendingWrites {
            writes: vec![(1024, 0, vec![1; 1024]), (1536, 1, vec![2; 512])],
            longest: 1024,
        };
        pending
            .writes
            .sort_by_key(|(offset, order, _)| (*offset, *order));
        let patched = |device_offset, length| {
            let mut bytes = vec![9; length];
            pending.patch(device_offset, &mut bytes);
            bytes
        };
        let out = patched(0, 4096);
        assert_eq!(&out[..1024], &[9; 1024][..]);
        assert_eq!(&out[1024..1536], &[1; 512][..]);
        assert_eq!(&out[1536..2048], &[2; 512][..], "the later write wins");
        assert_eq!(&out[2048..], &[9; 2048][..]);
        // A read that starts inside a write sees only its overlap.
        assert_eq!(patched(1536, 1024)[..512], [2; 512]);
        assert_eq!(patched(4096, 512), vec![9; 512]);
    }

    #[test]
    fn pending_writes_serve_a_range_only_when_they_cover_all_of_it() {
        let pending = PendingWrites {
            writes: vec![(1024, 0, vec![1; 1024]), (2048, 1, vec![2; 1024])],
            longest: 1024,
        };
        let mut whole = vec![9; 2048];
        assert!(pending.copy_out(1024, &mut whole), "two writes end to end");
        assert_eq!(&whole[..1024], &[1; 1024][..]);
        assert_eq!(&whole[1024..], &[2; 1024][..]);
        let mut past_the_end = vec![9; 2048];
        assert!(!pending.copy_out(2048, &mut past_the_end));
        assert_eq!(
            past_the_end,
            vec![9; 2048],
            "a range not served is left alone"
        );
        assert!(
            !pending.copy_out(512, &mut [0; 1024]),
            "starts before the first"
        );
        assert!(pending.holds_any(0, 1025));
        assert!(!pending.holds_any(0, 1024));
        assert!(!pending.holds_any(3072, 4096));
    }

    #[test]
    fn the_buffer_pool_reuses_lengths_it_holds_and_keeps_no_more_than_its_bound() {
        let pool = BufferPool::default();
        let mut first = pool.take(16384);
        first[0] = 7;
        pool.give_back([first]);
        assert_eq!(
            pool.take(16384)[0],
            7,
            "a pooled buffer of that length is reused"
        );
        assert_eq!(
            pool.take(16384)[0],
            0,
            "the pool is empty again: a new buffer"
        );
        assert_eq!(pool.take(8192).len(), 8192);

        let large = MERGED_READ_BYTES as usize;
        pool.give_back((0..POOLED_BYTES_MAX / large + 3).map(|_| AlignedBuf::zeroed(large)));
        assert_eq!(
            pool.free.lock().bytes,
            POOLED_BYTES_MAX,
            "the rest were freed"
        );
        pool.give_back([AlignedBuf::zeroed(4096)]);
        let free = pool.free.lock();
        assert_eq!(
            free.bytes,
            POOLED_BYTES_MAX - large + 4096,
            "another length gave way"
        );
        assert_eq!(free.by_length[&4096].len(), 1);
    }

    #[test]
    fn neighbouring_runs_share_a_read_up_to_the_limit() {
        let run = |device_offset, chunks| ChunkRun {
            object: "c/o".into(),
            logical_offset: 0,
            device_offset,
            chunk_bytes: 4096,
            expected: Vec::new(),
            chunks,
        };
        let runs = [run(0, 2), run(8192, 1), run(16384, 1), run(20480, 1024)];
        let shape: Vec<_> = merge_reads(&runs)
            .iter()
            .map(|read| (read.device_offset, read.length, read.runs.clone()))
            .collect();
        let expected = vec![
            (0, 12288, 0..2),
            (16384, 4096, 2..3),
            (20480, 4 << 20, 3..4), // touches the previous read, but would pass the limit
        ];
        assert_eq!(shape, expected);
    }
}
