//! SIGINT/SIGTERM map onto a Shutdown token: the first drains, the second stops now.
//! Signal handlers are process-wide, so this lives in its own test binary with one test.

use std::time::Duration;

use muster::{Level, Shutdown};
use rustix::process::{getpid, kill_process, Signal};

#[test]
#[allow(unsafe_code)] // no safe wrapper sets a disposition
fn first_signal_drains_second_stops_now() {
    // SIGINT at its default, as a terminal's foreground job has it (a test run started in the
    // background has it ignored, and watch_signals keeps an ignored signal ignored).
    // SAFETY: signal(2) with SIG_DFL, before any other thread of this test touches signals.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
    }
    let token = Shutdown::new();
    let watch = token.watch_signals().expect("install handlers");

    kill_process(getpid(), Signal::TERM).expect("signal self");
    assert!(token.wait_timeout(Duration::from_secs(10)), "first signal trips the token");
    assert_eq!(token.level(), Level::Drain);
    assert_eq!(token.signal(), Some(15), "the first signal is remembered for the exit code");

    kill_process(getpid(), Signal::INT).expect("signal self");
    assert!(token.wait_stop_now_timeout(Duration::from_secs(10)), "second signal stops now");
    assert_eq!(token.signal(), Some(15), "still the first signal");
    drop(watch);
}
