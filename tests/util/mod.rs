//! Helpers shared by the integration tests: finding the example binaries, running them, and
//! waiting for a condition with a deadline instead of sleeping a guessed time.

#![allow(dead_code)]

#[path = "../support/poll.rs"]
mod poll;
pub use poll::wait_for;
#[path = "../support/sigint.rs"]
mod sigint;
pub use sigint::with_default_sigint;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::Duration;

/// The compiled example `name`. `cargo test` builds examples alongside the tests, but
/// `cargo test --test examples` does not, so an example older than the sources it is built
/// from (or missing) is rebuilt first, once per run, rather than testing a stale binary.
pub fn example(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let test_binary = std::env::current_exe().expect("test binary path");
    let profile_dir = test_binary.parent().and_then(|d| d.parent()).expect("target/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = newest_change(&root.join("src")).max(newest_change(&root.join("examples")));
    let built_at = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    let stale = match (built_at, sources) {
        (Some(built_at), Some(sources)) => built_at < sources,
        (None, _) => true,
        (Some(_), None) => false,
    };
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if stale && !built.iter().any(|b| b == name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "--example", name]);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo");
        assert!(status.success(), "building example {name}");
        built.push(name.to_owned());
    }
    path
}

/// The latest modification time of any file below `dir`.
fn newest_change(dir: &std::path::Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_change(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(time);
    }
    newest
}

/// Runs example `name` with `args` to completion.
pub fn run_example(name: &str, args: &[&str]) -> Output {
    Command::new(example(name)).args(args).stdin(Stdio::null()).output().expect("example runs")
}

/// Stdout as text, for assertions.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Starts example `name` with piped stdout, returning the child and a line reader.
pub fn spawn_example(name: &str, args: &[&str]) -> (Child, BufReader<ChildStdout>) {
    let mut command = Command::new(example(name));
    command.args(args).stdin(Stdio::null()).stdout(Stdio::piped());
    with_default_sigint(&mut command);
    let mut child = command.spawn().expect("example starts");
    let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    (child, stdout)
}

/// Reads lines until one satisfies `wanted`, returning every line read. Panics at EOF.
pub fn read_until(reader: &mut impl BufRead, mut wanted: impl FnMut(&str) -> bool) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("read stdout");
        assert!(n > 0, "output ended before the expected line; got {lines:#?}");
        let line = line.trim_end().to_owned();
        let done = wanted(&line);
        lines.push(line);
        if done {
            return lines;
        }
    }
}

/// Waits (up to 10 s) until no process of any of these groups is running, and says which are.
pub fn assert_groups_gone(pgids: &[u32]) {
    let mut left = Vec::new();
    let gone = wait_for(Duration::from_secs(10), || {
        left = pgids
            .iter()
            .flat_map(|&pgid| muster::process::live_group_members(pgid).expect("/proc readable"))
            .collect();
        left.is_empty()
    });
    assert!(gone, "processes left running: {left:?}");
}

/// Sends `signal` to a child process.
pub fn signal(child: &Child, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("nonzero pid");
    rustix::process::kill_process(pid, signal).expect("signal the child");
}

/// Waits (up to 10 s) until `child` catches `signal` (its bit in `SigCgt` of
/// `/proc/PID/status`), so a signal sent next is handled rather than fatal.
pub fn wait_until_catching(child: &Child, signal: rustix::process::Signal) {
    let bit = 1u64 << (signal.as_raw() - 1);
    let status = format!("/proc/{}/status", child.id());
    let caught = wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&status)
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("SigCgt:").map(|m| m.trim().to_owned())))
            .and_then(|mask| u64::from_str_radix(&mask, 16).ok())
            .is_some_and(|mask| mask & bit != 0)
    });
    assert!(caught, "child never started catching {signal:?}");
}
