//! Per-connection rate limits (`--max-message-rate`, `--max-bytes-per-second`):
//! token buckets holding one second of the rate. Each call into the session
//! gets the bucket's tokens as its [`Budget`] and stops at the frame
//! boundary where they run out; the rest of the input waits in the carry
//! and the socket is not read until the bucket holds a message's and a
//! byte's worth again. TCP flow control slows the client, and nothing is
//! dropped: every message it sent is echoed, at the rate allowed.

use crate::ws::Budget;
use std::time::{Duration, Instant};

/// The limits, per connection.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Data messages per second, if limited.
    pub messages_per_second: Option<f64>,
    /// Bytes read per second (ciphertext on TLS), if limited.
    pub bytes_per_second: Option<f64>,
}

/// A connection's tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    messages: f64,
    bytes: f64,
    at: Instant,
    /// Not to be read before this (the tokens are below zero until then).
    pub paused_until: Option<Instant>,
}

impl Bucket {
    /// A full bucket (one second's worth) at `now`.
    pub fn new(limit: &RateLimit, now: Instant) -> Bucket {
        Bucket {
            messages: limit.messages_per_second.unwrap_or(0.0),
            bytes: limit.bytes_per_second.unwrap_or(0.0),
            at: now,
            paused_until: None,
        }
    }

    /// Adds what the time since the last call earned, up to one second's worth.
    fn refill(&mut self, limit: &RateLimit, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        if let Some(rate) = limit.messages_per_second {
            self.messages = (self.messages + rate * dt).min(rate);
        }
        if let Some(rate) = limit.bytes_per_second {
            self.bytes = (self.bytes + rate * dt).min(rate);
        }
    }

    /// What a call at `now` may handle.
    pub fn budget(&mut self, limit: &RateLimit, now: Instant) -> Budget {
        self.refill(limit, now);
        let whole = |tokens: f64| if tokens >= 1.0 { tokens as u64 } else { 0 };
        Budget {
            messages: limit.messages_per_second.map_or(u64::MAX, |_| whole(self.messages)),
            bytes: limit.bytes_per_second.map_or(u64::MAX, |_| whole(self.bytes)),
        }
    }

    /// Spends `messages` and `bytes` at `now`; returns when reading may go
    /// on if less than a message's or a byte's worth is left.
    pub fn spend(&mut self, limit: &RateLimit, messages: u64, bytes: u64, now: Instant) -> Option<Instant> {
        self.refill(limit, now);
        let mut wait: f64 = 0.0;
        if let Some(rate) = limit.messages_per_second {
            self.messages -= messages as f64;
            wait = wait.max((1.0 - self.messages) / rate);
        }
        if let Some(rate) = limit.bytes_per_second {
            self.bytes -= bytes as f64;
            wait = wait.max((1.0 - self.bytes) / rate);
        }
        self.paused_until = (wait > 0.0).then(|| now + Duration::from_secs_f64(wait));
        self.paused_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_one_second_then_the_rate() {
        let limit = RateLimit { messages_per_second: Some(10.0), bytes_per_second: None };
        let t0 = Instant::now();
        let mut b = Bucket::new(&limit, t0);
        assert_eq!(b.budget(&limit, t0), Budget { messages: 10, bytes: u64::MAX });
        assert_eq!(b.spend(&limit, 9, 0, t0), None, "one message's worth is left");
        let until = b.spend(&limit, 5, 0, t0).expect("in debt");
        // Four in debt, and one more to read again: half a second.
        assert_eq!(until - t0, Duration::from_millis(500));
        assert_eq!(b.budget(&limit, t0 + Duration::from_millis(400)).messages, 0);
        assert_eq!(b.spend(&limit, 0, 0, t0 + Duration::from_millis(500)), None);
        // Idle time refills no more than one second's worth.
        assert_eq!(b.budget(&limit, t0 + Duration::from_secs(60)).messages, 10);
    }

    #[test]
    fn the_tighter_limit_decides() {
        let limit = RateLimit { messages_per_second: Some(1000.0), bytes_per_second: Some(1000.0) };
        let t0 = Instant::now();
        let mut b = Bucket::new(&limit, t0);
        let until = b.spend(&limit, 2, 2999, t0).expect("bytes over");
        assert_eq!(until - t0, Duration::from_secs(2));
        assert_eq!(b.budget(&limit, t0).bytes, 0);
    }
}
