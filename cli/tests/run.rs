//! `muster run` end to end: inputs, replacement strings, output modes, failures, exit codes,
//! the joblog and resume, signals, and process hygiene. Each test runs the real binary in its
//! own temp dir.

mod util;

use std::time::Duration;

use rustix::process::Signal;
use util::*;

#[test]
fn groups_combine_as_a_cartesian_product() {
    let sb = Sandbox::new();
    let out = sb.run(&["run", "-k", "echo", "{1}{2}", ":::", "a", "b", ":::", "1", "2"], b"");
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "a1\na2\nb1\nb2\n");
}

#[test]
fn stdin_lines_become_appended_arguments() {
    let sb = Sandbox::new();
    let out = sb.run(&["run", "-k", "-j", "3", "echo", "got"], b"x\ny y\n\nz");
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "got x\ngot y y\ngot \ngot z\n", "empty record and unterminated last line");
}

#[test]
fn null_separated_records_keep_newlines() {
    let sb = Sandbox::new();
    let out = sb.run(&["run", "-k", "-0", "printf", "[%s]"], b"a\nb\0c\0");
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "[a\nb][c]");
}

#[test]
fn arg_files_are_sources_and_unreadable_ones_are_usage_errors() {
    let sb = Sandbox::new();
    sb.write("in.txt", "one\ntwo\n");
    let out = sb.run(&["run", "-k", "-a", "in.txt", "echo"], b"");
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "one\ntwo\n");
    let out = sb.run(&["run", "-a", "missing.txt", "echo"], b"");
    assert_code(&out, 255);
    assert!(stderr(&out).starts_with("muster: cannot read missing.txt"), "{}", stderr(&out));
}

#[test]
fn invalid_utf8_inputs_pass_through_as_bytes() {
    let sb = Sandbox::new();
    let out = sb.run(&["run", "printf", "%s"], b"\xff\xfe\n");
    assert_code(&out, 0);
    assert_eq!(out.stdout, b"\xff\xfe");
}

#[test]
fn a_record_over_a_megabyte_is_read_and_journaled() {
    let sb = Sandbox::new();
    let mut input = vec![b'x'; 2 << 20];
    input.extend_from_slice(b"\nsmall\n");
    let out = sb.run(&["run", "-k", "--joblog", "log", "echo", "task", "{#}"], &input);
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "task 1\ntask 2\n");
    let records = joblog_records(&sb.read("log"));
    assert_eq!(records.len(), 2);
    assert!(records.iter().any(|r| r[12].len() == 2 << 20), "the whole input is in the joblog");
}

#[test]
fn too_long_for_argv_fails_that_task_with_a_clear_message() {
    let sb = Sandbox::new();
    let mut input = vec![b'x'; 2 << 20];
    input.extend_from_slice(b"\nsmall\n");
    let out = sb.run(&["run", "-k", "echo"], &input);
    assert_code(&out, 1);
    assert_eq!(stdout(&out), "small\n");
    assert!(stderr(&out).contains("task 1 (xxxxxxxx"), "{}", stderr(&out));
    assert!(stderr(&out).contains("…): cannot run 'echo': Argument list too long"), "{}", stderr(&out));
}

#[test]
fn every_replacement_string() {
    let sb = Sandbox::new();
    let out = sb.run(
        &["run", "-j", "1", "echo", "{}", "{.}", "{/}", "{//}", "{/.}", "{#}", "{%}", ":::", "d/f.tar.gz"],
        b"",
    );
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "d/f.tar.gz d/f.tar f.tar.gz d f.tar 1 1\n");
}

#[test]
fn no_shell_by_default() {
    let sb = Sandbox::new();
    let out = sb.run(&["run", "echo"], b"$(touch pwned); `touch pwned2` > x\n");
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "$(touch pwned); `touch pwned2` > x\n");
    assert!(!sb.path("pwned").exists() && !sb.path("x").exists());
}

#[test]
fn shell_mode_quotes_every_input() {
    let sb = Sandbox::new();
    let out = sb.run(&["run", "--shell", "echo {} > out.txt"], b"it's; touch pwned\n");
    assert_code(&out, 0);
    assert_eq!(sb.read("out.txt"), "it's; touch pwned\n");
    assert!(!sb.path("pwned").exists());
}

