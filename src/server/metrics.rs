//! A shard's counters and gauges. The shard is the only writer of its set
//! (see [`Counter`]); the admin listener reads every shard's set at scrape
//! time and sums them, and the process logs each at exit. Each set sits on
//! cache lines of its own, so no two shards ever write the same line.

use crate::ws::counters::{ByCloseCode, CoreCounters, Counter};
use crate::ws::handshake::{Rejection, REFUSALS};

/// The kinds of timeout, as labels, in [`ShardMetrics::timeouts`] order.
pub const TIMEOUT_KINDS: [&str; 3] = ["handshake", "idle", "close"];

/// Which timeout fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// The request head (or, on TLS, the TLS handshake) did not arrive in time.
    Handshake = 0,
    /// No frame came for the idle timeout (after a ping went unanswered).
    Idle = 1,
    /// After a close frame or a refusal, the client neither finished the
    /// close nor hung up within the close timeout.
    Close = 2,
}

/// What one shard counts.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct ShardMetrics {
    /// Gauge: TCP connections in the shard's table (handshaking, open or closing).
    pub connections_open: Counter,
    /// TCP connections accepted.
    pub accepted: Counter,
    /// WebSocket handshakes completed.
    pub upgraded: Counter,
    /// Handshakes refused, by [`Rejection::index`].
    pub refused: [Counter; REFUSALS.len()],
    /// Connections failed for a protocol violation, by the close code it calls for.
    pub protocol_errors: ByCloseCode,
    /// Data messages received and echoed.
    pub messages: Counter,
    /// Bytes read from sockets (ciphertext on TLS).
    pub bytes_in: Counter,
    /// Bytes written to sockets (ciphertext on TLS).
    pub bytes_out: Counter,
    /// Times a connection spent more than its rate limit and was not read
    /// until its bucket refilled.
    pub rate_limited: Counter,
    /// Writes the socket did not take in full: the rest was queued and the
    /// connection stopped being read until it drained (TCP flow control then
    /// holds the client back).
    pub backpressure_stalls: Counter,
    /// Timeouts, by [`Timeout`].
    pub timeouts: [Counter; TIMEOUT_KINDS.len()],
    /// io_uring: receives that found no free buffer (ENOBUFS) and were re-armed
    /// later; many mean `--uring-buffers` is too small for the load.
    pub recv_starved: Counter,
    /// Gauge, io_uring: receive buffers the shard's ring has grown to (it
    /// starts small and doubles on starvation, up to `--uring-buffers`).
    pub ring_buffers: Counter,
    /// TLS handshakes completed with a full key exchange.
    pub tls_full: Counter,
    /// TLS handshakes completed by resuming a session.
    pub tls_resumed: Counter,
    /// TLS connections failed: a bad handshake or record, or not TLS at all.
    pub tls_failures: Counter,
    /// TLS handshake inputs left for a later turn of the event loop because
    /// the turn's budget ([`TLS_HANDSHAKES_PER_TURN`]) was spent: a flood of
    /// handshakes waiting so that established connections do not.
    ///
    /// [`TLS_HANDSHAKES_PER_TURN`]: crate::server::table::TLS_HANDSHAKES_PER_TURN
    pub tls_deferred: Counter,
    /// Gauge: pooled inflaters lent to compressed messages that span reads.
    pub inflaters_in_use: Counter,
    /// PROXY protocol headers read (`--proxy-protocol`).
    pub proxy_headers: Counter,
    /// Connections closed for a missing or malformed PROXY header.
    pub proxy_errors: Counter,
    /// Connections closed unanswered at accept (or after their PROXY
    /// header): their address already had `--max-connections-per-ip`
    /// connections in their handshake.
    pub arrivals_refused: Counter,
    /// Gauge, rooms (`--reply room`): room members on this shard.
    pub room_members: Counter,
    /// Rooms (`--reply room`): messages members sent into their rooms.
    pub room_published: Counter,
    /// Rooms: messages queued for a member (one per member reached).
    pub room_deliveries: Counter,
    /// Rooms: messages left out for a member past its backlog (`--slow-member drop`).
    pub room_dropped: Counter,
    /// Rooms: members closed with 1008 past their backlog (`--slow-member close`).
    pub room_slow_closes: Counter,
    /// Gauge, rooms: room output bytes waiting in this shard's members' backlogs.
    pub room_backlog_bytes: Counter,
    /// Gauge, rooms: messages waiting in this shard's inbox (at the last turn).
    pub room_inbox_depth: Counter,
    /// Rooms: times a member was not read because another shard's inbox was full.
    pub room_inbox_waits: Counter,
    /// What the protocol core counts itself.
    pub core: CoreCounters,
}

