//! Named scenarios for the thread pool.

use super::*;
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;

/// Counts how often each item is dropped, so a test can prove nothing is lost or doubled.
struct Tracked {
    id: usize,
    drops: Arc<Vec<AtomicUsize>>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops[self.id].fetch_add(1, Ordering::SeqCst);
    }
}

fn drop_counters(n: usize) -> Arc<Vec<AtomicUsize>> {
    Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect())
}

#[test]
fn submit_and_join() {
    let pool = Pool::new(2).expect("pool");
    let handles: Vec<_> = (0..100u64).map(|i| pool.submit(move || i * i)).collect();
    let sum: u64 = handles.into_iter().map(|h| h.join().expect("task ran")).sum();
    assert_eq!(sum, (0..100u64).map(|i| i * i).sum::<u64>());
}

#[test]
fn a_panicking_task_fails_alone_and_the_pool_keeps_going() {
    let pool = Pool::new(2).expect("pool");
    let bad = pool.submit(|| -> u8 { panic!("task exploded") });
    assert_eq!(bad.join(), Err(TaskError::Panicked("task exploded".into())));
    let good: Vec<_> = (0..10).map(|i| pool.submit(move || i)).collect();
    assert_eq!(good.into_iter().map(|h| h.join().expect("ran")).sum::<i32>(), 45);
    assert!(pool.shutdown().not_run.is_empty());
}

#[test]
fn try_join_hands_the_handle_back_until_finished() {
    let pool = Pool::new(1).expect("pool");
    let (release, gate) = cb::bounded::<()>(0);
    let blocked = pool.submit(move || gate.recv().is_ok());
    let blocked = blocked.try_join().expect_err("not finished while gated");
    assert!(!blocked.is_finished());
    release.send(()).expect("task waits on the gate");
    assert_eq!(blocked.join(), Ok(true));
}

#[test]
fn cancel_before_start_means_not_run() {
    let pool = Pool::new(1).expect("pool");
    let (release, gate) = cb::bounded::<()>(0);
    let blocker = pool.submit(move || gate.recv().is_ok());
    let queued = pool.submit(|| "ran");
    assert!(queued.cancel());
    release.send(()).expect("blocker waits");
    assert_eq!(queued.join(), Err(TaskError::NotRun));
    assert_eq!(blocker.join(), Ok(true));
}

#[test]
fn cancel_after_finish_does_nothing() {
    let pool = Pool::new(1).expect("pool");
    let handle = pool.submit(|| 5);
    while !handle.is_finished() {
        std::thread::yield_now();
    }
    assert!(!handle.cancel());
    assert_eq!(handle.join(), Ok(5));
}

#[test]
fn shutdown_drains_every_queued_task() {
    let pool = Pool::new(2).expect("pool");
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..1000 {
        let ran = ran.clone();
        pool.submit(move || ran.fetch_add(1, Ordering::SeqCst));
    }
    assert_eq!(pool.shutdown(), ShutdownReport::default());
    assert_eq!(ran.load(Ordering::SeqCst), 1000);
}

#[test]
fn shutdown_now_returns_what_it_did_not_run() {
    let pool = Pool::new(1).expect("pool");
    let (started_tx, started) = cb::bounded::<()>(1);
    let (release, gate) = cb::bounded::<()>(0);
    let blocker = pool.submit(move || {
        started_tx.send(()).expect("test waits");
        gate.recv().is_ok()
    });
    let queued: Vec<_> = (0..5).map(|i| pool.submit(move || i)).collect();
    started.recv().expect("blocker started");
    let releaser = std::thread::spawn(move || {
        // Let the running task finish only after shutdown_now has had a chance to abandon.
        std::thread::sleep(Duration::from_millis(20));
        let _ = release.send(());
    });
    let mut report = pool.shutdown_now();
    releaser.join().expect("releaser");
    report.not_run.sort_unstable();
    assert_eq!(report.not_run, queued.iter().map(TaskHandle::id).collect::<Vec<_>>());
    assert_eq!(blocker.join(), Ok(true), "a running task is allowed to finish");
    for handle in queued {
        assert_eq!(handle.join(), Err(TaskError::NotRun));
    }
}

#[test]
fn shutdown_within_drains_when_there_is_time() {
    let pool = Pool::new(2).expect("pool");
    let handles: Vec<_> = (0..50).map(|i| pool.submit(move || i)).collect();
    assert!(pool.shutdown_within(Duration::from_secs(30)).not_run.is_empty());
    assert!(handles.into_iter().all(|h| h.join().is_ok()));
}

