//! Transactions: built op by op from C, submitted by `bstore_apply` or `bstore_submit`.
//!
//! Each op function appends one op, as the Rust `Transaction` builder does; nothing is checked
//! against the store until the transaction is submitted, when all ops apply or none.

use std::ffi::c_int;

use bstore::{AllocHint, ObjectHash, Transaction};

use crate::args::{self, bstore_bytes};
use crate::error::{Failure, guard};

/// A transaction being built (opaque).
pub struct bstore_txn {
    pub(crate) txn: Transaction,
}

/// Which hash of an object's name a split selects by.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum bstore_hash {
    /// crc32c of the whole name.
    BSTORE_HASH_CRC32C = 0,
    /// Four bytes of the name at `hash_offset`, big-endian.
    BSTORE_HASH_IN_NAME = 1,
    /// Four bytes of the name at `hash_offset`, big-endian, holding the hash bit-reversed (as
    /// Ceph's object keys do).
    BSTORE_HASH_IN_NAME_REVERSED = 2,
}

/// A new, empty transaction; free it with `bstore_txn_free`. Never null.
#[unsafe(no_mangle)]
pub extern "C" fn bstore_txn_new() -> *mut bstore_txn {
    Box::into_raw(Box::new(bstore_txn {
        txn: Transaction::new(),
    }))
}

/// Frees a transaction (submitted or not). Null is allowed and does nothing.
///
/// # Safety
/// `txn` is null or came from `bstore_txn_new` and is not used again.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_txn_free(txn: *mut bstore_txn) {
    if !txn.is_null() {
        // SAFETY: the caller gives back a transaction of `bstore_txn_new`, once.
        drop(unsafe { Box::from_raw(txn) });
    }
}

/// Appends an op to the transaction behind `txn`, once `build` has read its arguments.
///
/// # Safety
/// `txn` is null or a live transaction of `bstore_txn_new` no other thread uses meanwhile.
unsafe fn push(
    txn: *mut bstore_txn,
    build: impl FnOnce(&mut Transaction) -> Result<(), Failure>,
) -> c_int {
    guard(|| {
        // SAFETY: the caller promises a live transaction, used by this thread alone.
        let txn = unsafe { txn.as_mut() }.ok_or_else(|| Failure::invalid("txn is null"))?;
        build(&mut txn.txn)?;
        Ok(0)
    })
}

/// The bytes of `name`, or `-EINVAL` when it is malformed.
///
/// # Safety
/// `name` must be valid for the call (see `bstore_bytes`).
unsafe fn named<'a>(what: &str, name: bstore_bytes) -> Result<&'a [u8], Failure> {
    // SAFETY: the caller's promise, passed on.
    unsafe { args::bytes(what, name.data, name.len) }
}

/// Creates a collection (`-EEXIST` at submission if it exists).
///
/// # Safety
/// `txn` as for every op: a live transaction; each `bstore_bytes` valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_txn_create_collection(
    txn: *mut bstore_txn,
    collection: bstore_bytes,
) -> c_int {
    // SAFETY: the caller's promises for `txn` and each `bstore_bytes`, passed on.
    unsafe {
        push(txn, |t| {
            t.create_collection(named("collection", collection)?);
            Ok(())
        })
    }
}

/// Removes an empty collection (`-ENOTEMPTY` at submission while it holds objects).
///
/// # Safety
/// As for `bstore_txn_create_collection`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_txn_remove_collection(
    txn: *mut bstore_txn,
    collection: bstore_bytes,
) -> c_int {
    // SAFETY: the caller's promises for `txn` and each `bstore_bytes`, passed on.
    unsafe {
        push(txn, |t| {
            t.remove_collection(named("collection", collection)?);
            Ok(())
        })
    }
}

/// Renames a collection with everything in it.
///
/// # Safety
/// As for `bstore_txn_create_collection`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_txn_rename_collection(
    txn: *mut bstore_txn,
    collection: bstore_bytes,
    new_name: bstore_bytes,
) -> c_int {
    // SAFETY: the caller's promises for `txn` and each `bstore_bytes`, passed on.
    unsafe {
        push(txn, |t| {
            t.rename_collection(
                named("collection", collection)?,
                named("new name", new_name)?,
            );
            Ok(())
        })
    }
}

