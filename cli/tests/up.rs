//! `muster up`, `muster stop`, `muster status` driven as a user would: supervised workers,
//! merged output, restarts with backoff, control over the socket, and nothing left behind.

mod util;

use std::io::{BufRead, BufReader, Read};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::process::Signal;
use util::*;

/// A `muster up` running in the background, its output collected line by line.
struct Up {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

fn collect(pipe: impl Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            into.lock().expect("lock").push(line);
        }
    })
}

impl Up {
    fn start(sandbox: &Sandbox, args: &[&str]) -> Up {
        let mut full = vec!["up"];
        full.extend_from_slice(args);
        let mut child = sandbox.spawn(&full);
        let (stdout, stderr) = (Arc::default(), Arc::default());
        let readers = vec![
            collect(child.stdout.take().expect("piped"), Arc::clone(&stdout)),
            collect(child.stderr.take().expect("piped"), Arc::clone(&stderr)),
        ];
        Up { child, stdout, stderr, readers }
    }

    fn stderr(&self) -> Vec<String> {
        self.stderr.lock().expect("lock").clone()
    }

    fn stdout(&self) -> Vec<String> {
        self.stdout.lock().expect("lock").clone()
    }

    /// Waits (up to 10 s) until a stderr line satisfies `wanted`.
    fn wait_stderr(&self, what: &str, wanted: impl Fn(&str) -> bool) {
        let seen = wait_for(Duration::from_secs(10), || self.stderr().iter().any(|l| wanted(l)));
        assert!(seen, "waiting for {what}; stderr:\n{}", self.stderr().join("\n"));
    }

    /// The pids announced in "wN started (pid P)" / "restarted (pid P" lines.
    fn pids(&self) -> Vec<u32> {
        self.stderr()
            .iter()
            .filter_map(|l| l.split("(pid ").nth(1))
            .filter_map(|rest| rest.split([')', ',']).next()?.parse().ok())
            .collect()
    }

    /// Waits for muster to exit; returns its exit code and joins the readers.
    fn finish(mut self) -> (Option<i32>, Vec<String>, Vec<String>) {
        let status = self.child.wait().expect("wait");
        for reader in self.readers.drain(..) {
            reader.join().expect("reader");
        }
        (status.code(), self.stdout(), self.stderr())
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        // A failed assertion must not leave a supervisor running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_started(up: &Up, workers: usize) {
    let all = wait_for(Duration::from_secs(10), || {
        up.stderr().iter().filter(|l| l.contains(" started (pid ")).count() == workers
    });
    assert!(all, "{} workers never started:\n{}", workers, up.stderr().join("\n"));
}

const FOREVER: &str = "echo hello from $MUSTER_WORKER; exec sleep 1000";

#[test]
fn stop_from_another_terminal_stops_every_worker_and_reports_them() {
    let sandbox = Sandbox::new();
    let up = Up::start(&sandbox, &["-n", "3", "--", "sh", "-c", FOREVER]);
    wait_started(&up, 3);
    let pids = up.pids();

    let status = sandbox.run(&["status"], b"");
    assert_code(&status, 0);
    let table = stdout(&status);
    let rows: Vec<Vec<&str>> = table.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 3, "{table}");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[0], (i + 1).to_string(), "{table}");
        assert_eq!(row[1], "running", "{table}");
        assert!(pids.contains(&row[2].parse().expect("pid")), "{table}");
        assert_eq!(row[4], "0", "{table}");
    }

    // The same for scripts: a JSON array (checked by Python's own parser).
    let json = stdout(&sandbox.run(&["status", "--json"], b""));
    let check = "import json, sys; rows = json.load(sys.stdin); \
                 print(len(rows), all(r['state'] == 'running' and r['pid'] and r['exit_code'] is None for r in rows))";
    let parsed = std::process::Command::new("python3")
        .args(["-c", check])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut python| {
            std::io::Write::write_all(&mut python.stdin.take().expect("stdin"), json.as_bytes())?;
            python.wait_with_output()
        })
        .expect("python3 runs");
    assert_eq!(String::from_utf8_lossy(&parsed.stdout), "3 True\n", "{json}");

    let stop = sandbox.run(&["stop"], b"");
    assert_code(&stop, 0);
    let answer = stdout(&stop);
    assert!(answer.starts_with("stopping 3 workers"), "{answer}");
    assert_eq!(answer.matches("stopped").count(), 3, "{answer}");
    // `stop` answered only after every worker was reaped.
    assert_gone(&pids);

    let (code, out, err) = up.finish();
    assert_eq!(code, Some(0), "{err:#?}");
    let mut hellos = out.clone();
    hellos.sort();
    assert_eq!(hellos, ["w1 | hello from 1", "w2 | hello from 2", "w3 | hello from 3"], "{out:#?}");
    assert!(err.iter().any(|l| l == "muster: all 3 workers reaped"), "{err:#?}");
    // The socket is gone with it.
    assert_code(&sandbox.run(&["status"], b""), 1);
}

