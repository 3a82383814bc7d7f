//! A scripted executor for the dispatcher's tests: each attempt's first word says what it
//! does, so retries, halts, time limits and the journal are tested without `sh`.
//!
//! | word        | the attempt                                                        |
//! |-------------|--------------------------------------------------------------------|
//! | `ok`        | exits 0 at once                                                    |
//! | `exit:N`    | exits with status N                                                |
//! | `signal:N`  | dies of signal N at once                                           |
//! | `flaky:K`   | exits 1 on its first K attempts, then 0                            |
//! | `sleep:MS`  | exits 0 after MS milliseconds; a signal ends it sooner             |
//! | `hang`      | runs until a signal ends it                                        |
//! | `stubborn`  | ignores SIGTERM; SIGKILL ends it                                   |
//! | `refuse:K`  | its first K starts are refused by "the OS" (EAGAIN), then exits 0  |
//! | `missing`   | cannot start (ENOENT)                                              |
//! | `lost`      | exits 0, but its output could not be captured                      |
//! | `innocent:K`| its first K starts end uncharged (a killed worker's bystander), then 0 |
//!
//! An attempt that exits prints its word and attempt number (`ok 1`).

use std::collections::HashMap;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use super::capture::Capture;
use super::dispatch::{Attempt, Ended, Executor, StopReason, Verdict};
use super::poll::Waker;
use crate::task::Seq;

/// What the fake saw, for the tests to check.
#[derive(Debug, Default)]
pub(crate) struct Log {
    /// Every attempt started: its task and attempt number, in start order.
    pub(crate) starts: Vec<(Seq, u32)>,
    /// Signals sent to running attempts: task and signal number.
    pub(crate) signals: Vec<(Seq, i32)>,
    /// The most attempts running at once in one executor.
    pub(crate) max_running: usize,
    /// The highest task started while task 1 was running.
    pub(crate) highest_beside_first: Seq,
    /// Refused starts per task.
    refused: HashMap<Seq, u32>,
}

/// A shared handle on the log of every fake executor of one run.
#[derive(Clone, Debug, Default)]
pub(crate) struct Shared(Arc<Mutex<Log>>);

impl Shared {
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Log) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

enum Behaviour {
    Exit,
    Sleep,
    Hang,
    Stubborn,
    Lost,
    /// Ends at once, not charged.
    Innocent,
}

struct FakeRun {
    seq: Seq,
    word: String,
    attempt: u32,
    behaviour: Behaviour,
    /// When it ends, and how.
    ends: Option<(Instant, ExitStatus)>,
}

/// The scripted executor; see the [module docs](self).
pub(crate) struct FakeExecutor {
    waker: Arc<Waker>,
    running: Vec<Option<FakeRun>>,
    log: Shared,
}

impl FakeExecutor {
    pub(crate) fn new(waker: Arc<Waker>, slots: usize, log: Shared) -> FakeExecutor {
        FakeExecutor { waker, running: (0..slots).map(|_| None).collect(), log }
    }

    fn collect(&mut self, now: Instant, ended: &mut Vec<Ended>) {
        for (id, slot) in self.running.iter_mut().enumerate() {
            let due = slot.as_ref().and_then(|run| run.ends).is_some_and(|(at, _)| at <= now);
            if !due {
                continue;
            }
            let Some(run) = slot.take() else { continue };
            let Some((_, status)) = run.ends else { continue };
            let mut stdout = Capture::new(1 << 20);
            let mut output_error = None;
            if status.success() {
                let _ = stdout.push(format!("{} {}\n", run.word, run.attempt).as_bytes());
                if matches!(run.behaviour, Behaviour::Lost) {
                    output_error = Some("the capture file could not be written".into());
                }
            }
            ended.push(Ended {
                id,
                verdict: Verdict::Exited(status),
                reaped_at: now,
                captures: [stdout, Capture::new(0)],
                output_error,
                charged: !matches!(run.behaviour, Behaviour::Innocent),
                input: None,
            });
        }
    }
}

