//! Opening the data device: a regular file or a block device, with O_DIRECT.
//!
//! For reading and writing the device is held exclusively: a block device is opened with
//! `O_EXCL`, which the kernel enforces against every other exclusive opener (a mounted file
//! system, another bstore), and a regular file gets an advisory `flock`, which every bstore
//! process takes. Either way a second open fails with `Busy`. A read-only open takes neither,
//! so an operator can inspect a device a daemon holds (and one on a read-only mount): it opens
//! `O_RDONLY`, and [`super::check_request`] refuses writes before they reach the kernel.
//!
//! Geometry comes from the kernel: `BLKGETSIZE64` and `BLKSSZGET` for block devices, `statx`'s
//! direct-I/O alignment for files; the rotational flag from sysfs (for a file, that of the block
//! device holding its file system).

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use super::{Access, DeviceInfo, DeviceKind};
use crate::error::{Error, Result};

nix::ioctl_read!(block_size_bytes, 0x12, 114, u64);
nix::ioctl_read_bad!(block_logical_sector_size, 0x1268, libc::c_int);

/// An open, exclusively held device file and what it is.
#[derive(Debug)]
pub struct OpenedDevice {
    /// The file descriptor (O_DIRECT).
    pub file: File,
    /// Geometry and kind.
    pub info: DeviceInfo,
}

/// Opens `path` (a regular file or a block device) for direct I/O: exclusively to read and
/// write, shared to only read.
pub fn open_data_device(path: &Path, access: Access) -> Result<OpenedDevice> {
    let resolved = std::fs::canonicalize(path)
        .map_err(|e| Error::io(format!("resolving {}", path.display()), e))?;
    let metadata = std::fs::metadata(&resolved)
        .map_err(|e| Error::io(format!("inspecting {}", resolved.display()), e))?;
    let file_type = metadata.file_type();
    if file_type.is_block_device() {
        open_block_device(resolved, metadata.rdev(), access)
    } else if file_type.is_file() {
        open_regular_file(resolved, metadata.dev(), metadata.len(), access)
    } else {
        Err(Error::invalid(format!(
            "{} is neither a regular file nor a block device",
            resolved.display()
        )))
    }
}

/// The open(2) flags of each access: exclusive only where writing.
fn open_options(access: Access, exclusive_flags: libc::c_int) -> OpenOptions {
    let mut options = OpenOptions::new();
    options.read(true);
    match access {
        Access::ReadWrite => options
            .write(true)
            .custom_flags(libc::O_DIRECT | exclusive_flags),
        Access::ReadOnly => options.custom_flags(libc::O_DIRECT),
    };
    options
}

fn open_block_device(path: PathBuf, rdev: u64, access: Access) -> Result<OpenedDevice> {
    let file = open_options(access, libc::O_EXCL)
        .open(&path)
        .map_err(|e| busy_or_io(&path, e))?;
    let fd = file.as_raw_fd();
    let mut size_bytes = 0u64;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points at a live local.
    unsafe { block_size_bytes(fd, &mut size_bytes) }
        .map_err(|e| Error::io(format!("BLKGETSIZE64 on {}", path.display()), e.into()))?;
    let mut sector: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer, which points at a live local.
    unsafe { block_logical_sector_size(fd, &mut sector) }
        .map_err(|e| Error::io(format!("BLKSSZGET on {}", path.display()), e.into()))?;
    let logical_block_size = u32::try_from(sector)
        .map_err(|_| Error::invalid(format!("{} reports sector size {sector}", path.display())))?;
    Ok(OpenedDevice {
        file,
        info: DeviceInfo {
            rotational: rotational_of(libc::major(rdev), libc::minor(rdev)),
            path,
            kind: DeviceKind::BlockDevice,
            size_bytes,
            logical_block_size,
            access,
        },
    })
}

fn open_regular_file(
    path: PathBuf,
    dev: u64,
    size_bytes: u64,
    access: Access,
) -> Result<OpenedDevice> {
    let file = open_options(access, 0).open(&path).map_err(|e| {
        if e.raw_os_error() == Some(libc::EINVAL) {
            Error::invalid(format!(
                "{}: this file system does not support O_DIRECT",
                path.display()
            ))
        } else {
            busy_or_io(&path, e)
        }
    })?;
    if access == Access::ReadWrite {
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(Error::Busy(path.display().to_string())),
            Err(TryLockError::Error(e)) => {
                return Err(Error::io(format!("locking {}", path.display()), e));
            }
        }
    }
    let logical_block_size = direct_io_alignment(&file).unwrap_or(4096);
    Ok(OpenedDevice {
        file,
        info: DeviceInfo {
            rotational: rotational_of(libc::major(dev), libc::minor(dev)),
            path,
            kind: DeviceKind::File,
            size_bytes,
            logical_block_size,
            access,
        },
    })
}

fn busy_or_io(path: &Path, error: io::Error) -> Error {
    if error.raw_os_error() == Some(libc::EBUSY) {
        Error::Busy(path.display().to_string())
    } else {
        Error::io(format!("opening {}", path.display()), error)
    }
}

/// The offset alignment O_DIRECT needs on this file, from `statx(STATX_DIOALIGN)` (Linux 6.1+).
fn direct_io_alignment(file: &File) -> Option<u32> {
    // SAFETY: statx is plain old data; all-zero is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: the fd is open, the empty path with AT_EMPTY_PATH names the fd itself, and `stx`
    // is a live, writable statx struct.
    let rc = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &mut stx,
        )
    };
    let supported = rc == 0 && stx.stx_mask & libc::STATX_DIOALIGN != 0;
    let alignment = stx.stx_dio_offset_align.max(stx.stx_dio_mem_align);
    (supported && alignment.is_power_of_two()).then_some(alignment)
}

/// Reads `queue/rotational` of block device `major:minor` (or of its parent disk for a partition).
/// Unknown devices (tmpfs, overlay) count as non-rotational.
pub fn rotational_of(major: u32, minor: u32) -> bool {
    let device_dir = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    [
        device_dir.join("queue/rotational"),
        device_dir.join("../queue/rotational"),
    ]
    .iter()
    .find_map(|path| std::fs::read_to_string(path).ok())
    .is_some_and(|text| text.trim() == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_opens_once() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let path = dir.path().join("block");
        let file = File::create(&path).unwrap();
        file.set_len(1 << 20).unwrap();
        let first = open_data_device(&path, Access::ReadWrite).unwrap();
        assert_eq!(first.info.kind, DeviceKind::File);
        assert_eq!(first.info.size_bytes, 1 << 20);
        assert!(first.info.logical_block_size.is_power_of_two());
        match open_data_device(&path, Access::ReadWrite) {
            Err(Error::Busy(_)) => {}
            other => panic!("second open should be Busy, got {other:?}"),
        }
        let reader = open_data_device(&path, Access::ReadOnly)
            .expect("a read-only open works beside the writer");
        assert_eq!(reader.info.access, Access::ReadOnly);
        drop(first);
        open_data_device(&path, Access::ReadWrite).expect("reopen after close");
    }

    #[test]
    fn a_directory_is_not_a_device() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            open_data_device(dir.path(), Access::ReadWrite),
            Err(Error::InvalidArgument(_))
        ));
    }
}
