//! Named scenarios for persistent workers, with small shell workers, through the engine: each
//! run is [`crate::engine::run_sourced`] with workers as the executor, and a settlement that
//! keeps what became of every task (its reply, or why it has none).

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{Framing, Workers};
use crate::engine::tests::Sink;
use crate::engine::{self, Io, NoObserver, RunConfig, Summary};
use crate::input::Input;
use crate::process::template::Template;
use crate::source::{Receipt, Settled, Settlement, Sourced};
use crate::task::{Failure, Outcome, Seq};
use crate::Shutdown;

/// What became of a task.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Got {
    /// Its reply (without the separator).
    Done(Vec<u8>),
    Failed(Failure),
    TimedOut,
    /// Never answered: a shutdown came first.
    NotRun,
}

/// Keeps every task's outcome and reply, by its number (its receipt); optionally trips a
/// drain once a given task settled.
struct Collector {
    got: Mutex<BTreeMap<Seq, Got>>,
    framing: Framing,
    trip_after: Option<(Seq, Shutdown)>,
}

impl Settlement for Collector {
    fn settled(&self, receipt: &Receipt, how: Settled<'_>) {
        let seq: Seq = String::from_utf8_lossy(receipt).parse().expect("a task number");
        let got = match how {
            Settled::Finished(completion) => match completion.outcome {
                Outcome::Done => {
                    let reply = match self.framing {
                        Framing::Separated(separator) => {
                            completion.stdout.strip_suffix(&[separator]).unwrap_or(completion.stdout)
                        }
                        Framing::LengthPrefixed => completion.stdout,
                    };
                    Got::Done(reply.to_vec())
                }
                Outcome::Failed(failure) => Got::Failed(failure.clone()),
                Outcome::TimedOut(_) => Got::TimedOut,
                Outcome::NotRun => Got::NotRun,
            },
            Settled::NotRun | Settled::Stopped | Settled::Skipped => Got::NotRun,
        };
        let previous = self.got.lock().unwrap_or_else(PoisonError::into_inner).insert(seq, got);
        assert!(previous.is_none(), "task {seq} settled twice");
        if let Some((at, shutdown)) = &self.trip_after {
            if *at == seq {
                shutdown.trip();
            }
        }
    }

    fn carries_output(&self) -> bool {
        true
    }
}

/// `workers` shell workers running `script`, with a 5 s grace.
fn sh(script: &str, workers: usize) -> RunConfig {
    worker_program("/bin/sh", vec!["-c".into(), script.into()], workers)
}

fn worker_program(program: &str, args: Vec<std::ffi::OsString>, workers: usize) -> RunConfig {
    let mut config = RunConfig::new(Template::parse(&[program.into()], 1).expect("template"));
    config.jobs = workers;
    config.grace = Duration::from_secs(5);
    config.persistent = Some(Workers::new(program, args));
    config
}

fn workers(config: &mut RunConfig) -> &mut Workers {
    config.persistent.as_mut().expect("persistent workers")
}

const ECHO: &str = r#"while IFS= read -r l; do echo "r:$l"; done"#;

fn inputs(n: usize) -> Vec<Vec<u8>> {
    (1..=n).map(|i| format!("in{i}").into_bytes()).collect()
}

struct Ran {
    got: BTreeMap<Seq, Got>,
    /// The workers' stderr lines, as `SLOT:line`.
    stderr: Vec<String>,
    summary: Summary,
}

/// Runs `items` through the configured workers; tasks are numbered from 1 in input order.
fn collect(config: RunConfig, items: Vec<Vec<u8>>, shutdown: &Shutdown) -> Ran {
    let items = items.into_iter().map(|item| Input { values: vec![item] });
    collect_from(config, items, shutdown, None)
}

