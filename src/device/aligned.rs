//! Heap buffers aligned for O_DIRECT.
//!
//! O_DIRECT requires the memory address, the file offset and the length of every transfer to be
//! aligned to the device's logical block size. Buffers here are aligned to 4 KiB, which satisfies
//! every logical block size bstore accepts (512 B to 4 KiB), and their memory never moves, so a
//! buffer can be handed to the kernel for an asynchronous transfer while its owner is moved around.

use std::alloc::{self, Layout};
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::Arc;

/// Alignment of every buffer: enough for any logical block size up to 4 KiB.
pub const BUFFER_ALIGNMENT: usize = 4096;

/// A 4 KiB-aligned byte buffer, every byte initialised (zeroed, or copied in, at allocation).
pub struct AlignedBuf {
    pointer: NonNull<u8>,
    length: usize,
}

// SAFETY: AlignedBuf uniquely owns its allocation, like Vec<u8>; nothing in it is tied to a thread.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only allow reads of the bytes, like &[u8].
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A buffer of `length` zero bytes.
    pub fn zeroed(length: usize) -> Self {
        if length == 0 {
            // Dangling but aligned, as O_DIRECT callers expect of every buffer; never read.
            let aligned = std::ptr::without_provenance_mut::<u8>(BUFFER_ALIGNMENT);
            return AlignedBuf {
                pointer: NonNull::new(aligned).expect("the alignment is not zero"),
                length: 0,
            };
        }
        let layout = Self::layout(length);
        // SAFETY: the layout has a non-zero size (checked above) and a valid power-of-two alignment.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let pointer = NonNull::new(raw).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        AlignedBuf { pointer, length }
    }

    /// An aligned copy of `bytes`. Its memory is written once, by the copy (zeroing it first
    /// would write every byte of a large write twice).
    pub fn copy_from(bytes: &[u8]) -> Self {
        if bytes.is_empty() {
            return Self::zeroed(0);
        }
        let layout = Self::layout(bytes.len());
        // SAFETY: the layout has a non-zero size (checked above) and a valid power-of-two alignment.
        let raw = unsafe { alloc::alloc(layout) };
        let pointer = NonNull::new(raw).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        // SAFETY: `raw` is a fresh allocation valid for `bytes.len()` bytes of writes, so it
        // cannot overlap `bytes`; after the copy every byte is initialised, as `deref` requires.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), raw, bytes.len()) };
        AlignedBuf {
            pointer,
            length: bytes.len(),
        }
    }

    /// An aligned copy of `bytes`, zero-padded to `length` (>= `bytes.len()`).
    pub fn copy_padded(bytes: &[u8], length: usize) -> Self {
        assert!(length >= bytes.len());
        let mut buf = Self::zeroed(length);
        buf[..bytes.len()].copy_from_slice(bytes);
        buf
    }

    fn layout(length: usize) -> Layout {
        Layout::from_size_align(length, BUFFER_ALIGNMENT).expect("buffer length fits a Layout")
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.length != 0 {
            // SAFETY: the pointer came from alloc or alloc_zeroed with exactly this layout and
            // is freed once.
            unsafe { alloc::dealloc(self.pointer.as_ptr(), Self::layout(self.length)) };
        }
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: the pointer is valid for `length` initialised bytes (zeroed or copied into at
        // allocation, or dangling-but-aligned for length 0), and the borrow of self keeps it
        // alive.
        unsafe { std::slice::from_raw_parts(self.pointer.as_ptr(), self.length) }
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and the unique borrow of self makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.pointer.as_ptr(), self.length) }
    }
}

impl Clone for AlignedBuf {
    fn clone(&self) -> Self {
        Self::copy_from(self)
    }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.length)
    }
}

impl PartialEq for AlignedBuf {
    fn eq(&self, other: &Self) -> bool {
        self[..] == other[..]
    }
}

impl Eq for AlignedBuf {}