impl ShardMetrics {
    /// Counts a refused handshake.
    pub fn refuse(&self, r: &Rejection) {
        self.refused[r.index()].add(1);
    }

    /// Counts a timeout.
    pub fn timeout(&self, kind: Timeout) {
        self.timeouts[kind as usize].add(1);
    }

    /// Handshakes refused, all reasons together.
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().map(Counter::get).sum()
    }

    /// TLS handshakes completed, full or resumed.
    pub fn tls_handshakes(&self) -> u64 {
        self.tls_full.get() + self.tls_resumed.get()
    }

    /// Protocol errors, all codes together.
    pub fn protocol_errors_total(&self) -> u64 {
        self.protocol_errors.values().map(|(_, n)| n).sum()
    }

    /// The sum of several shards' sets (gauges summed too: the process's
    /// open connections are every shard's).
    pub fn sum<'a>(shards: impl IntoIterator<Item = &'a ShardMetrics>) -> ShardMetrics {
        let t = ShardMetrics::default();
        for s in shards {
            let add = |a: &Counter, b: &Counter| a.add(b.get());
            add(&t.connections_open, &s.connections_open);
            add(&t.accepted, &s.accepted);
            add(&t.upgraded, &s.upgraded);
            for (a, b) in t.refused.iter().zip(&s.refused) {
                add(a, b);
            }
            t.protocol_errors.add_from(&s.protocol_errors);
            add(&t.messages, &s.messages);
            add(&t.bytes_in, &s.bytes_in);
            add(&t.bytes_out, &s.bytes_out);
            add(&t.backpressure_stalls, &s.backpressure_stalls);
            add(&t.rate_limited, &s.rate_limited);
            for (a, b) in t.timeouts.iter().zip(&s.timeouts) {
                add(a, b);
            }
            add(&t.recv_starved, &s.recv_starved);
            add(&t.ring_buffers, &s.ring_buffers);
            add(&t.tls_full, &s.tls_full);
            add(&t.tls_resumed, &s.tls_resumed);
            add(&t.tls_failures, &s.tls_failures);
            add(&t.tls_deferred, &s.tls_deferred);
            add(&t.inflaters_in_use, &s.inflaters_in_use);
            add(&t.proxy_headers, &s.proxy_headers);
            add(&t.proxy_errors, &s.proxy_errors);
            add(&t.arrivals_refused, &s.arrivals_refused);
            add(&t.room_members, &s.room_members);
            add(&t.room_published, &s.room_published);
            add(&t.room_deliveries, &s.room_deliveries);
            add(&t.room_dropped, &s.room_dropped);
            add(&t.room_slow_closes, &s.room_slow_closes);
            add(&t.room_backlog_bytes, &s.room_backlog_bytes);
            add(&t.room_inbox_depth, &s.room_inbox_depth);
            add(&t.room_inbox_waits, &s.room_inbox_waits);
            t.core.add_from(&s.core);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_fills_whole_cache_lines() {
        assert_eq!(std::mem::align_of::<ShardMetrics>(), 64);
        assert_eq!(std::mem::size_of::<ShardMetrics>() % 64, 0);
    }

    #[test]
    fn sums_add_every_field_of_every_shard() {
        let a = ShardMetrics::default();
        let b = ShardMetrics::default();
        a.messages.add(3);
        b.messages.add(4);
        a.connections_open.set(2);
        b.connections_open.set(5);
        a.refuse(&Rejection::Overloaded);
        b.refuse(&Rejection::Overloaded);
        b.refuse(&Rejection::BadKey);
        a.protocol_errors.count(1002);
        b.protocol_errors.count(1007);
        a.core.close_sent.count(1000);
        b.core.close_sent.count(1000);
        b.core.inflated_messages.add(9);
        a.timeout(Timeout::Idle);
        b.timeout(Timeout::Close);
        b.tls_resumed.add(1);
        a.tls_full.add(2);
        let t = ShardMetrics::sum([&a, &b]);
        assert_eq!(t.messages.get(), 7);
        assert_eq!(t.connections_open.get(), 7);
        assert_eq!(t.refused[Rejection::Overloaded.index()].get(), 2);
        assert_eq!(t.refused_total(), 3);
        assert_eq!(t.protocol_errors_total(), 2);
        assert_eq!(t.core.close_sent.values().find(|v| v.0 == "1000").unwrap().1, 2);
        assert_eq!(t.core.inflated_messages.get(), 9);
        assert_eq!(t.timeouts.iter().map(Counter::get).collect::<Vec<_>>(), [0, 1, 1]);
        assert_eq!(t.tls_handshakes(), 3);
        // Summing reads: the shards' own sets are unchanged.
        assert_eq!(a.messages.get(), 3);
    }
}
