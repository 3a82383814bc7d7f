//! The distributed mode against a real `redis-server` (Debian's package; `.ci/run` installs
//! it), started by each test on a free loopback port as its own child. Each test proves one
//! contract of the queue: results come back once, a killed or frozen worker loses nothing and
//! records nothing twice, retries end in the dead letter, a restart of Redis loses nothing,
//! drain, status, and that the queue carries data, never commands.

mod util;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rustix::process::Signal;
use util::{assert_code, joblog_records, signal, stderr, stdout, wait_for, Sandbox};

/// A redis-server of the test's own, stopped (and its files removed) when dropped.
struct Redis {
    child: Child,
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    /// It speaks TLS only (the tests' plain RESP commands cannot reach it).
    tls: bool,
}

impl Redis {
    /// Starts one, or `None` (with a printed reason) when redis-server is not installed.
    fn start(sb: &Sandbox, extra: &[&str]) -> Option<Redis> {
        if Command::new("redis-server").arg("--version").output().is_err() {
            println!(
                "skipped: redis-server is not installed (Debian package redis-server; .ci/run installs it)"
            );
            return None;
        }
        // With TLS (`--port 0 --tls-port P` in `extra`), P is the port to use.
        let tls_port = extra.iter().position(|arg| *arg == "--tls-port").and_then(|i| extra.get(i + 1));
        let tls = tls_port.is_some();
        let port = match tls_port {
            Some(port) => port.parse().expect("--tls-port number"),
            None => TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port(),
        };
        let dir = sb.path("redis");
        std::fs::create_dir_all(&dir).expect("redis dir");
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let child = spawn_redis(port, &dir, &extra);
        let redis = Redis { child, port, dir, extra, tls };
        assert!(redis.wait_ready(), "redis-server did not answer on port {port}");
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn wait_ready(&self) -> bool {
        if self.tls {
            return wait_for(Duration::from_secs(10), || {
                TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            });
        }
        // A server that wants credentials answers NOAUTH: up all the same.
        let up = |reply: String| reply.contains("PONG") || reply.contains("NOAUTH");
        wait_for(Duration::from_secs(10), || self.command(&["PING"]).is_some_and(up))
    }

    /// Sends one command (RESP) and returns the raw reply.
    fn command(&self, args: &[&str]) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes()).ok()?;
        let mut reply = vec![0u8; 65536];
        let n = stream.read(&mut reply).ok()?;
        Some(String::from_utf8_lossy(&reply[..n]).into_owned())
    }

    /// An integer reply.
    fn number(&self, args: &[&str]) -> i64 {
        let reply = self.command(args).unwrap_or_default();
        reply.trim().trim_start_matches(':').parse().unwrap_or(-1)
    }

    /// Kills the server with SIGKILL and starts it again on the same port and files.
    fn crash_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_redis(self.port, &self.dir, &self.extra);
        assert!(self.wait_ready(), "redis-server did not come back");
    }
}

fn spawn_redis(port: u16, dir: &Path, extra: &[String]) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server")
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A worker in the background; killed (if still running) when dropped.
/// A muster process of the test's (a worker, a submitter), killed if the test ends before it.
struct Running(Option<Child>);

/// A worker is a running muster.
type Worker = Running;

impl Running {
    /// Muster with `args` in the background (stdin closed, output piped).
    fn spawn(sb: &Sandbox, args: &[&str]) -> Running {
        Running(Some(sb.spawn(args)))
    }

    fn start(sb: &Sandbox, redis: &Redis, queue: &str, extra: &[&str], command: &[&str]) -> Worker {
        let url = redis.url();
        let mut args = vec!["worker", "--broker", &url, "--queue", queue];
        args.extend_from_slice(extra);
        args.extend_from_slice(command);
        Running(Some(sb.spawn(&args)))
    }

    fn child(&self) -> &Child {
        self.0.as_ref().expect("running worker")
    }

    /// Muster with `args`, its stderr written to the sandbox's file `log` (to be read while it
    /// runs), killed if the test fails before it is taken back.
    fn logged(sb: &Sandbox, args: &[&str], log: &str) -> Worker {
        let file = std::fs::File::create(sb.path(log)).expect("stderr file");
        let mut command = sb.muster(args);
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(file);
        Running(Some(command.spawn().expect("muster starts")))
    }

    fn take(mut self) -> Child {
        self.0.take().expect("running")
    }

    /// Waits for it to exit by itself; its exit code and stderr.
    fn wait(mut self) -> (Option<i32>, String) {
        let child = self.0.take().expect("running worker");
        let output = child.wait_with_output().expect("worker output");
        (output.status.code(), util::stderr(&output))
    }
}

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.child()
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("running")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn submit(sb: &Sandbox, redis: &Redis, queue: &str, args: &[&str]) -> std::process::Output {
    let url = redis.url();
    let mut all = vec!["submit", "--broker", &url, "--queue", queue];
    all.extend_from_slice(args);
    sb.run(&all, b"")
}

fn status(sb: &Sandbox, redis: &Redis, queue: &str) -> serde_json::Value {
    let url = redis.url();
    let output = sb.run(&["status", "--broker", &url, "--queue", queue, "--json"], b"");
    assert_code(&output, 0);
    serde_json::from_str(stdout(&output).trim()).expect("status JSON")
}

#[test]
fn results_come_back_once_each_in_order_with_the_workers_named() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    let _a = Worker::start(&sb, &redis, "q", &["-j", "3", "--name", "alpha"], &["echo", "got"]);
    let _b = Worker::start(&sb, &redis, "q", &["-j", "3", "--name", "beta"], &["echo", "got"]);
    submit_numbers_to_alpha_and_beta(&sb, &redis, 30);
}

/// Submits 1..=n with -k and a joblog to queue q, served by workers alpha and beta that
/// print "got N": every result comes back once, in order, recorded once with its worker, and
/// nothing is left in Redis.
fn submit_numbers_to_alpha_and_beta(sb: &Sandbox, redis: &Redis, n: usize) {
    let inputs: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    let mut args = vec!["-k", "--joblog", "log", ":::"];
    args.extend(inputs.iter().map(String::as_str));
    let output = submit(sb, redis, "q", &args);
    assert_code(&output, 0);
    let expected: String = inputs.iter().map(|i| format!("got {i}\n")).collect();
    assert_eq!(stdout(&output), expected);
    let records = joblog_records(&sb.read("log"));
    assert_eq!(records.len(), n, "one record per task");
    assert!(records.iter().all(|r| r[1] == "alpha" || r[1] == "beta"), "hosts are the workers: {records:?}");
    assert!(records.iter().all(|r| r[9] == "done"));
    assert_eq!(status(sb, redis, "q")["done"], n);
    // Results read are removed: nothing accumulates in Redis.
    assert_eq!(redis.number(&["XLEN", "muster:{q}:results"]), 0);
    assert_eq!(redis.number(&["XLEN", "muster:{q}:tasks"]), 0);
}

/// A persistent worker program: one line in, one line out, for as long as stdin lasts.
const ECHO_LOOP: &str = "while IFS= read -r x; do echo \"got $x\"; done";

/// Workers alpha and beta on queue q, each two persistent ECHO_LOOPs with `window`.
fn persistent_alpha_and_beta(sb: &Sandbox, redis: &Redis, window: &str) -> [Worker; 2] {
    ["alpha", "beta"].map(|name| {
        let flags = ["-j", "2", "--persistent", "--window", window, "--name", name];
        Worker::start(sb, redis, "q", &flags, &["sh", "-c", ECHO_LOOP])
    })
}

#[test]
fn persistent_workers_serve_a_queue_once_each_in_order_and_refuse_a_multi_line_input() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    let _workers = persistent_alpha_and_beta(&sb, &redis, "4");
    submit_numbers_to_alpha_and_beta(&sb, &redis, 300);
    // An input with a newline would be two records on a worker's stdin: it fails, clearly,
    // and no reply is misattributed.
    let output = submit(&sb, &redis, "q", &["-k", ":::", "a\nb", "c"]);
    assert_code(&output, 1);
    assert_eq!(stdout(&output), "got c\n");
    assert!(stderr(&output).contains("record separator"), "{}", stderr(&output));
}

