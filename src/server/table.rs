//! The backend-neutral half of a shard: the connection table, its timers,
//! counters, admission and shutdown policy. An I/O driver (epoll, io_uring)
//! owns one, moves bytes, and asks it what to do; the decisions live here
//! once, so both backends behave the same.

use crate::server::conn::Conn;
use crate::server::metrics::{ShardMetrics, Timeout};
use crate::server::rate::Bucket;
use crate::server::shard::ShardContext;
use crate::server::shared::AdmitFrom;
use crate::server::timers::Timers;
use crate::ws::deflate::Inflaters;
use crate::ws::handshake::Rejection;
use crate::ws::session::Stall;
use crate::ws::tls::{Sniff, TlsConn};
use crate::ws::{close, Budget, Ctx, Output, Phase, Progress, Session, HEADROOM};
use slab::Slab;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// A driver's per-connection I/O state can name the client, for logs.
pub trait PeerAddr {
    /// The client's address, if the socket still knows it.
    fn peer_addr(&self) -> Option<SocketAddr>;
}

/// Shows a connection's client address in a log line: the one its PROXY
/// header named, else the socket's, looked up only when the line is
/// actually written (`getpeername` costs a system call, and nothing is
/// stored per connection for it).
struct Peer<'a, T>(&'a T, Option<SocketAddr>);

impl<T: PeerAddr> fmt::Display for Peer<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1.or_else(|| self.0.peer_addr()) {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("unknown"),
        }
    }
}

/// Counts a connection from `peer` among its address's handshakes
/// (`--max-connections-per-ip`) and keeps the address for the release;
/// false, counted and logged, when the address has no place left and the
/// connection is to be closed unanswered.
fn arrive(ctx: &ShardContext, conn: &mut Conn, peer: SocketAddr) -> bool {
    if !ctx.shared.arrive(peer.ip()) {
        ctx.metrics.arrivals_refused.add(1);
        debug!(shard = ctx.id, peer = %peer, "closed unanswered: too many handshakes from its address");
        return false;
    }
    conn.arriving = true;
    conn.extra_mut().client = Some(peer);
    true
}

/// Gives back the connection's place among its address's handshakes once
/// it has left its handshake (upgraded, refused or failed), or when it
/// `closes`. Only a flag test for every other connection.
fn end_arrival(ctx: &ShardContext, conn: &mut Conn, closes: bool) {
    if conn.arriving && (closes || conn.session.phase() != Phase::Handshake) {
        conn.arriving = false;
        if let Some(a) = conn.client() {
            ctx.shared.arrived(a.ip());
        }
    }
}

/// Logs a refused handshake at debug: the client, the status and why.
fn log_refusal<T: PeerAddr>(shard: usize, s: &Slot<T>, r: &Rejection) {
    debug!(shard, peer = %Peer(&s.io, s.conn.client()), status = r.status().0, reason = %r, "handshake refused");
}

/// TLS handshake inputs a shard handles per turn of its event loop; more wait
/// for the next turn. A full handshake costs the server about 240 µs of CPU
/// (ECDSA P-256 and X25519, on the AMD EPYC measured), so a flood of them
/// would otherwise fill a whole turn while established connections wait: 16
/// keep a turn's handshake work near 4 ms.
pub const TLS_HANDSHAKES_PER_TURN: u32 = 16;

/// Whether a connection's input is a TLS handshake step, and if so whether
/// this turn of the event loop may work on it ([`Table::handshake_turn`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeTurn {
    /// Not in a TLS handshake: handle it now.
    NotHandshaking,
    /// A handshake step within this turn's budget: handle it now.
    Go,
    /// A handshake step over this turn's budget: handle it next turn.
    Wait,
}

/// Timer entries a shard handles per turn of its event loop; the rest wait
/// for the next turn, which then does not sleep. Every fired timer moves its
/// connection's deadline past `now` or drops it (see [`Table::next_timer`]),
/// so this bound is never what ends a turn's timers but for a burst of
/// thousands due at once; it is there so that if a bug ever broke that rule,
/// accepting, I/O and signals would still go on (issue #23).
pub const TIMERS_PER_TURN: u32 = 1024;

/// `--log-messages` lines a shard writes per second at most; the rest are
/// counted and said in one line when the next second starts.
pub const MESSAGE_LINES_PER_SECOND: u32 = 20;

/// `--log-messages`: a shard's budget of message lines.
#[derive(Debug)]
struct MessageLog {
    since: Instant,
    written: u32,
    skipped: u64,
}

