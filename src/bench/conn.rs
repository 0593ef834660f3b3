//! One load-generator connection: the client side of the protocol core.
//!
//! Messages are binary, `size` bytes: the first 8 bytes carry the message's
//! sequence number and the rest a fixed pattern, so every echoed byte can be
//! checked without storing what was sent. The masked frame is built once per
//! connection and only its sequence bytes are re-masked per message; a long
//! message's constant tail is written from that template by reference, and
//! echoes are checked in the read buffer they arrive in (only a partial
//! header or control frame is kept between reads). Both copies this avoids
//! cost 28% of the client's CPU per 16 KiB or 64 KiB echo.

use crate::ws::client::encode_masked;
use crate::ws::frame::{parse_header_with, HeaderStatus, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use crate::ws::handshake::accept_key;
use crate::ws::mask::apply_mask;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::time::Instant;

/// Where a connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Waiting for the 101.
    Handshake,
    /// Exchanging messages.
    Running,
    /// Done (closed or failed).
    Done,
}

/// Counts of what went wrong.
#[derive(Clone, Copy, Debug, Default)]
pub struct Errors {
    /// Echoes whose bytes differ from what was sent.
    pub mismatched: u64,
    /// Connections that failed or closed early.
    pub failed: u64,
    /// Messages sent and never echoed.
    pub missing: u64,
}

/// A message tail at least this long is written from the template by
/// reference (`writev`) instead of being copied into the output buffer.
const TAIL_BY_REFERENCE: usize = 1024;

/// Slices per `writev`.
const MAX_IOVECS: usize = 64;

/// The longest thing kept between reads: a frame header plus a control
/// frame's payload (RFC 6455 §5.5).
const MAX_CARRY: usize = MAX_HEADER_LEN + MAX_CONTROL_PAYLOAD;

/// A piece of queued output, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seg {
    /// The next `len` bytes of `out`.
    Own(usize),
    /// The template's constant tail (a message's bytes after its sequence number).
    Tail,
}

/// What goes over a load-generator connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Plain TCP, no WebSocket: the same message bytes (a raw echo's ceiling).
    Raw,
    /// Binary WebSocket messages.
    Ws,
    /// Compressed text messages under permessage-deflate (RFC 7692), no
    /// context takeover; their echoes must come back compressed, byte for
    /// byte (a server that echoes the client's compressed frames as they
    /// are, as Ricochet does).
    Deflate,
}

/// The offer `Framing::Deflate` sends (what Chrome, Firefox and Node's ws send).
pub const DEFLATE_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// A load-generator connection over any byte stream.
pub struct Conn<S> {
    /// The socket.
    pub stream: S,
    /// Where it is.
    pub state: State,
    /// Plain TCP, no WebSocket.
    raw: bool,
    /// permessage-deflate: compressed text messages.
    deflate: bool,
    /// Where the sequence number goes in each message's payload, and how
    /// long it is (8 bytes little-endian; 16 hex digits under deflate).
    seq_at: usize,
    seq_len: usize,
    key: [u8; 4],
    template: Vec<u8>,
    /// Offset of the payload in `template`.
    payload_at: usize,
    /// Offset in `template` past the sequence bytes.
    tail_at: usize,
    size: usize,
    /// Queued output, as pieces of `out` and references to the template.
    segs: VecDeque<Seg>,
    out: Vec<u8>,
    /// Where the first `Seg::Own` starts in `out`.
    out_pos: usize,
    /// Bytes of the first segment already written.
    seg_off: usize,
    /// A partial frame header or control frame (at most `MAX_CARRY` bytes),
    /// or the handshake response so far. Data payloads are checked as they
    /// arrive and never kept.
    inbuf: Vec<u8>,
    /// Payload bytes of the current data frame not received yet.
    frame_left: u64,
    /// Whether the current data frame ends its message.
    frame_fin: bool,
    /// Whether the current message has gone wrong so far.
    msg_bad: bool,
    next_seq: u64,
    /// Sequence number and send time of each message in flight, oldest first.
    in_flight: VecDeque<(u64, Instant)>,
    /// Bytes of the current echoed message checked so far.
    msg_pos: usize,
    /// The unmasked payload echoes are checked against (but its sequence bytes).
    plain: Vec<u8>,
    accept: [u8; 28],
}

