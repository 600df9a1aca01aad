//! One error type for the whole engine. `Input` errors are the user's to fix (bad files, shapes,
//! values, flags) and exit with code 2; `Internal` errors are ours (or the device's) and exit 1.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Something the caller supplied is wrong; the message says what to change.
    Input(String),
    /// A failure that is not the caller's fault (a bug, an I/O device failure).
    Internal(String),
}

impl Error {
    pub fn input(msg: impl Into<String>) -> Self {
        Error::Input(msg.into())
    }

    pub fn internal(msg: impl Into<String>) -> Self {
        Error::Internal(msg.into())
    }

    /// Process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input(_) => 2,
            Error::Internal(_) => 1,
        }
    }

    /// Prefix the message with context, keeping the kind.
    pub fn context(self, what: impl fmt::Display) -> Self {
        match self {
            Error::Input(m) => Error::Input(format!("{what}: {m}")),
            Error::Internal(m) => Error::Internal(format!("{what}: {m}")),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Input(m) => write!(f, "{m}"),
            Error::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Return early with an `Error::Input` built from a format string.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::input(format!($($arg)*)))
    };
}

/// Errors on user-named files are input errors (the user named a file we cannot use), except a
/// full disk or a failing device: the storage's fault, not the input's (exit 1).
pub fn io_error(path: &std::path::Path, e: std::io::Error) -> Error {
    use std::io::ErrorKind::{QuotaExceeded, StorageFull};
    let msg = format!("cannot read or write '{}': {e}", path.display());
    const EIO: i32 = 5;
    if matches!(e.kind(), StorageFull | QuotaExceeded) || e.raw_os_error() == Some(EIO) {
        Error::internal(msg)
    } else {
        Error::input(msg)
    }
}
