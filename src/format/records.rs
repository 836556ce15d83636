//! Small store-wide records: superblock, counters, collections, statistics (FORMAT.md §6).

use super::codec::{DecodeError, Decoder, Encoder};
use super::envelope;
use super::onode::CsumType;
use super::{
    BLOB_LENGTH_MAX, CSUM_CHUNK_ORDER_MAX, CSUM_CHUNK_ORDER_MIN, FORMAT_VERSION,
    FORMAT_VERSION_FIRST, FREELIST_BLOCKS_PER_KEY_MAX,
};

/// Superblock layout this build reads: 1 (no journal), 2 (with the commit journal's region).
const SUPERBLOCK_VERSION: u8 = 2;
const COUNTER_VERSION: u8 = 1;
const COLLECTION_VERSION: u8 = 1;
const STATFS_VERSION: u8 = 1;

/// Store-wide settings fixed at mkfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// On-disk format version of the store.
    pub format_version: u32,
    /// Must equal the label's uuid: ties the KV store to its device.
    pub store_uuid: [u8; 16],
    /// Allocation unit in bytes (a power of two).
    pub min_alloc_size: u32,
    /// Bytes of the data device the store and its freelist cover.
    pub device_size: u64,
    /// Default checksum algorithm of new blobs.
    pub csum_type: CsumType,
    /// Default checksum chunk of new blobs, log2.
    pub csum_chunk_order: u8,
    /// Largest blob a write creates, in bytes.
    pub blob_length_max: u32,
    /// Allocation units per freelist key.
    pub freelist_blocks_per_key: u32,
    /// The commit journal's ring on the data device (format 2); `None` for a format-1 store,
    /// which commits through RocksDB's own log.
    pub journal: Option<JournalRegion>,
}

/// Where the commit journal's ring lies on the data device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalRegion {
    /// First byte of the ring (allocation-unit aligned, after the label's reserved start).
    pub device_offset: u64,
    /// Bytes of the ring (a multiple of the allocation unit).
    pub length: u64,
    /// Random at mkfs: seeds every record header's checksum, so bytes a client wrote can
    /// never pass for a record.
    pub salt: u64,
}

impl Superblock {
    /// Encodes the enveloped superblock: layout 1 without a journal, layout 2 (which a build
    /// that knows only layout 1 refuses) with one.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.u32(self.format_version);
        e.raw(&self.store_uuid);
        e.u32(self.min_alloc_size);
        e.u64(self.device_size);
        e.u8(self.csum_type as u8);
        e.u8(self.csum_chunk_order);
        e.u32(self.blob_length_max);
        e.u32(self.freelist_blocks_per_key);
        match self.journal {
            None => envelope::seal(1, 1, &e.finish()),
            Some(journal) => {
                e.u64(journal.device_offset);
                e.u64(journal.length);
                e.u64(journal.salt);
                envelope::seal(2, 2, &e.finish())
            }
        }
    }

    /// First byte after the space that is never allocated: the label's reserved start and the
    /// journal's ring.
    pub fn reserved_end(&self) -> u64 {
        match self.journal {
            Some(journal) => journal.device_offset + journal.length,
            None => super::reserved_start_bytes(u64::from(self.min_alloc_size)),
        }
    }

    /// Decodes and validates an enveloped superblock.
    pub fn decode(bytes: &[u8]) -> Result<Superblock, DecodeError> {
        let payload = envelope::open("superblock", SUPERBLOCK_VERSION, bytes)?;
        let mut d = Decoder::new("superblock", payload.bytes);
        let format_version = d.u32("format_version")?;
        if format_version < FORMAT_VERSION_FIRST {
            return Err(d.error(format!(
                "format_version {format_version} was never written by bstore"
            )));
        }
        if format_version > FORMAT_VERSION {
            return Err(DecodeError::newer(
                "superblock",
                format_version,
                FORMAT_VERSION,
            ));
        }
        let store_uuid = d.array::<16>("store_uuid")?;
        let min_alloc_size = d.u32("min_alloc_size")?;
        let device_size = d.u64("device_size")?;
        let csum_type = match d.u8("csum_type")? {
            0 => CsumType::None,
            1 => CsumType::Crc32c,
            other => return Err(d.error(format!("unknown csum type {other}"))),
        };
        let csum_chunk_order = d.u8("csum_chunk_order")?;
        let blob_length_max = d.u32("blob_length_max")?;
        let freelist_blocks_per_key = d.u32("freelist_blocks_per_key")?;
        let journal = match payload.struct_version {
            1 => None,
            _ => Some(JournalRegion {
                device_offset: d.u64("journal_offset")?,
                length: d.u64("journal_length")?,
                salt: d.u64("journal_salt")?,
            }),
        };
        if payload.struct_version <= SUPERBLOCK_VERSION {
            d.finish()?;
        }
        let superblock = Superblock {
            format_version,
            store_uuid,
            min_alloc_size,
            device_size,
            csum_type,
            csum_chunk_order,
            blob_length_max,
            freelist_blocks_per_key,
            journal,
        };
        superblock.validate().map_err(|detail| d.error(detail))?;
        Ok(superblock)
    }

    /// Checks the geometry is one bstore can run with.
    pub fn validate(&self) -> Result<(), String> {
        if !self.min_alloc_size.is_power_of_two() || self.min_alloc_size < 512 {
            return Err(format!(
                "min_alloc_size {} is not a power of two >= 512",
                self.min_alloc_size
            ));
        }
        if !(CSUM_CHUNK_ORDER_MIN..=CSUM_CHUNK_ORDER_MAX).contains(&self.csum_chunk_order) {
            return Err(format!(
                "csum chunk order {} out of range",
                self.csum_chunk_order
            ));
        }
        let unit = self.min_alloc_size.max(1 << self.csum_chunk_order);
        if self.blob_length_max < unit
            || self.blob_length_max > BLOB_LENGTH_MAX
            || !self.blob_length_max.is_multiple_of(unit)
        {
            return Err(format!("blob_length_max {} invalid", self.blob_length_max));
        }
        let bits = self.freelist_blocks_per_key;
        if bits == 0 || !bits.is_multiple_of(8) || bits > FREELIST_BLOCKS_PER_KEY_MAX {
            return Err(format!("freelist_blocks_per_key {bits} invalid"));
        }
        if !self
            .device_size
            .is_multiple_of(u64::from(self.min_alloc_size))
        {
            return Err(format!(
                "device_size {} not a multiple of min_alloc_size",
                self.device_size
            ));
        }
        if (self.format_version >= 2) != self.journal.is_some() {
            return Err(format!(
                "format {} with{} a journal region",
                self.format_version,
                if self.journal.is_some() { "" } else { "out" }
            ));
        }
        if let Some(journal) = self.journal {
            self.validate_journal(journal)?;
        }
        Ok(())
    }

    fn validate_journal(&self, journal: JournalRegion) -> Result<(), String> {
        let unit = u64::from(self.min_alloc_size);
        let start = super::reserved_start_bytes(unit);
        let end = journal.device_offset.checked_add(journal.length);
        let placed = journal.device_offset == start
            && journal.length.is_multiple_of(unit)
            && journal.length >= super::JOURNAL_LENGTH_MIN
            && end.is_some_and(|end| end < self.device_size);
        if !placed {
            return Err(format!(
                "journal [{:#x}, +{:#x}) does not fit after the label on a {}-byte device",
                journal.device_offset, journal.length, self.device_size
            ));
        }
        Ok(())
    }
}

