//! One million tiny tasks through muster's `Pool` (with a result handle per task, and through
//! the streaming `map`), against `rayon::scope` spawns and a naive thread + channel pool.

#![allow(missing_docs)] // criterion_group! generates undocumented public functions

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const TASKS: u64 = 1_000_000;
const THREADS: usize = 2;

fn naive_pool() -> u64 {
    let (tx, rx) = crossbeam_channel::unbounded::<Box<dyn FnOnce() + Send>>();
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let rx = rx.clone();
            thread::spawn(move || {
                for job in rx {
                    job();
                }
            })
        })
        .collect();
    let sum = Arc::new(AtomicU64::new(0));
    for i in 0..TASKS {
        let sum = sum.clone();
        let _ = tx.send(Box::new(move || {
            sum.fetch_add(i * 2, Ordering::Relaxed);
        }));
    }
    drop(tx);
    for worker in workers {
        worker.join().expect("worker");
    }
    sum.load(Ordering::Relaxed)
}

fn pools(c: &mut Criterion) {
    let mut group = c.benchmark_group("pool_1M_tiny_tasks");
    group.throughput(Throughput::Elements(TASKS));
    group.sample_size(10);

    let pool = muster::Pool::new(THREADS).expect("pool");
    group.bench_function("muster_submit_join", |b| {
        b.iter(|| {
            let handles: Vec<_> = (0..TASKS).map(|i| pool.submit(move || i * 2)).collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum::<u64>()
        })
    });
    group.bench_function("muster_map", |b| {
        b.iter(|| pool.map(0..TASKS, |i| i * 2).map(|r| r.unwrap_or(0)).sum::<u64>())
    });

    let rayon_pool = rayon::ThreadPoolBuilder::new().num_threads(THREADS).build().expect("rayon");
    group.bench_function("rayon_scope_spawn", |b| {
        b.iter(|| {
            let sum = AtomicU64::new(0);
            rayon_pool.scope(|s| {
                for i in 0..TASKS {
                    let sum = &sum;
                    s.spawn(move |_| {
                        sum.fetch_add(i * 2, Ordering::Relaxed);
                    });
                }
            });
            sum.into_inner()
        })
    });
    group.bench_function("naive_crossbeam_pool", |b| b.iter(naive_pool));
    group.finish();
}

criterion_group!(benches, pools);
criterion_main!(benches);