/// How many times Redis ran `command` (from `INFO commandstats`).
fn calls(redis: &Redis, command: &str) -> u64 {
    let stats = redis.command(&["INFO", "commandstats"]).unwrap_or_default();
    let prefix = format!("cmdstat_{command}:calls=");
    stats
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

#[test]
fn quick_tasks_travel_in_packs_and_come_back_once_each_in_order() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    let _workers = persistent_alpha_and_beta(&sb, &redis, "64");
    submit_numbers_to_alpha_and_beta(&sb, &redis, 4000);
    // One entry per task would be 4,000 XADDs for the tasks alone, and as many for results.
    let xadds = calls(&redis, "xadd");
    assert!(xadds < 2000, "{xadds} XADDs for 4000 tasks: tasks and results travel in packs");
}

/// Packs of queue q that `worker` holds: entries pending for its consumer (named host-PID-…)
/// that carry a pack. Look while it is stopped to see what it holds at that moment.
fn packs_held(redis: &Redis, worker: &Child) -> usize {
    let marker = format!("-{}-", worker.id());
    let pending =
        redis.command(&["XPENDING", "muster:{q}:tasks", "muster", "-", "+", "1000"]).unwrap_or_default();
    let lines: Vec<&str> = pending.lines().collect();
    (2..lines.len())
        .filter(|&i| lines[i].contains(&marker))
        .filter(|&i| {
            let id = lines[i - 2];
            redis.command(&["XRANGE", "muster:{q}:tasks", id, id]).is_some_and(|entry| entry.contains("pack"))
        })
        .count()
}

/// The inputs the tasks wrote to the sandbox's `logs` (one number a line), sorted, repeats kept.
fn inputs_run(sb: &Sandbox, logs: &[&str]) -> Vec<u32> {
    let mut ran: Vec<u32> = logs
        .iter()
        .flat_map(|log| sb.read(log).lines().filter_map(|n| n.parse().ok()).collect::<Vec<_>>())
        .collect();
    ran.sort_unstable();
    ran
}

#[test]
fn a_worker_drained_holding_packs_gives_back_what_it_did_not_start() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    // Packs of 20 tasks of 50 ms for 2 slots: a pack held has unstarted tasks for half a second.
    let task = |log: &str| format!("echo $1 >> {log}; sleep 0.05; echo got $1");
    let drained = Worker::start(&sb, &redis, "q", &["-j", "2"], &["sh", "-c", &task("ran-drained"), "sh"]);
    let inputs: Vec<String> = (1..=200).map(|i| i.to_string()).collect();
    let url = redis.url();
    let mut args = vec!["submit", "--broker", &url, "--queue", "q", "-k", "--pack", "20", ":::"];
    args.extend(inputs.iter().map(String::as_str));
    let submitter = Running::spawn(&sb, &args);
    // Drained while it holds a pack (seen holding one, stopped to look again, then asked, then
    // let go). Looked at running first: stopped at every look, 10 ms apart, it could not read
    // a pack between looks on a loaded machine (seen twice in whole-suite runs beside two CPU
    // hogs: 2,849 looks in 30 s, all ten packs still unread).
    let mut looks = 0;
    let asked = wait_for(Duration::from_secs(30), || {
        looks += 1;
        if packs_held(&redis, drained.child()) == 0 {
            return false;
        }
        signal(drained.child(), Signal::STOP);
        let holding = packs_held(&redis, drained.child()) > 0;
        if holding {
            assert_code(&sb.run(&["drain", "--broker", &url, "--queue", "q"], b""), 0);
        }
        signal(drained.child(), Signal::CONT);
        holding
    });
    // What the queue looked like, should it never have been seen holding one.
    let queue = || {
        let pending = redis.command(&["XPENDING", "muster:{q}:tasks", "muster", "-", "+", "10"]);
        let length = redis.command(&["XLEN", "muster:{q}:tasks"]);
        format!("{looks} looks; XLEN {length:?}; XPENDING {pending:?}; worker pid {}", drained.child().id())
    };
    assert!(asked, "drained while holding a pack: {}", queue());
    let (code, err) = drained.wait();
    assert_eq!(code, Some(0), "{err}");
    let given_back = err.split(" given back").next().and_then(|head| head.rsplit(' ').next());
    assert!(given_back.is_some_and(|n| n != "0"), "it gave back what it did not start: {err}");
    // What it gave back is taken by the next worker at once, and nothing runs twice.
    let _next = Worker::start(
        &sb,
        &redis,
        "q",
        &["-j", "2", "--lease", "60s"],
        &["sh", "-c", &task("ran-next"), "sh"],
    );
    let output = finish_within(submitter, Duration::from_secs(60));
    assert_code(&output, 0);
    let expected: String = inputs.iter().map(|i| format!("got {i}\n")).collect();
    assert_eq!(stdout(&output), expected, "every task's result once, in order");
    let mut ran = inputs_run(&sb, &["ran-drained", "ran-next"]);
    assert_eq!(ran.len(), 200, "each task ran once");
    ran.dedup();
    assert_eq!(ran.len(), 200, "every task ran");
}

#[test]
fn a_worker_killed_holding_packs_loses_no_task_and_none_is_recorded_twice() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    let task = |log: &str| format!("echo $1 >> {log}; echo got $1");
    let worker = ["-j", "2", "--lease", "1s"];
    let doomed = Worker::start(&sb, &redis, "q", &worker, &["sh", "-c", &task("ran-doomed"), "sh"]);
    let _other = Worker::start(&sb, &redis, "q", &worker, &["sh", "-c", &task("ran-other"), "sh"]);
    let inputs: Vec<String> = (1..=600).map(|i| i.to_string()).collect();
    let url = redis.url();
    // Packs of 8 (as told: on a busy machine tasks may be too slow to be packed by themselves).
    let mut args = vec!["submit", "--broker", &url, "--queue", "q", "-k", "--pack", "8", ":::"];
    args.extend(inputs.iter().map(String::as_str));
    let submitter = Running::spawn(&sb, &args);
    assert!(
        wait_for(Duration::from_secs(30), || sb.read("ran-doomed").lines().count() >= 60),
        "the doomed worker ran tasks"
    );
    let killed_holding_packs = wait_for(Duration::from_secs(30), || {
        signal(doomed.child(), Signal::STOP);
        if packs_held(&redis, doomed.child()) > 0 {
            signal(doomed.child(), Signal::KILL);
            return true;
        }
        signal(doomed.child(), Signal::CONT);
        false
    });
    assert!(killed_holding_packs, "the doomed worker was killed holding packs");
    let output = finish_within(submitter, Duration::from_secs(60));
    assert_code(&output, 0);
    let expected: String = inputs.iter().map(|i| format!("got {i}\n")).collect();
    assert_eq!(stdout(&output), expected, "every task's result once, in order");
    assert_eq!(status(&sb, &redis, "q")["done"], 600, "each recorded once");
    assert_eq!(redis.number(&["XLEN", "muster:{q}:tasks"]), 0, "nothing left on the queue");
    let mut ran = inputs_run(&sb, &["ran-doomed", "ran-other"]);
    ran.dedup();
    assert_eq!(ran.len(), 600, "every task ran");
}

#[test]
fn a_killed_persistent_workers_tasks_are_taken_over_and_completed_once_leaving_no_process() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    // The first process to see a task hangs on it (recording its pids); later ones answer.
    let program = "echo $$ >> pids; while IFS= read -r x; do \
        if [ ! -e first ]; then sleep 60 & echo $! >> pids; touch first; wait; fi; echo \"done $x\"; done";
    let worker = ["-j", "1", "--persistent", "--lease", "1s"];
    let doomed = Worker::start(&sb, &redis, "q", &worker, &["sh", "-c", program]);
    let submitter = Running::spawn(
        &sb,
        &[
            "submit",
            "--broker",
            &redis.url(),
            "--queue",
            "q",
            "-k",
            "--joblog",
            "log",
            ":::",
            "t1",
            "t2",
            "t3",
        ],
    );
    assert!(wait_for(Duration::from_secs(10), || sb.path("first").exists()), "first task started");
    let pids: Vec<u32> = sb.read("pids").lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(pids.len(), 2, "worker process and its sleep: {pids:?}");
    signal(doomed.child(), Signal::KILL);
    util::assert_gone(&pids);
    let _rescuer = Worker::start(&sb, &redis, "q", &worker, &["sh", "-c", program]);
    let output = submitter.take().wait_with_output().expect("submit ends");
    assert_code(&output, 0);
    assert_eq!(stdout(&output), "done t1\ndone t2\ndone t3\n");
    let records = joblog_records(&sb.read("log"));
    assert_eq!(records.len(), 3, "each task recorded once: {records:?}");
    assert!(records.iter().all(|r| r[9] == "done"));
    assert_eq!(redis.number(&["XLEN", "muster:{q}:tasks"]), 0);
    assert_eq!(status(&sb, &redis, "q")["done"], 3);
}

