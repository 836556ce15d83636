//! Writes: a pure planner decides what to do, an executor does it.
//!
//! [`plan_write`] looks at the extent map and the write and returns a [`WritePlan`]: which
//! logical range the new data will map, which existing bytes must be read and merged so that the
//! new blob holds whole checksum chunks, and how the write is carried out. [`write`] executes a
//! plan inside a transaction: reads the merge bytes, punches the old mapping, allocates, lays out
//! new blobs with their checksums and queues their data writes.
//!
//! [`choose_strategy`] decides, per write, between three ways to the device:
//!
//! - **new space** ("redirect on write"): fresh blobs; the old extents are released only after
//!   the commit that drops them is durable, so a crash finds either the old or the new data,
//!   both with valid checksums. Large writes always go this way and are never written twice.
//! - **fill unused**: into never-written chunks of an existing blob, which nothing committed
//!   references, so writing them before the commit is as safe as new space.
//! - **deferred**: a small overwrite of live data in place. The new bytes travel in the commit's
//!   KV batch as a deferred record (see [`super::deferred`]) and reach the device after it, so
//!   the write costs one synced KV write instead of a data write, a flush and a new blob.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::context::{ObjectKey, TxnContext};
use super::engine::{Counters, Engine, EngineConfig, EnginePending};
use crate::device::{AlignedBuf, DataBuf, IoBuf, IoRequest};
use crate::error::Result;
use crate::format::journal::DataCheck;
use crate::format::onode::{Blob, CsumType};
use crate::onode::read::{PendingBytes, read_object_with};
use crate::onode::{BlobId, ExtentMap, Piece};

/// How a write reaches the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteStrategy {
    /// Fresh blobs in newly allocated space; the old mapping is punched ("redirect on write").
    NewSpace,
    /// Into never-written chunks of an existing blob whose allocation units cover the write
    /// (only when the allocation unit is larger than the checksum chunk, so blobs have unused
    /// chunks). Nothing committed references those chunks, so writing them in place is
    /// crash-safe.
    FillUnused {
        /// The blob with room.
        blob: BlobId,
        /// Offset within the blob where the write buffer goes.
        blob_position: u32,
    },
    /// In place in a blob whose allocation units cover the write, over live data (and any
    /// unused or unmapped chunks beside it), through a deferred record applied after the
    /// commit.
    Deferred {
        /// The blob overwritten.
        blob: BlobId,
        /// Offset within the blob where the write buffer goes.
        blob_position: u32,
    },
}

/// What a write will do, decided without I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritePlan {
    /// How the data reaches the device.
    pub strategy: WriteStrategy,
    /// Logical offset of the first byte of the write buffer (checksum-chunk aligned).
    pub buffer_offset: u64,
    /// Bytes of the write buffer (whole checksum chunks).
    pub buffer_length: u64,
    /// Logical range the written blobs will map; the old mapping of it is punched.
    pub mapped_offset: u64,
    /// End of that range.
    pub mapped_end: u64,
    /// Existing logical ranges to read and merge into the buffer (partial head/tail chunks).
    pub merge_reads: Vec<(u64, u64)>,
    /// Object size after the write.
    pub new_size: u64,
}

/// Plans writing `length` bytes at `offset` into an object of `size` bytes.
///
/// The data is laid out in whole checksum chunks. A partial chunk at either end is completed
/// from the object's current bytes when that part of the chunk holds data (read-modify-write
/// into new space), and otherwise padded with zeros and left unmapped, so holes stay holes.
pub fn plan_write(
    map: &ExtentMap,
    size: u64,
    (offset, length): (u64, u64),
    shard_starts: &[u64],
    config: &EngineConfig,
) -> WritePlan {
    let chunk = u64::from(config.csum_chunk());
    let end = offset + length;
    let buffer_offset = offset / chunk * chunk;
    let buffer_end = end.div_ceil(chunk) * chunk;
    let mut merge_reads = Vec::new();
    let mut mapped_offset = offset;
    if buffer_offset < offset && map.has_data(buffer_offset, offset - buffer_offset) {
        merge_reads.push((buffer_offset, offset));
        mapped_offset = buffer_offset;
    }
    let mut mapped_end = end;
    let tail_end = buffer_end.min(size);
    if end < tail_end && map.has_data(end, tail_end - end) {
        merge_reads.push((end, tail_end));
        mapped_end = tail_end;
    }
    WritePlan {
        strategy: choose_strategy(
            map,
            (offset, end),
            (buffer_offset, buffer_end),
            shard_starts,
            config,
        ),
        buffer_offset,
        buffer_length: buffer_end - buffer_offset,
        mapped_offset,
        mapped_end,
        merge_reads,
        new_size: size.max(end),
    }
}

