//! An error that ends muster before or outside the tasks, and the exit status it carries.

/// An error that ends muster before or outside the tasks, with its exit status.
#[derive(Debug)]
pub struct Fatal {
    pub code: u8,
    pub message: String,
}

/// `muster run`'s exit status for a usage error or bad input: GNU parallel's "other error",
/// apart from 1–101, which count failed tasks.
pub(crate) const USAGE_ERROR: u8 = 255;

pub(crate) fn usage(message: impl std::fmt::Display) -> Fatal {
    Fatal { code: USAGE_ERROR, message: message.to_string() }
}
