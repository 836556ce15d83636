//! Reads and statistics: data, size, attributes, omap values, listings, statfs.

use std::ffi::c_int;

use bstore::{ObjectListing, Store};

use crate::args::{self, bstore_bytes};
use crate::error::{Failure, guard};
use crate::{bstore_store, store_of};

/// Bytes the library allocated for the caller: free with `bstore_buf_free`.
#[repr(C)]
#[derive(Debug)]
pub struct bstore_buf {
    /// The first byte (null when `len` is 0).
    pub data: *mut u8,
    /// How many bytes.
    pub len: usize,
}

/// A list of names the library allocated for the caller: free with `bstore_names_free`.
#[repr(C)]
#[derive(Debug)]
pub struct bstore_names {
    /// The names, in byte order.
    pub names: *mut bstore_buf,
    /// How many.
    pub count: usize,
}

/// Size and space of one object.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct bstore_object_stat {
    /// Logical size in bytes.
    pub size: u64,
    /// Device bytes the object references.
    pub allocated_bytes: u64,
    /// Bytes of data (holes excluded).
    pub stored_bytes: u64,
}

/// Space of the whole store.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct bstore_statfs_t {
    /// Bytes of the data device the store uses.
    pub total_bytes: u64,
    /// Bytes free for new data.
    pub available_bytes: u64,
    /// Device bytes allocated to object data.
    pub allocated_bytes: u64,
    /// Logical bytes of object data (holes excluded).
    pub stored_bytes: u64,
    /// Number of objects.
    pub object_count: u64,
}

/// Objects and space of a collection or a group of them (a pool).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct bstore_collection_statfs {
    /// How many collections the figures sum.
    pub collections: u64,
    /// Number of objects.
    pub object_count: u64,
    /// Logical bytes of object data (holes excluded).
    pub stored_bytes: u64,
    /// Device bytes the objects reference (data shared by clones counts for each).
    pub allocated_bytes: u64,
}

impl bstore_buf {
    fn from_vec(bytes: Vec<u8>) -> Self {
        if bytes.is_empty() {
            return bstore_buf {
                data: std::ptr::null_mut(),
                len: 0,
            };
        }
        let boxed = bytes.into_boxed_slice();
        let len = boxed.len();
        bstore_buf {
            data: Box::into_raw(boxed).cast::<u8>(),
            len,
        }
    }
}

impl bstore_names {
    fn from_names(names: Vec<Vec<u8>>) -> Self {
        let bufs: Box<[bstore_buf]> = names.into_iter().map(bstore_buf::from_vec).collect();
        let count = bufs.len();
        bstore_names {
            names: Box::into_raw(bufs).cast::<bstore_buf>(),
            count,
        }
    }
}

/// Frees what a `bstore_buf` holds and empties it. Null, or an empty buffer, is allowed.
///
/// # Safety
/// `buf` is null or a buffer this library filled, not freed since.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_buf_free(buf: *mut bstore_buf) {
    // SAFETY: the caller's promise: null or a buffer of ours.
    let Some(buf) = (unsafe { buf.as_mut() }) else {
        return;
    };
    if !buf.data.is_null() {
        let slice = std::ptr::slice_from_raw_parts_mut(buf.data, buf.len);
        // SAFETY: `data` and `len` are a boxed slice of `from_vec`, freed once (emptied below).
        drop(unsafe { Box::from_raw(slice) });
    }
    buf.data = std::ptr::null_mut();
    buf.len = 0;
}

/// Frees every name of a `bstore_names` and the list, and empties it. Null is allowed.
///
/// # Safety
/// `names` is null or a list this library filled, not freed since.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_names_free(names: *mut bstore_names) {
    // SAFETY: the caller's promise: null or a list of ours.
    let Some(names) = (unsafe { names.as_mut() }) else {
        return;
    };
    if !names.names.is_null() {
        let slice = std::ptr::slice_from_raw_parts_mut(names.names, names.count);
        // SAFETY: `names` and `count` are a boxed slice of `from_names`, freed once.
        let mut bufs = unsafe { Box::from_raw(slice) };
        for buf in bufs.iter_mut() {
            // SAFETY: each entry is a buffer of `from_vec`.
            unsafe { bstore_buf_free(buf) };
        }
    }
    names.names = std::ptr::null_mut();
    names.count = 0;
}