/// The request a client sends, with its key (and its extension offer and
/// bearer token).
pub(crate) fn request(host: &str, path: &str, key: &str, deflate: bool, token: Option<&str>) -> String {
    let mut ext = if deflate { format!("Sec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n") } else { String::new() };
    if let Some(t) = token {
        ext.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
    )
}

/// Sequence digits of a compressed message: a stored DEFLATE block (RFC 1951
/// §3.2.4: BFINAL 0, BTYPE 00, then LEN and NLEN) of 16 hex digits, so each
/// message gets its own number without being compressed again; the
/// compressed text follows as its own blocks.
const STORED_SEQ: [u8; 5] = [0x00, 16, 0x00, !16, 0xff];

/// Text of `len` bytes that compresses about as well as JSON does (3-4:1).
fn text_body(len: usize) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "{\"id\":",
        ",\"name\":\"",
        "item",
        "\",\"tags\":[\"",
        "red",
        "\",\"",
        "blue",
        "\"],\"price\":",
        ".99,",
        "\"ok\":true}",
        "\n",
        " ",
    ];
    let mut out = Vec::with_capacity(len + 32);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(WORDS[(x % 12) as usize].as_bytes());
        out.extend_from_slice((x >> 40).to_string().as_bytes());
    }
    out.truncate(len);
    out
}

/// Byte `j` of every message's pattern part.
fn pattern(j: usize) -> u8 {
    (j % 251) as u8
}

impl<S: Read + Write> Conn<S> {
    /// A connection that will send `size`-byte messages; `id` seeds its mask
    /// key. `raw` speaks plain TCP instead (for a raw echo server, the
    /// ceiling): the same message bytes, no handshake, no framing.
    pub fn new(stream: S, id: u64, host: &str, path: &str, size: usize, framing: Framing) -> Conn<S> {
        Conn::with_token(stream, id, host, path, size, framing, None)
    }

    /// [`Conn::new`], sending `token` as `Authorization: Bearer` in the handshake.
    pub fn with_token(
        stream: S,
        id: u64,
        host: &str,
        path: &str,
        size: usize,
        framing: Framing,
        token: Option<&str>,
    ) -> Conn<S> {
        let raw = framing == Framing::Raw;
        let deflate = framing == Framing::Deflate;
        let seed = id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d_4c95_7f2d;
        // A zero key makes re-masking the sequence bytes a no-op in raw mode.
        let key = if raw { [0; 4] } else { (seed as u32 | 1).to_ne_bytes() };
        let ws_key = base64_key(seed);
        let (payload, seq_at, seq_len) = if deflate {
            // The message is 16 hex digits and `size - 16` bytes of text.
            let mut p = STORED_SEQ.to_vec();
            p.extend_from_slice(b"0000000000000000");
            p.extend_from_slice(&crate::ws::client::deflate_message(&text_body(size.saturating_sub(16))));
            (p, STORED_SEQ.len(), 16)
        } else {
            ((0..size).map(pattern).collect::<Vec<u8>>(), 0, size.min(8))
        };
        let size = payload.len();
        let mut template = Vec::with_capacity(size + 14);
        if raw {
            template.extend_from_slice(&payload);
        } else {
            let op = if deflate { OpCode::Text } else { OpCode::Binary };
            encode_masked(&mut template, true, op, &payload, key);
            if deflate {
                template[0] |= crate::ws::frame::RSV1_BIT;
            }
        }
        // Its sequence bytes are replaced per message (queue_message).
        let payload_at = template.len() - size;
        let mut c = Conn {
            stream,
            state: if raw { State::Running } else { State::Handshake },
            raw,
            deflate,
            seq_at,
            seq_len,
            key,
            tail_at: payload_at + seq_at + seq_len,
            template,
            payload_at,
            size,
            segs: VecDeque::new(),
            out: Vec::new(),
            out_pos: 0,
            seg_off: 0,
            inbuf: Vec::new(),
            frame_left: 0,
            frame_fin: false,
            msg_bad: false,
            next_seq: 0,
            in_flight: VecDeque::new(),
            msg_pos: 0,
            plain: payload,
            accept: accept_key(ws_key.as_bytes()),
        };
        if !raw {
            c.out.extend_from_slice(request(host, path, &ws_key, deflate, token).as_bytes());
            c.queue_own(0);
        }
        c
    }

