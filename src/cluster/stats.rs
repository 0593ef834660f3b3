//! The bridge's counters, for `/metrics` (docs/cluster.md lists them).

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a message did not cross between this process and NATS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Outgoing: the bridge's queue (`--cluster-queue`) was full.
    QueueFull,
    /// Outgoing: no NATS connection when its turn came.
    Disconnected,
    /// Outgoing: larger than the server's `max_payload` (a race with a
    /// server that lowered it; members are refused such messages with 1009).
    TooLarge,
    /// Incoming: not a message Ricochet writes (src/cluster/wire.rs).
    Malformed,
    /// Incoming: the shards that have members were too far behind.
    ShardsBusy,
    /// Incoming: the client's buffer for a room's subscription was full
    /// (async-nats's slow-consumer event: one per message left out).
    SlowConsumer,
}

impl DropReason {
    /// Every reason, in the order of the metric's labels.
    pub const ALL: [DropReason; 6] = [
        DropReason::QueueFull,
        DropReason::Disconnected,
        DropReason::TooLarge,
        DropReason::Malformed,
        DropReason::ShardsBusy,
        DropReason::SlowConsumer,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Disconnected => "disconnected",
            DropReason::TooLarge => "too_large",
            DropReason::Malformed => "malformed",
            DropReason::ShardsBusy => "shards_busy",
            DropReason::SlowConsumer => "slow_consumer",
        }
    }
}

/// Counters and gauges of the bridge. Written by the shards (queueing) and
/// the bridge thread; relaxed atomics, read by the metrics listener.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// 1 while connected to a NATS server.
    pub connected: AtomicU64,
    /// Messages published to NATS.
    pub published: AtomicU64,
    /// Messages received from NATS (well-formed ones).
    pub received: AtomicU64,
    /// Messages dropped, by [`DropReason::ALL`]'s order.
    dropped: [AtomicU64; 6],
    /// Connections made again after one was lost.
    pub reconnects: AtomicU64,
    /// Messages waiting in the bridge's queue.
    pub queue_depth: AtomicU64,
    /// Their bytes.
    pub queue_bytes: AtomicU64,
    /// Rooms subscribed to.
    pub subscriptions: AtomicU64,
    /// The server's `max_payload` last read (0 before the first connection).
    pub max_payload: AtomicU64,
}

impl ClusterStats {
    /// Counts `n` messages dropped for `why`.
    pub fn drop_n(&self, why: DropReason, n: u64) {
        if n > 0 {
            self.dropped[why as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Messages dropped for `why` so far.
    pub fn dropped(&self, why: DropReason) -> u64 {
        self.dropped[why as usize].load(Ordering::Relaxed)
    }

    /// Reads a counter or gauge.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}
