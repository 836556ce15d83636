//! Reading object data: extent map -> device ranges -> one batch of reads -> verified bytes.
//!
//! Every piece of data is read in whole checksum chunks, each chunk's crc32c is compared with the
//! one recorded in its blob, and only then are the wanted bytes copied out. A mismatch is an
//! error naming the object, the object offset and the device offset of the failing chunk; bytes
//! that failed their checksum are never returned. Holes read as zeros.

use crate::device::{BlockDevice, DataBuf, IoRequest};
use crate::error::{Error, Result};
use crate::format::onode::{Blob, CsumType};

use super::{Onode, Piece};

/// One chunk-aligned device read serving one data piece.
#[derive(Debug, Clone, Copy)]
struct PieceRead {
    /// Where the piece goes in the output.
    output_offset: usize,
    /// Bytes of the piece.
    length: usize,
    /// Offset of the piece within the first chunk read.
    skip: usize,
    /// Logical offset of the first chunk read (for error messages).
    chunk_logical_offset: u64,
    /// Index of the first chunk within the blob.
    first_chunk: usize,
    blob: super::BlobId,
}

/// Reads `[offset, offset + length)` of `onode`, clipped to the object size.
///
/// `object` names the object in checksum errors.
pub fn read_object(
    device: &dyn BlockDevice,
    onode: &Onode,
    offset: u64,
    length: u64,
    object: &str,
) -> Result<Vec<u8>> {
    read_object_with(device, onode, offset, length, object, &NothingPending)
}

/// Device bytes that are newer in memory than on the device: data of transactions not yet
/// durable, and deferred writes not yet applied.
///
/// Memory is asked before the device is read. That order matters: bytes leave memory only
/// after they reached the device, so a range memory no longer holds is current on the device.
pub trait PendingBytes {
    /// Fills `target` from memory if memory holds every byte of `[device_offset, +len)`.
    fn copy_out(&self, device_offset: u64, target: &mut [u8]) -> bool;
    /// Whether memory holds any byte of `[device_offset, +length)`.
    fn holds_any(&self, device_offset: u64, length: u64) -> bool;
}

/// Nothing is pending: every byte comes from the device.
pub struct NothingPending;

impl PendingBytes for NothingPending {
    fn copy_out(&self, _: u64, _: &mut [u8]) -> bool {
        false
    }

    fn holds_any(&self, _: u64, _: u64) -> bool {
        false
    }
}

/// Like [`read_object`], but bytes `pending` holds are copied from memory, not read. A piece
/// memory holds only part of is split into checksum chunks, each served from where it is
/// current.
pub fn read_object_with(
    device: &dyn BlockDevice,
    onode: &Onode,
    offset: u64,
    length: u64,
    object: &str,
    pending: &dyn PendingBytes,
) -> Result<Vec<u8>> {
    read_object_buf(device, onode, offset, length, object, pending).map(DataBuf::into_vec)
}

/// Like [`read_object_with`], but a read one device read serves exactly (whole checksum chunks
/// of one blob, nothing in memory) returns that read's aligned buffer: neither zeroed before
/// nor copied after. An export stream carries it to its writer as it is.
pub fn read_object_buf(
    device: &dyn BlockDevice,
    onode: &Onode,
    offset: u64,
    length: u64,
    object: &str,
    pending: &dyn PendingBytes,
) -> Result<DataBuf> {
    let plan = plan_read(onode, offset, length, pending);
    finish_read_buf(device, onode, plan, object)
}

/// The bytes of each of `pieces` (`(object offset, length)`), one buffer per piece, read in
/// one batch: a piece one device read serves exactly (as for [`read_object_buf`]) is that
/// read's aligned buffer, uncopied; any other is assembled.
pub fn read_pieces(
    device: &dyn BlockDevice,
    onode: &Onode,
    pieces: &[(u64, u64)],
    object: &str,
    pending: &dyn PendingBytes,
) -> Result<Vec<DataBuf>> {
    let plans = pieces
        .iter()
        .map(|&(offset, length)| plan_read(onode, offset, length, pending))
        .collect();
    finish_reads(device, onode, plans, object)
}

/// A read half done: bytes from memory already in `output`, device reads still to issue.
#[derive(Debug)]
pub struct ReadPlan {
    output: Vec<u8>,
    plans: Vec<PieceRead>,
    requests: Vec<IoRequest>,
    /// The one request's buffer is the whole result (`output` is left empty).
    direct: bool,
}

impl ReadPlan {
    /// Where the first device read of the plan starts (`None` when memory holds everything).
    pub fn first_device_offset(&self) -> Option<u64> {
        self.requests.first().map(|request| request.device_offset)
    }
}