impl MessageLog {
    /// Logs `m` from `peer` if this second's budget allows; else counts it.
    fn log(&mut self, shard: usize, peer: &dyn fmt::Display, m: &crate::ws::MessageSeen, now: Instant) {
        if now.saturating_duration_since(self.since) >= Duration::from_secs(1) {
            if self.skipped > 0 {
                info!(
                    shard,
                    skipped = self.skipped,
                    "--log-messages: lines not written (at most {MESSAGE_LINES_PER_SECOND} a second per shard)"
                );
            }
            *self = MessageLog { since: now, written: 0, skipped: 0 };
        }
        if self.written >= MESSAGE_LINES_PER_SECOND {
            self.skipped += 1;
            return;
        }
        self.written += 1;
        let kind = match (m.text, m.compressed) {
            (true, false) => "text",
            (false, false) => "binary",
            (true, true) => "text, compressed",
            (false, true) => "binary, compressed",
        };
        let more = if (m.head.len() as u64) < m.frame_len { "..." } else { "" };
        let head = String::from_utf8_lossy(&m.head);
        info!(shard, peer = %peer, kind, bytes = m.frame_len, fragmented = m.fragmented, "message: {:?}{more}", head);
    }
}

/// How often a shutting-down shard says how many connections are still closing.
pub const SHUTDOWN_REPORT: Duration = Duration::from_secs(1);

/// During a shutdown, how long a drained connection must also have been
/// quiet before its close goes out. An empty receive queue alone can be a
/// client mid-stream whose next bytes are in flight, and bytes that arrive
/// after our close must be discarded (RFC 6455 §5.5.1).
pub const SHUTDOWN_QUIET: Duration = Duration::from_millis(50);

/// How often a shutting-down driver re-checks connections for drained and quiet.
pub const SHUTDOWN_SWEEP: Duration = Duration::from_millis(10);

/// What a session call needs from the shard. A free function, so it borrows
/// only `ctx` while a slot of the table is borrowed mutably.
fn core_ctx<'a>(ctx: &'a ShardContext, inflaters: &'a Inflaters, now: Instant) -> Ctx<'a> {
    Ctx {
        config: &ctx.settings.core,
        now,
        admission: &*ctx.shared,
        inflaters,
        counters: &ctx.metrics.core,
        budget: Budget::UNLIMITED,
    }
}

/// A connection: the driver's I/O handle plus the shared state.
pub struct Slot<T> {
    /// The driver's per-connection I/O state (a socket, in-flight operations).
    pub io: T,
    /// Session, carried bytes, unsent output.
    pub conn: Conn,
    /// Distinguishes this connection from later ones in the same slot.
    pub generation: u32,
}

/// What the timer of a connection decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerAction {
    /// Send the table's output (it may be empty).
    Send,
    /// A rate-limited connection's bucket has refilled: read it again.
    Resume,
    /// Drop the connection now.
    Drop,
}

/// Connections of one shard and the policy around them.
pub struct Table<T> {
    /// What the shard was given.
    pub ctx: ShardContext,
    slots: Slab<Slot<T>>,
    next_generation: u32,
    timers: Timers,
    /// Output of the last `input`, `timer` or `shutdown_close` call.
    pub out: Output,
    /// TLS connections: the session's output before it is encrypted into `out`.
    plain_out: Output,
    /// TLS connections: headroom, carried plaintext, then a read's plaintext.
    plain: Vec<u8>,
    grace_deadline: Option<Instant>,
    /// During a shutdown, when to next log the connections still closing.
    next_report: Option<Instant>,
    /// TLS handshake inputs still allowed in this turn of the loop.
    handshake_budget: u32,
    /// Timer entries still allowed in this turn of the loop.
    timer_budget: u32,
    /// Inflaters for compressed messages (permessage-deflate).
    inflaters: Inflaters,
    /// When this shard last said it was turning (under a watchdog).
    last_beat: Instant,
    /// `--log-messages`: this second's lines.
    message_log: MessageLog,
    /// With `--reply room`: this shard's members and messages.
    room: Option<rooms::ShardRooms>,
    /// The last TLS input call put a member's own copies in its output.
    copies_in_place_tls: bool,
}