/// The decision between strategies for the write `[offset, end)`, laid out in the
/// chunk-aligned buffer `[buffer_offset, buffer_end)`. First the blob whose allocation units
/// already cover the buffer is looked for ([`in_place_target`]): a small write into a unit the
/// object holds stays there, so small writes never cost a new unit each. Then:
///
/// - the buffer covers no data and only never-written chunks of that blob: fill unused;
/// - the write overwrites live data and is small ([`wants_deferred`]): deferred in that blob;
/// - else new space.
pub fn choose_strategy(
    map: &ExtentMap,
    (offset, end): (u64, u64),
    (buffer_offset, buffer_end): (u64, u64),
    shard_starts: &[u64],
    config: &EngineConfig,
) -> WriteStrategy {
    let target = in_place_target(map, (buffer_offset, buffer_end), shard_starts, config);
    let Some(target) = target else {
        return WriteStrategy::NewSpace;
    };
    let has_data = map.has_data(buffer_offset, buffer_end - buffer_offset);
    if !has_data && target.all_unused {
        return WriteStrategy::FillUnused {
            blob: target.blob,
            blob_position: target.blob_position,
        };
    }
    if has_data && wants_deferred(end - offset, config) {
        return WriteStrategy::Deferred {
            blob: target.blob,
            blob_position: target.blob_position,
        };
    }
    WriteStrategy::NewSpace
}

/// Whether an overwrite of `length` bytes of live data should be deferred: when it is smaller
/// than a checksum chunk (rewriting that one chunk in place beats a read-modify-write into a new
/// blob), smaller than an allocation unit larger than the chunk (new space would take a whole
/// unit for it and leave the old one partly referenced), or smaller than
/// `prefer_deferred_size` (on rotational media a logged write plus a later batched seek beats
/// an immediate one; BlueStore's `prefer_deferred_size_hdd`).
pub fn wants_deferred(length: u64, config: &EngineConfig) -> bool {
    length < u64::from(config.csum_chunk())
        || length < u64::from(config.prefer_deferred_size)
        || (config.min_alloc_size > config.csum_chunk()
            && length < u64::from(config.min_alloc_size))
}

/// Where a write can go in place: the blob, the buffer's position in it, and whether every
/// chunk there is still unused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InPlace {
    /// The blob.
    pub blob: BlobId,
    /// Offset within the blob where the write buffer goes.
    pub blob_position: u32,
    /// No chunk under the buffer was ever written.
    pub all_unused: bool,
}

/// The blob whose allocation units cover the chunk-aligned buffer `[buffer_offset,
/// buffer_end)`: an unshared blob (found through the extents overlapping the buffer or next to
/// it) under whose one logical-to-blob relation the
/// whole buffer lies inside the blob, chunk-aligned, on units the blob still holds, in the same
/// extent-map shard as the blob's extents, and every byte under the buffer that holds data
/// maps to it under that relation (the partial chunks the write completes are rewritten too). Anything else (data of another blob or relation, a shared
/// blob, units already released) goes to new space.
pub fn in_place_target(
    map: &ExtentMap,
    (buffer_offset, buffer_end): (u64, u64),
    shard_starts: &[u64],
    config: &EngineConfig,
) -> Option<InPlace> {
    let mut relation = None;
    // Every byte of data under the buffer (the write and the partial chunks it completes) must
    // be the blob's: the chunks are rewritten there in place.
    for piece in map.pieces(buffer_offset, buffer_end - buffer_offset) {
        if let Piece::Data {
            logical_offset,
            blob,
            blob_offset,
            ..
        } = piece
        {
            let delta = i128::from(blob_offset) - i128::from(logical_offset);
            match relation {
                None => relation = Some((blob, delta, logical_offset)),
                Some((known, known_delta, _)) if (known, known_delta) == (blob, delta) => {}
                Some(_) => return None,
            }
        }
    }
    let candidates = match relation {
        Some(found) => vec![found],
        None => neighbours(map, buffer_offset, buffer_end),
    };
    candidates
        .into_iter()
        .find_map(|(id, delta, extent_offset)| {
            let same_shard = shard_of(shard_starts, extent_offset)
                == shard_of(shard_starts, buffer_offset)
                && shard_of(shard_starts, buffer_end - 1) == shard_of(shard_starts, buffer_offset);
            let target = fits_in_place(map, id, delta, (buffer_offset, buffer_end), config)?;
            same_shard.then_some(target)
        })
}

