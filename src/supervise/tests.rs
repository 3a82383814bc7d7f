//! Named scenarios for the supervisor and its control socket.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::control::{self, ControlError, ControlServer, Endpoint};
use super::*;

#[path = "../../tests/support/poll.rs"]
mod poll;
use poll::wait_for;

/// What the event callback heard, as text, in order.
#[derive(Clone, Default)]
struct Heard(Arc<Mutex<Vec<String>>>);

impl Heard {
    fn sink(&self) -> impl Fn(Event<'_>) + Send + Sync + 'static {
        let heard = self.0.clone();
        move |event| {
            let text = match event {
                Event::Started { slot, restarts, .. } => format!("started {slot} after {restarts}"),
                Event::SpawnFailed { slot, .. } => format!("spawn failed {slot}"),
                Event::Exited { slot, status, .. } => format!("exited {slot} {}", describe_exit(status)),
                Event::Restarting { slot, delay, in_a_row, limit } => {
                    format!("restarting {slot} in {}ms ({in_a_row}/{limit})", delay.as_millis())
                }
                Event::GaveUp { slot, in_a_row } => format!("gave up {slot} after {in_a_row}"),
                Event::Stopped { slot, how, .. } => format!("stopped {slot} killed={}", how.killed),
                Event::Lines { slot, stream, lines } => {
                    let mut heard = heard.lock().expect("lock");
                    for line in lines.split_inclusive(|&b| b == b'\n') {
                        heard.push(format!("line {slot} {stream:?} {}", String::from_utf8_lossy(line)));
                    }
                    return;
                }
            };
            heard.lock().expect("lock").push(text);
        }
    }

    fn all(&self) -> Vec<String> {
        self.0.lock().expect("lock").clone()
    }

    fn count(&self, prefix: &str) -> usize {
        self.all().iter().filter(|t| t.starts_with(prefix)).count()
    }

    fn wait_until(&self, what: &str, condition: impl Fn(&[String]) -> bool) {
        let held = wait_for(Duration::from_secs(10), || condition(&self.all()));
        assert!(held, "waiting for {what}; heard {:#?}", self.all());
    }
}

fn sh(script: &'static str) -> impl Fn(usize) -> Command + Send + Sync + 'static {
    move |_| {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }
}

/// Slot 1 runs `crash` (at once); the other slots run until stopped.
fn first_crashes(crash: &'static str) -> impl Fn(usize) -> Command + Send + Sync + 'static {
    move |slot| {
        let mut command = Command::new("sh");
        command.args(["-c", if slot == 1 { crash } else { "exec sleep 1000" }]);
        command
    }
}

fn quick(workers: usize) -> SuperviseConfig {
    let mut config = SuperviseConfig::new(workers);
    config.backoff = Duration::from_millis(10);
    config.grace = Duration::from_secs(5);
    config
}

fn ended(supervisor: &Supervisor) -> bool {
    supervisor.ended().recv_timeout(Duration::from_secs(10)).is_err()
}

#[test]
fn backoff_doubles_up_to_its_maximum() {
    let mut config = quick(1);
    config.backoff = Duration::from_millis(100);
    config.backoff_max = Duration::from_secs(1);
    let delays: Vec<u128> = (1..=6).map(|n| config.backoff_for(n).as_millis()).collect();
    assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    assert_eq!(config.backoff_for(u32::MAX), Duration::from_secs(1));
}

#[test]
fn output_lines_arrive_whole_and_attributed() {
    let heard = Heard::default();
    let mut config = quick(2);
    config.capture_output = true;
    config.restart = Restart::Never;
    let script = "printf 'a'; sleep 0.05; printf 'b\\n'; echo \"w$MUSTER_WORKER\" >&2; printf 'tail'";
    let supervisor = Supervisor::start(config, sh(script), heard.sink()).expect("start");
    assert!(ended(&supervisor));
    let all = heard.all();
    for slot in 1..=2 {
        assert!(all.contains(&format!("line {slot} Stdout ab\n")), "{all:#?}");
        assert!(all.contains(&format!("line {slot} Stderr w{slot}\n")), "{all:#?}");
        assert!(all.contains(&format!("line {slot} Stdout tail\n")), "{all:#?}");
        // The last lines are delivered before the exit is reported.
        let exited = all.iter().position(|t| *t == format!("exited {slot} exit 0")).expect("exited");
        let tail = all.iter().position(|t| *t == format!("line {slot} Stdout tail\n")).expect("tail");
        assert!(tail < exited, "{all:#?}");
    }
    assert!(supervisor.stop().iter().all(|w| w.state == State::Ended));
}

#[test]
fn a_crashing_worker_backs_off_then_is_given_up_without_touching_the_others() {
    let heard = Heard::default();
    let mut config = quick(2);
    config.max_restarts = 3;
    let supervisor = Supervisor::start(config, first_crashes("exit 3"), heard.sink()).expect("start");
    heard.wait_until("slot 1 given up", |all| all.iter().any(|t| t == "gave up 1 after 3"));
    let slot1: Vec<String> =
        heard.all().into_iter().filter(|t| t.contains(" 1 ") || t.ends_with(" 1")).collect();
    assert_eq!(
        slot1,
        [
            "started 1 after 0",
            "exited 1 exit 3",
            "restarting 1 in 10ms (1/3)",
            "started 1 after 1",
            "exited 1 exit 3",
            "restarting 1 in 20ms (2/3)",
            "started 1 after 2",
            "exited 1 exit 3",
            "restarting 1 in 40ms (3/3)",
            "started 1 after 3",
            "exited 1 exit 3",
            "gave up 1 after 3",
        ]
    );
    let board = supervisor.board().snapshot();
    assert_eq!((board[0].state, board[0].restarts), (State::GaveUp, 3));
    assert_eq!(board[1].state, State::Running);
    assert_eq!(heard.count("started 2"), 1);
    let last = supervisor.stop();
    assert_eq!(last[1].state, State::Stopped);
    assert_eq!(heard.count("stopped 2 killed=false"), 1, "{:#?}", heard.all());
}

#[test]
fn a_long_enough_run_resets_the_count_of_restarts_in_a_row() {
    let heard = Heard::default();
    let mut config = quick(1);
    config.max_restarts = 1;
    // Every run counts as stable, so the limit of one restart in a row is never reached.
    config.stable = Duration::ZERO;
    let supervisor = Supervisor::start(config, sh("exit 1"), heard.sink()).expect("start");
    heard.wait_until("four restarts", |all| all.iter().filter(|t| t.starts_with("restarting")).count() >= 4);
    assert_eq!(heard.count("gave up"), 0);
    assert!(heard.all().iter().filter(|t| t.starts_with("restarting")).all(|t| t.ends_with("(1/1)")));
    supervisor.stop();
}

#[test]
fn restart_policies_decide_what_ends_for_good() {
    // (policy, script, restarted?)
    let cases = [
        (Restart::OnFailure, "exit 0", false),
        (Restart::OnFailure, "kill -9 $$", true),
        (Restart::Always, "exit 0", true),
        (Restart::Never, "exit 7", false),
    ];
    for (policy, script, restarted) in cases {
        let heard = Heard::default();
        let mut config = quick(1);
        config.restart = policy;
        config.max_restarts = 1;
        let supervisor = Supervisor::start(config, sh(script), heard.sink()).expect("start");
        assert!(ended(&supervisor), "{policy:?} {script}");
        assert_eq!(
            heard.count("restarting"),
            usize::from(restarted),
            "{policy:?} {script}: {:#?}",
            heard.all()
        );
        let state = supervisor.stop()[0].state;
        assert_eq!(state, if restarted { State::GaveUp } else { State::Ended }, "{policy:?} {script}");
    }
}

#[test]
fn a_command_that_cannot_start_is_retried_then_given_up() {
    let heard = Heard::default();
    let mut config = quick(1);
    config.max_restarts = 2;
    let command = |_| Command::new("/nonexistent/muster-test-program");
    let supervisor = Supervisor::start(config, command, heard.sink()).expect("start");
    assert!(ended(&supervisor));
    assert_eq!(heard.count("spawn failed 1"), 3, "{:#?}", heard.all());
    assert_eq!(heard.count("gave up 1 after 2"), 1);
}

#[test]
fn stop_costs_one_shared_grace_and_leaves_no_process() {
    let heard = Heard::default();
    let mut config = quick(3);
    config.grace = Duration::from_millis(300);
    config.capture_output = true;
    // Each worker ignores TERM and leaves a TERM-ignoring grandchild; it says when it is ready.
    let script = "trap '' TERM; sleep 1000 & echo ready; wait";
    let supervisor = Supervisor::start(config, sh(script), heard.sink()).expect("start");
    heard.wait_until("all ready", |all| all.iter().filter(|t| t.ends_with("ready\n")).count() == 3);
    let pids: Vec<u32> = supervisor.board().snapshot().iter().filter_map(|w| w.pid).collect();
    assert_eq!(pids.len(), 3);
    let started = Instant::now();
    let last = supervisor.stop();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(900), "three stubborn workers stopped one after another: {took:?}");
    assert!(last.iter().all(|w| w.state == State::Stopped && w.last_exit.is_some()));
    assert_eq!(heard.count("stopped"), 3);
    assert!(heard.all().iter().filter(|t| t.starts_with("stopped")).all(|t| t.ends_with("killed=true")));
    for pgid in pids {
        let gone = wait_for(Duration::from_secs(10), || {
            crate::process::live_group_members(pgid).map(|l| l.is_empty()).unwrap_or(false)
        });
        assert!(gone, "group {pgid} still has processes");
    }
}

#[test]
fn stop_during_a_long_backoff_returns_at_once() {
    let heard = Heard::default();
    let mut config = quick(1);
    config.backoff = Duration::from_secs(3600);
    let supervisor = Supervisor::start(config, sh("exit 1"), heard.sink()).expect("start");
    heard.wait_until("backing off", |all| all.iter().any(|t| t.starts_with("restarting")));
    let started = Instant::now();
    let last = supervisor.stop();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(last[0].state, State::Stopped);
}

#[test]
fn the_status_table_shows_pid_uptime_restarts_and_last_exit() {
    let heard = Heard::default();
    let mut config = quick(2);
    config.max_restarts = 0;
    let supervisor = Supervisor::start(config, first_crashes("exit 4"), heard.sink()).expect("start");
    heard.wait_until("slot 1 given up", |all| all.iter().any(|t| t.starts_with("gave up 1")));
    // Slot 2 may still be starting on a busy machine: the table is read once it runs.
    let deadline = Instant::now() + Duration::from_secs(20);
    while supervisor.board().snapshot()[1].pid.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let table = supervisor.board().render();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("WORKER"), "{table}");
    let row1: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row1[..2], ["1", "gave"], "{table}");
    assert!(lines[1].ends_with("exit 4"), "{table}");
    let row2: Vec<&str> = lines[2].split_whitespace().collect();
    let pid2 = supervisor.board().snapshot()[1].pid.expect("pid").to_string();
    assert_eq!([row2[0], row2[1], row2[2], row2[4], row2[5]], ["2", "running", &pid2, "0", "-"], "{table}");
    supervisor.stop();
}

