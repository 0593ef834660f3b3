//! One server-side connection as a state machine with no I/O and no clock.
//!
//! The I/O layer reads bytes into a buffer of its own and calls
//! [`Session::handle_input`]; the session parses frames where they lie,
//! unmasks them in place, writes each echo's server header directly in front
//! of its payload, and lists what to send in an [`Output`]. Time comes in as
//! an argument ([`Ctx::now`]); [`Session::poll_timeout`] says when the session
//! next wants [`Session::handle_timeout`].
//!
//! Payloads stream: nothing of one is kept between reads (but a piece under
//! [`MIN_PIECE`] bytes), so memory stays bounded for a message of any size.
//! A binary frame's echo is committed to the frame's full length when its
//! header arrives and its payload follows as it comes, so binary echoes keep
//! exactly the client's frames. A text frame that arrives across several
//! reads is echoed piece by piece, each piece its own fragment of the same
//! message (RFC 6455 §5.4 lets fragmentation change): that is what lets a bad
//! UTF-8 byte fail the connection with a clean 1007 before it is echoed. A
//! text frame that arrives in one read is echoed as exactly one frame.

use crate::ws::close;
use crate::ws::config::{Config, Reply};
use crate::ws::counters::CoreCounters;
use crate::ws::deflate::{Echo, Inflater, Inflaters};
use crate::ws::error::ProtocolError;
use crate::ws::frame::{self, HeaderStatus, OpCode};
use crate::ws::handshake::{self, Admission, Rejection, Request};
use crate::ws::mask::apply_mask;
use crate::ws::output::{Collected, Compressed, Output};
use crate::ws::utf8::Utf8Validator;
use std::time::Instant;

/// Bytes the caller must leave writable in front of `start` in
/// [`Session::handle_input`]: room for a server header in front of a payload
/// piece that starts the read.
pub const HEADROOM: usize = frame::MAX_SERVER_HEADER_LEN;

/// The smallest piece of a frame split across reads that is echoed on its
/// own; smaller pieces wait (still masked, as carried input) for more bytes.
/// So a frame that trickles in, a byte per read, does not cost a 2-byte
/// header per byte: the echo is at most 1/32 larger than the input.
pub const MIN_PIECE: usize = 64;

/// Inflated bytes the fallback echo (see [`Echo::Fallback`]) puts out per
/// [`Session::handle_input`] call before it stops and waits for the output to
/// drain: a few compressed bytes can inflate to megabytes, and the output
/// must stay bounded like everything else.
pub const FALLBACK_BUDGET: usize = 64 * 1024;

/// Why a session stopped before the end of complete input (see
/// [`Session::stalled`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stall {
    /// A compressed message spans reads and the shard's inflater pool is
    /// empty: call again once [`Inflaters::available`].
    Inflater,
    /// The fallback echo spent its output budget: call again once the
    /// output has gone out.
    Output,
    /// The connection's rate limit allows no more frames now ([`Budget`]):
    /// call again once it does.
    Budget,
}

/// How much of the input one call may handle: the messages and bytes a
/// connection's rate limit allows now. The session stops before the next
/// frame header once either is spent (so one frame may go past it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Complete data messages.
    pub messages: u64,
    /// Input bytes.
    pub bytes: u64,
}

impl Budget {
    /// No limit.
    pub const UNLIMITED: Budget = Budget { messages: u64::MAX, bytes: u64::MAX };
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the HTTP upgrade request.
    Handshake,
    /// Frames flow both ways.
    Open,
    /// The server sent a close frame and waits for the client's (RFC 6455 §7.1.2).
    CloseSent,
    /// Nothing more will be sent after the current output: flush it, then
    /// shut down the write side and discard input until the peer closes or
    /// [`Session::poll_timeout`] passes.
    Closed,
}

/// What the session needs from its caller on each call.
pub struct Ctx<'a> {
    /// Server settings.
    pub config: &'a Config,
    /// The current time.
    pub now: Instant,
    /// Consulted once, when a handshake is otherwise valid.
    pub admission: &'a dyn Admission,
    /// The shard's inflaters, for compressed messages (RFC 7692).
    pub inflaters: &'a Inflaters,
    /// The shard's counters of protocol events.
    pub counters: &'a CoreCounters,
    /// What this call may handle (rate limits).
    pub budget: Budget,
}

