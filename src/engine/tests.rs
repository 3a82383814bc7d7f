//! The engine's policy — retries, halts, time limits, the reorder window, the journal and the
//! exactly-once accounting — over the scripted executor in `fake`: no processes, no `sh`.
//! What only real processes can show (process groups, pipes, signals from a terminal) is
//! tested through the CLI in `cli/tests/`.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::fake::{self, FakeExecutor};
use super::*;
use crate::journal::{Record, RecordOutcome};
use crate::source::{Receipt, Settled, Sourced};
use crate::task::Outcome;
use rustix::process::Signal;

/// A writer whose bytes the test can read (the persistent scenarios use it too).
#[derive(Clone, Default)]
pub(crate) struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

/// An engine configuration whose attempts run the input itself as the fake's script word.
fn config(jobs: usize) -> RunConfig {
    let template = Template::parse(&["{}".into()], 1).expect("template");
    let mut config = RunConfig::new(template);
    config.jobs = jobs;
    config.grace = Duration::from_millis(100);
    config
}

struct Ran {
    summary: Summary,
    stdout: String,
    stderr: String,
    log: fake::Shared,
}

fn run_fake(config: RunConfig, inputs: &[&str], shutdown: &Shutdown, observer: &dyn Observer) -> Ran {
    run_fake_sourced(config, inputs, shutdown, observer, &NoSettlement, false)
}

/// Runs the engine over the fake executor; with `receipts`, each task's receipt is its input.
fn run_fake_sourced(
    config: RunConfig,
    inputs: &[&str],
    shutdown: &Shutdown,
    observer: &dyn Observer,
    settlement: &dyn Settlement,
    receipts: bool,
) -> Ran {
    let values = inputs.iter().map(|word| word.as_bytes().to_vec()).collect();
    let inputs = Inputs::new(vec![Source::Values(values)], b'\n').expect("inputs");
    let known_total = inputs.known_total();
    let sourced = inputs.map(|input| {
        input.map(|input| {
            let receipt = receipts.then(|| Receipt::from(input.identity()));
            Sourced { input, receipt }
        })
    });
    let (stdout, stderr) = (Sink::default(), Sink::default());
    let log = fake::Shared::default();
    let io = Io {
        stdout: Box::new(stdout.clone()),
        stderr: Box::new(stderr.clone()),
        shutdown,
        observer,
        settlement,
    };
    let summary = run_on(config, sourced, known_total, io, |_events, waker, slots| {
        Ok(FakeExecutor::new(waker, slots.len(), log.clone()))
    })
    .expect("the engine runs");
    assert!(summary.accounts_for_everything(), "every task read has one outcome: {summary:?}");
    Ran { summary, stdout: stdout.text(), stderr: stderr.text(), log }
}

/// The joblog's records (header skipped), in the order written.
fn records(path: &Path) -> Vec<Record> {
    let text = std::fs::read(path).expect("read joblog");
    text.split(|&b| b == b'\n')
        .filter(|line| !line.is_empty() && !line.starts_with(b"#") && !line.starts_with(b"Seq\t"))
        .map(|line| Record::parse(line).expect("a whole record"))
        .collect()
}

/// Each task's records' outcomes, in order.
fn outcomes_by_task(records: &[Record]) -> BTreeMap<u64, Vec<RecordOutcome>> {
    let mut by_task: BTreeMap<u64, Vec<RecordOutcome>> = BTreeMap::new();
    for record in records {
        by_task.entry(record.seq).or_default().push(record.outcome);
    }
    by_task
}

