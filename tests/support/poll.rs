//! Waiting for a condition with a deadline, shared by the library's and the CLI's test helpers
//! (included by path, since they are different packages).

use std::time::{Duration, Instant};

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
pub fn wait_for(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
