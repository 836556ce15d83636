//! The commit journal's records (FORMAT.md §11): one group commit each, in a ring on the data
//! device.
//!
//! ```text
//! header, 64 bytes, at a JOURNAL_BLOCK-aligned ring position:
//!   0   8  magic "bstorejr"
//!   8   1  struct_version (1)
//!   9   1  compat_version (1)
//!   10  1  kind: 1 commit (the only kind defined)
//!   11  1  reserved, 0
//!   12  4  padded_length: bytes of the record, header included, a multiple of JOURNAL_BLOCK
//!   16  8  sequence: 1 for the first record, then +1 per record, never reused
//!   24  16 store_uuid
//!   40  4  payload_length
//!   44  4  payload_crc32c
//!   48  12 reserved, 0
//!   60  4  header_crc32c over the store's 8-byte journal salt (little-endian) and bytes [0, 60)
//! payload (commit records):
//!   u32 check_count (<= JOURNAL_CHECKS_MAX), per check: u64 device_offset, u32 length, u32 crc32c
//!   u32 op_count (<= JOURNAL_OPS_MAX), per op:
//!     u8 kind (1 put, 2 delete, 3 delete range, 4 merge), u8 key space (FORMAT.md §4 order),
//!     u32 key length, key, u32 value length, value (delete: empty; delete range: the end key)
//! zero padding to padded_length
//! ```
//!
//! A record is valid only whole: magic, both checksums, the store's uuid and the expected
//! sequence; anything else ends the log or, followed by a valid later record, is damage. The
//! header's checksum is salted with a random value from the superblock, which clients never
//! see: object data that lands in the ring (deferred writes travel in records, and stale
//! records stay behind the head) can never pass for a record, however it was crafted.
//! Checks name the data a commit's metadata points at (new blobs written before it), so that
//! replay can tell a last record whose data never reached the media from a durable one.

use super::codec::{DecodeError, Decoder, Encoder};

/// Records start at ring positions that are multiples of this, and are padded to it.
pub const JOURNAL_BLOCK: u64 = 4096;
/// Bytes of a record header.
pub const JOURNAL_HEADER_LENGTH: usize = 64;
/// Magic of every record.
pub const JOURNAL_MAGIC: &[u8; 8] = b"bstorejr";
/// Most ops one record carries.
pub const JOURNAL_OPS_MAX: usize = 1 << 20;
/// Most data checks one record carries.
pub const JOURNAL_CHECKS_MAX: usize = 1 << 16;
/// Longest key or value in a record.
pub const JOURNAL_ITEM_LENGTH_MAX: usize = 16 << 20;

const STRUCT_VERSION: u8 = 1;
const COMPAT_VERSION: u8 = 1;
const RECORD: &str = "journal record";

/// The kind byte of a commit record.
const KIND_COMMIT: u8 = 1;

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Bytes the record occupies in the ring.
    pub padded_length: u32,
    /// Its sequence number.
    pub sequence: u64,
    /// The store it belongs to.
    pub store_uuid: [u8; 16],
    /// Bytes of payload after the header.
    pub payload_length: u32,
    /// crc32c of the payload.
    pub payload_crc: u32,
}

/// One KV change in a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalOp {
    /// 1 put, 2 delete, 3 delete range, 4 merge.
    pub kind: OpKind,
    /// Index of the key space (FORMAT.md §4 order).
    pub space: u8,
    /// Key (delete range: first key removed).
    pub key: Vec<u8>,
    /// Value (delete: empty; delete range: the first key kept; merge: the operand).
    pub value: Vec<u8>,
}

/// Kinds of KV change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// Set a key.
    Put,
    /// Remove a key.
    Delete,
    /// Remove a range of keys.
    DeleteRange,
    /// Merge an operand into a key.
    Merge,
}

impl OpKind {
    fn code(self) -> u8 {
        match self {
            OpKind::Put => 1,
            OpKind::Delete => 2,
            OpKind::DeleteRange => 3,
            OpKind::Merge => 4,
        }
    }

    fn from_code(code: u8) -> Option<OpKind> {
        Some(match code {
            1 => OpKind::Put,
            2 => OpKind::Delete,
            3 => OpKind::DeleteRange,
            4 => OpKind::Merge,
            _ => return None,
        })
    }
}

/// Data a commit's metadata points at: `length` bytes at `device_offset` with this crc32c.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataCheck {
    /// Where the data is.
    pub device_offset: u64,
    /// Bytes.
    pub length: u32,
    /// crc32c of them.
    pub crc: u32,
}