#[test]
fn a_failing_task_is_retried_until_it_succeeds_or_its_attempts_run_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let joblog = dir.path().join("log");
    let mut config = config(2);
    config.retries = 2;
    config.joblog = Some(joblog.clone());
    let ran = run_fake(config, &["flaky:2", "flaky:5", "ok"], &Shutdown::new(), &NoObserver);
    assert_eq!((ran.summary.done, ran.summary.failed), (2, 1));
    let attempts = |seq| ran.log.with(|log| log.starts.iter().filter(|(s, _)| *s == seq).count());
    assert_eq!((attempts(1), attempts(2), attempts(3)), (3, 3, 1), "retries + 1 attempts at most");
    let by_task = outcomes_by_task(&records(&joblog));
    use RecordOutcome::{Done, Failed, Retry};
    assert_eq!(by_task[&1], [Retry, Retry, Done]);
    assert_eq!(by_task[&2], [Retry, Retry, Failed]);
    assert_eq!(by_task[&3], [Done]);
    assert!(ran.stdout.contains("flaky:2 3\n"), "the successful attempt's output: {}", ran.stdout);
    assert!(!ran.stdout.contains("flaky:2 1\n"), "a retried attempt's output is not printed");
}

#[test]
fn halt_now_stops_running_tasks_at_once_and_starts_nothing_more() {
    let mut config = config(4);
    config.halt = Some(Halt { when: HaltWhen::Now, threshold: FailThreshold::Count(1) });
    let mut inputs = vec!["hang", "hang", "hang", "exit:3"];
    inputs.extend(std::iter::repeat_n("ok", 50));
    let shutdown = Shutdown::new();
    let ran = run_fake(config, &inputs, &shutdown, &NoObserver);
    let summary = &ran.summary;
    assert!(summary.halted && shutdown.is_stopping_now());
    assert_eq!((summary.failed, summary.stopped, summary.done), (1, 3, 0), "{summary:?}");
    assert_eq!(ran.log.with(|log| log.starts.len()), 4, "nothing started after the failure");
    let termed = ran.log.with(|log| log.signals.iter().filter(|(_, s)| *s == Signal::TERM.as_raw()).count());
    assert_eq!(termed, 3, "each hanging task got SIGTERM without waiting out the grace");
}

#[test]
fn halt_soon_lets_running_tasks_finish_and_starts_nothing_more() {
    let mut config = config(3);
    config.halt = Some(Halt { when: HaltWhen::Soon, threshold: FailThreshold::Count(1) });
    let mut inputs = vec!["sleep:150", "sleep:150", "exit:1"];
    inputs.extend(std::iter::repeat_n("ok", 50));
    let shutdown = Shutdown::new();
    let ran = run_fake(config, &inputs, &shutdown, &NoObserver);
    let summary = &ran.summary;
    assert!(summary.halted && !shutdown.is_tripped(), "soon is not a shutdown");
    assert_eq!((summary.done, summary.failed, summary.stopped), (2, 1, 0), "{summary:?}");
    assert_eq!(ran.log.with(|log| log.starts.len()), 3);
    assert!(ran.log.with(|log| log.signals.is_empty()), "running tasks were left to finish");
}

#[test]
fn a_task_past_its_time_limit_gets_sigterm_then_sigkill_after_the_grace() {
    let dir = tempfile::tempdir().expect("temp dir");
    let joblog = dir.path().join("log");
    let mut config = config(2);
    config.timeout = Some(Duration::from_millis(100));
    config.retries = 1;
    config.joblog = Some(joblog.clone());
    let ran = run_fake(config, &["hang", "stubborn", "ok"], &Shutdown::new(), &NoObserver);
    assert_eq!((ran.summary.timed_out, ran.summary.done), (2, 1));
    let signals = ran.log.with(|log| log.signals.clone());
    let (term, kill) = (Signal::TERM.as_raw(), Signal::KILL.as_raw());
    assert!(signals.contains(&(1, term)) && !signals.contains(&(1, kill)), "{signals:?}");
    assert!(signals.contains(&(2, term)) && signals.contains(&(2, kill)), "{signals:?}");
    let by_task = outcomes_by_task(&records(&joblog));
    use RecordOutcome::{Retry, TimedOut};
    assert_eq!(by_task[&1], [Retry, TimedOut], "a timeout is retried like a failure");
    assert_eq!(by_task[&2], [Retry, TimedOut]);
}

