//! The RocksDB key schema (FORMAT.md §4): which column family holds what, and how keys sort.
//!
//! Integers inside keys are big-endian so that byte order is numeric order. Names are raw bytes:
//! each key space is its own column family, so no escaping is needed and objects of a collection
//! list in plain byte order of their names.

use super::codec::DecodeError;

/// The key spaces. Each is a RocksDB column family (and a separate map in the in-memory KV).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeySpace {
    /// Store-wide records: superblock, id counters.
    Super,
    /// Collection name -> collection record.
    Collections,
    /// (collection id, object name) -> onode.
    Onodes,
    /// (object nid, logical offset) -> extent-map shard of a large object.
    ExtentShards,
    /// (object nid, tag, key) -> omap header and values.
    Omap,
    /// Deferred-write sequence -> deferred-write record.
    Deferred,
    /// Bitmap region index -> allocation bitmap (XOR merge).
    Freelist,
    /// Shared-blob id -> per-extent reference counts.
    SharedBlobs,
    /// Store-wide statistics.
    Stats,
}

impl KeySpace {
    /// Every key space, in a fixed order.
    pub const ALL: [KeySpace; 9] = [
        KeySpace::Super,
        KeySpace::Collections,
        KeySpace::Onodes,
        KeySpace::ExtentShards,
        KeySpace::Omap,
        KeySpace::Deferred,
        KeySpace::Freelist,
        KeySpace::SharedBlobs,
        KeySpace::Stats,
    ];

    /// Column-family name in RocksDB.
    pub fn name(self) -> &'static str {
        match self {
            KeySpace::Super => "super",
            KeySpace::Collections => "collections",
            KeySpace::Onodes => "onodes",
            KeySpace::ExtentShards => "extent_shards",
            KeySpace::Omap => "omap",
            KeySpace::Deferred => "deferred",
            KeySpace::Freelist => "freelist",
            KeySpace::SharedBlobs => "shared_blobs",
            KeySpace::Stats => "stats",
        }
    }

    /// Dense index, for arrays indexed by key space.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Super key of the superblock record.
pub const SUPERBLOCK_KEY: &[u8] = b"superblock";
/// Super key of the highest object id handed out.
pub const NID_MAX_KEY: &[u8] = b"nid_max";
/// Super key of the highest collection id handed out.
pub const CID_MAX_KEY: &[u8] = b"cid_max";
/// Super key of the highest shared-blob id handed out.
pub const SBID_MAX_KEY: &[u8] = b"sbid_max";
/// Stats key of the store-wide statistics record.
pub const STATFS_KEY: &[u8] = b"statfs";
/// Super key of where the commit journal's next record goes (format 2): every journal record
/// carries it in its own ops, so the KV store's durable state always says which records it
/// already holds.
pub const JOURNAL_NEXT_KEY: &[u8] = b"journal_next";
/// Super key present only while a commit too large for a journal record is being made outside
/// the ring: a counter (the sequence of the record that set it), removed by the commit's own
/// synced KV write (FORMAT.md §11.4).
pub const JOURNAL_OUTSIDE_KEY: &[u8] = b"journal_outside";

/// Omap key tag of the header.
pub const OMAP_TAG_HEADER: u8 = 1;
/// Omap key tag of user keys.
pub const OMAP_TAG_VALUE: u8 = 2;

/// Onode key: `be64 collection_id ++ object name`.
pub fn onode_key(collection_id: u64, name: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + name.len());
    key.extend_from_slice(&collection_id.to_be_bytes());
    key.extend_from_slice(name);
    key
}

/// First onode key of a collection (inclusive).
pub fn onode_key_first(collection_id: u64) -> Vec<u8> {
    collection_id.to_be_bytes().to_vec()
}

/// First onode key past a collection (exclusive end of its range).
pub fn onode_key_end(collection_id: u64) -> Vec<u8> {
    match collection_id.checked_add(1) {
        Some(next) => next.to_be_bytes().to_vec(),
        None => vec![0xff; 9],
    }
}

/// Splits an onode key into collection id and object name.
pub fn split_onode_key(key: &[u8]) -> Result<(u64, &[u8]), DecodeError> {
    let (id, name) = key
        .split_first_chunk::<8>()
        .ok_or_else(|| DecodeError::new("onode key", "shorter than 8 bytes"))?;
    Ok((u64::from_be_bytes(*id), name))
}

