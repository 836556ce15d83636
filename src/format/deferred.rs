//! Deferred-write records (FORMAT.md §6.5): new bytes and where on the device they go.
//!
//! A transaction that overwrites live data in place logs the bytes here, in the same KV batch as
//! the metadata (and checksums) describing them. The record is applied to the device later and
//! deleted after that device write is flushed; a record found at mount is applied again.

use super::codec::{DecodeError, Decoder, Encoder};
use super::envelope;

const DEFERRED_VERSION: u8 = 1;

/// Most writes in one record.
pub const DEFERRED_WRITES_MAX: usize = 1 << 16;
/// Largest single write in a record, in bytes.
pub const DEFERRED_WRITE_LENGTH_MAX: usize = 16 << 20;
/// Device offsets and lengths of deferred writes are multiples of this.
pub const DEFERRED_ALIGNMENT: u64 = 512;

/// One in-place write: `data` goes to `device_offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeferredWrite {
    /// Where the bytes go (a multiple of 512).
    pub device_offset: u64,
    /// The bytes (a non-zero multiple of 512).
    pub data: Vec<u8>,
}

/// Every in-place write of one transaction, applied in order (a later write wins where two
/// overlap).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeferredRecord {
    /// The writes, in the order the transaction made them.
    pub writes: Vec<DeferredWrite>,
}

impl DeferredRecord {
    /// Encodes the enveloped record.
    pub fn encode(&self) -> Vec<u8> {
        encode_writes(
            self.writes
                .iter()
                .map(|w| (w.device_offset, w.data.as_slice())),
        )
    }

    /// Decodes and validates an enveloped record.
    pub fn decode(bytes: &[u8]) -> Result<DeferredRecord, DecodeError> {
        let payload = envelope::open("deferred", DEFERRED_VERSION, bytes)?;
        let mut d = Decoder::new("deferred", payload.bytes);
        let count = d.count32("write count", DEFERRED_WRITES_MAX)?;
        let mut writes = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            let device_offset = d.u64("device_offset")?;
            let data = d.bytes32("data", DEFERRED_WRITE_LENGTH_MAX)?;
            if !is_aligned(device_offset, data.len()) {
                return Err(d.error(format!(
                    "write of {} bytes at {device_offset:#x} is not a non-empty multiple of 512",
                    data.len()
                )));
            }
            writes.push(DeferredWrite {
                device_offset,
                data: data.to_vec(),
            });
        }
        if payload.struct_version == DEFERRED_VERSION {
            d.finish()?;
        }
        Ok(DeferredRecord { writes })
    }

    /// Bytes of data the record carries.
    pub fn data_bytes(&self) -> u64 {
        self.writes.iter().map(|w| w.data.len() as u64).sum()
    }
}

/// Encodes a record of `(device_offset, data)` writes without first copying them into a
/// [`DeferredRecord`].
pub fn encode_writes<'a>(writes: impl Iterator<Item = (u64, &'a [u8])> + Clone) -> Vec<u8> {
    let (count, bytes) = writes.clone().fold((0usize, 0usize), |(n, b), (_, data)| {
        (n + 1, b + data.len() + 12)
    });
    assert!(
        count <= DEFERRED_WRITES_MAX,
        "records hold at most 65536 writes"
    );
    let mut e = Encoder::with_capacity(bytes + 4);
    e.u32(count as u32);
    for (device_offset, data) in writes {
        assert!(
            is_aligned(device_offset, data.len()) && data.len() <= DEFERRED_WRITE_LENGTH_MAX,
            "deferred writes are sector aligned and bounded"
        );
        e.u64(device_offset);
        e.bytes32(data);
    }
    envelope::seal(DEFERRED_VERSION, DEFERRED_VERSION, &e.finish())
}

fn is_aligned(device_offset: u64, length: usize) -> bool {
    length > 0
        && device_offset.is_multiple_of(DEFERRED_ALIGNMENT)
        && (length as u64).is_multiple_of(DEFERRED_ALIGNMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let record = DeferredRecord {
            writes: vec![
                DeferredWrite {
                    device_offset: 1 << 20,
                    data: vec![7; 4096],
                },
                DeferredWrite {
                    device_offset: 512,
                    data: vec![1; 512],
                },
            ],
        };
        assert_eq!(DeferredRecord::decode(&record.encode()).unwrap(), record);
        assert_eq!(record.data_bytes(), 4608);
    }

    #[test]
    fn unaligned_writes_and_huge_counts_are_corruption() {
        let mut e = Encoder::new();
        e.u32(1);
        e.u64(100);
        e.bytes32(&[0; 512]);
        let bytes = envelope::seal(DEFERRED_VERSION, DEFERRED_VERSION, &e.finish());
        assert!(DeferredRecord::decode(&bytes).is_err());
        let mut e = Encoder::new();
        e.u32(u32::MAX);
        let bytes = envelope::seal(DEFERRED_VERSION, DEFERRED_VERSION, &e.finish());
        assert!(DeferredRecord::decode(&bytes).is_err());
    }
}