/// The blobs of the extents just before and just after the buffer, with their relations and
/// the logical offset of the extent that names them.
fn neighbours(map: &ExtentMap, buffer_offset: u64, buffer_end: u64) -> Vec<(BlobId, i128, u64)> {
    let relation = |(start, mapping): (u64, crate::onode::Mapping)| {
        (
            mapping.blob,
            i128::from(mapping.blob_offset) - i128::from(start),
            start,
        )
    };
    map.extent_before(buffer_offset)
        .into_iter()
        .chain(map.extent_at_or_after(buffer_end))
        .map(relation)
        .collect()
}

/// The buffer's place in blob `id` under `delta`, when it can be written there.
fn fits_in_place(
    map: &ExtentMap,
    id: BlobId,
    delta: i128,
    (buffer_offset, buffer_end): (u64, u64),
    config: &EngineConfig,
) -> Option<InPlace> {
    let blob = map.blob(id);
    let position = u64::try_from(i128::from(buffer_offset) + delta).ok()?;
    let length = buffer_end - buffer_offset;
    let chunk = u64::from(blob.csum_chunk());
    let fits = position + length <= u64::from(blob.length) && position.is_multiple_of(chunk);
    if !fits || blob.shared_blob_id.is_some() || chunk != u64::from(config.csum_chunk()) {
        return None;
    }
    if !map.units_held(id, position as u32, length as u32) {
        return None;
    }
    let all_unused = (position / chunk..(position + length) / chunk).all(|i| blob.chunk_unused(i));
    Some(InPlace {
        blob: id,
        blob_position: position as u32,
        all_unused,
    })
}

/// Index of the extent-map shard holding logical offset `offset` (shards start at
/// `shard_starts`, sorted; before the first is shard 0).
fn shard_of(shard_starts: &[u64], offset: u64) -> usize {
    shard_starts.partition_point(|start| *start <= offset)
}

/// One new blob laid out over part of the write buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BlobLayout {
    device_offset: u64,
    /// Allocated bytes.
    length: u64,
    /// Where its data starts within the buffer.
    buffer_position: u64,
    /// Where its data starts within the blob (the first blob of a write that starts inside an
    /// allocation unit keeps the unit's leading chunks unused, so the blob covers the unit).
    data_position: u64,
    /// Bytes of buffer data it holds (whole chunks, <= length - data_position).
    used: u64,
}

/// Executes a write of `data` at `offset` on the object `key` of the transaction. A write over
/// extent-map shard boundaries is carried out piece by piece, so no new blob spans two shards;
/// so is a write smaller than an allocation unit that crosses a unit boundary, so each piece
/// can stay in the unit the object already holds there.
pub fn write(ctx: &mut TxnContext<'_>, key: &ObjectKey, offset: u64, data: &DataBuf) -> Result<()> {
    let end = offset + data.len() as u64;
    let mut cuts = ctx.onode(key).shard_starts_within(offset, end);
    let config = &ctx.engine().config;
    let unit = u64::from(config.min_alloc_size);
    if (data.len() as u64) < unit && config.min_alloc_size > config.csum_chunk() {
        let boundary = end / unit * unit;
        if boundary > offset && !cuts.contains(&boundary) {
            cuts.push(boundary);
            cuts.sort_unstable();
        }
    }
    let mut start = offset;
    for cut in cuts.into_iter().chain([end]) {
        let piece = &data[(start - offset) as usize..(cut - offset) as usize];
        let aligned = data.aligned().filter(|_| piece.len() == data.len());
        write_piece(ctx, key, start, (piece, aligned))?;
        start = cut;
    }
    Ok(())
}

/// Writes `data` at `offset`; `aligned` is the buffer `data` is all of, if it is one (shared with
/// the device, not copied, where a blob buffer is exactly those bytes).
fn write_piece(
    ctx: &mut TxnContext<'_>,
    key: &ObjectKey,
    offset: u64,
    (data, aligned): (&[u8], Option<&Arc<AlignedBuf>>),
) -> Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let config = ctx.engine().config.clone();
    let onode = ctx.onode(key);
    let shard_starts = onode.shard_starts_within(0, u64::MAX);
    let mut plan = plan_write(
        &onode.extent_map,
        onode.size,
        (offset, data.len() as u64),
        &shard_starts,
        &config,
    );
    // An export reads the blobs of its commit point from the device while writes go on; a
    // write in place would change bytes it has yet to read. New space never does (the export
    // holds freed space back from reuse).
    if ctx.engine().exports_pinned.load(Ordering::SeqCst) > 0 {
        plan.strategy = WriteStrategy::NewSpace;
    }
    let merged = if plan.merge_reads.is_empty() {
        Vec::new()
    } else {
        Counters::add(
            &ctx.engine().counters.write_chunk_merges,
            plan.merge_reads.len() as u64,
        );
        read_merge_bytes(ctx, key, &plan)?
    };
    match plan.strategy {
        WriteStrategy::NewSpace => {
            Counters::add(&ctx.engine().counters.writes_new_space, 1);
            let new = NewData {
                offset,
                data,
                aligned,
            };
            write_new_space(ctx, key, &plan, new, &merged, &config)
        }
        WriteStrategy::FillUnused {
            blob,
            blob_position,
        } => {
            Counters::add(&ctx.engine().counters.writes_fill_unused, 1);
            write_fill_unused(ctx, key, &plan, (blob, blob_position), offset, data);
            Ok(())
        }
        WriteStrategy::Deferred {
            blob,
            blob_position,
        } => {
            Counters::add(&ctx.engine().counters.writes_deferred, 1);
            let buf = fill_buffer(&plan, 0, plan.buffer_length, offset, data, &merged);
            write_deferred(
                ctx,
                key,
                &plan,
                (blob, blob_position),
                (offset, data.len()),
                buf,
            );
            Ok(())
        }
    }
}

