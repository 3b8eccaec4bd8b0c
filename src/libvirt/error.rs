//! libvirt's errors: [`Error`] copies the last error right after a failing call, and
//! [`check`] is the one return-code test every call goes through.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_int, c_void};
use std::fmt;
use std::ptr::{self, NonNull};
use std::sync::Once;

use super::ffi;
use crate::host::{FailureKind, HostError};

/// A libvirt failure: the call that failed and libvirt's own code, domain and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    call: &'static str,
    code: i32,
    domain: i32,
    message: String,
}

impl Error {
    /// Copy libvirt's last error for this thread, then clear it.
    ///
    /// Must run right after the failing call: every public libvirt call starts by
    /// resetting the last error (freeing a handle on the error path would erase it).
    #[cold]
    fn last(call: &'static str) -> Error {
        // SAFETY: virGetLastError takes no arguments and returns null or a pointer to
        // this thread's error, valid until the next libvirt call on this thread.
        let err = unsafe { ffi::virGetLastError() };
        let mut out = Error {
            call,
            code: 0,
            domain: 0,
            message: format!("{call} failed and libvirt gave no reason"),
        };
        if let Some(e) = NonNull::new(err) {
            // SAFETY: non-null, points to libvirt's thread-local virError (see above);
            // we only read it before any other libvirt call.
            let e = unsafe { e.as_ref() };
            out.code = e.code;
            out.domain = e.domain;
            if !e.message.is_null() {
                // SAFETY: message is a NUL-terminated string owned by the error object.
                let msg = unsafe { CStr::from_ptr(e.message) };
                out.message = msg.to_string_lossy().into_owned();
            }
        }
        // SAFETY: no arguments; clears this thread's error so a stale message cannot
        // leak into a later failure.
        unsafe { ffi::virResetLastError() };
        out
    }

    /// An error found on our side of the call (bad argument), in the same shape.
    #[cold]
    pub(super) fn local(call: &'static str, code: u32, message: String) -> Error {
        Error {
            call,
            code: code as i32,
            domain: 0,
            message,
        }
    }

    /// libvirt's error code (`virErrorNumber`).
    pub fn code(&self) -> i32 {
        self.code
    }

    /// The libvirt function that failed.
    pub fn call(&self) -> &'static str {
        self.call
    }

    /// libvirt's message, unchanged.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(super) fn is(&self, code: u32) -> bool {
        self.code == code as i32
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl HostError for Error {
    fn kind(&self) -> FailureKind {
        use ffi::virErrorNumber::*;
        if self.is(VIR_ERR_NO_DOMAIN)
            || self.is(VIR_ERR_INVALID_DOMAIN)
            || self.is(VIR_ERR_OPERATION_INVALID)
        {
            // The domain stopped between listing and use ("domain is not running").
            FailureKind::DomainGone
        } else if self.is(VIR_ERR_INVALID_CONN)
            || self.is(VIR_ERR_NO_CONNECT)
            || self.is(VIR_ERR_RPC)
            // Errors raised by the RPC layer itself ("Cannot recv data", "client
            // socket is closed") mean the daemon is gone, whatever their code.
            || self.domain == ffi::virErrorDomain::VIR_FROM_RPC as i32
        {
            FailureKind::ConnectionLost
        } else {
            FailureKind::Other
        }
    }
}

/// Return values libvirt uses to signal failure: -1 for ints, null for pointers. A
/// pointer that passed the check comes back as `NonNull`, so no later code re-checks.
pub(super) trait Sentinel: Copy {
    type Ok;
    fn ok(self) -> Option<Self::Ok>;
}

impl Sentinel for c_int {
    type Ok = c_int;
    fn ok(self) -> Option<c_int> {
        (self != -1).then_some(self)
    }
}

impl<T> Sentinel for *mut T {
    type Ok = NonNull<T>;
    fn ok(self) -> Option<NonNull<T>> {
        NonNull::new(self)
    }
}

impl<T> Sentinel for *const T {
    type Ok = NonNull<T>;
    fn ok(self) -> Option<NonNull<T>> {
        NonNull::new(self.cast_mut())
    }
}

/// The one return-code check: failure becomes an [`Error`] read at once.
pub(super) fn check<T: Sentinel>(ret: T, call: &'static str) -> Result<T::Ok, Error> {
    ret.ok().ok_or_else(|| Error::last(call))
}

/// A length or index crossing into C: never truncated with `as`.
pub(super) fn to_c_int(n: usize, call: &'static str) -> Result<c_int, Error> {
    c_int::try_from(n).map_err(|_| {
        Error::local(
            call,
            ffi::virErrorNumber::VIR_ERR_INVALID_ARG,
            format!("{n} does not fit in a C int"),
        )
    })
}

/// libvirt's default error handler prints every error to stderr. We report errors
/// ourselves, on one line, so we install a handler that does nothing.
///
/// It must never panic: unwinding out of an `extern "C"` function aborts the process.
extern "C" fn ignore_error(_user: *mut c_void, _err: ffi::virErrorPtr) {}

pub(super) fn quiet_libvirt_errors() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: sets a process-wide callback; the function is 'static, does not
        // unwind, and the user data pointer is unused (null).
        unsafe { ffi::virSetErrorFunc(ptr::null_mut(), Some(ignore_error)) };
    });
}