#[test]
fn keep_order_reads_no_further_ahead_than_its_window_behind_a_slow_task() {
    let mut config = config(2);
    config.keep_order = true;
    let mut inputs = vec!["sleep:300"];
    inputs.extend(std::iter::repeat_n("ok", 500));
    let ran = run_fake(config, &inputs, &Shutdown::new(), &NoObserver);
    assert_eq!(ran.summary.done, 501);
    let window = 64; // jobs × 4, at least 64: see `run_on`
    let highest = ran.log.with(|log| log.highest_beside_first);
    assert!(highest <= window, "task {highest} started while task 1 held the window of {window}");
    let printed: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(printed.first(), Some(&"sleep:300 1"));
    assert_eq!(printed.len(), 501, "everything printed, in order");
}

#[test]
fn slots_are_never_oversubscribed() {
    let mut inputs = vec!["sleep:20"; 40];
    inputs.extend(std::iter::repeat_n("ok", 40));
    let ran = run_fake(config(3), &inputs, &Shutdown::new(), &NoObserver);
    assert_eq!(ran.summary.done, 80);
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let per_loop = 3usize.div_ceil(3.min(cpus));
    assert!(ran.log.with(|log| log.max_running) <= per_loop);
}

/// Trips a shutdown (a drain, or stop-now) once `after` tasks have finished.
struct TripAfter<'a> {
    after: u64,
    now: bool,
    finished: AtomicU64,
    shutdown: &'a Shutdown,
}

impl<'a> TripAfter<'a> {
    fn new(after: u64, now: bool, shutdown: &'a Shutdown) -> Self {
        TripAfter { after, now, finished: AtomicU64::new(0), shutdown }
    }
}

impl Observer for TripAfter<'_> {
    fn task_finished(&self, _outcome: &Outcome) {
        if self.finished.fetch_add(1, Ordering::SeqCst) + 1 == self.after {
            if self.now {
                self.shutdown.stop_now();
            } else {
                self.shutdown.trip();
            }
        }
    }
}

#[test]
fn stop_now_journals_each_task_once_and_a_resume_runs_exactly_the_rest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let joblog = dir.path().join("log");
    // Two tasks that never end on their own, so stop-now is what ends them; the other loop's
    // slots keep finishing tasks until then.
    let inputs: Vec<String> =
        (0..60).map(|i| if i < 2 { "hang".into() } else { format!("sleep:{}", 1 + i % 9) }).collect();
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let mut first = config(4);
    first.joblog = Some(joblog.clone());
    let shutdown = Shutdown::new();
    let observer = TripAfter::new(10, true, &shutdown);
    let ran = run_fake(first, &inputs, &shutdown, &observer);
    let summary = &ran.summary;
    assert!(summary.stopped > 0 && summary.done >= 9, "{summary:?}");
    let by_task = outcomes_by_task(&records(&joblog));
    for (seq, outcomes) in &by_task {
        assert_eq!(outcomes.len(), 1, "task {seq} recorded {outcomes:?}");
    }
    let count = |outcome| by_task.values().filter(|o| o[0] == outcome).count() as u64;
    assert_eq!(count(RecordOutcome::Done), summary.done);
    assert_eq!(count(RecordOutcome::Stopped), summary.stopped);
    assert_eq!(by_task.len() as u64, summary.done + summary.stopped, "not-run tasks are not journaled");

    // The resume runs every task that is not done, and only those.
    let mut second = config(4);
    second.joblog = Some(joblog.clone());
    second.resume = Some(ResumeMode::SkipFinished);
    // Hanging tasks hang again; a time limit settles them this time.
    second.timeout = Some(Duration::from_millis(30));
    let again = run_fake(second, &inputs, &Shutdown::new(), &NoObserver);
    assert_eq!(again.summary.skipped, summary.done, "done tasks are skipped, nothing else");
    assert_eq!(again.summary.read, 60);
    let by_task = outcomes_by_task(&records(&joblog));
    let done_twice =
        by_task.values().filter(|o| o.iter().filter(|x| **x == RecordOutcome::Done).count() > 1).count();
    assert_eq!(done_twice, 0, "no task is recorded done twice");
    let settled = by_task.values().filter(|o| o.last().is_some_and(|x| *x != RecordOutcome::Stopped)).count();
    assert_eq!(settled, 60, "after the resume every task has a final record");
}

