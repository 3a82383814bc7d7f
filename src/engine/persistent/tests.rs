//! Named scenarios for persistent workers, with small shell workers.

use super::*;
use std::collections::BTreeMap;

fn sh(script: &str, workers: usize) -> PersistentConfig {
    let mut config = PersistentConfig::new("/bin/sh", vec!["-c".into(), script.into()], workers);
    config.grace = Duration::from_secs(5);
    config
}

const ECHO: &str = r#"while IFS= read -r l; do echo "r:$l"; done"#;

fn inputs(n: usize) -> Vec<Vec<u8>> {
    (1..=n).map(|i| format!("in{i}").into_bytes()).collect()
}

fn collect(
    config: &PersistentConfig,
    items: Vec<Vec<u8>>,
    shutdown: &Shutdown,
) -> (BTreeMap<Seq, Reply>, Vec<String>, Summary) {
    let mut replies = BTreeMap::new();
    let mut stderr = Vec::new();
    let summary = run(
        config,
        items.into_iter(),
        shutdown,
        |seq, reply, _| {
            assert!(replies.insert(seq, reply).is_none(), "task {seq} answered twice");
        },
        |slot, line| stderr.push(format!("{slot}:{}", String::from_utf8_lossy(line))),
    );
    (replies, stderr, summary)
}

#[test]
fn every_task_gets_its_own_reply() {
    let (replies, _, summary) = collect(&sh(ECHO, 2), inputs(2000), &Shutdown::new());
    assert_eq!(replies.len(), 2000);
    for (seq, reply) in &replies {
        assert_eq!(reply, &Reply::Done(format!("r:in{seq}").into_bytes()));
    }
    assert_eq!((summary.read, summary.done, summary.workers_started), (2000, 2000, 2));
}

#[test]
fn nul_separated_records() {
    let mut config = sh(r#"while IFS= read -r -d '' l; do printf 'r:%s\0' "$l"; done"#, 1);
    config.program = "/bin/bash".into();
    config.separator = 0;
    let (replies, _, _) = collect(&config, vec![b"a\nb".to_vec(), b"c".to_vec()], &Shutdown::new());
    assert_eq!(replies[&1], Reply::Done(b"r:a\nb".to_vec()));
    assert_eq!(replies[&2], Reply::Done(b"r:c".to_vec()));
}

#[test]
fn a_worker_killed_mid_task_is_replaced_and_the_task_retried() {
    // The first worker to see "die" exits; the retry succeeds on its replacement.
    let dir = tempfile::tempdir().expect("temp dir");
    let marker = dir.path().join("died");
    let script = format!(
        r#"while IFS= read -r l; do if [ "$l" = in5 ] && [ ! -e {m} ]; then touch {m}; exit 3; fi; echo "r:$l"; done"#,
        m = marker.display()
    );
    let mut config = sh(&script, 1);
    config.retries = 1;
    let (replies, _, summary) = collect(&config, inputs(20), &Shutdown::new());
    assert!(replies.values().all(|r| matches!(r, Reply::Done(_))), "{replies:?}");
    assert_eq!(summary.done, 20);
    assert_eq!(summary.crashes, 1);
    assert!(summary.workers_started >= 2);
}

#[test]
fn only_the_task_that_kills_workers_is_charged() {
    // "in7" kills every worker it reaches; with 16 tasks in flight its crashes also hold
    // innocent tasks, which must all still succeed.
    let mut config = sh(r#"while IFS= read -r l; do [ "$l" = in7 ] && exit 9; echo "r:$l"; done"#, 1);
    config.retries = 2;
    let (replies, _, summary) = collect(&config, inputs(50), &Shutdown::new());
    assert_eq!(replies[&7], Reply::Failed(Failure::Exit(9)));
    assert_eq!(summary.done, 49, "{replies:?}");
    assert_eq!(summary.failed, 1);
}

#[test]
fn recycling_replaces_workers_between_tasks() {
    let mut config = sh(ECHO, 1);
    config.max_tasks_per_worker = Some(10);
    let (replies, _, summary) = collect(&config, inputs(100), &Shutdown::new());
    assert_eq!(replies.len(), 100);
    assert_eq!(summary.workers_started, 10);
}

#[test]
fn stderr_floods_do_not_deadlock_and_lines_come_through() {
    // 1,000 stderr lines per task, far beyond a pipe's buffer, while replies keep flowing.
    let script = r#"while IFS= read -r l; do i=0; while [ $i -lt 1000 ]; do echo "noise $l $i" >&2; i=$((i+1)); done; echo "r:$l"; done"#;
    let (replies, stderr, _) = collect(&sh(script, 2), inputs(20), &Shutdown::new());
    assert_eq!(replies.len(), 20);
    assert_eq!(stderr.len(), 20_000);
}

#[test]
fn end_of_input_closes_stdin_as_the_quit() {
    let script = r#"while IFS= read -r l; do echo "r:$l"; done; echo "bye from $MUSTER_WORKER" >&2"#;
    let (_, stderr, _) = collect(&sh(script, 2), inputs(10), &Shutdown::new());
    let mut byes: Vec<&String> = stderr.iter().filter(|l| l.contains("bye")).collect();
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
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&pid_file).map_or(0, |s| s.lines().count()) < 2
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        stopper.stop_now();
    });
    let (replies, _, summary) = collect(&sh(&script, 2), inputs(30), &shutdown);
    thread.join().expect("stopper");
    assert_eq!(summary.read as usize, replies.len());
    assert!(replies.values().all(|r| *r == Reply::NotRun));
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
    let config = PersistentConfig::new("/no/such/worker", vec![], 2);
    let (replies, _, summary) = collect(&config, inputs(5), &Shutdown::new());
    assert_eq!(summary.failed, 5);
    assert!(replies
        .values()
        .all(|r| matches!(r, Reply::Failed(Failure::Start(msg)) if msg.contains("/no/such/worker"))));
}

