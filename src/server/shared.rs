//! The little state shards share: the process-wide connection count (touched
//! only at handshake and close, never per message) and the shutdown flag.

use crate::ws::handshake::Admission;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Shared by all shards of a process.
#[derive(Debug)]
pub struct Shared {
    active: AtomicUsize,
    max: usize,
    shutdown: AtomicBool,
}

impl Shared {
    /// At most `max` upgraded connections at once.
    pub fn new(max: usize) -> Shared {
        Shared { active: AtomicUsize::new(0), max, shutdown: AtomicBool::new(false) }
    }

    /// Gives back an admitted connection's place.
    pub fn release(&self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
    }

    /// Upgraded connections now open.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Asks every shard to shut down gracefully.
    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
    }

    /// True once shutdown was requested.
    pub fn shutdown_requested(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }
}

impl Admission for Shared {
    fn try_admit(&self) -> bool {
        self.active.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < self.max).then_some(n + 1)).is_ok()
    }
}
