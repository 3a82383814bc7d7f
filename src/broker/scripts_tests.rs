//! The fenced scripts against a real `redis-server` (skipped, with a printed reason, when it
//! is not installed): what a repeated call does when the first one's reply was lost.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{ensure_group, scripts, Connection, Queue, GROUP};

/// A redis-server of the test's own, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fresh server and a link to it, or `None` when redis-server is missing.
fn server() -> Option<(Server, Connection)> {
    let port = TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    let spawned = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(child) = spawned else {
        println!("skipped: redis-server is not installed (Debian package redis-server; .ci/run installs it)");
        return None;
    };
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    let url = format!("redis://127.0.0.1:{port}");
    // A server that accepts connections may not answer yet (still starting, on a busy
    // machine): try until the deadline, and say why at the end.
    let mut last_error = String::new();
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            match Connection::connect(&url) {
                Ok(link) => return Some((server, link)),
                Err(err) => last_error = err.to_string(),
            }
        }
        assert!(Instant::now() < deadline, "redis-server did not start on port {port}: {last_error}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A queue with one task, read by `worker` (delivery 1); its entry id.
fn one_held_task(link: &mut Connection, queue: &Queue, worker: &str) -> String {
    ensure_group(link, queue, None).expect("group");
    let id: String = link
        .call(None, |c| redis::cmd("XADD").arg(queue.tasks()).arg("*").arg("values").arg("1:x,").query(c))
        .expect("XADD");
    let _: redis::Value = link
        .call(None, |c| {
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(worker)
                .arg("COUNT")
                .arg(1)
                .arg("STREAMS")
                .arg(queue.tasks())
                .arg(">")
                .query(c)
        })
        .expect("XREADGROUP");
    id
}

fn stat(link: &mut Connection, queue: &Queue, name: &str) -> i64 {
    let value: Option<i64> =
        link.call(None, |c| redis::cmd("HGET").arg(queue.stats()).arg(name).query(c)).expect("HGET");
    value.unwrap_or(0)
}

fn complete(link: &mut Connection, queue: &Queue, worker: &str, again: &str, id: &str) -> Vec<i64> {
    let script = redis::Script::new(scripts::COMPLETE);
    link.call(None, |c| {
        scripts::recording(&script, queue, false)
            .arg(GROUP)
            .arg(worker)
            .arg(again)
            .arg(id)
            .arg(1)
            .arg(2)
            .arg("outcome")
            .arg("done")
            .invoke(c)
    })
    .expect("COMPLETE")
}

fn fail(link: &mut Connection, queue: &Queue, worker: &str, again: &str, id: &str, retries: u32) -> i64 {
    let script = redis::Script::new(scripts::FAIL);
    link.call(None, |c| {
        scripts::recording(&script, queue, true)
            .arg(GROUP)
            .arg(id)
            .arg(worker)
            .arg(1)
            .arg(retries)
            .arg("exited with status 1")
            .arg(again)
            .arg("outcome")
            .arg("failed")
            .invoke(c)
    })
    .expect("FAIL")
}

#[test]
fn a_completion_repeated_after_a_lost_reply_is_neither_recorded_twice_nor_rejected() {
    let Some((_server, mut link)) = server() else { return };
    let queue = Queue::new("q").expect("queue");
    let id = one_held_task(&mut link, &queue, "w1");
    assert_eq!(complete(&mut link, &queue, "w1", "0", &id), [1]);
    assert_eq!(complete(&mut link, &queue, "w1", "1", &id), [2], "the repeat knows it was recorded");
    assert_eq!(stat(&mut link, &queue, "done"), 1);
    assert_eq!(stat(&mut link, &queue, "rejected"), 0);
    let results: u64 = link.call(None, |c| redis::cmd("XLEN").arg(queue.results()).query(c)).expect("XLEN");
    assert_eq!(results, 1, "one result");
    // A completion from someone who never held it is still refused.
    let other = one_held_task(&mut link, &queue, "w1");
    assert_eq!(complete(&mut link, &queue, "intruder", "0", &other), [0]);
    assert_eq!(stat(&mut link, &queue, "rejected"), 1);
}

#[test]
fn a_failure_repeated_after_a_lost_reply_burns_one_retry_not_two() {
    let Some((_server, mut link)) = server() else { return };
    let queue = Queue::new("q").expect("queue");
    let id = one_held_task(&mut link, &queue, "w1");
    assert_eq!(fail(&mut link, &queue, "w1", "0", &id, 1), 1, "retried");
    // Counted twice, the second would exceed --retries 1 and dead-letter the task.
    assert_eq!(fail(&mut link, &queue, "w1", "1", &id, 1), 1, "still one retry used");
    assert_eq!(stat(&mut link, &queue, "retried"), 1);
    assert_eq!(stat(&mut link, &queue, "dead"), 0);
    let failures: Option<i64> =
        link.call(None, |c| redis::cmd("HGET").arg(queue.failures()).arg(&id).query(c)).expect("HGET");
    assert_eq!(failures, Some(1));
}
