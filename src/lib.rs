//! Ricochet: a shard-per-core WebSocket (RFC 6455) echo server for bare-metal Linux.
//!
//! [`ws`] is the I/O-free protocol core.

pub mod ws;
