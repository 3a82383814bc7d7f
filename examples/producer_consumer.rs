//! The seed's producer/consumer, in Rust: a producer reads random integers into a bounded
//! queue (capacity 10), a pool of 2 consumers sums them, and the program prints the sum and
//! the execution time.
//!
//! The seed stops its consumer with an `Event` and shares the running sum through a second
//! queue; here the end of input closes the queue, each consumer folds its own partial sum, and
//! the partials are added once at the end. Ctrl-C drains: the producer stops reading, the
//! consumers finish what was queued, and the partial sum is still printed.
//!
//! Options: `--count N` numbers (default 10, as in the seed), `--seed K` for reproducible
//! numbers, `--capacity C` (default 10), `--consumers W` (default 2).
//!
//! Run: `cargo run --release --example producer_consumer -- --count 1000000 --seed 7`

mod common;

use muster::pipeline::Pipeline;
use muster::Shutdown;

fn main() {
    let options = common::Options::parse(&["count", "seed", "capacity", "consumers"], &[]);
    let count: u64 = options.value("count", 10);
    let capacity: usize = options.value("capacity", 10);
    let consumers: usize = options.value("consumers", 2);
    let mut rng = match options.optional::<u64>("seed") {
        Some(seed) => fastrand::Rng::with_seed(seed),
        None => fastrand::Rng::new(),
    };

    let shutdown = Shutdown::new();
    let _signals = shutdown.watch_signals().unwrap_or_else(|err| {
        eprintln!("producer_consumer: cannot watch signals: {err}");
        std::process::exit(1);
    });

    // Like the seed's `random.randint(1, 11)`: inclusive on both ends.
    let numbers = (0..count).map(move |_| rng.u64(1..=11));
    let run = Pipeline::from_iter(numbers, capacity, shutdown.clone())
        .fold(consumers, || 0u64, |sum, n| *sum += n, |a, b| a + b)
        .unwrap_or_else(|err| {
            eprintln!("producer_consumer: cannot start threads: {err}");
            std::process::exit(1);
        });

    let report = &run.report;
    let secs = report.elapsed.as_secs_f64();
    println!("sum: {}", run.value);
    println!("items: {}", report.processed);
    println!("execution time: {secs:.6} s");
    if secs > 0.0 {
        println!("rate: {:.0} items/s", report.processed as f64 / secs);
    }
    if let Some(signal) = shutdown.signal() {
        println!("stopped by signal {signal} after {} of {count} numbers", report.read);
        std::process::exit(128 + signal);
    }
}
