//! The seams between muster's modes, tried as a user would: signals while input blocks, output
//! that cannot be captured or written, a task hit by the Ctrl-C meant for muster, huge -j, a
//! closed stderr, two runs on one joblog, and --keep-order's bound in persistent mode.

mod util;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rustix::process::Signal;
use util::*;

/// Waits up to `limit` for `child` to exit; kills it and fails if it does not.
fn exits_within(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("muster did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_signal_ends_a_run_whose_input_is_blocked() {
    for (mode, signal, code) in [
        (&["run", "echo"][..], Signal::INT, 130),
        (&["run", "echo"][..], Signal::TERM, 143),
        (&["run", "--persistent", "cat"][..], Signal::INT, 130),
    ] {
        let sb = Sandbox::new();
        // stdin stays open and silent, like a terminal nobody types into.
        let mut child = sb.spawn_piped(mode);
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"first\n").expect("write");
        stdin.flush().expect("flush");
        let mut stdout = child.stdout.take().expect("stdout");
        let mut first = [0u8; 6];
        std::io::Read::read_exact(&mut stdout, &mut first).expect("the first input ran");
        util::signal(&child, signal);
        let status = exits_within(&mut child, Duration::from_secs(10));
        assert_eq!(status.code(), Some(code), "{mode:?} {signal:?}");
        drop(stdin);
    }
}

#[test]
fn output_that_cannot_be_captured_is_not_done_and_resume_runs_it_again() {
    let sb = Sandbox::new();
    // Past 1 MB a task's output spills to a temp file; with no usable TMPDIR it cannot.
    let args = ["run", "--joblog", "log", "sh", "-c", "head -c 3000000 /dev/zero; echo"];
    let out = sb.muster(&args).arg(":::").arg("big").env("TMPDIR", sb.path("missing")).output().expect("run");
    assert_code(&out, 1);
    assert!(stderr(&out).contains("task 1") && stderr(&out).contains("output lost"), "{}", stderr(&out));
    let records = joblog_records(&sb.read("log"));
    assert_eq!(records.len(), 1);
    assert_eq!(records[0][9], "lost", "{records:?}");

    let resumed = sb
        .muster(&[
            "run",
            "--joblog",
            "log",
            "--resume",
            "sh",
            "-c",
            "head -c 3000000 /dev/zero; echo",
            ":::",
            "big",
        ])
        .output()
        .expect("resume");
    assert_code(&resumed, 0);
    assert_eq!(resumed.stdout.len(), 3_000_001, "the resume ran it and printed all of it");
    let records = joblog_records(&sb.read("log"));
    assert_eq!(records.iter().map(|r| r[9].as_str()).collect::<Vec<_>>(), ["lost", "done"]);
}

#[test]
fn output_written_to_a_full_device_is_not_done() {
    let sb = Sandbox::new();
    let (_, outcomes) = run_into_a_full_device(&sb, &["run", "--joblog", "log", "echo", ":::", "a", "b"]);
    assert!(!outcomes.iter().any(|o| o == "done"), "{outcomes:?}");
    assert!(outcomes.iter().any(|o| o == "lost"), "{outcomes:?}");
}

#[test]
fn a_task_killed_by_the_signal_meant_for_muster_is_interrupted_not_failed() {
    let sb = Sandbox::new();
    // The first run's task delivers SIGINT to muster and dies of SIGINT itself, as a task does
    // when a terminal's Ctrl-C reaches it an instant after its spawn.
    let script = "if [ -e marker ]; then echo ran; else touch marker; kill -INT $PPID; kill -INT $$; fi";
    let out = sb.muster(&["run", "--joblog", "log", "sh", "-c", script, ":::", "x"]).output().expect("run");
    assert_code(&out, 130);
    let records = joblog_records(&sb.read("log"));
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0][9], "stopped", "{records:?}");

    let resumed = sb
        .muster(&["run", "--joblog", "log", "--resume", "sh", "-c", script, ":::", "x"])
        .output()
        .expect("run");
    assert_code(&resumed, 0);
    assert_eq!(stdout(&resumed), "ran\n", "--resume runs the interrupted task again");
}

#[test]
fn a_huge_job_count_costs_no_thread_per_slot() {
    let sb = Sandbox::new();
    let out = sb.run(&["run", "-k", "-j", "100000", "echo", ":::", "a", "b"], b"");
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "a\nb\n");
    // 300 tasks at once, each on its own slot: each waits until all 300 have started.
    let all_started = "touch started.$MUSTER_WORKER; i=0; \
        while [ $(ls | grep -c '^started') -lt 300 ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done; \
        echo $MUSTER_WORKER";
    let inputs: String = (1..=300).map(|i| format!("{i}\n")).collect();
    let out = sb.run(&["run", "-j", "300", "sh", "-c", all_started], inputs.as_bytes());
    assert_code(&out, 0);
    let mut slots: Vec<u32> = stdout(&out).lines().map(|l| l.parse().expect("slot")).collect();
    slots.sort_unstable();
    assert_eq!(slots, (1..=300).collect::<Vec<_>>(), "300 tasks ran at once, one per slot");
}