impl<T: PeerAddr> Table<T> {
    /// An empty table.
    pub fn new(ctx: ShardContext) -> Table<T> {
        Table {
            slots: Slab::new(),
            next_generation: 0,
            timers: Timers::new(),
            out: Output::new(),
            plain_out: Output::new(),
            plain: Vec::new(),
            grace_deadline: None,
            next_report: None,
            handshake_budget: TLS_HANDSHAKES_PER_TURN,
            timer_budget: TIMERS_PER_TURN,
            inflaters: Inflaters::new(ctx.settings.inflate_pool),
            last_beat: Instant::now(),
            message_log: MessageLog { since: Instant::now(), written: 0, skipped: 0 },
            room: ctx.rooms.clone().map(rooms::ShardRooms::new),
            copies_in_place_tls: false,
            ctx,
        }
    }

    /// Adds an accepted connection (from a TLS listener if `tls`); returns its
    /// slot, or `None` when its address already has as many connections in
    /// their handshake as `--max-connections-per-ip` allows: `io` is then
    /// dropped, closing the socket unanswered.
    pub fn insert(&mut self, io: T, now: Instant, tls: bool) -> Option<usize> {
        self.ctx.metrics.accepted.add(1);
        let session = Session::new(&self.ctx.settings.core, now);
        let mut conn = Conn::new(session);
        conn.proxy_pending = self.ctx.settings.proxy_protocol;
        if self.ctx.shared.per_ip() && !conn.proxy_pending {
            // Under --proxy-protocol the header names the client; counted then.
            if let Some(peer) = io.peer_addr() {
                if !arrive(&self.ctx, &mut conn, peer) {
                    return None;
                }
            }
        }
        self.next_generation = self.next_generation.wrapping_add(1);
        if let Some(limit) = &self.ctx.settings.rate {
            // A full bucket from the start: the first second's worth is allowed at once.
            conn.extra_mut().bucket = Some(Bucket::new(limit, now));
        }
        if tls {
            let config = self.ctx.tls.clone().expect("a TLS listener comes with a TLS configuration");
            match TlsConn::new(config) {
                Ok(t) => conn.tls = Some(Box::new(t)),
                Err(e) => {
                    // Only a configuration rustls refuses can fail here; the
                    // connection is closed as soon as it sends anything.
                    self.ctx.metrics.tls_failures.add(1);
                    debug!(error = %e, "cannot start TLS");
                    conn.session.abort(&core_ctx(&self.ctx, &self.inflaters, now));
                }
            }
        }
        let slot = self.slots.insert(Slot { io, conn, generation: self.next_generation });
        self.ctx.metrics.connections_open.set(self.slots.len() as u64);
        self.reschedule(slot);
        Some(slot)
    }

    /// The connection in `slot`, to look at.
    pub fn get(&self, slot: usize) -> Option<&Slot<T>> {
        self.slots.get(slot)
    }

    /// The connection in `slot`.
    pub fn get_mut(&mut self, slot: usize) -> Option<&mut Slot<T>> {
        self.slots.get_mut(slot)
    }

    /// The connection in `slot`, the last output and the counters, borrowed together.
    pub fn split(&mut self, slot: usize) -> Option<(&mut Slot<T>, &Output, &ShardMetrics)> {
        let s = self.slots.get_mut(slot)?;
        Some((s, &self.out, &self.ctx.metrics))
    }

    /// The connection in `slot` if it is still of `generation`.
    pub fn get_gen(&mut self, slot: usize, generation: u32) -> Option<&mut Slot<T>> {
        self.slots.get_mut(slot).filter(|s| s.generation == generation)
    }

    /// Removes a connection, giving back its place in the connection limit.
    pub fn remove(&mut self, slot: usize) -> Option<Slot<T>> {
        let mut s = self.slots.try_remove(slot)?;
        self.ctx.metrics.connections_open.set(self.slots.len() as u64);
        if self.room.is_some() {
            self.leave_room(slot, s.generation);
        }
        s.conn.session.release(&self.inflaters);
        if s.conn.admitted {
            self.ctx.shared.release(s.conn.client().map(|a| a.ip()));
        }
        end_arrival(&self.ctx, &mut s.conn, true);
        Some(s)
    }

    /// Slots in use.
    pub fn slots(&self) -> Vec<usize> {
        self.slots.iter().map(|(k, _)| k).collect()
    }