#[test]
fn a_refused_start_waits_and_tries_again() {
    let ran = run_fake(config(2), &["refuse:2", "ok"], &Shutdown::new(), &NoObserver);
    assert_eq!(ran.summary.done, 2);
    assert_eq!(ran.log.with(|log| log.starts.iter().filter(|(s, _)| *s == 1).count()), 1);
}

#[test]
fn a_task_that_cannot_start_fails_with_the_reason_named() {
    let ran = run_fake(config(2), &["missing", "ok"], &Shutdown::new(), &NoObserver);
    assert_eq!((ran.summary.failed, ran.summary.done), (1, 1));
    assert!(ran.stderr.contains("task 1 (missing): cannot run 'missing'"), "{}", ran.stderr);
}

#[test]
fn output_that_could_not_be_captured_fails_the_task_as_lost() {
    let dir = tempfile::tempdir().expect("temp dir");
    let joblog = dir.path().join("log");
    let mut config = config(2);
    config.joblog = Some(joblog.clone());
    let ran = run_fake(config, &["lost", "ok"], &Shutdown::new(), &NoObserver);
    assert_eq!((ran.summary.failed, ran.summary.lost, ran.summary.done), (1, 1, 1));
    assert_eq!(outcomes_by_task(&records(&joblog))[&1], [RecordOutcome::Lost]);
    assert!(ran.stderr.contains("task 1 (lost): output lost"), "{}", ran.stderr);
}

/// Trips a drain once `after` tasks have started (called on the loop that starts them).
struct DrainOnStart<'a> {
    after: u64,
    started: AtomicU64,
    shutdown: &'a Shutdown,
}

impl Observer for DrainOnStart<'_> {
    fn task_started(&self) {
        if self.started.fetch_add(1, Ordering::SeqCst) + 1 == self.after {
            self.shutdown.trip();
        }
    }
}

#[test]
fn a_drain_lets_running_tasks_finish_within_the_grace_then_stops_the_rest() {
    let mut config = config(2);
    config.grace = Duration::from_millis(500);
    let mut inputs = vec!["sleep:50", "hang"];
    inputs.extend(std::iter::repeat_n("ok", 20));
    let shutdown = Shutdown::new();
    let observer = DrainOnStart { after: 2, started: AtomicU64::new(0), shutdown: &shutdown };
    let ran = run_fake(config, &inputs, &shutdown, &observer);
    let summary = &ran.summary;
    assert_eq!((summary.done, summary.stopped), (1, 1), "{summary:?}");
    assert_eq!(ran.log.with(|log| log.starts.len()), 2, "nothing new started in the drain");
    let signals = ran.log.with(|log| log.signals.clone());
    assert_eq!(signals, [(2, Signal::TERM.as_raw())], "only the task still running after the grace");
}

/// Counts attempts in slots, as a progress display does.
#[derive(Default)]
struct Occupancy {
    running: AtomicU64,
    most: AtomicU64,
}

impl Observer for Occupancy {
    fn attempt_started(&self) {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
    }