#[test]
fn durations_read_like_uptimes() {
    let cases =
        [(0.25, "250ms"), (12.34, "12.3s"), (245.0, "4m05s"), (7620.0, "2h07m"), (273_600.0, "3d04h")];
    for (secs, text) in cases {
        assert_eq!(format_duration(Duration::from_secs_f64(secs)), text);
    }
}

#[test]
fn control_refuses_a_second_supervisor_and_answers_status_and_stop() {
    let dir = tempfile::tempdir().expect("temp dir");
    let endpoint = Endpoint::new(dir.path(), "unit").expect("name");
    let mut out = Vec::new();
    assert!(matches!(control::request(&endpoint, "status", &mut out), Err(ControlError::NotRunning { .. })));

    let mut server = ControlServer::bind(endpoint.clone()).expect("bind");
    match ControlServer::bind(endpoint.clone()) {
        Err(ControlError::AlreadyRunning { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
        other => panic!("second bind: {other:?}"),
    }
    let board = StatusBoard::new(2);
    let stops = Arc::new(Mutex::new(0));
    let counter = stops.clone();
    server.serve(board, move || *counter.lock().expect("lock") += 1).expect("serve");

    control::request(&endpoint, "status", &mut out).expect("status");
    let text = String::from_utf8(out).expect("utf-8");
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.lines().nth(2).is_some_and(|l| l.starts_with("2 ") && l.contains("starting")), "{text}");

    let mut unknown = Vec::new();
    assert!(matches!(control::request(&endpoint, "reboot", &mut unknown), Err(ControlError::Interrupted(_))));
    assert!(String::from_utf8_lossy(&unknown).contains("unknown request 'reboot'"));

    // `stop` is answered only when the supervisor says it has finished.
    let client_endpoint = endpoint.clone();
    let client = std::thread::spawn(move || {
        let mut out = Vec::new();
        control::request(&client_endpoint, "stop", &mut out)
            .map(|()| String::from_utf8_lossy(&out).into_owned())
    });
    assert!(wait_for(Duration::from_secs(10), || *stops.lock().expect("lock") == 1));
    server.finish("all stopped\n");
    let answer = client.join().expect("client").expect("stop answered");
    assert!(answer.starts_with("stopping 2 workers"), "{answer}");
    assert!(answer.ends_with("all stopped\n"), "{answer}");

    // Gone: nothing answers, and the name can be taken again.
    assert!(matches!(
        control::request(&endpoint, "status", &mut Vec::new()),
        Err(ControlError::NotRunning { .. })
    ));
    drop(ControlServer::bind(endpoint).expect("rebind"));
}

#[test]
fn a_socket_left_by_a_killed_supervisor_is_replaced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let endpoint = Endpoint::new(dir.path(), "stale").expect("name");
    // A listener dropped without cleanup leaves its socket file, as SIGKILL would.
    drop(std::os::unix::net::UnixListener::bind(endpoint.socket()).expect("bind"));
    assert!(endpoint.socket().exists());
    // A child another test spawns at that instant holds a copy of the listener until its exec
    // (it failed so once in CI): nobody answers once that copy is gone.
    assert!(wait_for(Duration::from_secs(10), || matches!(
        control::request(&endpoint, "status", &mut Vec::new()),
        Err(ControlError::NotRunning { .. })
    )));
    let mut server = ControlServer::bind(endpoint.clone()).expect("bind over a stale socket");
    server.serve(StatusBoard::new(1), || {}).expect("serve");
    control::request(&endpoint, "status", &mut Vec::new()).expect("answers");
}