/// Waits (40 looks, 20 s unloaded) until `count` tasks have started, so that they run at once.
/// Each look costs every task three processes: 100 looks 0.2 s apart took over 30 s beside
/// two CPU hogs and a parallel test binary.
fn started_together(count: usize) -> String {
    format!(
        "touch started.$MUSTER_TASK; i=0; \
         while [ $(ls | grep -c '^started') -lt {count} ] && [ $i -lt 40 ]; do sleep 0.5; i=$((i+1)); done"
    )
}

#[test]
fn tasks_started_while_many_run_keep_their_stdin_output_and_status() {
    // From 32 running tasks per event loop on, tasks are started from a thread with a small
    // descriptor table of its own and their pipes are passed back: the same contract holds.
    let sb = Sandbox::new();
    let script = format!(
        "{}; read line; echo \"out $line\"; echo \"err $line\" >&2; exit $((line % 2))",
        started_together(200)
    );
    let inputs: String = (1..=200).map(|i| format!("{i}\n")).collect();
    let out = sb.run(&["run", "-j", "200", "--pipe", "--block", "1", "sh", "-c", &script], inputs.as_bytes());
    assert_code(&out, 100);
    let mut lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    lines.sort_unstable_by_key(|line| line[4..].parse::<u32>().unwrap_or(0));
    let expected: Vec<String> = (1..=200).map(|i| format!("out {i}")).collect();
    assert_eq!(lines, expected, "each task read its own chunk and its stdout came through");
    let errors = stderr(&out);
    for i in 1..=200 {
        assert!(errors.contains(&format!("err {i}\n")), "stderr of task {i}: {errors}");
    }
}

#[test]
fn a_stop_reaches_tasks_started_while_many_run() {
    let sb = Sandbox::new();
    let script = format!("{}; echo $$ > pid.$MUSTER_TASK; exec sleep 600", started_together(120));
    let numbers: Vec<String> = (1..=120).map(|i| i.to_string()).collect();
    let mut args = vec!["run", "-j", "120", "sh", "-c", &script, ":::"];
    args.extend(numbers.iter().map(String::as_str));
    let mut run = sb.spawn(&args);
    let mut pids = Vec::new();
    let all_up = wait_for(Duration::from_secs(90), || {
        pids = (1..=120).flat_map(|i| pids_in(&sb.read(&format!("pid.{i}")))).collect();
        pids.len() == 120
    });
    assert!(all_up, "all 120 tasks running ({} seen)", pids.len());
    util::signal(&run, Signal::TERM);
    exits_within(&mut run, Duration::from_secs(20));
    assert_gone(&pids);
}

#[test]
fn out_of_descriptors_tasks_wait_for_room_and_all_run() {
    // 300 descriptors for 300 slots: each running task holds three, so about 100 run at once
    // (past the 64 from which the spawner thread starts them and passes their pipes back) and
    // the kernel refuses the rest (pipes, or descriptors passed back) until others end: they
    // wait and run, none fails.
    let sb = Sandbox::new();
    let muster = env!("CARGO_BIN_EXE_muster");
    let inputs: String = (1..=300).map(|i| format!("{i}\n")).collect();
    let script = format!("ulimit -n 300 && exec {muster} run -j 300 sh -c 'sleep 0.2; echo $0'");
    let mut sh = std::process::Command::new("sh");
    sh.args(["-c", &script]).current_dir(sb.dir());
    let out = feed(sh, inputs.as_bytes());
    assert_code(&out, 0);
    let mut seen: Vec<u32> = stdout(&out).lines().map(|l| l.parse().expect("a number")).collect();
    seen.sort_unstable();
    assert_eq!(seen, (1..=300).collect::<Vec<_>>(), "every task ran once");
}

#[test]
fn a_closed_stderr_is_survived_quietly() {
    let sb = Sandbox::new();
    // stderr is a pipe whose reader is gone: every write to it fails.
    let (reader, writer) = std::os::unix::net::UnixStream::pair().expect("socket pair");
    drop(reader);
    let out = sb
        .muster(&["run", "--summary", "sh", "-c", "echo out; echo err >&2; exit 3", ":::", "a"])
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::os::fd::OwnedFd::from(writer)))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "one failed task, no panic");
    assert_eq!(stdout(&out), "out\n");
}

#[test]
fn a_second_run_on_a_joblog_in_use_is_refused() {
    let sb = Sandbox::new();
    let mut first = sb.spawn(&["run", "--joblog", "log", "sleep", ":::", "30"]);
    assert!(wait_for(Duration::from_secs(10), || sb.read("log").contains("Seq\t")), "first run started");
    let second = sb.run(&["run", "--joblog", "log", "--resume", "echo", ":::", "x"], b"");
    assert_code(&second, 255);
    assert!(stderr(&second).contains("in use by another muster run"), "{}", stderr(&second));
    let fresh = sb.run(&["run", "--joblog", "log", "echo", ":::", "x"], b"");
    assert_code(&fresh, 255);
    util::signal(&first, Signal::KILL);
    let _ = first.wait();
    let after = sb.run(&["run", "--joblog", "log", "echo", ":::", "x"], b"");
    assert_code(&after, 0);
}

