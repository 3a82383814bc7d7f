//! The seed's two concurrent threads (even and odd numbers), in Rust, three ways.
//!
//! 1. `as in the seed`: two detached threads; "End" is printed without waiting, so it lands
//!    wherever the scheduler puts it (the threads are joined afterwards so nothing is lost).
//! 2. `joined`: the tasks run on a scoped pool; lines interleave but each stays whole, and
//!    "End" comes only after both tasks finished.
//! 3. `grouped`: each task's output is collected and printed in one piece when it ends, as
//!    `muster run` does by default — never interleaved.
//!
//! Run: `cargo run --example even_odd`

use std::fmt::Write as _;

fn numbers(start: u32) -> impl Iterator<Item = u32> {
    (start..20).step_by(2)
}

fn name(start: u32) -> &'static str {
    if start == 0 {
        "even"
    } else {
        "odd"
    }
}

fn main() {
    println!("== as in the seed: End is printed without waiting for the threads ==");
    let detached: Vec<_> = [0, 1]
        .into_iter()
        .map(|start| {
            std::thread::spawn(move || {
                for i in numbers(start) {
                    // println! locks stdout for the whole line: lines interleave, never mix.
                    println!("{} :{i}", name(start));
                }
            })
        })
        .collect();
    println!("End");
    for thread in detached {
        let _ = thread.join();
    }

    println!("== joined: End after both tasks finished ==");
    muster::pool::scope(2, |s| {
        for start in [0, 1] {
            s.submit(move || {
                for i in numbers(start) {
                    println!("{} :{i}", name(start));
                }
            });
        }
    });
    println!("End");

    println!("== grouped: each task's output printed whole when it ends ==");
    muster::pool::scope(2, |s| {
        for start in [0, 1] {
            s.submit(move || {
                let mut out = String::new();
                for i in numbers(start) {
                    let _ = writeln!(out, "{} :{i}", name(start));
                }
                print!("{out}");
            });
        }
    });
    println!("End");
}
