//! muster: master/worker parallel execution that shuts down cleanly and loses nothing.
//!
//! The crate turns the patterns of the classic Python threading tutorials — a master feeding a
//! worker through a queue until `'quit'`, a pool of consumers summing what a producer reads,
//! worker processes that must be stopped properly rather than by Ctrl-C — into typed, safe
//! building blocks:
//!
//! | concept | type | seed pattern |
//! |---|---|---|
//! | bounded closable queue | [`queue::bounded`] | `queue.Queue(maxsize=10)` |
//! | two-level stop request | [`Shutdown`] | `threading.Event` |
//! | one worker thread | [`Worker`] | `Slave_thread` + `'quit'` |
//! | thread pool with handles | [`Pool`], [`pool::scope`] | `ThreadPoolExecutor` |
//! | source → stages → fold | [`pipeline`] | producer/consumer |
//! | supervised processes | [`supervise::Supervisor`], [`process::Launcher`] | `multiprocessing.Process` ×4 |
//! | a command per input, or inputs through long-lived workers, journaled and resumable | [`engine::run`], [`engine::RunConfig`] (with [`engine::persistent::Workers`]) | "multiprocessing next week" |
//! | the same tasks on many machines (feature `redis`) | `broker` | — |
//! | what became of each input | [`Outcome`], [`Failure`] | — |
//!
//! Every task that is read ends with exactly one [`Outcome`]: done, failed, timed out, or not
//! run. Errors that fail to deliver an item hand the item back.
//!
//! ```
//! use muster::Pool;
//!
//! let pool = Pool::new(2)?;
//! let squares: Vec<u64> = pool.map(1..=5u64, |x| x * x).map(|r| r.unwrap_or(0)).collect();
//! assert_eq!(squares, [1, 4, 9, 16, 25]);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! ```
//! use muster::pipeline::Pipeline;
//! use muster::Shutdown;
//!
//! // The seed's producer/consumer: a bounded queue of 10, two consumers summing.
//! let run = Pipeline::from_iter(1..=100u64, 10, Shutdown::new())
//!     .fold(2, || 0u64, |sum, x| *sum += x, |a, b| a + b)?;
//! assert_eq!(run.value, 5050);
//! # Ok::<(), std::io::Error>(())
//! ```

#[cfg(feature = "redis")]
pub mod broker;
pub mod engine;
pub mod halt;
pub mod input;
pub mod journal;
mod lockfile;
pub mod pipeline;
pub mod pool;
pub mod process;
pub mod queue;
pub mod shutdown;
pub mod source;
pub mod supervise;
pub mod task;
pub mod worker;

pub use pool::{Pool, TaskError, TaskHandle};
pub use shutdown::{Level, Shutdown};
pub use task::{Failure, Outcome, Seq};
pub use worker::Worker;
