//! `{%}` numbers: which slot number a starting attempt gets when every slot runs one attempt.
//!
//! GNU parallel hands the first `-j` tasks slots 1, 2, … in the order it starts them, and a
//! later task a number a finished one freed; no two running tasks ever share one. The engine
//! runs several loops, so a loop's own numbers would give task 1 slot 2 whenever the other
//! loop took it. The numbers live here instead, shared by the loops: a task's feeding order
//! reserves its number among the first `-j`, so which loop starts it first does not matter.

use std::collections::BTreeSet;

/// The numbers 1..=jobs, free or held by a running attempt.
#[derive(Debug)]
pub(crate) struct SlotNumbers {
    free: BTreeSet<usize>,
    /// Numbers handed out at least once: the rest are still reserved for the first tasks.
    handed_out: Vec<bool>,
}

impl SlotNumbers {
    pub(crate) fn new(jobs: usize) -> SlotNumbers {
        SlotNumbers { free: (1..=jobs).collect(), handed_out: vec![false; jobs + 1] }
    }

    /// A free number for an attempt whose task was the `order`-th fed (from 0; none for a
    /// retry): its own number while that is unclaimed among the first `jobs`, otherwise the
    /// lowest number already used, otherwise the lowest free. None when all are held.
    pub(crate) fn take(&mut self, order: Option<u64>) -> Option<usize> {
        let own = order
            .and_then(|order| usize::try_from(order).ok())
            .map(|order| order + 1)
            .filter(|&n| n < self.handed_out.len() && !self.handed_out[n] && self.free.contains(&n));
        let number = own
            .or_else(|| self.free.iter().copied().find(|&n| self.handed_out[n]))
            .or_else(|| self.free.first().copied())?;
        self.free.remove(&number);
        self.handed_out[number] = true;
        Some(number)
    }

    /// `number` is free again.
    pub(crate) fn give_back(&mut self, number: usize) {
        if number < self.handed_out.len() {
            self.free.insert(number);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_tasks_get_their_feeding_order_whichever_starts_first() {
        let mut numbers = SlotNumbers::new(4);
        assert_eq!(numbers.take(Some(1)), Some(2));
        assert_eq!(numbers.take(Some(3)), Some(4));
        assert_eq!(numbers.take(Some(0)), Some(1));
        assert_eq!(numbers.take(Some(2)), Some(3));
        assert_eq!(numbers.take(Some(4)), None);
    }

    #[test]
    fn a_later_task_gets_a_freed_number_not_one_reserved() {
        let mut numbers = SlotNumbers::new(3);
        assert_eq!(numbers.take(Some(0)), Some(1));
        numbers.give_back(1);
        // Task 2 (order 1) has its own number waiting; a retry takes the one freed.
        assert_eq!(numbers.take(None), Some(1));
        assert_eq!(numbers.take(Some(1)), Some(2));
        assert_eq!(numbers.take(Some(2)), Some(3));
        numbers.give_back(3);
        numbers.give_back(2);
        assert_eq!(numbers.take(Some(3)), Some(2), "the lowest free");
    }

    #[test]
    fn no_number_is_held_twice() {
        let mut numbers = SlotNumbers::new(3);
        // Tasks out of every order, one starting before the first tasks have.
        assert_eq!(numbers.take(Some(7)), Some(1));
        assert_eq!(numbers.take(Some(0)), Some(2));
        assert_eq!(numbers.take(Some(1)), Some(3));
        assert_eq!(numbers.take(Some(2)), None);
        numbers.give_back(2);
        assert_eq!(numbers.take(Some(2)), Some(2));
    }
}