fn collect_from(
    config: RunConfig,
    items: impl Iterator<Item = Input>,
    shutdown: &Shutdown,
    trip_after: Option<Seq>,
) -> Ran {
    let framing = config.persistent.as_ref().map_or(Framing::Separated(b'\n'), |w| w.framing);
    let collector = Collector {
        got: Mutex::default(),
        framing,
        trip_after: trip_after.map(|seq| (seq, shutdown.clone())),
    };
    let sourced = items.enumerate().map(|(index, input)| {
        let receipt: Receipt = Arc::from((index + 1).to_string().into_bytes().into_boxed_slice());
        Ok(Sourced { input, receipt: Some(receipt) })
    });
    let stderr = Sink::default();
    let io = Io {
        stdout: Box::new(io::sink()),
        stderr: Box::new(stderr.clone()),
        shutdown,
        observer: &NoObserver,
        settlement: &collector,
    };
    let summary = engine::run_sourced(config, sourced, None, io).expect("the run");
    assert!(summary.accounts_for_everything(), "every task read has one outcome: {summary:?}");
    let text = stderr.text();
    let stderr = text
        .lines()
        .filter_map(|line| line.strip_prefix("worker "))
        .map(|line| line.replacen(": ", ":", 1))
        .collect();
    Ran { got: collector.got.into_inner().unwrap_or_else(PoisonError::into_inner), stderr, summary }
}

#[test]
fn every_task_gets_its_own_reply() {
    let ran = collect(sh(ECHO, 2), inputs(2000), &Shutdown::new());
    assert_eq!(ran.got.len(), 2000);
    for (seq, got) in &ran.got {
        assert_eq!(got, &Got::Done(format!("r:in{seq}").into_bytes()));
    }
    assert_eq!((ran.summary.read, ran.summary.done, ran.summary.workers_started), (2000, 2000, 2));
}

#[test]
fn nul_separated_records() {
    let mut config = worker_program(
        "/bin/bash",
        vec!["-c".into(), r#"while IFS= read -r -d '' l; do printf 'r:%s\0' "$l"; done"#.into()],
        1,
    );
    workers(&mut config).framing = Framing::Separated(0);
    let ran = collect(config, vec![b"a\nb".to_vec(), b"c".to_vec()], &Shutdown::new());
    assert_eq!(ran.got[&1], Got::Done(b"r:a\nb".to_vec()));
    assert_eq!(ran.got[&2], Got::Done(b"r:c".to_vec()));
}

#[test]
fn a_worker_killed_mid_task_is_replaced_and_the_task_retried() {
    // The first worker to see "in5" exits; the retry succeeds on its replacement.
    let dir = tempfile::tempdir().expect("temp dir");
    let marker = dir.path().join("died");
    let script = format!(
        r#"while IFS= read -r l; do if [ "$l" = in5 ] && [ ! -e {m} ]; then touch {m}; exit 3; fi; echo "r:$l"; done"#,
        m = marker.display()
    );
    let mut config = sh(&script, 1);
    config.retries = 1;
    let ran = collect(config, inputs(20), &Shutdown::new());
    assert!(ran.got.values().all(|r| matches!(r, Got::Done(_))), "{:?}", ran.got);
    assert_eq!(ran.summary.done, 20);
    assert_eq!(ran.summary.worker_crashes, 1);
    assert!(ran.summary.workers_started >= 2);
}

#[test]
fn only_the_task_that_kills_workers_is_charged() {
    // "in7" kills every worker it reaches; with many tasks in flight its crashes also hold
    // innocent tasks, which must all still succeed.
    let mut config = sh(r#"while IFS= read -r l; do [ "$l" = in7 ] && exit 9; echo "r:$l"; done"#, 1);
    config.retries = 2;
    let ran = collect(config, inputs(50), &Shutdown::new());
    assert_eq!(ran.got[&7], Got::Failed(Failure::Exit(9)));
    assert_eq!(ran.summary.done, 49, "{:?}", ran.got);
    assert_eq!(ran.summary.failed, 1);
}

#[test]
fn recycling_replaces_workers_between_tasks() {
    let mut config = sh(ECHO, 1);
    workers(&mut config).max_tasks_per_worker = Some(10);
    let ran = collect(config, inputs(100), &Shutdown::new());
    assert_eq!(ran.got.len(), 100);
    assert_eq!(ran.summary.workers_started, 10);
}

#[test]
fn stderr_floods_do_not_deadlock_and_lines_come_through() {
    // 1,000 stderr lines per task, far beyond a pipe's buffer, while replies keep flowing.
    let script = r#"while IFS= read -r l; do i=0; while [ $i -lt 1000 ]; do echo "noise $l $i" >&2; i=$((i+1)); done; echo "r:$l"; done"#;
    let ran = collect(sh(script, 2), inputs(20), &Shutdown::new());
    assert_eq!(ran.got.len(), 20);
    assert_eq!(ran.stderr.len(), 20_000);
}

#[test]
fn end_of_input_closes_stdin_as_the_quit() {
    let script = r#"while IFS= read -r l; do echo "r:$l"; done; echo "bye from $MUSTER_WORKER" >&2"#;
    let ran = collect(sh(script, 2), inputs(10), &Shutdown::new());
    let mut byes: Vec<&String> = ran.stderr.iter().filter(|l| l.contains("bye")).collect();
    byes.sort();
    assert_eq!(byes, ["1:bye from 1", "2:bye from 2"]);
}

#[test]
fn stop_now_answers_everything_and_leaves_no_worker() {
    // The worker reads tasks but never answers.
    let dir = tempfile::tempdir().expect("temp dir");
    let pids = dir.path().join("pids");
    let script = format!("echo $$ >> {}; while IFS= read -r l; do :; done; sleep 1000", pids.display());
    let shutdown = Shutdown::new();
    let stopper = shutdown.clone();
    let pid_file = pids.clone();
    let thread = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&pid_file).map_or(0, |s| s.lines().count()) < 2
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        stopper.stop_now();
    });
    let ran = collect(sh(&script, 2), inputs(30), &shutdown);
    thread.join().expect("stopper");
    assert_eq!(ran.summary.read as usize, ran.got.len());
    assert!(ran.got.values().all(|r| *r == Got::NotRun), "{:?}", ran.got);
    for pid in std::fs::read_to_string(&pids).expect("pids").lines() {
        let pid: u32 = pid.parse().expect("pid");
        assert!(
            crate::process::live_group_members(pid).expect("/proc").is_empty(),
            "worker {pid} left running"
        );
    }
}

