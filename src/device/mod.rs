//! The data device: where object data lives, behind one small trait.
//!
//! [`BlockDevice`] takes batches of reads and writes, completes them asynchronously, and flushes.
//! Three implementations:
//! - [`UringDevice`]: io_uring with O_DIRECT, the default: batched submission, a bounded queue
//!   depth, a reaper thread completing batches.
//! - [`SyncDevice`]: pread/pwrite with O_DIRECT, the fallback where io_uring is unavailable.
//! - [`SimDevice`]: memory with separate "written" and "durable" images, for crash and fault
//!   tests: a simulated crash drops or tears unflushed writes; EIO can be injected.
//!
//! Both real devices work on a regular file or a block device ([`open::open_data_device`]) and
//! open it exclusively. Every request must be aligned to the logical block size and lie within
//! the device; [`check_request`] enforces that for all implementations.

crate::internal_modules!(aligned, label, open, probe, sim, sync_io, uring);

use std::path::PathBuf;
use std::sync::Arc;

pub use aligned::{AlignedBuf, BUFFER_ALIGNMENT, DataBuf};
#[cfg(feature = "testing")]
pub use sim::{
    CrashMode, PowerCut, PowerEvent, SimCounters, SimCrashCounts, SimDevice, SimFaults, SimImage,
    SimIo,
};
#[cfg(not(feature = "testing"))]
#[allow(unused_imports)]
pub(crate) use sim::{
    CrashMode, PowerCut, PowerEvent, SimCounters, SimCrashCounts, SimDevice, SimFaults, SimImage,
    SimIo,
};
#[cfg(feature = "internals")]
#[doc(hidden)]
pub use {
    probe::{PROBE_HEAD_BYTES, PROBE_TAIL_BYTES, Signature, find_signatures, probe},
    sync_io::SyncDevice,
    uring::UringDevice,
};
#[cfg(not(feature = "internals"))]
pub(crate) use {
    probe::{PROBE_HEAD_BYTES, PROBE_TAIL_BYTES, Signature, find_signatures, probe},
    sync_io::SyncDevice,
    uring::UringDevice,
};

use crate::completion::Completion;
use crate::error::{Error, Result};

/// What kind of thing backs a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceKind {
    /// A regular file standing in for a device.
    File,
    /// A block device (disk, partition, loop device).
    BlockDevice,
    /// The in-memory simulated device.
    Simulated,
}

/// Static facts about an open device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Path it was opened from (after following symlinks).
    pub path: PathBuf,
    /// File, block device or simulated.
    pub kind: DeviceKind,
    /// Usable size in bytes.
    pub size_bytes: u64,
    /// Smallest aligned transfer (offset, length and memory alignment for O_DIRECT).
    pub logical_block_size: u32,
    /// True for spinning media (chooses deferred-write defaults).
    pub rotational: bool,
    /// Whether writes are allowed (a read-only open refuses them).
    pub access: Access,
}

/// Whether a device (or a store) is opened to change it or only to look at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read and write, held exclusively.
    ReadWrite,
    /// Read only, beside any other opener; writes are refused.
    ReadOnly,
}

/// Which real device implementation to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IoBackend {
    /// io_uring when the kernel lets this process set up a ring, else pread/pwrite (seccomp
    /// profiles of container runtimes commonly forbid io_uring; `kernel.io_uring_disabled`
    /// may too). The store reports the fallback and its reason (`Store::io_fallback`).
    Auto {
        /// Requests in flight at once with io_uring.
        queue_depth: u32,
    },
    /// io_uring with the given queue depth (requests in flight at once); opening fails when
    /// io_uring cannot be set up.
    IoUring {
        /// Requests in flight at once.
        queue_depth: u32,
    },
    /// Blocking pread/pwrite.
    Sync,
}

/// Default io_uring queue depth.
pub const QUEUE_DEPTH_DEFAULT: u32 = 64;

impl Default for IoBackend {
    fn default() -> Self {
        IoBackend::Auto {
            queue_depth: QUEUE_DEPTH_DEFAULT,
        }
    }
}

/// Read or write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoKind {
    /// Fill the buffer from the device.
    Read,
    /// Write the buffer to the device.
    Write,
}