/// Overwrites chunks of a blob in place: new checksums now, the bytes through the deferred
/// record. Parts of the write that fall in holes (over unused or unmapped chunks of the blob)
/// are mapped to it under the blob's relation; the rest already maps there.
fn write_deferred(
    ctx: &mut TxnContext<'_>,
    key: &ObjectKey,
    plan: &WritePlan,
    (blob, blob_position): (BlobId, u32),
    (offset, length): (u64, usize),
    buf: AlignedBuf,
) {
    let end = offset + length as u64;
    let onode = ctx.onode_mut(key);
    let record = onode.extent_map.blob(blob);
    let chunk = record.csum_chunk() as usize;
    let first_chunk = blob_position as usize / chunk;
    let device_offset = record.device_offset + u64::from(blob_position);
    onode.extent_map.update_blob(blob, (offset, end), |record| {
        if record.csum_type == CsumType::Crc32c {
            for (index, crc) in crate::csum::chunk_crcs(&buf, chunk).into_iter().enumerate() {
                record.csums[first_chunk + index] = crc;
            }
        }
        mark_chunks_used(record, first_chunk, buf.len() / chunk);
    });
    let mut mapped = 0;
    for piece in onode.extent_map.pieces(offset, length as u64) {
        if let Piece::Hole {
            logical_offset,
            length,
        } = piece
        {
            let position = blob_position + (logical_offset - plan.buffer_offset) as u32;
            onode
                .extent_map
                .map(logical_offset, length as u32, blob, position);
            mapped += length;
        }
    }
    onode.size = plan.new_size;
    ctx.stats.stored_bytes += mapped as i64;
    ctx.deferred_writes.push((device_offset, buf));
}

/// Writes into unused chunks of an existing blob: checksums of the new chunks, unused bits
/// cleared, the written range mapped. The blob's allocation units are already counted.
fn write_fill_unused(
    ctx: &mut TxnContext<'_>,
    key: &ObjectKey,
    plan: &WritePlan,
    (blob, blob_position): (BlobId, u32),
    offset: u64,
    data: &[u8],
) {
    let mut buf = AlignedBuf::zeroed(plan.buffer_length as usize);
    let start = (offset - plan.buffer_offset) as usize;
    buf[start..start + data.len()].copy_from_slice(data);
    let onode = ctx.onode_mut(key);
    let record = onode.extent_map.blob(blob);
    let chunk = record.csum_chunk() as usize;
    let first_chunk = blob_position as usize / chunk;
    let device_offset = record.device_offset + u64::from(blob_position);
    let end = offset + data.len() as u64;
    onode.extent_map.update_blob(blob, (offset, end), |record| {
        if record.csum_type == CsumType::Crc32c {
            for (index, crc) in crate::csum::chunk_crcs(&buf, chunk).into_iter().enumerate() {
                record.csums[first_chunk + index] = crc;
            }
        }
        mark_chunks_used(record, first_chunk, buf.len() / chunk);
    });
    let mapped_position = blob_position + (offset - plan.buffer_offset) as u32;
    onode
        .extent_map
        .map(offset, data.len() as u32, blob, mapped_position);
    onode.size = plan.new_size;
    ctx.stats.stored_bytes += data.len() as i64;
    ctx.add_data_write(IoRequest::write(device_offset, buf), None);
}

fn mark_chunks_used(blob: &mut Blob, first: usize, count: usize) {
    if let Some(bits) = &mut blob.unused {
        for index in first..first + count {
            bits[index / 8] &= !(1 << (index % 8));
        }
        if bits.iter().all(|b| *b == 0) {
            blob.unused = None;
        }
    }
}

