//! `muster run --persistent` end to end: long-lived workers fed through stdin.

mod util;

use std::time::Duration;

use rustix::process::Signal;
use util::*;

fn square_worker() -> String {
    format!("{}/../examples/square_worker.py", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn streams_inputs_through_python_workers_in_order() {
    let sb = Sandbox::new();
    let input: String = (1..=2000).map(|i| format!("{i}\n")).collect();
    let worker = square_worker();
    let out =
        sb.run(&["run", "--persistent", "-k", "-j", "2", "--summary", "python3", &worker], input.as_bytes());
    assert_code(&out, 0);
    let expected: String = (1..=2000u64).map(|i| format!("{}\n", i * i)).collect();
    assert_eq!(stdout(&out), expected);
    assert!(stderr(&out).contains("2000 done, 0 failed; wall"), "{}", stderr(&out));
    assert!(stderr(&out).contains("2 workers started, 0 crashed"), "{}", stderr(&out));
}

#[test]
fn framed_workers_get_and_give_length_prefixed_records() {
    // A worker reading and writing frames: 4 bytes of length (little-endian), then the bytes.
    let worker = format!("{}/../examples/framed_worker.py", env!("CARGO_MANIFEST_DIR"));
    let sb = Sandbox::new();
    let out =
        sb.run(&["run", "--persistent", "--framed", "-k", "python3", &worker, "<", ":::", "a>", "b c>"], b"");
    assert_code(&out, 0);
    // Each reply is the task's output as it is: no separator added.
    assert_eq!(stdout(&out), "<a><b c>");
    let refused = sb.run(&["run", "--persistent", "--framed", "-0", "cat"], b"");
    assert_code(&refused, 255);
    assert!(stderr(&refused).contains("'--framed' cannot be used with '--null'"), "{}", stderr(&refused));
}

#[test]
fn tags_prefix_each_result_with_its_input() {
    let sb = Sandbox::new();
    let worker = square_worker();
    let out = sb.run(&["run", "--persistent", "-k", "--tag", "python3", &worker, ":::", "3", "4"], b"");
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "3\t9\n4\t16\n");
}

#[test]
fn replacement_strings_are_refused() {
    let sb = Sandbox::new();
    let out = sb.run(&["run", "--persistent", "echo", "{}"], b"a\n");
    assert_code(&out, 255);
    assert!(stderr(&out).contains("replacement strings are not used with --persistent"), "{}", stderr(&out));
}

#[test]
fn a_crashed_worker_is_replaced_and_its_task_retried() {
    let sb = Sandbox::new();
    let script = r#"while IFS= read -r l; do if [ "$l" = 5 ] && [ ! -e died ]; then touch died; exit 3; fi; echo "r$l"; done"#;
    let input: String = (1..=10).map(|i| format!("{i}\n")).collect();
    let out = sb.run(
        &["run", "--persistent", "-k", "-j", "1", "--retries", "1", "--summary", "sh", "-c", script],
        input.as_bytes(),
    );
    assert_code(&out, 0);
    let expected: String = (1..=10).map(|i| format!("r{i}\n")).collect();
    assert_eq!(stdout(&out), expected);
    assert!(stderr(&out).contains("1 crashed"), "{}", stderr(&out));
}

#[test]
fn a_task_that_always_kills_its_worker_fails_alone() {
    let sb = Sandbox::new();
    let script = r#"while IFS= read -r l; do [ "$l" = 3 ] && exit 7; echo "r$l"; done"#;
    let input: String = (1..=8).map(|i| format!("{i}\n")).collect();
    let out = sb.run(
        &["run", "--persistent", "-k", "-j", "1", "--retries", "1", "sh", "-c", script],
        input.as_bytes(),
    );
    assert_code(&out, 1);
    assert_eq!(stdout(&out), "r1\nr2\nr4\nr5\nr6\nr7\nr8\n");
    assert!(stderr(&out).contains("task 3 (3): exited with status 7"), "{}", stderr(&out));
}

#[test]
fn ctrl_c_stops_workers_that_never_answer_after_the_grace() {
    let sb = Sandbox::new();
    let child = sb.spawn(&[
        "run",
        "--persistent",
        "-j",
        "2",
        "--grace",
        "200ms",
        "sh",
        "-c",
        "echo $$ >> pids; while read l; do :; done; sleep 60",
        ":::",
        "a",
        "b",
        "c",
    ]);
    assert!(wait_for(Duration::from_secs(10), || pids_in(&sb.read("pids")).len() == 2));
    signal(&child, Signal::INT);
    let out = child.wait_with_output().expect("muster exits");
    assert_code(&out, 130);
    assert_gone(&pids_in(&sb.read("pids")));
}

#[test]
fn kill_9_of_muster_leaves_no_worker() {
    let sb = Sandbox::new();
    let mut child =
        sb.spawn(&["run", "--persistent", "-j", "2", "sh", "-c", "echo $$ >> pids; sleep 60", ":::", "a"]);
    assert!(wait_for(Duration::from_secs(10), || pids_in(&sb.read("pids")).len() == 2));
    signal(&child, Signal::KILL);
    child.wait().expect("reaped");
    assert_gone(&pids_in(&sb.read("pids")));
}

#[test]
fn kill_9_at_many_moments_then_resume_records_each_task_done_exactly_once_and_leaves_no_process() {
    // As `run`'s twin test, through persistent workers: each worker starts a grandchild that
    // would outlive it, and records both; every kill -9 must take them all down, and the
    // resumes together must record each input done once.
    let sb = Sandbox::new();
    let inputs: String = (1..=200).map(|i| format!("{i}\n")).collect();
    sb.write("inputs", &inputs);
    let worker = r#"sleep 60 & echo $! >> pids; echo $$ >> pids
while IFS= read -r l; do sleep 0.005; echo "r$l"; done"#;
    let args =
        ["run", "--persistent", "-j", "2", "-a", "inputs", "--joblog", "log", "--resume", "sh", "-c", worker];
    kill_9_after(&sb, &args, &[0, 40, 80, 120, 160, 220, 300]);
    let out = sb.run(&args, b"");
    assert_code(&out, 0);
    let done = done_inputs(&sb.read("log"));
    assert_eq!(done, (1..=200).collect::<Vec<_>>(), "every input has exactly one success record");
    assert_gone(&pids_in(&sb.read("pids")));
}

/// A worker that answers `ok:LINE`, hangs on "hang" and dies on "die" (unless fixed).
const MOODY: &str = r#"while IFS= read -r l; do
  if [ ! -e fixed ]; then case "$l" in hang) exec sleep 1000;; die) exit 7;; esac; fi
  echo "ok:$l"