#[test]
fn names_must_be_file_names() {
    for bad in ["", ".hidden", "a/b", "two words", "../up"] {
        assert!(matches!(Endpoint::new("/tmp", bad), Err(ControlError::BadName(_))), "{bad:?}");
    }
    assert!(Endpoint::new("/tmp", "web-1.prod_a").is_ok());
}

#[test]
fn kill_now_cuts_the_grace_period_short() {
    let heard = Heard::default();
    let mut config = quick(2);
    config.grace = Duration::from_secs(3600);
    config.capture_output = true;
    let supervisor =
        Supervisor::start(config, sh("trap '' TERM; echo ready; while :; do sleep 1; done"), heard.sink())
            .expect("start");
    heard.wait_until("all ready", |all| all.iter().filter(|t| t.ends_with("ready\n")).count() == 2);
    let handle = supervisor.stop_handle();
    handle.stop();
    heard
        .wait_until("stopping", |_| supervisor.board().snapshot().iter().all(|w| w.state == State::Stopping));
    handle.kill_now();
    let last = supervisor.stop();
    assert!(last.iter().all(|w| w.state == State::Stopped));
    assert_eq!(heard.count("stopped"), 2);
    assert!(heard.all().iter().filter(|t| t.starts_with("stopped")).all(|t| t.ends_with("killed=true")));
}