#[test]
fn dry_run_prints_and_runs_nothing() {
    let sb = Sandbox::new();
    let out = sb.run(&["run", "--dry-run", "touch", "{.}.done", ":::", "a.txt", "b c.txt"], b"");
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "touch a.done\ntouch 'b c.done'\n");
    assert!(!sb.path("a.done").exists());
}

#[test]
fn grouped_output_is_never_interleaved() {
    let sb = Sandbox::new();
    // Each task prints 300 lines in bursts while the other runs.
    let script = "for i in $(seq 300); do echo {}-$i; [ $((i % 50)) = 0 ] && sleep 0.01; done";
    let out = sb.run(&["run", "-j", "4", "--shell", script, ":::", "a", "b", "c", "d"], b"");
    assert_code(&out, 0);
    let lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 1200);
    for block in lines.chunks(300) {
        let task = &block[0][..1];
        let expected: Vec<String> = (1..=300).map(|i| format!("{task}-{i}")).collect();
        assert_eq!(block, expected.as_slice(), "task {task}'s output is whole and in one piece");
    }
}

#[test]
fn keep_order_prints_in_input_order() {
    let sb = Sandbox::new();
    let out =
        sb.run(&["run", "-k", "-j", "4", "--shell", "sleep 0.{}; echo {}", ":::", "3", "2", "1", "0"], b"");
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "3\n2\n1\n0\n");
}

#[test]
fn line_buffer_passes_whole_tagged_lines_as_they_come() {
    let sb = Sandbox::new();
    let out = sb.run(
        &[
            "run",
            "--line-buffer",
            "--tag",
            "-j",
            "2",
            "--shell",
            "echo start; sleep 0.{}; printf end",
            ":::",
            "3",
            "1",
        ],
        b"",
    );
    assert_code(&out, 0);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[..2].iter().all(|l| l.ends_with("\tstart")), "starts come first: {text}");
    assert_eq!(lines[2], "1\tend", "the quick task ends first, its unterminated line completed");
    assert_eq!(lines[3], "3\tend");
}

#[test]
fn exit_status_counts_failures() {
    let sb = Sandbox::new();
    let out = sb.run(&["run", "sh", "-c", "exit $0", ":::", "0", "1", "2", "0", "3"], b"");
    assert_code(&out, 3);
    let many: String = (0..102).map(|_| "1\n").collect();
    let out = sb.run(&["run", "-j", "8", "sh", "-c", "exit $0"], many.as_bytes());
    assert_code(&out, 101);
}

#[test]
fn bad_input_gets_one_line_and_a_distinct_code() {
    let sb = Sandbox::new();
    sb.write("notes.txt", "precious\n");
    sb.write("noexec", "#!/bin/sh\n");
    let cases: &[(&[&str], i32, &str)] = &[
        (&["run", "--frobnicate", "echo"], 255, "unexpected argument '--frobnicate'"),
        (&["run"], 255, "required arguments were not provided"),
        (&["run", "no-such-command-xyz", ":::", "a"], 127, "muster: command not found: no-such-command-xyz"),
        (&["run", "./noexec", ":::", "a"], 126, "muster: not executable: ./noexec"),
        (&["run", "--resume", "echo", ":::", "a"], 255, "--joblog"),
        (&["run", "--line-buffer", "--group", "echo", ":::", "a"], 255, "cannot be used with"),
        (&["run", "--joblog", "notes.txt", "echo", ":::", "a"], 255, "is not a muster joblog"),
        (&["run", "-j", "lots", "echo"], 255, "is not a number of jobs"),
        (&["run", "--timeout", "5 parsecs", "echo"], 255, "unknown unit"),
        (&["run", "echo", "{3}", ":::", "a"], 255, "refers to input source 3"),
    ];
    for (args, code, message) in cases {
        let out = sb.run(args, b"");
        assert_code(&out, *code);
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{args:?} ran something");
    }
    assert_eq!(sb.read("notes.txt"), "precious\n", "a file that is not a joblog is never overwritten");
}

