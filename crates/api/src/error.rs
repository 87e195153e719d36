//! Spans and function errors.

use std::fmt;

/// A byte range in the preprocessed script text. The script crate maps it back to the
/// operator's file, line and column through the preprocessor's source map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// The first byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// The bytes `start..end`.
    pub const fn new(start: u32, end: u32) -> Span {
        Span { start, end }
    }
}

/// An error raised by a module function at run time. The VM logs it with the location of
/// the call and the message's Call-ID, and the call returns `code` (negative).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FnError {
    /// What went wrong, for the log line.
    pub message: String,
    /// The code the call returns: negative, -1 unless [`FnError::with_code`] says otherwise.
    pub code: i32,
}

impl FnError {
    /// An error that makes the call return -1.
    pub fn new(message: impl Into<String>) -> FnError {
        FnError {
            message: message.into(),
            code: -1,
        }
    }

    /// The call returns `code` instead (a non-negative `code` becomes -1: an error is never true).
    pub fn with_code(mut self, code: i32) -> FnError {
        self.code = if code < 0 { code } else { -1 };
        self
    }
}

impl fmt::Display for FnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FnError {}

impl From<crate::pv::PvError> for FnError {
    fn from(e: crate::pv::PvError) -> Self {
        FnError::new(e.to_string())
    }
}