    /// Connections open.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True with no connections.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Starts a turn of the driver's loop: the TLS handshake budget is full
    /// again, and (under systemd's watchdog) the shard says it is turning.
    pub fn new_turn(&mut self) {
        self.handshake_budget = TLS_HANDSHAKES_PER_TURN;
        self.timer_budget = TIMERS_PER_TURN;
        self.ctx.metrics.inflaters_in_use.set(self.inflaters.lent() as u64);
        if self.ctx.shared.heartbeat().is_some() {
            let now = Instant::now();
            self.ctx.shared.beat(self.ctx.id, now);
            self.last_beat = now;
        }
    }

    /// What input for `slot` is this turn: not a TLS handshake step (an
    /// established connection, or a failed or refused one, which has nothing
    /// left to do), a handshake step that takes one from this turn's budget,
    /// or one that must wait for the next turn because the budget is spent.
    pub fn handshake_turn(&mut self, slot: usize) -> HandshakeTurn {
        let handshaking = self
            .slots
            .get(slot)
            .is_some_and(|s| s.conn.tls.as_ref().is_some_and(|t| t.is_handshaking()) && !s.conn.session.is_closed());
        if !handshaking {
            return HandshakeTurn::NotHandshaking;
        }
        if self.handshake_budget == 0 {
            self.ctx.metrics.tls_deferred.add(1);
            return HandshakeTurn::Wait;
        }
        self.handshake_budget -= 1;
        HandshakeTurn::Go
    }

    /// Whether the connection waits for an inflater (its session stalled on
    /// an empty pool, which still is): it must not be read, and is retried
    /// once [`Table::inflater_free`].
    pub fn parked(&self, slot: usize) -> bool {
        self.slots.get(slot).is_some_and(|s| s.conn.session.stalled() == Some(Stall::Inflater))
            && !self.inflaters.available()
    }

    /// Whether the connection spent more than its rate limit allows: it
    /// must not be read until its timer says [`TimerAction::Resume`]. Never
    /// during a shutdown, which must drain every connection.
    pub fn throttled(&self, slot: usize, now: Instant) -> bool {
        !self.shutting_down()
            && self.slots.get(slot).and_then(|s| s.conn.bucket()).and_then(|b| b.paused_until).is_some_and(|t| now < t)
    }

    /// Whether a parked connection could go on now.
    pub fn inflater_free(&self) -> bool {
        self.inflaters.available()
    }

    /// Whether the session left complete input in the carry (see
    /// [`Session::stalled`]): the driver passes the carry again, with no new
    /// bytes, before it reads the socket again.
    pub fn stalled(&self, slot: usize) -> bool {
        self.slots.get(slot).is_some_and(|s| s.conn.session.stalled().is_some())
    }