#[test]
fn a_program_that_cannot_start_fails_every_task_with_the_reason() {
    let config = worker_program("/no/such/worker", vec![], 2);
    let ran = collect(config, inputs(5), &Shutdown::new());
    assert_eq!(ran.summary.failed, 5);
    assert!(ran
        .got
        .values()
        .all(|r| matches!(r, Got::Failed(Failure::Start(msg)) if msg.contains("/no/such/worker"))));
}

#[test]
fn a_task_past_the_timeout_is_charged_and_the_innocent_ones_it_held_are_not() {
    // "in4" hangs its worker; with a wide window it holds innocent tasks behind it.
    let mut config =
        sh(r#"while IFS= read -r l; do [ "$l" = in4 ] && exec sleep 1000; echo "r:$l"; done"#, 1);
    config.timeout = Some(Duration::from_millis(200));
    config.retries = 1;
    let ran = collect(config, inputs(30), &Shutdown::new());
    assert_eq!(ran.got[&4], Got::TimedOut);
    for (seq, got) in ran.got.iter().filter(|(seq, _)| **seq != 4) {
        assert_eq!(got, &Got::Done(format!("r:in{seq}").into_bytes()));
    }
    let summary = &ran.summary;
    assert_eq!((summary.read, summary.done, summary.timed_out), (30, 29, 1));
    // Two attempts, each costing a worker: the first, the replacement after attempt one, and
    // the one after attempt two.
    assert_eq!((summary.worker_crashes, summary.workers_started), (2, 3), "{summary:?}");
}

#[test]
fn a_worker_that_never_answers_cannot_hang_the_run() {
    let mut config = sh("while IFS= read -r l; do :; done", 2);
    config.timeout = Some(Duration::from_millis(100));
    let ran = collect(config, inputs(4), &Shutdown::new());
    assert_eq!(ran.got.len(), 4);
    assert!(ran.got.values().all(|r| *r == Got::TimedOut), "{:?}", ran.got);
    assert_eq!(ran.summary.timed_out, 4);
}

#[test]
fn a_slow_stream_of_input_does_not_count_against_the_task_in_flight() {
    // Inputs trickle in more slowly than the timeout, but every task is answered at once.
    let mut config = sh(ECHO, 1);
    config.timeout = Some(Duration::from_millis(150));
    let trickle = (1..=4).map(|i| {
        std::thread::sleep(Duration::from_millis(if i == 1 { 0 } else { 200 }));
        Input { values: vec![format!("in{i}").into_bytes()] }
    });
    let ran = collect_from(config, trickle, &Shutdown::new(), None);
    assert_eq!(ran.summary.done, 4, "{:?}", ran.got);
}

#[test]
fn a_drain_finishes_the_tasks_in_flight_and_starts_none_of_the_queued_ones() {
    // One task at a time, each slow: when the drain comes, hundreds are still queued.
    let mut config = sh(r#"while IFS= read -r l; do sleep 0.05; echo "r:$l"; done"#, 1);
    workers(&mut config).window = 1;
    let shutdown = Shutdown::new();
    let started = Instant::now();
    let items = inputs(500).into_iter().map(|item| Input { values: vec![item] });
    let ran = collect_from(config, items, &shutdown, Some(2));
    let summary = &ran.summary;
    assert!(started.elapsed() < Duration::from_secs(5), "queued tasks ran: {:?}", started.elapsed());
    assert!((2..=4).contains(&summary.done), "{summary:?}");
    assert_eq!(summary.read, summary.done + summary.not_run + summary.stopped, "{summary:?}");
    assert_eq!(ran.got.len() as u64, summary.read);
    // Done ones come first; after the drain nothing more is done.
    let first_not_run = ran.got.iter().find(|(_, r)| **r == Got::NotRun).map(|(seq, _)| *seq);
    assert_eq!(first_not_run, Some(summary.done + 1), "{:?}", ran.got);
}

#[test]
fn slow_tasks_are_not_queued_behind_one_worker() {
    // With a window of 64 and 12 slow tasks, a fixed window would hand them all to whichever
    // worker asked first; the paced window keeps about one at a time at each worker.
    let mut config = sh(r#"while IFS= read -r l; do sleep 0.1; echo "$MUSTER_WORKER"; done"#, 2);
    workers(&mut config).window = 64;
    let ran = collect(config, inputs(12), &Shutdown::new());
    assert_eq!(ran.summary.done, 12);
    let by_worker = |w: &[u8]| ran.got.values().filter(|r| **r == Got::Done(w.to_vec())).count();
    let (first, second) = (by_worker(b"1"), by_worker(b"2"));
    assert!(first >= 4 && second >= 4, "worker 1 ran {first}, worker 2 ran {second}");
}

/// Every one of 6 tasks got its own reply, though its one worker broke the protocol once and
/// was replaced.
fn all_answered_after_one_break(ran: &Ran) {
    for (seq, got) in &ran.got {
        assert_eq!(got, &Got::Done(format!("r:in{seq}").into_bytes()));
    }
    let summary = &ran.summary;
    assert_eq!((summary.done, summary.protocol_breaks, summary.workers_started), (6, 1, 2), "{summary:?}");
}

#[test]
fn a_worker_that_answers_twice_is_replaced_and_no_reply_goes_astray() {
    // For "in3" the worker writes two lines in one write: a reply nobody asked for. No task
    // may be sent to it after that (it would die with the worker, uncharged or not).
    let script = r#"while IFS= read -r l; do if [ "$l" = in3 ]; then printf 'r:%s\nextra\n' "$l"; else echo "r:$l"; fi; done"#;
    let mut config = sh(script, 1);
    workers(&mut config).window = 1;
    all_answered_after_one_break(&collect(config, inputs(6), &Shutdown::new()));
}

/// `examples/framed_worker.py`: answers each record with `r:` and the record; for `in3` it
/// then writes a line of text where the next frame belongs.
fn framed_worker() -> String {
    format!("{}/examples/framed_worker.py", env!("CARGO_MANIFEST_DIR"))
}

fn framed_python(count: usize) -> Option<RunConfig> {
    let python = ["python3", "python"]
        .into_iter()
        .find(|p| std::process::Command::new(p).arg("-c").arg("0").status().is_ok_and(|s| s.success()));
    let Some(python) = python else {
        eprintln!("skipped: no python3 to run a framed worker");
        return None;
    };
    let mut config = worker_program(python, vec![framed_worker().into(), "r:".into(), "in3".into()], count);
    workers(&mut config).framing = Framing::LengthPrefixed;
    Some(config)
}

#[test]
fn framed_records_carry_any_bytes_whole() {
    let Some(mut config) = framed_python(2) else { return };
    workers(&mut config).window = 16;
    let items: Vec<Vec<u8>> = (0..60u32)
        .map(|i| match i % 4 {
            0 => Vec::new(),
            1 => format!("line\nbreak\0nul {i}").into_bytes(),
            2 => (0..=255u8).cycle().take(200_000 + i as usize).collect(),
            _ => i.to_le_bytes().to_vec(),
        })
        .collect();
    let ran = collect(config, items.clone(), &Shutdown::new());
    assert_eq!(ran.summary.done, 60, "{:?}", ran.summary);
    for (seq, got) in ran.got {
        let mut want = b"r:".to_vec();
        want.extend_from_slice(&items[seq as usize - 1]);
        assert_eq!(got, Got::Done(want), "task {seq}");
    }
}

#[test]
fn a_framed_worker_writing_text_is_replaced_and_no_reply_goes_astray() {
    let Some(mut config) = framed_python(1) else { return };
    workers(&mut config).window = 1;
    all_answered_after_one_break(&collect(config, inputs(6), &Shutdown::new()));
}

#[test]
fn records_bigger_than_the_write_buffer_go_through_whole() {
    // `cat` answers every line with itself: a protocol-abiding worker.
    let config = worker_program("cat", vec![], 2);
    let items: Vec<Vec<u8>> = (0..40)
        .map(|i| {
            if i % 5 == 0 {
                vec![b'a' + (i % 26) as u8; 150_000]
            } else {
                format!("small {i}").into_bytes()
            }
        })
        .collect();
    let ran = collect(config, items.clone(), &Shutdown::new());
    assert_eq!(ran.summary.done, 40);
    for (seq, got) in ran.got {
        assert_eq!(got, Got::Done(items[seq as usize - 1].clone()), "task {seq}");
    }
}

#[test]
fn a_drain_with_a_silent_worker_ends_after_the_grace() {
    // The worker reads its task and never answers; only the grace can end the drain.
    let mut config = sh("while IFS= read -r l; do :; done; sleep 1000", 1);
    config.grace = Duration::from_millis(200);
    let shutdown = Shutdown::new();
    let tripper = {
        let shutdown = shutdown.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            shutdown.trip();
        })
    };
    let started = Instant::now();
    let ran = collect(config, inputs(3), &shutdown);
    tripper.join().expect("tripper");
    assert!(started.elapsed() < Duration::from_secs(4), "the drain waited {:?}", started.elapsed());
    assert_eq!(ran.got.len(), 3, "{:?}", ran.got);
    assert!(ran.got.values().all(|r| *r == Got::NotRun), "{:?}", ran.got);
}

#[test]
fn a_worker_that_stops_reading_stalls_none_of_the_others_fed_by_its_loop() {
    // More workers than CPUs, so each loop feeds several; worker 1 never reads its stdin, and
    // its first record (bigger than a pipe holds) fills the pipe. Written without blocking,
    // the others on its loop go on, and its task times out.
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let script = r#"[ "$MUSTER_WORKER" = 1 ] && exec sleep 1000; exec cat"#;
    let mut config = sh(script, 2 * cpus);
    config.timeout = Some(Duration::from_millis(500));
    // Its replacement never reads either: stopping it at the end takes the grace.
    config.grace = Duration::from_millis(100);
    let records: Vec<Vec<u8>> = (0..40).map(|_| vec![b'x'; 100_000]).collect();
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let ran = collect(config, records, &Shutdown::new());
        let _ = done_tx.send((ran.got, ran.summary));
    });
    let (got, summary) = done_rx.recv_timeout(Duration::from_secs(60)).expect("the run ends");
    assert_eq!(got.len(), 40);
    assert!(summary.timed_out >= 1, "worker 1's task timed out: {summary:?}");
    assert_eq!(summary.done + summary.timed_out, 40, "{summary:?}");
    for got in got.values() {
        assert!(matches!(got, Got::Done(echo) if echo.len() == 100_000) || *got == Got::TimedOut);
    }
}