/// Reads the existing bytes the plan merges: from this transaction's own new blobs, from
/// earlier transactions' data still in flight, or from the device. Never waits for a commit.
fn read_merge_bytes(
    ctx: &TxnContext<'_>,
    key: &ObjectKey,
    plan: &WritePlan,
) -> Result<Vec<(u64, Vec<u8>)>> {
    let name = ctx.object_name(key);
    let engine = ctx.engine();
    let onode = ctx.onode(key);
    let pending = TxnPending {
        deferred_writes: &ctx.deferred_writes,
        data_writes: &ctx.data_writes,
        engine: EnginePending(engine),
    };
    plan.merge_reads
        .iter()
        .map(|(start, end)| {
            let bytes = read_object_with(
                engine.device.as_ref(),
                onode,
                *start,
                end - start,
                &name,
                &pending,
            )?;
            Ok((*start, bytes))
        })
        .collect()
}

/// What a transaction being prepared sees in memory, newest first: its own in-place writes
/// (later ones first), its own new data, then the engine's pending bytes.
struct TxnPending<'a> {
    deferred_writes: &'a [(u64, AlignedBuf)],
    data_writes: &'a BTreeMap<u64, IoRequest>,
    engine: EnginePending<'a>,
}

impl PendingBytes for TxnPending<'_> {
    fn copy_out(&self, device_offset: u64, target: &mut [u8]) -> bool {
        let end = device_offset + target.len() as u64;
        let overlaps =
            |start: u64, buf: &[u8]| start < end && start + buf.len() as u64 > device_offset;
        // Newest layer first; a layer holding part of the range must supply all of it.
        if let Some((start, buf)) = self
            .deferred_writes
            .iter()
            .rev()
            .find(|(start, buf)| overlaps(*start, buf))
        {
            return copy_within(*start, buf, device_offset, target);
        }
        let data = self.data_writes.range(..end).next_back();
        if let Some((start, request)) = data.filter(|(s, r)| overlaps(**s, &r.buf)) {
            return copy_within(*start, &request.buf, device_offset, target);
        }
        self.engine.copy_out(device_offset, target)
    }

    fn holds_any(&self, device_offset: u64, length: u64) -> bool {
        let end = device_offset + length;
        let overlaps = |start: u64, len: usize| start < end && start + len as u64 > device_offset;
        self.deferred_writes
            .iter()
            .any(|(start, buf)| overlaps(*start, buf.len()))
            || self
                .data_writes
                .range(..end)
                .any(|(start, request)| overlaps(*start, request.buf.len()))
            || self.engine.holds_any(device_offset, length)
    }
}

