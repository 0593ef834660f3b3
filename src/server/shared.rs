//! The little state shards share: the process-wide connection count (touched
//! only at handshake and close, never per message), the shutdown flag and
//! the bearer tokens, if any.

use crate::server::tokens::Tokens;
use crate::ws::handshake::Admission;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Shared by all shards of a process.
#[derive(Debug)]
pub struct Shared {
    active: AtomicUsize,
    max: usize,
    shutdown: AtomicBool,
    tokens: Option<Arc<Tokens>>,
}

impl Shared {
    /// At most `max` upgraded connections at once; with `tokens`, only
    /// handshakes that carry one of them.
    pub fn new(max: usize, tokens: Option<Arc<Tokens>>) -> Shared {
        Shared { active: AtomicUsize::new(0), max, shutdown: AtomicBool::new(false), tokens }
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

    fn tokens_required(&self) -> bool {
        self.tokens.is_some()
    }

    fn accepts_token(&self, token: &[u8]) -> bool {
        self.tokens.as_ref().is_none_or(|t| t.accepts(token))
    }
}
