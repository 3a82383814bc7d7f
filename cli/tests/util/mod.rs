//! One helper for driving the real `muster` binary: a temp dir per test, stdin from bytes,
//! and polling waits with deadlines instead of guessed sleeps.

#![allow(dead_code)]

#[path = "../../../tests/support/poll.rs"]
mod poll;
pub use poll::wait_for;
#[path = "../../../tests/support/sigint.rs"]
mod sigint;
pub use sigint::with_default_sigint;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// A test's sandbox: a temp dir that is the working directory of every muster it runs.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).expect("write file");
        path
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// `muster ARGS` in the sandbox.
    pub fn muster(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_muster"));
        // `muster up` keeps its control socket here: tests never meet each other's.
        command.args(args).current_dir(self.dir()).env("XDG_RUNTIME_DIR", self.dir());
        with_default_sigint(&mut command);
        command
    }

    /// Runs muster with `stdin` bytes to completion.
    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        feed(self.muster(args), stdin)
    }

    /// Starts muster in the background with stdin, stdout and stderr piped.
    pub fn spawn_piped(&self, args: &[&str]) -> Child {
        self.muster(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("muster starts")
    }

    /// Starts muster in the background (stdin closed, output piped).
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.muster(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("muster starts")
    }
}

/// Runs muster with its stdout on /dev/full: it must fail on that (exit 1 or 2, "No space
/// left on device" said); returns its output and the joblog `log`'s outcomes.
pub fn run_into_a_full_device(sb: &Sandbox, args: &[&str]) -> (Output, Vec<String>) {
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    let out = sb.muster(args).stdout(Stdio::from(full)).stderr(Stdio::piped()).output().expect("muster runs");
    assert!(out.status.code().is_some_and(|c| (1..=2).contains(&c)), "{:?} {}", out.status, stderr(&out));
    assert!(stderr(&out).contains("No space left on device"), "{}", stderr(&out));
    let outcomes = joblog_records(&sb.read("log")).into_iter().map(|r| r[9].clone()).collect();
    (out, outcomes)
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the exit code, showing stdout and stderr when it differs.
pub fn assert_code(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "\n--- expected exit {code}, got {:?}\n--- stdout:\n{}--- stderr:\n{}",
        output.status,
        stdout(output),
        stderr(output)
    );
}

/// Sends `signal` to `child`.
pub fn signal(child: &Child, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("nonzero pid");
    rustix::process::kill_process(pid, signal).expect("signal muster");
}

/// Waits (up to 30 s: the watchdog's TERM, grace and KILL on a machine busy with other
/// builds) until none of `pids` is a live (non-zombie) process. The tests' processes live
/// longer than that (`sleep 60` and up), so a leak still fails.
pub fn assert_gone(pids: &[u32]) {
    let mut alive = Vec::new();
    let gone = wait_for(Duration::from_secs(30), || {
        alive = pids.iter().copied().filter(|pid| is_running(*pid)).collect();
        alive.is_empty()
    });
    assert!(gone, "processes still running: {alive:?}");
}

fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            let state = stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
    }
}

/// Pids written one per line by tasks.
pub fn pids_in(text: &str) -> Vec<u32> {
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// Joblog records (the lines after the two header lines), split into fields.
pub fn joblog_records(text: &str) -> Vec<Vec<String>> {
    text.lines().skip(2).map(|l| l.split('\t').map(str::to_owned).collect()).collect()
}

/// Starts `muster args` and kills it with SIGKILL after each of `delays_ms` in turn.
pub fn kill_9_after(sb: &Sandbox, args: &[&str], delays_ms: &[u64]) {
    for &delay_ms in delays_ms {
        let mut child = sb.spawn(args);
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        child.wait().expect("reaped");
    }
}

/// The inputs (numbers) of a joblog's success records, sorted: each once when every task was
/// done exactly once.
pub fn done_inputs(joblog: &str) -> Vec<u32> {
    let mut done: Vec<u32> = joblog_records(joblog)
        .iter()
        .filter(|r| r.len() == 15 && r[9] == "done")
        .map(|r| r[12].parse().expect("input"))
        .collect();
    done.sort_unstable();
    done
}

/// Runs `command` with `stdin` bytes to completion, its output captured.
pub fn feed(mut command: Command, stdin: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("muster starts");
    let mut input = child.stdin.take().expect("piped stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let output = child.wait_with_output().expect("muster finishes");
    writer.join().expect("stdin writer");
    output
}
