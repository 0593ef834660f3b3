//! Starting the graceful drain, from a signal or after a handover to a new
//! process: every shard stops accepting, echoes what it has, and closes
//! each connection with 1001.

use super::handover::Role;
use crate::server::notify::Notifier;
use crate::server::shared::Shared;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Time asked of systemd beyond the grace period when stopping: the last
/// connections' close handshakes and the exit itself.
pub(super) const STOP_MARGIN: Duration = Duration::from_secs(5);

/// What starts a drain.
pub(super) struct Drain {
    pub shared: Arc<Shared>,
    pub wakers: Vec<Box<dyn Fn() + Send + Sync>>,
    pub notifier: Arc<Notifier>,
    pub grace: Duration,
    /// Copies of the listeners kept for a handover (`--takeover`). Closed
    /// when the drain starts, so that without a handover the sockets close
    /// with the shards' own copies and new clients are refused at once
    /// rather than left waiting in a queue no one reads.
    pub kept: Mutex<Vec<(Role, TcpListener)>>,
}

impl Drain {
    /// Starts the drain; false if it had already started.
    pub fn start(&self) -> bool {
        if !self.shared.request_shutdown() {
            return false;
        }
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).clear();
        for wake in &self.wakers {
            wake();
        }
        // The drain may take the whole grace period: ask systemd for that
        // much (and a little) beyond its stop timeout.
        let extend = (self.grace + STOP_MARGIN).as_micros();
        self.notifier.notify(&format!("STOPPING=1\nEXTEND_TIMEOUT_USEC={extend}\nSTATUS=draining connections"));
        true
    }
}
