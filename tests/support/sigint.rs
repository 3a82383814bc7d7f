//! Starting a process with SIGINT at its default action, shared by the library's and the
//! CLI's test helpers (included by path, since they are different packages).

use std::process::Command;

/// Starts `command` with SIGINT at its default action, as a terminal's foreground job has it:
/// tests send SIGINT as a terminal would, and a test run started where SIGINT is ignored (a
/// background job of a non-interactive shell) would pass that on — muster keeps an ignored
/// SIGINT ignored.
#[allow(unsafe_code)] // no safe wrapper sets a disposition; signal() is async-signal-safe
pub fn with_default_sigint(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only calls signal(2),
    // which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
}