    fn attempt_ended(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn attempts_running_as_observed_never_exceed_the_slots() {
    let mut config = config(2);
    config.retries = 2;
    let mut inputs = vec!["flaky:2"; 20];
    inputs.extend(std::iter::repeat_n("sleep:2", 20));
    inputs.push("missing");
    let observer = Occupancy::default();
    let ran = run_fake(config, &inputs, &Shutdown::new(), &observer);
    assert_eq!(ran.summary.done, 40);
    assert_eq!(observer.running.load(Ordering::SeqCst), 0, "every attempt that started ended");
    let most = observer.most.load(Ordering::SeqCst);
    assert!((1..=2).contains(&most), "{most} attempts running at -j2");
}

/// Records what a source hears back, checking the joblog at each settlement.
struct Recorder {
    joblog: std::path::PathBuf,
    running: Mutex<std::collections::HashMap<String, i64>>,
    most_running: AtomicU64,
    settled: Mutex<Vec<(String, String)>>,
    /// Settlements that came before the task's final record was in the joblog.
    early: Mutex<Vec<String>>,
}

impl Recorder {
    fn new(joblog: &Path) -> Recorder {
        Recorder {
            joblog: joblog.to_owned(),
            running: Mutex::default(),
            most_running: AtomicU64::new(0),
            settled: Mutex::default(),
            early: Mutex::default(),
        }
    }
}

fn text(receipt: &Receipt) -> String {
    String::from_utf8_lossy(receipt).into_owned()
}

impl Settlement for Recorder {
    fn started(&self, receipt: &Receipt) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        *running.entry(text(receipt)).or_default() += 1;
        let now = running.values().filter(|n| **n > 0).count() as u64;
        self.most_running.fetch_max(now, Ordering::SeqCst);
    }

    fn ended(&self, receipt: &Receipt) {
        *self.running.lock().unwrap_or_else(PoisonError::into_inner).entry(text(receipt)).or_default() -= 1;
    }

    fn settled(&self, receipt: &Receipt, how: Settled<'_>) {
        let how = match how {
            Settled::Finished(completion) => {
                let outcome = completion.outcome;
                let input = text(receipt);
                let journaled = records(&self.joblog)
                    .iter()
                    .any(|r| r.input == input.as_bytes() && r.outcome != RecordOutcome::Retry);
                if !journaled {
                    self.early.lock().unwrap_or_else(PoisonError::into_inner).push(input);
                }
                if outcome.is_done() {
                    "done"
                } else {
                    "failed"
                }
            }
            Settled::NotRun => "not run",
            Settled::Stopped => "stopped",
            Settled::Skipped => "skipped",
        };
        self.settled.lock().unwrap_or_else(PoisonError::into_inner).push((text(receipt), how.into()));
    }
}

#[test]
fn a_source_hears_each_task_settle_once_after_its_record_is_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let joblog = dir.path().join("log");
    let mut config = config(2);
    config.retries = 1;
    config.joblog = Some(joblog.clone());
    let inputs = ["flaky:1", "exit:4", "ok", "sleep:5", "flaky:3", "lost"];
    let recorder = Recorder::new(&joblog);
    let ran = run_fake_sourced(config, &inputs, &Shutdown::new(), &NoObserver, &recorder, true);
    assert_eq!((ran.summary.done, ran.summary.failed), (3, 3));
    let mut settled = recorder.settled.lock().unwrap_or_else(PoisonError::into_inner).clone();
    settled.sort();
    let expected = [
        ("exit:4", "failed"),
        ("flaky:1", "done"),
        ("flaky:3", "failed"),
        ("lost", "failed"),
        ("ok", "done"),
        ("sleep:5", "done"),
    ];
    assert_eq!(
        settled,
        expected.map(|(a, b)| (a.to_owned(), b.to_owned())),
        "each once, retries not settled"
    );
    assert!(
        recorder.early.lock().unwrap_or_else(PoisonError::into_inner).is_empty(),
        "settled only after the record"
    );
    let running = recorder.running.lock().unwrap_or_else(PoisonError::into_inner);
    assert!(running.values().all(|n| *n == 0), "every attempt that started ended: {running:?}");
    assert!(recorder.most_running.load(Ordering::SeqCst) <= 2, "never more running than slots");
}

