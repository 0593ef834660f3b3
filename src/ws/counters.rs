//! Counters of protocol events (close frames, discarded and inflated
//! messages) that the core bumps where they happen. A shard owns its set and
//! is its only writer; the admin thread reads every shard's at scrape time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A counter with one writer (its shard) and any number of readers.
///
/// Invariant: only one thread ever calls [`Counter::add`] or
/// [`Counter::set`]. `add` is then a load and a store rather than a
/// read-modify-write: no increment is lost, readers see a value that only
/// grows, and on x86-64 it compiles to the same plain `mov`s a `u64 +=` does,
/// where `fetch_add` would be a `lock`ed instruction on every message.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n` (the owning shard only).
    #[inline(always)]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Sets a gauge to `v` (the owning shard only).
    #[inline(always)]
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }

    /// The current value (any thread).
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Close codes counted each under its own label: those of RFC 6455 §7.4.1
/// and the IANA registry that may be received or sent, and 1005 for a close
/// frame without a code (its meaning per §7.1.5). Any other (the
/// application range 3000–4999) counts as `other`, so the label set stays
/// bounded whatever clients send.
pub const CLOSE_CODES: [u16; 13] = [1000, 1001, 1002, 1003, 1005, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014];

/// The label of each slot of a [`ByCloseCode`], in order.
pub const CLOSE_CODE_LABELS: [&str; CLOSE_CODES.len() + 1] =
    ["1000", "1001", "1002", "1003", "1005", "1007", "1008", "1009", "1010", "1011", "1012", "1013", "1014", "other"];

/// One counter per close code of [`CLOSE_CODES`], and one for all others.
#[derive(Debug, Default)]
pub struct ByCloseCode([Counter; CLOSE_CODES.len() + 1]);

impl ByCloseCode {
    /// Counts one event with `code`.
    pub fn count(&self, code: u16) {
        let i = CLOSE_CODES.iter().position(|&c| c == code).unwrap_or(CLOSE_CODES.len());
        self.0[i].add(1);
    }

    /// Each label with its count.
    pub fn values(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        CLOSE_CODE_LABELS.iter().zip(&self.0).map(|(l, c)| (*l, c.get()))
    }

    /// Adds another set's counts (for sums across shards).
    pub fn add_from(&self, o: &ByCloseCode) {
        for (a, b) in self.0.iter().zip(&o.0) {
            a.add(b.get());
        }
    }
}

/// What the protocol core counts itself (the rest is counted by the
/// connection table from what [`crate::ws::Progress`] says).
#[derive(Debug, Default)]
pub struct CoreCounters {
    /// Valid close frames received, by their code (1005: none).
    pub close_received: ByCloseCode,
    /// Close frames sent (echoed, on a failure, at an idle timeout, at shutdown), by code.
    pub close_sent: ByCloseCode,
    /// Data messages received after our close, read only to find the
    /// client's close and not echoed (RFC 6455 §5.5.1).
    pub messages_discarded: Counter,
    /// Compressed messages inflated to be checked (RFC 7692).
    pub inflated_messages: Counter,
}

impl CoreCounters {
    /// Adds another set's counts (for sums across shards).
    pub fn add_from(&self, o: &CoreCounters) {
        self.close_received.add_from(&o.close_received);
        self.close_sent.add_from(&o.close_sent);
        self.messages_discarded.add(o.messages_discarded.get());
        self.inflated_messages.add(o.inflated_messages.get());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes_count_under_their_own_label_and_the_rest_as_other() {
        let c = ByCloseCode::default();
        for code in [1000, 1000, 1009, 3000, 4999, 1005] {
            c.count(code);
        }
        let v: std::collections::HashMap<_, _> = c.values().collect();
        assert_eq!(v["1000"], 2);
        assert_eq!(v["1009"], 1);
        assert_eq!(v["1005"], 1);
        assert_eq!(v["other"], 2);
        assert_eq!(v["1001"], 0);
        assert_eq!(v.len(), CLOSE_CODE_LABELS.len());
    }

    #[test]
    fn labels_name_the_codes_in_order() {
        for (code, label) in CLOSE_CODES.iter().zip(CLOSE_CODE_LABELS) {
            assert_eq!(code.to_string(), label);
        }
    }

    #[test]
    fn counters_add_and_gauges_set() {
        let c = Counter::default();
        c.add(3);
        c.add(4);
        assert_eq!(c.get(), 7);
        c.set(2);
        assert_eq!(c.get(), 2);
    }
}