    /// Hands `buf[start..]` (carried bytes first) to the connection's session;
    /// `self.out` then holds what to send, resolved against `buf`.
    pub fn input(&mut self, slot: usize, buf: &mut [u8], start: usize, now: Instant) -> Progress {
        self.out.clear();
        // Under --proxy-protocol the header comes first, before TLS or HTTP.
        let mut header = 0;
        if self.slots[slot].conn.proxy_pending {
            match self.proxy_header(slot, &buf[start..], now) {
                Some(0) => {
                    // Incomplete: carried until the rest arrives (the
                    // handshake timeout covers it), or the connection failed.
                    let s = &mut self.slots[slot];
                    let consumed = if s.conn.session.is_closed() { buf.len() - start } else { 0 };
                    let p = Progress { consumed, ..Progress::default() };
                    s.conn.keep_carry(buf, start, &p);
                    self.reschedule(slot);
                    return p;
                }
                Some(n) => header = n,
                None => {}
            }
            if start + header == buf.len() {
                let p = Progress { consumed: header, ..Progress::default() };
                self.slots[slot].conn.keep_carry(buf, start, &p);
                return p;
            }
        }
        let start_all = start;
        let start = start + header;
        let peer = self.admission_peer(slot);
        let budget = self.budget(slot, now);
        let joined = std::cell::Cell::new(None);
        let tls = self.slots[slot].conn.tls.is_some();
        if self.room.is_some() {
            self.before_room_input(slot, tls);
        }
        let mut p = if tls {
            self.input_tls(slot, buf, start, now, peer, budget, &joined)
        } else {
            let admit = AdmitFrom {
                shared: &self.ctx.shared,
                peer: peer.map(|a| a.ip()),
                room: room_admit(self.room.as_ref(), self.ctx.id, &joined),
            };
            let ctx = Ctx { admission: &admit, budget, ..core_ctx(&self.ctx, &self.inflaters, now) };
            let s = &mut self.slots[slot];
            let p = s.conn.session.handle_input(&ctx, buf, start, &mut self.out);
            self.out.coalesce(buf);
            p
        };
        if self.room.is_some() {
            // (Coalescing moves bytes, never reorders them: a collected
            // message's place in the output stays true.)
            let in_place = !tls && self.own_copies_in_place(slot, buf);
            let in_place = in_place || (tls && self.copies_in_place_tls);
            self.copies_in_place_tls = false;
            self.after_room_input(slot, joined.take(), p.upgraded, tls, in_place);
        }
        p.consumed += header;
        let start = start_all;
        let s = &mut self.slots[slot];
        s.conn.keep_carry(buf, start, &p);
        self.ctx.metrics.messages.add(p.messages);
        if p.upgraded {
            s.conn.admitted = true;
            if s.conn.client().is_none() && peer.is_some() {
                // The address it was counted under, for the release.
                s.conn.extra_mut().client = peer;
            }
            self.ctx.metrics.upgraded.add(1);
            if let Some(token) = &p.token {
                debug!(shard = self.ctx.id, peer = %Peer(&s.io, s.conn.client()), token = %token, "admitted with a bearer token");
            }
        }
        if let Some(r) = &p.rejected {
            self.ctx.metrics.refuse(r);
            log_refusal(self.ctx.id, s, r);
        }
        if let (Some(limit), Some(bucket)) = (&self.ctx.settings.rate, s.conn.bucket_mut()) {
            if bucket.spend(limit, p.messages, p.consumed as u64, now).is_some() {
                self.ctx.metrics.rate_limited.add(1);
            }
        }
        for m in &p.seen {
            self.message_log.log(self.ctx.id, &Peer(&s.io, s.conn.client()), m, now);
        }
        if let Some(err) = p.error {
            self.ctx.metrics.protocol_errors.count(err.close_code());
            debug!(shard = self.ctx.id, peer = %Peer(&s.io, s.conn.client()), close_code = err.close_code(), error = %err, "protocol error");
        }
        end_arrival(&self.ctx, &mut s.conn, false);
        self.reschedule(slot);
        p
    }

    /// What the connection's rate limit lets one call handle now (all of it
    /// without limits, and during a shutdown, which must drain everything).
    fn budget(&mut self, slot: usize, now: Instant) -> Budget {
        let (Some(limit), false) = (&self.ctx.settings.rate, self.shutting_down()) else { return Budget::UNLIMITED };
        match self.slots.get_mut(slot).and_then(|s| s.conn.bucket_mut()) {
            Some(bucket) => bucket.budget(limit, now),
            None => Budget::UNLIMITED,
        }
    }

    /// The client address a handshake is admitted under, when connections
    /// are counted per address and this one is still in its handshake: its
    /// PROXY header's, else the socket's (one `getpeername`).
    fn admission_peer(&self, slot: usize) -> Option<SocketAddr> {
        let s = self.slots.get(slot)?;
        if !self.ctx.shared.per_ip() || s.conn.session.phase() != Phase::Handshake {
            return None;
        }
        s.conn.client().or_else(|| s.io.peer_addr())
    }

    /// Reads the PROXY header at the start of `input`: `Some(len)` once it is
    /// complete (the client's address kept), `Some(0)` while incomplete or
    /// after a failure (the connection is then closed without an answer: it
    /// may not even speak HTTP, and guessing is what the specification
    /// forbids), `None` if no header was pending.
    fn proxy_header(&mut self, slot: usize, input: &[u8], now: Instant) -> Option<usize> {
        let s = self.slots.get_mut(slot)?;
        if !s.conn.proxy_pending {
            return None;
        }
        match crate::ws::proxy::parse(input) {
            Ok(None) => Some(0),
            Ok(Some(h)) => {
                s.conn.proxy_pending = false;
                self.ctx.metrics.proxy_headers.add(1);
                if let Some(source) = h.source {
                    s.conn.extra_mut().client = Some(source);
                    if self.ctx.shared.per_ip() && !arrive(&self.ctx, &mut s.conn, source) {
                        s.conn.session.abort(&core_ctx(&self.ctx, &self.inflaters, now));
                        return Some(0);
                    }
                }
                Some(h.len)
            }
            Err(e) => {
                self.ctx.metrics.proxy_errors.add(1);
                debug!(shard = self.ctx.id, peer = %Peer(&s.io, s.conn.client()), error = %e, "PROXY header refused");
                s.conn.session.abort(&core_ctx(&self.ctx, &self.inflaters, now));
                Some(0)
            }
        }
    }

