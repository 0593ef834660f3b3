//! One load-generator connection: the client side of the protocol core.
//!
//! Messages are binary, `size` bytes: the first 8 bytes carry the message's
//! sequence number and the rest a fixed pattern, so every echoed byte can be
//! checked without storing what was sent. The masked frame is built once per
//! connection and only its sequence bytes are re-masked per message, which
//! keeps the client's CPU per message well under the server's.

use crate::ws::client::encode_masked;
use crate::ws::frame::{parse_header, HeaderStatus, OpCode};
use crate::ws::handshake::accept_key;
use crate::ws::mask::apply_mask;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
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

/// A load-generator connection over any byte stream.
pub struct Conn<S> {
    /// The socket.
    pub stream: S,
    /// Where it is.
    pub state: State,
    /// Plain TCP, no WebSocket.
    raw: bool,
    key: [u8; 4],
    template: Vec<u8>,
    /// Offset of the payload in `template`.
    payload_at: usize,
    size: usize,
    out: Vec<u8>,
    out_off: usize,
    inbuf: Vec<u8>,
    next_seq: u64,
    /// Sequence number and send time of each message in flight, oldest first.
    in_flight: VecDeque<(u64, Instant)>,
    /// Bytes of the current echoed message checked so far.
    msg_pos: usize,
    /// The unmasked pattern echoes are checked against (past the 8 sequence bytes).
    plain: Vec<u8>,
    accept: [u8; 28],
}