impl Executor for FakeExecutor {
    fn start(&mut self, id: usize, attempt: &mut Attempt<'_>) -> io::Result<()> {
        let word = attempt.argv.first().map(|w| w.to_string_lossy().into_owned()).unwrap_or_default();
        let (name, arg) = word.split_once(':').unwrap_or((&word, "0"));
        let arg: u64 = arg.parse().unwrap_or(0);
        let now = Instant::now();
        let exit = |code: i32| Some((now, ExitStatus::from_raw(code << 8)));
        let (behaviour, ends) = match name {
            "ok" => (Behaviour::Exit, exit(0)),
            "exit" => (Behaviour::Exit, exit(arg as i32)),
            "signal" => (Behaviour::Exit, Some((now, ExitStatus::from_raw(arg as i32)))),
            "flaky" => {
                let code = i32::from(u64::from(attempt.attempt) <= arg);
                (Behaviour::Exit, exit(code))
            }
            "sleep" => (Behaviour::Sleep, Some((now + Duration::from_millis(arg), ExitStatus::from_raw(0)))),
            "hang" => (Behaviour::Hang, None),
            "stubborn" => (Behaviour::Stubborn, None),
            "lost" => (Behaviour::Lost, exit(0)),
            "innocent" => {
                let started =
                    self.log.with(|log| log.starts.iter().filter(|(seq, _)| *seq == attempt.seq).count());
                if started as u64 >= arg {
                    (Behaviour::Exit, exit(0))
                } else {
                    (Behaviour::Innocent, Some((now, ExitStatus::from_raw(Signal::KILL.as_raw()))))
                }
            }
            "refuse" => {
                let refused = self.log.with(|log| {
                    let count = log.refused.entry(attempt.seq).or_insert(0);
                    *count += 1;
                    *count
                });
                if u64::from(refused) <= arg {
                    return Err(io::Error::from_raw_os_error(rustix::io::Errno::AGAIN.raw_os_error()));
                }
                (Behaviour::Exit, exit(0))
            }
            "missing" => return Err(io::Error::from_raw_os_error(rustix::io::Errno::NOENT.raw_os_error())),
            other => panic!("the fake executor has no behaviour {other:?}"),
        };
        let run = FakeRun { seq: attempt.seq, word: word.clone(), attempt: attempt.attempt, behaviour, ends };
        self.running[id] = Some(run);
        let running: Vec<Seq> = self.running.iter().flatten().map(|r| r.seq).collect();
        self.log.with(|log| {
            log.starts.push((attempt.seq, attempt.attempt));
            log.max_running = log.max_running.max(running.len());
            if running.contains(&1) {
                log.highest_beside_first = log.highest_beside_first.max(attempt.seq);
            }
        });
        Ok(())
    }

    fn stop(&mut self, id: usize, _why: StopReason, force: bool) {
        let signal = if force { Signal::KILL } else { Signal::TERM };
        let Some(run) = self.running.get_mut(id).and_then(Option::as_mut) else { return };
        if run.ends.is_some_and(|(at, _)| at <= Instant::now()) {
            return;
        }
        self.log.with(|log| log.signals.push((run.seq, signal.as_raw())));
        let ignored = matches!(run.behaviour, Behaviour::Stubborn) && signal == Signal::TERM;
        if !ignored {
            run.ends = Some((Instant::now(), ExitStatus::from_raw(signal.as_raw())));
        }
    }

    fn wait(&mut self, timeout: Duration, ended: &mut Vec<Ended>) {
        let now = Instant::now();
        self.collect(now, ended);
        if !ended.is_empty() {
            return;
        }
        let next_end = self.running.iter().flatten().filter_map(|run| run.ends.map(|(at, _)| at)).min();
        let wait = next_end.map_or(timeout, |at| timeout.min(at.saturating_duration_since(now)));
        self.waker.wait(wait);
        self.collect(Instant::now(), ended);
    }
}