/// The memory of one transfer: owned (reads fill it), or shared with readers who may copy from
/// it while it is being written (writes only).
#[derive(Debug)]
pub enum IoBuf {
    /// Owned by the request.
    Owned(AlignedBuf),
    /// Shared; the device only reads it.
    Shared(Arc<AlignedBuf>),
}

impl IoBuf {
    /// The bytes, for the device to fill (`None` for a shared buffer).
    pub fn as_mut_slice(&mut self) -> Option<&mut [u8]> {
        match self {
            IoBuf::Owned(buf) => Some(buf),
            IoBuf::Shared(_) => None,
        }
    }

    /// The buffer as one others can share, without a copy.
    pub fn into_shared(self) -> Arc<AlignedBuf> {
        match self {
            IoBuf::Owned(buf) => Arc::new(buf),
            IoBuf::Shared(buf) => buf,
        }
    }

    /// The buffer, copied if it is shared.
    pub fn into_owned(self) -> AlignedBuf {
        match self {
            IoBuf::Owned(buf) => buf,
            IoBuf::Shared(buf) => AlignedBuf::clone(&buf),
        }
    }
}

impl std::ops::Deref for IoBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            IoBuf::Owned(buf) => buf,
            IoBuf::Shared(buf) => buf,
        }
    }
}

/// One transfer: the buffer is read into or written from `device_offset`.
#[derive(Debug)]
pub struct IoRequest {
    /// Read or write.
    pub kind: IoKind,
    /// Byte offset on the device (block-aligned).
    pub device_offset: u64,
    /// The data (block-aligned length); returned to the caller on completion.
    pub buf: IoBuf,
}

impl IoRequest {
    /// A read of `length` bytes at `device_offset`.
    pub fn read(device_offset: u64, length: usize) -> Self {
        Self::read_into(device_offset, AlignedBuf::zeroed(length))
    }

    /// A read of `buf.len()` bytes at `device_offset` into `buf`, whose old bytes are
    /// overwritten: for a caller that reuses its buffers rather than allocating each read's.
    pub fn read_into(device_offset: u64, buf: AlignedBuf) -> Self {
        IoRequest {
            kind: IoKind::Read,
            device_offset,
            buf: IoBuf::Owned(buf),
        }
    }

    /// A write of `buf` at `device_offset`.
    pub fn write(device_offset: u64, buf: AlignedBuf) -> Self {
        IoRequest {
            kind: IoKind::Write,
            device_offset,
            buf: IoBuf::Owned(buf),
        }
    }

    /// A write of `buf`, owned or shared.
    pub fn write_buf(device_offset: u64, buf: IoBuf) -> Self {
        IoRequest {
            kind: IoKind::Write,
            device_offset,
            buf,
        }
    }

    /// A write of a buffer others may read while it is written.
    pub fn write_shared(device_offset: u64, buf: Arc<AlignedBuf>) -> Self {
        IoRequest {
            kind: IoKind::Write,
            device_offset,
            buf: IoBuf::Shared(buf),
        }
    }
}

/// A completed batch: the requests (with read data filled in) and the first error, if any.
#[derive(Debug)]
pub struct IoOutcome {
    /// The requests, in submission order.
    pub requests: Vec<IoRequest>,
    /// `Ok` when every request transferred all its bytes.
    pub result: Result<()>,
}

/// Called once when a whole batch has completed.
pub type IoDone = Box<dyn FnOnce(IoOutcome) + Send>;

/// A data device.
pub trait BlockDevice: Send + Sync {
    /// Size, block size, kind.
    fn info(&self) -> &DeviceInfo;

    /// Starts every request of `batch`; `done` runs once all have completed (on any thread, so
    /// it must be quick). Invalid requests fail the batch without touching the device.
    fn submit(&self, batch: Vec<IoRequest>, done: IoDone);

    /// Makes every completed write durable (fdatasync: also flushes the device's write cache).
    fn flush(&self) -> Result<()>;

    /// Completes one submitted request, for a device whose completions the caller drives (the
    /// simulated device in reordering mode, under a stepped store); false when none is
    /// pending. Real devices complete on their own and always answer false.
    fn complete_one(&self) -> bool {
        false
    }

