//! The versioned envelope every record is wrapped in (FORMAT.md §2).
//!
//! ```text
//! offset  size  field
//! 0       1     struct_version   version of the payload layout that wrote this record
//! 1       1     compat_version   oldest payload layout a reader must understand to decode it
//! 2       4     payload_length   le32, bytes of payload that follow
//! 6       n     payload
//! 6+n     4     crc32c           le32, over bytes [0, 6+n)
//! ```
//!
//! A reader that knows layout `v` accepts any record with `compat_version <= v`; fields a newer
//! writer appended past what `v` knows are skipped (the payload length says where they end).
//! A record with `compat_version > v` is a [`DecodeError::newer`] error, never a guess.

use super::codec::{DecodeError, Decoder, Encoder};

/// Bytes the envelope adds around a payload.
pub const ENVELOPE_OVERHEAD: usize = 10;

/// Bytes of the envelope header before the payload.
const HEADER_LENGTH: usize = 6;

/// The payload of a decoded envelope and the layout version that wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload<'a> {
    /// Layout version the writer used; fields beyond the reader's version are ignored.
    pub struct_version: u8,
    /// The payload bytes.
    pub bytes: &'a [u8],
}

/// Wraps `payload` in an envelope.
pub fn seal(struct_version: u8, compat_version: u8, payload: &[u8]) -> Vec<u8> {
    assert!(
        compat_version <= struct_version,
        "compat version above struct version"
    );
    let payload_length = u32::try_from(payload.len()).expect("records are far below 4 GiB");
    let mut e = Encoder::with_capacity(payload.len() + ENVELOPE_OVERHEAD);
    e.u8(struct_version);
    e.u8(compat_version);
    e.u32(payload_length);
    e.raw(payload);
    let mut bytes = e.finish();
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// Checks the envelope of `bytes` and returns its payload.
///
/// `supported_version` is the newest payload layout this build knows for the record type.
pub fn open<'a>(
    record: &'static str,
    supported_version: u8,
    bytes: &'a [u8],
) -> Result<Payload<'a>, DecodeError> {
    let mut d = Decoder::new(record, bytes);
    let struct_version = d.u8("struct_version")?;
    let compat_version = d.u8("compat_version")?;
    let payload_length = d.u32("payload_length")? as usize;
    if compat_version > struct_version {
        return Err(d.error(format!(
            "compat version {compat_version} above struct version {struct_version}"
        )));
    }
    if compat_version > supported_version {
        return Err(DecodeError::newer(
            record,
            u32::from(compat_version),
            u32::from(supported_version),
        ));
    }
    let payload = d.raw(payload_length, "payload")?;
    let crc_stored = d.u32("crc32c")?;
    d.finish()?;
    let covered = bytes
        .get(..HEADER_LENGTH + payload_length)
        .ok_or_else(|| DecodeError::new(record, "envelope shorter than its header"))?;
    let crc_computed = crc32c::crc32c(covered);
    if crc_stored != crc_computed {
        return Err(DecodeError::new(
            record,
            format!("crc32c mismatch: stored {crc_stored:#010x}, computed {crc_computed:#010x}"),
        ));
    }
    Ok(Payload {
        struct_version,
        bytes: payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_payload_and_version() {
        let sealed = seal(3, 1, b"hello");
        assert_eq!(sealed.len(), 5 + ENVELOPE_OVERHEAD);
        let payload = open("test", 1, &sealed).unwrap();
        assert_eq!(payload.bytes, b"hello");
        assert_eq!(payload.struct_version, 3);
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let sealed = seal(1, 1, b"some payload bytes");
        for bit in 0..sealed.len() * 8 {
            let mut copy = sealed.clone();
            copy[bit / 8] ^= 1 << (bit % 8);
            assert!(
                open("test", 1, &copy).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn newer_compat_version_is_a_newer_format_error() {
        let sealed = seal(5, 4, b"x");
        let err = open("test", 3, &sealed).unwrap_err();
        assert_eq!(err.newer_version, Some((4, 3)));
    }

    #[test]
    fn trailing_bytes_are_corruption() {
        let mut sealed = seal(1, 1, b"x");
        sealed.push(0);
        assert!(open("test", 1, &sealed).is_err());
    }
}
