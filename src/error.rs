//! The one error type of the public API.
//!
//! Every failure a caller can act on has its own variant, so a daemon can match on it instead of
//! parsing strings: bad arguments (`InvalidArgument`, `TooBig`), missing or conflicting names
//! (`NotFound`, `AlreadyExists`, `NotEmpty`), a full device (`NoSpace`), bytes from disk that fail
//! their checks (`Corruption`, `ChecksumMismatch`), a store that is not ours or is too new
//! (`NotFormatted`, `ForeignDevice`, `NewerFormat`), a store already open (`Busy`), a change
//! asked of a store opened only for inspection (`ReadOnly`), operating system failures (`Io`)
//! and a store that stopped accepting work after a failed write or sync (`Poisoned`). Messages
//! name what failed and where, because the reader is often an operator, and say it once: a
//! message never repeats the message of the error it wraps, which [`std::error::Error::source`]
//! gives instead (print the chain, as `anyhow` and `bstool` do, to see both).
//!
//! [`Error::errno`] maps each error to the errno Ceph's `ObjectStore` returns for it, for daemons
//! that answer clients in errno.

use std::fmt;
use std::io;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in bstore.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A collection or object does not exist; [`Missing`] says which and names it.
    NotFound(Missing),
    /// The thing to create already exists.
    AlreadyExists(String),
    /// A collection to remove still holds objects.
    NotEmpty(String),
    /// The device cannot satisfy an allocation; nothing was changed.
    NoSpace {
        /// Bytes the operation needed.
        requested_bytes: u64,
        /// Bytes free at the time.
        available_bytes: u64,
    },
    /// An object would grow past the maximum object size.
    TooBig {
        /// End offset the operation asked for.
        end_offset: u64,
        /// The largest object size bstore supports.
        size_max: u64,
    },
    /// An argument is malformed: unaligned, out of range, a name too long.
    InvalidArgument(String),
    /// Bytes read from the device or the KV store failed a structural check.
    Corruption(String),
    /// Object data failed its crc32c: bstore never returns such bytes.
    ChecksumMismatch {
        /// Collection and object the data belongs to.
        object: String,
        /// Offset of the failing checksum chunk within the object.
        object_offset: u64,
        /// Offset of the failing checksum chunk on the data device.
        device_offset: u64,
        /// The checksum recorded in the metadata.
        expected: u32,
        /// The checksum of the bytes read.
        actual: u32,
    },
    /// The data device carries no label: it was never formatted.
    NotFormatted(String),
    /// The data device carries something that is not a bstore label.
    ForeignDevice(String),
    /// The store was made by a newer on-disk format than this build understands.
    NewerFormat {
        /// What carries the version (label, superblock, a record type).
        what: String,
        /// Version found on disk.
        found: u32,
        /// Newest version this build reads.
        supported: u32,
    },
    /// The store or device is already open by this or another process.
    Busy(String),
    /// The store was opened read-only (for inspection): nothing may change it.
    ReadOnly(String),
    /// An operating-system call failed.
    Io {
        /// What bstore was doing.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A device write, device flush or KV sync failed earlier; the store accepts no more work
    /// until it is reopened (which replays the durable state).
    Poisoned(String),
}

/// What a [`Error::NotFound`] found missing. Names are the caller's bytes, unchanged.
///
/// Attributes and omap keys are not here: reading one that is not set is `Ok(None)` (Ceph's
/// `ENODATA` is the caller's to return), and removing one that is not set does nothing, as in
/// BlueStore.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Missing {
    /// The collection does not exist.
    Collection {
        /// The collection's name.
        collection: Vec<u8>,
    },
    /// The collection exists; the object does not.
    Object {
        /// The collection's name.
        collection: Vec<u8>,
        /// The object's name.
        object: Vec<u8>,
    },
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = |bytes: &[u8]| bytes.escape_ascii().to_string();
        match self {
            Missing::Collection { collection } => write!(f, "collection {}", text(collection)),
            Missing::Object { collection, object } => {
                write!(f, "object {}/{}", text(collection), text(object))
            }
        }
    }
}

impl Error {
    /// A missing collection.
    pub fn collection_not_found(collection: &[u8]) -> Self {
        Error::NotFound(Missing::Collection {
            collection: collection.to_vec(),
        })
    }

    /// A missing object in an existing collection.
    pub fn object_not_found(collection: &[u8], object: &[u8]) -> Self {
        Error::NotFound(Missing::Object {
            collection: collection.to_vec(),
            object: object.to_vec(),
        })
    }

    /// The errno Ceph's `ObjectStore` returns for this error, positive (`libc::ENOENT`, ...):
    /// negate it for a Ceph-style return code.
    ///
    /// An `Io` error gives the operating system's own errno when it has one. Bytes that fail
    /// their checks, a poisoned store and an `Io` error without an errno are `EIO`. Writes past
    /// the largest object size are `E2BIG`, as BlueStore returns them. A device that carries
    /// no store is `ENOENT` and one that carries something else `EINVAL`; a format newer than
    /// this build is `EOPNOTSUPP`.
    pub fn errno(&self) -> i32 {
        match self {
            Error::NotFound(_) | Error::NotFormatted(_) => libc::ENOENT,
            Error::AlreadyExists(_) => libc::EEXIST,
            Error::NotEmpty(_) => libc::ENOTEMPTY,
            Error::NoSpace { .. } => libc::ENOSPC,
            Error::TooBig { .. } => libc::E2BIG,
            Error::InvalidArgument(_) | Error::ForeignDevice(_) => libc::EINVAL,
            Error::NewerFormat { .. } => libc::EOPNOTSUPP,
            Error::Busy(_) => libc::EBUSY,
            Error::ReadOnly(_) => libc::EROFS,
            Error::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            Error::Corruption(_) | Error::ChecksumMismatch { .. } | Error::Poisoned(_) => libc::EIO,
        }
    }