// The policies again, with workers played by threads (`scripted`): no process is spawned, so
// each scenario is exact about what was sent, how often, and what each worker did.

/// `workers` scripted workers with a 200 ms grace, and the script they share.
fn scripted(workers: usize) -> (RunConfig, Arc<super::scripted::Script>) {
    let mut config = worker_program("scripted", Vec::new(), workers);
    config.grace = Duration::from_millis(200);
    let script = Arc::new(super::scripted::Script::default());
    self::workers(&mut config).scripted = Some(Arc::clone(&script));
    (config, script)
}

fn records(words: &[&str]) -> Vec<Vec<u8>> {
    words.iter().map(|word| word.as_bytes().to_vec()).collect()
}

fn replied(word: &str) -> Got {
    Got::Done(format!("r:{word}").into_bytes())
}

/// The first `ok` opens the window (a worker's pace is unknown until its first reply); the
/// `slow:500` that follows holds the worker while the rest are sent, so they are in flight
/// behind it when the scripted task acts.
const OPEN_AND_HOLD: [&str; 2] = ["ok 0", "slow:500"];

#[test]
fn scripted_workers_answer_every_record_and_start_no_process() {
    let (config, script) = scripted(2);
    let words: Vec<String> = (1..=1000).map(|i| format!("ok {i}")).collect();
    let items = words.iter().map(|word| word.as_bytes().to_vec()).collect();
    let ran = collect(config, items, &Shutdown::new());
    for (seq, got) in &ran.got {
        assert_eq!(got, &replied(&format!("ok {seq}")));
    }
    assert_eq!((ran.summary.done, ran.summary.workers_started), (1000, 2));
    assert_eq!(script.started(), 2);
}

