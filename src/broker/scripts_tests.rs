//! The fenced scripts against a real `redis-server` (skipped, with a printed reason, when it
//! is not installed): what a repeated call does when the first one's reply was lost.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{ensure_group, scripts, Connection, Fielded, Queue, GROUP};

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
    read_as(link, queue, worker);
    id
}

/// `worker` reads what waits on the queue (delivery 1 of each).
fn read_as(link: &mut Connection, queue: &Queue, worker: &str) {
    let read: redis::Value = link
        .call(None, |c| {
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(worker)
                .arg("STREAMS")
                .arg(queue.tasks())
                .arg(">")
                .query(c)
        })
        .expect("XREADGROUP");
    assert!(matches!(read, redis::Value::Array(_)), "nothing to read: {read:?}");
}

fn stat(link: &mut Connection, queue: &Queue, name: &str) -> i64 {
    let value: Option<i64> =
        link.call(None, |c| redis::cmd("HGET").arg(queue.stats()).arg(name).query(c)).expect("HGET");
    value.unwrap_or(0)
}

fn complete(link: &mut Connection, queue: &Queue, worker: &str, again: &str, id: &str) -> Vec<i64> {
    complete_tasks(link, queue, worker, again, &[(id, 0, 0)])
}

/// Records successes of (entry, place, pack size) tasks, on delivery 1, for submission "j".
fn complete_tasks(
    link: &mut Connection,
    queue: &Queue,
    worker: &str,
    again: &str,
    tasks: &[(&str, u32, u32)],
) -> Vec<i64> {
    link.call(None, |c| {
        let mut invocation = scripts::recording(&scripts::COMPLETE, queue);
        invocation.arg(GROUP).arg(worker).arg(again);
        for (id, place, size) in tasks {
            let mut fields = Vec::new();
            for (field, value) in [("outcome", "done".to_owned()), ("seq", place.to_string())] {
                super::push_netstring(&mut fields, field.as_bytes());
                super::push_netstring(&mut fields, value.as_bytes());
            }
            let mut result = Vec::new();
            super::push_netstring(&mut result, &fields);
            invocation.arg(*id).arg(*place).arg(*size).arg(1).arg("j").arg(result);
        }
        invocation.invoke(c)
    })
    .expect("COMPLETE")
}

fn fail(link: &mut Connection, queue: &Queue, worker: &str, again: &str, id: &str, retries: u32) -> i64 {
    fail_task(link, queue, worker, again, (id, 0, 0), retries)
}