#[test]
fn stop_and_status_say_when_nothing_is_running() {
    let sandbox = Sandbox::new();
    for request in ["stop", "status"] {
        let output = sandbox.run(&[request], b"");
        assert_code(&output, 1);
        assert!(stderr(&output).contains("no `muster up` named 'default' is running"), "{}", stderr(&output));
    }
    let bad = sandbox.run(&["status", "--name", "../etc"], b"");
    assert_code(&bad, 255);
    assert!(stderr(&bad).contains("not a usable name"), "{}", stderr(&bad));
}

#[test]
fn a_second_up_with_the_same_name_is_refused_and_another_name_works() {
    let sandbox = Sandbox::new();
    let first = Up::start(&sandbox, &["-n", "1", "--", "sleep", "1000"]);
    wait_started(&first, 1);

    let second = sandbox.run(&["up", "-n", "1", "--", "sleep", "1000"], b"");
    assert_code(&second, 255);
    let why = stderr(&second);
    assert!(why.contains("already running as pid"), "{why}");
    assert!(why.contains(&first.child.id().to_string()), "{why}");

    let other = Up::start(&sandbox, &["--name", "other", "-n", "1", "--", "sleep", "1000"]);
    wait_started(&other, 1);
    assert_code(&sandbox.run(&["stop", "--name", "other"], b""), 0);
    assert_eq!(other.finish().0, Some(0));
    // The refused one touched nothing: the first still answers.
    assert_code(&sandbox.run(&["status"], b""), 0);
    assert_code(&sandbox.run(&["stop"], b""), 0);
    assert_eq!(first.finish().0, Some(0));
}

#[test]
fn sigterm_and_sigint_stop_every_worker() {
    for (sig, code) in [(Signal::TERM, 143), (Signal::INT, 130)] {
        let sandbox = Sandbox::new();
        let up = Up::start(&sandbox, &["-n", "2", "--", "sh", "-c", FOREVER]);
        wait_started(&up, 2);
        let pids = up.pids();
        signal(&up.child, sig);
        let (exit, _, err) = up.finish();
        assert_eq!(exit, Some(code), "{err:#?}");
        assert_eq!(err.iter().filter(|l| l.contains(") stopped: signal 15")).count(), 2, "{err:#?}");
        assert_gone(&pids);
    }
}

#[test]
fn stubborn_workers_are_killed_after_the_grace_and_a_second_signal_kills_at_once() {
    let sandbox = Sandbox::new();
    let script = "trap '' TERM; echo ready; while :; do sleep 1; done";
    let up = Up::start(&sandbox, &["-n", "2", "--grace", "200ms", "--", "sh", "-c", script]);
    let ready = wait_for(Duration::from_secs(10), || up.stdout().len() == 2);
    assert!(ready, "{:#?}", up.stderr());
    let pids = up.pids();
    signal(&up.child, Signal::TERM);
    let (code, _, err) = up.finish();
    assert_eq!(code, Some(143));
    assert_eq!(err.iter().filter(|l| l.contains("killed after the grace period")).count(), 2, "{err:#?}");
    assert_gone(&pids);

    // With an hour of grace, the second signal is what ends it.
    let up = Up::start(&sandbox, &["-n", "1", "--grace", "1h", "--", "sh", "-c", script]);
    assert!(wait_for(Duration::from_secs(10), || up.stdout().len() == 1), "{:#?}", up.stderr());
    signal(&up.child, Signal::INT);
    up.wait_stderr("the stop notice", |l| l.starts_with("muster: stopping (signal)"));
    signal(&up.child, Signal::INT);
    let (code, _, err) = up.finish();
    assert_eq!(code, Some(130));
    assert!(err.iter().any(|l| l.contains("killed after the grace period")), "{err:#?}");
}

