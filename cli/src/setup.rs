//! What every mode that runs tasks sets up the same way: the shell `--shell` means, the
//! program found as a shell would, `-j` resolved, muster's own stdout/stderr handles, the
//! watchdog's command, and the note a first signal prints.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufWriter};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use muster::engine;
use muster::Shutdown;

use crate::args::Jobs;
use crate::fatal::Fatal;

/// The shell `--shell` asks for: the one named, or $SHELL when it is a POSIX shell, else sh.
pub(crate) fn shell_for(flag: &Option<Option<PathBuf>>) -> Option<OsString> {
    const POSIX: [&str; 8] = ["sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash"];
    match flag {
        None => None,
        Some(Some(path)) => Some(path.clone().into_os_string()),
        Some(None) => {
            let from_env = std::env::var_os("SHELL").filter(|shell| {
                Path::new(shell).file_name().and_then(OsStr::to_str).is_some_and(|name| POSIX.contains(&name))
            });
            Some(from_env.unwrap_or_else(|| "sh".into()))
        }
    }
}

/// Finds `program` the way a shell would, and checks it can be executed. Returns its path,
/// so tasks skip the `PATH` search (one failed `execve` per `PATH` entry before it, per task).
pub(crate) fn check_program(program: &OsStr) -> Result<PathBuf, Fatal> {
    let shown = program.to_string_lossy();
    let hint = if shown.contains(' ') { " (to run a shell command line, pass --shell)" } else { "" };
    let not_found = || Fatal { code: 127, message: format!("command not found: {shown}{hint}") };
    let executable = |path: &Path| {
        std::fs::metadata(path).ok().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.as_encoded_bytes().contains(&b'/') {
        return match executable(Path::new(program)) {
            None => Err(not_found()),
            Some(false) => Err(Fatal { code: 126, message: format!("not executable: {shown}") }),
            Some(true) => Ok(PathBuf::from(program)),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    let mut found_unexecutable = false;
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        match executable(&candidate) {
            Some(true) => return Ok(candidate),
            Some(false) => found_unexecutable = true,
            None => {}
        }
    }
    if found_unexecutable {
        Err(Fatal { code: 126, message: format!("not executable: {shown}") })
    } else {
        Err(not_found())
    }
}

pub(crate) fn resolve_jobs(jobs: Option<Jobs>, known_total: Option<u64>, persistent: bool) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    match jobs {
        None => cpus,
        Some(Jobs::Count(n)) => n,
        Some(Jobs::PercentOfCpus(p)) => ((cpus as f64 * p / 100.0).round() as usize).max(1),
        Some(Jobs::RelativeToCpus(n)) => usize::try_from(cpus as i64 + n).unwrap_or(0).max(1),
        // Persistent workers each cost threads; spawned tasks' slots cost descriptors only.
        Some(Jobs::AsManyAsInputs) if persistent => known_total.map_or(256, |n| n as usize).clamp(1, 1024),
        Some(Jobs::AsManyAsInputs) => match known_total {
            Some(n) => (n as usize).max(1),
            None => engine::jobs_the_fd_limit_allows().min(10_000),
        },
    }
}

pub(crate) fn stdout_writer() -> io::Result<BufWriter<File>> {
    // Our own buffered handle on fd 1: whole outputs go out in few write calls.
    let fd = io::stdout().as_fd().try_clone_to_owned()?;
    Ok(BufWriter::with_capacity(64 * 1024, File::from(fd)))
}

pub(crate) fn stderr_writer() -> io::Result<File> {
    Ok(File::from(io::stderr().as_fd().try_clone_to_owned()?))
}

/// Tells the user, once, what the first signal did and how to stop now.
pub(crate) fn announce_drain(
    shutdown: &Shutdown,
    grace: std::time::Duration,
    bar: Option<indicatif::ProgressBar>,
) {
    let token = shutdown.clone();
    // Detached: it waits for a trip that may never come, and ends with the process.
    let _ = std::thread::Builder::new().name("muster-announce".into()).spawn(move || {
        token.wait();
        if token.signal().is_some() && !token.is_stopping_now() {
            let say = || {
                crate::say(format_args!(
                    "muster: stopping: starting no new tasks; running ones get {}s to finish (signal again to stop now)",
                    grace.as_secs_f64()
                ))
            };
            // On its own line, never into the progress bar's.
            match &bar {
                Some(bar) => bar.suspend(say),
                None => say(),
            }
        }
    });
}

/// The first argument that makes this binary the orphan watchdog.
pub(crate) const WATCHDOG_WORD: &str = "__watchdog";

/// `muster __watchdog` from this very binary, when it can be found.
pub(crate) fn watchdog_command() -> Option<std::process::Command> {
    let exe: PathBuf = std::env::current_exe().ok()?;
    let mut command = std::process::Command::new(exe);
    command.arg(WATCHDOG_WORD);
    Some(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_lookup() {
        assert!(check_program(OsStr::new("sh")).is_ok());
        assert_eq!(check_program(OsStr::new("no-such-program-xyz")).map_err(|f| f.code), Err(127));
        assert_eq!(check_program(OsStr::new("/etc/passwd")).map_err(|f| f.code), Err(126));
        let spaced = check_program(OsStr::new("echo hi")).expect_err("not a program");
        assert!(spaced.message.contains("--shell"), "{}", spaced.message);
    }
}