#[test]
fn crash_probing_charges_only_the_task_that_kills_its_worker() {
    // The worker dies holding `crash` and the three records behind it. Each is run again
    // alone: the innocent ones succeed uncharged (no retry is allowed: a charged one would
    // fail), and `crash`, which kills its probe's worker too, fails with how it died.
    let (config, script) = scripted(1);
    let words = [&OPEN_AND_HOLD[..], &["ok 1", "crash", "ok 2", "ok 3", "ok 4"]].concat();
    let ran = collect(config, records(&words), &Shutdown::new());
    assert_eq!(ran.got[&4], Got::Failed(Failure::Signal(9)));
    for (seq, word) in [(1, "ok 0"), (2, "slow:500"), (3, "ok 1"), (5, "ok 2"), (6, "ok 3"), (7, "ok 4")] {
        assert_eq!(ran.got[&seq], replied(word), "task {seq}");
    }
    // Held at the crash, so sent twice: to the worker that died, then alone to its probe.
    assert_eq!(["crash", "ok 2", "ok 3", "ok 4"].map(|word| script.sends(word)), [2; 4]);
    assert_eq!(["ok 0", "slow:500", "ok 1"].map(|word| script.sends(word)), [1; 3]);
    let summary = &ran.summary;
    assert_eq!((summary.done, summary.failed, summary.worker_crashes), (6, 1, 2), "{summary:?}");
    // The first worker, one per probe (`crash`'s probe killed one), none idle at the end.
    assert_eq!(script.started(), 3);
}