/// A decoded commit payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPayload {
    /// Data to verify before trusting the record as the log's last.
    pub checks: Vec<DataCheck>,
    /// The KV changes, in order.
    pub ops: Vec<JournalOp>,
}

/// A borrowed op, for encoding without copies.
#[derive(Debug, Clone, Copy)]
pub struct OpRef<'a> {
    /// Kind.
    pub kind: OpKind,
    /// Key space index.
    pub space: u8,
    /// Key.
    pub key: &'a [u8],
    /// Value.
    pub value: &'a [u8],
}

/// Encodes a commit payload.
pub fn encode_commit<'a>(
    checks: &[DataCheck],
    ops: impl ExactSizeIterator<Item = OpRef<'a>>,
) -> Vec<u8> {
    let mut e = Encoder::new();
    e.u32(u32::try_from(checks.len()).expect("bounded by the pipeline"));
    for check in checks {
        e.u64(check.device_offset);
        e.u32(check.length);
        e.u32(check.crc);
    }
    e.u32(u32::try_from(ops.len()).expect("bounded by the pipeline"));
    for op in ops {
        e.u8(op.kind.code());
        e.u8(op.space);
        e.bytes32(op.key);
        e.bytes32(op.value);
    }
    e.finish()
}

/// Decodes a commit payload; `space_count` bounds the key-space indexes.
pub fn decode_commit(bytes: &[u8], space_count: u8) -> Result<CommitPayload, DecodeError> {
    let mut d = Decoder::new(RECORD, bytes);
    let check_count = d.count32("check_count", JOURNAL_CHECKS_MAX)?;
    let mut checks = Vec::with_capacity(check_count.min(d.remaining() / 16));
    for _ in 0..check_count {
        checks.push(DataCheck {
            device_offset: d.u64("check device_offset")?,
            length: d.u32("check length")?,
            crc: d.u32("check crc")?,
        });
    }
    let op_count = d.count32("op_count", JOURNAL_OPS_MAX)?;
    let mut ops = Vec::with_capacity(op_count.min(d.remaining() / 10));
    for _ in 0..op_count {
        let code = d.u8("op kind")?;
        let kind = OpKind::from_code(code).ok_or_else(|| d.error(format!("op kind {code}")))?;
        let space = d.u8("op key space")?;
        if space >= space_count {
            return Err(d.error(format!("key space {space}")));
        }
        let key = d.bytes32("op key", JOURNAL_ITEM_LENGTH_MAX)?.to_vec();
        let value = d.bytes32("op value", JOURNAL_ITEM_LENGTH_MAX)?.to_vec();
        ops.push(JournalOp {
            kind,
            space,
            key,
            value,
        });
    }
    d.finish()?;
    Ok(CommitPayload { checks, ops })
}

/// The whole record: header, payload, zero padding to a multiple of [`JOURNAL_BLOCK`].
pub fn encode_record(
    sequence: u64,
    (store_uuid, salt): (&[u8; 16], u64),
    payload: &[u8],
) -> Vec<u8> {
    let length = (JOURNAL_HEADER_LENGTH + payload.len()) as u64;
    let padded = length.next_multiple_of(JOURNAL_BLOCK);
    let mut e = Encoder::with_capacity(padded as usize);
    e.raw(JOURNAL_MAGIC);
    e.u8(STRUCT_VERSION);
    e.u8(COMPAT_VERSION);
    e.u8(KIND_COMMIT);
    e.u8(0);
    e.u32(u32::try_from(padded).expect("records are far below 4 GiB"));
    e.u64(sequence);
    e.raw(store_uuid);
    e.u32(payload.len() as u32);
    e.u32(crc32c::crc32c(payload));
    e.raw(&[0; 12]);
    let mut bytes = e.finish();
    let crc = header_crc(salt, &bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes.resize(padded as usize, 0);
    bytes
}

/// crc32c of the salt and the first 60 header bytes.
fn header_crc(salt: u64, header: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&salt.to_le_bytes()), header)
}