/// Copies `[device_offset, +target.len())` out of `buf` (which starts at `start`) if it holds
/// all of it.
fn copy_within(start: u64, buf: &[u8], device_offset: u64, target: &mut [u8]) -> bool {
    let Some(skip) = device_offset.checked_sub(start) else {
        return false;
    };
    match buf.get(skip as usize..skip as usize + target.len()) {
        Some(bytes) => {
            target.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

/// The bytes a write puts in new space: `data` at object `offset`, and the aligned buffer they
/// are all of, if they are one.
struct NewData<'a> {
    offset: u64,
    data: &'a [u8],
    aligned: Option<&'a Arc<AlignedBuf>>,
}

fn write_new_space(
    ctx: &mut TxnContext<'_>,
    key: &ObjectKey,
    plan: &WritePlan,
    new: NewData<'_>,
    merged: &[(u64, Vec<u8>)],
    config: &EngineConfig,
) -> Result<()> {
    let NewData { offset, data, .. } = new;
    let onode = ctx.onode_mut(key);
    let punched = onode
        .extent_map
        .punch(plan.mapped_offset, plan.mapped_end - plan.mapped_offset);
    ctx.release(punched)?;
    // The first blob starts where the buffer's allocation unit starts in the object: later
    // small writes to the rest of that unit find its chunks unused in the same blob.
    let lead = plan.buffer_offset % u64::from(config.min_alloc_size);
    let allocation = (lead + plan.buffer_length).next_multiple_of(u64::from(config.min_alloc_size));
    let extents = ctx.allocate(allocation)?;
    let layouts = lay_out_blobs(
        &extents,
        (lead, plan.buffer_length),
        u64::from(config.blob_length_max),
    );
    // One buffer and one device write per allocated extent: its blobs are consecutive on the
    // device and in the write buffer, so a 4 MiB write is one request, not eight.
    for extent in &extents {
        let members: Vec<&BlobLayout> = layouts
            .iter()
            .filter(|l| l.device_offset >= extent.offset && l.device_offset < extent.end())
            .filter(|l| l.used > 0)
            .collect();
        let Some(first) = members.first() else {
            continue;
        };
        let used: u64 = members.iter().map(|l| l.used).sum();
        let blob_start = plan.buffer_offset + first.buffer_position;
        let buf = match new
            .aligned
            .filter(|b| blob_start == offset && used == b.len() as u64)
        {
            // The buffer is exactly these bytes: the device writes it as it is.
            Some(aligned) => IoBuf::Shared(Arc::clone(aligned)),
            None => IoBuf::Owned(fill_buffer(
                plan,
                first.buffer_position,
                used,
                offset,
                data,
                merged,
            )),
        };
        let mut checks = checks_are_csums(ctx.engine()).then(Vec::new);
        for layout in &members {
            let within = (layout.buffer_position - first.buffer_position) as usize;
            let blob = new_blob(layout, &buf[within..within + layout.used as usize], config);
            if let Some(checks) = &mut checks {
                checks.extend(used_chunk_checks(layout, &blob));
            }
            map_new_blob(ctx, key, plan, layout, blob);
        }
        let device_offset = first.device_offset + first.data_position;
        ctx.add_data_write(IoRequest::write_buf(device_offset, buf), checks);
    }
    ctx.onode_mut(key).size = plan.new_size;
    Ok(())
}

/// Makes `[offset, offset + length)` read as zeros: the range is unmapped (space whose last
/// reference goes is released) and the object grows to cover it. No data is written: checksums
/// stay valid because reads of a hole never touch the device.
pub fn zero(ctx: &mut TxnContext<'_>, key: &ObjectKey, offset: u64, length: u64) -> Result<()> {
    if length == 0 {
        return Ok(());
    }
    let onode = ctx.onode_mut(key);
    let punched = onode.extent_map.punch(offset, length);
    onode.size = onode.size.max(offset + length);
    ctx.release(punched)
}

/// Cuts the allocated extents into blobs of at most `blob_length_max`, in buffer order; the
/// buffer starts `lead` bytes into the first.
fn lay_out_blobs(
    extents: &[crate::alloc::DeviceExtent],
    (lead, buffer_length): (u64, u64),
    blob_length_max: u64,
) -> Vec<BlobLayout> {
    let mut layouts = Vec::new();
    let mut buffer_position = 0;
    let mut data_position = lead;
    for extent in extents {
        let mut device_offset = extent.offset;
        let mut left = extent.length;
        while left > 0 {
            let length = left.min(blob_length_max);
            let room = length.saturating_sub(data_position);
            let used = room.min(buffer_length.saturating_sub(buffer_position));
            layouts.push(BlobLayout {
                device_offset,
                length,
                buffer_position,
                data_position: data_position.min(length),
                used,
            });
            data_position = data_position.saturating_sub(length);
            buffer_position += used;
            device_offset += length;
            left -= length;
        }
    }
    layouts
}

/// Adds a freshly written blob and maps the part of the write it holds.
fn map_new_blob(
    ctx: &mut TxnContext<'_>,
    key: &ObjectKey,
    plan: &WritePlan,
    layout: &BlobLayout,
    blob: Blob,
) {
    let onode = ctx.onode_mut(key);
    let blob_id = onode.extent_map.add_blob(blob);
    let data_start = plan.buffer_offset + layout.buffer_position;
    let map_start = data_start.max(plan.mapped_offset);
    let map_end = (data_start + layout.used).min(plan.mapped_end);
    assert!(
        map_start < map_end,
        "every new blob holds some of the write"
    );
    onode.extent_map.map(
        map_start,
        (map_end - map_start) as u32,
        blob_id,
        (layout.data_position + map_start - data_start) as u32,
    );
    ctx.stats.stored_bytes += (map_end - map_start) as i64;
}

/// The bytes written at `[buffer_position, +length)` of the write buffer: zeros, then merged old
/// bytes, then the new data over them.
fn fill_buffer(
    plan: &WritePlan,
    buffer_position: u64,
    length: u64,
    offset: u64,
    data: &[u8],
    merged: &[(u64, Vec<u8>)],
) -> AlignedBuf {
    let blob_start = plan.buffer_offset + buffer_position;
    let blob_end = blob_start + length;
    let data_end = offset + data.len() as u64;
    if offset <= blob_start && blob_end <= data_end {
        // The new data covers it all, merged bytes included (a large write): one copy, no
        // zeros first.
        let start = (blob_start - offset) as usize;
        return AlignedBuf::copy_from(&data[start..start + length as usize]);
    }
    let mut buf = AlignedBuf::zeroed(length as usize);
    let sources = merged
        .iter()
        .map(|(start, bytes)| (*start, bytes.as_slice()))
        .chain(std::iter::once((offset, data)));
    for (source_start, bytes) in sources {
        let source_end = source_start + bytes.len() as u64;
        let start = source_start.max(blob_start);
        let end = source_end.min(blob_end);
        if start < end {
            buf[(start - blob_start) as usize..(end - blob_start) as usize].copy_from_slice(
                &bytes[(start - source_start) as usize..(end - source_start) as usize],
            );
        }
    }
    buf
}

/// Whether the checksums of new blobs are the journal's data checks of their bytes: with a
/// journal, crc32c checksums and a checksum chunk of one allocation unit (the defaults), the
/// check of each unit a write fills is its chunk's checksum, so the bytes need no second pass.
fn checks_are_csums(engine: &Engine) -> bool {
    let config = &engine.config;
    engine.journal.is_some()
        && config.csum_type == CsumType::Crc32c
        && config.csum_chunk() == config.min_alloc_size
}

/// The data checks of a new blob's used chunks (each one allocation unit), in device order.
fn used_chunk_checks<'a>(
    layout: &BlobLayout,
    blob: &'a Blob,
) -> impl Iterator<Item = DataCheck> + 'a {
    let chunk = blob.csum_chunk();
    let first = layout.data_position / u64::from(chunk);
    let start = layout.device_offset + first * u64::from(chunk);
    let count = (layout.used / u64::from(chunk)) as usize;
    blob.csums
        .iter()
        .skip(first as usize)
        .take(count)
        .enumerate()
        .map(move |(index, crc)| DataCheck {
            device_offset: start + index as u64 * u64::from(chunk),
            length: chunk,
            crc: *crc,
        })
}

