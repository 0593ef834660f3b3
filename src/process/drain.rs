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
    /// A signal started the drain and its log line is not written yet
    /// (see [`Drain::wait_for_the_line`]).
    pub line_due: std::sync::atomic::AtomicBool,
}

impl Drain {
    /// Waits (at most `limit`) until the signal thread has written the line
    /// that says the drain started. An idle server's shards stop within a
    /// millisecond of the signal, and on one CPU the process could exit
    /// before the signal thread ran again to log it (4 of 40 SIGINTs).
    pub fn wait_for_the_line(&self, limit: Duration) {
        let t0 = std::time::Instant::now();
        while self.line_due.load(std::sync::atomic::Ordering::Acquire) && t0.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

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
        bound_the_drain(self.grace + DRAIN_OVERRUN);
        true
    }
}

/// How long past the grace period a drain may run before the process ends
/// itself: shards drop what is left when the grace period ends, so only a
/// shard that stopped turning (a bug) is still there by then.
pub(super) const DRAIN_OVERRUN: Duration = Duration::from_secs(1);

/// Ends the process `after` this long if it is still running: a graceful
/// shutdown is bounded by `--shutdown-grace` even when a shard is stuck
/// (issue #23). Exits 1, after one line on the log.
fn bound_the_drain(after: Duration) {
    let spawned = std::thread::Builder::new().name("drain-deadline".into()).spawn(move || {
        std::thread::sleep(after);
        // The line from a thread of its own: a log that blocks (standard
        // error a full pipe) must not keep the process alive.
        let _ = std::thread::Builder::new().spawn(|| {
            tracing::error!("shutting down: a shard did not stop within the grace period; exiting now");
        });
        std::thread::sleep(Duration::from_millis(100));
        // SAFETY: _exit ends the process; nothing runs after it.
        unsafe { libc::_exit(1) };
    });
    if let Err(e) = spawned {
        tracing::warn!("cannot bound the drain's duration: {e}");
    }
}