#[test]
fn a_task_past_the_timeout_is_charged_and_the_innocent_ones_it_held_are_not() {
    // "in4" hangs its worker; with a window of 16 it holds innocent tasks behind it.
    let mut config =
        sh(r#"while IFS= read -r l; do [ "$l" = in4 ] && exec sleep 1000; echo "r:$l"; done"#, 1);
    config.timeout = Some(Duration::from_millis(200));
    config.retries = 1;
    let (replies, _, summary) = collect(&config, inputs(30), &Shutdown::new());
    assert_eq!(replies[&4], Reply::TimedOut);
    for (seq, reply) in replies.iter().filter(|(seq, _)| **seq != 4) {
        assert_eq!(reply, &Reply::Done(format!("r:in{seq}").into_bytes()));
    }
    assert_eq!((summary.read, summary.done, summary.timed_out), (30, 29, 1));
    // Two attempts, each costing a worker: the first, the replacement after attempt one, and
    // the one after attempt two.
    assert_eq!((summary.crashes, summary.workers_started), (2, 3), "{summary:?}");
}

#[test]
fn a_worker_that_never_answers_cannot_hang_the_run() {
    let mut config = sh("while IFS= read -r l; do :; done", 2);
    config.timeout = Some(Duration::from_millis(100));
    let (replies, _, summary) = collect(&config, inputs(4), &Shutdown::new());
    assert_eq!(replies.len(), 4);
    assert!(replies.values().all(|r| *r == Reply::TimedOut), "{replies:?}");
    assert_eq!(summary.timed_out, 4);
}

#[test]
fn a_slow_stream_of_input_does_not_count_against_the_task_in_flight() {
    // Inputs trickle in more slowly than the timeout, but every task is answered at once.
    let mut config = sh(ECHO, 1);
    config.timeout = Some(Duration::from_millis(150));
    let trickle = (1..=4).map(|i| {
        std::thread::sleep(Duration::from_millis(if i == 1 { 0 } else { 200 }));
        format!("in{i}").into_bytes()
    });
    let mut replies = BTreeMap::new();
    let summary = run(
        &config,
        trickle,
        &Shutdown::new(),
        |seq, reply, _| {
            replies.insert(seq, reply);
        },
        |_, _| {},
    );
    assert_eq!(summary.done, 4, "{replies:?}");
}

#[test]
fn a_drain_finishes_the_tasks_in_flight_and_starts_none_of_the_queued_ones() {
    // One task at a time, each slow: when the drain comes, hundreds are still queued.
    let mut config = sh(r#"while IFS= read -r l; do sleep 0.05; echo "r:$l"; done"#, 1);
    config.window = 1;
    let shutdown = Shutdown::new();
    let mut replies = BTreeMap::new();
    let started = std::time::Instant::now();
    let summary = run(
        &config,
        inputs(500).into_iter(),
        &shutdown,
        |seq, reply, _| {
            if seq == 2 {
                shutdown.trip();
            }
            replies.insert(seq, reply);
        },
        |_, _| {},
    );
    assert!(started.elapsed() < Duration::from_secs(5), "queued tasks ran: {:?}", started.elapsed());
    assert!((2..=4).contains(&summary.done), "{summary:?}");
    assert_eq!(summary.read, summary.done + summary.not_run, "{summary:?}");
    assert_eq!(replies.len() as u64, summary.read);
    // Done ones come first; after the drain nothing more is done.
    let first_not_run = replies.iter().find(|(_, r)| **r == Reply::NotRun).map(|(seq, _)| *seq);
    assert_eq!(first_not_run, Some(summary.done + 1), "{replies:?}");
}

#[test]
fn slow_tasks_are_not_queued_behind_one_worker() {
    // With a window of 64 and 12 slow tasks, a fixed window would hand them all to whichever
    // worker asked first; the paced window keeps about one at a time at each worker.
    let mut config = sh(r#"while IFS= read -r l; do sleep 0.1; echo "$MUSTER_WORKER"; done"#, 2);
    config.window = 64;
    let (replies, _, summary) = collect(&config, inputs(12), &Shutdown::new());
    assert_eq!(summary.done, 12);
    let by_worker = |w: &[u8]| replies.values().filter(|r| **r == Reply::Done(w.to_vec())).count();
    let (first, second) = (by_worker(b"1"), by_worker(b"2"));
    assert!(first >= 4 && second >= 4, "worker 1 ran {first}, worker 2 ran {second}");
}

#[test]
fn a_worker_that_answers_twice_is_replaced_and_no_reply_goes_astray() {
    // For "in3" the worker writes two lines in one write: a reply nobody asked for. No task
    // may be sent to it after that (it would die with the worker, uncharged or not).
    let script = r#"while IFS= read -r l; do if [ "$l" = in3 ]; then printf 'r:%s\nextra\n' "$l"; else echo "r:$l"; fi; done"#;
    let mut config = sh(script, 1);
    config.window = 1;
    let (replies, _, summary) = collect(&config, inputs(6), &Shutdown::new());
    for (seq, reply) in &replies {
        assert_eq!(reply, &Reply::Done(format!("r:in{seq}").into_bytes()));
    }
    assert_eq!((summary.done, summary.protocol_breaks, summary.workers_started), (6, 1, 2), "{summary:?}");
}

#[test]
fn records_bigger_than_the_write_buffer_go_through_whole() {
    // `cat` answers every line with itself: a protocol-abiding worker.
    let config = PersistentConfig::new("cat", vec![], 2);
    let items: Vec<Vec<u8>> = (0..40)
        .map(|i| {
            if i % 5 == 0 {
                vec![b'a' + (i % 26) as u8; 150_000]
            } else {
                format!("small {i}").into_bytes()
            }
        })
        .collect();
    let (replies, _, summary) = collect(&config, items.clone(), &Shutdown::new());
    assert_eq!(summary.done, 40);
    for (seq, reply) in replies {
        assert_eq!(reply, Reply::Done(items[seq as usize - 1].clone()), "task {seq}");
    }
}

#[test]
fn a_drain_with_a_silent_worker_ends_after_the_grace() {
    // The worker reads its task and never answers; only the library's grace can end the drain.
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
    let started = std::time::Instant::now();
    let (replies, _, summary) = collect(&config, inputs(3), &shutdown);
    tripper.join().expect("tripper");
    assert!(started.elapsed() < Duration::from_secs(4), "the drain waited {:?}", started.elapsed());
    assert!(shutdown.is_stopping_now(), "the drain became stop-now");
    assert_eq!(replies.len(), 3, "{replies:?}");
    assert_eq!(summary.read, summary.done + summary.failed + summary.timed_out + summary.not_run);
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
        let _ = done_tx.send(collect(&config, records, &Shutdown::new()));
    });
    let (replies, _, summary) = done_rx.recv_timeout(Duration::from_secs(60)).expect("the run ends");
    assert_eq!(replies.len(), 40);
    assert!(summary.timed_out >= 1, "worker 1's task timed out: {summary:?}");
    assert_eq!(summary.done + summary.timed_out, 40, "{summary:?}");
    for reply in replies.values() {
        assert!(matches!(reply, Reply::Done(echo) if echo.len() == 100_000) || *reply == Reply::TimedOut);
    }
}