/// A blob record for freshly written data: checksums of the used chunks, the rest unused.
fn new_blob(layout: &BlobLayout, buf: &[u8], config: &EngineConfig) -> Blob {
    let chunk = config.csum_chunk() as usize;
    let chunks = (layout.length as usize) / chunk;
    let first_used = layout.data_position as usize / chunk;
    let used = first_used..first_used + buf.len() / chunk;
    let mut csums = Vec::new();
    if config.csum_type == CsumType::Crc32c {
        csums = vec![0; first_used];
        csums.extend(crate::csum::chunk_crcs(buf, chunk));
        csums.resize(chunks, 0);
    }
    let unused = (used.len() < chunks).then(|| {
        let mut bits = vec![0u8; chunks.div_ceil(8)];
        for index in (0..chunks).filter(|i| !used.contains(i)) {
            bits[index / 8] |= 1 << (index % 8);
        }
        bits
    });
    Blob {
        device_offset: layout.device_offset,
        length: layout.length as u32,
        shared_blob_id: None,
        csum_type: config.csum_type,
        csum_chunk_order: config.csum_chunk_order,
        csums,
        unused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc::DeviceExtent;

    fn config() -> EngineConfig {
        EngineConfig {
            min_alloc_size: 4096,
            csum_type: CsumType::Crc32c,
            csum_chunk_order: 12,
            blob_length_max: 64 << 10,
            device_size: 1 << 30,
            reserved_bytes: 8192,
            prefer_deferred_size: 0,
            onode_cache_bytes: 1 << 20,
            queue_depth_max: 64,
            slow_transaction: std::time::Duration::from_secs(5),
            deferred: Default::default(),
            background: Default::default(),
            #[cfg(debug_assertions)]
            mutation: Default::default(),
        }
    }

    /// A map holding one blob of `length` bytes at device offset 1 MiB (4 KiB units and
    /// chunks, all written), mapped from logical 0 for `mapped` bytes.
    fn mapped_blob(length: u32, mapped: u32) -> (ExtentMap, BlobId) {
        let mut map = ExtentMap::new(4096);
        let blob = map.add_blob(Blob {
            device_offset: 1 << 20,
            length,
            shared_blob_id: None,
            csum_type: CsumType::Crc32c,
            csum_chunk_order: 12,
            csums: vec![0; (length / 4096) as usize],
            unused: None,
        });
        map.map(0, mapped, blob, 0);
        (map, blob)
    }

    #[test]
    fn an_aligned_write_to_an_empty_object_maps_exactly_the_write() {
        let map = ExtentMap::new(4096);
        let plan = plan_write(&map, 0, (8192, 8192), &[], &config());
        assert_eq!(plan.buffer_offset, 8192);
        assert_eq!(plan.buffer_length, 8192);
        assert_eq!((plan.mapped_offset, plan.mapped_end), (8192, 16384));
        assert!(plan.merge_reads.is_empty());
        assert_eq!(plan.new_size, 16384);
    }

    #[test]
    fn an_unaligned_write_into_a_hole_pads_with_zeros_and_reads_nothing() {
        let map = ExtentMap::new(4096);
        let plan = plan_write(&map, 0, (100, 200), &[], &config());
        assert_eq!((plan.buffer_offset, plan.buffer_length), (0, 4096));
        assert_eq!((plan.mapped_offset, plan.mapped_end), (100, 300));
        assert!(plan.merge_reads.is_empty());
    }

    #[test]
    fn an_unaligned_overwrite_merges_the_partial_chunks() {
        let (map, _) = mapped_blob(16384, 16384);
        let plan = plan_write(&map, 16384, (5000, 1000), &[], &config());
        assert_eq!(plan.merge_reads, vec![(4096, 5000), (6000, 8192)]);
        assert_eq!((plan.mapped_offset, plan.mapped_end), (4096, 8192));
    }

    #[test]
    fn the_tail_merge_stops_at_the_object_size() {
        let (map, _) = mapped_blob(4096, 3000);
        let plan = plan_write(&map, 3000, (0, 1000), &[], &config());
        assert_eq!(plan.merge_reads, vec![(1000, 3000)]);
        assert_eq!(plan.mapped_end, 3000);
    }

    #[test]
    fn unused_space_is_filled_only_within_the_blob_s_shard() {
        let mut config = config();
        config.min_alloc_size = 65536;
        let mut map = ExtentMap::new(65536);
        let blob = map.add_blob(Blob {
            device_offset: 1 << 20,
            length: 65536,
            shared_blob_id: None,
            csum_type: CsumType::Crc32c,
            csum_chunk_order: 12,
            csums: vec![0; 16],
            unused: Some(vec![0xfe, 0xff]),
        });
        map.map(0, 4096, blob, 0);
        let fill = plan_write(&map, 4096, (4096, 4096), &[], &config);
        assert!(matches!(fill.strategy, WriteStrategy::FillUnused { .. }));
        let across = plan_write(&map, 4096, (4096, 4096), &[4096], &config);
        assert_eq!(
            across.strategy,
            WriteStrategy::NewSpace,
            "a shard starts at 4096"
        );
    }

    #[test]
    fn small_overwrites_of_live_data_are_deferred_in_place() {
        let (map, blob) = mapped_blob(16384, 16384);
        let mut config = config();
        let small = plan_write(&map, 16384, (5000, 100), &[], &config);
        let expected = WriteStrategy::Deferred {
            blob,
            blob_position: 4096,
        };
        assert_eq!(small.strategy, expected, "under a chunk");
        let aligned = plan_write(&map, 16384, (4096, 4096), &[], &config);
        assert_eq!(aligned.strategy, WriteStrategy::NewSpace, "SSD default");
        config.prefer_deferred_size = 65536;
        let aligned = plan_write(&map, 16384, (4096, 4096), &[], &config);
        assert!(matches!(aligned.strategy, WriteStrategy::Deferred { .. }));
        let past_end = plan_write(&map, 16384, (16000, 1000), &[], &config);
        assert_eq!(
            past_end.strategy,
            WriteStrategy::NewSpace,
            "not every byte mapped"
        );
        let mut shared = map.clone();
        shared.share_blob(blob, 7, (0, 16384));
        let on_shared = plan_write(&shared, 16384, (5000, 100), &[], &config);
        assert_eq!(
            on_shared.strategy,
            WriteStrategy::NewSpace,
            "shared blobs are immutable"
        );
    }

    #[test]
    fn blobs_are_cut_at_the_maximum_and_the_last_keeps_unused_space() {
        let extents = [
            DeviceExtent::new(0, 128 << 10),
            DeviceExtent::new(1 << 20, 8192),
        ];
        let layouts = lay_out_blobs(&extents, (0, (128 << 10) + 4096), 64 << 10);
        assert_eq!(layouts.len(), 3);
        assert_eq!(layouts[2].device_offset, 1 << 20);
        assert_eq!((layouts[2].length, layouts[2].used), (8192, 4096));
    }

    #[test]
    fn a_write_inside_an_allocation_unit_starts_its_blob_at_the_unit() {
        let extents = [DeviceExtent::new(1 << 20, 128 << 10)];
        let layouts = lay_out_blobs(&extents, (0xf000, 0x2000), 64 << 10);
        assert_eq!(layouts.len(), 2, "the write crosses into the second unit");
        assert_eq!(
            (layouts[0].data_position, layouts[0].used),
            (0xf000, 0x1000)
        );
        assert_eq!((layouts[1].data_position, layouts[1].used), (0, 0x1000));
        assert_eq!(layouts[1].buffer_position, 0x1000);
    }
}
