//! The server around the protocol core: settings, listeners, shards,
//! connection state, timers and shutdown, shared by the I/O backends.

pub mod config;
pub mod conn;
pub mod listener;
pub mod metrics;
pub mod notify;
pub mod per_ip;
pub mod rate;
pub mod scm;
pub mod shard;
pub mod shared;
pub mod table;
pub mod timers;
pub mod tls;
pub mod tokens;