/// Layout 2 adds `previous_ring_offset`; a position without one is still written as layout 1.
const JOURNAL_POSITION_VERSION: u8 = 2;

/// Where the commit journal's next record goes: its sequence and its offset in the ring, and
/// where the record before it starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalPosition {
    /// Sequence of the next record.
    pub sequence: u64,
    /// Its offset within the ring.
    pub ring_offset: u64,
    /// Ring offset of the record of `sequence - 1`, when the position follows a record
    /// (`None` at mkfs, and in positions written before layout 2). A mount checks that the
    /// device still holds it: the KV store holds that record, so a device without it is older
    /// than the KV store.
    pub previous_ring_offset: Option<u64>,
}

impl JournalPosition {
    /// Encodes the enveloped position (layout 1 without a previous record, else layout 2).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.u64(self.sequence);
        e.u64(self.ring_offset);
        match self.previous_ring_offset {
            None => envelope::seal(1, 1, &e.finish()),
            Some(previous) => {
                e.u64(previous);
                envelope::seal(2, 1, &e.finish())
            }
        }
    }

    /// Decodes an enveloped position.
    pub fn decode(bytes: &[u8]) -> Result<JournalPosition, DecodeError> {
        let payload = envelope::open("journal position", JOURNAL_POSITION_VERSION, bytes)?;
        let mut d = Decoder::new("journal position", payload.bytes);
        let mut position = JournalPosition {
            sequence: d.u64("sequence")?,
            ring_offset: d.u64("ring_offset")?,
            previous_ring_offset: None,
        };
        if payload.struct_version >= 2 {
            position.previous_ring_offset = Some(d.u64("previous_ring_offset")?);
        }
        if payload.struct_version <= JOURNAL_POSITION_VERSION {
            d.finish()?;
        }
        Ok(position)
    }
}

/// Encodes a monotonic id counter (nid_max, cid_max, sbid_max).
pub fn encode_counter(value: u64) -> Vec<u8> {
    envelope::seal(COUNTER_VERSION, COUNTER_VERSION, &value.to_le_bytes())
}