/// Bytes of object data in either kind of memory: an ordinary `Vec`, or an aligned buffer the
/// device can write as it is. A write carries one, and so does an export stream's data frame: a
/// stream read into aligned buffers is imported without copying its bytes again.
#[derive(Clone)]
pub enum DataBuf {
    /// Ordinary memory: copied into an aligned buffer before the device sees it.
    Vec(Vec<u8>),
    /// Aligned memory, shared and never written again: a write that is exactly this buffer
    /// hands it to the device without a copy.
    Aligned(Arc<AlignedBuf>),
}

impl DataBuf {
    /// The aligned buffer these bytes are, if they are one.
    pub fn aligned(&self) -> Option<&Arc<AlignedBuf>> {
        match self {
            DataBuf::Vec(_) => None,
            DataBuf::Aligned(buf) => Some(buf),
        }
    }

    /// The bytes as a `Vec`, copied only if they are in aligned memory.
    pub fn into_vec(self) -> Vec<u8> {
        match self {
            DataBuf::Vec(bytes) => bytes,
            DataBuf::Aligned(buf) => buf.to_vec(),
        }
    }
}

impl Deref for DataBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            DataBuf::Vec(bytes) => bytes,
            DataBuf::Aligned(buf) => buf,
        }
    }
}

impl From<Vec<u8>> for DataBuf {
    fn from(bytes: Vec<u8>) -> Self {
        DataBuf::Vec(bytes)
    }
}

impl From<AlignedBuf> for DataBuf {
    fn from(buf: AlignedBuf) -> Self {
        DataBuf::Aligned(Arc::new(buf))
    }
}

impl From<Arc<AlignedBuf>> for DataBuf {
    fn from(buf: Arc<AlignedBuf>) -> Self {
        DataBuf::Aligned(buf)
    }
}

/// Equal when the bytes are, whatever memory holds them.
impl PartialEq for DataBuf {
    fn eq(&self, other: &Self) -> bool {
        self[..] == other[..]
    }
}

impl Eq for DataBuf {}

impl fmt::Debug for DataBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataBuf::Vec(bytes) => write!(f, "DataBuf::Vec({bytes:?})"),
            DataBuf::Aligned(buf) => write!(f, "DataBuf::Aligned({buf:?})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_zeroed() {
        for length in [0, 1, 512, 4096, 12345] {
            let buf = AlignedBuf::zeroed(length);
            assert_eq!(buf.len(), length);
            assert_eq!(buf.as_ptr() as usize % BUFFER_ALIGNMENT, 0);
            assert!(buf.iter().all(|b| *b == 0));
        }
    }

    #[test]
    fn copies_are_aligned_and_hold_exactly_the_bytes() {
        for length in [0, 1, 512, 4096, 12345, 4 << 20] {
            let bytes: Vec<u8> = (0..length).map(|i| (i * 7 + 3) as u8).collect();
            let buf = AlignedBuf::copy_from(&bytes);
            assert_eq!(buf.as_ptr() as usize % BUFFER_ALIGNMENT, 0);
            assert_eq!(&buf[..], &bytes[..]);
        }
    }

    #[test]
    fn data_bufs_compare_by_bytes_whatever_holds_them() {
        let plain = DataBuf::from(b"object bytes".to_vec());
        let aligned = DataBuf::from(AlignedBuf::copy_from(b"object bytes"));
        assert_eq!(plain, aligned);
        assert!(plain.aligned().is_none());
        assert_eq!(
            aligned
                .aligned()
                .map(|b| b.as_ptr() as usize % BUFFER_ALIGNMENT),
            Some(0)
        );
        assert_ne!(plain, DataBuf::from(b"other bytes".to_vec()));
    }

    #[test]
    fn padded_copy_keeps_bytes_and_zero_fills() {
        let buf = AlignedBuf::copy_padded(b"abc", 8);
        assert_eq!(&buf[..], b"abc\0\0\0\0\0");
    }
}