    /// The TLS half of [`Table::input`]: `buf[start..]` is ciphertext (a
    /// carried partial record first). Records are decrypted, their plaintext
    /// gathered behind the carried plaintext in `self.plain` and handed to the
    /// session in one call; its output is encrypted into `self.out` after any
    /// handshake messages. `consumed` counts ciphertext.
    #[allow(clippy::too_many_arguments)]
    fn input_tls(
        &mut self,
        slot: usize,
        buf: &mut [u8],
        start: usize,
        now: Instant,
        peer: Option<SocketAddr>,
        budget: Budget,
        joined: &std::cell::Cell<Option<std::sync::Arc<crate::rooms::Room>>>,
    ) -> Progress {
        self.plain_out.clear();
        let admit = AdmitFrom {
            shared: &self.ctx.shared,
            peer: peer.map(|a| a.ip()),
            room: room_admit(self.room.as_ref(), self.ctx.id, joined),
        };
        let ctx = Ctx { admission: &admit, budget, ..core_ctx(&self.ctx, &self.inflaters, now) };
        let s = &mut self.slots[slot];
        let client = s.conn.client();
        let tls = s.conn.tls.as_mut().expect("checked by the caller");
        self.plain.clear();
        self.plain.resize(HEADROOM, 0);
        self.plain.extend_from_slice(&tls.plain_carry);
        let handshaking = tls.is_handshaking();
        let mut p = Progress::default();
        let all = buf.len() - start;
        match tls.read(&mut buf[start..], &mut self.plain, &mut self.out) {
            Ok(r) => {
                p.consumed = r.consumed;
                if handshaking && !tls.is_handshaking() {
                    if tls.resumed() {
                        self.ctx.metrics.tls_resumed.add(1);
                    } else {
                        self.ctx.metrics.tls_full.add(1);
                    }
                    if let Some(subject) = crate::server::tls::client_subject(tls.peer_certificates()) {
                        debug!(shard = self.ctx.id, peer = %Peer(&s.io, client), subject, "TLS client certificate");
                    }
                }
                // A stalled session is called with its plaintext carry alone.
                let stalled = s.conn.session.stalled().is_some();
                if (r.plaintext > 0 || stalled) && !s.conn.session.is_closed() {
                    let sp = s.conn.session.handle_input(&ctx, &mut self.plain, HEADROOM, &mut self.plain_out);
                    tls.plain_carry.clear();
                    tls.plain_carry.extend_from_slice(&self.plain[HEADROOM + sp.consumed..]);
                    if tls.plain_carry.is_empty() && tls.plain_carry.capacity() > 256 {
                        tls.plain_carry = Vec::new();
                    }
                    self.plain_out.coalesce(&mut self.plain);
                    p = Progress { consumed: p.consumed, ..sp };
                }
                // As `own_copies_in_place` does for plain connections, before sealing.
                if let Some(r) = self.room.as_ref() {
                    if !r.rooms.settings.exclude_sender
                        && !self.plain_out.messages.is_empty()
                        && s.conn.session.phase() != Phase::Open
                    {
                        self.plain_out.echo_collected_in_place(&self.plain);
                        self.copies_in_place_tls = true;
                    }
                }
                let close = s.conn.session.is_closed();
                if let Err(e) = tls.seal(&self.plain_out, &self.plain, close, &mut self.out) {
                    if !self.plain_out.is_empty() {
                        self.ctx.metrics.tls_failures.add(1);
                        debug!(shard = self.ctx.id, peer = %Peer(&s.io, client), error = %e, "TLS failed");
                        s.conn.session.abort(&ctx);
                        p.consumed = all;
                    }
                }
            }
            Err(e) => {
                p.consumed = all;
                if tls.sniff() == Sniff::PlainHttp {
                    s.conn.session.refuse(&ctx, &Rejection::NotTls, &mut self.out);
                    p.rejected = Some(Rejection::NotTls);
                } else {
                    self.ctx.metrics.tls_failures.add(1);
                    debug!(shard = self.ctx.id, peer = %Peer(&s.io, client), error = %e, "TLS failed");
                    s.conn.session.abort(&ctx);
                }
            }
        }
        p
    }