/// The first half of [`read_object_with`]: copies what memory holds and plans the device reads.
/// No I/O, so a caller may hold the object's slot lock across it, pairing the onode snapshot
/// with the memory state installed together with it.
pub fn plan_read(onode: &Onode, offset: u64, length: u64, pending: &dyn PendingBytes) -> ReadPlan {
    let end = offset.saturating_add(length).min(onode.size);
    if offset >= end {
        return ReadPlan {
            output: Vec::new(),
            plans: Vec::new(),
            requests: Vec::new(),
            direct: false,
        };
    }
    let pieces = onode.extent_map.pieces(offset, end - offset);
    if let Some(plan) = plan_direct(onode, &pieces, pending) {
        return plan;
    }
    let mut output = vec![0u8; (end - offset) as usize];
    let mut plans = Vec::new();
    let mut requests = Vec::new();
    for piece in pieces {
        let Piece::Data {
            logical_offset,
            length,
            blob,
            blob_offset,
        } = piece
        else {
            continue; // holes stay zero
        };
        let record = onode.extent_map.blob(blob);
        let target = (logical_offset - offset) as usize;
        let device_offset = record.device_offset + u64::from(blob_offset);
        if pending.copy_out(device_offset, &mut output[target..target + length as usize]) {
            continue;
        }
        let whole = (logical_offset, length, blob_offset);
        for part in chunk_pieces(whole, pending, record) {
            let (logical_offset, length, blob_offset) = part;
            let target = (logical_offset - offset) as usize;
            let device_offset = record.device_offset + u64::from(blob_offset);
            let bytes = &mut output[target..target + length as usize];
            if part != whole && pending.copy_out(device_offset, bytes) {
                continue;
            }
            let (plan, request) = device_read(blob, record, part, target);
            plans.push(plan);
            requests.push(request);
        }
    }
    ReadPlan {
        output,
        plans,
        requests,
        direct: false,
    }
}

/// The plan of a read that is exactly one device read: one piece of one blob, in whole checksum
/// chunks, of which memory holds nothing.
fn plan_direct(onode: &Onode, pieces: &[Piece], pending: &dyn PendingBytes) -> Option<ReadPlan> {
    let [
        Piece::Data {
            logical_offset,
            length,
            blob,
            blob_offset,
        },
    ] = *pieces
    else {
        return None;
    };
    let record = onode.extent_map.blob(blob);
    let chunk = u64::from(record.csum_chunk());
    let whole_chunks = u64::from(blob_offset) % chunk == 0 && length % chunk == 0;
    let device_offset = record.device_offset + u64::from(blob_offset);
    if !whole_chunks || pending.holds_any(device_offset, length) {
        return None;
    }
    let (plan, request) = device_read(blob, record, (logical_offset, length, blob_offset), 0);
    Some(ReadPlan {
        output: Vec::new(),
        plans: vec![plan],
        requests: vec![request],
        direct: true,
    })
}

/// The second half of [`read_object_buf`]: reads the device, verifies every chunk, and gives
/// a direct read's buffer as it is.
pub fn finish_read_buf(
    device: &dyn BlockDevice,
    onode: &Onode,
    plan: ReadPlan,
    object: &str,
) -> Result<DataBuf> {
    let mut finished = finish_reads(device, onode, vec![plan], object)?;
    Ok(finished.pop().unwrap_or(DataBuf::Vec(Vec::new())))
}

/// Finishes several plans of reads of `onode` with one batch of device reads: one result per
/// plan, in order.
pub fn finish_reads(
    device: &dyn BlockDevice,
    onode: &Onode,
    mut plans: Vec<ReadPlan>,
    object: &str,
) -> Result<Vec<DataBuf>> {
    // Each plan has one device read per piece read: its pieces say how many completions are
    // its own.
    let mut batch = Vec::new();
    for plan in &mut plans {
        batch.append(&mut plan.requests);
    }
    let mut completed = if batch.is_empty() {
        Vec::new()
    } else {
        device.run(batch)?
    }
    .into_iter();
    plans
        .into_iter()
        .map(|plan| {
            let count = plan.plans.len();
            complete(onode, plan, completed.by_ref().take(count).collect(), object)
        })
        .collect()
}

/// Verifies the completed reads of `plan` and gives its bytes: a direct read's buffer as it
/// is, else the output with the wanted bytes copied in.
fn complete(
    onode: &Onode,
    plan: ReadPlan,
    mut completed: Vec<IoRequest>,
    object: &str,
) -> Result<DataBuf> {
    let ReadPlan {
        mut output,
        plans,
        direct,
        ..
    } = plan;
    for (plan, request) in plans.iter().zip(&completed) {
        let blob = onode.extent_map.blob(plan.blob);
        verify_chunks(blob, plan, request, object)?;
    }
    if direct && let Some(request) = completed.pop() {
        return Ok(request.buf.into_owned().into());
    }
    for (plan, request) in plans.iter().zip(&completed) {
        output[plan.output_offset..plan.output_offset + plan.length]
            .copy_from_slice(&request.buf[plan.skip..plan.skip + plan.length]);
    }
    Ok(output.into())
}