done"#;

#[test]
fn a_worker_that_never_replies_times_out_and_the_run_goes_on() {
    let sb = Sandbox::new();
    let out = sb.run(
        &["run", "--persistent", "-k", "-j", "1", "--timeout", "300ms", "--summary", "sh", "-c", MOODY],
        b"a\nhang\nb\nc\n",
    );
    assert_code(&out, 1);
    assert_eq!(stdout(&out), "ok:a\nok:b\nok:c\n");
    let err = stderr(&out);
    assert!(err.contains("task 2 (hang): timed out after 300ms"), "{err}");
    assert!(err.contains("3 done, 0 failed, 1 timed out;"), "{err}");
}

#[test]
fn the_joblog_records_every_task_and_resume_runs_only_what_is_missing() {
    let sb = Sandbox::new();
    let args = ["run", "--persistent", "-k", "-j", "1", "--timeout", "300ms", "--joblog", "j.log"];
    let with = |extra: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(extra.iter().map(|s| s.to_string()));
        all.extend(["sh", "-c", MOODY].map(String::from));
        all
    };
    let run = |extra: &[&str], input: &[u8]| {
        let owned = with(extra);
        let argv: Vec<&str> = owned.iter().map(String::as_str).collect();
        sb.run(&argv, input)
    };

    let first = run(&[], b"a\nhang\nb\ndie\nc\n");
    assert_code(&first, 2);
    let records = joblog_records(&sb.read("j.log"));
    let outcomes: Vec<(&str, &str)> = records.iter().map(|r| (r[12].as_str(), r[9].as_str())).collect();
    assert_eq!(
        outcomes,
        [("a", "done"), ("hang", "timeout"), ("b", "done"), ("die", "failed"), ("c", "done")]
    );
    assert_eq!(records[3][6], "7", "exit value of the worker that died: {records:?}");

    // --resume skips done and failed ones: only the new input runs.
    let resumed = run(&["--resume"], b"a\nhang\nb\ndie\nc\nd\n");
    assert_code(&resumed, 0);
    assert_eq!(stdout(&resumed), "ok:d\n");

    // --resume-failed runs the failures again, now that the worker is fixed.
    sb.write("fixed", "");
    let retried = run(&["--resume-failed"], b"a\nhang\nb\ndie\nc\nd\n");
    assert_code(&retried, 0);
    assert_eq!(stdout(&retried), "ok:hang\nok:die\n");
    let records = joblog_records(&sb.read("j.log"));
    let done: Vec<&str> = records.iter().filter(|r| r[9] == "done").map(|r| r[12].as_str()).collect();
    assert_eq!(done, ["a", "b", "c", "d", "hang", "die"]);
    // Each record keeps its place among all inputs.
    assert_eq!(records.last().map(|r| r[0].as_str()), Some("4"));
}

