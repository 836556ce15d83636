//! Pure encoders and decoders of every byte bstore puts on disk, and the format specification.
//!
//! Nothing here does I/O or panics on input: decoders are total, bound every count by a constant
//! below before allocating, and report corruption by record and field name. Encoders assert the
//! in-memory invariants they rely on (a violation is a bug, not bad input). The specification,
//! [`FORMAT.md`](self#on-disk-format-specification), is included below and changes in the same
//! commit as any byte it describes, together with a golden file under `tests/golden/`.
#![doc = include_str!("FORMAT.md")]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)
)]

pub mod codec;
pub mod deferred;
pub mod envelope;
pub mod export;
pub mod freelist;
pub mod fuzzing;
pub mod journal;
pub mod keys;
pub mod label;
pub mod onode;
pub mod records;
pub mod shared;

pub use codec::DecodeError;

/// On-disk format version of a whole store: label, key schema and every record. Version 2
/// adds the commit journal (§11); this build reads stores of version 1 too (they commit
/// through RocksDB's log).
pub const FORMAT_VERSION: u32 = 2;
/// The first format version bstore ever wrote; anything lower is not a store.
pub const FORMAT_VERSION_FIRST: u32 = 1;

/// Bytes of the label at device offset 0.
pub const LABEL_LENGTH: usize = 4096;
/// First bytes of every bstore label.
pub const LABEL_MAGIC: &[u8; 16] = b"bstore blockdev\n";
/// The start of the device that is never allocated is this, rounded up to `min_alloc_size`.
pub const RESERVED_BYTES_MIN: u64 = 8192;
/// Smallest commit journal ring.
pub const JOURNAL_LENGTH_MIN: u64 = 64 << 10;

/// The label's reserved start of the device: [`RESERVED_BYTES_MIN`] rounded up to the unit.
pub fn reserved_start_bytes(min_alloc_size: u64) -> u64 {
    RESERVED_BYTES_MIN.next_multiple_of(min_alloc_size.max(1))
}

/// Largest object, in bytes (offset + length of any write must not pass it).
pub const OBJECT_SIZE_MAX: u64 = 1 << 32;
/// Longest object name, in bytes.
pub const OBJECT_NAME_LENGTH_MAX: usize = 2048;
/// Longest collection name, in bytes.
pub const COLLECTION_NAME_LENGTH_MAX: usize = 256;
/// Longest xattr name, in bytes.
pub const XATTR_NAME_LENGTH_MAX: usize = 256;
/// Longest xattr value, in bytes.
pub const XATTR_VALUE_LENGTH_MAX: usize = 64 << 10;
/// Most xattrs on one object.
pub const XATTRS_COUNT_MAX: usize = 1024;
/// Most bytes (names plus values) of all xattrs of one object: they live inline in the onode.
pub const XATTRS_BYTES_MAX: usize = 64 << 10;
/// Longest omap key, in bytes.
pub const OMAP_KEY_LENGTH_MAX: usize = 4096;
/// Longest omap value or header, in bytes.
pub const OMAP_VALUE_LENGTH_MAX: usize = 4 << 20;

/// Largest blob, in bytes.
pub const BLOB_LENGTH_MAX: u32 = 16 << 20;
/// Smallest checksum chunk, log2 (512 bytes).
pub const CSUM_CHUNK_ORDER_MIN: u8 = 9;
/// Largest checksum chunk, log2 (16 MiB).
pub const CSUM_CHUNK_ORDER_MAX: u8 = 24;
/// Most blobs, and most extents, in one extent map body (inline map or shard).
pub const EXTENTS_PER_MAP_MAX: usize = 1 << 16;
/// Most shards of one object's extent map.
pub const SHARDS_PER_ONODE_MAX: usize = 1 << 20;
/// Most allocation units per freelist key.
pub const FREELIST_BLOCKS_PER_KEY_MAX: u32 = 1 << 16;
