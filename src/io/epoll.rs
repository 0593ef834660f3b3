//! The epoll backend: one `mio` event loop per shard, edge-triggered, one
//! receive buffer shared by all the shard's connections.
//!
//! Every read lands in the shard buffer behind a reserve that holds the
//! connection's carried bytes, the session echoes in place, and the output is
//! written straight from that buffer with `sendmsg` (see `send.rs`). Only what the socket does
//! not take is copied into the connection (`Conn::queue`), and the connection
//! is not read again until that drains: the client meets TCP flow control
//! instead of the server growing buffers. Everything else (sessions, timers,
//! limits, shutdown) is the shared [`Table`]'s.

use crate::server::shard::{ShardContext, ShardListener, ShardReady};
use crate::server::table::{HandshakeTurn, PeerAddr, Table, TimerAction, SHUTDOWN_SWEEP};
use crate::ws::{Output, HEADROOM};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::io::{self, IoSlice, Read};
use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// Connections are `Token(slot)`; the waker and the listeners take the top
/// of the token space, far from any slot.
const WAKER: Token = Token(usize::MAX);
/// Listener `i` is `Token(FIRST_LISTENER - i)`.
const FIRST_LISTENER: usize = usize::MAX - 1;
/// At most this many listeners per shard (a plain and a few TLS addresses).
const MAX_LISTENERS: usize = 1024;
/// Reads per readiness event before other connections get a turn.
const READ_BUDGET: usize = 16;
/// Slices per sendmsg call (well under IOV_MAX).
const IOV_BATCH: usize = 64;
/// How long accepting pauses when the process is out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

struct Shard {
    table: Table<TcpStream>,
    poll: Poll,
    /// Listeners and whether each speaks TLS; emptied at shutdown.
    listeners: Vec<(TcpListener, bool)>,
    /// Receive buffer: `reserve` bytes for headroom and carried bytes, then the read area.
    buf: Vec<u8>,
    reserve: usize,
    /// Connections whose read budget ran out before the socket was drained.
    again: Vec<usize>,
    /// Connections waiting, unread, for an inflater (permessage-deflate);
    /// retried once one is free.
    parked: Vec<usize>,
    /// Room members not read because another shard's inbox is full;
    /// retried each turn (that shard wakes this one when it has room).
    room_waiting: Vec<usize>,
    /// Members with new room output (scratch).
    room_flush: Vec<usize>,
    accept_paused_until: Option<Instant>,
}

/// The reserve in front of each read: headroom for a server header plus the
/// largest carry (a request head just under its limit, or a control frame;
/// with TLS listeners, part of a TLS record; with `--proxy-protocol`, part of
/// a PROXY header).
pub fn read_reserve(ctx: &ShardContext) -> usize {
    let tls = if ctx.tls.is_some() { crate::ws::tls::MAX_RECORD_LEN } else { 0 };
    let proxy = if ctx.settings.proxy_protocol { crate::ws::proxy::V2_MAX } else { 0 };
    HEADROOM + ctx.settings.core.handshake.max_head_bytes.max(256).max(tls).max(proxy)
}

/// Runs one shard until shutdown completes; returns its counters.
pub fn run(ctx: ShardContext, listeners: Vec<ShardListener>, ready: impl FnOnce(ShardReady)) -> io::Result<()> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    assert!(listeners.len() <= MAX_LISTENERS, "too many listeners");
    let mut listeners: Vec<(TcpListener, bool)> =
        listeners.into_iter().map(|l| (TcpListener::from_std(l.socket), l.tls)).collect();
    for (i, (l, _)) in listeners.iter_mut().enumerate() {
        poll.registry().register(l, Token(FIRST_LISTENER - i), Interest::READABLE)?;
    }
    if let Some(rooms) = &ctx.rooms {
        let w = waker.clone();
        rooms.inboxes[ctx.id].set_wake(Box::new(move || drop(w.wake())));
    }
    let base = read_reserve(&ctx);
    let buf = vec![0; base + super::ECHO_ALIGN + ctx.settings.read_buffer];
    let reserve = base + super::aligned_echo_pad(buf.as_ptr() as usize + base);
    let mut shard = Shard {
        buf,
        reserve,
        table: Table::new(ctx),
        poll,
        listeners,
        again: Vec::new(),
        parked: Vec::new(),
        room_waiting: Vec::new(),
        room_flush: Vec::new(),
        accept_paused_until: None,
    };
    ready(ShardReady { wake: Box::new(move || drop(waker.wake())) });
    shard.event_loop()?;
    Ok(())
}