#[test]
fn no_task_is_lost_or_run_twice() {
    let n = 10_000;
    let drops = drop_counters(n);
    let runs = Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect::<Vec<_>>());
    let pool = Pool::new(3).expect("pool");
    let mut handles = Vec::new();
    for id in 0..n {
        let item = Tracked { id, drops: drops.clone() };
        let runs = runs.clone();
        handles.push(pool.submit(move || {
            runs[item.id].fetch_add(1, Ordering::SeqCst);
            item.id
        }));
    }
    // Stop now half-way: every task either ran once or is reported not run, never both.
    let mut report = pool.shutdown_now();
    report.not_run.sort_unstable();
    let mut ran = 0;
    for handle in handles {
        let id = handle.id();
        match handle.join() {
            Ok(item) => {
                assert_eq!(runs[item].load(Ordering::SeqCst), 1);
                ran += 1;
            }
            Err(TaskError::NotRun) => assert!(report.not_run.binary_search(&id).is_ok()),
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ran + report.not_run.len(), n);
    assert!(drops.iter().all(|d| d.load(Ordering::SeqCst) == 1), "every item dropped exactly once");
    assert!(runs.iter().all(|r| r.load(Ordering::SeqCst) <= 1));
}

#[test]
fn dropping_the_pool_drains_it() {
    let ran = Arc::new(AtomicUsize::new(0));
    {
        let pool = Pool::new(2).expect("pool");
        for _ in 0..100 {
            let ran = ran.clone();
            pool.submit(move || ran.fetch_add(1, Ordering::SeqCst));
        }
    }
    assert_eq!(ran.load(Ordering::SeqCst), 100);
}

#[test]
fn map_keeps_input_order() {
    let pool = Pool::new(3).expect("pool");
    let out: Vec<u64> = pool.map(0..1000u64, |i| i * 2).map(|r| r.expect("ran")).collect();
    assert_eq!(out, (0..1000u64).map(|i| i * 2).collect::<Vec<_>>());
}

#[test]
fn map_reports_panics_in_place() {
    let pool = Pool::new(2).expect("pool");
    let out: Vec<_> = pool.map([1, 0, 2], |d| 10 / d).collect();
    assert_eq!(out[0], Ok(10));
    assert!(matches!(out[1], Err(TaskError::Panicked(_))));
    assert_eq!(out[2], Ok(5));
}

#[test]
fn map_streams_with_bounded_work_in_flight() {
    let pool = Pool::new(2).expect("pool");
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let inputs = (0..).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    // An endless input: only a window's worth may be read ahead of what we consumed.
    let mut results = pool.map(inputs, |i: u64| i).window(8);
    for expected in 0..100 {
        assert_eq!(results.next(), Some(Ok(expected)));
        assert!(pulled.load(Ordering::SeqCst) <= expected as usize + 1 + 8);
    }
}

#[test]
fn map_unordered_yields_every_input_once() {
    let pool = Pool::new(3).expect("pool");
    let mut seen: Vec<(Seq, u64)> =
        pool.map_unordered(0..500u64, |i| i + 1).map(|(seq, r)| (seq, r.expect("ran"))).collect();
    seen.sort_unstable();
    assert_eq!(seen, (1..=500u64).map(|s| (s, s)).collect::<Vec<_>>());
}

use crate::task::Seq;

#[test]
fn map_unordered_bounded_window() {
    let pool = Pool::new(2).expect("pool");
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let inputs = (0..).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let results = pool.map_unordered(inputs, |i: u64| i).window(4);
    assert_eq!(results.take(50).count(), 50);
    assert!(pulled.load(Ordering::SeqCst) <= 50 + 4);
}

#[test]
fn scope_borrows_from_the_caller() {
    let words = ["a".to_string(), "bb".into(), "ccc".into()];
    let total = Mutex::new(0);
    let lengths = scope(2, |s| {
        let handles: Vec<_> = words
            .iter()
            .map(|w| {
                s.submit(|| {
                    *total.lock().expect("lock") += w.len();
                    w.len()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("ran")).collect::<Vec<_>>()
    });
    assert_eq!(lengths, [1, 2, 3]);
    assert_eq!(*total.lock().expect("lock"), 6);
}

#[test]
fn scope_waits_for_unjoined_tasks() {
    let ran = AtomicUsize::new(0);
    scope(2, |s| {
        for _ in 0..100 {
            s.submit(|| ran.fetch_add(1, Ordering::SeqCst));
        }
    });
    assert_eq!(ran.load(Ordering::SeqCst), 100);
}

#[test]
fn builder_names_threads() {
    let pool = Pool::builder().threads(1).name("named").build().expect("pool");
    let name = pool.submit(|| std::thread::current().name().map(str::to_owned)).join();
    assert_eq!(name, Ok(Some("named-0".to_owned())));
}