/// The request a client sends, with its key.
fn request(host: &str, path: &str, key: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Byte `j` of every message's pattern part.
fn pattern(j: usize) -> u8 {
    (j % 251) as u8
}

impl<S: Read + Write> Conn<S> {
    /// A connection that will send `size`-byte messages; `id` seeds its mask
    /// key. `raw` speaks plain TCP instead (for a raw echo server, the
    /// ceiling): the same message bytes, no handshake, no framing.
    pub fn new(stream: S, id: u64, host: &str, path: &str, size: usize, raw: bool) -> Conn<S> {
        let seed = id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5851_f42d_4c95_7f2d;
        // A zero key makes re-masking the sequence bytes a no-op in raw mode.
        let key = if raw { [0; 4] } else { (seed as u32 | 1).to_ne_bytes() };
        let ws_key = base64_key(seed);
        let payload: Vec<u8> = (0..size).map(pattern).collect();
        let mut template = Vec::with_capacity(size + 14);
        if raw {
            template.extend_from_slice(&payload);
        } else {
            encode_masked(&mut template, true, OpCode::Binary, &payload, key);
        }
        // Its first 8 payload bytes are replaced per message (queue_message).
        let payload_at = template.len() - size;
        let mut out = Vec::new();
        if !raw {
            out.extend_from_slice(request(host, path, &ws_key).as_bytes());
        }
        Conn {
            stream,
            state: if raw { State::Running } else { State::Handshake },
            raw,
            key,
            template,
            payload_at,
            size,
            out,
            out_off: 0,
            inbuf: Vec::with_capacity(size.max(4096) + 14),
            next_seq: 0,
            in_flight: VecDeque::new(),
            msg_pos: 0,
            plain: payload,
            accept: accept_key(ws_key.as_bytes()),
        }
    }

    /// Messages sent and not yet echoed.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Queues one message (sequence number `next_seq`).
    pub fn queue_message(&mut self, now: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let start = self.out.len();
        self.out.extend_from_slice(&self.template);
        let n = self.size.min(8);
        if n > 0 {
            let p = start + self.payload_at;
            let seq_bytes = seq.to_le_bytes();
            // Re-mask only the sequence bytes: the pattern part is already masked.
            let mut plain = [0u8; 8];
            plain[..n].copy_from_slice(&seq_bytes[..n]);
            apply_mask(&mut plain[..n], self.key, 0);
            self.out[p..p + n].copy_from_slice(&plain[..n]);
        }
        self.in_flight.push_back((seq, now));
    }

    /// Writes what is queued; `Ok(true)` when all of it went out.
    pub fn flush(&mut self) -> io::Result<bool> {
        while self.out_off < self.out.len() {
            match self.stream.write(&self.out[self.out_off..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.out_off = 0;
        Ok(true)
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
            self.inbuf.extend_from_slice(&tmp[..n]);
            self.process(errors, &mut done);
            if self.state == State::Done {
                return Ok(false);
            }
            if n < tmp.len() {
                return Ok(true);
            }
        }
    }

    /// Checks `got`, bytes `from..` of the echo of message `seq`.
    fn matches(&self, seq: u64, from: usize, got: &[u8]) -> bool {
        if from + got.len() > self.size {
            return false;
        }
        // The sequence bytes, then the pattern part with one memcmp.
        let head = 8usize.saturating_sub(from).min(got.len());
        let seq_bytes = seq.to_le_bytes();
        let s = from.min(8);
        got[..head] == seq_bytes[s..s + head] && got[head..] == self.plain[from + head..from + got.len()]
    }

    /// A raw echo is a byte stream: messages end where their bytes do.
    fn process_raw(&mut self, errors: &mut Errors, done: &mut impl FnMut(Instant)) {
        let mut pos = 0;
        while pos < self.inbuf.len() {
            let Some(&(seq, t)) = self.in_flight.front() else {
                errors.mismatched += 1; // bytes nobody sent
                pos = self.inbuf.len();
                break;
            };
            let take = (self.size - self.msg_pos).min(self.inbuf.len() - pos);
            if !self.matches(seq, self.msg_pos, &self.inbuf[pos..pos + take]) {
                errors.mismatched += 1;
            }
            self.msg_pos += take;
            pos += take;
            if self.msg_pos == self.size {
                self.msg_pos = 0;
                self.in_flight.pop_front();
                done(t);
            }
        }
        self.inbuf.drain(..pos);
    }

    fn process(&mut self, errors: &mut Errors, done: &mut impl FnMut(Instant)) {
        if self.raw {
            return self.process_raw(errors, done);
        }
        let mut pos = 0;
        if self.state == State::Handshake {
            let Some(i) = self.inbuf.windows(4).position(|w| w == b"\r\n\r\n") else { return };
            let head = &self.inbuf[..i];
            let ok = head.starts_with(b"HTTP/1.1 101") && head.windows(self.accept.len()).any(|w| w == self.accept);
            if !ok {
                errors.failed += 1;
                self.state = State::Done;
                return;
            }
            self.state = State::Running;
            pos = i + 4;
        }
        while let Ok(HeaderStatus::Complete(h)) = parse_header(&self.inbuf[pos..]) {
            let start = pos + h.header_len;
            let end = start + h.len as usize;
            if end > self.inbuf.len() {
                break;
            }
            match h.opcode {
                OpCode::Text => {
                    // Binary was sent: any text answer is a wrong echo.
                    errors.mismatched += 1;
                    if h.fin {
                        self.msg_pos = 0;
                        if let Some((_, t)) = self.in_flight.pop_front() {
                            done(t);
                        }
                    }
                }
                OpCode::Binary | OpCode::Continuation => {
                    let seq = self.in_flight.front().map(|f| f.0).unwrap_or(u64::MAX);
                    let mut bad = !self.matches(seq, self.msg_pos, &self.inbuf[start..end]);
                    self.msg_pos += end - start;
                    if h.fin {
                        bad |= self.msg_pos != self.size;
                        self.msg_pos = 0;
                        match self.in_flight.pop_front() {
                            Some((_, t)) => done(t),
                            None => bad = true,
                        }
                        if bad {
                            errors.mismatched += 1;
                        }
                    }
                }
                OpCode::Ping => {
                    let payload = self.inbuf[start..end].to_vec();
                    encode_masked(&mut self.out, true, OpCode::Pong, &payload, self.key);
                }
                OpCode::Close => {
                    self.state = State::Done;
                    return;
                }
                _ => {}
            }
            pos = end;
        }
        self.inbuf.drain(..pos);
    }

    /// Queues a close frame (1000).
    pub fn queue_close(&mut self) {
        encode_masked(&mut self.out, true, OpCode::Close, &1000u16.to_be_bytes(), self.key);
    }
}

/// A `Sec-WebSocket-Key`: base64 of 16 bytes.
fn base64_key(seed: u64) -> String {
    use base64::Engine;
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&seed.to_le_bytes());
    b[8..].copy_from_slice(&seed.rotate_left(17).to_le_bytes());
    base64::engine::general_purpose::STANDARD.encode(b)
}
