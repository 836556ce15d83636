//! Reading object data: extent map -> device ranges -> one batch of reads -> verified bytes.
//!
//! Every piece of data is read in whole checksum chunks, each chunk's crc32c is compared with the
//! one recorded in its blob, and only then are the wanted bytes copied out. A mismatch is an
//! error naming the object, the object offset and the device offset of the failing chunk; bytes
//! that failed their checksum are never returned. Holes read as zeros.

use crate::device::{BlockDevice, IoRequest};
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
    read_object_with(device, onode, offset, length, object, |_, _| false)
}

/// Like [`read_object`], but a piece whose device bytes `in_memory(device_offset, target)` can
/// supply (data not yet on the device: written by the transaction being prepared, or by one
/// still in flight) is copied from memory, not read.
pub fn read_object_with(
    device: &dyn BlockDevice,
    onode: &Onode,
    offset: u64,
    length: u64,
    object: &str,
    in_memory: impl Fn(u64, &mut [u8]) -> bool,
) -> Result<Vec<u8>> {
    let end = offset.saturating_add(length).min(onode.size);
    if offset >= end {
        return Ok(Vec::new());
    }
    let mut output = vec![0u8; (end - offset) as usize];
    let mut plans = Vec::new();
    let mut requests = Vec::new();
    for piece in onode.extent_map.pieces(offset, end - offset) {
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
        if in_memory(device_offset, &mut output[target..target + length as usize]) {
            continue;
        }
        let chunk = u64::from(record.csum_chunk());
        let chunk_start = u64::from(blob_offset) / chunk * chunk;
        let chunk_end = (u64::from(blob_offset) + length).div_ceil(chunk) * chunk;
        let skip = u64::from(blob_offset) - chunk_start;
        plans.push(PieceRead {
            output_offset: (logical_offset - offset) as usize,
            length: length as usize,
            skip: skip as usize,
            chunk_logical_offset: logical_offset - skip,
            first_chunk: (chunk_start / chunk) as usize,
            blob,
        });
        requests.push(IoRequest::read(
            record.device_offset + chunk_start,
            (chunk_end - chunk_start) as usize,
        ));
    }
    let completed = device.run(requests)?;
    for (plan, request) in plans.iter().zip(&completed) {
        let blob = onode.extent_map.blob(plan.blob);
        verify_chunks(blob, plan, request, object)?;
        output[plan.output_offset..plan.output_offset + plan.length]
            .copy_from_slice(&request.buf[plan.skip..plan.skip + plan.length]);
    }
    Ok(output)
}

fn verify_chunks(blob: &Blob, plan: &PieceRead, request: &IoRequest, object: &str) -> Result<()> {
    if blob.csum_type == CsumType::None {
        return Ok(());
    }
    let chunk = blob.csum_chunk() as usize;
    for (index, bytes) in request.buf.chunks_exact(chunk).enumerate() {
        let expected = blob.csums[plan.first_chunk + index];
        let actual = crate::csum::chunk_crc(bytes);
        if actual != expected {
            return Err(Error::ChecksumMismatch {
                object: object.to_string(),
                object_offset: plan.chunk_logical_offset + (index * chunk) as u64,
                device_offset: request.device_offset + (index * chunk) as u64,
                expected,
                actual,
            });
        }
    }
    Ok(())
}