#[test]
fn retries_rerun_a_failing_task_and_journal_each_attempt() {
    let sb = Sandbox::new();
    let out = sb.run(
        &[
            "run",
            "--retries",
            "2",
            "--joblog",
            "log",
            "sh",
            "-c",
            "echo try $MUSTER_ATTEMPT; test $MUSTER_ATTEMPT -ge 2",
            ":::",
            "x",
        ],
        b"",
    );
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "try 2\n", "only the final attempt's output is printed");
    let outcomes: Vec<String> = joblog_records(&sb.read("log")).iter().map(|r| r[9].clone()).collect();
    assert_eq!(outcomes, ["retry", "done"]);
}

#[test]
fn timeout_stops_the_whole_process_group() {
    let sb = Sandbox::new();
    let out = sb.run(
        &[
            "run",
            "--timeout",
            "300ms",
            "--grace",
            "100ms",
            "--summary",
            "--shell",
            ": {}; sleep 60 & echo $! > bg.pid; wait",
            ":::",
            "x",
        ],
        b"",
    );
    assert_code(&out, 1);
    assert!(stderr(&out).contains("0 done, 0 failed, 1 timed out"), "{}", stderr(&out));
    assert_gone(&pids_in(&sb.read("bg.pid")));
}

#[test]
fn halt_now_stops_at_the_first_failure() {
    let sb = Sandbox::new();
    // The first task fails at once; the others would succeed after 5 s if left to run.
    let script = "if [ $0 = fail ]; then exit 1; fi; sleep 5";
    let out = sb.run(
        &[
            "run",
            "-j",
            "1",
            "--halt",
            "now,fail=1",
            "--summary",
            "sh",
            "-c",
            script,
            ":::",
            "fail",
            "a",
            "b",
            "c",
        ],
        b"",
    );
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("0 done, 1 failed"),
        "nothing ran to completion after the failure: {}",
        stderr(&out)
    );
}

#[test]
fn halt_soon_lets_running_tasks_finish() {
    let sb = Sandbox::new();
    let script = "if [ $0 = fail ]; then sleep 0.2; exit 1; fi; sleep 0.5";
    let out = sb.run(
        &[
            "run",
            "-j",
            "2",
            "--halt",
            "soon,fail=1",
            "--summary",
            "sh",
            "-c",
            script,
            ":::",
            "fail",
            "a",
            "b",
            "c",
        ],
        b"",
    );
    assert_code(&out, 1);
    assert!(stderr(&out).contains("1 done, 1 failed, 2 not run"), "{}", stderr(&out));
}

#[test]
fn summary_reports_counts_and_speedup() {
    let sb = Sandbox::new();
    let out = sb.run(&["run", "--summary", "-j", "2", "true", ":::", "1", "2", "3"], b"");
    assert_code(&out, 0);
    let err = stderr(&out);
    assert!(err.starts_with("muster: 3 tasks: 3 done, 0 failed; wall "), "{err}");
    assert!(err.contains("speedup") && err.contains("on 2 jobs"), "{err}");
}

#[test]
fn tasks_keep_the_program_name_they_were_given_as_argv0() {
    let sb = Sandbox::new();
    let out = sb.run(&["run", "sh", "-c", "tr '\\000' ' ' < /proc/$$/cmdline", ":::", "x"], b"");
    assert_code(&out, 0);
    assert!(stdout(&out).starts_with("sh -c "), "{}", stdout(&out));
}

#[test]
fn tasks_see_their_slot_sequence_and_attempt() {
    let sb = Sandbox::new();
    let out = sb.run(
        &["run", "-j", "1", "sh", "-c", "echo $MUSTER_TASK $MUSTER_ATTEMPT $MUSTER_WORKER", ":::", "a"],
        b"",
    );
    assert_eq!(stdout(&out), "1 1 1\n");
}

