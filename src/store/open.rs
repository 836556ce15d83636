//! Opening a store directory's parts: the data device with the chosen I/O backend, and RocksDB,
//! either to change the store (exclusively) or only to look at it (beside anyone).
//!
//! Two operator hazards are handled here rather than left to callers:
//! - **io_uring may be forbidden.** Container runtimes' seccomp profiles commonly refuse
//!   `io_uring_setup`, and `kernel.io_uring_disabled` can too. With [`IoBackend::Auto`] (the
//!   default) the device falls back to pread/pwrite and the reason is kept for the store to
//!   report ([`DataDevice::io_fallback`]); [`IoBackend::IoUring`] fails instead.
//! - **A process that just died may still hold the device.** After a SIGKILL the kernel
//!   releases a dead process's io_uring files asynchronously, so for up to a few hundred
//!   milliseconds the block file's lock (or a block device's `O_EXCL`) still looks taken. A
//!   writable open waits for it a bounded moment ([`DEAD_HOLDER_WAIT`]) before reporting
//!   `Busy`; a live store is told apart earlier by the store directory's lock, which is
//!   released at once when its holder dies.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::device::open::open_data_device;
use crate::device::{Access, BlockDevice, IoBackend, SyncDevice, UringDevice};
use crate::error::{Error, Result};

/// How long a writable open waits for a device whose holder may have just died.
pub const DEAD_HOLDER_WAIT: Duration = Duration::from_secs(2);

/// Pause between attempts while waiting.
const BUSY_RETRY_PAUSE: Duration = Duration::from_millis(20);

/// An opened data device, and why io_uring is not in use when the default had to fall back.
pub struct DataDevice {
    /// The device.
    pub device: Arc<dyn BlockDevice>,
    /// Why io_uring could not be set up, when [`IoBackend::Auto`] fell back to pread/pwrite.
    pub io_fallback: Option<String>,
}

/// Opens the data device at `path` with the chosen I/O backend. A writable open that finds
/// the device busy retries for [`DEAD_HOLDER_WAIT`].
pub fn open_device(path: &Path, backend: IoBackend, access: Access) -> Result<DataDevice> {
    let deadline = Instant::now() + DEAD_HOLDER_WAIT;
    loop {
        match open_device_once(path, backend, access) {
            Err(Error::Busy(_)) if access == Access::ReadWrite && Instant::now() < deadline => {
                std::thread::sleep(BUSY_RETRY_PAUSE);
            }
            result => return result,
        }
    }
}

/// [`open_device`] for writing, returning just the device.
pub fn open_device_waiting(path: &Path, backend: IoBackend) -> Result<Arc<dyn BlockDevice>> {
    Ok(open_device(path, backend, Access::ReadWrite)?.device)
}

fn open_device_once(path: &Path, backend: IoBackend, access: Access) -> Result<DataDevice> {
    let (device, io_fallback): (Arc<dyn BlockDevice>, _) = match backend {
        IoBackend::Sync => (Arc::new(SyncDevice::open(path, access)?), None),
        IoBackend::IoUring { queue_depth } => (
            Arc::new(UringDevice::open(path, queue_depth, access)?),
            None,
        ),
        IoBackend::Auto { queue_depth } => {
            let opened = open_data_device(path, access)?;
            match UringDevice::from_opened(opened, queue_depth) {
                Ok(device) => (Arc::new(device), None),
                Err(failed) => (
                    Arc::new(SyncDevice::from_opened(failed.opened)),
                    Some(format!(
                        "io_uring could not be set up ({}); using pread/pwrite",
                        failed.error
                    )),
                ),
            }
        }
    };
    Ok(DataDevice {
        device,
        io_fallback,
    })
}