#[test]
fn the_board_counts_restarts_of_a_command_that_never_starts() {
    let heard = Heard::default();
    let mut config = quick(1);
    config.max_restarts = 2;
    let supervisor =
        Supervisor::start(config, |_| Command::new("/nonexistent/muster-test-program"), heard.sink())
            .expect("start");
    assert!(ended(&supervisor));
    let last = supervisor.stop();
    assert_eq!((last[0].state, last[0].restarts, last[0].pid), (State::GaveUp, 2, None));
}

#[test]
fn the_json_status_has_every_field_and_null_for_the_absent() {
    use std::os::unix::process::ExitStatusExt;
    let rows = [
        WorkerStatus {
            slot: 1,
            state: State::GaveUp,
            pid: Some(41),
            started: None,
            restarts: 3,
            last_exit: Some(std::process::ExitStatus::from_raw(4 << 8)),
        },
        WorkerStatus {
            slot: 2,
            state: State::Starting,
            pid: None,
            started: None,
            restarts: 0,
            last_exit: None,
        },
        WorkerStatus {
            slot: 3,
            state: State::Stopped,
            pid: Some(43),
            started: None,
            restarts: 1,
            last_exit: Some(std::process::ExitStatus::from_raw(9)),
        },
    ];
    assert_eq!(
        StatusBoard::render_json_rows(&rows),
        concat!(
            r#"[{"worker":1,"state":"gave up","pid":41,"uptime_s":null,"restarts":3,"exit_code":4,"exit_signal":null},"#,
            r#"{"worker":2,"state":"starting","pid":null,"uptime_s":null,"restarts":0,"exit_code":null,"exit_signal":null},"#,
            r#"{"worker":3,"state":"stopped","pid":43,"uptime_s":null,"restarts":1,"exit_code":null,"exit_signal":9}]"#
        )
    );
}