/// What one [`Session::handle_input`] call did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Input bytes consumed from `start`. The rest (a partial request head,
    /// frame header or control frame) must be passed again, in front of the
    /// next bytes read.
    pub consumed: usize,
    /// Complete data messages received.
    pub messages: u64,
    /// The handshake completed in this call (the connection was admitted).
    pub upgraded: bool,
    /// The fingerprint of the bearer token it was admitted with, if tokens are required.
    pub token: Option<String>,
    /// Why the handshake was refused (its HTTP status went out).
    pub rejected: Option<Rejection>,
    /// The violation that failed the connection.
    pub error: Option<ProtocolError>,
    /// With [`Config::log_messages`]: each data message that began in this call.
    pub seen: Vec<MessageSeen>,
}

/// The start of a data message, for `--log-messages`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageSeen {
    /// Text (else binary).
    pub text: bool,
    /// Compressed (permessage-deflate): `head` is compressed bytes.
    pub compressed: bool,
    /// The length of its first frame (the message's, unless fragmented).
    pub frame_len: u64,
    /// Its first frame is not its last.
    pub fragmented: bool,
    /// Its first bytes (at most [`MessageSeen::HEAD`]).
    pub head: Vec<u8>,
}

impl MessageSeen {
    /// How many of a message's first bytes are kept.
    pub const HEAD: usize = 32;
}

/// The kind of the data message in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    Binary,
}

/// Per-connection protocol state: 88 bytes on x86-64, no heap (but an
/// inflater while a compressed message spans reads).
#[derive(Debug)]
pub struct Session {
    phase: Phase,
    /// permessage-deflate, if negotiated: how compressed messages are echoed.
    deflate: Option<Echo>,
    /// With permessage-deflate: the largest window (bits) the client may
    /// compress with, and the largest it lets the server use (RFC 7692
    /// §7.1.2). What decides whether one member's compressed message may go
    /// to another as it came.
    windows: [u8; 2],
    /// The message in progress is compressed (RSV1 on its first frame, RFC 7692 §6).
    compressed: bool,
    /// That message is checked with the shard's own inflater: it is
    /// complete in the current input.
    own_inflater: bool,
    /// Why the last call stopped before the end of its complete input.
    stall: Option<Stall>,
    /// A pooled inflater, held while a compressed message spans reads.
    inflater: Option<Box<Inflater>>,
    /// A data frame's payload is being received.
    in_payload: bool,
    /// FIN bit of that frame.
    frame_fin: bool,
    /// Its mask key and the key offset reached.
    mask: [u8; 4],
    mask_off: u8,
    /// Payload bytes of that frame still to come.
    remaining: u64,
    /// The message in progress, if any (RFC 6455 §5.4).
    msg: Option<Kind>,
    /// Bytes of that message so far, including the current frame's whole length.
    msg_len: u64,
    /// The echo of that message has begun with a non-final fragment.
    out_open: bool,
    /// The current frame starts a message whose first bytes are not seen yet
    /// (`--log-messages`).
    msg_start: bool,
    /// The echo of the current frame went out with its full-length header,
    /// so the rest of its payload must follow before any other frame.
    committed: bool,
    utf8: Utf8Validator,
    /// A close the server wants to send once the current message is complete.
    pending_close: Option<u16>,
    /// A keepalive ping went out since the last input.
    ping_sent: bool,
    /// The client's close frame arrived: both sides have said close.
    peer_closed: bool,
    last_input: Instant,
    /// Handshake deadline, close-handshake deadline or linger deadline, by phase.
    deadline: Instant,
}

