//! Shared-blob records (FORMAT.md §6.6): reference counts of a blob that clones share.

use super::codec::{DecodeError, Decoder, Encoder};
use super::envelope;
use super::{BLOB_LENGTH_MAX, CSUM_CHUNK_ORDER_MIN};

const SHARED_BLOB_VERSION: u8 = 1;

/// Most allocation units one shared blob counts (a largest blob of 512-byte units).
pub const SHARED_UNITS_MAX: usize = (BLOB_LENGTH_MAX >> CSUM_CHUNK_ORDER_MIN) as usize;

/// How many blob instances (in all objects) reference each allocation unit of a shared blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedBlobRecord {
    /// Where the blob starts on the device.
    pub device_offset: u64,
    /// Bytes of the blob (`refs.len()` allocation units).
    pub length: u32,
    /// References per allocation unit; a unit at 0 has been freed.
    pub refs: Vec<u32>,
}

impl SharedBlobRecord {
    /// Bytes per allocation unit.
    pub fn unit_bytes(&self) -> u32 {
        self.length / self.refs.len().max(1) as u32
    }

    /// True when no unit is referenced any more (the record is deleted).
    pub fn is_unreferenced(&self) -> bool {
        self.refs.iter().all(|r| *r == 0)
    }

    /// Encodes the enveloped record.
    pub fn encode(&self) -> Vec<u8> {
        assert!(
            !self.refs.is_empty() && self.length.is_multiple_of(self.refs.len() as u32),
            "a shared blob counts whole allocation units"
        );
        let mut e = Encoder::with_capacity(16 + 4 * self.refs.len());
        e.u64(self.device_offset);
        e.u32(self.length);
        e.u32(self.refs.len() as u32);
        for count in &self.refs {
            e.u32(*count);
        }
        envelope::seal(SHARED_BLOB_VERSION, SHARED_BLOB_VERSION, &e.finish())
    }

    /// Decodes and validates an enveloped record.
    pub fn decode(bytes: &[u8]) -> Result<SharedBlobRecord, DecodeError> {
        let payload = envelope::open("shared blob", SHARED_BLOB_VERSION, bytes)?;
        let mut d = Decoder::new("shared blob", payload.bytes);
        let device_offset = d.u64("device_offset")?;
        let length = d.u32("length")?;
        let count = d.count32("unit count", SHARED_UNITS_MAX)?;
        if count == 0 || length > BLOB_LENGTH_MAX || !length.is_multiple_of(count as u32) {
            return Err(d.error(format!(
                "{length} bytes are not {count} whole allocation units"
            )));
        }
        let refs = (0..count)
            .map(|_| d.u32("refs"))
            .collect::<Result<Vec<_>, _>>()?;
        if payload.struct_version == SHARED_BLOB_VERSION {
            d.finish()?;
        }
        Ok(SharedBlobRecord {
            device_offset,
            length,
            refs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_geometry_is_corruption() {
        let record = SharedBlobRecord {
            device_offset: 1 << 20,
            length: 16384,
            refs: vec![2, 1, 0, 3],
        };
        assert_eq!(SharedBlobRecord::decode(&record.encode()).unwrap(), record);
        assert_eq!(record.unit_bytes(), 4096);
        let mut e = Encoder::new();
        e.u64(0);
        e.u32(1000);
        e.u32(3);
        for _ in 0..3 {
            e.u32(1);
        }
        let bytes = envelope::seal(SHARED_BLOB_VERSION, SHARED_BLOB_VERSION, &e.finish());
        assert!(SharedBlobRecord::decode(&bytes).is_err());
    }
}
