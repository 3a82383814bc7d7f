//! The shutdown token: the seed's `threading.Event`, made first-class and given two levels.
//!
//! A [`Shutdown`] is cheap to clone; every clone sees the same state. It moves one way only,
//! through three [`Level`]s:
//!
//! - **running**: nothing asked to stop;
//! - **drain** ([`Shutdown::trip`]): start nothing new, let running work finish;
//! - **stop now** ([`Shutdown::stop_now`]): abandon queued work and stop running work.
//!
//! Threads can poll it ([`Shutdown::is_tripped`]), block on it ([`Shutdown::wait`],
//! [`Shutdown::wait_timeout`]), or select on it beside their work: [`Shutdown::tripped`] is a
//! channel that never carries a message and becomes ready (disconnected) when the token trips,
//! so it fits in a `crossbeam_channel::select!` next to a queue.
//!
//! [`Shutdown::watch_signals`] maps SIGINT and SIGTERM onto the token the way DESIGN.md asks:
//! the first signal drains, the second stops now, a third gets the default action (the process
//! dies), so a user is never stuck with a program that ignores Ctrl-C.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

/// How far a [`Shutdown`] has gone. Levels only ever increase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Nothing asked to stop.
    Running = 0,
    /// Start nothing new; let running work finish.
    Drain = 1,
    /// Abandon queued work and stop running work now.
    StopNow = 2,
}

impl Level {
    fn from_u8(raw: u8) -> Level {
        match raw {
            0 => Level::Running,
            1 => Level::Drain,
            _ => Level::StopNow,
        }
    }
}

/// A gate that opens once: its receiver blocks until the gate opens, then reports disconnection
/// forever after. Opening drops the only sender.
struct Gate {
    opener: Mutex<Option<Sender<()>>>,
    opened: Receiver<()>,
}

impl Gate {
    fn new() -> Gate {
        let (opener, opened) = crossbeam_channel::bounded(0);
        Gate { opener: Mutex::new(Some(opener)), opened }
    }

    fn open(&self) {
        self.opener.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}

struct Inner {
    /// The current [`Level`] as a `u8`; raised with `fetch_max` so it never goes back.
    level: AtomicU8,
    /// The signal number that first tripped the token, or 0.
    signal: AtomicI32,
    drain: Gate,
    stop_now: Gate,
}

/// A clonable, two-level stop request. See the [module docs](self).
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown").field("level", &self.level()).finish()
    }
}

impl Shutdown {
    /// A new token at [`Level::Running`].
    pub fn new() -> Shutdown {
        Shutdown {
            inner: Arc::new(Inner {
                level: AtomicU8::new(Level::Running as u8),
                signal: AtomicI32::new(0),
                drain: Gate::new(),
                stop_now: Gate::new(),
            }),
        }
    }

    /// The current level.
    pub fn level(&self) -> Level {
        Level::from_u8(self.inner.level.load(Ordering::Acquire))
    }

    /// Asks to drain: start nothing new, let running work finish. Idempotent.
    pub fn trip(&self) {
        self.raise(Level::Drain);
    }

    /// Asks to stop now: abandon queued work and stop running work. Implies drain.
    pub fn stop_now(&self) {
        self.raise(Level::StopNow);
    }

    /// Moves one level further (running → drain → stop now) and returns the new level.
    /// This is what a repeated Ctrl-C does.
    pub fn escalate(&self) -> Level {
        let previous = self.inner.level.load(Ordering::Acquire);
        let next = Level::from_u8(previous.saturating_add(1));
        self.raise(next);
        self.level()
    }

    fn raise(&self, to: Level) {
        let previous = Level::from_u8(self.inner.level.fetch_max(to as u8, Ordering::AcqRel));
        // Open gates after publishing the level, so a woken thread reads the new level.
        if previous < Level::Drain && to >= Level::Drain {
            self.inner.drain.open();
        }
        if previous < Level::StopNow && to >= Level::StopNow {
            self.inner.stop_now.open();
        }
    }

    /// True once drain or stop-now was asked.
    pub fn is_tripped(&self) -> bool {
        self.level() >= Level::Drain
    }

    /// True once stop-now was asked.
    pub fn is_stopping_now(&self) -> bool {
        self.level() >= Level::StopNow
    }

    /// Blocks until the token trips (drain or stop now).
    pub fn wait(&self) {
        let _ = self.inner.drain.opened.recv();
    }