    /// On a TLS connection, encrypts `self.out` (owned bytes only: a timer's
    /// or a shutdown's output) in place; false when it cannot be (the TLS
    /// handshake is not complete), and `self.out` is then empty.
    fn seal_out(&mut self, slot: usize) -> bool {
        let s = &mut self.slots[slot];
        let Some(tls) = s.conn.tls.as_mut() else { return true };
        std::mem::swap(&mut self.out, &mut self.plain_out);
        self.out.clear();
        let close = s.conn.session.is_closed();
        let sealed = tls.seal(&self.plain_out, &[], close, &mut self.out).is_ok();
        if !sealed {
            self.out.clear();
        }
        sealed
    }

    /// After output went out (or was queued): a closed session gives back its
    /// place in the connection limit at once, not when the socket finally goes.
    pub fn settle(&mut self, slot: usize) {
        let Some(s) = self.slots.get_mut(slot) else { return };
        if s.conn.admitted && s.conn.session.is_closed() {
            s.conn.admitted = false;
            self.ctx.shared.release(s.conn.client().map(|a| a.ip()));
        }
        end_arrival(&self.ctx, &mut s.conn, false);
    }

    /// Schedules the connection's next deadline if it moved earlier than the
    /// one already scheduled (later moves are found when the entry fires).
    pub fn reschedule(&mut self, slot: usize) {
        let Some(s) = self.slots.get_mut(slot) else { return };
        let paused = s.conn.bucket().and_then(|b| b.paused_until);
        let Some(want) = [s.conn.session.poll_timeout(&self.ctx.settings.core), paused].into_iter().flatten().min()
        else {
            return;
        };
        if s.conn.timer_at.is_none_or(|t| want < t) {
            s.conn.timer_at = Some(want);
            self.timers.schedule(want, slot, s.generation);
        }
    }

    /// The next due timer: its slot and what to do (the output is in `self.out`).
    /// `None` once no entry is due, or once this turn's [`TIMERS_PER_TURN`]
    /// are spent (the rest stay due, so the driver's next wait is zero).
    ///
    /// Invariant: a connection whose timer fired is dropped, resumed (its
    /// rate limit refilled, and it is read now), or its next deadline is
    /// later than `now`. So a driver that calls this in a loop with the same
    /// `now` reaches `None`: nothing fires twice in one turn. Checked here;
    /// a session that broke it is dropped (and a debug build panics).
    pub fn next_timer(&mut self, now: Instant) -> Option<(usize, TimerAction)> {
        while self.timer_budget > 0 {
            let f = self.timers.pop_due(now)?;
            self.timer_budget -= 1;
            let Some(s) = self.slots.get_mut(f.slot) else { continue };
            if s.generation != f.generation || s.conn.timer_at != Some(f.at) {
                continue; // stale entry
            }
            s.conn.timer_at = None;
            self.out.clear();
            if let Some(b) = s.conn.bucket_mut().filter(|b| b.paused_until.is_some_and(|t| now >= t)) {
                b.paused_until = None;
                self.reschedule(f.slot);
                return Some((f.slot, TimerAction::Resume));
            }
            let ctx = core_ctx(&self.ctx, &self.inflaters, now);
            let before = s.conn.session.phase();
            let drop = s.conn.session.handle_timeout(&ctx, &mut self.out);
            let after = s.conn.session.phase();
            match before {
                Phase::Handshake if drop || after != before => self.ctx.metrics.timeout(Timeout::Handshake),
                Phase::Open if drop || after != before => self.ctx.metrics.timeout(Timeout::Idle),
                Phase::CloseSent | Phase::Closed if drop => self.ctx.metrics.timeout(Timeout::Close),
                _ => {} // a ping at half the idle timeout, or not due yet
            }
            if drop {
                return Some((f.slot, TimerAction::Drop));
            }
            if before == Phase::Handshake && s.conn.session.is_closed() {
                self.ctx.metrics.refuse(&Rejection::Timeout);
                log_refusal(self.ctx.id, s, &Rejection::Timeout);
            }
            if s.conn.proxy_pending && s.conn.session.is_closed() {
                // No PROXY header yet: the peer may not even speak HTTP, so
                // it gets no 408, only the close.
                return Some((f.slot, TimerAction::Drop));
            }
            if !self.seal_out(f.slot) {
                // A TLS handshake that did not finish in time: nothing can be said.
                return Some((f.slot, TimerAction::Drop));
            }
            self.reschedule(f.slot);
            if let Some(at) = self.slots[f.slot].conn.timer_at.filter(|&at| at <= now) {
                // The session asked to be woken in the past: handled again
                // now, it would be asked again, forever (issue #23).
                debug_assert!(false, "a fired timer left its deadline {:?} in the past", now - at);
                warn!(shard = self.ctx.id, phase = ?after, "a timer made no progress: connection dropped (a bug, please report it)");
                return Some((f.slot, TimerAction::Drop));
            }
            return Some((f.slot, TimerAction::Send));
        }
        None
    }

