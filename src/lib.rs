//! Ricochet: a shard-per-core WebSocket (RFC 6455) echo server for bare-metal Linux.
//!
//! [`ws`] is the I/O-free protocol core; [`server`] holds what every I/O
//! backend shares; [`io`] holds the backends; [`process`] assembles them into a running server; [`admin`] is
//! the operators' listener (metrics, status page); [`bench`] is the load
//! generator; [`tune`] audits a host's kernel settings.

pub mod admin;
pub mod bench;
pub mod cluster;
pub mod io;
pub mod logging;
pub mod process;
pub mod rooms;
pub mod server;
pub mod tune;
pub mod ws;