#[test]
fn a_task_alone_in_flight_that_kills_its_worker_is_charged_and_retried() {
    // Alone, nothing needs probing: its attempt failed; the retry runs on a new worker.
    let (mut config, script) = scripted(1);
    workers(&mut config).window = 1;
    config.retries = 1;
    let ran = collect(config, records(&["ok 1", "flaky:1", "ok 2"]), &Shutdown::new());
    assert_eq!(ran.got[&2], replied("flaky:1"));
    assert_eq!(script.sends("flaky:1"), 2);
    assert_eq!((ran.summary.done, ran.summary.worker_crashes, ran.summary.workers_started), (3, 1, 2));

    let (mut config, _) = scripted(1);
    workers(&mut config).window = 1;
    let ran = collect(config, records(&["flaky:1"]), &Shutdown::new());
    assert_eq!(ran.got[&1], Got::Failed(Failure::Signal(9)));
}

#[test]
fn the_timeout_counts_from_the_previous_reply_and_stops_the_worker_for_the_task_past_it() {
    // Five 100 ms tasks in one window take 500 ms in all, past the 400 ms limit, but each is
    // within it counted from the reply before: none times out. `hang` does; the worker is
    // stopped (TERM) for it and the two records behind it run again, uncharged.
    let (mut config, script) = scripted(1);
    config.timeout = Some(Duration::from_millis(400));
    let slow = ["slow:100 a", "slow:100 b", "slow:100 c", "slow:100 d", "slow:100 e"];
    let words = [&["ok 0"][..], &slow, &["hang", "ok 1", "ok 2"]].concat();
    let ran = collect(config, records(&words), &Shutdown::new());
    assert_eq!(ran.got[&7], Got::TimedOut);
    for (seq, word) in words.iter().enumerate().filter(|(_, word)| **word != "hang") {
        assert_eq!(ran.got[&(seq as Seq + 1)], replied(word), "task {}", seq + 1);
    }
    assert_eq!([script.sends("hang"), script.sends("ok 1"), script.sends("ok 2")], [1, 2, 2]);
    let summary = &ran.summary;
    assert_eq!((summary.done, summary.timed_out, summary.workers_started), (8, 1, 2), "{summary:?}");
}

