//! Named scenarios for pipelines.

use super::*;
use crate::shutdown::Level;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// An item that counts its drops, so a test can prove none is lost or dropped twice.
struct Tracked {
    id: usize,
    drops: Arc<Vec<AtomicUsize>>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops[self.id].fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn fold_sums_like_the_seed() {
    let run = Pipeline::from_iter(1..=10_000u64, 10, Shutdown::new())
        .fold(2, || 0u64, |sum, x| *sum += x, |a, b| a + b)
        .expect("threads start");
    assert_eq!(run.value, 10_000 * 10_001 / 2);
    assert!(run.report.all_processed());
    assert_eq!(run.report.read, 10_000);
    assert_eq!(run.report.stopped, Level::Running);
}

#[test]
fn stages_transform_in_sequence() {
    let mut seen = Vec::new();
    let run = Pipeline::from_iter(1..=100u32, 4, Shutdown::new())
        .stage(3, |x| x * 2)
        .stage(2, |x| format!("<{x}>"))
        .sink(|seq, s| seen.push((seq, s)))
        .expect("threads start");
    seen.sort();
    assert_eq!(seen, (1..=100u64).map(|s| (s, format!("<{}>", s * 2))).collect::<Vec<_>>());
    assert_eq!(run.report.processed, 100);
}

#[test]
fn empty_source_finishes() {
    let run = Pipeline::from_iter(Vec::<u8>::new(), 1, Shutdown::new())
        .fold(2, || 0u32, |n, _| *n += 1, |a, b| a + b)
        .expect("threads start");
    assert_eq!((run.value, run.report.read), (0, 0));
}

#[test]
fn backpressure_keeps_the_source_close_to_the_consumer() {
    let read = Arc::new(AtomicU64::new(0));
    let counter = read.clone();
    let source = (1..=1000u64).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let capacity = 2;
    let mut max_ahead = 0;
    let run = Pipeline::from_iter(source, capacity, Shutdown::new())
        .stage(1, |x| x)
        .sink(|seq, _| {
            // Give the source every chance to run ahead, then measure how far it got.
            std::thread::yield_now();
            max_ahead = max_ahead.max(read.load(Ordering::SeqCst) - seq);
        })
        .expect("threads start");
    assert!(run.report.all_processed());
    // Two queues of 2, one item in the stage's hands, one in the source's: never more.
    assert!(max_ahead <= 2 * capacity as u64 + 2, "source ran {max_ahead} items ahead");
}

#[test]
fn drain_lets_everything_read_finish() {
    let shutdown = Shutdown::new();
    let tripper = shutdown.clone();
    let run = Pipeline::from_iter(1.., 4, shutdown)
        .stage(2, |x: u64| x + 1)
        .sink(move |seq, _| {
            if seq == 50 {
                tripper.trip();
            }
        })
        .expect("threads start");
    assert_eq!(run.report.stopped, Level::Drain);
    assert!(run.report.read >= 50);
    assert!(run.report.all_processed(), "{:?}", run.report);
}

#[test]
fn stop_now_accounts_for_every_item_read() {
    let n = 200;
    let drops: Arc<Vec<AtomicUsize>> = Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect());
    let source_drops = drops.clone();
    let source = (0..n).map(move |id| Tracked { id, drops: source_drops.clone() });
    let shutdown = Shutdown::new();
    let stopper = shutdown.clone();
    let (reached_tx, reached) = cb::bounded::<()>(1);
    let (release, gate) = cb::bounded::<()>(0);
    let pipeline = Pipeline::from_iter(source, 8, shutdown).stage(2, move |item: Tracked| {
        if item.id == 20 {
            let _ = reached_tx.send(());
            let _ = gate.recv();
        }
        item
    });
    let controller = std::thread::spawn(move || {
        reached.recv().expect("item 20 reaches the stage");
        stopper.stop_now();
        drop(release);
    });
    let run = pipeline.fold(2, || 0usize, |count, _item| *count += 1, |a, b| a + b).expect("threads start");
    controller.join().expect("controller");
    let report = run.report;
    assert_eq!(report.stopped, Level::StopNow);
    assert!(report.accounts_for_everything(), "{report:?}");
    assert!(!report.not_run.is_empty(), "queued items were abandoned");
    assert_eq!(run.value as u64, report.processed);
    let read = report.read as usize;
    assert!(read < n, "the source stopped reading");
    for (id, d) in drops.iter().enumerate() {
        let expected = usize::from(id < read);
        assert_eq!(d.load(Ordering::SeqCst), expected, "item {id} dropped {expected} time(s)");
    }
}

#[test]
fn a_panicking_stage_fails_only_its_item() {
    let run = Pipeline::from_iter(1..=10u32, 2, Shutdown::new())
        .stage(2, |x| if x == 7 { panic!("seven") } else { x })
        .fold(1, || 0u32, |sum, x| *sum += x, |a, b| a + b)
        .expect("threads start");
    assert_eq!(run.value, 55 - 7);
    assert_eq!(run.report.failed, vec![(7, "seven".to_owned())]);
    assert!(run.report.accounts_for_everything());
}

#[test]
fn a_panicking_source_ends_the_input() {
    let source = (1..=10u32).map(|x| if x == 4 { panic!("bad input") } else { x });
    let run = Pipeline::from_iter(source, 2, Shutdown::new())
        .fold(1, || 0u32, |sum, x| *sum += x, |a, b| a + b)
        .expect("threads start");
    assert_eq!(run.value, 6);
    assert_eq!(run.report.source_panic.as_deref(), Some("bad input"));
    assert!(!run.report.all_processed());
}

#[test]
fn tripped_before_start_reads_nothing() {
    let shutdown = Shutdown::new();
    shutdown.trip();
    let run = Pipeline::from_iter(1..=10u32, 2, shutdown).sink(|_, _| {}).expect("threads start");
    assert_eq!(run.report.read, 0);
}

#[test]
fn for_each_sees_each_items_sequence_number() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let run = Pipeline::from_iter(["a", "b", "c"], 2, Shutdown::new())
        .for_each(2, move |seq, item| sink.lock().expect("lock").push((seq, item)))
        .expect("threads start");
    assert_eq!(run.report.processed, 3);
    let mut seen = seen.lock().expect("lock").clone();
    seen.sort();
    assert_eq!(seen, [(1, "a"), (2, "b"), (3, "c")]);
}