/// Records a failed attempt of an (entry, place, pack size) task on delivery 1.
fn fail_task(
    link: &mut Connection,
    queue: &Queue,
    worker: &str,
    again: &str,
    (id, place, size): (&str, u32, u32),
    retries: u32,
) -> i64 {
    link.call(None, |c| {
        scripts::recording(&scripts::FAIL, queue)
            .arg(GROUP)
            .arg(id)
            .arg(worker)
            .arg(1)
            .arg(retries)
            .arg("exited with status 1")
            .arg(again)
            .arg(place)
            .arg(size)
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

/// A queue with one pack of `n` tasks (numbers 1..=n, submission "j"), read by `worker`; its
/// entry id.
fn one_held_pack(link: &mut Connection, queue: &Queue, worker: &str, n: u64) -> String {
    ensure_group(link, queue, None).expect("group");
    let values: Vec<Vec<Vec<u8>>> = (1..=n).map(|seq| vec![format!("v{seq}").into_bytes()]).collect();
    let xadd = super::pack_entry(
        queue,
        "j",
        1,
        values.iter().enumerate().map(|(i, v)| (i as u64 + 1, v.as_slice())),
    );
    let id: String = link.call(None, |c| xadd.query(c)).expect("XADD");
    read_as(link, queue, worker);
    id
}

/// A stream's entries.
fn entries(link: &mut Connection, key: &str) -> Vec<super::Entry> {
    let all: redis::Value =
        link.call(None, |c| redis::cmd("XRANGE").arg(key).arg("-").arg("+").query(c)).expect("XRANGE");
    super::Entry::parse_all(&all)
}

#[test]
fn a_packs_tasks_are_recorded_once_each_and_it_is_acknowledged_with_its_last() {
    let Some((_server, mut link)) = server() else { return };
    let queue = Queue::new("q").expect("queue");
    let id = one_held_pack(&mut link, &queue, "w1", 3);
    assert_eq!(complete_tasks(&mut link, &queue, "w1", "0", &[(&id, 0, 3), (&id, 1, 3)]), [1, 1]);
    assert_eq!(entries(&mut link, &queue.tasks()).len(), 1, "the pack waits for its last task");
    // The reply was lost: the repeat knows what was recorded.
    assert_eq!(complete_tasks(&mut link, &queue, "w1", "1", &[(&id, 1, 3)]), [2]);
    assert_eq!(complete_tasks(&mut link, &queue, "w1", "0", &[(&id, 2, 3)]), [1]);
    assert!(entries(&mut link, &queue.tasks()).is_empty(), "acknowledged and deleted with its last task");
    assert_eq!(stat(&mut link, &queue, "done"), 3);
    assert_eq!(stat(&mut link, &queue, "rejected"), 0);
    // One results entry per call that recorded something, three results in all.
    let results = entries(&mut link, &queue.results());
    assert_eq!(results.len(), 2);
    let places: Vec<String> = results.iter().flat_map(super::Entry::results).map(|r| r.text("seq")).collect();
    assert_eq!(places, ["0", "1", "2"]);
    let marks: Option<String> = link
        .call(None, |c| redis::cmd("HGET").arg(queue.failures()).arg(format!("{id}:done")).query(c))
        .expect("HGET");
    assert_eq!(marks, None, "nothing kept for a finished pack");
    // Someone else's completion of a pack's task is refused.
    let other = one_held_pack(&mut link, &queue, "w1", 2);
    assert_eq!(complete_tasks(&mut link, &queue, "intruder", "0", &[(&other, 0, 2)]), [0]);
}

#[test]
fn a_failed_task_of_a_pack_is_retried_alone_and_its_submitter_told_where_it_went() {
    let Some((_server, mut link)) = server() else { return };
    let queue = Queue::new("q").expect("queue");
    let pack = one_held_pack(&mut link, &queue, "w1", 2);
    assert_eq!(fail_task(&mut link, &queue, "w1", "0", (&pack, 0, 2), 1), 1, "retried");
    assert_eq!(fail_task(&mut link, &queue, "w1", "1", (&pack, 0, 2), 1), 3, "a repeat counts nothing");
    let tasks = entries(&mut link, &queue.tasks());
    assert_eq!(tasks.len(), 2, "the pack, and task 1 alone");
    let alone = &tasks[1];
    assert_eq!(
        (alone.text("seq"), alone.text("failed"), alone.text("values")),
        ("1".into(), "1".into(), "2:v1,".into())
    );
    let notice = entries(&mut link, &queue.results());
    assert_eq!(notice.len(), 1);
    assert_eq!(super::moved(&notice[0]), [(1, alone.id.clone())]);
    assert_eq!(complete_tasks(&mut link, &queue, "w1", "0", &[(&pack, 1, 2)]), [1]);
    let tasks = entries(&mut link, &queue.tasks());
    assert_eq!(
        tasks.len(),
        1,
        "the pack is gone with its last task: {:?}",
        tasks.iter().map(|t| &t.id).collect::<Vec<_>>()
    );
    // Its second failure is its last (--retries 1): dead-lettered, with both attempts counted.
    read_as(&mut link, &queue, "w2");
    assert_eq!(fail(&mut link, &queue, "w2", "0", &alone.id, 1), 2, "dead-lettered");
    let dead = entries(&mut link, &queue.dead());
    assert_eq!((dead.len(), dead[0].text("attempts"), dead[0].text("seq")), (1, "2".into(), "1".into()));
    assert_eq!((stat(&mut link, &queue, "retried"), stat(&mut link, &queue, "dead")), (1, 1));
}

#[test]
fn an_expired_pack_goes_back_to_the_queue_one_entry_per_unrecorded_task() {
    let Some((_server, mut link)) = server() else { return };
    let queue = Queue::new("q").expect("queue");
    let pack = one_held_pack(&mut link, &queue, "w1", 3);
    assert_eq!(complete_tasks(&mut link, &queue, "w1", "0", &[(&pack, 1, 3)]), [1]);
    // w1 stopped renewing: w2 reclaims after a lease of 0 ms.
    let reply: redis::Value = link
        .call(None, |c| {
            scripts::recording(&scripts::RECLAIM, &queue)
                .arg(GROUP)
                .arg("w2")
                .arg(0)
                .arg("0-0")
                .arg(10)
                .arg(scripts::LOST_HOLDERS)
                .invoke(c)
        })
        .expect("RECLAIM");
    let redis::Value::Array(parts) = reply else { panic!("reply {reply:?}") };
    assert_eq!(parts.get(2).and_then(super::integer), Some(2), "two tasks went back");
    let tasks = entries(&mut link, &queue.tasks());
    let alone: Vec<(String, String)> = tasks.iter().map(|t| (t.text("seq"), t.text("lost"))).collect();
    assert_eq!(
        alone,
        [("1".into(), "1".into()), ("3".into(), "1".into())],
        "the recorded task 2 is not run again"
    );
    let moved: Vec<_> = entries(&mut link, &queue.results()).iter().flat_map(super::moved).collect();
    assert_eq!(moved, [(1, tasks[0].id.clone()), (3, tasks[1].id.clone())]);
    // w1's late completion of the pack is refused.
    assert_eq!(complete_tasks(&mut link, &queue, "w1", "0", &[(&pack, 0, 3)]), [0]);
}

#[test]
fn a_pack_given_back_returns_as_a_pack_of_its_unrecorded_tasks() {
    let Some((_server, mut link)) = server() else { return };
    let queue = Queue::new("q").expect("queue");
    let pack = one_held_pack(&mut link, &queue, "w1", 3);
    assert_eq!(complete_tasks(&mut link, &queue, "w1", "0", &[(&pack, 0, 3)]), [1]);
    let given: i64 = link
        .call(None, |c| {
            scripts::recording(&scripts::GIVE_BACK, &queue).arg(GROUP).arg(&pack).arg("w1").arg(1).invoke(c)
        })
        .expect("GIVE_BACK");
    assert_eq!(given, 1);
    let tasks = entries(&mut link, &queue.tasks());
    assert_eq!(tasks.len(), 1);
    let back = super::decode_pack(tasks[0].get("pack").unwrap_or_default()).expect("a pack");
    assert_eq!(back, [(b"2".to_vec(), vec![b"v2".to_vec()]), (b"3".to_vec(), vec![b"v3".to_vec()])]);
    assert_eq!(tasks[0].text("n"), "2");
    // Not pending: any worker reads it at once.
    let pending: Vec<redis::Value> = link
        .call(None, |c| {
            redis::cmd("XPENDING").arg(queue.tasks()).arg(GROUP).arg("-").arg("+").arg(10).query(c)
        })
        .expect("XPENDING");
    assert!(pending.is_empty());
}
