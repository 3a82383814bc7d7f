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
    assert!(stderr(&out).contains("2000 done, 0 failed, 0 not run; wall"), "{}", stderr(&out));
    assert!(stderr(&out).contains("2 workers started, 0 crashed"), "{}", stderr(&out));
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
    assert_code(&out, 2);
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
    assert!(stderr(&out).contains("task 3: exited with status 7, every attempt"), "{}", stderr(&out));
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