#[test]
fn a_source_gets_back_what_a_stop_left_unrun_and_what_a_resume_skipped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let joblog = dir.path().join("log");
    // The hanging task holds one slot until the stop; the other slot finishes the rest.
    let inputs: Vec<String> =
        std::iter::once("hang".into()).chain((0..30).map(|i| format!("sleep:{}", i % 4))).collect();
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let mut first = config(2);
    first.joblog = Some(joblog.clone());
    let shutdown = Shutdown::new();
    let recorder = Recorder::new(&joblog);
    let observer = TripAfter::new(5, true, &shutdown);
    let ran = run_fake_sourced(first, &inputs, &shutdown, &observer, &recorder, true);
    let settled = recorder.settled.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let count = |how: &str| settled.iter().filter(|(_, h)| h == how).count() as u64;
    assert_eq!(count("not run"), ran.summary.not_run, "what never started is given back");
    assert_eq!(count("done"), ran.summary.done);
    assert_eq!(count("stopped"), ran.summary.stopped, "what a stop cut short is given back");
    assert!(ran.summary.stopped >= 1, "the hanging task was stopped: {:?}", ran.summary);
    assert_eq!(settled.len() as u64, ran.summary.read, "every task read settles once");

    let mut second = config(2);
    second.joblog = Some(joblog.clone());
    second.resume = Some(ResumeMode::SkipFinished);
    second.timeout = Some(Duration::from_millis(20));
    let again = Recorder::new(&joblog);
    let resumed = run_fake_sourced(second, &inputs, &Shutdown::new(), &NoObserver, &again, true);
    let settled = again.settled.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let skipped = settled.iter().filter(|(_, h)| h == "skipped").count() as u64;
    assert_eq!(skipped, resumed.summary.skipped);
    assert_eq!(settled.len() as u64, resumed.summary.read, "every task settles once in the resumed run");
}

#[path = "../../tests/support/joblog_parity.rs"]
mod parity;

#[test]
fn the_joblog_records_the_scripted_outcomes_in_the_one_dialect() {
    let dir = tempfile::tempdir().expect("temp dir");
    let joblog = dir.path().join("log");
    let mut config = config(1);
    config.retries = 1;
    config.timeout = Some(Duration::from_millis(200));
    config.joblog = Some(joblog.clone());
    // The fake's words for the shared behaviours: `hang` dies of the TERM that stops it.
    let words = ["ok", "exit:3", "hang", "signal:9", "flaky:1"];
    assert_eq!(words.len(), parity::BEHAVIOURS.len());
    run_fake(config, &words, &Shutdown::new(), &NoObserver);
    let text = std::fs::read_to_string(&joblog).expect("joblog");
    assert_eq!(parity::columns(&text), parity::expected(), "{text}");
}

#[test]
fn an_uncharged_attempt_runs_again_on_the_same_attempt_and_is_not_recorded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let joblog = dir.path().join("log");
    let mut config = config(1);
    config.joblog = Some(joblog.clone());
    // No retries: were the innocent ends charged, the task would fail.
    let ran = run_fake(config, &["innocent:2", "ok"], &Shutdown::new(), &NoObserver);
    assert_eq!((ran.summary.done, ran.summary.failed), (2, 0), "{}", ran.stderr);
    let starts = ran.log.with(|log| log.starts.clone());
    assert_eq!(starts.iter().filter(|(seq, _)| *seq == 1).count(), 3, "{starts:?}");
    assert!(starts.iter().all(|(_, attempt)| *attempt == 1), "the same attempt each time: {starts:?}");
    let records = records(&joblog);
    assert_eq!(outcomes_by_task(&records)[&1], [RecordOutcome::Done], "one record, of the charged attempt");
}

/// Carries output and keeps it (as a Python pool's results) — except for `ok`'s, which it
/// cannot keep; notes whether anything was kept after its task's record was written.
struct Keeper {
    joblog: std::path::PathBuf,
    kept: Mutex<Vec<(String, Vec<u8>)>>,
    late: Mutex<Vec<String>>,
}

