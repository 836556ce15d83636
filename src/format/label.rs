//! The device label: the first 4 KiB of the data device (FORMAT.md §3).
//!
//! ```text
//! offset  size   field
//! 0       16     magic "bstore blockdev\n"
//! 16      10+n   envelope (struct 1, compat 1) around the payload below
//! ...            zero padding to 4096
//!
//! payload:
//!   u32  format_version     on-disk format of the whole store (label, KV records, key schema)
//!   16   store_uuid
//!   u64  device_size        bytes of the device the store uses
//!   u32  min_alloc_size     allocation unit, fixed at mkfs
//!   u64  created_secs       creation time, seconds since the Unix epoch
//!   u32  created_nanos
//!   u16  meta_count         <= LABEL_META_COUNT_MAX
//!   meta_count x { u16 key_length, key, u16 value_length, value }
//! ```
//!
//! The label is the first thing mount reads: it tells a bstore device from a blank or foreign
//! one, refuses a store made by a newer format, and ties the device to its RocksDB (the
//! superblock repeats the uuid).

use std::collections::BTreeMap;

use super::codec::{DecodeError, Decoder, Encoder};
use super::envelope;
use super::{FORMAT_VERSION, FORMAT_VERSION_FIRST, LABEL_LENGTH, LABEL_MAGIC};

/// Most meta entries a label may carry.
pub const LABEL_META_COUNT_MAX: usize = 64;
/// Longest meta key or value.
pub const LABEL_META_LENGTH_MAX: usize = 256;

const LABEL_STRUCT_VERSION: u8 = 1;
const LABEL_COMPAT_VERSION: u8 = 1;
const RECORD: &str = "label";

/// The decoded label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// On-disk format version of the store.
    pub format_version: u32,
    /// Identity of the store; repeated in the KV superblock.
    pub store_uuid: [u8; 16],
    /// Bytes of the device the store uses (a larger device is not grown into).
    pub device_size: u64,
    /// Allocation unit in bytes.
    pub min_alloc_size: u32,
    /// Creation time, seconds since the Unix epoch.
    pub created_secs: u64,
    /// Creation time, nanoseconds within the second.
    pub created_nanos: u32,
    /// Free-form metadata (for example the tool version that created the store).
    pub meta: BTreeMap<String, String>,
}

/// Why a label could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelError {
    /// The first 4 KiB are all zero: never formatted.
    Blank,
    /// The magic does not match: another program's data.
    Foreign {
        /// Printable start of what was found, for the error message.
        found: String,
    },
    /// The magic matches but the label fails its checks.
    Corrupt(DecodeError),
    /// The store was made by a newer format.
    Newer {
        /// Version on disk.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
}

impl Label {
    /// Encodes the label into exactly [`LABEL_LENGTH`] bytes.
    pub fn encode(&self) -> Vec<u8> {
        assert!(
            self.meta.len() <= LABEL_META_COUNT_MAX,
            "too many label meta entries"
        );
        let mut p = Encoder::new();
        p.u32(self.format_version);
        p.raw(&self.store_uuid);
        p.u64(self.device_size);
        p.u32(self.min_alloc_size);
        p.u64(self.created_secs);
        p.u32(self.created_nanos);
        p.u16(u16::try_from(self.meta.len()).expect("bounded above"));
        for (key, value) in &self.meta {
            assert!(key.len() <= LABEL_META_LENGTH_MAX && value.len() <= LABEL_META_LENGTH_MAX);
            p.bytes16(key.as_bytes());
            p.bytes16(value.as_bytes());
        }
        let sealed = envelope::seal(LABEL_STRUCT_VERSION, LABEL_COMPAT_VERSION, &p.finish());
        let mut bytes = Vec::with_capacity(LABEL_LENGTH);
        bytes.extend_from_slice(LABEL_MAGIC);
        bytes.extend_from_slice(&sealed);
        assert!(bytes.len() <= LABEL_LENGTH, "label overflows its 4 KiB");
        bytes.resize(LABEL_LENGTH, 0);
        bytes
    }

    /// Decodes a label from the first bytes of a device.
    pub fn decode(bytes: &[u8]) -> Result<Label, LabelError> {
        let Some(magic) = bytes.get(..LABEL_MAGIC.len()) else {
            return Err(LabelError::Corrupt(DecodeError::new(
                RECORD,
                "shorter than the magic",
            )));
        };
        if magic != LABEL_MAGIC {
            if bytes.iter().all(|b| *b == 0) {
                return Err(LabelError::Blank);
            }
            return Err(LabelError::Foreign {
                found: printable_prefix(bytes),
            });
        }
        let rest = bytes.get(LABEL_MAGIC.len()..).unwrap_or_default();
        let sealed = envelope_prefix(rest).map_err(LabelError::Corrupt)?;
        let payload = envelope::open(RECORD, LABEL_STRUCT_VERSION, sealed).map_err(|e| match e
            .newer_version
        {
            Some((found, supported)) => LabelError::Newer { found, supported },
            None => LabelError::Corrupt(e),
        })?;
        let label = decode_payload(payload.bytes).map_err(LabelError::Corrupt)?;
        if label.format_version < FORMAT_VERSION_FIRST {
            // A crc-valid label no bstore ever wrote: a bug or a forgery, never a store.
            return Err(LabelError::Corrupt(DecodeError::new(
                RECORD,
                format!(
                    "format_version {} was never written by bstore (the first is {FORMAT_VERSION_FIRST})",
                    label.format_version
                ),
            )));
        }
        if label.format_version > FORMAT_VERSION {
            return Err(LabelError::Newer {
                found: label.format_version,
                supported: FORMAT_VERSION,
            });
        }
        Ok(label)
    }
}