/// Moves the objects of `collection` whose hash has `rem` in its low `bits` bits into `into`
/// (Ceph's split_collection); `hash_offset` is read by the `BSTORE_HASH_IN_NAME` kinds only.
///
/// # Safety
/// As for `bstore_txn_create_collection`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_txn_split_collection(
    txn: *mut bstore_txn,
    collection: bstore_bytes,
    into: bstore_bytes,
    bits: u32,
    rem: u32,
    hash: bstore_hash,
    hash_offset: usize,
) -> c_int {
    let hash = match hash {
        bstore_hash::BSTORE_HASH_CRC32C => ObjectHash::Crc32c,
        bstore_hash::BSTORE_HASH_IN_NAME => ObjectHash::InName {
            offset: hash_offset,
            bit_reversed: false,
        },
        bstore_hash::BSTORE_HASH_IN_NAME_REVERSED => ObjectHash::InName {
            offset: hash_offset,
            bit_reversed: true,
        },
    };
    // SAFETY: the caller's promises for `txn` and each `bstore_bytes`, passed on.
    unsafe {
        push(txn, |t| {
            let (from, into) = (named("collection", collection)?, named("into", into)?);
            t.split_collection(from, into, bits, rem, hash);
            Ok(())
        })
    }
}

/// Moves every object of `collection` into `into` and removes `collection` (Ceph's
/// merge_collection).
///
/// # Safety
/// As for `bstore_txn_create_collection`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_txn_merge_collection(
    txn: *mut bstore_txn,
    collection: bstore_bytes,
    into: bstore_bytes,
) -> c_int {
    // SAFETY: the caller's promises for `txn` and each `bstore_bytes`, passed on.
    unsafe {
        push(txn, |t| {
            t.merge_collection(named("collection", collection)?, named("into", into)?);
            Ok(())
        })
    }
}

/// Creates the object if it does not exist.
///
/// # Safety
/// As for `bstore_txn_create_collection`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_txn_touch(
    txn: *mut bstore_txn,
    collection: bstore_bytes,
    object: bstore_bytes,
) -> c_int {
    // SAFETY: the caller's promises for `txn` and each `bstore_bytes`, passed on.
    unsafe {
        push(txn, |t| {
            t.touch(named("collection", collection)?, named("object", object)?);
            Ok(())
        })
    }
}

/// Writes `data` at `offset`, creating the object if needed. The bytes are copied.
///
/// # Safety
/// As for `bstore_txn_create_collection`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_txn_write(
    txn: *mut bstore_txn,
    collection: bstore_bytes,
    object: bstore_bytes,
    offset: u64,
    data: bstore_bytes,
) -> c_int {
    // SAFETY: the caller's promises for `txn` and each `bstore_bytes`, passed on.
    unsafe {
        push(txn, |t| {
            let (c, o) = (named("collection", collection)?, named("object", object)?);
            t.write(c, o, offset, named("data", data)?.to_vec());
            Ok(())
        })
    }
}

/// Zeroes `length` bytes at `offset` (a hole where whole units are covered).
///
/// # Safety
/// As for `bstore_txn_create_collection`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_txn_zero(
    txn: *mut bstore_txn,
    collection: bstore_bytes,
    object: bstore_bytes,
    offset: u64,
    length: u64,
) -> c_int {
    // SAFETY: the caller's promises for `txn` and each `bstore_bytes`, passed on.
    unsafe {
        push(txn, |t| {
            let (c, o) = (named("collection", collection)?, named("object", object)?);
            t.zero(c, o, offset, length);
            Ok(())
        })
    }
}

/// Sets the object's size, dropping or adding (as a hole) bytes at the end.
///
/// # Safety
/// As for `bstore_txn_create_collection`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_txn_truncate(
    txn: *mut bstore_txn,
    collection: bstore_bytes,
    object: bstore_bytes,
    size: u64,
) -> c_int {
    // SAFETY: the caller's promises for `txn` and each `bstore_bytes`, passed on.
    unsafe {
        push(txn, |t| {
            t.truncate(
                named("collection", collection)?,
                named("object", object)?,
                size,
            );
            Ok(())
        })
    }
}

/// Removes the object (`-ENOENT` at submission if it does not exist).
///
/// # Safety
/// As for `bstore_txn_create_collection`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_txn_remove(
    txn: *mut bstore_txn,
    collection: bstore_bytes,
    object: bstore_bytes,
) -> c_int {
    // SAFETY: the caller's promises for `txn` and each `bstore_bytes`, passed on.
    unsafe {
        push(txn, |t| {
            t.remove(named("collection", collection)?, named("object", object)?);
            Ok(())
        })
    }
}