#[test]
fn resume_skips_what_is_done_by_input_not_position() {
    let sb = Sandbox::new();
    let out = sb.run(&["run", "--joblog", "log", "echo"], b"a\nb\n");
    assert_code(&out, 0);
    // Reordered and extended input: only the new inputs run, duplicates count as new tasks.
    let out = sb.run(&["run", "-k", "--joblog", "log", "--resume", "echo"], b"c\nb\na\nb\n");
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "c\nb\n");
    let done: Vec<String> = joblog_records(&sb.read("log")).iter().map(|r| r[12].clone()).collect();
    assert_eq!(done.len(), 4);
}

#[test]
fn resume_failed_reruns_failures_and_resume_does_not() {
    let sb = Sandbox::new();
    sb.run(&["run", "--joblog", "log", "sh", "-c", "test -e ok || exit 1"], b"x\n");
    sb.write("ok", "");
    let out = sb.run(
        &["run", "--joblog", "log", "--resume", "--summary", "sh", "-c", "test -e ok || exit 1"],
        b"x\n",
    );
    assert!(stderr(&out).contains("1 skipped"), "{}", stderr(&out));
    let out = sb.run(
        &["run", "--joblog", "log", "--resume-failed", "--summary", "sh", "-c", "test -e ok || exit 1"],
        b"x\n",
    );
    assert_code(&out, 0);
    assert!(stderr(&out).contains("1 done"), "{}", stderr(&out));
}

#[test]
fn resume_with_another_command_is_refused() {
    let sb = Sandbox::new();
    sb.run(&["run", "--joblog", "log", "echo"], b"a\n");
    let out = sb.run(&["run", "--joblog", "log", "--resume", "printf", "%s"], b"a\n");
    assert_code(&out, 255);
    assert!(stderr(&out).contains("was written for the command 'echo', not 'printf %s'"), "{}", stderr(&out));
}

#[test]
fn first_sigint_drains_running_tasks_and_exits_130() {
    let sb = Sandbox::new();
    let inputs: Vec<String> = (1..=20).map(|i| i.to_string()).collect();
    let mut args =
        vec!["run", "-j", "2", "--joblog", "log", "--shell", "echo $$ >> started; sleep 0.3; echo {}", ":::"];
    args.extend(inputs.iter().map(String::as_str));
    let child = sb.spawn(&args);
    assert!(wait_for(Duration::from_secs(10), || pids_in(&sb.read("started")).len() >= 2));
    signal(&child, Signal::INT);
    let out = child.wait_with_output().expect("muster exits");
    assert_code(&out, 130);
    let printed = stdout(&out).lines().count();
    let started = pids_in(&sb.read("started")).len();
    assert_eq!(printed, started, "every task that started finished and printed");
    assert!(started < 20, "nothing new started after the signal");
    let done = joblog_records(&sb.read("log")).iter().filter(|r| r[9] == "done").count();
    assert_eq!(done, started);
}

#[test]
fn a_sigint_ignored_when_muster_starts_stays_ignored() {
    // A non-interactive shell starts a background job with SIGINT ignored, so that a Ctrl-C
    // meant for the foreground does not reach it: muster must not drain on one.
    let sb = Sandbox::new();
    let child = std::process::Command::new("sh")
        .args(["-c", "trap '' INT; exec \"$0\" \"$@\"", env!("CARGO_BIN_EXE_muster")])
        .args(["run", "-j", "1", "--shell", "echo {} >> started; sleep 0.3; echo {}", ":::", "a", "b"])
        .current_dir(sb.dir())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sh starts");
    assert!(wait_for(Duration::from_secs(10), || sb.read("started") == "a\n"), "a started");
    signal(&child, Signal::INT);
    let out = child.wait_with_output().expect("muster exits");
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "a\nb\n", "b still ran: {}", stderr(&out));
}