    /// Blocks until the token trips or `timeout` passes; returns whether it tripped.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let _ = self.inner.drain.opened.recv_timeout(timeout);
        self.is_tripped()
    }

    /// Blocks until stop-now is asked or `timeout` passes; returns whether it was asked.
    pub fn wait_stop_now_timeout(&self, timeout: Duration) -> bool {
        let _ = self.inner.stop_now.opened.recv_timeout(timeout);
        self.is_stopping_now()
    }

    /// A channel for `select!` that becomes ready (disconnected) when the token trips.
    /// It never carries a message.
    pub fn tripped(&self) -> &Receiver<()> {
        &self.inner.drain.opened
    }

    /// A channel for `select!` that becomes ready (disconnected) when stop-now is asked.
    pub fn stopping_now(&self) -> &Receiver<()> {
        &self.inner.stop_now.opened
    }

    /// The signal number (SIGINT = 2, SIGTERM = 15) that first tripped the token, if a signal
    /// did. Exit codes 130 and 143 are 128 plus this.
    pub fn signal(&self) -> Option<i32> {
        match self.inner.signal.load(Ordering::Acquire) {
            0 => None,
            sig => Some(sig),
        }
    }

    /// Maps SIGINT and SIGTERM onto this token until the returned guard is dropped: the first
    /// signal drains, the second stops now, a third (or any after the guard is dropped) gets
    /// the default action and ends the process.
    ///
    /// A background thread receives the signals, so the token's waiters are woken normally.
    ///
    /// A signal the process was started with ignored stays ignored (a non-interactive shell
    /// starts a background job with SIGINT ignored, so that a Ctrl-C meant for the foreground
    /// does not reach it); the tasks inherit that.
    pub fn watch_signals(&self) -> std::io::Result<SignalWatch> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let watched: Vec<i32> = [SIGINT, SIGTERM].into_iter().filter(|&sig| !ignored_at_start(sig)).collect();
        // Until the receiving handler is in place a signal gets its default action, as it
        // would before this call: it is never swallowed by a disarmed conditional default.
        let give_default = Arc::new(AtomicBool::new(true));
        let mut ids = Vec::new();
        for &sig in &watched {
            // Registered before the receiving handler, so each signal checks `give_default`
            // before the receiving thread can arm it (after the second signal): arming it
            // while a signal is being handled would kill the process on the second signal.
            ids.push(signal_hook::flag::register_conditional_default(sig, give_default.clone())?);
        }
        let mut signals = signal_hook::iterator::Signals::new(&watched)?;
        give_default.store(false, Ordering::Release);
        let handle = signals.handle();
        let token = self.clone();
        let after_second = give_default.clone();
        let thread = std::thread::Builder::new().name("muster-signals".into()).spawn(move || {
            for sig in signals.forever() {
                let _ = token.inner.signal.compare_exchange(0, sig, Ordering::AcqRel, Ordering::Acquire);
                if token.escalate() == Level::StopNow {
                    after_second.store(true, Ordering::Release);
                }
            }
        })?;
        Ok(SignalWatch { handle, thread: Some(thread), give_default, _ids: ids })
    }
}

/// True when this process's disposition of `signal` is to ignore it (Linux's
/// `/proc/self/status`, `SigIgn`; false where that cannot be read).
fn ignored_at_start(signal: i32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mask = status.lines().find_map(|line| line.strip_prefix("SigIgn:"));
    let mask = mask.and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok()).unwrap_or(0);
    (1..=64).contains(&signal) && mask & (1 << (signal - 1)) != 0
}

/// Keeps SIGINT/SIGTERM mapped onto a [`Shutdown`]; see [`Shutdown::watch_signals`].
pub struct SignalWatch {
    handle: signal_hook::iterator::Handle,
    thread: Option<JoinHandle<()>>,
    give_default: Arc<AtomicBool>,
    _ids: Vec<signal_hook::SigId>,
}

impl Drop for SignalWatch {
    fn drop(&mut self) {
        self.give_default.store(true, Ordering::Release);
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn starts_running() {
        let token = Shutdown::new();
        assert_eq!(token.level(), Level::Running);
        assert!(!token.is_tripped());
        assert!(!token.wait_timeout(Duration::from_millis(1)));
    }

    #[test]
    fn trip_is_seen_by_every_clone() {
        let token = Shutdown::new();
        let clone = token.clone();
        clone.trip();
        assert!(token.is_tripped());
        assert!(!token.is_stopping_now());
        assert_eq!(token.level(), Level::Drain);
    }

    #[test]
    fn levels_never_go_back() {
        let token = Shutdown::new();
        token.stop_now();
        token.trip();
        assert_eq!(token.level(), Level::StopNow);
        assert!(token.is_tripped());
    }

    #[test]
    fn escalate_steps_through_levels() {
        let token = Shutdown::new();
        assert_eq!(token.escalate(), Level::Drain);
        assert_eq!(token.escalate(), Level::StopNow);
        assert_eq!(token.escalate(), Level::StopNow);
    }

    #[test]
    fn trip_wakes_every_waiter() {
        let token = Shutdown::new();
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let token = token.clone();
                std::thread::spawn(move || token.wait())
            })
            .collect();
        token.trip();
        for waiter in waiters {
            waiter.join().expect("waiter returns");
        }
    }

    #[test]
    fn wait_timeout_returns_when_tripped_from_another_thread() {
        let token = Shutdown::new();
        let tripper = token.clone();
        let start = Instant::now();
        let thread = std::thread::spawn(move || tripper.trip());
        assert!(token.wait_timeout(Duration::from_secs(30)));
        assert!(start.elapsed() < Duration::from_secs(30));
        thread.join().expect("tripper returns");
    }

    #[test]
    fn usable_in_select_beside_a_queue() {
        let token = Shutdown::new();
        let (_tx, rx) = crossbeam_channel::bounded::<u32>(1);
        let watcher = token.clone();
        let thread = std::thread::spawn(move || {
            crossbeam_channel::select! {
                recv(rx) -> _ => "work",
                recv(watcher.tripped()) -> _ => "tripped",
            }
        });
        token.trip();
        assert_eq!(thread.join().expect("select returns"), "tripped");
    }

    #[test]
    fn stop_now_wakes_drain_waiters_too() {
        let token = Shutdown::new();
        let waiter = token.clone();
        let thread = std::thread::spawn(move || waiter.wait());
        token.stop_now();
        thread.join().expect("waiter returns");
        assert!(token.wait_stop_now_timeout(Duration::from_millis(1)));
    }
}
