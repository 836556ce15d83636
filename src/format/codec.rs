//! The one way integers and byte strings go to disk: little-endian, explicit widths.
//!
//! `Encoder` appends to a `Vec<u8>`; `Decoder` reads from a slice and never panics: every read
//! is bounds-checked and returns a [`DecodeError`] naming the record and the field that was short
//! or out of range. Decoders of records bound every count they read by a constant from the
//! format spec *before* allocating, so a corrupt length can never ask for gigabytes.

use std::fmt;

/// Why a record failed to decode. Carries the record and field names so the message an operator
/// sees says exactly which structure was bad.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Record type, e.g. "onode".
    pub record: &'static str,
    /// What was wrong, e.g. "xattr count 70000 exceeds 1024".
    pub detail: String,
    /// A newer-format error carries the version found, so callers can map it to `NewerFormat`.
    pub newer_version: Option<(u32, u32)>,
}

impl DecodeError {
    /// A structural error in `record`.
    pub fn new(record: &'static str, detail: impl Into<String>) -> Self {
        DecodeError {
            record,
            detail: detail.into(),
            newer_version: None,
        }
    }

    /// The record was written by a newer format this build cannot read.
    pub fn newer(record: &'static str, found: u32, supported: u32) -> Self {
        DecodeError {
            record,
            detail: format!("compat version {found} is newer than supported {supported}"),
            newer_version: Some((found, supported)),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} record: {}", self.record, self.detail)
    }
}

impl std::error::Error for DecodeError {}

impl From<DecodeError> for crate::Error {
    fn from(e: DecodeError) -> Self {
        match e.newer_version {
            Some((found, supported)) => crate::Error::NewerFormat {
                what: format!("{} record", e.record),
                found,
                supported,
            },
            None => crate::Error::Corruption(e.to_string()),
        }
    }
}

/// Appends fixed-width little-endian fields to a buffer.
#[derive(Debug, Default)]
pub struct Encoder {
    bytes: Vec<u8>,
}

impl Encoder {
    /// An empty encoder.
    pub fn new() -> Self {
        Encoder { bytes: Vec::new() }
    }

    /// An empty encoder with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Encoder {
            bytes: Vec::with_capacity(capacity),
        }
    }

    /// Appends one byte.
    pub fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    /// Appends a little-endian u16.
    pub fn u16(&mut self, value: u16) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    /// Appends a little-endian u32.
    pub fn u32(&mut self, value: u32) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    /// Appends little-endian u32s.
    pub fn u32s(&mut self, values: &[u32]) {
        self.bytes.reserve(values.len() * 4);
        for value in values {
            self.bytes.extend_from_slice(&value.to_le_bytes());
        }
    }

    /// Appends a little-endian u64.
    pub fn u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    /// Appends raw bytes (the caller has written their length, or it is fixed).
    pub fn raw(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// Appends a u16 length then the bytes. The caller validated the length beforehand.
    pub fn bytes16(&mut self, bytes: &[u8]) {
        let length = u16::try_from(bytes.len()).expect("caller bounds byte strings to u16");
        self.u16(length);
        self.raw(bytes);
    }

    /// Appends a u32 length then the bytes. The caller validated the length beforehand.
    pub fn bytes32(&mut self, bytes: &[u8]) {
        let length = u32::try_from(bytes.len()).expect("caller bounds byte strings to u32");
        self.u32(length);
        self.raw(bytes);
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads fixed-width little-endian fields from a slice, failing (never panicking) when short.
#[derive(Debug)]
pub struct Decoder<'a> {
    bytes: &'a [u8],
    position: usize,
    record: &'static str,
}

impl<'a> Decoder<'a> {
    /// A decoder over `bytes` for a record named `record` (used in error messages).
    pub fn new(record: &'static str, bytes: &'a [u8]) -> Self {
        Decoder {
            bytes,
            position: 0,
            record,
        }
    }

    /// An error for this record.
    pub fn error(&self, detail: impl Into<String>) -> DecodeError {
        DecodeError::new(self.record, detail)
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    /// Current read offset within the record.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Takes the next `length` bytes.
    pub fn raw(&mut self, length: usize, field: &str) -> Result<&'a [u8], DecodeError> {
        let short = || {
            self.error(format!(
                "{field}: needs {length} bytes at offset {}, {} left",
                self.position,
                self.remaining()
            ))
        };
        let end = self.position.checked_add(length).ok_or_else(short)?;
        let slice = self.bytes.get(self.position..end).ok_or_else(short)?;
        self.position = end;
        Ok(slice)
    }

    /// Takes `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], DecodeError> {
        let slice = self.raw(N, field)?;
        <[u8; N]>::try_from(slice).map_err(|_| self.error(format!("{field}: short array")))
    }

    /// Reads one byte.
    pub fn u8(&mut self, field: &str) -> Result<u8, DecodeError> {
        let [byte] = self.array::<1>(field)?;
        Ok(byte)
    }

    /// Reads a little-endian u16.
    pub fn u16(&mut self, field: &str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    /// Reads a little-endian u32.
    pub fn u32(&mut self, field: &str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    /// Reads a little-endian u64.
    pub fn u64(&mut self, field: &str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// Reads a count and checks it against the format's limit before anything is allocated.
    pub fn count32(&mut self, field: &str, count_max: usize) -> Result<usize, DecodeError> {
        let count = self.u32(field)? as usize;
        if count > count_max {
            return Err(self.error(format!("{field} {count} exceeds {count_max}")));
        }
        Ok(count)
    }

    /// Reads a u16-length-prefixed byte string of at most `length_max` bytes.
    pub fn bytes16(&mut self, field: &str, length_max: usize) -> Result<&'a [u8], DecodeError> {
        let length = self.u16(field)? as usize;
        if length > length_max {
            return Err(self.error(format!("{field} length {length} exceeds {length_max}")));
        }
        self.raw(length, field)
    }

    /// Reads a u32-length-prefixed byte string of at most `length_max` bytes.
    pub fn bytes32(&mut self, field: &str, length_max: usize) -> Result<&'a [u8], DecodeError> {
        let length = self.u32(field)? as usize;
        if length > length_max {
            return Err(self.error(format!("{field} length {length} exceeds {length_max}")));
        }
        self.raw(length, field)
    }

    /// Fails unless every byte was consumed: trailing garbage is corruption.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.remaining() != 0 {
            return Err(self.error(format!("{} unexpected trailing bytes", self.remaining())));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_round_trip_little_endian() {
        let mut e = Encoder::new();
        e.u8(0xab);
        e.u16(0x1234);
        e.u32(0xdead_beef);
        e.u64(0x0102_0304_0506_0708);
        let bytes = e.finish();
        assert_eq!(&bytes[1..3], &[0x34, 0x12], "u16 is little-endian");
        let mut d = Decoder::new("test", &bytes);
        assert_eq!(d.u8("a").unwrap(), 0xab);
        assert_eq!(d.u16("b").unwrap(), 0x1234);
        assert_eq!(d.u32("c").unwrap(), 0xdead_beef);
        assert_eq!(d.u64("d").unwrap(), 0x0102_0304_0506_0708);
        d.finish().unwrap();
    }

    #[test]
    fn short_input_is_an_error_naming_the_field() {
        let mut d = Decoder::new("test", &[1, 2, 3]);
        let err = d.u32("width").unwrap_err();
        assert!(err.detail.contains("width"), "{err}");
    }

    #[test]
    fn oversized_count_is_rejected_before_allocation() {
        let bytes = u32::MAX.to_le_bytes();
        let mut d = Decoder::new("test", &bytes);
        assert!(d.count32("items", 10).is_err());
    }
}
