//! The checks and conversions at the boundary: a call's outcome as a status and message, a
//! caught panic, and the caller's pointers as handles, strings and buffers.

use super::diffrecon_status::{self, *};
use super::LAST_ERROR;
use crate::api::Error;
use crate::tensor::Tensor;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A failed call: its status and message.
pub(super) struct Failure(pub(super) diffrecon_status, pub(super) String);

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let status = match e {
            Error::Input(_) => DIFFRECON_INVALID_ARGUMENT,
            Error::Internal(_) => DIFFRECON_INTERNAL,
        };
        Failure(status, e.to_string())
    }
}

pub(super) type Outcome = std::result::Result<(), Failure>;

pub(super) fn invalid(msg: impl Into<String>) -> Failure {
    Failure(DIFFRECON_INVALID_ARGUMENT, msg.into())
}

pub(super) fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Runs `f`, records its message on failure, and turns a panic into DIFFRECON_INTERNAL.
pub(super) fn guard(f: impl FnOnce() -> Outcome) -> diffrecon_status {
    let (status, msg) = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => (DIFFRECON_OK, String::new()),
        Ok(Err(Failure(s, m))) => (s, m),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            (
                DIFFRECON_INTERNAL,
                format!("internal error: a panic was caught at the C boundary: {what}"),
            )
        }
    };
    set_last_error(&msg);
    status
}

/// Stores a new handle through a checked out-parameter.
pub(super) unsafe fn put<T>(out: *mut *mut T, value: T) -> Outcome {
    if out.is_null() {
        return Err(invalid("the out-parameter is NULL"));
    }
    *out = Box::into_raw(Box::new(value));
    Ok(())
}

pub(super) unsafe fn handle<'a, T>(p: *const T, what: &str) -> std::result::Result<&'a T, Failure> {
    p.as_ref()
        .ok_or_else(|| invalid(format!("the {what} handle is NULL")))
}

/// A C string argument; NULL gives `default` (or an error when there is none).
pub(super) unsafe fn text<'a>(
    p: *const c_char,
    what: &str,
    default: Option<&'a str>,
) -> std::result::Result<&'a str, Failure> {
    if p.is_null() {
        return default.ok_or_else(|| invalid(format!("{what} is NULL")));
    }
    CStr::from_ptr(p)
        .to_str()
        .map_err(|_| invalid(format!("{what} is not valid UTF-8")))
}

/// The product of `dims`, checked.
pub(super) fn count(dims: &[usize], what: &str) -> std::result::Result<usize, Failure> {
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= isize::MAX as usize / 4)
        .ok_or_else(|| invalid(format!("the {what} dimensions {dims:?} overflow")))
}

/// A caller's input buffer of exactly `len` floats.
pub(super) unsafe fn input<'a>(
    p: *const f32,
    len: usize,
    what: &str,
) -> std::result::Result<&'a [f32], Failure> {
    if p.is_null() {
        return Err(invalid(format!("the {what} buffer is NULL")));
    }
    if !p.is_aligned() {
        return Err(invalid(format!(
            "the {what} buffer is not aligned for float"
        )));
    }
    Ok(std::slice::from_raw_parts(p, len))
}

/// A caller's output buffer, which must hold exactly `need` floats (`len` says how many it has).
pub(super) unsafe fn output<'a>(
    p: *mut f32,
    len: usize,
    need: usize,
    what: &str,
) -> std::result::Result<&'a mut [f32], Failure> {
    if p.is_null() {
        return Err(invalid(format!("the {what} buffer is NULL")));
    }
    if !p.is_aligned() {
        return Err(invalid(format!(
            "the {what} buffer is not aligned for float"
        )));
    }
    if len != need {
        return Err(invalid(format!(
            "the {what} buffer holds {len} floats but the result has {need}"
        )));
    }
    Ok(std::slice::from_raw_parts_mut(p, len))
}

/// An (n, 1, h, w) tensor copied from a caller's buffer.
pub(super) unsafe fn stack(
    p: *const f32,
    n: usize,
    h: usize,
    w: usize,
    what: &str,
) -> std::result::Result<Tensor, Failure> {
    if n == 0 || h == 0 || w == 0 {
        return Err(invalid(format!(
            "the {what} has an empty dimension: ({n}, 1, {h}, {w})"
        )));
    }
    let len = count(&[n, h, w], what)?;
    let data = input(p, len, what)?.to_vec();
    Ok(Tensor::new(vec![n, 1, h, w], data)?)
}

/// Releases a handle made by `put` (NULL: nothing); a panic in a destructor stays here.
pub(super) unsafe fn free<T>(p: *mut T) {
    if !p.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(p))));
    }
}