impl Settlement for Keeper {
    fn keep(&self, receipt: &Receipt, stdout: &[u8]) -> bool {
        let input = text(receipt);
        if records(&self.joblog).iter().any(|r| r.input == input.as_bytes()) {
            self.late.lock().unwrap_or_else(PoisonError::into_inner).push(input.clone());
        }
        self.kept.lock().unwrap_or_else(PoisonError::into_inner).push((input.clone(), stdout.to_vec()));
        input != "ok"
    }

    fn carries_output(&self) -> bool {
        true
    }
}

#[test]
fn a_source_keeps_a_done_tasks_output_before_its_record_and_a_refusal_makes_it_lost() {
    let dir = tempfile::tempdir().expect("temp dir");
    let joblog = dir.path().join("log");
    let mut config = config(2);
    config.joblog = Some(joblog.clone());
    let keeper = Keeper { joblog: joblog.clone(), kept: Mutex::default(), late: Mutex::default() };
    let ran =
        run_fake_sourced(config, &["ok", "sleep:5", "exit:3"], &Shutdown::new(), &NoObserver, &keeper, true);
    let mut kept = keeper.kept.lock().unwrap_or_else(PoisonError::into_inner).clone();
    kept.sort();
    // Only done tasks are kept, each with its output, each before its record.
    assert_eq!(
        kept,
        vec![("ok".to_owned(), b"ok 1\n".to_vec()), ("sleep:5".to_owned(), b"sleep:5 1\n".to_vec())]
    );
    assert!(keeper.late.lock().unwrap_or_else(PoisonError::into_inner).is_empty());
    // The one it could not keep is not done: a resume runs it again.
    assert_eq!((ran.summary.done, ran.summary.failed), (1, 2), "{:?}", ran.summary);
    let outcomes: Vec<(Vec<u8>, RecordOutcome)> =
        records(&joblog).into_iter().map(|r| (r.input.clone(), r.outcome)).collect();
    assert!(outcomes.contains(&(b"ok".to_vec(), RecordOutcome::Lost)), "{outcomes:?}");
    assert!(outcomes.contains(&(b"sleep:5".to_vec(), RecordOutcome::Done)), "{outcomes:?}");
}

/// The feeder runs on the caller's thread: stepped aside while it reads the inputs (it wakes
/// for each free place in the queue), and given its default policy back when the run ends.
#[test]
fn the_callers_thread_steps_aside_for_the_run_and_back_after_it() {
    if !super::priority::allowed() {
        return;
    }
    std::thread::spawn(|| {
        let seen_while_reading = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&seen_while_reading);
        let sourced = (0..3).map(move |_| {
            seen.lock().unwrap_or_else(PoisonError::into_inner).push(super::priority::policy());
            Ok(Sourced { input: Input { values: vec![b"ok".to_vec()] }, receipt: None })
        });
        let shutdown = Shutdown::new();
        let io = Io {
            stdout: Box::new(Sink::default()),
            stderr: Box::new(Sink::default()),
            shutdown: &shutdown,
            observer: &NoObserver,
            settlement: &NoSettlement,
        };
        let log = fake::Shared::default();
        let summary = run_on(config(2), sourced, Some(3), io, |_events, waker, slots| {
            Ok(FakeExecutor::new(waker, slots.len(), log.clone()))
        })
        .expect("the engine runs");
        assert_eq!(summary.done, 3);
        let seen = seen_while_reading.lock().unwrap_or_else(PoisonError::into_inner).clone();
        assert_eq!(seen, [Some(libc::SCHED_BATCH); 3], "the inputs were read stepped aside");
        assert_eq!(super::priority::policy(), Some(libc::SCHED_OTHER), "the caller's policy is back");
    })
    .join()
    .expect("the test's thread");
}