#[test]
fn second_signal_stops_now_and_leaves_nothing() {
    let sb = Sandbox::new();
    let mut child = sb.spawn(&[
        "run",
        "-j",
        "3",
        "--grace",
        "30s",
        "--shell",
        ": {}; echo $$ >> started; sleep 60",
        ":::",
        "a",
        "b",
        "c",
    ]);
    assert!(wait_for(Duration::from_secs(10), || pids_in(&sb.read("started")).len() == 3));
    signal(&child, Signal::TERM);
    // Signals do not queue: wait until the first was handled before sending the second.
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("piped stderr"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).expect("read stderr");
    assert!(line.starts_with("muster: stopping: starting no new tasks; running ones get 30s"), "{line}");
    signal(&child, Signal::TERM);
    // Without the second signal this would wait out the 30 s grace.
    let status = child.wait().expect("muster exits");
    assert_eq!(status.code(), Some(143));
    assert_gone(&pids_in(&sb.read("started")));
}

#[test]
fn kill_9_of_muster_leaves_no_task_running() {
    let sb = Sandbox::new();
    let mut child = sb.spawn(&[
        "run",
        "-j",
        "3",
        "--shell",
        ": {}; sleep 60 & echo $! >> started; echo $$ >> started; wait",
        ":::",
        "a",
        "b",
        "c",
    ]);
    assert!(wait_for(Duration::from_secs(10), || pids_in(&sb.read("started")).len() == 6));
    signal(&child, Signal::KILL);
    child.wait().expect("reaped");
    assert_gone(&pids_in(&sb.read("started")));
}

#[test]
fn kill_9_at_many_moments_then_resume_records_each_task_done_exactly_once() {
    let sb = Sandbox::new();
    let inputs: String = (1..=40).map(|i| format!("{i}\n")).collect();
    sb.write("inputs", &inputs);
    let args =
        ["run", "-j", "4", "-a", "inputs", "--joblog", "log", "--resume", "--shell", "sleep 0.02; echo {}"];
    kill_9_after(&sb, &args, &[0, 30, 60, 90, 120, 150, 200, 250]);
    let out = sb.run(&args, b"");
    assert_code(&out, 0);
    let done = done_inputs(&sb.read("log"));
    assert_eq!(done, (1..=40).collect::<Vec<_>>(), "every input has exactly one success record");
}

#[test]
fn broken_stdout_exits_quietly() {
    let sb = Sandbox::new();
    let mut child = sb
        // Bounded output (2 MB per task), so a bug cannot fill the disk.
        .muster(&["run", "-j", "2", "--shell", "yes {} | head -n 1000000"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    {
        use std::io::{Read, Write};
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"a\nb\nc\n").expect("write");
        drop(stdin);
        let mut stdout = child.stdout.take().expect("stdout");
        let mut first = [0u8; 16];
        let _ = stdout.read(&mut first);
        drop(stdout);
    }
    let out = child.wait_with_output().expect("exits");
    assert_code(&out, 141);
    assert!(stderr(&out).is_empty(), "quietly: {}", stderr(&out));
}

#[test]
fn totals_after_a_halt_count_every_input_not_run() {
    let sb = Sandbox::new();
    let inputs: Vec<String> = (1..=20).map(|i| i.to_string()).collect();
    let mut args = vec!["run", "--summary", "--halt", "now,fail=1", "-j", "1", "sh", "-c", "exit 1", ":::"];
    args.extend(inputs.iter().map(String::as_str));
    let out = sb.run(&args, b"");
    assert_code(&out, 1);
    let err = stderr(&out);
    // Inputs given on the command line are known: the ones never read are counted.
    assert!(err.contains("muster: 20 tasks: 0 done, 1 failed, 19 not run;"), "{err}");
    assert!(err.contains("halted (--halt): 1 task(s) failed; 19 not started"), "{err}");
    // From a stream, how many were left is not known: the totals say so.
    let lines: String = inputs.iter().map(|i| format!("{i}\n")).collect();
    let out = sb.run(
        &["run", "--summary", "--halt", "now,fail=1", "-j", "1", "sh", "-c", "exit 1"],
        lines.as_bytes(),
    );
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("muster: at least ") && err.contains("not started"), "{err}");
    assert!(err.contains("halted (--halt): 1 task(s) failed; at least "), "{err}");
}