#[test]
fn a_crashing_worker_backs_off_and_is_given_up_while_the_others_run() {
    let sandbox = Sandbox::new();
    let script = "if [ $MUSTER_WORKER = 2 ]; then echo bad >&2; exit 3; fi; exec sleep 1000";
    let up = Up::start(
        &sandbox,
        &["-n", "3", "--backoff", "20ms", "--max-restarts", "3", "--", "sh", "-c", script],
    );
    up.wait_stderr("w2 given up", |l| l.starts_with("muster: w2 gave up after 3 restarts"));
    let err = up.stderr();
    let delays: Vec<&str> = err
        .iter()
        .filter_map(|l| l.strip_prefix("muster: w2 restarting in "))
        .filter_map(|rest| rest.split(' ').next())
        .collect();
    assert_eq!(delays, ["20ms", "40ms", "80ms"], "{err:#?}");
    // Its stderr came through, prefixed, once per run.
    assert_eq!(err.iter().filter(|l| *l == "w2 | bad").count(), 4, "{err:#?}");

    let table = stdout(&sandbox.run(&["status"], b""));
    let rows: Vec<Vec<&str>> = table.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0][1], "running", "{table}");
    assert_eq!(rows[1][..2], ["2", "gave"], "{table}");
    assert!(table.lines().nth(2).is_some_and(|l| l.ends_with("3  exit 3")), "{table}");
    assert_eq!(rows[2][1], "running", "{table}");

    assert_code(&sandbox.run(&["stop"], b""), 0);
    let (code, _, _) = up.finish();
    assert_eq!(code, Some(0));
}

#[test]
fn workers_that_end_by_themselves_end_the_run_with_their_verdict() {
    let sandbox = Sandbox::new();
    let clean = sandbox.run(&["up", "-n", "2", "--", "sh", "-c", "echo done $MUSTER_WORKER"], b"");
    assert_code(&clean, 0);
    assert_eq!(stdout(&clean).lines().count(), 2);

    let failed = sandbox.run(&["up", "-n", "2", "--restart", "never", "--", "sh", "-c", "exit 5"], b"");
    assert_code(&failed, 1);
    assert_eq!(stderr(&failed).matches("ended: exit 5").count(), 2, "{}", stderr(&failed));

    let always = sandbox.run(
        &["up", "-n", "1", "--restart", "always", "--backoff", "1ms", "--max-restarts", "2", "--", "true"],
        b"",
    );
    assert_code(&always, 1);
    assert_eq!(stderr(&always).matches("ended: exit 0").count(), 3, "{}", stderr(&always));
}

#[test]
fn merged_output_never_splits_or_mixes_lines() {
    let sandbox = Sandbox::new();
    // Three workers race to write 3,000 long lines each, in several writes per line.
    let script = "awk -v w=$MUSTER_WORKER 'BEGIN { for (i = 0; i < 3000; i++) { printf \"%s-%d-\", w, i; \
                  for (j = 0; j < 20; j++) printf \"xxxxxxxxxx\"; printf \"\\n\"; fflush() } }'";
    let output = sandbox.run(&["up", "-n", "3", "--", "sh", "-c", script], b"");
    assert_code(&output, 0);
    let text = stdout(&output);
    let mut per_worker = [0usize; 3];
    for line in text.lines() {
        let (prefix, rest) = line.split_once(" | ").expect("prefixed");
        let worker: usize = prefix.trim_start_matches('w').parse().expect("worker number");
        let expected_tail = "x".repeat(200);
        let mut parts = rest.splitn(3, '-');
        assert_eq!(parts.next(), Some(worker.to_string().as_str()), "{line}");
        assert_eq!(
            parts.next().and_then(|n| n.parse::<usize>().ok()),
            Some(per_worker[worker - 1]),
            "{line}"
        );
        assert_eq!(parts.next(), Some(expected_tail.as_str()), "{line}");
        per_worker[worker - 1] += 1;
    }
    assert_eq!(per_worker, [3000, 3000, 3000]);
    assert!(!text.contains('\x1b'), "no colour into a pipe");

    let coloured = sandbox.run(&["up", "-n", "1", "--color", "always", "--", "echo", "hi"], b"");
    assert_eq!(stdout(&coloured), "\x1b[36mw1 |\x1b[0m hi\n");
}

