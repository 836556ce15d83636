//! Arguments from C: byte strings as pointer and length, paths as NUL-terminated strings, and
//! out-pointers. Each check fails with `-EINVAL` rather than trusting a null pointer.

use std::ffi::{CStr, c_char};
use std::path::PathBuf;

use crate::error::Failure;

/// A byte string: `len` bytes at `data` (`data` may be null when `len` is 0). Names of
/// collections, objects, attributes and keys are byte strings, not NUL-terminated; the bytes
/// must stay readable and unchanged during the call they are passed to, and are copied.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct bstore_bytes {
    /// The first byte.
    pub data: *const u8,
    /// How many bytes.
    pub len: usize,
}

/// The `len` bytes at `ptr` (`ptr` may be null only when `len` is 0).
///
/// # Safety
/// A non-null `ptr` must point to `len` readable bytes that stay unchanged during the call.
pub unsafe fn bytes<'a>(what: &str, ptr: *const u8, len: usize) -> Result<&'a [u8], Failure> {
    if ptr.is_null() {
        if len == 0 {
            return Ok(&[]);
        }
        return Err(Failure::invalid(format!(
            "{what} is null with a length of {len}"
        )));
    }
    // SAFETY: the caller promises `len` readable bytes at the non-null `ptr`.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A path from a NUL-terminated string.
///
/// # Safety
/// A non-null `path` must point to a NUL-terminated string.
pub unsafe fn path(path: *const c_char) -> Result<PathBuf, Failure> {
    if path.is_null() {
        return Err(Failure::invalid("path is null"));
    }
    // SAFETY: the caller promises a NUL-terminated string at the non-null `path`.
    let text = unsafe { CStr::from_ptr(path) };
    let text = text
        .to_str()
        .map_err(|_| Failure::invalid("path is not UTF-8"))?;
    Ok(PathBuf::from(text))
}

/// The value behind an out-pointer, for writing.
///
/// # Safety
/// A non-null `out` must point to a writable `T`.
pub unsafe fn out<'a, T>(what: &str, out: *mut T) -> Result<&'a mut T, Failure> {
    // SAFETY: the caller promises a writable `T` at the non-null `out`.
    unsafe { out.as_mut() }.ok_or_else(|| Failure::invalid(format!("{what} is null")))
}

/// The value behind a handle.
///
/// # Safety
/// A non-null `handle` must point to a live `T` made by this library.
pub unsafe fn handle<'a, T>(what: &str, handle: *const T) -> Result<&'a T, Failure> {
    // SAFETY: the caller promises a live `T` at the non-null `handle`.
    unsafe { handle.as_ref() }.ok_or_else(|| Failure::invalid(format!("{what} is null")))
}