#[test]
fn the_progress_bar_clock_ticks_while_tasks_run_and_no_eta_shows_before_one_ends() {
    // A terminal is needed for the bar: `script` (util-linux) gives the run one.
    let sb = Sandbox::new();
    let command = format!("{} run --progress -j1 sleep ::: 2", env!("CARGO_BIN_EXE_muster"));
    let Some(screen) = on_a_terminal(&sb, &command) else {
        println!(
            "skipped: `script` (util-linux) is not installed, so there is no terminal to draw the bar on"
        );
        return;
    };
    let frames: Vec<&str> = screen.split(['\r', '\n']).filter(|frame| frame.contains(" done")).collect();
    // The only task runs 2 s: the clock must move while it runs, not only when it ends.
    assert!(frames.iter().any(|f| f.contains("00:00:01") && f.contains("0/1 done")), "{frames:#?}");
    assert!(frames.iter().filter(|f| f.contains("0/1 done")).all(|f| !f.contains("ETA")), "{frames:#?}");
}

#[test]
fn a_shell_line_as_the_command_stops_before_any_task_and_points_to_shell() {
    let sb = Sandbox::new();
    // GNU parallel composes a shell line; muster runs words, so this is no program.
    let out = sb.run(&["run", "echo {} | tr a-z A-Z", ":::", "a", "b"], b"");
    assert_code(&out, 127);
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert!(err.contains("'echo {} | tr a-z A-Z'") && err.contains("--shell"), "{err}");
    assert!(!err.contains("task 1"), "no task was started: {err}");
    let out = sb.run(&["run", "--shell", "-k", "echo {} | tr a-z A-Z", ":::", "a", "b"], b"");
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "A\nB\n");
}

#[test]
fn reading_inputs_from_a_terminal_is_said_once_and_from_a_pipe_not() {
    let sb = Sandbox::new();
    let out = sb.run(&["run", "echo"], b"a\n");
    assert!(!stderr(&out).contains("from the terminal"), "{}", stderr(&out));
    // On a terminal with no input given, a run would wait on a blank screen.
    let command = format!("{} run echo", env!("CARGO_BIN_EXE_muster"));
    let Some(screen) = on_a_terminal(&sb, &command) else {
        println!("skipped: `script` (util-linux) is not installed, so there is no terminal to read from");
        return;
    };
    assert_eq!(screen.matches("muster: reading inputs from the terminal").count(), 1, "{screen}");
}

/// `command` on a terminal of its own (`script`, util-linux), its screen as text; `None` when
/// `script` is missing. Killed, group and all, after 20 s: a test never hangs on it.
fn on_a_terminal(sb: &Sandbox, command: &str) -> Option<String> {
    use std::os::unix::process::CommandExt;
    if std::process::Command::new("script").arg("--version").output().is_err() {
        return None;
    }
    let mut child = std::process::Command::new("script")
        .args(["-q", "-e", "-c", command, "/dev/null"])
        .current_dir(sb.dir())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .expect("script starts");
    let pid = child.id();
    let ended = wait_for(Duration::from_secs(20), || child.try_wait().ok().flatten().is_some());
    if !ended {
        let group = rustix::process::Pid::from_raw(pid as i32).expect("pid");
        let _ = rustix::process::kill_process_group(group, Signal::KILL);
    }
    let out = child.wait_with_output().expect("script ends");
    assert!(ended, "the command did not end on its terminal within 20 s");
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn bad_input_is_named_in_the_users_words() {
    let sb = Sandbox::new();
    // A NUL byte without -0: say what to do, not the OS's "nul byte found in provided data".
    let out = sb.run(&["run", "echo"], b"a\0b\n");
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("task 1 (a\\0b)") && err.contains("NUL byte") && err.contains("-0"), "{err}");
    assert!(!err.contains("nul byte found in provided data"), "{err}");
    // A directory as an input file: named before anything runs.
    std::fs::create_dir(sb.path("adir")).expect("mkdir");
    let out = sb.run(&["run", "-a", "adir", "echo"], b"");
    assert_code(&out, 255);
    assert!(stderr(&out).contains("cannot read adir: it is a directory"), "{}", stderr(&out));
    // A negative duration: not an "unknown unit".
    let out = sb.run(&["run", "--timeout=-1", "echo", ":::", "a"], b"");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot be negative"), "{}", stderr(&out));
}