#[test]
fn kill_9_of_up_leaves_no_worker_and_the_name_can_be_used_again() {
    let sandbox = Sandbox::new();
    let up = Up::start(&sandbox, &["-n", "2", "--", "sh", "-c", "sleep 1000 & exec sleep 1000"]);
    wait_started(&up, 2);
    let pids = up.pids();
    signal(&up.child, Signal::KILL);
    let (code, _, _) = up.finish();
    assert_eq!(code, None);
    assert_gone(&pids);
    assert_code(&sandbox.run(&["status"], b""), 1);

    let again = Up::start(&sandbox, &["-n", "1", "--", "sleep", "1000"]);
    wait_started(&again, 1);
    assert_code(&sandbox.run(&["stop"], b""), 0);
    assert_eq!(again.finish().0, Some(0));
}

#[test]
fn a_missing_command_is_refused_before_anything_starts() {
    let sandbox = Sandbox::new();
    let output = sandbox.run(&["up", "-n", "2", "--", "no-such-program-xyz"], b"");
    assert_code(&output, 127);
    let spaced = sandbox.run(&["up", "echo hi"], b"");
    assert_code(&spaced, 127);
    assert!(stderr(&spaced).contains("sh -c"), "{}", stderr(&spaced));
    assert_code(&sandbox.run(&["up", "-n", "0", "--", "true"], b""), 255);
}

#[test]
fn a_closed_stdout_stops_every_worker_and_exits_141() {
    let sandbox = Sandbox::new();
    let mut child = sandbox.spawn(&["up", "-n", "2", "--", "yes"]);
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let collector = collect(child.stderr.take().expect("piped"), Arc::clone(&stderr));
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("a line");
    assert!(first.ends_with("| y\n"), "{first:?}");
    // Stop reading: the next write fails, and muster must stop the workers, not run blind.
    drop(stdout);
    let status = child.wait().expect("wait");
    collector.join().expect("collector");
    let err = stderr.lock().expect("lock").clone();
    assert_eq!(status.code(), Some(141), "{err:#?}");
    assert!(err.iter().any(|l| l.contains("stopping (standard output closed)")), "{err:#?}");
    assert_eq!(err.iter().filter(|l| l.contains(") stopped: signal 15")).count(), 2, "{err:#?}");
}

fn ticker() -> String {
    format!("{}/../examples/ticker.py", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_python_ticker_stops_cleanly_and_a_crashing_one_is_given_up() {
    let sandbox = Sandbox::new();
    let ticker = ticker();
    let up = Up::start(&sandbox, &["-n", "2", "--", "python3", &ticker]);
    let ticked = wait_for(Duration::from_secs(20), || up.stdout().len() >= 2);
    assert!(ticked, "{:#?}", up.stderr());
    assert_code(&sandbox.run(&["stop"], b""), 0);
    let (code, out, err) = up.finish();
    assert_eq!(code, Some(0), "{err:#?}");
    for worker in 1..=2 {
        let bye = format!("w{worker} | worker {worker}: asked to stop after ");
        assert!(out.iter().any(|l| l.starts_with(&bye)), "SIGTERM handled cleanly: {out:#?}");
    }

    let crashing = sandbox.run(
        &[
            "up",
            "-n",
            "1",
            "--backoff",
            "10ms",
            "--max-restarts",
            "1",
            "--",
            "python3",
            &ticker,
            "--crash-after",
            "1",
        ],
        b"",
    );
    assert_code(&crashing, 1);
    let err = stderr(&crashing);
    assert_eq!(err.matches("w1 | worker 1: crashing on purpose").count(), 2, "{err}");
    assert!(err.contains("w1 gave up after 1 restarts in a row"), "{err}");
}