#[test]
fn halt_soon_starts_nothing_after_the_threshold() {
    let sb = Sandbox::new();
    let script = r#"while IFS= read -r l; do case "$l" in 5|9|13) exit 3;; esac; echo "r$l"; done"#;
    let input: String = (1..=300).map(|i| format!("{i}\n")).collect();
    let out = sb.run(
        // One task in flight at a time, so "running" at the halt is exactly the failing task.
        &[
            "run",
            "--persistent",
            "-k",
            "-j",
            "1",
            "--window",
            "1",
            "--halt",
            "soon,fail=2",
            "--summary",
            "sh",
            "-c",
            script,
        ],
        input.as_bytes(),
    );
    assert_code(&out, 2);
    // One worker, in order: tasks 1-4 and 6-8 done, 5 and 9 failed, nothing after 9 started.
    assert_eq!(stdout(&out), "r1\nr2\nr3\nr4\nr6\nr7\nr8\n");
    let err = stderr(&out);
    assert!(err.contains("halted (--halt): 2 task(s) failed"), "{err}");
    assert!(err.contains("7 done, 2 failed"), "{err}");
}

#[test]
fn the_summary_lists_the_failed_tasks() {
    let sb = Sandbox::new();
    sb.write("worker.sh", "while read -r l; do [ \"$l\" = 2 ] && exit 3; echo \"$l\"; done\n");
    let out = sb.run(&["run", "--persistent", "--summary", "sh", "worker.sh", ":::", "1", "2", "3"], b"");
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("muster: task 2 (2): exited with status 3"), "{err}");
    assert!(err.lines().any(|l| l == "muster: failed: task 2 (2): exited with status 3"), "{err}");
}

#[test]
fn results_written_to_a_full_device_are_not_done_and_a_resume_reruns_them() {
    let sb = Sandbox::new();
    let args = ["run", "--persistent", "-j", "1", "--joblog", "log", "cat", ":::", "a", "b"];
    let (_, outcomes) = run_into_a_full_device(&sb, &args);
    // Buffered replies are recorded only once they reach stdout: none is done; what was not
    // sent before the failure stopped the run has no record at all.
    assert!(!outcomes.iter().any(|o| o == "done"), "{outcomes:?}");
    assert!(outcomes.iter().any(|o| o == "lost"), "{outcomes:?}");
    let resumed = sb.run(
        &["run", "--persistent", "-j", "1", "--joblog", "log", "--resume", "-k", "cat", ":::", "a", "b"],
        b"",
    );
    assert_code(&resumed, 0);
    assert_eq!(stdout(&resumed), "a\nb\n");
}