    /// Messages sent and not yet echoed.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Queues the bytes appended to `out` since it was `before` long.
    fn queue_own(&mut self, before: usize) {
        let n = self.out.len() - before;
        if n == 0 {
            return;
        }
        match self.segs.back_mut() {
            Some(Seg::Own(len)) => *len += n,
            _ => self.segs.push_back(Seg::Own(n)),
        }
    }

    /// Queues one message (sequence number `next_seq`).
    pub fn queue_message(&mut self, now: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        // A long tail goes out by reference, so a large message costs no
        // copy here: only its header and sequence bytes are written per
        // message (the pattern part is masked once, in the template).
        let by_ref = self.template.len() - self.tail_at >= TAIL_BY_REFERENCE;
        let upto = if by_ref { self.tail_at } else { self.template.len() };
        let start = self.out.len();
        self.out.extend_from_slice(&self.template[..upto]);
        let n = self.seq_len;
        let p = start + self.payload_at + self.seq_at;
        let seq_bytes = self.seq_bytes(seq);
        self.out[p..p + n].copy_from_slice(&seq_bytes[..n]);
        apply_mask(&mut self.out[p..p + n], self.key, self.seq_at);
        self.queue_own(start);
        if by_ref {
            self.segs.push_back(Seg::Tail);
        }
        self.in_flight.push_back((seq, now));
    }