#[test]
fn persistent_keep_order_holds_a_bounded_window_behind_a_slow_task() {
    let sb = Sandbox::new();
    // Input 1 waits until the test says go; the rest are answered at once. With --keep-order,
    // the reorder window (1,024 tasks at -j2 --window 1) bounds what is read past it.
    let worker = "import os, sys, time\nfor l in sys.stdin:\n    while l.endswith('x\\n') and not os.path.exists('go'):\n        time.sleep(0.01)\n    sys.stdout.write(l)\n    sys.stdout.flush()\n";
    let mut child =
        sb.spawn_piped(&["run", "--persistent", "-k", "-j", "2", "--window", "1", "python3", "-c", worker]);
    let mut stdin = child.stdin.take().expect("stdin");
    let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = written.clone();
    let total = 3000u64;
    let writer = std::thread::spawn(move || {
        for i in 1..=total {
            // 1,000 bytes a line, so the pipe's own buffer holds few of them.
            let line = if i == 1 { format!("{:0>999}\n", "x") } else { format!("{i:0>999}\n") };
            if stdin.write_all(line.as_bytes()).is_err() {
                break;
            }
            counter.store(i, std::sync::atomic::Ordering::SeqCst);
        }
    });
    // Wait until the writer stalls (muster stopped reading), or writes everything.
    let mut last = (0, Instant::now());
    let stalled = wait_for(Duration::from_secs(30), || {
        let now = written.load(std::sync::atomic::Ordering::SeqCst);
        if now != last.0 {
            last = (now, Instant::now());
        }
        now == total || (now > 0 && last.1.elapsed() > Duration::from_millis(500))
    });
    let read_ahead = written.load(std::sync::atomic::Ordering::SeqCst);
    sb.write("go", "");
    let output = child.wait_with_output().expect("muster finishes");
    writer.join().expect("writer");
    assert!(stalled);
    // The bound: 1,024 credits, plus what sits in the input reader's chunks (256 KiB), the
    // pipe and buffers — about 1,400 lines of 1,000 bytes; never the whole input.
    assert!(read_ahead < 2000, "{read_ahead} inputs read while task 1 was unanswered");
    assert_code(&output, 0);
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as u64, total, "none lost");
    assert!(
        lines[0].ends_with('x')
            && lines[1..].iter().enumerate().all(|(i, l)| l.trim_start_matches('0') == (i + 2).to_string()),
        "in order"
    );
}

#[test]
fn processes_the_os_refuses_wait_for_room_instead_of_failing() {
    let sb = Sandbox::new();
    // A hard limit of 40 open files leaves room for about ten running tasks (three
    // descriptors each); the other spawns are refused (EMFILE) until tasks end.
    let muster = env!("CARGO_BIN_EXE_muster");
    let script = format!("ulimit -n 40 && exec {muster} run -j 30 sh -c 'sleep 0.2' ::: $(seq 30)");
    let out =
        std::process::Command::new("sh").args(["-c", &script]).current_dir(sb.dir()).output().expect("sh");
    assert_code(&out, 0);
    assert!(!stderr(&out).contains("cannot run"), "{}", stderr(&out));
}

#[test]
fn a_second_signal_cuts_short_a_persistent_workers_grace() {
    let sb = Sandbox::new();
    // A worker that answers, then ignores both the quit (EOF) and SIGTERM.
    sb.write(
        "stubborn.sh",
        "echo $$ > pid; trap '' TERM\nwhile read -r l; do echo \"$l\"; done\nwhile :; do sleep 0.1; done\n",
    );
    let mut child =
        sb.spawn(&["run", "--persistent", "-j", "1", "--grace", "60s", "sh", "stubborn.sh", ":::", "a", "b"]);
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("piped stderr"));
    let mut line = String::new();
    for _ in 0..2 {
        line.clear();
        std::io::BufRead::read_line(&mut stdout, &mut line).expect("a reply");
    }
    // Both answered: the worker is now being asked to quit, and ignores it.
    signal(&child, Signal::INT);
    line.clear();
    std::io::BufRead::read_line(&mut stderr, &mut line).expect("the drain notice");
    assert!(line.contains("signal again to stop now"), "{line}");
    let second = Instant::now();
    signal(&child, Signal::INT);
    let status = child.wait().expect("muster exits");
    assert_eq!(status.code(), Some(130));
    assert!(second.elapsed() < Duration::from_secs(30), "stop-now did not wait out the 60 s grace");
    assert_gone(&pids_in(&sb.read("pid")));
}
