//! Exclusive `flock` locks that say "someone else is running" — a joblog in use, a supervisor
//! name taken — without mistaking a moment's overlap for that.
//!
//! A lock belongs to an open file description, which a process forked an instant before its
//! holder closed the file shares until its `exec` closes it again. So a lock still held is
//! waited for, briefly, before the file counts as in use.

use std::fs::File;
use std::io;
use std::time::{Duration, Instant};

/// How long a lock is waited for before it counts as held by someone else.
pub(crate) const PATIENCE: Duration = Duration::from_millis(250);

/// Takes an exclusive lock on `file`; `Ok(false)` when another holds it past [`PATIENCE`].
pub(crate) fn lock_exclusive(file: &File) -> io::Result<bool> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(true),
            Err(rustix::io::Errno::WOULDBLOCK) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(false),
            Err(errno) => return Err(errno.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_refused_and_a_released_one_taken() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("lock");
        let first = File::create(&path).expect("create");
        assert!(lock_exclusive(&first).expect("lock"));
        let second = File::open(&path).expect("open");
        let started = Instant::now();
        assert!(!lock_exclusive(&second).expect("refused, not an error"));
        assert!(started.elapsed() >= PATIENCE, "waited before refusing");
        drop(first);
        assert!(lock_exclusive(&second).expect("lock"), "free once its holder closed it");
    }
}