    /// Writes what is queued; `Ok(true)` when all of it went out.
    pub fn flush(&mut self) -> io::Result<bool> {
        while !self.segs.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut k = 0;
            let mut pos = self.out_pos;
            for (i, seg) in self.segs.iter().take(MAX_IOVECS).enumerate() {
                let skip = if i == 0 { self.seg_off } else { 0 };
                slices[k] = IoSlice::new(match *seg {
                    Seg::Own(len) => {
                        pos += len;
                        &self.out[pos - len + skip..pos]
                    }
                    Seg::Tail => &self.template[self.tail_at + skip..],
                });
                k += 1;
            }
            let written = if k == 1 { self.stream.write(&slices[0]) } else { self.stream.write_vectored(&slices[..k]) };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        // A TLS stream may still hold records the socket did not take.
        match self.stream.flush() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(true),
        }
    }

    /// Drops `n` written bytes from the front of the queue.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let seg = *self.segs.front().expect("written bytes were queued");
            let len = match seg {
                Seg::Own(len) => len,
                Seg::Tail => self.template.len() - self.tail_at,
            };
            let left = len - self.seg_off;
            if n < left {
                self.seg_off += n;
                return;
            }
            n -= left;
            if let Seg::Own(len) = seg {
                self.out_pos += len;
            }
            self.segs.pop_front();
            self.seg_off = 0;
        }
    }

    /// Reads what is there and checks it; calls `done(latency_start)` for each
    /// completed echo. Returns `Ok(false)` at end of stream.
    pub fn read(&mut self, errors: &mut Errors, done: impl FnMut(Instant)) -> io::Result<bool> {
        // One read buffer per thread: a fresh zeroed array per call cost a
        // 64 KiB memset per read, more than the read itself for small echoes.
        thread_local!(static READ_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 65536]));
        READ_BUF.with_borrow_mut(|tmp| self.read_with(tmp, errors, done))
    }

    fn read_with(&mut self, tmp: &mut [u8], errors: &mut Errors, mut done: impl FnMut(Instant)) -> io::Result<bool> {
        loop {
            let n = match self.stream.read(tmp) {
                Ok(0) => return Ok(false),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.receive(&tmp[..n], errors, &mut done);
            if self.state == State::Done {
                return Ok(false);
            }
            if n < tmp.len() {
                return Ok(true);
            }
        }
    }

    /// Message `seq`'s sequence bytes: little-endian, or 16 hex digits (text) under deflate.
    fn seq_bytes(&self, seq: u64) -> [u8; 16] {
        let mut b = [0u8; 16];
        if self.deflate {
            for (i, d) in b.iter_mut().enumerate() {
                *d = b"0123456789abcdef"[(seq >> (60 - 4 * i)) as usize & 0xf];
            }
        } else {
            b[..8].copy_from_slice(&seq.to_le_bytes());
        }
        b
    }

    /// Checks `got`, bytes `from..` of the echo of message `seq`.
    fn matches(&self, seq: u64, from: usize, got: &[u8]) -> bool {
        if from + got.len() > self.size {
            return false;
        }
        // The pattern parts with a memcmp each, the sequence bytes between.
        let end = from + got.len();
        let (s0, s1) = (self.seq_at, self.seq_at + self.seq_len);
        let seq_bytes = self.seq_bytes(seq);
        (from.max(s0)..end.min(s1)).all(|i| got[i - from] == seq_bytes[i - s0])
            && (from >= s0 || got[..end.min(s0) - from] == self.plain[from..end.min(s0)])
            && (end <= s1 || got[from.max(s1) - from..] == self.plain[from.max(s1)..end])
    }

    /// Checks the next `got` bytes of the current message's payload.
    fn check_payload(&mut self, got: &[u8]) {
        let seq = self.in_flight.front().map_or(u64::MAX, |f| f.0);
        if !self.matches(seq, self.msg_pos, got) {
            self.msg_bad = true;
        }
        self.msg_pos += got.len();
    }

    /// The current message is complete (`msg_pos` bytes long).
    fn end_message(&mut self, errors: &mut Errors, done: &mut impl FnMut(Instant)) {
        let mut bad = std::mem::take(&mut self.msg_bad) || self.msg_pos != self.size;
        self.msg_pos = 0;
        match self.in_flight.pop_front() {
            Some((_, t)) => done(t),
            None => bad = true, // an echo of nothing sent
        }
        if bad {
            errors.mismatched += 1;
        }
    }

    /// Takes received bytes: checks payloads in place and keeps only a
    /// partial header or control frame for the next read, so a large echo
    /// is never copied.
    fn receive(&mut self, mut data: &[u8], errors: &mut Errors, done: &mut impl FnMut(Instant)) {
        if self.raw {
            return self.receive_raw(data, errors, done);
        }
        if self.state == State::Handshake {
            self.inbuf.extend_from_slice(data);
            let Some(i) = self.inbuf.windows(4).position(|w| w == b"\r\n\r\n") else { return };
            let head = &self.inbuf[..i];
            // Under deflate the server must have accepted the offer: its
            // frames would otherwise be a protocol error (RFC 6455 §5.2).
            let extension = !self.deflate || head.to_ascii_lowercase().windows(18).any(|w| w == b"permessage-deflate");
            if !(head.starts_with(b"HTTP/1.1 101")
                && head.windows(self.accept.len()).any(|w| w == self.accept)
                && extension)
            {
                errors.failed += 1;
                self.state = State::Done;
                return;
            }
            self.state = State::Running;
            // Frames right behind the response (rare): take them from a copy.
            let rest = self.inbuf.split_off(i + 4);
            self.inbuf.clear();
            return self.receive(&rest, errors, done);
        }
        // Finish a carried header or control frame first, topping it up a
        // little at a time so that a data payload behind it is not copied.
        while !self.inbuf.is_empty() && !data.is_empty() && self.state != State::Done {
            let take = (MAX_CARRY - self.inbuf.len()).min(data.len());
            self.inbuf.extend_from_slice(&data[..take]);
            data = &data[take..];
            let carry = std::mem::take(&mut self.inbuf);
            let used = self.frames(&carry, errors, done);
            self.inbuf = carry;
            self.inbuf.drain(..used);
        }
        if self.inbuf.is_empty() && self.state != State::Done {
            let used = self.frames(data, errors, done);
            if self.state != State::Done {
                self.inbuf.extend_from_slice(&data[used..]);
            }
        }
    }

    /// Consumes the frames (and data payload pieces) at the start of `buf`;
    /// returns how many bytes it used. It stops at an incomplete header or
    /// control frame, which is at most `MAX_CARRY` bytes.
    fn frames(&mut self, buf: &[u8], errors: &mut Errors, done: &mut impl FnMut(Instant)) -> usize {
        let mut pos = 0;
        loop {
            if self.frame_left > 0 {
                let take = (self.frame_left as usize).min(buf.len() - pos);
                if take == 0 {
                    return pos;
                }
                self.check_payload(&buf[pos..pos + take]);
                self.frame_left -= take as u64;
                pos += take;
                if self.frame_left == 0 && self.frame_fin {
                    self.end_message(errors, done);
                }
                continue;
            }
            let h = match parse_header_with(&buf[pos..], self.deflate) {
                Ok(HeaderStatus::Complete(h)) if h.mask.is_none() => h,
                Ok(HeaderStatus::Partial) => return pos,
                // A masked server frame or a violation (RFC 6455 §5.1, §5.2).
                _ => {
                    errors.failed += 1;
                    self.state = State::Done;
                    return pos;
                }
            };
            let start = pos + h.header_len;
            if h.opcode.is_control() {
                let end = start + h.len as usize;
                if end > buf.len() {
                    return pos;
                }
                match h.opcode {
                    OpCode::Ping => {
                        let before = self.out.len();
                        encode_masked(&mut self.out, true, OpCode::Pong, &buf[start..end], self.key);
                        self.queue_own(before);
                    }
                    OpCode::Close => {
                        self.state = State::Done;
                        return end;
                    }
                    _ => {}
                }
                pos = end;
                continue;
            }
            // Binary was sent (compressed text under deflate): another
            // opcode is wrong however the bytes look, and so is a compressed
            // message's echo that is not compressed.
            let want = if self.deflate { OpCode::Text } else { OpCode::Binary };
            let first = self.msg_pos == 0 && h.opcode != OpCode::Continuation;
            if first && (h.opcode != want || (h.rsv & crate::ws::frame::RSV1 != 0) != self.deflate) {
                self.msg_bad = true;
            }
            self.frame_left = h.len;
            self.frame_fin = h.fin;
            pos = start;
            if h.len == 0 && h.fin {
                self.end_message(errors, done);
            }
        }
    }

    /// A raw echo is a byte stream: messages end where their bytes do.
    fn receive_raw(&mut self, mut data: &[u8], errors: &mut Errors, done: &mut impl FnMut(Instant)) {
        while !data.is_empty() {
            if self.in_flight.is_empty() {
                errors.mismatched += 1; // bytes nobody sent
                return;
            }
            let take = (self.size - self.msg_pos).min(data.len());
            self.check_payload(&data[..take]);
            data = &data[take..];
            if self.msg_pos == self.size {
                self.end_message(errors, done);
            }
        }
    }

    /// Queues a close frame (1000).
    pub fn queue_close(&mut self) {
        let before = self.out.len();
        encode_masked(&mut self.out, true, OpCode::Close, &1000u16.to_be_bytes(), self.key);
        self.queue_own(before);
    }
}