#[test]
fn submit_refuses_flags_about_running_a_command_and_its_help_describes_inputs() {
    // Refused before any Redis is reached: the broker named here does not exist.
    let sb = Sandbox::new();
    for flags in [
        &["--shell"][..],
        &["-I", "X"],
        &["--timeout", "5s"],
        &["--halt", "now"],
        &["--persistent"],
        &["--window", "8"],
        &["--dry-run"],
        &["--report", "r.html"],
    ] {
        let mut args = vec!["submit", "--broker", "redis://127.0.0.1:1", "--queue", "q"];
        args.extend_from_slice(flags);
        args.extend([":::", "a"]);
        let out = sb.run(&args, b"");
        assert_code(&out, 255);
        assert!(
            stderr(&out).contains(&format!("{} is not a submit flag", flags[0])),
            "{flags:?}: {}",
            stderr(&out)
        );
    }
    let help = stdout(&sb.run(&["submit", "--help"], b""));
    assert!(help.contains("[INPUTS]...") && help.contains("no command: each worker runs its own"), "{help}");
    for run_only in ["The command and its arguments", "--shell", "--persistent", "--window", "--dry-run"] {
        assert!(!help.contains(run_only), "submit --help shows {run_only}: {help}");
    }
}

#[test]
fn the_queue_carries_data_and_a_queue_writer_cannot_run_a_command() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    // Submit refuses a command outright.
    let refused = submit(&sb, &redis, "q", &["touch", "pwned", ":::", "x"]);
    assert_code(&refused, 255);
    assert!(stderr(&refused).contains("inputs only"), "{}", stderr(&refused));
    // Someone writes an entry by hand with a command in it, and shell syntax in its input.
    let evil = "; touch pwned2 $(touch pwned3)";
    let values = format!("{}:{evil},", evil.len());
    let reply = redis.command(&[
        "XADD",
        "muster:{q}:tasks",
        "*",
        "job",
        "x",
        "seq",
        "1",
        "retries",
        "0",
        "values",
        &values,
        "command",
        "touch pwned4",
        "argv",
        "touch pwned5",
    ]);
    assert!(reply.is_some_and(|r| r.starts_with('$')), "XADD by hand");
    let worker = Worker::start(&sb, &redis, "q", &["-j", "1"], &["echo"]);
    assert!(wait_for(Duration::from_secs(10), || status(&sb, &redis, "q")["done"] == 1), "the entry was run");
    let results = redis.command(&["XRANGE", "muster:{q}:results", "-", "+"]).unwrap_or_default();
    assert!(results.contains(evil), "echo printed the input literally: {results}");
    drop(worker);
    for file in ["pwned", "pwned2", "pwned3", "pwned4", "pwned5"] {
        assert!(!sb.path(file).exists(), "{file} was created: the queue ran a command");
    }
}

#[test]
fn a_failing_task_gets_exactly_retries_plus_one_attempts_then_the_dead_letter() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    let script = "echo $1 >> attempts; echo failing $1 >&2; exit 3";
    let _a = Worker::start(&sb, &redis, "q", &["-j", "2"], &["sh", "-c", script, "sh"]);
    let _b = Worker::start(&sb, &redis, "q", &["-j", "2"], &["sh", "-c", script, "sh"]);
    let output = submit(&sb, &redis, "q", &["--retries", "2", ":::", "poison"]);
    assert_code(&output, 1);
    assert_eq!(sb.read("attempts"), "poison\npoison\npoison\n", "retries + 1 attempts");
    assert!(stderr(&output).contains("failing poison"), "the last attempt's stderr comes back");
    let dead = redis.command(&["XRANGE", "muster:{q}:dead", "-", "+"]).unwrap_or_default();
    assert!(dead.contains("exited with status 3") && dead.contains("6:poison,"), "dead letter: {dead}");
    let status = status(&sb, &redis, "q");
    assert_eq!(status["dead_lettered"], 1);
    assert_eq!(status["failed"], 1);
    assert_eq!(status["retried"], 2);
    assert_eq!(status["pending"], 0);
}

#[test]
fn a_dead_letter_names_the_task_by_the_submissions_number() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    // One worker, one slot: it reads a, b, then poison twice (its tasks 3 and 4).
    let script = "[ $1 != poison ] || exit 3";
    let _worker = Worker::start(&sb, &redis, "q", &["-j", "1"], &["sh", "-c", script, "sh"]);
    let output = submit(&sb, &redis, "q", &["--retries", "1", "-j", "1", ":::", "a", "b", "poison"]);
    assert_code(&output, 1);
    let dead = redis.command(&["XRANGE", "muster:{q}:dead", "-", "+"]).unwrap_or_default();
    assert!(dead.contains("task 3 (poison)"), "the submission's task 3: {dead}");
    assert!(stderr(&output).contains("task 3 (poison)"), "{}", stderr(&output));
}

#[test]
fn a_killed_workers_task_is_taken_over_and_completed_once_leaving_no_process() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    // The first attempt hangs (and records its pid); any later one finishes.
    let script = "if [ ! -e first ]; then echo $$ > first; exec sleep 60; fi; echo finished $1";
    let doomed = Worker::start(&sb, &redis, "q", &["-j", "1", "--lease", "1s"], &["sh", "-c", script, "sh"]);
    let submitter = Running::spawn(
        &sb,
        &["submit", "--broker", &redis.url(), "--queue", "q", "--joblog", "log", ":::", "t"],
    );
    assert!(
        wait_for(Duration::from_secs(10), || sb.read("first").trim().parse::<u32>().is_ok()),
        "first attempt started"
    );
    let hung: u32 = sb.read("first").trim().parse().expect("pid");
    signal(doomed.child(), Signal::KILL);
    util::assert_gone(&[hung]);
    let _rescuer =
        Worker::start(&sb, &redis, "q", &["-j", "1", "--lease", "1s"], &["sh", "-c", script, "sh"]);
    let output = submitter.take().wait_with_output().expect("submit ends");
    assert_code(&output, 0);
    assert_eq!(stdout(&output), "finished t\n");
    let records = joblog_records(&sb.read("log"));
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0][10], "2", "the second delivery completed it");
    assert_eq!(redis.number(&["XLEN", "muster:{q}:tasks"]), 0);
}

#[test]
fn a_second_worker_with_a_live_workers_name_is_refused_and_the_name_frees_when_it_dies() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    let first =
        Worker::start(&sb, &redis, "q", &["-j", "1", "--lease", "1s", "--name", "w"], &["echo", "one"]);
    assert!(
        wait_for(Duration::from_secs(10), || redis.command(&["EXISTS", "muster:{q}:alive:w"]).as_deref()
            == Some(":1\r\n")),
        "the first worker holds its name"
    );
    let url = redis.url();
    let second = finish_within(
        Running::spawn(
            &sb,
            &[
                "worker", "--broker", &url, "--queue", "q", "-j", "1", "--lease", "1s", "--name", "w",
                "echo", "two",
            ],
        ),
        Duration::from_secs(20),
    );
    assert_code(&second, 255);
    assert!(stderr(&second).contains("another worker named w is alive"), "{}", stderr(&second));
    // The live one still serves the queue, alone.
    let served = submit(&sb, &redis, "q", &[":::", "x"]);
    assert_eq!(stdout(&served), "one x\n");
    // Killed, it stops renewing: within a lease the name is free for a new worker.
    signal(first.child(), rustix::process::Signal::KILL);
    let mut replacement = None;
    let took_over = wait_for(Duration::from_secs(10), || {
        let attempt = Running::spawn(
            &sb,
            &[
                "worker", "--broker", &url, "--queue", "q", "-j", "1", "--lease", "1s", "--name", "w",
                "echo", "three",
            ],
        );
        std::thread::sleep(Duration::from_millis(500));
        let mut attempt = attempt;
        if attempt.try_wait().is_ok_and(|status| status.is_none()) {
            replacement = Some(attempt);
            true
        } else {
            let _ = attempt.wait();
            false
        }
    });
    assert!(took_over, "the dead worker's name was not freed");
    let served = submit(&sb, &redis, "q", &[":::", "y"]);
    assert_eq!(stdout(&served), "three y\n");
    drop(replacement);
}