/// Decodes a header from the first [`JOURNAL_HEADER_LENGTH`] bytes at a ring position.
pub fn decode_header(bytes: &[u8], salt: u64) -> Result<RecordHeader, DecodeError> {
    let header = bytes
        .get(..JOURNAL_HEADER_LENGTH)
        .ok_or_else(|| DecodeError::new(RECORD, "shorter than a header"))?;
    let mut d = Decoder::new(RECORD, header);
    if d.raw(8, "magic")? != JOURNAL_MAGIC {
        return Err(d.error("no record magic"));
    }
    let struct_version = d.u8("struct_version")?;
    let compat_version = d.u8("compat_version")?;
    let kind = d.u8("kind")?;
    d.u8("reserved")?;
    let padded_length = d.u32("padded_length")?;
    let sequence = d.u64("sequence")?;
    let store_uuid = d.array::<16>("store_uuid")?;
    let payload_length = d.u32("payload_length")?;
    let payload_crc = d.u32("payload_crc")?;
    d.raw(12, "reserved")?;
    let recorded = d.u32("header_crc")?;
    let covered = header
        .first_chunk::<{ JOURNAL_HEADER_LENGTH - 4 }>()
        .ok_or_else(|| DecodeError::new(RECORD, "shorter than a header"))?;
    let computed = header_crc(salt, covered);
    if recorded != computed {
        return Err(d.error(format!(
            "header crc32c {recorded:#010x}, computed {computed:#010x}"
        )));
    }
    if kind != KIND_COMMIT {
        return Err(d.error(format!("kind {kind}")));
    }
    if compat_version > STRUCT_VERSION || struct_version < compat_version {
        return Err(DecodeError::newer(
            RECORD,
            u32::from(compat_version),
            u32::from(STRUCT_VERSION),
        ));
    }
    let fits = u64::from(payload_length) + JOURNAL_HEADER_LENGTH as u64 <= u64::from(padded_length);
    if !fits || !u64::from(padded_length).is_multiple_of(JOURNAL_BLOCK) || padded_length == 0 {
        return Err(d.error(format!(
            "payload of {payload_length} bytes in a record of {padded_length}"
        )));
    }
    Ok(RecordHeader {
        padded_length,
        sequence,
        store_uuid,
        payload_length,
        payload_crc,
    })
}

/// The payload of a record whose header decoded, from the record's bytes, if its crc matches.
pub fn payload_of<'a>(header: &RecordHeader, record: &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let start = JOURNAL_HEADER_LENGTH;
    let end = start + header.payload_length as usize;
    let payload = record
        .get(start..end)
        .ok_or_else(|| DecodeError::new(RECORD, "record shorter than its payload"))?;
    let computed = crc32c::crc32c(payload);
    if computed != header.payload_crc {
        return Err(DecodeError::new(
            RECORD,
            format!(
                "payload crc32c {:#010x}, computed {computed:#010x}",
                header.payload_crc
            ),
        ));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_payload() -> Vec<u8> {
        let checks = [DataCheck {
            device_offset: 0x10_0000,
            length: 4096,
            crc: 0xdead_beef,
        }];
        let ops = [
            OpRef {
                kind: OpKind::Put,
                space: 2,
                key: b"key",
                value: b"value",
            },
            OpRef {
                kind: OpKind::DeleteRange,
                space: 4,
                key: b"a",
                value: b"b",
            },
        ];
        encode_commit(&checks, ops.into_iter())
    }

    #[test]
    fn a_record_round_trips_and_is_padded_to_a_block() {
        let payload = sample_payload();
        let record = encode_record(7, (&[3; 16], 99), &payload);
        assert_eq!(record.len() as u64 % JOURNAL_BLOCK, 0);
        let header = decode_header(&record, 99).unwrap();
        assert!(
            decode_header(&record, 98).is_err(),
            "another salt: not a record"
        );
        assert_eq!(header.sequence, 7);
        let decoded = decode_commit(payload_of(&header, &record).unwrap(), 9).unwrap();
        assert_eq!(decoded.checks[0].crc, 0xdead_beef);
        assert_eq!(decoded.ops[1].kind, OpKind::DeleteRange);
        assert_eq!(decoded.ops[0].value, b"value");
    }

    #[test]
    fn any_flipped_byte_of_a_record_is_refused() {
        let payload = sample_payload();
        let record = encode_record(7, (&[3; 16], 99), &payload);
        let used = JOURNAL_HEADER_LENGTH + payload.len();
        for index in 0..used {
            let mut bad = record.clone();
            bad[index] ^= 0x04;
            let whole = decode_header(&bad, 99).and_then(|h| payload_of(&h, &bad).map(|_| ()));
            assert!(whole.is_err(), "byte {index} flipped went unnoticed");
        }
    }

    #[test]
    fn zeros_and_short_input_are_not_records() {
        assert!(decode_header(&[0u8; 4096], 0).is_err());
        assert!(decode_header(&[], 0).is_err());
        assert!(decode_commit(&[0xff; 3], 9).is_err());
    }
}
