//! Drives a [`Session`] from memory the way an I/O backend does: each read
//! lands after [`HEADROOM`] bytes of scratch, behind the bytes the previous
//! call left unconsumed. Tests, the fuzz target and the benchmarks use it,
//! so the carry-over rules they exercise are the backends' own.

use crate::ws::config::Config;
use crate::ws::counters::CoreCounters;
use crate::ws::deflate::Inflaters;
use crate::ws::handshake::AdmitAll;
use crate::ws::output::Output;
use crate::ws::session::{Budget, Ctx, Progress, Session, HEADROOM};
use std::time::Instant;

/// Inflaters one thread's sessions share, as a shard's do: for tests, the
/// fuzz target and the benchmarks, which run sessions without a shard.
pub fn inflaters() -> &'static Inflaters {
    thread_local! {
        static POOL: &'static Inflaters = Box::leak(Box::new(Inflaters::new(64)));
    }
    POOL.with(|p| *p)
}

/// Counters one thread's sessions bump, as a shard's do (one writer each):
/// for tests, the fuzz target and the benchmarks.
pub fn counters() -> &'static CoreCounters {
    thread_local! {
        static COUNTERS: &'static CoreCounters = Box::leak(Box::default());
    }
    COUNTERS.with(|c| *c)
}

/// A session context as a shard makes it, admitting everyone, with this
/// thread's inflaters and counters.
pub fn ctx(config: &Config, now: Instant) -> Ctx<'_> {
    Ctx { config, now, admission: &AdmitAll, inflaters: inflaters(), counters: counters(), budget: Budget::UNLIMITED }
}

/// A session plus the state a backend keeps next to it.
#[derive(Debug)]
pub struct Harness {
    /// The session under test.
    pub session: Session,
    /// Unconsumed input from the previous call.
    pub carry: Vec<u8>,
    /// Everything the session asked to send, in order.
    pub sent: Vec<u8>,
    /// Messages, upgrade, rejection and error over all calls.
    pub total: Progress,
    /// Under [`crate::ws::Reply::Collect`]: every message collected, in order.
    pub collected: Vec<crate::ws::output::Collected>,
    buf: Vec<u8>,
    out: Output,
}

impl Harness {
    /// A harness around a new session.
    pub fn new(session: Session) -> Harness {
        Harness {
            session,
            carry: Vec::new(),
            sent: Vec::new(),
            total: Progress::default(),
            collected: Vec::new(),
            buf: Vec::new(),
            out: Output::new(),
        }
    }

    /// Feeds one read's worth of bytes, then, as a backend does, the carry
    /// again while the session stalls on complete input (and can go on).
    pub fn feed(&mut self, ctx: &Ctx<'_>, data: &[u8]) {
        self.feed_once(ctx, data);
        while self.session.stalled().is_some() && ctx.inflaters.available() {
            self.feed_once(ctx, &[]);
        }
    }

    /// Feeds one read's worth of bytes, once.
    pub fn feed_once(&mut self, ctx: &Ctx<'_>, data: &[u8]) {
        self.buf.clear();
        self.buf.resize(HEADROOM, 0);
        self.buf.extend_from_slice(&self.carry);
        self.buf.extend_from_slice(data);
        self.out.clear();
        let p = self.session.handle_input(ctx, &mut self.buf, HEADROOM, &mut self.out);
        self.out.copy_to(&self.buf, &mut self.sent);
        self.collected.append(&mut self.out.messages);
        self.carry.clear();
        self.carry.extend_from_slice(&self.buf[HEADROOM + p.consumed..]);
        self.total.messages += p.messages;
        self.total.upgraded |= p.upgraded;
        self.total.rejected = self.total.rejected.take().or(p.rejected);
        self.total.error = self.total.error.or(p.error);
    }

    /// Fires the session's timers as of `ctx.now`; true means drop the connection.
    pub fn tick(&mut self, ctx: &Ctx<'_>) -> bool {
        self.out.clear();
        let drop = self.session.handle_timeout(ctx, &mut self.out);
        self.out.copy_to(&[], &mut self.sent);
        drop
    }

    /// Starts a server-side close with `code`.
    pub fn close(&mut self, ctx: &Ctx<'_>, code: u16) {
        self.out.clear();
        self.session.start_close(ctx, code, &mut self.out);
        self.out.copy_to(&[], &mut self.sent);
    }
}