#[test]
fn an_input_holding_the_separator_fails_alone_and_says_why() {
    let sb = Sandbox::new();
    let out = sb.run(&["run", "--persistent", "-j", "1", "-k", "cat", ":::", "a", "b\nc", "d"], b"");
    assert_code(&out, 1);
    assert_eq!(stdout(&out), "a\nd\n", "no reply is misattributed");
    assert!(
        stderr(&out).contains("task 2 (b\\nc)") && stderr(&out).contains("record separator"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn many_workers_are_fed_and_read_by_two_threads_per_cpu() {
    let sb = Sandbox::new();
    let worker = "echo started >&2; while read -r x; do sleep 0.05; echo \"$x\"; done";
    // More workers than CPUs, so they are fed by a loop per CPU and their replies read by a
    // thread per CPU.
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let workers = (2 * cpus).max(40);
    let jobs = workers.to_string();
    let inputs: Vec<String> = (1..=10 * workers).map(|i| i.to_string()).collect();
    let mut args = vec!["run", "--persistent", "-j", &jobs, "sh", "-c", worker, ":::"];
    args.extend(inputs.iter().map(String::as_str));
    let run = sb.spawn(&args);
    let pid = run.id();
    let children = || -> usize {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten();
        tasks
            .map(|t| {
                std::fs::read_to_string(t.path().join("children"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .count()
            })
            .sum()
    };
    // The workers and the watchdog.
    assert!(wait_for(Duration::from_secs(10), || children() > workers), "workers started: {}", children());
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(0);
    // Two per CPU (feeding loops and pipe readers), whatever the number of workers: with a
    // thread per worker this fails.
    assert!(threads <= 2 * cpus + 10, "{threads} threads for {workers} workers on {cpus} CPUs");
    let _ =
        rustix::process::kill_process(rustix::process::Pid::from_raw(pid as i32).expect("pid"), Signal::TERM);
    let out = run.wait_with_output().expect("run ends");
    assert_eq!(stderr(&out).matches("started").count(), workers, "every worker's stderr came through");
}

#[test]
fn a_worker_that_dies_is_named_with_its_signal_and_what_became_of_its_tasks() {
    let sb = Sandbox::new();
    let script = r#"while IFS= read -r l; do if [ "$l" = 3 ] && [ ! -e died ]; then touch died; kill -9 $$; fi; echo "r$l"; done"#;
    let out = sb.run(
        &[
            "run",
            "--persistent",
            "-k",
            "-j",
            "1",
            "--retries",
            "1",
            "sh",
            "-c",
            script,
            ":::",
            "1",
            "2",
            "3",
            "4",
        ],
        b"",
    );
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "r1\nr2\nr3\nr4\n");
    let err = stderr(&out);
    assert!(err.contains("muster: worker 1 (pid ") && err.contains(") was killed by signal 9"), "{err}");
}

#[test]
fn a_protocol_break_is_named_and_fails_the_exit_status() {
    let sb = Sandbox::new();
    let script = r#"while IFS= read -r l; do if [ "$l" = 2 ]; then printf 'r%s\nextra\n' "$l"; else echo "r$l"; fi; done"#;
    let out = sb.run(
        &["run", "--persistent", "-k", "-j", "1", "--window", "1", "sh", "-c", script, ":::", "1", "2", "3"],
        b"",
    );
    assert_eq!(stdout(&out), "r1\nr2\nr3\n", "every task answered once");
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("sent a reply with no task waiting for it"), "{err}");
}

#[test]
fn a_worker_that_answers_nothing_is_named_and_asked_whether_it_flushes() {
    let sb = Sandbox::new();
    // Reads its task and never answers: as a worker whose replies sit in an unflushed buffer.
    let out = sb.run(
        &[
            "run",
            "--persistent",
            "-j",
            "1",
            "--timeout",
            "1",
            "sh",
            "-c",
            "while IFS= read -r l; do :; done",
            ":::",
            "a",
        ],
        b"",
    );
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("muster: worker 1 (pid ") && err.contains("has answered nothing for"), "{err}");
    assert!(err.contains("flush"), "{err}");
    assert!(err.contains("timed out after 1s"), "{err}");
}

/// muster's bookkeeping threads step aside for the work (SCHED_BATCH); a process inherits its
/// parent thread's policy, so this fails if a thread that starts workers or tasks ever does.
#[test]
fn workers_and_tasks_run_under_the_default_scheduling_policy() {
    // Field 41 of /proc/PID/stat is the policy: 0 is SCHED_OTHER, 3 SCHED_BATCH.
    let policy = r#"cut -d" " -f41 /proc/$$/stat"#;
    let worker = format!(r#"while IFS= read -r l; do echo "$l $({policy})"; done"#);
    let sb = Sandbox::new();
    let input: String = (1..=20).map(|i| format!("{i}\n")).collect();
    let out = sb.run(&["run", "--persistent", "-k", "-j", "2", "sh", "-c", &worker], input.as_bytes());
    assert_code(&out, 0);
    let expected: String = (1..=20).map(|i| format!("{i} 0\n")).collect();
    assert_eq!(stdout(&out), expected, "{}", stderr(&out));

    let out = sb.run(&["run", "-k", "-j", "2", "sh", "-c", policy, ":::", "1", "2", "3", "4"], b"");
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "0\n0\n0\n0\n", "{}", stderr(&out));
}
