//! Wake-ups the engine asks for: one pending entry per agent that matters.
//!
//! A binary heap with lazy deletion: each agent remembers the earliest time it
//! asked for, and heap entries that no longer match are skipped when popped.
//! This keeps scheduling O(log n) without ever searching the heap.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::sync::agent::OptTimestamp;
use crate::time::Timestamp;

#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Timestamp, u32)>>,
}

impl Timers {
    /// Asks for `slot` to be woken at `at`, unless it already wakes earlier.
    /// `current` is the slot's own record of its earliest wake-up; the
    /// heap's entry is the time as that record keeps it, so the two match
    /// when it comes due.
    pub fn schedule(&mut self, slot: u32, at: Timestamp, current: &mut OptTimestamp) {
        let at = OptTimestamp::kept(at);
        if current.get().is_none_or(|c| at < c) {
            current.set(Some(at));
            self.heap.push(Reverse((at, slot)));
        }
    }

    /// The next entry due at or before `now`; `is_live` tells whether the
    /// entry is still the slot's current wake-up (stale ones are dropped).
    pub fn pop_due(
        &mut self,
        now: Timestamp,
        mut is_live: impl FnMut(u32, Timestamp) -> bool,
    ) -> Option<u32> {
        while let Some(Reverse((at, slot))) = self.heap.peek().copied() {
            if at > now {
                return None;
            }
            self.heap.pop();
            if is_live(slot, at) {
                return Some(slot);
            }
        }
        None
    }

    /// The earliest live wake-up, dropping stale entries on the way.
    pub fn next(&mut self, mut is_live: impl FnMut(u32, Timestamp) -> bool) -> Option<Timestamp> {
        while let Some(Reverse((at, slot))) = self.heap.peek().copied() {
            if is_live(slot, at) {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlier_requests_replace_later_ones() {
        let mut timers = Timers::default();
        let mut wake = [OptTimestamp::NONE, OptTimestamp::NONE];
        timers.schedule(0, Timestamp::from_secs(10), &mut wake[0]);
        timers.schedule(0, Timestamp::from_secs(20), &mut wake[0]);
        timers.schedule(0, Timestamp::from_secs(5), &mut wake[0]);
        timers.schedule(1, Timestamp::from_secs(7), &mut wake[1]);
        assert_eq!(wake[0].get(), Some(Timestamp::from_secs(5)));
        let live = |slot: u32, at: Timestamp, wake: &[OptTimestamp; 2]| {
            wake[slot as usize].get() == Some(at)
        };
        assert_eq!(
            timers.next(|s, a| live(s, a, &wake)),
            Some(Timestamp::from_secs(5))
        );
        let due = timers.pop_due(Timestamp::from_secs(8), |s, a| live(s, a, &wake));
        assert_eq!(due, Some(0));
        wake[0] = OptTimestamp::NONE;
        assert_eq!(
            timers.pop_due(Timestamp::from_secs(8), |s, a| live(s, a, &wake)),
            Some(1)
        );
        wake[1] = OptTimestamp::NONE;
        // The 10 s entry for slot 0 is stale now.
        assert_eq!(
            timers.pop_due(Timestamp::from_secs(100), |s, a| live(s, a, &wake)),
            None
        );
        assert!(timers.is_empty());
    }
}