impl Shard {
    fn event_loop(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            self.table.new_turn();
            if self.table.begin_shutdown(now) {
                self.begin_shutdown(now);
            }
            if self.table.shutdown_done(now) {
                if !self.table.is_empty() {
                    warn!(
                        shard = self.table.ctx.id,
                        left = self.table.len(),
                        "grace period over, dropping connections"
                    );
                }
                for slot in self.table.slots() {
                    self.drop_conn(slot);
                }
                return Ok(());
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
                    WAKER => {}
                    Token(t) if t > FIRST_LISTENER - MAX_LISTENERS => self.accept(FIRST_LISTENER - t, now),
                    Token(slot) => {
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
            // An inflater comes back only while some connection is handled,
            // so looking once per turn wakes the parked without polling.
            if !self.parked.is_empty() && self.table.inflater_free() {
                for slot in std::mem::take(&mut self.parked) {
                    self.on_readable(slot, now);
                }
            }
            if self.accept_paused_until.is_some_and(|t| now >= t) {
                self.accept_paused_until = None;
                for i in 0..self.listeners.len() {
                    self.accept(i, now);
                }
            }
            while let Some((slot, action)) = self.table.next_timer(now) {
                match action {
                    TimerAction::Drop => self.drop_conn(slot),
                    TimerAction::Send => {
                        self.flush_output(slot, 0);
                    }
                    TimerAction::Resume => self.on_readable(slot, now),
                }
            }
            if self.table.shutting_down() {
                self.table.report_shutdown(now);
                // Connections not closed yet: read what came, close the drained and quiet.
                for slot in self.table.slots() {
                    if self.table.get_mut(slot).is_some_and(|s| !s.conn.close_started && !s.conn.has_pending()) {
                        self.on_readable(slot, now);
                    }
                }
            }
            // Rooms: what other shards sent, members that waited for an
            // inbox to have room, then every member's new room output, once
            // per turn: all the frames a member got in this turn go out in
            // one sendmsg (a member of a busy room gets many per turn, and a
            // write per frame would cost a system call each).
            self.table.drain_inbox(now);
            for slot in std::mem::take(&mut self.room_waiting) {
                self.on_readable(slot, now);
            }
            self.write_room_output();
        }
    }

    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.again.is_empty() {
            return Some(Duration::ZERO);
        }
        let t = [self.table.next_deadline(), self.accept_paused_until].into_iter().flatten().min();
        let wait = t.map(|t| t.saturating_duration_since(now));
        if self.table.shutting_down() {
            return Some(wait.map_or(SHUTDOWN_SWEEP, |w| w.min(SHUTDOWN_SWEEP)));
        }
        wait
    }