#[test]
fn a_worker_deaf_to_term_is_killed_after_the_grace() {
    let (mut config, _) = scripted(1);
    config.timeout = Some(Duration::from_millis(100));
    let started = Instant::now();
    let ran = collect(config, records(&["stubborn", "ok 1"]), &Shutdown::new());
    // TERM at 100 ms, ignored; KILL after the 200 ms grace.
    assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
    assert_eq!(ran.got[&1], Got::TimedOut);
    assert_eq!(ran.got[&2], replied("ok 1"));
}

#[test]
fn a_protocol_break_replaces_the_worker_and_no_reply_goes_astray() {
    // `twice` answers twice. With one task in flight the extra reply finds no task waiting:
    // the worker is replaced, and every task gets its own reply. (With several in flight, an
    // extra reply is taken for the next task's: the protocol has no task numbers, which is
    // why a worker must answer each record exactly once.)
    let (mut config, script) = scripted(1);
    workers(&mut config).window = 1;
    let words = ["ok 0", "twice", "ok 1", "ok 2"];
    let ran = collect(config, records(&words), &Shutdown::new());
    for (seq, word) in words.iter().enumerate() {
        assert_eq!(ran.got[&(seq as Seq + 1)], replied(word), "task {}", seq + 1);
    }
    let summary = &ran.summary;
    assert_eq!((summary.done, summary.protocol_breaks, summary.workers_started), (4, 1, 2), "{summary:?}");
    assert_eq!(script.started(), 2);
    // Nothing was sent to the worker after its break.
    assert_eq!([script.sends("twice"), script.sends("ok 1"), script.sends("ok 2")], [1, 1, 1]);
}

#[test]
fn the_end_of_input_is_the_quit_and_a_worker_deaf_to_it_is_stopped_after_the_grace() {
    // Two workers: the one that got `deaf` ignores its stdin's end and is TERMed after the
    // grace; the other exits at once. Both answered everything.
    let (config, _) = scripted(2);
    let started = Instant::now();
    let ran = collect(config, records(&["deaf", "ok 1", "ok 2", "ok 3"]), &Shutdown::new());
    assert!(started.elapsed() >= Duration::from_millis(200), "{:?}", started.elapsed());
    assert_eq!(ran.summary.done, 4, "{:?}", ran.got);
}

#[test]
fn a_drain_waits_for_the_tasks_in_flight_and_sends_none_of_the_queued_ones() {
    // The drain comes as `slow:200` settles; what was sent while it ran is answered, nothing
    // is sent after.
    let (mut config, script) = scripted(1);
    workers(&mut config).window = 2;
    let shutdown = Shutdown::new();
    let words: Vec<String> =
        ["ok 0".into(), "slow:200".into()].into_iter().chain((1..=500).map(|i| format!("ok {i}"))).collect();
    let items = words.iter().map(|word| Input { values: vec![word.as_bytes().to_vec()] });
    let ran = collect_from(config, items, &shutdown, Some(2));
    assert_eq!(ran.got[&1], replied("ok 0"));
    assert_eq!(ran.got[&2], replied("slow:200"));
    let summary = &ran.summary;
    assert_eq!(summary.read, summary.done + summary.not_run + summary.stopped, "{summary:?}");
    // What was sent before the drain was seen is answered; nothing is sent after it. (How
    // many that is depends on how far the settle stage lags behind: 15 on a loaded machine.)
    let sent: u32 = (1..=500).map(|i| script.sends(&format!("ok {i}"))).sum();
    assert_eq!(u64::from(sent) + 2, summary.done, "{summary:?}");
    assert!(summary.done < 502, "the drain stopped the sending: {summary:?}");
    for (seq, got) in ran.got.iter().filter(|(seq, _)| **seq > summary.done) {
        assert_eq!(*got, Got::NotRun, "task {seq}");
    }
}

#[test]
fn stop_now_answers_every_task_and_leaves_no_worker_running() {
    let (config, script) = scripted(2);
    let shutdown = Shutdown::new();
    let stopper = {
        let shutdown = shutdown.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            shutdown.stop_now();
        })
    };
    let ran = collect(config, records(&["hang", "stubborn", "ok 1", "ok 2"]), &shutdown);
    stopper.join().expect("stopper");
    assert_eq!(ran.got.len(), 4);
    assert_eq!(ran.got[&1], Got::NotRun);
    assert_eq!(ran.got[&2], Got::NotRun);
    assert_eq!(script.started(), 2);
}