#[test]
fn results_of_a_killed_submitter_expire() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    let url = redis.url();
    let mut submitter =
        Running::spawn(&sb, &["submit", "--broker", &url, "--queue", "q", ":::", "a", "b", "c"]);
    assert!(
        wait_for(Duration::from_secs(10), || redis.number(&["XLEN", "muster:{q}:tasks"]) == 3),
        "tasks queued"
    );
    let _ = submitter.kill();
    let _ = submitter.wait();
    let _worker =
        Worker::start(&sb, &redis, "q", &["-j", "2", "--lease", "1s", "--results-ttl", "2s"], &["echo"]);
    // The three results wait for a reader that is gone; after the ttl a heartbeat drops them.
    assert!(
        wait_for(Duration::from_secs(10), || redis.number(&["HGET", "muster:{q}:stats", "done"]) == 3
            || redis.command(&["HGET", "muster:{q}:stats", "done"]).is_some_and(|r| r.contains("$1\r\n3"))),
        "the tasks ran"
    );
    // (A worker records a batch of results as one entry.)
    let waiting = redis.command(&["XRANGE", "muster:{q}:results", "-", "+"]).unwrap_or_default();
    for output in ["2:a\n,", "2:b\n,", "2:c\n,"] {
        assert!(waiting.contains(output), "their results wait: {output:?} in {waiting:?}");
    }
    assert!(
        wait_for(Duration::from_secs(10), || redis.number(&["XLEN", "muster:{q}:results"]) == 0),
        "the results of a dead submission expired"
    );
}

#[test]
fn a_killed_holders_many_tasks_are_all_taken_over_within_about_a_lease() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    // Each task's first attempt hangs; any later one finishes at once.
    let script = "if [ ! -e first-$1 ]; then touch first-$1; exec sleep 60; fi; echo done $1";
    let holder = Worker::start(&sb, &redis, "q", &["-j", "50", "--lease", "2s"], &["sh", "-c", script, "sh"]);
    let inputs: Vec<String> = (1..=50).map(|i| i.to_string()).collect();
    let url = redis.url();
    let mut args = vec!["submit", "--broker", &url, "--queue", "q", ":::"];
    args.extend(inputs.iter().map(String::as_str));
    let submitter = Running::spawn(&sb, &args);
    let started = || {
        std::fs::read_dir(sb.dir()).map_or(0, |d| {
            d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("first-")).count()
        })
    };
    assert!(wait_for(Duration::from_secs(20), || started() == 50), "50 tasks held");
    // A rescuer with 4 free slots waits on the queue; the holder dies with all 50.
    let _rescuer =
        Worker::start(&sb, &redis, "q", &["-j", "4", "--lease", "2s"], &["sh", "-c", script, "sh"]);
    std::thread::sleep(Duration::from_millis(300));
    let killed = std::time::Instant::now();
    signal(holder.child(), Signal::KILL);
    let output = finish_within(submitter, Duration::from_secs(60));
    let took = killed.elapsed();
    assert_code(&output, 0);
    assert_eq!(stdout(&output).lines().count(), 50);
    // Expired at the lease (2 s), then taken as fast as 4 slots run them — not 4 per quarter
    // lease (9.3 s here before). A wide margin: the suite runs beside other builds.
    assert!(took < Duration::from_secs(6), "took {took:?} after the kill");
}

#[test]
fn a_submitter_says_once_when_no_worker_serves_its_queue() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    let url = redis.url();
    // A worker on another queue (a typo): nobody serves "q".
    let _elsewhere = Worker::start(&sb, &redis, "other", &["-j", "1"], &["echo"]);
    let submitter = Worker::logged(
        &sb,
        &["submit", "--broker", &url, "--queue", "q", "--progress", ":::", "a"],
        "submit.err",
    );
    let log = sb.path("submit.err");
    let said = |what: &str| std::fs::read_to_string(&log).is_ok_and(|text| text.contains(what));
    assert!(
        wait_for(Duration::from_secs(20), || said("no worker is serving queue q at Redis 127.0.0.1")),
        "{}",
        sb.read("submit.err")
    );
    // The progress line tells the task waiting on the queue from one a worker runs.
    assert!(said("0/1 done, 0 failed, 1 queued, 0 running"), "{}", sb.read("submit.err"));
    let script = "sleep 7; echo got $1";
    let _worker = Worker::start(&sb, &redis, "q", &["-j", "1"], &["sh", "-c", script, "sh"]);
    assert!(
        wait_for(Duration::from_secs(20), || said("0/1 done, 0 failed, 0 queued, 1 running")),
        "{}",
        sb.read("submit.err")
    );
    let output = finish_within(submitter, Duration::from_secs(30));
    assert_code(&output, 0);
    assert_eq!(stdout(&output), "got a\n");
    let text = sb.read("submit.err");
    assert_eq!(text.matches("no worker is serving").count(), 1, "said once: {text}");
}

#[test]
fn a_submitter_names_a_worker_that_holds_its_tasks_and_stopped_answering() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    let url = redis.url();
    let script = "if [ ! -e first ]; then echo $$ > first; exec sleep 60; fi; echo finished $1";
    let lease = ["-j", "1", "--lease", "3s"];
    let doomed = Worker::start(
        &sb,
        &redis,
        "q",
        &[&lease[..], &["--name", "doomed"]].concat(),
        &["sh", "-c", script, "sh"],
    );
    let submitter =
        Worker::logged(&sb, &["submit", "--broker", &url, "--queue", "q", ":::", "t"], "submit.err");
    let log = sb.path("submit.err");
    assert!(wait_for(Duration::from_secs(10), || sb.read("first").trim().parse::<u32>().is_ok()), "started");
    let hung: u32 = sb.read("first").trim().parse().expect("pid");
    signal(doomed.child(), Signal::KILL);
    util::assert_gone(&[hung]);
    let said = |what: &str| std::fs::read_to_string(&log).is_ok_and(|text| text.contains(what));
    assert!(
        wait_for(Duration::from_secs(20), || said(
            "worker doomed holds 1 of these tasks and has not been heard from"
        )),
        "{}",
        sb.read("submit.err")
    );
    let _rescuer = Worker::start(&sb, &redis, "q", &lease, &["sh", "-c", script, "sh"]);
    let output = finish_within(submitter, Duration::from_secs(30));
    assert_code(&output, 0);
    assert_eq!(stdout(&output), "finished t\n");
    let text = sb.read("submit.err");
    assert_eq!(text.matches("worker doomed holds").count(), 1, "named once: {text}");
}

#[test]
fn a_submission_stopped_before_any_worker_came_claims_no_task_time() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    let url = redis.url();
    let args = ["submit", "--broker", &url, "--queue", "nobody", "--progress", "--summary", "--grace", "1s"];
    let submitter = Worker::logged(&sb, &[&args[..], &[":::", "a", "b", "c"]].concat(), "submit.err");
    let log = sb.path("submit.err");
    let said = |what: &str| std::fs::read_to_string(&log).is_ok_and(|text| text.contains(what));
    assert!(wait_for(Duration::from_secs(20), || said("3 queued, 0 running")), "{}", sb.read("submit.err"));
    signal(submitter.child(), Signal::INT);
    let output = finish_within(submitter, Duration::from_secs(30));
    let text = sb.read("submit.err");
    // They waited on the queue for seconds, and ran for none: no task time, no speedup.
    assert!(text.contains("3 stopped") || text.contains("3 not run"), "{text}");
    assert!(text.contains("task time 0.00s, speedup 0.00x"), "{text}");
    assert_ne!(output.status.code(), Some(0), "{text}");
}