    /// Accepts what listener `i` has waiting.
    fn accept(&mut self, i: usize, now: Instant) {
        if self.accept_paused_until.is_some() {
            return;
        }
        loop {
            let Some(&(ref listener, tls)) = self.listeners.get(i) else { return };
            match listener.accept() {
                Ok((stream, _peer)) => self.add_conn(stream, tls, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)) =>
                {
                    warn!(error = %e, "cannot accept, pausing for 100ms (raise LimitNOFILE / ulimit -n)");
                    self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
                    return;
                }
                // The peer gave up before we accepted (ECONNABORTED and the like).
                Err(e) => debug!(error = %e, "accept failed"),
            }
        }
    }

    fn add_conn(&mut self, stream: TcpStream, tls: bool, now: Instant) {
        // TCP_NODELAY comes from the listener (see `ListenOptions::nodelay`).
        // None: closed at accept (too many handshakes from its address).
        let Some(slot) = self.table.insert(stream, now, tls) else { return };
        let registry = self.poll.registry();
        let s = self.table.get_mut(slot).expect("just inserted");
        if let Err(e) = registry.register(&mut s.io, Token(slot), Interest::READABLE | Interest::WRITABLE) {
            warn!(error = %e, "cannot register connection");
            self.table.remove(slot);
        }
    }

    /// Reads, handles and answers until the socket is drained, the budget is
    /// spent, or output backs up.
    fn on_readable(&mut self, slot: usize, now: Instant) {
        for _ in 0..READ_BUDGET {
            let Some(s) = self.table.get_mut(slot) else { return };
            if s.conn.has_pending() {
                return; // resumed by on_writable once the output drains
            }
            if self.table.parked(slot) {
                // No inflater free: the socket stays unread, so TCP flow
                // control holds the client back until one is.
                self.parked.push(slot);
                return;
            }
            if self.table.throttled(slot, now) {
                // Over its rate limit: neither the carry nor the socket is
                // read (TCP flow control holds the client back) until its
                // timer says TimerAction::Resume.
                return;
            }
            if self.table.room_blocked(slot) {
                // A shard with members of its room has a full inbox: not
                // read (TCP flow control) until that shard wakes this one.
                if !self.room_waiting.contains(&slot) {
                    self.room_waiting.push(slot);
                }
                return;
            }
            if self.table.stalled(slot) {
                // Complete input waits in the carry: handle it before reading more.
                if !self.resume(slot, now) {
                    return;
                }
                continue;
            }
            let Some(s) = self.table.get_mut(slot) else { return };
            if s.conn.peer_eof {
                return;
            }
            if self.table.handshake_turn(slot) == HandshakeTurn::Wait {
                // A TLS handshake over this turn's budget: read it next turn.
                self.again.push(slot);
                return;
            }
            let s = self.table.get_mut(slot).expect("checked above");
            let reserve = self.reserve;
            let start = s.conn.stage_carry(&mut self.buf, reserve);
            let want = self.buf.len() - reserve;
            let n = match s.io.read(&mut self.buf[reserve..]) {
                Ok(0) => return self.on_eof(slot),
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return self.on_drained(slot, now),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    debug!(error = %err, "read failed");
                    return self.drop_conn(slot);
                }
            };
            self.table.ctx.metrics.bytes_in.add(n as u64);
            let end = reserve + n;
            self.table.input(slot, &mut self.buf[..end], start, now);
            let alive = self.flush_output(slot, end);
            // Room messages are published after their sender's own output
            // (written at the end of the turn).
            self.table.publish(now);
            if !alive || self.table.get(slot).is_none() {
                return;
            }
            // A short read means the socket was drained: edge-triggered epoll
            // reports the next arrival as a new event. (A stalled session
            // still has input to handle: the loop goes on with it.)
            if n < want && !self.table.stalled(slot) {
                return self.on_drained(slot, now);
            }
        }
        self.again.push(slot);
    }

    /// Hands a stalled session its carried input again, with nothing new
    /// behind it. The carry can be up to a read long, more than the reserve,
    /// so it goes at the front of the buffer. Returns false if the
    /// connection was dropped.
    fn resume(&mut self, slot: usize, now: Instant) -> bool {
        let Some(s) = self.table.get_mut(slot) else { return false };
        let end = HEADROOM + s.conn.carry_len();
        s.conn.stage_carry(&mut self.buf, end);
        self.table.input(slot, &mut self.buf[..end], HEADROOM, now);
        let alive = self.flush_output(slot, end);
        self.table.publish(now);
        alive && self.table.get(slot).is_some()
    }

    /// Writes the room output of every member that has new output.
    fn write_room_output(&mut self) {
        let mut list = std::mem::take(&mut self.room_flush);
        self.table.take_room_flush(&mut list);
        for slot in list.drain(..) {
            if self.table.get(slot).is_some_and(|s| !s.conn.has_pending()) && self.write_backlog(slot) {
                self.after_output(slot);
            }
        }
        self.room_flush = list;
    }

    /// Writes a member's room output straight from the shared frames until
    /// it is all out or the socket is full (a writable event resumes it).
    /// Returns false if the connection was dropped.
    fn write_backlog(&mut self, slot: usize) -> bool {
        loop {
            let Some(s) = self.table.get(slot) else { return false };
            let mut slices = [IoSlice::new(&[]); IOV_BATCH];
            let n = self.table.backlog_slices(slot, &mut slices);
            if n == 0 {
                return true;
            }
            match super::send::send_vectored(&s.io, &slices[..n]) {
                Ok(0) => {
                    self.drop_conn(slot);
                    return false;
                }
                Ok(n) => {
                    self.table.ctx.metrics.bytes_out.add(n as u64);
                    self.table.backlog_sent(slot, n);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return true,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    debug!(error = %err, "write failed");
                    self.drop_conn(slot);
                    return false;
                }
            }
        }
    }

    /// Sends the table's output (resolved against `self.buf[..end]`), queueing
    /// what the socket does not take. Returns false if the connection was dropped.
    fn flush_output(&mut self, slot: usize, end: usize) -> bool {
        // A room member's own output goes behind its room output.
        if !self.table.out.is_empty() && self.table.queue_behind_backlog(slot, &self.buf[..end]) {
            return self.after_output(slot);
        }
        let Some((s, out, stats)) = self.table.split(slot) else { return false };
        let buf = &self.buf[..end];
        if s.conn.has_pending() {
            s.conn.queue(out, buf, 0);
        } else if !out.is_empty() {
            match write_output(&mut s.io, out, buf) {
                Ok(n) => {
                    stats.bytes_out.add(n as u64);
                    if n < out.len() {
                        // Reading stops until this drains (`on_writable`).
                        stats.backpressure_stalls.add(1);
                        s.conn.queue(out, buf, n);
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

    /// Once a closed session's output is flushed: close at once after a clean
    /// close handshake; otherwise shut our side down and wait for the peer's
    /// FIN (so it reads our close frame instead of an RST). Returns false if
    /// the connection was dropped.
    fn after_output(&mut self, slot: usize) -> bool {
        self.table.settle(slot);
        let Some(s) = self.table.get_mut(slot) else { return false };
        if s.conn.has_pending() || s.conn.has_backlog() {
            return true;
        }
        let stalled = s.conn.session.stalled().is_some();
        if (s.conn.peer_eof && !stalled) || s.conn.session.close_handshake_done() {
            self.drop_conn(slot);
            return false;
        }
        if s.conn.session.is_closed() && !s.conn.write_shut {
            s.conn.write_shut = true;
            let _ = s.io.shutdown(Shutdown::Write);
        }
        true
    }

    fn on_writable(&mut self, slot: usize, now: Instant) {
        let Some((s, _, _)) = self.table.split(slot) else { return };
        if !s.conn.has_pending() {
            // Room output: reading never waited for it.
            if s.conn.has_backlog() && self.write_backlog(slot) {
                self.after_output(slot);
            }
            return;
        }
        let Some((s, _, stats)) = self.table.split(slot) else { return };
        loop {
            match super::send::send_vectored(&s.io, &[io::IoSlice::new(s.conn.pending())]) {
                Ok(0) => return self.drop_conn(slot),
                Ok(n) => {
                    stats.bytes_out.add(n as u64);
                    s.conn.advance_pending(n);
                    if !s.conn.has_pending() {
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
        if self.table.get(slot).is_some_and(|s| s.conn.has_backlog()) && !self.write_backlog(slot) {
            return;
        }
        if self.after_output(slot) {
            // Drained: resume reading what TCP held back meanwhile.
            self.on_readable(slot, now);
        }
    }

    /// Everything the client sent so far was read and answered: during a
    /// shutdown, its close (1001) goes out now.
    fn on_drained(&mut self, slot: usize, now: Instant) {
        if self.table.shutdown_close(slot, now) {
            self.flush_output(slot, 0);
        }
    }

    fn on_eof(&mut self, slot: usize) {
        let Some(s) = self.table.get_mut(slot) else { return };
        // A client that half-closed may still read: finish sending (and
        // handling what it sent) first.
        if s.conn.has_pending() || s.conn.session.stalled().is_some() {
            s.conn.peer_eof = true;
        } else {
            self.drop_conn(slot);
        }
    }

    fn drop_conn(&mut self, slot: usize) {
        // No EPOLL_CTL_DEL first: closing the socket's only descriptor takes
        // it out of the epoll set (epoll(7)), and the socket is never
        // duplicated, so that syscall per connection would buy nothing.
        drop(self.table.remove(slot));
    }

    /// Stops accepting and starts closing every connection: each one is read
    /// once more and gets its close when drained (`on_drained`); one whose
    /// output is backed up gets it once that output has gone out.
    fn begin_shutdown(&mut self, now: Instant) {
        for (mut l, _) in std::mem::take(&mut self.listeners) {
            let _ = self.poll.registry().deregister(&mut l);
        }
        for slot in self.table.slots() {
            self.on_readable(slot, now);
        }
    }
}

impl PeerAddr for TcpStream {
    fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        TcpStream::peer_addr(self).ok()
    }
}

/// Writes the output with `sendmsg` until done or the socket is full; returns
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
        let n = match super::send::send_vectored(stream, &iov[..n_iov]) {
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
