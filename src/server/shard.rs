//! What a shard is given by the process that starts it, and what it says
//! back once its loop runs. The process itself is assembled in
//! [`crate::process`], above both this module and the drivers.

use crate::server::config::Settings;
use crate::server::metrics::ShardMetrics;
use crate::server::shared::Shared;
use std::sync::Arc;

/// What a shard needs from the process.
#[derive(Clone, Debug)]
pub struct ShardContext {
    /// Shard number, from 0.
    pub id: usize,
    /// Settings shared by all shards.
    pub settings: Arc<Settings>,
    /// Connection limit and shutdown flag.
    pub shared: Arc<Shared>,
    /// The TLS configuration every shard shares, when there are TLS listeners.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// This shard's counters (it is their only writer; the admin listener reads them).
    pub metrics: Arc<ShardMetrics>,
    /// With `--reply room`: the rooms every shard shares.
    pub rooms: Option<Arc<crate::rooms::Rooms>>,
}

/// A listening socket a shard accepts on.
#[derive(Debug)]
pub struct ShardListener {
    /// The socket (the shard's own SO_REUSEPORT socket, or its copy of one
    /// it shares).
    pub socket: std::net::TcpListener,
    /// Its connections speak TLS.
    pub tls: bool,
    /// Other shards accept on the same socket (a passed socket, fewer than
    /// the shards): the kernel's accept queue is theirs too, so no shard may
    /// keep taking from it alone (io_uring arms one accept at a time for it).
    pub shared: bool,
}

/// Sent by a shard once its event loop is about to run.
pub struct ShardReady {
    /// Wakes the shard's loop (for shutdown); any thread may call it.
    pub wake: Box<dyn Fn() + Send + Sync>,
}