impl Session {
    /// A session for a connection accepted at `now`.
    pub fn new(config: &Config, now: Instant) -> Session {
        Session {
            phase: Phase::Handshake,
            deflate: None,
            windows: [15, 15],
            compressed: false,
            own_inflater: false,
            stall: None,
            inflater: None,
            in_payload: false,
            frame_fin: false,
            mask: [0; 4],
            mask_off: 0,
            remaining: 0,
            msg: None,
            msg_len: 0,
            out_open: false,
            msg_start: false,
            committed: false,
            utf8: Utf8Validator::new(),
            pending_close: None,
            ping_sent: false,
            peer_closed: false,
            last_input: now,
            deadline: now + config.handshake_timeout,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// When input last arrived (the handshake's start, before any).
    pub fn last_input(&self) -> Instant {
        self.last_input
    }

    /// True once nothing but the current output will be sent.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// True once both close frames have been exchanged (RFC 6455 §7.1.4): the
    /// peer sends nothing more, so once the output is flushed the TCP
    /// connection can be closed at once. A connection failed or refused by
    /// the server instead waits for the peer's FIN (see [`Phase::Closed`]) so
    /// that bytes still arriving do not turn the close into a reset that
    /// destroys the close frame in flight.
    pub fn close_handshake_done(&self) -> bool {
        self.peer_closed
    }

    /// permessage-deflate, if negotiated.
    pub fn deflate(&self) -> Option<Echo> {
        self.deflate
    }

    /// With permessage-deflate: the window bits the server may compress
    /// with towards this client (`server_max_window_bits`, 15 when not
    /// bounded); a message compressed with a window no larger is one this
    /// client can inflate (RFC 7692 §7.1.2.1). None without the extension.
    pub fn server_window(&self) -> Option<u8> {
        self.deflate.map(|_| self.windows[1])
    }

    /// Why the last [`Session::handle_input`] stopped before the end of
    /// input that was complete: the unconsumed bytes must be passed again,
    /// with or without more behind them, once the condition is met. Until
    /// then the connection is not read (TCP flow control holds the client).
    pub fn stalled(&self) -> Option<Stall> {
        self.stall
    }

    /// Gives back a pooled inflater the session still holds (the connection
    /// is going away mid-message).
    pub fn release(&mut self, inflaters: &Inflaters) {
        self.own_inflater = false;
        if let Some(i) = self.inflater.take() {
            inflaters.give(i);
        }
    }

    /// True between a completed handshake and the end of the close handshake.
    pub fn is_upgraded(&self) -> bool {
        matches!(self.phase, Phase::Open | Phase::CloseSent)
    }

    /// Handles the bytes `buf[start..]`, which must be preceded by any bytes
    /// left unconsumed by the previous call. `buf[..start]` is scratch space
    /// of at least [`HEADROOM`] bytes. Payloads are unmasked in place and
    /// echo headers written in front of them; `out` receives what to send.
    pub fn handle_input(&mut self, ctx: &Ctx<'_>, buf: &mut [u8], start: usize, out: &mut Output) -> Progress {
        assert!(start >= HEADROOM, "handle_input needs {HEADROOM} bytes of headroom");
        let end = buf.len();
        let mut p = Progress::default();
        if start < end {
            self.last_input = ctx.now;
            self.ping_sent = false;
        }
        self.stall = None;
        let mut pos = start;
        while pos < end && self.stall.is_none() {
            pos = match self.phase {
                Phase::Closed => end,
                Phase::Handshake => match self.handshake(ctx, &buf[pos..], out, &mut p) {
                    Some(n) => pos + n,
                    None => break,
                },
                Phase::Open | Phase::CloseSent if self.in_payload => {
                    match self.data_piece(ctx, buf, pos, out, &mut p) {
                        Some(next) => next,
                        None => break,
                    }
                }
                Phase::Open if p.messages >= ctx.budget.messages || (pos - start) as u64 >= ctx.budget.bytes => {
                    // Rate limited: the rest waits, unread, at a frame boundary.
                    self.stall = Some(Stall::Budget);
                    break;
                }
                Phase::Open | Phase::CloseSent => match self.frame(ctx, buf, pos, out, &mut p) {
                    Some(next) => next,
                    None => break,
                },
            };
        }
        p.consumed = pos - start;
        if self.own_inflater {
            // Cannot happen: a message is given the shard's own inflater only
            // when it is complete in this input. Should it, the state moves
            // to a pooled inflater rather than be lost.
            debug_assert!(false, "a message on the shard's inflater outlived its input");
            self.own_inflater = false;
            self.inflater = Some(ctx.inflaters.adopt_own());
        }
        p
    }

    /// When the session next wants [`Session::handle_timeout`].
    ///
    /// Invariant (the shard's timer loop relies on it): after
    /// [`Session::handle_timeout`] at `now` returned false, this is `None`
    /// or later than `now`. So whatever `handle_timeout` cannot act on must
    /// not be asked for again: inside a committed echo no ping can go out,
    /// so the next deadline there is the idle timeout itself, not the ping
    /// at its half (issue #23: asking for the ping again and again wedged
    /// the shard).
    pub fn poll_timeout(&self, config: &Config) -> Option<Instant> {
        match self.phase {
            Phase::Open => config.idle_timeout.map(|t| {
                if self.ping_sent || self.mid_committed_frame() {
                    self.last_input + t
                } else {
                    self.last_input + t / 2
                }
            }),
            _ => Some(self.deadline),
        }
    }

    /// Acts on deadlines that have passed: 408 for a slow handshake, a
    /// keepalive ping at half the idle timeout, close 1000 at the idle
    /// timeout. Returns true when the TCP connection should be dropped now
    /// (the peer never finished the close handshake or never closed).
    pub fn handle_timeout(&mut self, ctx: &Ctx<'_>, out: &mut Output) -> bool {
        let now = ctx.now;
        match self.phase {
            Phase::Handshake if now >= self.deadline => {
                out.push_owned_with(|o| Rejection::Timeout.write_response(o));
                self.enter_closed(ctx);
            }
            Phase::Handshake => {}
            Phase::Open => {
                if let Some(idle) = ctx.config.idle_timeout {
                    if self.mid_committed_frame() {
                        // Nothing can be sent inside a frame (no ping, no
                        // close): a client that stalls there, or that stopped
                        // reading the echo, is dropped at the idle timeout.
                        return now >= self.last_input + idle;
                    }
                    if now >= self.last_input + idle {
                        self.send_close(ctx, close::NORMAL, "idle timeout", out);
                    } else if !self.ping_sent && now >= self.last_input + idle / 2 {
                        out.push_frame(OpCode::Ping, b"");
                        self.ping_sent = true;
                    }
                }
            }
            Phase::CloseSent | Phase::Closed => return now >= self.deadline,
        }
        false
    }

    /// Refuses the connection before its handshake with `r`'s HTTP response
    /// (the TLS layer found a plain HTTP request on a TLS port).
    pub fn refuse(&mut self, ctx: &Ctx<'_>, r: &Rejection, out: &mut Output) {
        out.push_owned_with(|o| r.write_response(o));
        self.enter_closed(ctx);
    }

    /// Ends the connection with nothing more to send (the TLS layer failed
    /// it): input is discarded until the peer closes or the linger passes.
    pub fn abort(&mut self, ctx: &Ctx<'_>) {
        self.enter_closed(ctx);
    }

    /// Starts a server-side close with `code` (1001 at shutdown). A message
    /// whose echo is under way is finished first, so nothing the client sent
    /// before is lost; [`Session::force_close`] does not wait. A connection
    /// still in its handshake gets a 503.
    pub fn start_close(&mut self, ctx: &Ctx<'_>, code: u16, out: &mut Output) {
        match self.phase {
            Phase::Handshake => {
                out.push_owned_with(|o| Rejection::ShuttingDown.write_response(o));
                self.enter_closed(ctx);
            }
            Phase::Open if self.msg.is_some() => self.pending_close = Some(code),
            Phase::Open => self.send_close(ctx, code, close_reason(code), out),
            Phase::CloseSent | Phase::Closed => {}
        }
    }

    /// Like [`Session::start_close`], without waiting for the message in progress.
    pub fn force_close(&mut self, ctx: &Ctx<'_>, code: u16, out: &mut Output) {
        if self.phase == Phase::Open {
            self.pending_close = None;
            self.send_close(ctx, code, close_reason(code), out);
        } else {
            self.start_close(ctx, code, out);
        }
    }

    /// Closes at once with `code` and `reason` (as [`Session::force_close`]):
    /// a room member too slow for its backlog gets 1008 "too slow".
    pub fn close_with(&mut self, ctx: &Ctx<'_>, code: u16, reason: &str, out: &mut Output) {
        if self.phase == Phase::Open {
            self.pending_close = None;
            self.send_close(ctx, code, reason, out);
        }
    }

    /// The opening handshake. Returns bytes consumed, or `None` for a partial head.
    fn handshake(&mut self, ctx: &Ctx<'_>, input: &[u8], out: &mut Output, p: &mut Progress) -> Option<usize> {
        match handshake::parse_request(input, &ctx.config.handshake, ctx.admission) {
            Ok(Request::Partial) => None,
            Ok(Request::Upgrade { head_len, accept, deflate, protocol, token }) => {
                p.token = token;
                let protocol = protocol.map(|i| ctx.config.handshake.subprotocols[i].as_str());
                out.push_owned_with(|o| handshake::write_accept_response(o, &accept, protocol, deflate.as_ref()));
                self.deflate = deflate.map(|a| a.echo);
                if let Some(a) = deflate {
                    self.windows = [a.client_max_window_bits.unwrap_or(15), a.server_max_window_bits.unwrap_or(15)];
                }
                self.phase = Phase::Open;
                p.upgraded = true;
                Some(head_len)
            }
            Ok(Request::Health { head }) => {
                out.push_owned_with(|o| handshake::write_health_response(o, head));
                self.enter_closed(ctx);
                Some(input.len())
            }
            Err(r) => {
                out.push_owned_with(|o| r.write_response(o));
                p.rejected = Some(r);
                self.enter_closed(ctx);
                Some(input.len())
            }
        }
    }

    /// A frame starting at `pos`. Returns where the next one starts, or `None`
    /// when the header (or a control frame) is incomplete.
    fn frame(
        &mut self,
        ctx: &Ctx<'_>,
        buf: &mut [u8],
        pos: usize,
        out: &mut Output,
        p: &mut Progress,
    ) -> Option<usize> {
        let end = buf.len();
        let avail = &buf[pos..];
        // Fail fast: whatever two bytes can tell is checked before the rest arrives.
        let status = frame::parse_header_with(avail, self.deflate.is_some()).and_then(|s| {
            if avail.len() >= 2 {
                self.check_sequence(avail[0], avail[1])?;
            }
            Ok(s)
        });
        let h = match status {
            Ok(HeaderStatus::Complete(h)) => h,
            Ok(HeaderStatus::Partial) => return None,
            Err(e) => {
                self.fail(ctx, e, out, p);
                return Some(end);
            }
        };
        let mask = h.mask.expect("check_sequence rejects unmasked frames");
        if h.opcode.is_control() {
            let total = h.header_len + h.len as usize;
            if avail.len() < total {
                return None;
            }
            self.control(ctx, buf, pos, h.opcode, h.header_len, total, mask, out, p);
            return Some(if self.is_closed() { end } else { pos + total });
        }
        // RFC 6455 §7.4.1 (1009): judged from the header, before any payload is read.
        let msg_len = if h.opcode == OpCode::Continuation { self.msg_len } else { 0 };
        let total = msg_len.saturating_add(h.len);
        if total > ctx.config.max_message_size {
            self.fail(ctx, ProtocolError::TooBig(total), out, p);
            return Some(end);
        }
        if h.opcode != OpCode::Continuation {
            let compressed = h.rsv & frame::RSV1 != 0;
            if compressed && self.phase == Phase::Open && !self.take_inflater(ctx, &buf[pos..]) {
                // No inflater free: the frame stays unread until one is.
                self.stall = Some(Stall::Inflater);
                return None;
            }
            self.compressed = compressed;
        }
        match h.opcode {
            OpCode::Text => self.msg = Some(Kind::Text),
            OpCode::Binary => self.msg = Some(Kind::Binary),
            _ => {}
        }
        if h.opcode != OpCode::Continuation && self.phase == Phase::Open && ctx.config.reply == Reply::Collect {
            // The message is gathered whole behind room for its server
            // header; its first frame's length is a good first guess of its
            // size (already checked against --max-message-size).
            out.assembling.clear();
            out.assembling.resize(frame::MAX_SERVER_HEADER_LEN, 0);
            out.assembling.reserve(h.len as usize);
            out.compressed.clear();
            if self.compressed {
                // Kept as it came too: members that can inflate it get it so.
                out.compressed.resize(frame::MAX_SERVER_HEADER_LEN, 0);
                out.compressed.reserve(h.len as usize);
            }
        }
        self.msg_start = ctx.config.log_messages && h.opcode != OpCode::Continuation;
        self.msg_len = total;
        self.in_payload = true;
        self.frame_fin = h.fin;
        self.mask = mask;
        self.mask_off = 0;
        self.remaining = h.len;
        let payload = pos + h.header_len;
        if self.phase == Phase::Open
            && ctx.config.reply == Reply::Echo
            && self.msg == Some(Kind::Binary)
            && !self.compressed
        {
            // Nothing in a binary payload can fail the connection, so its echo
            // is committed to the whole length now and the payload streams
            // behind it: one frame out per frame in, however the reads fall.
            let opcode = if self.out_open { OpCode::Continuation } else { OpCode::Binary };
            let hlen = frame::server_header_len(h.len);
            frame::write_header(&mut buf[payload - hlen..payload], h.fin, opcode, h.len, None);
            out.push_input(payload - hlen, payload);
            self.committed = true;
            self.out_open = !h.fin;
        }
        Some(self.data_piece(ctx, buf, payload, out, p).unwrap_or(payload))
    }

    /// Gets an inflater for the compressed message starting at `input[0]`:
    /// the shard's own when the whole message is in `input` and echoed as
    /// it is, else one from the pool. False when the pool has none free.
    fn take_inflater(&mut self, ctx: &Ctx<'_>, input: &[u8]) -> bool {
        if self.deflate == Some(Echo::Passthrough) && message_complete_in(input) {
            self.own_inflater = true;
            ctx.inflaters.with(None, |i, _| i.start());
            return true;
        }
        match ctx.inflaters.take() {
            Some(mut i) => {
                i.start();
                self.inflater = Some(i);
                true
            }
            None => false,
        }
    }

    /// Inflates a piece of the compressed message in progress (unmasked, in
    /// `data`): checks it, and in the fallback echo sends the inflated bytes
    /// as fragments. Ends the message if `msg_done` and the whole piece was
    /// used. Returns the bytes used: fewer than all only when the fallback's
    /// output budget ran out.
    fn inflate_piece(
        &mut self,
        ctx: &Ctx<'_>,
        data: &[u8],
        msg_done: bool,
        out: &mut Output,
    ) -> Result<usize, ProtocolError> {
        let kind = self.msg.expect("a data frame always belongs to a message");
        let fallback = self.deflate == Some(Echo::Fallback) && ctx.config.reply == Reply::Echo;
        let collect = ctx.config.reply == Reply::Collect;
        let limit = ctx.config.max_message_size;
        let Session { utf8, out_open, inflater, own_inflater, .. } = self;
        let inflater =
            if *own_inflater { None } else { Some(&mut **inflater.as_mut().expect("taken at the first frame")) };
        let mut sink = |b: &[u8]| -> Result<bool, ProtocolError> {
            // RFC 6455 §8.1 on the inflated text (RFC 7692 §6.2): fail fast.
            if kind == Kind::Text && utf8.feed(b).is_err() {
                return Err(ProtocolError::InvalidUtf8);
            }
            if collect {
                // Collected inflated: receivers get the message itself
                // (the inflater's limit bounds it by --max-message-size).
                out.assembling.extend_from_slice(b);
                return Ok(true);
            }
            if !fallback || b.is_empty() {
                return Ok(true);
            }
            let opcode = fragment_opcode(*out_open, kind);
            out.push_owned_with(|o| frame::encode_frame(o, false, opcode, b));
            *out_open = true;
            Ok(out.owned_len() < FALLBACK_BUDGET)
        };
        ctx.inflaters.with(inflater, |i, scratch| {
            let used = i.feed(data, limit, scratch, &mut sink)?;
            if used == data.len() && msg_done {
                i.finish(limit, scratch, &mut sink)?;
            }
            Ok(used)
        })
    }

    /// True inside the payload of a committed echo, where no other frame may go.
    fn mid_committed_frame(&self) -> bool {
        self.in_payload && self.committed
    }

    /// Rules visible in a frame's first two bytes that depend on the session:
    /// masking (RFC 6455 §5.1) and fragment order (RFC 6455 §5.4).
    fn check_sequence(&self, b0: u8, b1: u8) -> Result<(), ProtocolError> {
        if b1 & 0x80 == 0 {
            return Err(ProtocolError::Unmasked);
        }
        match b0 & 0x0f {
            0x0 if self.msg.is_none() => Err(ProtocolError::UnexpectedContinuation),
            0x1 | 0x2 if self.msg.is_some() => Err(ProtocolError::ExpectedContinuation),
            _ => Ok(()),
        }
    }

    /// The payload bytes of the current data frame present at `pos`: unmask,
    /// validate, echo. Returns the position after them, or `None` when they
    /// are left for the next read (see [`MIN_PIECE`]).
    fn data_piece(
        &mut self,
        ctx: &Ctx<'_>,
        buf: &mut [u8],
        pos: usize,
        out: &mut Output,
        p: &mut Progress,
    ) -> Option<usize> {
        let n = self.remaining.min((buf.len() - pos) as u64) as usize;
        if (n as u64) < self.remaining && n < MIN_PIECE && self.phase == Phase::Open && !self.committed {
            // Too small to be worth a fragment of its own: wait for more
            // (still masked, so it is simply carried), but fail fast on bad
            // UTF-8 in it now (a compressed piece is checked once inflated).
            if self.msg == Some(Kind::Text) && !self.compressed {
                let mut tmp = [0u8; MIN_PIECE];
                tmp[..n].copy_from_slice(&buf[pos..pos + n]);
                apply_mask(&mut tmp[..n], self.mask, self.mask_off as usize);
                let mut peek = self.utf8;
                if peek.feed(&tmp[..n]).is_err() {
                    self.fail(ctx, ProtocolError::InvalidUtf8, out, p);
                    return Some(buf.len());
                }
            }
            return None;
        }
        let mut piece_end = pos + n;
        let off0 = self.mask_off as usize;
        self.mask_off = apply_mask(&mut buf[pos..piece_end], self.mask, off0) as u8;
        if self.msg_start {
            self.msg_start = false;
            p.seen.push(MessageSeen {
                text: self.msg == Some(Kind::Text),
                compressed: self.compressed,
                frame_len: self.remaining,
                fragmented: !self.frame_fin,
                head: buf[pos..piece_end.min(pos + MessageSeen::HEAD)].to_vec(),
            });
        }
        if self.compressed && self.phase == Phase::Open {
            let ends_msg = n as u64 == self.remaining && self.frame_fin;
            match self.inflate_piece(ctx, &buf[pos..piece_end], ends_msg, out) {
                Ok(used) if used < n => {
                    // The fallback's output budget is spent: the rest of the
                    // piece goes back to how it came (masked) and waits.
                    apply_mask(&mut buf[pos + used..piece_end], self.mask, off0 + used);
                    self.mask_off = ((off0 + used) % 4) as u8;
                    self.stall = Some(Stall::Output);
                    piece_end = pos + used;
                }
                Ok(_) => {}
                Err(e) => {
                    self.fail(ctx, e, out, p);
                    return Some(buf.len());
                }
            }
        }
        let n = piece_end - pos;
        self.remaining -= n as u64;
        let frame_done = self.remaining == 0;
        let msg_done = frame_done && self.frame_fin;
        let committed = self.committed;
        if frame_done {
            self.in_payload = false;
            self.committed = false;
        }
        if self.phase == Phase::CloseSent {
            // RFC 6455 §5.5.1: no data frames after our close; the input is only
            // read to find the client's close frame.
            if msg_done {
                self.msg = None;
                self.compressed = false;
                ctx.counters.messages_discarded.add(1);
            }
            return Some(piece_end);
        }
        let kind = self.msg.expect("a data frame always belongs to a message");
        if kind == Kind::Text {
            // RFC 6455 §8.1: fail fast, before the invalid piece is echoed
            // (a compressed piece's inflated bytes were fed in `inflate_piece`).
            let fed = self.compressed || self.utf8.feed(&buf[pos..piece_end]).is_ok();
            let valid = fed && (!msg_done || self.utf8.finish().is_ok());
            if !valid {
                self.fail(ctx, ProtocolError::InvalidUtf8, out, p);
                return Some(buf.len());
            }
        }
        let fallback = self.compressed && self.deflate == Some(Echo::Fallback);
        match &ctx.config.reply {
            // The inflated bytes went out in `inflate_piece`; the message ends
            // with an empty final fragment.
            Reply::Echo if fallback => {
                if msg_done {
                    let opcode = fragment_opcode(self.out_open, kind);
                    out.push_owned_with(|o| frame::encode_frame(o, true, opcode, b""));
                }
            }
            Reply::Echo if committed => out.push_input(pos, piece_end),
            Reply::Echo if n > 0 || frame_done => {
                let opcode = fragment_opcode(self.out_open, kind);
                // The client header (mask key included) is at least 4 bytes
                // longer than ours, or the piece starts the read and HEADROOM
                // is free: either way the server header fits in front.
                let hlen = frame::server_header_len(n as u64);
                frame::write_header(&mut buf[pos - hlen..pos], msg_done, opcode, n as u64, None);
                if self.compressed && !self.out_open {
                    // Passthrough: the client's compressed bytes are a valid
                    // server message; RSV1 on the first frame only (RFC 7692 §6.1).
                    buf[pos - hlen] |= frame::RSV1_BIT;
                }
                out.push_input(pos - hlen, piece_end);
                self.out_open = !msg_done;
            }
            Reply::Echo => {}
            Reply::Fixed(reply) if msg_done => out.push_owned_with(|o| o.extend_from_slice(reply)),
            Reply::Fixed(_) => {}
            Reply::Collect => {
                if self.compressed {
                    // (Collected inflated in `inflate_piece`; kept compressed here.)
                    out.compressed.extend_from_slice(&buf[pos..piece_end]);
                } else {
                    out.assembling.extend_from_slice(&buf[pos..piece_end]);
                }
                if msg_done {
                    let mut m = collected(std::mem::take(&mut out.assembling), kind);
                    if self.compressed {
                        // Every client message is a self-contained deflate
                        // stream (client_no_context_takeover is always
                        // answered), so it is a valid server message for
                        // any member whose window is at least the client's.
                        let c = collected(std::mem::take(&mut out.compressed), kind);
                        let mut buf = c.buf;
                        buf[c.start] |= frame::RSV1_BIT;
                        m.compressed = Some(Compressed { buf, start: c.start, window: self.windows[0] });
                    }
                    m.at = out.len();
                    out.messages.push(m);
                }
            }
        }
        if msg_done {
            if self.compressed {
                ctx.counters.inflated_messages.add(1);
            }
            self.msg = None;
            self.msg_len = 0;
            self.out_open = false;
            self.compressed = false;
            self.release(ctx.inflaters);
            p.messages += 1;
            if let Some(code) = self.pending_close.take() {
                self.send_close(ctx, code, close_reason(code), out);
            }
        }
        Some(piece_end)
    }

    /// A complete control frame at `pos` (RFC 6455 §5.5).
    #[allow(clippy::too_many_arguments)]
    fn control(
        &mut self,
        ctx: &Ctx<'_>,
        buf: &mut [u8],
        pos: usize,
        opcode: OpCode,
        header_len: usize,
        total: usize,
        mask: [u8; 4],
        out: &mut Output,
        p: &mut Progress,
    ) {
        let ps = pos + header_len;
        let pe = pos + total;
        apply_mask(&mut buf[ps..pe], mask, 0);
        match opcode {
            // RFC 6455 §5.5.2-3: answer with the same payload; the pong header
            // (2 bytes) goes where the ping header (6 bytes) was.
            OpCode::Ping if self.phase == Phase::Open => {
                frame::write_header(&mut buf[ps - 2..ps], true, OpCode::Pong, (pe - ps) as u64, None);
                out.push_input(ps - 2, pe);
            }
            OpCode::Close => match close::parse_close_payload(&buf[ps..pe]) {
                Ok(code) => {
                    // RFC 6455 §7.1.5: a close without a code counts as 1005.
                    ctx.counters.close_received.count(if pe == ps { close::NO_STATUS } else { code });
                    if self.phase == Phase::Open {
                        // RFC 6455 §5.5.1: answer with a close echoing the code,
                        // written over the 4 mask-key bytes of the client's header.
                        let c = code.to_be_bytes();
                        buf[pos + 2..pos + 6].copy_from_slice(&[0x88, 0x02, c[0], c[1]]);
                        out.push_input(pos + 2, pos + 6);
                        ctx.counters.close_sent.count(code);
                    }
                    self.peer_closed = true;
                    self.enter_closed(ctx);
                }
                Err(e) => self.fail(ctx, e, out, p),
            },
            // Unsolicited pongs need no answer (RFC 6455 §5.5.3); pings after
            // our close are not answered.
            _ => {}
        }
    }

    /// Fails the connection (RFC 6455 §7.1.7): a close frame with the
    /// error's code, unless one was already sent, then nothing more.
    fn fail(&mut self, ctx: &Ctx<'_>, e: ProtocolError, out: &mut Output, p: &mut Progress) {
        p.error = Some(e);
        if self.phase == Phase::Open && !self.mid_committed_frame() {
            out.push_close(e.close_code(), e.reason());
            ctx.counters.close_sent.count(e.close_code());
        }
        self.enter_closed(ctx);
    }

    fn send_close(&mut self, ctx: &Ctx<'_>, code: u16, reason: &str, out: &mut Output) {
        if self.mid_committed_frame() {
            // A close frame here would land inside the echo's payload.
            self.enter_closed(ctx);
            return;
        }
        out.push_close(code, reason);
        ctx.counters.close_sent.count(code);
        // The rest of a message in progress is only skipped now.
        self.release(ctx.inflaters);
        self.phase = Phase::CloseSent;
        self.deadline = ctx.now + ctx.config.close_timeout;
    }

    fn enter_closed(&mut self, ctx: &Ctx<'_>) {
        self.release(ctx.inflaters);
        self.phase = Phase::Closed;
        self.in_payload = false;
        self.deadline = ctx.now + ctx.config.close_timeout;
    }
}

/// A whole message gathered in `buf`, framed (see [`Collected::framed`]).
fn collected(buf: Vec<u8>, kind: Kind) -> Collected {
    Collected::framed(buf, kind == Kind::Text)
}

/// The opcode of the next echo fragment of a `kind` message.
fn fragment_opcode(out_open: bool, kind: Kind) -> OpCode {
    match (out_open, kind) {
        (true, _) => OpCode::Continuation,
        (false, Kind::Text) => OpCode::Text,
        (false, Kind::Binary) => OpCode::Binary,
    }
}

/// Whether the data message whose first frame starts `input` ends in it:
/// every frame header up to a final one is whole, with its payload.
/// Control frames in between are stepped over; an invalid header counts as
/// an end (the connection fails there).
fn message_complete_in(input: &[u8]) -> bool {
    let mut pos = 0usize;
    loop {
        match frame::parse_header_with(&input[pos..], true) {
            Ok(HeaderStatus::Partial) => return false,
            Err(_) => return true,
            Ok(HeaderStatus::Complete(h)) => {
                let Some(end) = pos.checked_add(h.header_len).and_then(|e| e.checked_add(usize::try_from(h.len).ok()?))
                else {
                    return false;
                };
                if end > input.len() {
                    return false;
                }
                if h.fin && !h.opcode.is_control() {
                    return true;
                }
                pos = end;
            }
        }
    }
}

fn close_reason(code: u16) -> &'static str {
    match code {
        close::GOING_AWAY => "server shutting down",
        close::NORMAL => "normal closure",
        _ => "",
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "session_props.rs"]
mod props;

#[cfg(test)]
#[path = "session_deflate_tests.rs"]
mod deflate_tests;

#[cfg(test)]
#[path = "session_collect_tests.rs"]
mod collect_tests;