/// Decodes a monotonic id counter.
pub fn decode_counter(bytes: &[u8]) -> Result<u64, DecodeError> {
    let payload = envelope::open("counter", COUNTER_VERSION, bytes)?;
    let mut d = Decoder::new("counter", payload.bytes);
    let value = d.u64("value")?;
    if payload.struct_version == COUNTER_VERSION {
        d.finish()?;
    }
    Ok(value)
}

/// A collection: a named group of objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectionRecord {
    /// Collection id; prefixes the keys of its objects. Never reused.
    pub collection_id: u64,
}

impl CollectionRecord {
    /// Encodes the enveloped collection record.
    pub fn encode(&self) -> Vec<u8> {
        envelope::seal(
            COLLECTION_VERSION,
            COLLECTION_VERSION,
            &self.collection_id.to_le_bytes(),
        )
    }

    /// Decodes an enveloped collection record.
    pub fn decode(bytes: &[u8]) -> Result<CollectionRecord, DecodeError> {
        let payload = envelope::open("collection", COLLECTION_VERSION, bytes)?;
        let mut d = Decoder::new("collection", payload.bytes);
        let collection_id = d.u64("collection_id")?;
        if payload.struct_version == COLLECTION_VERSION {
            d.finish()?;
        }
        Ok(CollectionRecord { collection_id })
    }
}

/// Store-wide space accounting, rewritten whole in every commit that changes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatfsRecord {
    /// Device bytes allocated to object data (shared extents counted once).
    pub allocated_bytes: u64,
    /// Logical bytes of object data (holes excluded; a cloned extent counts once per object).
    pub stored_bytes: u64,
    /// Number of objects.
    pub object_count: u64,
}

impl StatfsRecord {
    /// Encodes the enveloped statistics record.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.u64(self.allocated_bytes);
        e.u64(self.stored_bytes);
        e.u64(self.object_count);
        envelope::seal(STATFS_VERSION, STATFS_VERSION, &e.finish())
    }

    /// Decodes an enveloped statistics record.
    pub fn decode(bytes: &[u8]) -> Result<StatfsRecord, DecodeError> {
        let payload = envelope::open("statfs", STATFS_VERSION, bytes)?;
        let mut d = Decoder::new("statfs", payload.bytes);
        let record = StatfsRecord {
            allocated_bytes: d.u64("allocated_bytes")?,
            stored_bytes: d.u64("stored_bytes")?,
            object_count: d.u64("object_count")?,
        };
        if payload.struct_version == STATFS_VERSION {
            d.finish()?;
        }
        Ok(record)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_superblock() -> Superblock {
        Superblock {
            format_version: FORMAT_VERSION,
            store_uuid: *b"0123456789abcdef",
            min_alloc_size: 4096,
            device_size: 1 << 30,
            csum_type: CsumType::Crc32c,
            csum_chunk_order: 12,
            blob_length_max: 512 << 10,
            freelist_blocks_per_key: 4096,
            journal: Some(JournalRegion {
                device_offset: super::super::reserved_start_bytes(4096),
                length: 32 << 20,
                salt: 0x5a17,
            }),
        }
    }

    #[test]
    fn records_round_trip() {
        let sb = sample_superblock();
        assert_eq!(Superblock::decode(&sb.encode()).unwrap(), sb);
        let format_1 = Superblock {
            format_version: 1,
            journal: None,
            ..sample_superblock()
        };
        assert_eq!(Superblock::decode(&format_1.encode()).unwrap(), format_1);
        for previous_ring_offset in [None, Some(4096)] {
            let position = JournalPosition {
                sequence: 7,
                ring_offset: 8192,
                previous_ring_offset,
            };
            assert_eq!(
                JournalPosition::decode(&position.encode()).unwrap(),
                position
            );
        }
        assert_eq!(decode_counter(&encode_counter(99)).unwrap(), 99);
        let coll = CollectionRecord { collection_id: 5 };
        assert_eq!(CollectionRecord::decode(&coll.encode()).unwrap(), coll);
        let stats = StatfsRecord {
            allocated_bytes: 1,
            stored_bytes: 2,
            object_count: 3,
        };
        assert_eq!(StatfsRecord::decode(&stats.encode()).unwrap(), stats);
    }

    #[test]
    fn superblock_with_bad_geometry_is_corruption() {
        let sb = Superblock {
            min_alloc_size: 3000,
            ..sample_superblock()
        };
        assert!(Superblock::decode(&sb.encode()).is_err());
        let misplaced = Superblock {
            journal: Some(JournalRegion {
                device_offset: 4096 * 1000,
                length: 32 << 20,
                salt: 1,
            }),
            ..sample_superblock()
        };
        assert!(Superblock::decode(&misplaced.encode()).is_err());
        let journal_on_format_1 = Superblock {
            format_version: 1,
            ..sample_superblock()
        };
        assert!(Superblock::decode(&journal_on_format_1.encode()).is_err());
    }
}