    /// Performs `batch` and waits for it on the calling thread. The default submits and parks
    /// until the completion arrives; a device may do better for a caller that waits anyway.
    fn run_blocking(&self, batch: Vec<IoRequest>) -> Result<Vec<IoRequest>> {
        let completion = Arc::new(Completion::new());
        let deliver = Arc::clone(&completion);
        self.submit(batch, Box::new(move |outcome| deliver.complete(outcome)));
        let outcome = completion.wait();
        outcome.result.map(|()| outcome.requests)
    }
}

impl dyn BlockDevice + '_ {
    /// Performs `batch` and waits for it.
    pub fn run(&self, batch: Vec<IoRequest>) -> Result<Vec<IoRequest>> {
        self.run_blocking(batch)
    }

    /// Reads `length` bytes at `device_offset`.
    pub fn read_at(&self, device_offset: u64, length: usize) -> Result<AlignedBuf> {
        let mut requests = self.run(vec![IoRequest::read(device_offset, length)])?;
        let request = requests
            .pop()
            .ok_or_else(|| Error::corruption("empty read batch"))?;
        Ok(request.buf.into_owned())
    }

    /// Writes `buf` at `device_offset` (not yet durable: see `flush`).
    pub fn write_at(&self, device_offset: u64, buf: AlignedBuf) -> Result<()> {
        self.run(vec![IoRequest::write(device_offset, buf)])
            .map(drop)
    }
}

/// Longest single transfer.
pub const IO_LENGTH_MAX: u64 = 1 << 30;

/// Checks that a request is block-aligned, not empty, not huge, and inside the device.
pub fn check_request(info: &DeviceInfo, request: &IoRequest) -> Result<()> {
    let block = u64::from(info.logical_block_size);
    let length = request.buf.len() as u64;
    let aligned = request.device_offset.is_multiple_of(block)
        && length.is_multiple_of(block)
        && length > 0
        && length <= IO_LENGTH_MAX;
    if request.kind == IoKind::Read && matches!(request.buf, IoBuf::Shared(_)) {
        return Err(Error::invalid("a read needs a buffer of its own"));
    }
    if request.kind == IoKind::Write && info.access == Access::ReadOnly {
        return Err(Error::ReadOnly(format!(
            "{} is open read-only: a write of {length:#x} bytes at {:#x} was refused",
            info.path.display(),
            request.device_offset
        )));
    }
    let inside = request
        .device_offset
        .checked_add(length)
        .is_some_and(|end| end <= info.size_bytes);
    if !aligned || !inside {
        return Err(Error::invalid(format!(
            "{:?} of {length:#x} bytes at {:#x} on {} (size {:#x}, block {block})",
            request.kind,
            request.device_offset,
            info.path.display(),
            info.size_bytes
        )));
    }
    Ok(())
}

/// Checks a whole batch.
pub fn check_batch(info: &DeviceInfo, batch: &[IoRequest]) -> Result<()> {
    batch
        .iter()
        .try_for_each(|request| check_request(info, request))?;
    check_writes_disjoint(batch)
}

/// The requests of one batch complete in any order, so two writes to the same bytes in one
/// batch would leave either; callers must coalesce them first.
fn check_writes_disjoint(batch: &[IoRequest]) -> Result<()> {
    let mut writes: Vec<(u64, u64)> = batch
        .iter()
        .filter(|r| r.kind == IoKind::Write)
        .map(|r| (r.device_offset, r.device_offset + r.buf.len() as u64))
        .collect();
    if writes.len() < 2 {
        return Ok(());
    }
    writes.sort_unstable();
    match writes.windows(2).find(|pair| pair[1].0 < pair[0].1) {
        Some(pair) => Err(Error::InvalidArgument(format!(
            "writes [{:#x}, {:#x}) and [{:#x}, {:#x}) overlap in one batch: their order is \
             undefined",
            pair[0].0, pair[0].1, pair[1].0, pair[1].1
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_writes_in_one_batch_are_refused() {
        let write = |offset: u64| IoRequest::write(offset, AlignedBuf::zeroed(4096));
        let disjoint = [write(0), write(4096), IoRequest::read(0, 4096)];
        assert!(
            check_writes_disjoint(&disjoint).is_ok(),
            "a read may overlap"
        );
        let overlapping = [write(8192), write(0), write(10240 - 4096 + 512)];
        assert!(matches!(
            check_writes_disjoint(&overlapping),
            Err(Error::InvalidArgument(_))
        ));
    }
}
