//! Queue throughput, one producer to one consumer, against raw crossbeam-channel and std's
//! `sync_channel`, at capacities 1, 10 and 1000.

#![allow(missing_docs)] // criterion_group! generates undocumented public functions

use std::sync::mpsc;
use std::thread;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const ITEMS: u64 = 100_000;

/// Moves ITEMS from a producer thread through `send` to `drain` on this thread.
fn one_to_one<S: Send + 'static>(sender: S, send: fn(&S, u64) -> bool, drain: impl FnOnce() -> u64) -> u64 {
    let producer = thread::spawn(move || {
        for i in 0..ITEMS {
            if !send(&sender, i) {
                break;
            }
        }
    });
    let sum = drain();
    producer.join().expect("producer");
    sum
}

fn muster_queue(capacity: usize) -> u64 {
    let (tx, rx) = muster::queue::bounded(capacity);
    one_to_one(tx, |tx, i| tx.send(i).is_ok(), || rx.iter().sum())
}

fn crossbeam_raw(capacity: usize) -> u64 {
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    one_to_one(tx, |tx, i| tx.send(i).is_ok(), || rx.iter().sum())
}

fn std_sync_channel(capacity: usize) -> u64 {
    let (tx, rx) = mpsc::sync_channel(capacity);
    one_to_one(tx, |tx, i| tx.send(i).is_ok(), || rx.iter().sum())
}

fn queues(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue");
    group.throughput(Throughput::Elements(ITEMS));
    group.sample_size(20);
    for capacity in [1usize, 10, 1000] {
        group.bench_with_input(BenchmarkId::new("muster", capacity), &capacity, |b, &cap| {
            b.iter(|| muster_queue(cap))
        });
        group.bench_with_input(BenchmarkId::new("crossbeam", capacity), &capacity, |b, &cap| {
            b.iter(|| crossbeam_raw(cap))
        });
        group.bench_with_input(BenchmarkId::new("std_sync_channel", capacity), &capacity, |b, &cap| {
            b.iter(|| std_sync_channel(cap))
        });
    }
    group.finish();
}

criterion_group!(benches, queues);
criterion_main!(benches);