#[test]
fn the_durability_warning_is_for_those_who_write_not_those_who_look() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &["--appendonly", "no"]) else { return };
    let url = redis.url();
    let submitted = sb.run(&["submit", "--broker", &url, "--queue", "q", "--detach", ":::", "a"], b"");
    assert_code(&submitted, 0);
    assert!(stderr(&submitted).contains("appendonly no"), "{}", stderr(&submitted));
    for look in [
        &["status", "--broker", &url, "--queue", "q"][..],
        &["results", "--broker", &url, "--queue", "q"][..],
    ] {
        let output = sb.run(look, b"");
        assert!(!stderr(&output).contains("appendonly"), "{look:?}: {}", stderr(&output));
    }
}

#[test]
fn rediss_against_a_plain_redis_says_to_use_redis() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    let url = format!("rediss://127.0.0.1:{}", redis.port);
    let output = sb.run(&["status", "--broker", &url, "--queue", "q"], b"");
    assert_code(&output, 255);
    assert!(
        stderr(&output).contains("over TLS") && stderr(&output).contains("use redis://"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_full_redis_longer_than_the_lease_dead_letters_nothing_a_live_worker_ran() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    let script = "echo $1 >> ran; sleep 0.5; echo ok $1";
    let _worker = Worker::start(&sb, &redis, "q", &["-j", "2", "--lease", "1s"], &["sh", "-c", script, "sh"]);
    let url = redis.url();
    let submitter =
        Running::spawn(&sb, &["submit", "--broker", &url, "--queue", "q", "-k", ":::", "1", "2", "3", "4"]);
    let ran = sb.path("ran");
    let started = || std::fs::read_to_string(&ran).map_or(0, |text| text.lines().count());
    assert!(wait_for(Duration::from_secs(20), || started() >= 2), "tasks running");
    // Full for 4 leases: no result can be written, leases can still be renewed.
    assert!(redis.command(&["CONFIG", "SET", "maxmemory", "1"]).is_some_and(|r| r.contains("OK")));
    std::thread::sleep(Duration::from_secs(4));
    assert!(redis.command(&["CONFIG", "SET", "maxmemory", "0"]).is_some_and(|r| r.contains("OK")));
    let output = finish_within(submitter, Duration::from_secs(60));
    assert_code(&output, 0);
    assert_eq!(stdout(&output), "ok 1\nok 2\nok 3\nok 4\n");
    assert_eq!(redis.number(&["XLEN", "muster:{q}:dead"]), 0, "nothing dead-lettered");
}

#[test]
fn a_submitter_waits_for_a_full_redis_to_take_its_tasks() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    let _worker = Worker::start(&sb, &redis, "q", &["-j", "2"], &["echo", "got"]);
    assert!(
        wait_for(Duration::from_secs(10), || redis.number(&["EXISTS", "muster:{q}:tasks"]) == 1),
        "the worker made the queue"
    );
    assert!(redis.command(&["CONFIG", "SET", "maxmemory", "1"]).is_some_and(|r| r.contains("OK")));
    let url = redis.url();
    let submitter =
        Running::spawn(&sb, &["submit", "--broker", &url, "--queue", "q", "-k", ":::", "a", "b", "c"]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(redis.command(&["CONFIG", "SET", "maxmemory", "0"]).is_some_and(|r| r.contains("OK")));
    let output = finish_within(submitter, Duration::from_secs(60));
    assert_code(&output, 0);
    assert_eq!(stdout(&output), "got a\ngot b\ngot c\n");
    assert!(stderr(&output).contains("refuses writes (OOM"), "{}", stderr(&output));
}

#[test]
fn status_names_each_worker_with_its_last_heartbeat_and_a_silent_one_as_such() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    let alive = Worker::start(&sb, &redis, "q", &["-j", "2", "--lease", "1s", "--name", "alive"], &["echo"]);
    let doomed =
        Worker::start(&sb, &redis, "q", &["-j", "1", "--lease", "1s", "--name", "doomed"], &["echo"]);
    let both = || status(&sb, &redis, "q")["workers"].as_array().map_or(0, Vec::len) == 2;
    assert!(wait_for(Duration::from_secs(10), both), "{}", status(&sb, &redis, "q"));
    signal(doomed.child(), Signal::KILL);
    // Past its lease, the killed one is listed as silent; the live one as heard from just now.
    let silent = || {
        let workers = status(&sb, &redis, "q")["workers"].clone();
        workers.as_array().is_some_and(|w| {
            w.iter().any(|w| w["name"] == "doomed" && w["alive"] == false)
                && w.iter().any(|w| {
                    w["name"] == "alive" && w["alive"] == true && w["heard_ms_ago"].as_u64() < Some(1000)
                })
        })
    };
    assert!(wait_for(Duration::from_secs(10), silent), "{}", status(&sb, &redis, "q"));
    let url = redis.url();
    let text = stdout(&sb.run(&["status", "--broker", &url, "--queue", "q"], b""));
    assert!(text.contains("workers alive  1"), "{text}");
    assert!(text.contains("alive  running 0 of 2, heard from"), "{text}");
    assert!(text.contains("doomed  silent for") && text.contains("(lease 1 s)"), "{text}");
    drop(alive);
}

#[test]
fn a_redis_frozen_past_the_lease_costs_a_lone_worker_nothing() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &["--enable-debug-command", "yes"]) else { return };
    // One worker: when Redis wakes, its own reclaim finds its running task idle past the lease.
    let script = "echo $1 >> runs; sleep 4; echo done $1";
    let worker = Worker::start(&sb, &redis, "q", &["-j", "1", "--lease", "1s"], &["sh", "-c", script, "sh"]);
    let url = redis.url();
    let submitter = Running::spawn(&sb, &["submit", "--broker", &url, "--queue", "q", ":::", "t"]);
    let runs = sb.path("runs");
    assert!(wait_for(Duration::from_secs(20), || runs.exists()), "the task started");
    let _ = redis.command(&["DEBUG", "SLEEP", "3"]);
    let output = finish_within(submitter, Duration::from_secs(60));
    assert_code(&output, 0);
    assert_eq!(stdout(&output), "done t\n");
    assert_eq!(sb.read("runs"), "t\n", "it ran once: nobody else could have taken it");
    drop(worker);
}

#[test]
fn a_worker_adopts_at_once_what_its_name_holds_unknown_to_it() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    let detached = submit(&sb, &redis, "q", &["--detach", ":::", "a", "b"]);
    assert_code(&detached, 0);
    // Delivered to consumer w1, whose reply never arrived (a lost connection, or a worker of
    // that name that died): without adoption they would wait out the 60 s lease.
    let read = redis.command(&[
        "XREADGROUP",
        "GROUP",
        "muster",
        "w1",
        "COUNT",
        "2",
        "STREAMS",
        "muster:{q}:tasks",
        ">",
    ]);
    assert!(read.is_some_and(|r| r.contains("values")), "read by hand");
    let _worker = Worker::start(&sb, &redis, "q", &["-j", "2", "--lease", "60s", "--name", "w1"], &["echo"]);
    assert!(
        wait_for(Duration::from_secs(10), || status(&sb, &redis, "q")["done"] == 2),
        "adopted and done: {}",
        status(&sb, &redis, "q")
    );
    let results = sb.run(&["results", "--broker", &redis.url(), "--queue", "q", "--json"], b"");
    let attempts: Vec<u64> = stdout(&results)
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).expect("JSON")["attempt"].as_u64().unwrap_or(0)
        })
        .collect();
    assert_eq!(attempts, [2, 2], "the lost delivery counts: each ran on the second");
}