/// Runs a read on the store behind `store`, with the collection and object names.
///
/// # Safety
/// `store` is null or live; `collection` and `object` are valid for the call.
unsafe fn on_object(
    store: *const bstore_store,
    collection: bstore_bytes,
    object: bstore_bytes,
    read: impl FnOnce(&Store, &[u8], &[u8]) -> Result<c_int, Failure>,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promises, passed on.
        let (store, collection, object) = unsafe {
            (
                store_of(store)?,
                args::bytes("collection", collection.data, collection.len)?,
                args::bytes("object", object.data, object.len)?,
            )
        };
        read(store, collection, object)
    })
}

/// Reads `length` bytes at `offset` of an object (fewer at its end) into `*out`.
///
/// # Safety
/// `store` is null or live; the `bstore_bytes` are valid for the call; `out` is null or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_read(
    store: *const bstore_store,
    collection: bstore_bytes,
    object: bstore_bytes,
    offset: u64,
    length: u64,
    out: *mut bstore_buf,
) -> c_int {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        on_object(store, collection, object, |store, c, o| {
            let out = args::out("out", out)?;
            *out = bstore_buf::from_vec(store.read(c, o, offset, length)?);
            Ok(0)
        })
    }
}

/// 1 if the object exists, 0 if not (a missing collection is `-ENOENT`).
///
/// # Safety
/// `store` is null or live; the `bstore_bytes` are valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_exists(
    store: *const bstore_store,
    collection: bstore_bytes,
    object: bstore_bytes,
) -> c_int {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        on_object(store, collection, object, |store, c, o| {
            Ok(c_int::from(store.exists(c, o)?))
        })
    }
}

/// Size and space of an object.
///
/// # Safety
/// `store` is null or live; the `bstore_bytes` are valid for the call; `out` is null or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_stat(
    store: *const bstore_store,
    collection: bstore_bytes,
    object: bstore_bytes,
    out: *mut bstore_object_stat,
) -> c_int {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        on_object(store, collection, object, |store, c, o| {
            let out = args::out("out", out)?;
            let stat = store.stat(c, o)?;
            *out = bstore_object_stat {
                size: stat.size,
                allocated_bytes: stat.allocated_bytes,
                stored_bytes: stat.stored_bytes,
            };
            Ok(0)
        })
    }
}

/// One extended attribute's value into `*out` (`-ENODATA` if the object has none of that
/// name).
///
/// # Safety
/// `store` is null or live; the `bstore_bytes` are valid for the call; `out` is null or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_getattr(
    store: *const bstore_store,
    collection: bstore_bytes,
    object: bstore_bytes,
    name: bstore_bytes,
    out: *mut bstore_buf,
) -> c_int {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        on_object(store, collection, object, |store, c, o| {
            let (name, out) = (
                args::bytes("name", name.data, name.len)?,
                args::out("out", out)?,
            );
            let value = store
                .getattr(c, o, name)?
                .ok_or_else(|| Failure::no_data("no such attribute"))?;
            *out = bstore_buf::from_vec(value);
            Ok(0)
        })
    }
}

/// One omap value into `*out` (`-ENODATA` if the key is absent).
///
/// # Safety
/// `store` is null or live; the `bstore_bytes` are valid for the call; `out` is null or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_omap_get(
    store: *const bstore_store,
    collection: bstore_bytes,
    object: bstore_bytes,
    key: bstore_bytes,
    out: *mut bstore_buf,
) -> c_int {
    // SAFETY: the caller's promises, passed on.
    unsafe {
        on_object(store, collection, object, |store, c, o| {
            let (key, out) = (
                args::bytes("key", key.data, key.len)?,
                args::out("out", out)?,
            );
            let mut values = store.omap_get_values(c, o, [key])?;
            let value = values
                .remove(key)
                .ok_or_else(|| Failure::no_data("no such omap key"))?;
            *out = bstore_buf::from_vec(value);
            Ok(0)
        })
    }
}

