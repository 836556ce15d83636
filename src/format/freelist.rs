//! Freelist bitmap values and their XOR merge operands (FORMAT.md §7).
//!
//! The freelist key space maps a region index to a bitmap of `blocks_per_key` allocation units,
//! least-significant bit first (bit `i` of the region is bit `i % 8` of byte `i / 8`); a set bit
//! means *allocated*. A value may be shorter than the region: missing bytes are zero (free).
//!
//! Allocations and releases are written as merge operands, never read-modify-write:
//!
//! ```text
//! operand: u32 byte_offset, then n bytes to XOR into the value starting at byte_offset
//! ```
//!
//! Allocating and freeing are the same operation (flip the bits), as in BlueStore's bitmap
//! freelist, but an operand carries only the bytes it touches, so a 4 KiB allocation costs a few
//! bytes of WAL however large the region is. XOR is associative and commutative, so RocksDB may
//! fold operands in any grouping.

use super::FREELIST_BLOCKS_PER_KEY_MAX;
use super::codec::{DecodeError, Decoder, Encoder};

/// Largest bitmap value in bytes.
pub const FREELIST_VALUE_LENGTH_MAX: usize = FREELIST_BLOCKS_PER_KEY_MAX as usize / 8;

/// Encodes an operand that XORs `bits` into a value starting at `byte_offset`.
pub fn encode_operand(byte_offset: u32, bits: &[u8]) -> Vec<u8> {
    assert!(byte_offset as usize + bits.len() <= FREELIST_VALUE_LENGTH_MAX);
    let mut e = Encoder::with_capacity(4 + bits.len());
    e.u32(byte_offset);
    e.raw(bits);
    e.finish()
}

/// Splits an operand into its byte offset and XOR bytes.
pub fn decode_operand(operand: &[u8]) -> Result<(usize, &[u8]), DecodeError> {
    let mut d = Decoder::new("freelist operand", operand);
    let byte_offset = d.u32("byte_offset")? as usize;
    let bits = d.raw(d.remaining(), "bits")?;
    if byte_offset + bits.len() > FREELIST_VALUE_LENGTH_MAX {
        return Err(d.error(format!(
            "operand covers bytes {byte_offset}..{} past {FREELIST_VALUE_LENGTH_MAX}",
            byte_offset + bits.len()
        )));
    }
    Ok((byte_offset, bits))
}

/// Checks a stored bitmap value's length.
pub fn check_value(value: &[u8]) -> Result<(), DecodeError> {
    if value.len() > FREELIST_VALUE_LENGTH_MAX {
        return Err(DecodeError::new(
            "freelist value",
            format!("{} bytes exceed {FREELIST_VALUE_LENGTH_MAX}", value.len()),
        ));
    }
    Ok(())
}

/// XORs every operand into `existing` and returns the new value (RocksDB full merge).
pub fn full_merge<'a>(
    existing: Option<&[u8]>,
    operands: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<u8>, DecodeError> {
    let mut value = existing.map(<[u8]>::to_vec).unwrap_or_default();
    check_value(&value)?;
    for operand in operands {
        let (byte_offset, bits) = decode_operand(operand)?;
        xor_into(&mut value, byte_offset, bits);
    }
    Ok(value)
}

/// Folds operands into one operand covering their union (RocksDB partial merge).
pub fn partial_merge<'a>(
    operands: impl IntoIterator<Item = &'a [u8]> + Clone,
) -> Result<Vec<u8>, DecodeError> {
    let mut start = usize::MAX;
    let mut end = 0usize;
    for operand in operands.clone() {
        let (byte_offset, bits) = decode_operand(operand)?;
        start = start.min(byte_offset);
        end = end.max(byte_offset + bits.len());
    }
    if start > end {
        return Ok(encode_operand(0, &[]));
    }
    let mut window = vec![0u8; end - start];
    for operand in operands {
        let (byte_offset, bits) = decode_operand(operand)?;
        xor_into(&mut window, byte_offset - start, bits);
    }
    let start = u32::try_from(start).map_err(|_| DecodeError::new("freelist operand", "offset"))?;
    Ok(encode_operand(start, &window))
}

fn xor_into(value: &mut Vec<u8>, byte_offset: usize, bits: &[u8]) {
    let end = byte_offset + bits.len();
    if value.len() < end {
        value.resize(end, 0);
    }
    for (target, bit) in value.iter_mut().skip(byte_offset).zip(bits) {
        *target ^= *bit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_merge_xors_operands_into_a_growing_value() {
        let a = encode_operand(0, &[0b0000_0011]);
        let b = encode_operand(2, &[0xff]);
        let merged = full_merge(None, [&a[..], &b[..]]).unwrap();
        assert_eq!(merged, vec![0b11, 0, 0xff]);
        let cleared = full_merge(Some(&merged), [&a[..]]).unwrap();
        assert_eq!(cleared, vec![0, 0, 0xff], "XOR twice frees again");
    }

    #[test]
    fn partial_then_full_equals_full() {
        let ops = [
            encode_operand(1, &[0x0f, 0xf0]),
            encode_operand(0, &[0x01]),
            encode_operand(2, &[0x01]),
        ];
        let refs: Vec<&[u8]> = ops.iter().map(Vec::as_slice).collect();
        let direct = full_merge(Some(&[0xaa]), refs.iter().copied()).unwrap();
        let folded = partial_merge(refs.iter().copied()).unwrap();
        let via_partial = full_merge(Some(&[0xaa]), [&folded[..]]).unwrap();
        assert_eq!(direct, via_partial);
    }

    #[test]
    fn operand_past_the_region_is_rejected() {
        let mut operand = (FREELIST_VALUE_LENGTH_MAX as u32).to_le_bytes().to_vec();
        operand.push(1);
        assert!(decode_operand(&operand).is_err());
    }
}