#[test]
fn a_worker_frozen_past_its_lease_cannot_record_its_result() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    let script = "echo $MUSTER_WORKER >> runs; sleep 1; echo result $1";
    let frozen = Worker::start(
        &sb,
        &redis,
        "q",
        &["-j", "1", "--lease", "1s", "--name", "frozen"],
        &["sh", "-c", script, "sh"],
    );
    let submitter = Running::spawn(
        &sb,
        &["submit", "--broker", &redis.url(), "--queue", "q", "--joblog", "log", ":::", "t"],
    );
    assert!(wait_for(Duration::from_secs(10), || !sb.read("runs").is_empty()), "first attempt started");
    signal(frozen.child(), Signal::STOP);
    // The lease runs out; another worker takes the task over and completes it.
    let _other = Worker::start(
        &sb,
        &redis,
        "q",
        &["-j", "1", "--lease", "1s", "--name", "other"],
        &["sh", "-c", script, "sh"],
    );
    let output = submitter.take().wait_with_output().expect("submit ends");
    assert_code(&output, 0);
    assert_eq!(stdout(&output), "result t\n");
    let records = joblog_records(&sb.read("log"));
    assert_eq!(records.len(), 1);
    assert_eq!(records[0][1], "other");
    // The frozen worker wakes with its own attempt long finished: its result is refused.
    signal(frozen.child(), Signal::CONT);
    assert!(
        wait_for(Duration::from_secs(10), || status(&sb, &redis, "q")["rejected"] == 1),
        "the late result was rejected: {}",
        status(&sb, &redis, "q")
    );
    assert_eq!(status(&sb, &redis, "q")["done"], 1, "recorded once");
    assert_eq!(redis.number(&["XLEN", "muster:{q}:results"]), 0, "no second result");
}

#[test]
fn a_frozen_persistent_workers_stale_attempt_is_stopped_when_it_wakes() {
    frozen_persistent_worker_wakes(1);
}

#[test]
fn a_frozen_persistent_workers_stale_attempt_is_stopped_when_it_wakes_with_more_workers_than_cpus() {
    // Their replies are read by a thread per CPU rather than a thread each.
    frozen_persistent_worker_wakes(std::thread::available_parallelism().map_or(1, usize::from) + 1);
}

fn frozen_persistent_worker_wakes(jobs: usize) {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    // A task's first delivery hangs (recording its sleep's pid); a later one answers.
    let program = "while IFS= read -r x; do if [ ! -e \"$x.first\" ]; then touch \"$x.first\"; \
        sleep 120 & echo $! > \"$x.pid\"; wait; fi; echo \"done $x\"; done";
    let jobs = jobs.to_string();
    let worker = |name: &'static str| {
        let flags = ["-j", &jobs, "--persistent", "--lease", "1s", "--name", name];
        Worker::start(&sb, &redis, "q", &flags, &["sh", "-c", program])
    };
    let frozen = worker("frozen");
    let submitter = Running::spawn(&sb, &["submit", "--broker", &redis.url(), "--queue", "q", ":::", "t"]);
    assert!(
        wait_for(Duration::from_secs(10), || !sb.read("t.pid").trim().is_empty()),
        "first attempt started"
    );
    let stale: u32 = sb.read("t.pid").trim().parse().expect("pid");
    signal(frozen.child(), Signal::STOP);
    let _other = worker("other");
    let output = submitter.take().wait_with_output().expect("submit ends");
    assert_code(&output, 0);
    assert_eq!(stdout(&output), "done t\n");
    // Awake again, the frozen worker learns the task is no longer its own and stops the
    // attempt (a persistent worker cannot stop one task: the process holding it goes).
    signal(frozen.child(), Signal::CONT);
    util::assert_gone(&[stale]);
    let status = status(&sb, &redis, "q");
    assert_eq!(status["done"], 1, "{status}");
    assert_eq!(redis.number(&["XLEN", "muster:{q}:results"]), 0, "no second result");
}

#[test]
fn a_long_task_whose_lease_is_renewed_is_never_delivered_twice() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    let script = "echo $1 >> runs; sleep 3; echo long $1";
    let _a = Worker::start(&sb, &redis, "q", &["-j", "1", "--lease", "1s"], &["sh", "-c", script, "sh"]);
    let _b = Worker::start(&sb, &redis, "q", &["-j", "1", "--lease", "1s"], &["sh", "-c", script, "sh"]);
    let output = submit(&sb, &redis, "q", &["--joblog", "log", ":::", "t"]);
    assert_code(&output, 0);
    assert_eq!(sb.read("runs"), "t\n", "ran once, three leases long");
    assert_eq!(joblog_records(&sb.read("log"))[0][10], "1");
}

#[test]
fn a_redis_crash_with_aof_always_loses_no_task_and_records_none_twice() {
    let sb = Sandbox::new();
    let Some(mut redis) = Redis::start(&sb, &["--appendonly", "yes", "--appendfsync", "always"]) else {
        return;
    };
    let script = "sleep 0.1; echo $1 >> runs; echo ok $1";
    let _a = Worker::start(&sb, &redis, "q", &["-j", "2", "--lease", "2s"], &["sh", "-c", script, "sh"]);
    let inputs: Vec<String> = (1..=40).map(|i| i.to_string()).collect();
    let mut args = vec!["submit", "--broker", &redis.url(), "--queue", "q", "-k", ":::"]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    args.extend(inputs.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let submitter = Running::spawn(&sb, &args);
    assert!(wait_for(Duration::from_secs(20), || sb.read("runs").lines().count() >= 8), "tasks running");
    redis.crash_and_restart();
    let output = submitter.take().wait_with_output().expect("submit ends");
    assert_code(&output, 0);
    let expected: String = inputs.iter().map(|i| format!("ok {i}\n")).collect();
    assert_eq!(stdout(&output), expected, "every result once, in order");
}

#[test]
fn tasks_a_redis_restart_lost_are_sent_again_by_the_submitter() {
    let sb = Sandbox::new();
    // No persistence at all: a restart loses every queued task (the worst case of
    // `appendfsync everysec`'s last second).
    let Some(mut redis) = Redis::start(&sb, &["--appendonly", "no"]) else { return };
    let submitter = Running::spawn(
        &sb,
        &["submit", "--broker", &redis.url(), "--queue", "q", "-k", ":::", "a", "b", "c", "d", "e"],
    );
    assert!(
        wait_for(Duration::from_secs(10), || redis.number(&["XLEN", "muster:{q}:tasks"]) == 5),
        "tasks queued"
    );
    redis.crash_and_restart();
    assert_eq!(redis.number(&["XLEN", "muster:{q}:tasks"]), 0, "the restart lost the queue");
    let _worker =
        Worker::start(&sb, &redis, "q", &["-j", "2"], &["sh", "-c", "echo $1 >> runs; echo ok $1", "sh"]);
    let output = submitter.take().wait_with_output().expect("submit ends");
    assert_code(&output, 0);
    assert_eq!(stdout(&output), "ok a\nok b\nok c\nok d\nok e\n");
    assert!(stderr(&output).contains("sending it again"), "{}", stderr(&output));
    let mut runs: Vec<String> = sb.read("runs").lines().map(str::to_owned).collect();
    runs.sort();
    assert_eq!(runs, ["a", "b", "c", "d", "e"], "each lost task sent again once");
}

#[test]
fn workers_running_and_idle_outlive_a_redis_that_comes_back_empty() {
    let sb = Sandbox::new();
    let Some(mut redis) = Redis::start(&sb, &["--appendonly", "no"]) else { return };
    // Two workers: one busy with the tasks (a second each), one on an idle queue.
    let busy = Worker::start(
        &sb,
        &redis,
        "q",
        &["-j", "2"],
        &["sh", "-c", "echo $1 >> runs; sleep 1; echo ok $1", "sh"],
    );
    let idle = Worker::start(&sb, &redis, "idle", &["-j", "1"], &["echo", "idle"]);
    let inputs: Vec<String> = (1..=8).map(|i| i.to_string()).collect();
    let mut args = vec!["submit", "--queue", "q", "-k", ":::"];
    args.extend(inputs.iter().map(String::as_str));
    let url = redis.url();
    let mut all = vec![args[0], "--broker", &url];
    all.extend_from_slice(&args[1..]);
    let submitter = Running::spawn(&sb, &all);
    let runs = sb.path("runs");
    let started = || std::fs::read_to_string(&runs).map_or(0, |text| text.lines().count());
    assert!(wait_for(Duration::from_secs(20), || started() >= 3), "tasks running");
    redis.crash_and_restart();
    // Every task completes once, the submitter ends, and both workers are still there.
    let output = finish_within(submitter, Duration::from_secs(60));
    assert_code(&output, 0);
    let expected: String = (1..=8).map(|i| format!("ok {i}\n")).collect();
    assert_eq!(stdout(&output), expected);
    for worker in [&busy, &idle] {
        assert!(rustix::process::test_kill_process(pid_of(worker.child())).is_ok(), "a worker exited");
    }
    let late = submit(&sb, &redis, "idle", &[":::", "x"]);
    assert_code(&late, 0);
    assert_eq!(stdout(&late), "idle x\n");
}

#[test]
fn an_idle_worker_outlives_its_queue_being_deleted() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    let worker = Worker::start(&sb, &redis, "q", &["-j", "1"], &["echo", "got"]);
    let first = submit(&sb, &redis, "q", &[":::", "a"]);
    assert_eq!(stdout(&first), "got a\n");
    assert_eq!(redis.command(&["DEL", "muster:{q}:tasks"]).as_deref(), Some(":1\r\n"));
    std::thread::sleep(Duration::from_millis(300));
    let url = redis.url();
    let second = finish_within(
        Running::spawn(&sb, &["submit", "--broker", &url, "--queue", "q", ":::", "b"]),
        Duration::from_secs(30),
    );
    assert_code(&second, 0);
    assert_eq!(stdout(&second), "got b\n");
    assert!(rustix::process::test_kill_process(pid_of(worker.child())).is_ok(), "the worker exited");
}

