//! SIGINT/SIGTERM map onto a Shutdown token: the first drains, the second stops now.
//! Signal handlers are process-wide, so this lives in its own test binary with one test.

use std::time::Duration;

use muster::{Level, Shutdown};
use rustix::process::{getpid, kill_process, Signal};

#[test]
fn first_signal_drains_second_stops_now() {
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
