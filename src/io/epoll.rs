//! The epoll backend: one `mio` event loop per shard, edge-triggered, one
//! receive buffer shared by all the shard's connections.
//!
//! Every read lands in the shard buffer behind a reserve that holds the
//! connection's carried bytes, the session echoes in place, and the output is
//! written straight from that buffer with `writev`. Only what the socket does
//! not take is copied into the connection (`Conn::queue`), and the connection
//! is not read again until that drains: the client meets TCP flow control
//! instead of the server growing buffers.

use crate::server::conn::Conn;
use crate::server::shard::{ShardContext, ShardReady};
use crate::server::stats::Stats;
use crate::server::timers::Timers;
use crate::ws::{close, Ctx, Output, Session, HEADROOM};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, warn};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;
/// Reads per readiness event before other connections get a turn.
const READ_BUDGET: usize = 16;
/// Slices per writev call (well under IOV_MAX).
const IOV_BATCH: usize = 64;
/// How long accepting pauses when the process is out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

struct Entry {
    stream: TcpStream,
    conn: Conn,
    generation: u32,
}

struct Shard {
    ctx: ShardContext,
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Slab<Entry>,
    next_generation: u32,
    /// Receive buffer: `reserve` bytes for headroom and carried bytes, then the read area.
    buf: Vec<u8>,
    reserve: usize,
    out: Output,
    timers: Timers,
    /// Connections whose read budget ran out before the socket was drained.
    again: Vec<usize>,
    accept_paused_until: Option<Instant>,
    grace_deadline: Option<Instant>,
    stats: Stats,
}

/// Runs one shard until shutdown completes; returns its counters.
pub fn run(ctx: ShardContext, listener: std::net::TcpListener, ready: impl FnOnce(ShardReady)) -> io::Result<Stats> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let mut listener = TcpListener::from_std(listener);
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let s = &ctx.settings;
    // Headroom for a server header plus the largest carry: a request head
    // just under its limit, or a control frame (131 bytes).
    let reserve = HEADROOM + s.core.handshake.max_head_bytes.max(256);
    let mut shard = Shard {
        poll,
        listener: Some(listener),
        conns: Slab::new(),
        next_generation: 0,
        buf: vec![0; reserve + s.read_buffer],
        reserve,
        out: Output::new(),
        timers: Timers::new(),
        again: Vec::new(),
        accept_paused_until: None,
        grace_deadline: None,
        stats: Stats::default(),
        ctx,
    };
    ready(ShardReady { waker });
    shard.event_loop()?;
    Ok(shard.stats)
}