/// The envelope inside the label is followed by zero padding; cut it at its own length.
fn envelope_prefix(bytes: &[u8]) -> Result<&[u8], DecodeError> {
    let mut d = Decoder::new(RECORD, bytes);
    d.u16("versions")?;
    let payload_length = d.u32("payload_length")? as usize;
    let total = payload_length
        .checked_add(envelope::ENVELOPE_OVERHEAD)
        .filter(|total| *total <= LABEL_LENGTH - LABEL_MAGIC.len())
        .ok_or_else(|| {
            d.error(format!(
                "payload length {payload_length} overflows the label"
            ))
        })?;
    bytes.get(..total).ok_or_else(|| d.error("label truncated"))
}

fn decode_payload(bytes: &[u8]) -> Result<Label, DecodeError> {
    let mut d = Decoder::new(RECORD, bytes);
    let format_version = d.u32("format_version")?;
    let store_uuid = d.array::<16>("store_uuid")?;
    let device_size = d.u64("device_size")?;
    let min_alloc_size = d.u32("min_alloc_size")?;
    let created_secs = d.u64("created_secs")?;
    let created_nanos = d.u32("created_nanos")?;
    let meta_count = d.u16("meta_count")? as usize;
    if meta_count > LABEL_META_COUNT_MAX {
        return Err(d.error(format!(
            "meta_count {meta_count} exceeds {LABEL_META_COUNT_MAX}"
        )));
    }
    let mut meta = BTreeMap::new();
    for _ in 0..meta_count {
        let key = d.bytes16("meta key", LABEL_META_LENGTH_MAX)?;
        let key = utf8(&d, key)?;
        let value = d.bytes16("meta value", LABEL_META_LENGTH_MAX)?;
        let value = utf8(&d, value)?;
        meta.insert(key, value);
    }
    // A newer struct version may append fields; version 1 ends here.
    Ok(Label {
        format_version,
        store_uuid,
        device_size,
        min_alloc_size,
        created_secs,
        created_nanos,
        meta,
    })
}

fn utf8(d: &Decoder<'_>, bytes: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| d.error("meta entry is not UTF-8"))
}

fn printable_prefix(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(32)
        .map(|b| {
            if b.is_ascii_graphic() || *b == b' ' {
                char::from(*b)
            } else {
                '.'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Label {
        Label {
            format_version: FORMAT_VERSION,
            store_uuid: *b"0123456789abcdef",
            device_size: 1 << 30,
            min_alloc_size: 4096,
            created_secs: 1_700_000_000,
            created_nanos: 5,
            meta: BTreeMap::from([("created_by".into(), "bstore test".into())]),
        }
    }

    #[test]
    fn round_trip() {
        let bytes = sample().encode();
        assert_eq!(bytes.len(), LABEL_LENGTH);
        assert_eq!(Label::decode(&bytes).unwrap(), sample());
    }

    #[test]
    fn zeroes_are_blank() {
        assert_eq!(Label::decode(&[0u8; LABEL_LENGTH]), Err(LabelError::Blank));
    }

    #[test]
    fn another_programs_bytes_are_foreign() {
        let mut bytes = vec![0u8; LABEL_LENGTH];
        bytes[..23].copy_from_slice(b"bluestore block device\n");
        match Label::decode(&bytes) {
            Err(LabelError::Foreign { found }) => assert!(found.starts_with("bluestore")),
            other => panic!("expected Foreign, got {other:?}"),
        }
    }

    #[test]
    fn a_flipped_bit_is_corrupt() {
        let mut bytes = sample().encode();
        bytes[40] ^= 0x10;
        assert!(matches!(Label::decode(&bytes), Err(LabelError::Corrupt(_))));
    }

    #[test]
    fn a_format_version_never_written_is_corrupt() {
        let mut label = sample();
        label.format_version = 0;
        match Label::decode(&label.encode()) {
            Err(LabelError::Corrupt(e)) => assert!(e.detail.contains("never written"), "{e:?}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn a_newer_format_version_is_refused() {
        let mut label = sample();
        label.format_version = FORMAT_VERSION + 1;
        assert_eq!(
            Label::decode(&label.encode()),
            Err(LabelError::Newer {
                found: FORMAT_VERSION + 1,
                supported: FORMAT_VERSION
            })
        );
    }
}