/// Sets one extended attribute.
///
/// # Safety
/// As for `bstore_txn_create_collection`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_txn_setattr(
    txn: *mut bstore_txn,
    collection: bstore_bytes,
    object: bstore_bytes,
    name: bstore_bytes,
    value: bstore_bytes,
) -> c_int {
    // SAFETY: the caller's promises for `txn` and each `bstore_bytes`, passed on.
    unsafe {
        push(txn, |t| {
            let (c, o) = (named("collection", collection)?, named("object", object)?);
            let value = named("value", value)?.to_vec();
            t.setattr(c, o, named("name", name)?, value);
            Ok(())
        })
    }
}

/// Removes one extended attribute.
///
/// # Safety
/// As for `bstore_txn_create_collection`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_txn_rmattr(
    txn: *mut bstore_txn,
    collection: bstore_bytes,
    object: bstore_bytes,
    name: bstore_bytes,
) -> c_int {
    // SAFETY: the caller's promises for `txn` and each `bstore_bytes`, passed on.
    unsafe {
        push(txn, |t| {
            let (c, o) = (named("collection", collection)?, named("object", object)?);
            t.rmattr(c, o, named("name", name)?);
            Ok(())
        })
    }
}

/// Removes every extended attribute.
///
/// # Safety
/// As for `bstore_txn_create_collection`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_txn_rmattrs(
    txn: *mut bstore_txn,
    collection: bstore_bytes,
    object: bstore_bytes,
) -> c_int {
    // SAFETY: the caller's promises for `txn` and each `bstore_bytes`, passed on.
    unsafe {
        push(txn, |t| {
            t.rmattrs(named("collection", collection)?, named("object", object)?);
            Ok(())
        })
    }
}

/// Sets one omap key.
///
/// # Safety
/// As for `bstore_txn_create_collection`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_txn_omap_setkey(
    txn: *mut bstore_txn,
    collection: bstore_bytes,
    object: bstore_bytes,
    key: bstore_bytes,
    value: bstore_bytes,
) -> c_int {
    // SAFETY: the caller's promises for `txn` and each `bstore_bytes`, passed on.
    unsafe {
        push(txn, |t| {
            let (c, o) = (named("collection", collection)?, named("object", object)?);
            let pair = (named("key", key)?.to_vec(), named("value", value)?.to_vec());
            t.omap_setkeys(c, o, [pair]);
            Ok(())
        })
    }
}

/// Removes one omap key.
///
/// # Safety
/// As for `bstore_txn_create_collection`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_txn_omap_rmkey(
    txn: *mut bstore_txn,
    collection: bstore_bytes,
    object: bstore_bytes,
    key: bstore_bytes,
) -> c_int {
    // SAFETY: the caller's promises for `txn` and each `bstore_bytes`, passed on.
    unsafe {
        push(txn, |t| {
            let (c, o) = (named("collection", collection)?, named("object", object)?);
            t.omap_rmkeys(c, o, [named("key", key)?.to_vec()]);
            Ok(())
        })
    }
}

/// Removes the omap keys in `[first, last)`.
///
/// # Safety
/// As for `bstore_txn_create_collection`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_txn_omap_rmkeyrange(
    txn: *mut bstore_txn,
    collection: bstore_bytes,
    object: bstore_bytes,
    first: bstore_bytes,
    last: bstore_bytes,
) -> c_int {
    // SAFETY: the caller's promises for `txn` and each `bstore_bytes`, passed on.
    unsafe {
        push(txn, |t| {
            let (c, o) = (named("collection", collection)?, named("object", object)?);
            t.omap_rmkeyrange(c, o, named("first", first)?, named("last", last)?);
            Ok(())
        })
    }
}

/// Removes the omap header and every omap key.
///
/// # Safety
/// As for `bstore_txn_create_collection`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_txn_omap_clear(
    txn: *mut bstore_txn,
    collection: bstore_bytes,
    object: bstore_bytes,
) -> c_int {
    // SAFETY: the caller's promises for `txn` and each `bstore_bytes`, passed on.
    unsafe {
        push(txn, |t| {
            t.omap_clear(named("collection", collection)?, named("object", object)?);
            Ok(())
        })
    }
}

