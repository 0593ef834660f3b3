//! Per-shard counters, kept by the shard alone and logged at exit.

/// What one shard did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// TCP connections accepted.
    pub accepted: u64,
    /// Handshakes completed.
    pub upgraded: u64,
    /// Handshakes refused with an HTTP error.
    pub rejected: u64,
    /// Connections failed for a protocol violation.
    pub protocol_errors: u64,
    /// Data messages received.
    pub messages: u64,
    /// Bytes read from sockets.
    pub bytes_in: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
    /// io_uring: receives that found no free buffer (ENOBUFS) and were re-armed
    /// later; many mean `--uring-buffers` is too small for the load.
    pub recv_starved: u64,
    /// io_uring: receive buffers the shard's ring grew to (it starts small
    /// and doubles on starvation, up to `--uring-buffers`).
    pub ring_buffers: u64,
    /// TLS handshakes completed (full or resumed).
    pub tls_handshakes: u64,
    /// TLS connections failed: a bad handshake or record, or not TLS at all.
    pub tls_failures: u64,
}

impl Stats {
    /// Adds another shard's counters.
    pub fn add(&mut self, o: &Stats) {
        self.accepted += o.accepted;
        self.upgraded += o.upgraded;
        self.rejected += o.rejected;
        self.protocol_errors += o.protocol_errors;
        self.messages += o.messages;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.recv_starved += o.recv_starved;
        self.ring_buffers += o.ring_buffers;
        self.tls_handshakes += o.tls_handshakes;
        self.tls_failures += o.tls_failures;
    }
}