/// Extent-shard key: `be64 nid ++ be64 shard logical offset`.
pub fn shard_key(nid: u64, logical_offset: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    let (nid_bytes, offset_bytes) = key.split_at_mut(8);
    nid_bytes.copy_from_slice(&nid.to_be_bytes());
    offset_bytes.copy_from_slice(&logical_offset.to_be_bytes());
    key
}

/// Splits an extent-shard key into nid and shard offset.
pub fn split_shard_key(key: &[u8]) -> Result<(u64, u64), DecodeError> {
    let bad = || DecodeError::new("extent shard key", "not 16 bytes");
    let (nid, offset) = key.split_first_chunk::<8>().ok_or_else(bad)?;
    let offset: [u8; 8] = offset.try_into().map_err(|_| bad())?;
    Ok((u64::from_be_bytes(*nid), u64::from_be_bytes(offset)))
}

/// Omap header key: `be64 nid ++ 0x01`.
pub fn omap_header_key(nid: u64) -> [u8; 9] {
    let mut key = [OMAP_TAG_HEADER; 9];
    key.split_at_mut(8).0.copy_from_slice(&nid.to_be_bytes());
    key
}

/// Omap value key: `be64 nid ++ 0x02 ++ user key`.
pub fn omap_value_key(nid: u64, user_key: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(9 + user_key.len());
    key.extend_from_slice(&nid.to_be_bytes());
    key.push(OMAP_TAG_VALUE);
    key.extend_from_slice(user_key);
    key
}

/// First key past every omap value key of an object (exclusive end of its values).
pub fn omap_values_end(nid: u64) -> Vec<u8> {
    let mut key = nid.to_be_bytes().to_vec();
    key.push(OMAP_TAG_VALUE + 1);
    key
}

/// Range `[start, end)` covering every omap key of an object (header and values).
pub fn omap_object_range(nid: u64) -> (Vec<u8>, Vec<u8>) {
    let start = nid.to_be_bytes().to_vec();
    let mut end = nid.to_be_bytes().to_vec();
    end.push(0xff);
    (start, end)
}

/// Splits an omap key into nid, tag and user key.
pub fn split_omap_key(key: &[u8]) -> Result<(u64, u8, &[u8]), DecodeError> {
    let (nid, rest) = key
        .split_first_chunk::<8>()
        .ok_or_else(|| DecodeError::new("omap key", "shorter than 9 bytes"))?;
    let (tag, user_key) = rest
        .split_first()
        .ok_or_else(|| DecodeError::new("omap key", "missing tag"))?;
    Ok((u64::from_be_bytes(*nid), *tag, user_key))
}

/// Deferred-record key: `be64 sequence`.
pub fn deferred_key(sequence: u64) -> [u8; 8] {
    sequence.to_be_bytes()
}

/// Shared-blob key: `be64 sbid`.
pub fn shared_blob_key(sbid: u64) -> [u8; 8] {
    sbid.to_be_bytes()
}

/// Freelist key: `be64 region index` (region = `blocks_per_key` allocation units).
pub fn freelist_key(region_index: u64) -> [u8; 8] {
    region_index.to_be_bytes()
}

/// Decodes an 8-byte big-endian key (deferred, shared blob, freelist).
pub fn decode_be64_key(record: &'static str, key: &[u8]) -> Result<u64, DecodeError> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| DecodeError::new(record, format!("key of {} bytes, expected 8", key.len())))?;
    Ok(u64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onode_keys_sort_by_collection_then_name() {
        let mut keys = [
            onode_key(2, b"a"),
            onode_key(1, b"zz"),
            onode_key(1, b"b"),
            onode_key(1, b""),
        ];
        keys.sort();
        assert_eq!(keys[0], onode_key(1, b""));
        assert_eq!(keys[1], onode_key(1, b"b"));
        assert_eq!(keys[2], onode_key(1, b"zz"));
        assert!(onode_key(1, &[0xff; 40]) < onode_key_end(1));
        assert_eq!(
            split_onode_key(&onode_key(7, b"obj")).unwrap(),
            (7, &b"obj"[..])
        );
    }

    #[test]
    fn omap_range_covers_header_and_values_only_of_one_object() {
        let (start, end) = omap_object_range(5);
        for key in [omap_header_key(5).to_vec(), omap_value_key(5, &[0xff; 8])] {
            assert!(start <= key && key < end);
        }
        assert!(omap_header_key(6).to_vec() >= end);
        assert!(omap_value_key(4, b"x") < start);
    }

    #[test]
    fn shard_keys_round_trip() {
        assert_eq!(
            split_shard_key(&shard_key(9, 1 << 20)).unwrap(),
            (9, 1 << 20)
        );
    }
}
