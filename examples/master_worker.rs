//! The seed's master/slave thread, in Rust.
//!
//! The master starts one worker thread fed by a bounded queue, sends it the time of day once a
//! second for `--seconds N` seconds (default 5), then closes the queue — the seed's `'quit'` —
//! and joins the worker, which reports how many messages it handled.
//!
//! Run: `cargo run --example master_worker -- --seconds 3`

mod common;

use std::time::{Duration, Instant};

use muster::queue::Receiver;
use muster::Worker;

fn main() {
    let options = common::Options::parse(&["seconds"], &[]);
    let seconds: f64 = options.value("seconds", 5.0);
    let run_for = Duration::try_from_secs_f64(seconds).unwrap_or_else(|_| {
        eprintln!("master_worker: --seconds must be a non-negative number");
        std::process::exit(2);
    });

    let worker = Worker::spawn(10, |inbox: Receiver<String>| {
        let mut received = 0;
        // The loop ends when the master closes the queue: no magic 'quit' value needed.
        for msg in inbox {
            println!("I'm the worker thread, received something at {msg}!!");
            received += 1;
        }
        println!("Bye byes!");
        received
    });
    let worker = worker.unwrap_or_else(|err| {
        eprintln!("master_worker: cannot start the worker thread: {err}");
        std::process::exit(1);
    });

    let start = Instant::now();
    let mut sent = 0;
    while start.elapsed() < run_for {
        if worker.send(common::clock()).is_err() {
            break;
        }
        sent += 1;
        // Sleep to the next whole second since start, so the cadence does not drift.
        let next = Duration::from_secs(sent);
        std::thread::sleep(next.saturating_sub(start.elapsed()).min(run_for.saturating_sub(start.elapsed())));
    }

    match worker.join() {
        Ok(received) => println!("master: sent {sent}, worker handled {received}"),
        Err(err) => {
            eprintln!("master_worker: {err}");
            std::process::exit(1);
        }
    }
}
