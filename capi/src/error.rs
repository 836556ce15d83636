//! The error convention at the C boundary: a negative errno returned, the message kept for the
//! calling thread.
//!
//! Every fallible entry point runs its body through [`guard`], which turns a [`Failure`] (or a
//! Rust panic, which must never unwind into C) into `-errno` and stores its message where
//! [`bstore_last_error`] finds it.

use std::cell::RefCell;
use std::ffi::{CString, c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};

thread_local! {
    /// The message of the last failure on this thread.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Why a call failed: the errno (positive) and what to tell the caller.
#[derive(Debug)]
pub struct Failure {
    /// The errno, positive.
    pub errno: c_int,
    /// The message.
    pub message: String,
}

impl Failure {
    /// An argument the caller got wrong.
    pub fn invalid(message: impl Into<String>) -> Self {
        Failure {
            errno: libc::EINVAL,
            message: message.into(),
        }
    }

    /// Something absent that is no error of the store's (an attribute, an omap key).
    pub fn no_data(message: impl Into<String>) -> Self {
        Failure {
            errno: libc::ENODATA,
            message: message.into(),
        }
    }
}

impl From<bstore::Error> for Failure {
    fn from(error: bstore::Error) -> Self {
        Failure {
            errno: error.errno(),
            message: chain(&error),
        }
    }
}

/// The error's message with every cause after it, as `bstool` prints them.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// A C string of `message` (interior NULs, which C cannot hold, become spaces).
pub fn c_message(message: &str) -> CString {
    CString::new(message.replace('\0', " ")).expect("no NUL left")
}

/// Runs an entry point's body: `0` (or the body's non-negative result) on success, else
/// `-errno` with the message kept for [`bstore_last_error`]. A panic becomes `-EIO`.
pub fn guard(body: impl FnOnce() -> Result<c_int, Failure>) -> c_int {
    let outcome = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(Failure {
            errno: libc::EIO,
            message: format!("bstore panicked (a bug; please report it): {what}"),
        })
    });
    match outcome {
        Ok(value) => value,
        Err(failure) => {
            LAST_ERROR.with(|last| *last.borrow_mut() = c_message(&failure.message));
            -failure.errno
        }
    }
}

/// The message of the last call on this thread that failed (an empty string if none has).
/// Valid until the next failing call on the same thread; do not free it.
#[unsafe(no_mangle)]
pub extern "C" fn bstore_last_error() -> *const c_char {
    LAST_ERROR.with(|last| last.borrow().as_ptr())
}