/// A `Sec-WebSocket-Key`: base64 of 16 bytes.
pub(crate) fn base64_key(seed: u64) -> String {
    use base64::Engine;
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&seed.to_le_bytes());
    b[8..].copy_from_slice(&seed.rotate_left(17).to_le_bytes());
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame::write_header;

    /// A byte stream in memory: reads hand out `chunk` bytes at a time, then
    /// WouldBlock; writes take at most `write_limit` bytes per call.
    struct Pipe {
        input: Vec<u8>,
        pos: usize,
        chunk: usize,
        written: Vec<u8>,
        write_limit: usize,
    }

    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.chunk.min(buf.len()).min(self.input.len() - self.pos);
            if n == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.write_limit - n);
                self.written.extend_from_slice(&b[..take]);
                n += take;
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn pipe(write_limit: usize) -> Pipe {
        Pipe { input: Vec::new(), pos: 0, chunk: 1, written: Vec::new(), write_limit }
    }

    /// The payloads of the masked client frames in `bytes`.
    fn client_payloads(mut bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let HeaderStatus::Complete(h) = parse_header_with(bytes, true).unwrap() else { panic!("partial frame") };
            let mut p = bytes[h.header_len..h.header_len + h.len as usize].to_vec();
            apply_mask(&mut p, h.mask.expect("client frames are masked"), 0);
            out.push(p);
            bytes = &bytes[h.header_len + h.len as usize..];
        }
        out
    }

    fn server_frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut hdr = [0u8; 14];
        let n = write_header(&mut hdr, fin, opcode, payload.len() as u64, None);
        [&hdr[..n], payload].concat()
    }

    /// A connection past its handshake that has sent three `size`-byte
    /// messages through writes of `write_limit` bytes; returns it and what
    /// it sent.
    fn running(size: usize, write_limit: usize) -> (Conn<Pipe>, Vec<Vec<u8>>) {
        running_with(size, write_limit, Framing::Ws)
    }

    fn running_with(size: usize, write_limit: usize, framing: Framing) -> (Conn<Pipe>, Vec<Vec<u8>>) {
        let mut c = Conn::new(pipe(write_limit), 7, "h", "/", size, framing);
        c.state = State::Running;
        c.segs.clear();
        c.out.clear();
        for _ in 0..3 {
            c.queue_message(Instant::now());
        }
        while !c.flush().unwrap() {}
        let sent = client_payloads(&c.stream.written);
        (c, sent)
    }

    /// Feeds `input` in reads of `chunk` bytes; returns errors and echoes done.
    fn feed(c: &mut Conn<Pipe>, input: Vec<u8>, chunk: usize) -> (Errors, usize) {
        c.stream.input = input;
        c.stream.pos = 0;
        c.stream.chunk = chunk;
        let (mut errors, mut done) = (Errors::default(), 0);
        // A short read ends a call (the socket is drained), so call again.
        while c.stream.pos < c.stream.input.len() && c.state != State::Done {
            c.read(&mut errors, |_| done += 1).unwrap();
        }
        (errors, done)
    }

    #[test]
    fn messages_go_out_whole_through_short_writes() {
        for (size, limit) in [(0, 1), (20, 3), (3000, 7), (3000, 100_000), (70_000, 4096)] {
            let (c, sent) = running(size, limit);
            assert_eq!(sent.len(), 3, "size {size}");
            for (seq, p) in sent.iter().enumerate() {
                assert_eq!(p.len(), size);
                assert!(c.matches(seq as u64, 0, p), "size {size}, message {seq}");
            }
        }
    }

    #[test]
    fn fragmented_echoes_with_a_ping_between_pass_at_every_read_size() {
        for size in [20, 3000] {
            for chunk in [1, 2, 5, 13, 64, 1000, 1 << 20] {
                let (mut c, sent) = running(size, usize::MAX);
                let half = size / 2;
                let mut input = server_frame(true, OpCode::Binary, &sent[0]);
                input.extend(server_frame(false, OpCode::Binary, &sent[1][..half]));
                input.extend(server_frame(true, OpCode::Ping, b"are you there"));
                input.extend(server_frame(true, OpCode::Continuation, &sent[1][half..]));
                input.extend(server_frame(true, OpCode::Binary, &sent[2]));
                let (errors, done) = feed(&mut c, input, chunk);
                assert_eq!((errors.mismatched, errors.failed, done), (0, 0, 3), "size {size}, reads of {chunk}");
                assert!(c.inbuf.is_empty() && c.in_flight() == 0);
                c.stream.written.clear();
                while !c.flush().unwrap() {}
                let pong = crate::ws::frame::parse_header(&c.stream.written).unwrap();
                assert!(matches!(pong, HeaderStatus::Complete(h) if h.opcode == OpCode::Pong));
            }
        }
    }

    #[test]
    fn a_wrong_byte_in_a_first_fragment_is_counted() {
        let (mut c, mut sent) = running(3000, usize::MAX);
        sent[0][100] ^= 1;
        let mut input = server_frame(false, OpCode::Binary, &sent[0][..1500]);
        input.extend(server_frame(true, OpCode::Continuation, &sent[0][1500..]));
        let (errors, done) = feed(&mut c, input, 700);
        assert_eq!((errors.mismatched, done), (1, 1));
    }

    #[test]
    fn short_long_text_and_unasked_echoes_are_wrong() {
        let (mut c, sent) = running(20, usize::MAX);
        let mut input = server_frame(true, OpCode::Binary, &sent[0][..19]);
        input.extend(server_frame(true, OpCode::Binary, &[sent[1].clone(), vec![0]].concat()));
        input.extend(server_frame(true, OpCode::Text, &sent[2]));
        input.extend(server_frame(true, OpCode::Binary, &sent[0]));
        let (errors, done) = feed(&mut c, input, 9);
        assert_eq!((errors.mismatched, done), (4, 3));
    }

    #[test]
    fn deflate_messages_are_numbered_compressed_text_and_echoes_must_match() {
        use crate::ws::client::inflate_message;
        for size in [20, 1024, 16 * 1024] {
            let (mut c, sent) = running_with(size, usize::MAX, Framing::Deflate);
            for (seq, p) in sent.iter().enumerate() {
                let text = inflate_message(p).expect("valid DEFLATE");
                assert_eq!(text.len(), size);
                assert_eq!(&text[..16], format!("{seq:016x}").as_bytes());
                assert!(std::str::from_utf8(&text).is_ok());
                assert!(p.len() < size / 2 || size < 100, "{size} compressed to {}", p.len());
            }
            let compressed = |fin: bool, op: OpCode, payload: &[u8]| {
                let mut f = server_frame(fin, op, payload);
                f[0] |= crate::ws::frame::RSV1_BIT;
                f
            };
            // Passthrough echoes, one of them re-fragmented: all good.
            let half = sent[1].len() / 2;
            let mut input = compressed(true, OpCode::Text, &sent[0]);
            input.extend(compressed(false, OpCode::Text, &sent[1][..half]));
            input.extend(server_frame(true, OpCode::Continuation, &sent[1][half..]));
            input.extend(compressed(true, OpCode::Text, &sent[2]));
            let (errors, done) = feed(&mut c, input, 777);
            assert_eq!((errors.mismatched, errors.failed, done), (0, 0, 3), "size {size}");
            // An echo that is not compressed, or binary, is wrong.
            let (mut c, sent) = running_with(size, usize::MAX, Framing::Deflate);
            let mut input = server_frame(true, OpCode::Text, &sent[0]);
            input.extend(compressed(true, OpCode::Binary, &sent[1]));
            input.extend(compressed(true, OpCode::Text, &sent[1]));
            let (errors, done) = feed(&mut c, input, 777);
            assert_eq!((errors.mismatched, done), (3, 3), "size {size}");
        }
    }

    #[test]
    fn deflate_needs_the_server_to_accept_the_offer() {
        let mut c = Conn::new(pipe(usize::MAX), 7, "h", "/", 20, Framing::Deflate);
        while !c.flush().unwrap() {}
        let req = String::from_utf8_lossy(&c.stream.written).into_owned();
        assert!(req.contains("\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"), "{req}");
        let accept = String::from_utf8_lossy(&c.accept).into_owned();
        let plain = format!("HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
        let (errors, _) = feed(&mut c, plain.into_bytes(), 64);
        assert_eq!((errors.failed, c.state), (1, State::Done));
        let mut c = Conn::new(pipe(usize::MAX), 7, "h", "/", 20, Framing::Deflate);
        let ok = format!("HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n\r\n");
        let (errors, _) = feed(&mut c, ok.into_bytes(), 64);
        assert_eq!((errors.failed, c.state), (0, State::Running));
    }

    #[test]
    fn a_masked_server_frame_fails_the_connection() {
        let (mut c, sent) = running(20, usize::MAX);
        let mut input = Vec::new();
        encode_masked(&mut input, true, OpCode::Binary, &sent[0], [1, 2, 3, 4]);
        let (errors, _) = feed(&mut c, input, 64);
        assert_eq!((errors.failed, c.state), (1, State::Done));
    }
}