    /// Wraps an `io::Error` with what bstore was doing.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A corruption error naming what was found bad and where.
    pub fn corruption(what: impl fmt::Display) -> Self {
        Error::Corruption(what.to_string())
    }

    /// An invalid-argument error.
    pub fn invalid(what: impl fmt::Display) -> Self {
        Error::InvalidArgument(what.to_string())
    }

    /// True for errors that mean the store must stop accepting work: a failed device write,
    /// flush or KV sync leaves the in-memory state ahead of what is durable.
    pub fn is_fatal_io(&self) -> bool {
        matches!(self, Error::Io { .. } | Error::Poisoned(_))
    }
}

/// An error and every cause below it, `: `-separated: for messages kept as text (a poisoning
/// reason, a log event), where no reporter will walk `source()`.
pub(crate) struct Chain<'a>(pub &'a Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = std::error::Error::source(self.0);
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound(what) => write!(f, "not found: {what}"),
            Error::AlreadyExists(what) => write!(f, "already exists: {what}"),
            Error::NotEmpty(what) => write!(f, "not empty: {what}"),
            Error::NoSpace {
                requested_bytes,
                available_bytes,
            } => write!(
                f,
                "no space: needed {requested_bytes} bytes, {available_bytes} bytes free"
            ),
            Error::TooBig {
                end_offset,
                size_max,
            } => write!(
                f,
                "object too big: end offset {end_offset} exceeds the maximum object size {size_max}"
            ),
            Error::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Error::Corruption(what) => write!(f, "corruption: {what}"),
            Error::ChecksumMismatch {
                object,
                object_offset,
                device_offset,
                expected,
                actual,
            } => write!(
                f,
                "checksum mismatch in {object} at object offset {object_offset:#x} \
                 (device offset {device_offset:#x}): expected crc32c {expected:#010x}, \
                 read {actual:#010x}"
            ),
            Error::NotFormatted(what) => write!(f, "not a bstore device (no label): {what}"),
            Error::ForeignDevice(what) => write!(f, "not a bstore device: {what}"),
            Error::NewerFormat {
                what,
                found,
                supported,
            } => write!(
                f,
                "{what} has format version {found}, newer than this build supports ({supported})"
            ),
            Error::Busy(what) => write!(f, "busy: {what} is already in use"),
            Error::ReadOnly(what) => write!(f, "read-only: {what}"),
            // The cause is the source, not part of this message: chained reporters print it once.
            Error::Io { context, .. } => write!(f, "I/O error while {context}"),
            Error::Poisoned(why) => write!(
                f,
                "store is poisoned after an earlier failure ({why}); reopen it to recover"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_the_errno_ceph_returns_for_it() {
        let named = |what: &str| what.to_string();
        let cases = [
            (Error::collection_not_found(b"pg"), libc::ENOENT),
            (Error::object_not_found(b"pg", b"o"), libc::ENOENT),
            (Error::AlreadyExists(named("collection pg")), libc::EEXIST),
            (Error::NotEmpty(named("collection pg")), libc::ENOTEMPTY),
            (
                Error::NoSpace {
                    requested_bytes: 2,
                    available_bytes: 1,
                },
                libc::ENOSPC,
            ),
            (
                Error::TooBig {
                    end_offset: 1 << 33,
                    size_max: 1 << 32,
                },
                libc::E2BIG,
            ),
            (Error::invalid("an empty name"), libc::EINVAL),
            (Error::corruption("a bad record"), libc::EIO),
            (
                Error::ChecksumMismatch {
                    object: named("pg/o"),
                    object_offset: 0,
                    device_offset: 0,
                    expected: 1,
                    actual: 2,
                },
                libc::EIO,
            ),
            (Error::NotFormatted(named("/dev/sdb")), libc::ENOENT),
            (
                Error::ForeignDevice(named("/dev/sdb holds xfs")),
                libc::EINVAL,
            ),
            (
                Error::NewerFormat {
                    what: named("label"),
                    found: 9,
                    supported: 3,
                },
                libc::EOPNOTSUPP,
            ),
            (Error::Busy(named("store")), libc::EBUSY),
            (Error::ReadOnly(named("store")), libc::EROFS),
            (
                Error::io("syncing", io::Error::from_raw_os_error(libc::EDQUOT)),
                libc::EDQUOT,
            ),
            (
                Error::io("syncing", io::Error::other("no errno")),
                libc::EIO,
            ),
            (Error::Poisoned(named("a failed flush")), libc::EIO),
        ];
        for (error, errno) in cases {
            assert_eq!(error.errno(), errno, "{error}");
        }
    }

    #[test]
    fn missing_names_are_shown_escaped_and_kept_as_given() {
        let error = Error::object_not_found(b"pg", b"o\xff\n");
        assert_eq!(error.to_string(), r"not found: object pg/o\xff\n");
        assert!(matches!(
            error,
            Error::NotFound(Missing::Object { ref object, .. }) if object == b"o\xff\n"
        ));
    }
}
