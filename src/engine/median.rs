//! GNU parallel's `--timeout N%`: a time limit that follows the median run time of the tasks
//! done so far, so one hung task among quick ones is stopped without a guessed limit.
//!
//! The median is of the most recent successful run times (a window, so memory does not grow
//! with the run and the limit follows a workload that changes pace); no limit holds before a
//! first task is done.

use std::collections::VecDeque;
use std::time::Duration;

/// Successful run times kept for the median.
const WINDOW: usize = 999;

/// The median of recent successful run times, and the limit it sets.
#[derive(Debug)]
pub(crate) struct RecentMedian {
    /// The limit as a multiple of the median (2.0 for `200%`).
    fraction: f64,
    recent: VecDeque<Duration>,
    median: Option<Duration>,
}

impl RecentMedian {
    pub(crate) fn new(fraction: f64) -> RecentMedian {
        RecentMedian { fraction, recent: VecDeque::new(), median: None }
    }

    /// A task succeeded in `runtime`.
    pub(crate) fn record(&mut self, runtime: Duration) {
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(runtime);
        let mut sorted: Vec<Duration> = self.recent.iter().copied().collect();
        let middle = sorted.len() / 2;
        self.median = Some(*sorted.select_nth_unstable(middle).1);
    }

    /// The time limit: the fraction of the median; none before a task is done.
    pub(crate) fn limit(&self) -> Option<Duration> {
        self.median.map(|median| median.mul_f64(self.fraction))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_follows_the_median_of_recent_successes() {
        let ms = Duration::from_millis;
        let mut median = RecentMedian::new(2.0);
        assert_eq!(median.limit(), None, "no limit before a task is done");
        for runtime in [ms(10), ms(1000), ms(20)] {
            median.record(runtime);
        }
        assert_eq!(median.limit(), Some(ms(40)), "one slow task does not move the median");
        for _ in 0..WINDOW {
            median.record(ms(100));
        }
        median.fraction = 1.5;
        assert_eq!(median.limit(), Some(ms(150)), "old run times leave the window");
    }
}