/// Waits for `child` to end, killing it and failing past `limit` (a submitter waiting for
/// ever on a queue nobody reads must fail the test, not hang it).
fn finish_within(running: Running, limit: Duration) -> std::process::Output {
    let mut child = running.take();
    let ended = wait_for(limit, || child.try_wait().is_ok_and(|status| status.is_some()));
    if !ended {
        let _ = child.kill();
    }
    let output = child.wait_with_output().expect("it ends");
    assert!(ended, "still waiting after {limit:?}: {}", stderr(&output));
    output
}

fn pid_of(child: &Child) -> rustix::process::Pid {
    rustix::process::Pid::from_raw(child.id() as i32).expect("a pid")
}

#[test]
fn a_workers_first_signal_finishes_what_it_holds_and_the_second_gives_it_back() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    let detached = submit(&sb, &redis, "q", &["--detach", ":::", "a", "b"]);
    assert_code(&detached, 0);
    let task = ["sh", "-c", "echo $1 >> started; sleep 1; echo done $1", "sh"];
    // One SIGTERM: the task held runs to its end and is recorded; nothing new is read.
    let first = Worker::start(&sb, &redis, "q", &["-j", "1"], &task);
    assert!(wait_for(Duration::from_secs(10), || sb.read("started") == "a\n"), "a started");
    signal(first.child(), Signal::TERM);
    let (code, err) = first.wait();
    assert_eq!(code, Some(143), "{err}");
    assert!(err.contains("1 done"), "{err}");
    let after = status(&sb, &redis, "q");
    assert_eq!((after["done"].as_u64(), after["pending"].as_u64()), (Some(1), Some(1)), "{after}");
    assert_eq!(sb.read("started"), "a\n", "nothing new was read");
    // Two: the task held is stopped and goes back to the queue at once, for anyone.
    let second = Worker::start(&sb, &redis, "q", &["-j", "1"], &task);
    assert!(wait_for(Duration::from_secs(10), || sb.read("started") == "a\nb\n"), "b started");
    // Two of one kind sent at once may merge into one pending signal; two kinds cannot.
    signal(second.child(), Signal::TERM);
    signal(second.child(), Signal::INT);
    let (code, err) = second.wait();
    assert!(matches!(code, Some(130 | 143)), "{code:?} {err}");
    assert!(err.contains("0 done") && err.contains("1 given back"), "{err}");
    let third = Worker::start(&sb, &redis, "q", &["-j", "1", "--lease", "60s"], &task);
    assert!(
        wait_for(Duration::from_secs(10), || status(&sb, &redis, "q")["done"] == 2),
        "given back, so taken at once (not after the lease): {}",
        status(&sb, &redis, "q")
    );
    drop(third);
    let results = sb.run(&["results", "--broker", &redis.url(), "--queue", "q"], b"");
    assert_eq!(stdout(&results), "done a\ndone b\n");
}

#[test]
fn drain_lets_workers_finish_what_they_hold_and_leaves_the_rest_queued() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    let detached = submit(&sb, &redis, "q", &["--detach", ":::", "1", "2", "3", "4", "5"]);
    assert_code(&detached, 0);
    assert!(stderr(&detached).contains(&format!("(submission {})", stdout(&detached).trim())));
    let before = status(&sb, &redis, "q");
    assert_eq!((before["pending"].as_u64(), before["running"].as_u64()), (Some(5), Some(0)));
    let worker = Worker::start(
        &sb,
        &redis,
        "q",
        &["-j", "2", "--lease", "3s"],
        &["sh", "-c", "echo $1 >> started; sleep 1.5", "sh"],
    );
    assert!(
        wait_for(Duration::from_secs(10), || sb.read("started").lines().count() == 2),
        "two held and running"
    );
    assert!(
        wait_for(Duration::from_secs(10), || {
            let s = status(&sb, &redis, "q");
            s["running"] == 2 && s["pending"] == 3 && s["workers"].as_array().is_some_and(|w| w.len() == 1)
        }),
        "status shows what runs: {}",
        status(&sb, &redis, "q")
    );
    let drained = sb.run(&["drain", "--broker", &redis.url(), "--queue", "q"], b"");
    assert_code(&drained, 0);
    let (code, err) = worker.wait();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("2 done"), "{err}");
    assert_eq!(sb.read("started").lines().count(), 2, "nothing new was read");
    let after = status(&sb, &redis, "q");
    assert_eq!((after["pending"].as_u64(), after["done"].as_u64()), (Some(3), Some(2)), "{after}");
}

#[test]
fn a_detached_submission_packs_as_told_and_each_result_is_printed_once() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    let inputs: String = (1..=1000).map(|i| format!("{i}\n")).collect();
    let url = redis.url();
    let detached =
        sb.run(&["submit", "--broker", &url, "--queue", "q", "--detach", "--pack", "64"], inputs.as_bytes());
    assert_code(&detached, 0);
    assert_eq!(redis.number(&["XLEN", "muster:{q}:tasks"]), 16, "1,000 tasks in entries of 64");
    assert_eq!(status(&sb, &redis, "q")["pending"], 1000, "status counts tasks, not entries");
    let _worker = Worker::start(&sb, &redis, "q", &["-j", "2", "--persistent"], &["sh", "-c", ECHO_LOOP]);
    let results = sb.run(&["results", "--broker", &url, "--queue", "q", "--wait"], b"");
    assert_code(&results, 0);
    let mut printed: Vec<u32> =
        stdout(&results).lines().filter_map(|l| l.strip_prefix("got ")?.parse().ok()).collect();
    printed.sort_unstable();
    assert_eq!(printed, (1..=1000).collect::<Vec<_>>(), "each result once");
    // Out of range: refused before anything is queued.
    for bad in ["0", "257"] {
        let refused = sb.run(&["submit", "--broker", &url, "--queue", "q", "--pack", bad, ":::", "x"], b"");
        assert_code(&refused, 255);
        assert!(stderr(&refused).contains("--pack"), "{}", stderr(&refused));
    }
}

