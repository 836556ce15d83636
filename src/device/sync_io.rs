//! The fallback device: blocking pread/pwrite with O_DIRECT, completing on the caller's thread.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::open::{OpenedDevice, open_data_device};
use super::{Access, BlockDevice, DeviceInfo, IoDone, IoKind, IoOutcome, IoRequest, check_batch};
use crate::error::{Error, Result};

/// pread/pwrite device.
#[derive(Debug)]
pub struct SyncDevice {
    file: File,
    info: DeviceInfo,
}

impl SyncDevice {
    /// Opens `path` for direct I/O (see [`open_data_device`]).
    pub fn open(path: &Path, access: Access) -> Result<SyncDevice> {
        Ok(SyncDevice::from_opened(open_data_device(path, access)?))
    }

    /// Uses an opened device.
    pub fn from_opened(opened: OpenedDevice) -> SyncDevice {
        SyncDevice {
            file: opened.file,
            info: opened.info,
        }
    }

    fn transfer(&self, request: &mut IoRequest) -> Result<()> {
        let offset = request.device_offset;
        let length = request.buf.len();
        let result = match (request.kind, request.buf.as_mut_slice()) {
            (IoKind::Read, Some(target)) => self.file.read_exact_at(target, offset),
            (IoKind::Read, None) => Err(std::io::Error::other("read into a shared buffer")),
            (IoKind::Write, _) => self.file.write_all_at(&request.buf, offset),
        };
        result.map_err(|e| {
            Error::io(
                format!(
                    "{:?} of {:#x} bytes at device offset {offset:#x}",
                    request.kind, length
                ),
                e,
            )
        })
    }
}

impl BlockDevice for SyncDevice {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn submit(&self, mut batch: Vec<IoRequest>, done: IoDone) {
        let result = check_batch(&self.info, &batch).and_then(|()| {
            batch
                .iter_mut()
                .try_for_each(|request| self.transfer(request))
        });
        done(IoOutcome {
            requests: batch,
            result,
        });
    }

    fn flush(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io(format!("fdatasync of {}", self.info.path.display()), e))
    }
}