/// The piece `(logical_offset, length, blob_offset)` whole when memory holds none of it, else cut
/// at checksum-chunk boundaries so each chunk comes from memory or the device as a unit.
fn chunk_pieces(
    piece: (u64, u64, u32),
    pending: &dyn PendingBytes,
    blob: &Blob,
) -> Vec<(u64, u64, u32)> {
    let (logical_offset, length, blob_offset) = piece;
    let chunk = u64::from(blob.csum_chunk());
    let device_offset = blob.device_offset + u64::from(blob_offset);
    if !pending.holds_any(device_offset, length) {
        return vec![piece];
    }
    let mut pieces = Vec::new();
    let mut done = 0;
    while done < length {
        let position = u64::from(blob_offset) + done;
        let take = (chunk - position % chunk).min(length - done);
        pieces.push((logical_offset + done, take, position as u32));
        done += take;
    }
    pieces
}

/// The whole-chunk device read serving `piece`, placed at `output_offset`.
fn device_read(
    id: super::BlobId,
    blob: &Blob,
    (logical_offset, length, blob_offset): (u64, u64, u32),
    output_offset: usize,
) -> (PieceRead, IoRequest) {
    let chunk = u64::from(blob.csum_chunk());
    let chunk_start = u64::from(blob_offset) / chunk * chunk;
    let chunk_end = (u64::from(blob_offset) + length).div_ceil(chunk) * chunk;
    let skip = u64::from(blob_offset) - chunk_start;
    let plan = PieceRead {
        output_offset,
        length: length as usize,
        skip: skip as usize,
        // Only for messages; a cloned extent may map a blob at an offset unaligned to its chunks.
        chunk_logical_offset: logical_offset.saturating_sub(skip),
        first_chunk: (chunk_start / chunk) as usize,
        blob: id,
    };
    let request = IoRequest::read(
        blob.device_offset + chunk_start,
        (chunk_end - chunk_start) as usize,
    );
    (plan, request)
}

fn verify_chunks(blob: &Blob, plan: &PieceRead, request: &IoRequest, object: &str) -> Result<()> {
    match mismatches(blob, plan, request).next() {
        None => Ok(()),
        Some(bad) => Err(Error::ChecksumMismatch {
            object: object.to_string(),
            object_offset: bad.object_offset,
            device_offset: bad.device_offset,
            expected: bad.expected,
            actual: bad.actual,
        }),
    }
}

/// A chunk whose bytes do not match the checksum its blob records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    /// Offset of the chunk within the object.
    pub object_offset: u64,
    /// Offset of the chunk on the device.
    pub device_offset: u64,
    /// Bytes of the chunk.
    pub length: u64,
    /// crc32c the blob records.
    pub expected: u32,
    /// crc32c of the bytes read.
    pub actual: u32,
}

/// Every chunk of `request` (read for `plan`) that fails its checksum.
fn mismatches<'a>(
    blob: &'a Blob,
    plan: &'a PieceRead,
    request: &'a IoRequest,
) -> impl Iterator<Item = Mismatch> + 'a {
    let chunk = blob.csum_chunk() as usize;
    let checked = blob.csum_type != CsumType::None;
    request
        .buf
        .chunks_exact(chunk)
        .enumerate()
        .filter(move |_| checked)
        .filter_map(move |(index, bytes)| {
            let expected = blob.csums[plan.first_chunk + index];
            let actual = crate::csum::chunk_crc(bytes);
            (actual != expected).then(|| Mismatch {
                object_offset: plan.chunk_logical_offset + (index * chunk) as u64,
                device_offset: request.device_offset + (index * chunk) as u64,
                length: chunk as u64,
                expected,
                actual,
            })
        })
}

/// The second half of a read for a scrub: reads the device and checks every chunk, returning
/// the bytes read from the device and every chunk that failed (a read stops at the first).
pub fn verify_read(
    device: &dyn BlockDevice,
    onode: &Onode,
    plan: ReadPlan,
) -> Result<(u64, Vec<Mismatch>)> {
    if plan.requests.is_empty() {
        return Ok((0, Vec::new()));
    }
    let completed = device.run(plan.requests)?;
    let bytes = completed
        .iter()
        .map(|request| request.buf.len() as u64)
        .sum();
    let bad = plan
        .plans
        .iter()
        .zip(&completed)
        .flat_map(|(piece, request)| {
            let blob = onode.extent_map.blob(piece.blob);
            mismatches(blob, piece, request).collect::<Vec<_>>()
        })
        .collect();
    Ok((bytes, bad))
}