impl Shard {
    fn event_loop(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            if self.ctx.shared.shutdown_requested() && self.grace_deadline.is_none() {
                self.begin_shutdown(now);
            }
            if let Some(deadline) = self.grace_deadline {
                if self.conns.is_empty() || now >= deadline {
                    if !self.conns.is_empty() {
                        debug!(shard = self.ctx.id, left = self.conns.len(), "grace period over, dropping connections");
                    }
                    for slot in self.conns.iter().map(|(k, _)| k).collect::<Vec<_>>() {
                        self.drop_conn(slot);
                    }
                    return Ok(());
                }
            }
            let timeout = self.poll_timeout(now);
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(now),
                    WAKER => {}
                    Token(t) => {
                        let slot = t - FIRST_CONN;
                        if ev.is_writable() {
                            self.on_writable(slot, now);
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.on_readable(slot, now);
                        }
                    }
                }
            }
            for slot in std::mem::take(&mut self.again) {
                self.on_readable(slot, now);
            }
            if self.accept_paused_until.is_some_and(|t| now >= t) {
                self.accept_paused_until = None;
                self.accept(now);
            }
            self.fire_timers(now);
        }
    }

    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.again.is_empty() {
            return Some(Duration::ZERO);
        }
        [self.timers.next_deadline(), self.accept_paused_until, self.grace_deadline]
            .into_iter()
            .flatten()
            .min()
            .map(|t| t.saturating_duration_since(now))
    }

    fn accept(&mut self, now: Instant) {
        if self.accept_paused_until.is_some() {
            return;
        }
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, _peer)) => self.add_conn(stream, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)) =>
                {
                    warn!(shard = self.ctx.id, error = %e, "cannot accept, pausing for 100ms (raise LimitNOFILE / ulimit -n)");
                    self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                    return;
                }
                // The peer gave up before we accepted (ECONNABORTED and the like).
                Err(e) => debug!(shard = self.ctx.id, error = %e, "accept failed"),
            }
        }
    }

    fn add_conn(&mut self, mut stream: TcpStream, now: Instant) {
        if self.ctx.settings.nodelay {
            let _ = stream.set_nodelay(true);
        }
        let entry = self.conns.vacant_entry();
        let slot = entry.key();
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(slot + FIRST_CONN),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            warn!(error = %e, "cannot register connection");
            return;
        }
        self.stats.accepted += 1;
        self.next_generation = self.next_generation.wrapping_add(1);
        let session = Session::new(&self.ctx.settings.core, now);
        entry.insert(Entry { stream, conn: Conn::new(session), generation: self.next_generation });
        self.reschedule(slot);
    }

    /// Reads, handles and answers until the socket is drained, the budget is
    /// spent, or output backs up.
    fn on_readable(&mut self, slot: usize, now: Instant) {
        for _ in 0..READ_BUDGET {
            let Some(e) = self.conns.get_mut(slot) else {
                return;
            };
            if e.conn.has_pending() || e.conn.peer_eof {
                return; // resumed by on_writable once the output drains
            }
            let reserve = self.reserve;
            let start = e.conn.stage_carry(&mut self.buf, reserve);
            let want = self.buf.len() - reserve;
            let n = match e.stream.read(&mut self.buf[reserve..]) {
                Ok(0) => return self.on_eof(slot),
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return self.on_drained(slot, now),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    debug!(error = %err, "read failed");
                    return self.drop_conn(slot);
                }
            };
            self.stats.bytes_in += n as u64;
            let end = reserve + n;
            self.out.clear();
            let ctx = Ctx { config: &self.ctx.settings.core, now, admission: &*self.ctx.shared };
            let p = e.conn.session.handle_input(&ctx, &mut self.buf[..end], start, &mut self.out);
            e.conn.keep_carry(&self.buf[..end], start, &p);
            self.stats.messages += p.messages;
            if p.upgraded {
                e.conn.admitted = true;
                self.stats.upgraded += 1;
            }
            if p.rejected.is_some() {
                self.stats.rejected += 1;
            }
            if let Some(err) = p.error {
                self.stats.protocol_errors += 1;
                debug!(error = %err, "protocol error");
            }
            if !self.flush_output(slot, end) {
                return;
            }
            self.reschedule(slot);
            // A short read means the socket was drained: edge-triggered epoll
            // reports the next arrival as a new event.
            if n < want {
                return self.on_drained(slot, now);
            }
        }
        self.again.push(slot);
    }

    /// Sends `self.out` (resolved against `self.buf[..end]`), queueing what the
    /// socket does not take. Returns false if the connection was dropped.
    fn flush_output(&mut self, slot: usize, end: usize) -> bool {
        let Some(e) = self.conns.get_mut(slot) else {
            return false;
        };
        let buf = &self.buf[..end];
        if e.conn.has_pending() {
            e.conn.queue(&self.out, buf, 0);
        } else if !self.out.is_empty() {
            match write_output(&mut e.stream, &self.out, buf) {
                Ok(n) => {
                    self.stats.bytes_out += n as u64;
                    if n < self.out.len() {
                        e.conn.queue(&self.out, buf, n);
                    }
                }
                Err(err) => {
                    debug!(error = %err, "write failed");
                    self.drop_conn(slot);
                    return false;
                }
            }
        }
        self.after_output(slot)
    }

    /// Once a closed session's output is flushed, shut our side down and wait
    /// for the peer's FIN (so it reads our close frame instead of an RST).
    /// Returns false if the connection was dropped.
    fn after_output(&mut self, slot: usize) -> bool {
        let Some(e) = self.conns.get_mut(slot) else {
            return false;
        };
        if e.conn.admitted && e.conn.session.is_closed() {
            // Winding down: its place in the connection limit is free again.
            e.conn.admitted = false;
            self.ctx.shared.release();
        }
        if e.conn.has_pending() {
            return true;
        }
        if e.conn.peer_eof || e.conn.session.close_handshake_done() {
            self.drop_conn(slot);
            return false;
        }
        if e.conn.session.is_closed() && !e.conn.write_shut {
            e.conn.write_shut = true;
            let _ = e.stream.shutdown(Shutdown::Write);
        }
        true
    }

    fn on_writable(&mut self, slot: usize, now: Instant) {
        let Some(e) = self.conns.get_mut(slot) else {
            return;
        };
        if !e.conn.has_pending() {
            return;
        }
        loop {
            match e.stream.write(e.conn.pending()) {
                Ok(0) => return self.drop_conn(slot),
                Ok(n) => {
                    self.stats.bytes_out += n as u64;
                    e.conn.advance_pending(n);
                    if !e.conn.has_pending() {
                        break;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    debug!(error = %err, "write failed");
                    return self.drop_conn(slot);
                }
            }
        }
        if self.after_output(slot) {
            // Drained: resume reading what TCP held back meanwhile.
            self.on_readable(slot, now);
        }
    }

    /// Everything the client sent so far was read and answered. During a
    /// shutdown this is when its close (1001) goes out: after the echo of
    /// every byte that arrived before, so nothing is lost.
    fn on_drained(&mut self, slot: usize, now: Instant) {
        if self.grace_deadline.is_none() {
            return;
        }
        let Some(e) = self.conns.get_mut(slot) else { return };
        if e.conn.close_started || e.conn.has_pending() {
            return;
        }
        e.conn.close_started = true;
        self.out.clear();
        let ctx = Ctx { config: &self.ctx.settings.core, now, admission: &*self.ctx.shared };
        e.conn.session.start_close(&ctx, close::GOING_AWAY, &mut self.out);
        if self.flush_output(slot, 0) {
            self.reschedule(slot);
        }
    }

    fn on_eof(&mut self, slot: usize) {
        let Some(e) = self.conns.get_mut(slot) else {
            return;
        };
        // A client that half-closed may still read: finish sending first.
        if e.conn.has_pending() {
            e.conn.peer_eof = true;
        } else {
            self.drop_conn(slot);
        }
    }

    fn drop_conn(&mut self, slot: usize) {
        if let Some(mut e) = self.conns.try_remove(slot) {
            let _ = self.poll.registry().deregister(&mut e.stream);
            if e.conn.admitted {
                self.ctx.shared.release();
            }
        }
    }

    /// Schedules the connection's next deadline if it moved earlier than the
    /// one already scheduled (later moves are found when the entry fires).
    fn reschedule(&mut self, slot: usize) {
        let Some(e) = self.conns.get_mut(slot) else {
            return;
        };
        let Some(want) = e.conn.session.poll_timeout(&self.ctx.settings.core) else {
            return;
        };
        if e.conn.timer_at.is_none_or(|t| want < t) {
            e.conn.timer_at = Some(want);
            self.timers.schedule(want, slot, e.generation);
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(f) = self.timers.pop_due(now) {
            let Some(e) = self.conns.get_mut(f.slot) else {
                continue;
            };
            if e.generation != f.generation || e.conn.timer_at != Some(f.at) {
                continue; // stale entry
            }
            e.conn.timer_at = None;
            self.out.clear();
            let ctx = Ctx { config: &self.ctx.settings.core, now, admission: &*self.ctx.shared };
            if e.conn.session.handle_timeout(&ctx, &mut self.out) {
                self.drop_conn(f.slot);
                continue;
            }
            if self.flush_output(f.slot, 0) {
                self.reschedule(f.slot);
            }
        }
    }

    /// Stops accepting and starts closing every connection: each one is read
    /// once more and gets its close when drained (`on_drained`); one whose
    /// output is backed up gets it once that output has gone out.
    fn begin_shutdown(&mut self, now: Instant) {
        self.grace_deadline = Some(now + self.ctx.settings.shutdown_grace);
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        let slots: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for slot in slots {
            self.on_readable(slot, now);
        }
    }
}

/// Writes the output with `writev` until done or the socket is full; returns
/// the bytes written.
fn write_output(stream: &mut TcpStream, out: &Output, buf: &[u8]) -> io::Result<usize> {
    let total = out.len();
    let mut written = 0;
    let mut iov = [IoSlice::new(&[]); IOV_BATCH];
    let chunks = out.chunks();
    let mut i = 0; // first chunk not fully written
    let mut skip = 0; // bytes of chunk i already written
    while written < total {
        let mut n_iov = 0;
        for (k, &c) in chunks[i..].iter().take(IOV_BATCH).enumerate() {
            let s = out.bytes(buf, c);
            iov[k] = IoSlice::new(if k == 0 { &s[skip..] } else { s });
            n_iov += 1;
        }
        let n = match stream.write_vectored(&iov[..n_iov]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(written),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        written += n;
        // Advance (i, skip) past n bytes.
        let mut left = n;
        while left > 0 {
            let len = out.bytes(buf, chunks[i]).len() - skip;
            if left >= len {
                left -= len;
                i += 1;
                skip = 0;
            } else {
                skip += left;
                left = 0;
            }
        }
    }
    Ok(written)
}