#[test]
fn detached_results_are_printed_once_and_a_waiting_submitters_are_left_to_it() {
    let sb = Sandbox::new();
    let Some(redis) = Redis::start(&sb, &[]) else { return };
    let url = redis.url();
    let detached = submit(&sb, &redis, "q", &["--detach", ":::", "a", "b", "fail"]);
    assert_code(&detached, 0);
    // The submission's id on stdout (ID=$(muster submit --detach ...)), and in the message.
    let job = stdout(&detached).trim().to_owned();
    assert!(
        !job.is_empty() && stderr(&detached).contains(&format!("(submission {job})")),
        "{}",
        stderr(&detached)
    );
    // A result of a submitter that waits for it (not detached): not ours to take.
    let reply = redis.command(&["XADD", "muster:{q}:results", "*", "job", "waiting-one", "seq", "1"]);
    assert!(reply.is_some_and(|r| r.starts_with('$')), "XADD by hand");
    let script = "echo out $1; echo err $1 >&2; [ \"$1\" != fail ]";
    let _worker = Worker::start(&sb, &redis, "q", &["-j", "2"], &["sh", "-c", script, "sh"]);
    let waited = sb.run(&["results", "--broker", &url, "--queue", "q", "--job", &job, "--wait"], b"");
    assert_code(&waited, 1);
    let printed = stdout(&waited);
    let mut lines: Vec<&str> = printed.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["out a", "out b", "out fail"]);
    let err = stderr(&waited);
    assert!(
        err.contains("err b") && err.contains("task 3 (fail)") && err.contains("exited with status 1"),
        "{err}"
    );
    // Printed once: they are gone now, and the waiting submitter's result is still there.
    let again = sb.run(&["results", "--broker", &url, "--queue", "q", "--json"], b"");
    assert_code(&again, 0);
    assert_eq!(stdout(&again), "");
    assert_eq!(redis.number(&["XLEN", "muster:{q}:results"]), 1);
    // JSON, for scripts.
    let detached = submit(&sb, &redis, "q", &["--detach", ":::", "x y"]);
    assert_code(&detached, 0);
    let json = sb.run(&["results", "--broker", &url, "--queue", "q", "--wait", "--json"], b"");
    assert_code(&json, 0);
    let doc: serde_json::Value = serde_json::from_str(stdout(&json).trim()).expect("one JSON line");
    assert_eq!(doc["input"], "x y");
    assert_eq!(doc["stdout"], "out x y\n");
    assert_eq!(doc["outcome"], "done");
    let unknown = sb.run(&["results", "--broker", &url, "--queue", "q", "--job", "nope"], b"");
    assert_code(&unknown, 255);
    assert!(stderr(&unknown).contains("no detached submission nope"), "{}", stderr(&unknown));
}

#[test]
fn an_acl_user_in_the_url_is_used_and_bad_credentials_are_one_clear_error() {
    let sb = Sandbox::new();
    // alice may do exactly what the README lists; bob may not run scripts.
    let acl = [
        "--user",
        "alice",
        "on",
        ">s3cret",
        "~muster:*",
        "+@stream",
        "+@hash",
        "+get",
        "+set",
        "+@scripting",
        "+info",
        "+time",
        "--user",
        "bob",
        "on",
        ">pw",
        "~*",
        "+@all",
        "-@scripting",
        "--user",
        "carol",
        "on",
        ">pw",
        "~other:*",
        "+@all",
        "--user",
        "default",
        "off",
    ];
    let Some(redis) = Redis::start(&sb, &acl) else { return };
    let with = |credentials: &str| format!("redis://{credentials}127.0.0.1:{}", redis.port);
    let alice = with("alice:s3cret@");
    let _worker =
        Running(Some(sb.spawn(&["worker", "--broker", &alice, "--queue", "q", "-j", "1", "echo", "got"])));
    let output = sb.run(&["submit", "--broker", &alice, "--queue", "q", ":::", "x"], b"");
    assert_code(&output, 0);
    assert_eq!(stdout(&output), "got x\n");
    // The URL from the environment: the password stays out of every command line (`ps`).
    let mut from_env = sb.muster(&["worker", "--queue", "q2", "-j", "1", "echo", "env"]);
    from_env.env("MUSTER_BROKER", &alice).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let _env_worker = Running(Some(from_env.spawn().expect("worker starts")));
    let mut submitter = sb.muster(&["submit", "--queue", "q2", ":::", "y"]);
    submitter.env("MUSTER_BROKER", &alice);
    let output = util::feed(submitter, b"");
    assert_code(&output, 0);
    assert_eq!(stdout(&output), "env y\n");
    let help = sb.run(&["worker", "--help"], b"");
    assert!(stdout(&help).contains("MUSTER_BROKER"), "{}", stdout(&help));
    let bob = with("bob:pw@");
    let refused = sb.run(&["worker", "--broker", &bob, "--queue", "q", "-j", "1", "echo"], b"");
    assert_code(&refused, 255);
    assert!(stderr(&refused).contains("lacks a command muster needs"), "{}", stderr(&refused));
    // Every command allowed, but not the queue's keys: said as such.
    let carol = with("carol:pw@");
    let keyless = sb.run(&["status", "--broker", &carol, "--queue", "q"], b"");
    assert_code(&keyless, 255);
    assert!(stderr(&keyless).contains("may not use the queue's keys"), "{}", stderr(&keyless));
    for (credentials, says) in
        [("alice:wrong@", "refused the user name or password"), ("", "refused the credentials")]
    {
        let output = sb.run(&["status", "--broker", &with(credentials), "--queue", "q"], b"");
        assert_code(&output, 255);
        assert!(stderr(&output).contains(says), "{credentials}: {}", stderr(&output));
        assert_eq!(stderr(&output).lines().count(), 1, "one line: {}", stderr(&output));
    }
}

/// A certificate authority and a server certificate for 127.0.0.1 it signed, made with the
/// openssl CLI: (CA file, server certificate, server key), or `None` without openssl.
fn tls_files(sb: &Sandbox) -> Option<(PathBuf, PathBuf, PathBuf)> {
    let openssl = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(sb.dir())
            .stderr(Stdio::null())
            .status()
            .ok()?
            .success()
            .then_some(())
    };
    let made = openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=muster test CA",
    ])
    .and_then(|()| {
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ])
    });
    if made.is_none() {
        println!("skipped: the openssl command is missing (Debian package openssl; .ci/run installs it)");
        return None;
    }
    std::fs::write(
        sb.path("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .expect("ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    ])
    .expect("sign the server certificate");
    Some((sb.path("ca.pem"), sb.path("server.pem"), sb.path("server.key")))
}

#[test]
fn rediss_urls_speak_tls_and_an_untrusted_certificate_is_one_clear_error() {
    let sb = Sandbox::new();
    let Some((ca, cert, key)) = tls_files(&sb) else { return };
    let port = TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
    let tls = [
        "--port".to_string(),
        "0".into(),
        "--tls-port".into(),
        port.to_string(),
        "--tls-cert-file".into(),
        cert.display().to_string(),
        "--tls-key-file".into(),
        key.display().to_string(),
        "--tls-auth-clients".into(),
        "no".into(),
    ];
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    let Some(_redis) = Redis::start(&sb, &tls) else { return };
    let url = format!("rediss://127.0.0.1:{port}");
    let trusting = |args: &[&str]| {
        let mut command = sb.muster(args);
        command.env("SSL_CERT_FILE", &ca);
        command
    };
    let _worker = Running(Some(
        trusting(&["worker", "--broker", &url, "--queue", "q", "-j", "1", "echo", "over tls"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("worker"),
    ));
    let output =
        trusting(&["submit", "--broker", &url, "--queue", "q", ":::", "x"]).output().expect("submit");
    assert_code(&output, 0);
    assert_eq!(stdout(&output), "over tls x\n");
    // Without the CA, the server's certificate is not trusted: one line that says so.
    let untrusted = sb.run(&["status", "--broker", &url, "--queue", "q"], b"");
    assert_code(&untrusted, 255);
    assert!(stderr(&untrusted).contains("certificate is not trusted"), "{}", stderr(&untrusted));
    assert_eq!(stderr(&untrusted).lines().count(), 1);
}

#[test]
fn an_unreachable_or_unsafe_redis_is_one_clear_error() {
    let sb = Sandbox::new();
    let closed = TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let output = sb.run(
        &["submit", "--broker", &format!("redis://127.0.0.1:{closed}"), "--queue", "q", ":::", "a"],
        b"",
    );
    assert_code(&output, 255);
    assert!(stderr(&output).contains("cannot reach Redis at 127.0.0.1"), "{}", stderr(&output));
    let Some(redis) = Redis::start(&sb, &["--maxmemory-policy", "allkeys-lru"]) else { return };
    let output = sb.run(&["worker", "--broker", &redis.url(), "--queue", "q", "echo"], b"");
    assert_code(&output, 255);
    assert!(stderr(&output).contains("noeviction"), "{}", stderr(&output));
}