/// Up to `max` object names of a collection in `[start, end)` (an empty `start` is the
/// first, an empty `end` the last) into `*out`; `*next` gets the name to start the next page
/// at, or is left empty when the range is done. Returns how many names it gave.
///
/// # Safety
/// `store` is null or live; the `bstore_bytes` are valid for the call; `out` and `next` are
/// null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_list_objects(
    store: *const bstore_store,
    collection: bstore_bytes,
    start: bstore_bytes,
    end: bstore_bytes,
    max: usize,
    out: *mut bstore_names,
    next: *mut bstore_buf,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promises, passed on.
        let (store, c, start, end, out, next) = unsafe {
            (
                store_of(store)?,
                args::bytes("collection", collection.data, collection.len)?,
                args::bytes("start", start.data, start.len)?,
                args::bytes("end", end.data, end.len)?,
                args::out("out", out)?,
                args::out("next", next)?,
            )
        };
        let bound = |name: &[u8]| (!name.is_empty()).then(|| name.to_vec());
        let (start, end) = (bound(start), bound(end));
        let ObjectListing {
            objects, next: to, ..
        } = store.list_objects_range(c, start.as_deref(), end.as_deref(), max)?;
        let count = c_int::try_from(objects.len()).unwrap_or(c_int::MAX);
        *out = bstore_names::from_names(objects);
        *next = bstore_buf::from_vec(to.unwrap_or_default());
        Ok(count)
    })
}

/// Every collection's name into `*out`. Returns how many.
///
/// # Safety
/// `store` is null or live; `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_list_collections(
    store: *const bstore_store,
    out: *mut bstore_names,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promises, passed on.
        let (store, out) = unsafe { (store_of(store)?, args::out("out", out)?) };
        let names = store.list_collections()?;
        let count = c_int::try_from(names.len()).unwrap_or(c_int::MAX);
        *out = bstore_names::from_names(names);
        Ok(count)
    })
}

/// Space of the whole store, including every transaction submitted before the call.
///
/// # Safety
/// `store` is null or live; `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_statfs(
    store: *const bstore_store,
    out: *mut bstore_statfs_t,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promises, passed on.
        let (store, out) = unsafe { (store_of(store)?, args::out("out", out)?) };
        let statfs = store.statfs()?;
        *out = bstore_statfs_t {
            total_bytes: statfs.total_bytes,
            available_bytes: statfs.available_bytes,
            allocated_bytes: statfs.allocated_bytes,
            stored_bytes: statfs.stored_bytes,
            object_count: statfs.object_count,
        };
        Ok(0)
    })
}

/// Objects and space of the collections whose names start with `prefix` (a pool's, as
/// Ceph's pool_statfs, when the daemon names a pool's collections so).
///
/// # Safety
/// `store` is null or live; `prefix` is valid for the call; `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bstore_pool_statfs(
    store: *const bstore_store,
    prefix: bstore_bytes,
    out: *mut bstore_collection_statfs,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promises, passed on.
        let (store, prefix, out) = unsafe {
            (
                store_of(store)?,
                args::bytes("prefix", prefix.data, prefix.len)?,
                args::out("out", out)?,
            )
        };
        let statfs = store.statfs_of(|name| name.starts_with(prefix))?;
        *out = bstore_collection_statfs {
            collections: statfs.collections,
            object_count: statfs.object_count,
            stored_bytes: statfs.stored_bytes,
            allocated_bytes: statfs.allocated_bytes,
        };
        Ok(0)
    })
}
