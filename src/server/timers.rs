//! Per-shard timers without a thread or a heap entry per read.
//!
//! Deadlines only move later while a connection is busy (each read pushes
//! the idle deadline back), so entries are scheduled lazily: an entry that
//! fires early is checked against the session's real deadline and scheduled
//! again. A new entry is pushed only when a deadline moves earlier (a close
//! starts, say). Stale entries are recognised by generation and time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// An ordered set of (deadline, connection) entries.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize, u32)>>,
}

/// A fired entry: the connection slot and its generation when scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fired {
    /// The deadline it was scheduled for.
    pub at: Instant,
    /// Connection slot.
    pub slot: usize,
    /// Generation of the slot when scheduled (slots are reused).
    pub generation: u32,
}

impl Timers {
    /// No entries.
    pub fn new() -> Self {
        Self::default()
    }

    /// Schedules `slot` (of `generation`) at `at`.
    pub fn schedule(&mut self, at: Instant, slot: usize, generation: u32) {
        self.heap.push(Reverse((at, slot, generation)));
    }

    /// The earliest deadline, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Removes and returns an entry due at `now`, earliest first.
    pub fn pop_due(&mut self, now: Instant) -> Option<Fired> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => {
                let Reverse((at, slot, generation)) = self.heap.pop()?;
                Some(Fired { at, slot, generation })
            }
            _ => None,
        }
    }

    /// Entries held, stale ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_due_entries_in_order_only() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        t.schedule(t0 + Duration::from_secs(3), 1, 0);
        t.schedule(t0 + Duration::from_secs(1), 2, 0);
        t.schedule(t0 + Duration::from_secs(2), 3, 7);
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(1)));
        let now = t0 + Duration::from_secs(2);
        assert_eq!(t.pop_due(now).map(|f| f.slot), Some(2));
        assert_eq!(t.pop_due(now).map(|f| (f.slot, f.generation)), Some((3, 7)));
        assert_eq!(t.pop_due(now), None);
        assert_eq!(t.len(), 1);
    }
}
