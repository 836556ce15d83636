//! Free space: the in-memory allocator, its persistent freelist, and the fragmentation score.
//!
//! The allocator hands out device space in `min_alloc_size` units ([`BitmapAllocator`]). Every
//! allocation and release is also recorded in the freelist key space ([`FreelistDelta`]) in the
//! same KV batch as the metadata that starts or stops using the space, so after a crash the
//! freelist agrees with the objects, and mount rebuilds the allocator from the freelist alone
//! ([`load_freelist`]) without scanning objects.

pub mod bitmap;
pub mod freelist;
pub mod score;

pub use bitmap::{BitmapAllocator, OutOfSpace};
pub use freelist::{FreelistDelta, FreelistGeometry, load_freelist};
pub use score::{FragmentationScore, ScoreVariant, format_g17, fragmentation_score};

/// A byte range of the data device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceExtent {
    /// First byte.
    pub offset: u64,
    /// Bytes.
    pub length: u64,
}

impl DeviceExtent {
    /// The extent `[offset, offset + length)`.
    pub const fn new(offset: u64, length: u64) -> Self {
        DeviceExtent { offset, length }
    }

    /// One past the last byte.
    pub const fn end(&self) -> u64 {
        self.offset + self.length
    }

    /// True when the two extents share a byte.
    pub fn overlaps(&self, other: &DeviceExtent) -> bool {
        self.offset < other.end() && other.offset < self.end()
    }
}