    /// The earliest time the driver must wake for: a timer, the end of the
    /// grace period, the next shutdown progress line, or the next heartbeat.
    pub fn next_deadline(&self) -> Option<Instant> {
        let beat = self.ctx.shared.heartbeat().map(|every| self.last_beat + every);
        [self.timers.next_deadline(), self.grace_deadline, self.next_report, beat].into_iter().flatten().min()
    }

    /// During a shutdown, once every [`SHUTDOWN_REPORT`]: logs how many
    /// connections are still closing, so an operator waiting on a stop sees why.
    pub fn report_shutdown(&mut self, now: Instant) {
        let Some(at) = self.next_report else { return };
        if now < at || self.slots.is_empty() {
            return;
        }
        self.next_report = Some(now + SHUTDOWN_REPORT);
        let left = self.grace_deadline.map_or(Duration::ZERO, |d| d.saturating_duration_since(now));
        info!(
            shard = self.ctx.id,
            connections = self.slots.len(),
            grace_left = ?Duration::from_millis(left.as_millis() as u64),
            "shutting down: connections still closing"
        );
    }

    /// Starts a graceful shutdown (once); true if it started now.
    pub fn begin_shutdown(&mut self, now: Instant) -> bool {
        if self.grace_deadline.is_some() || !self.ctx.shared.shutdown_requested() {
            return false;
        }
        self.grace_deadline = Some(now + self.ctx.settings.shutdown_grace);
        self.next_report = Some(now + SHUTDOWN_REPORT);
        true
    }

    /// True while shutting down.
    pub fn shutting_down(&self) -> bool {
        self.grace_deadline.is_some()
    }

    /// True once a shutdown's grace period is over.
    pub fn grace_over(&self, now: Instant) -> bool {
        self.grace_deadline.is_some_and(|d| now >= d)
    }

    /// True when a shutdown is complete: no connection left, or grace is over.
    pub fn shutdown_done(&self, now: Instant) -> bool {
        self.grace_deadline.is_some_and(|d| self.slots.is_empty() || now >= d)
    }

    /// During a shutdown, once the connection's input is drained and its
    /// output flushed (the driver says so) and no input came for
    /// [`SHUTDOWN_QUIET`], queue its close (1001) in `self.out`; true if it
    /// did. Everything the client sent before was echoed first, so nothing is
    /// lost. Drivers call it again every [`SHUTDOWN_SWEEP`].
    pub fn shutdown_close(&mut self, slot: usize, now: Instant) -> bool {
        if self.grace_deadline.is_none() {
            return false;
        }
        let Some(s) = self.slots.get_mut(slot) else { return false };
        // A stalled session still has complete input to echo.
        if s.conn.close_started || s.conn.has_pending() || s.conn.session.stalled().is_some() {
            return false;
        }
        if now.saturating_duration_since(s.conn.session.last_input()) < SHUTDOWN_QUIET {
            return false;
        }
        s.conn.close_started = true;
        self.out.clear();
        let ctx = core_ctx(&self.ctx, &self.inflaters, now);
        if s.conn.session.phase() == Phase::Handshake {
            self.ctx.metrics.refuse(&Rejection::ShuttingDown);
            log_refusal(self.ctx.id, s, &Rejection::ShuttingDown);
        }
        s.conn.session.start_close(&ctx, close::GOING_AWAY, &mut self.out);
        self.seal_out(slot);
        self.reschedule(slot);
        true
    }
}

/// With `--reply room`: what the handshake's admission needs to join a
/// room. A free function, so it borrows only the table's room state.
fn room_admit<'a>(
    room: Option<&'a rooms::ShardRooms>,
    shard: usize,
    joined: &'a std::cell::Cell<Option<std::sync::Arc<crate::rooms::Room>>>,
) -> Option<crate::server::shared::RoomAdmit<'a>> {
    Some(crate::server::shared::RoomAdmit { rooms: &room?.rooms, shard, joined })
}

#[path = "table_rooms.rs"]
mod rooms;

#[cfg(test)]
#[path = "table_props.rs"]
mod props;