/// Sets the omap header.
///
/// # Safety
/// As for `bstore_txn_create_collection`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_txn_omap_setheader(
    txn: *mut bstore_txn,
    collection: bstore_bytes,
    object: bstore_bytes,
    header: bstore_bytes,
) -> c_int {
    // SAFETY: the caller's promises for `txn` and each `bstore_bytes`, passed on.
    unsafe {
        push(txn, |t| {
            let (c, o) = (named("collection", collection)?, named("object", object)?);
            t.omap_setheader(c, o, named("header", header)?.to_vec());
            Ok(())
        })
    }
}

/// Renames the object within its collection (`-EEXIST` if `new_name` exists).
///
/// # Safety
/// As for `bstore_txn_create_collection`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_txn_rename(
    txn: *mut bstore_txn,
    collection: bstore_bytes,
    object: bstore_bytes,
    new_name: bstore_bytes,
) -> c_int {
    // SAFETY: the caller's promises for `txn` and each `bstore_bytes`, passed on.
    unsafe {
        push(txn, |t| {
            let (c, o) = (named("collection", collection)?, named("object", object)?);
            t.rename(c, o, named("new name", new_name)?);
            Ok(())
        })
    }
}

/// As `bstore_txn_rename`, but a missing object is no error (Ceph's try_rename).
///
/// # Safety
/// As for `bstore_txn_create_collection`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_txn_try_rename(
    txn: *mut bstore_txn,
    collection: bstore_bytes,
    object: bstore_bytes,
    new_name: bstore_bytes,
) -> c_int {
    // SAFETY: the caller's promises for `txn` and each `bstore_bytes`, passed on.
    unsafe {
        push(txn, |t| {
            let (c, o) = (named("collection", collection)?, named("object", object)?);
            t.try_rename(c, o, named("new name", new_name)?);
            Ok(())
        })
    }
}

/// Moves the object to `new_name` in `new_collection` (Ceph's collection_move_rename).
///
/// # Safety
/// As for `bstore_txn_create_collection`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_txn_move_rename(
    txn: *mut bstore_txn,
    collection: bstore_bytes,
    object: bstore_bytes,
    new_collection: bstore_bytes,
    new_name: bstore_bytes,
) -> c_int {
    // SAFETY: the caller's promises for `txn` and each `bstore_bytes`, passed on.
    unsafe {
        push(txn, |t| {
            let (c, o) = (named("collection", collection)?, named("object", object)?);
            let into = named("new collection", new_collection)?;
            t.move_rename(c, o, into, named("new name", new_name)?);
            Ok(())
        })
    }
}

/// Makes `target` a copy-on-write copy of the object (data, xattrs, omap).
///
/// # Safety
/// As for `bstore_txn_create_collection`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_txn_clone(
    txn: *mut bstore_txn,
    collection: bstore_bytes,
    object: bstore_bytes,
    target: bstore_bytes,
) -> c_int {
    // SAFETY: the caller's promises for `txn` and each `bstore_bytes`, passed on.
    unsafe {
        push(txn, |t| {
            let (c, o) = (named("collection", collection)?, named("object", object)?);
            t.clone_object(c, o, named("target", target)?);
            Ok(())
        })
    }
}

/// Copies `length` bytes at `offset` to `target_offset` of `target`, sharing the data.
///
/// # Safety
/// As for `bstore_txn_create_collection`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_txn_clone_range(
    txn: *mut bstore_txn,
    collection: bstore_bytes,
    object: bstore_bytes,
    offset: u64,
    length: u64,
    target: bstore_bytes,
    target_offset: u64,
) -> c_int {
    // SAFETY: the caller's promises for `txn` and each `bstore_bytes`, passed on.
    unsafe {
        push(txn, |t| {
            let (c, o) = (named("collection", collection)?, named("object", object)?);
            let target = named("target", target)?;
            t.clone_range(c, o, offset, length, target, target_offset);
            Ok(())
        })
    }
}

/// Records the object's allocation hint (Ceph's set_alloc_hint).
///
/// # Safety
/// As for `bstore_txn_create_collection`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_txn_set_alloc_hint(
    txn: *mut bstore_txn,
    collection: bstore_bytes,
    object: bstore_bytes,
    expected_object_size: u64,
    expected_write_size: u64,
    flags: u32,
) -> c_int {
    let hint = AllocHint {
        expected_object_size,
        expected_write_size,
        flags,
    };
    // SAFETY: the caller's promises for `txn` and each `bstore_bytes`, passed on.
    unsafe {
        push(txn, |t| {
            let (c, o) = (named("collection", collection)?, named("object", object)?);
            t.set_alloc_hint(c, o, hint);
            Ok(())
        })
    }
}
