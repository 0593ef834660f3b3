//! A connection as every backend keeps it: the session, the bytes it left
//! unconsumed, and output the socket did not take yet. Nothing here is
//! allocated for an idle connection: `carry` holds at most a request head or
//! a control frame, `pending` exists only after a short write.

use crate::server::rate::Bucket;
use crate::ws::tls::TlsConn;
use crate::ws::{Output, Progress, Session};
use std::net::SocketAddr;
use std::time::Instant;

/// Output bytes kept for a connection whose socket is full. Reading stops
/// while any are kept, so this never exceeds one read's output plus a few
/// control frames: TCP flow control holds the client back.
#[derive(Debug)]
pub struct Conn {
    /// The protocol state.
    pub session: Session,
    /// Unconsumed input, placed in front of the next read.
    carry: Vec<u8>,
    /// Output not yet written, from `pending_off`.
    pending: Vec<u8>,
    pending_off: usize,
    /// The connection holds a place in the connection limit.
    pub admitted: bool,
    /// The connection holds one of its address's places for handshakes
    /// (`--max-connections-per-ip`), counted under [`Conn::client`].
    pub arriving: bool,
    /// The deadline a timer entry is scheduled for.
    pub timer_at: Option<Instant>,
    /// Our side of TCP is shut down (close flushed; now waiting for the peer's FIN).
    pub write_shut: bool,
    /// The peer shut down its side; close once our output is flushed.
    pub peer_eof: bool,
    /// The server-side close (shutdown) was started.
    pub close_started: bool,
    /// The TLS layer, on a `--tls-listen` connection; `carry` then holds
    /// ciphertext (part of a record) and the layer the plaintext carry.
    pub tls: Option<Box<TlsConn>>,
    /// Under `--proxy-protocol`: the PROXY header has not been read yet, and
    /// `carry` holds part of it.
    pub proxy_pending: bool,
    /// A room member with room output waiting or in flight (the table keeps
    /// the output itself beside the connection; it keeps this in step).
    pub backlog: bool,
    /// What only some connections need (boxed, so the rest stay small).
    extra: Option<Box<Extra>>,
}

/// State a connection has only with some settings.
#[derive(Debug, Default)]
pub struct Extra {
    /// The client's address as its PROXY header named it, or as the
    /// per-address limit counted it (read at accept).
    pub client: Option<SocketAddr>,
    /// The rate limit's tokens.
    pub bucket: Option<Bucket>,
}

/// Capacity above which an emptied buffer is released rather than kept.
const KEEP_CAPACITY: usize = 256;

impl Conn {
    /// A connection accepted at `now`.
    pub fn new(session: Session) -> Conn {
        Conn {
            session,
            carry: Vec::new(),
            pending: Vec::new(),
            pending_off: 0,
            admitted: false,
            arriving: false,
            timer_at: None,
            write_shut: false,
            peer_eof: false,
            close_started: false,
            tls: None,
            proxy_pending: false,
            backlog: false,
            extra: None,
        }
    }

    /// The client's address, if a PROXY header named it or a limit counted it.
    pub fn client(&self) -> Option<SocketAddr> {
        self.extra.as_ref().and_then(|e| e.client)
    }

    /// What only some connections need, made on first use.
    pub fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    /// The rate limit's tokens, if the connection has them.
    pub fn bucket(&self) -> Option<&Bucket> {
        self.extra.as_ref().and_then(|e| e.bucket.as_ref())
    }

    /// The same, to change; never allocates the extras.
    pub fn bucket_mut(&mut self) -> Option<&mut Bucket> {
        self.extra.as_mut().and_then(|e| e.bucket.as_mut())
    }

    /// Copies the carried bytes to end at `reserve` in `buf` (the next read
    /// lands at `reserve`) and returns where the session's input starts.
    pub fn stage_carry(&self, buf: &mut [u8], reserve: usize) -> usize {
        let start = reserve - self.carry.len();
        buf[start..reserve].copy_from_slice(&self.carry);
        start
    }

    /// Keeps what the session left unconsumed in `buf[start..]`.
    pub fn keep_carry(&mut self, buf: &[u8], start: usize, p: &Progress) {
        self.carry.clear();
        let rest = &buf[start + p.consumed..];
        if rest.is_empty() && self.carry.capacity() > KEEP_CAPACITY {
            self.carry = Vec::new();
        }
        self.carry.extend_from_slice(rest);
    }

    /// Bytes carried now.
    pub fn carry_len(&self) -> usize {
        self.carry.len()
    }

    /// True while output waits for the socket; reading is paused meanwhile.
    pub fn has_pending(&self) -> bool {
        self.pending_off < self.pending.len()
    }

    /// The output still to write.
    pub fn pending(&self) -> &[u8] {
        &self.pending[self.pending_off..]
    }

    /// Heap bytes this connection holds beyond its fixed size.
    pub fn heap_bytes(&self) -> usize {
        self.carry.capacity() + self.pending.capacity()
    }

    /// True when room output waits (or is in flight).
    pub fn has_backlog(&self) -> bool {
        self.backlog
    }

    /// Records that `n` pending bytes were written.
    pub fn advance_pending(&mut self, n: usize) {
        self.pending_off += n;
        if self.pending_off >= self.pending.len() {
            self.pending_off = 0;
            self.pending.clear();
            if self.pending.capacity() > KEEP_CAPACITY {
                self.pending = Vec::new();
            }
        }
    }

    /// Appends input that arrived while output was backed up (io_uring, whose
    /// receives cannot be paused instantly): it is handled, in front of the
    /// next bytes, once the output drains. Bounded by what arrives before the
    /// receive is cancelled.
    pub fn defer_input(&mut self, bytes: &[u8]) {
        self.carry.extend_from_slice(bytes);
    }

    /// Takes the output not yet written (for a backend that sends it
    /// asynchronously and needs it to stay put meanwhile).
    pub fn take_pending(&mut self) -> Vec<u8> {
        let mut v = std::mem::take(&mut self.pending);
        v.drain(..self.pending_off);
        self.pending_off = 0;
        v
    }

    /// Keeps `bytes` to write after what is pending.
    pub fn queue_bytes(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// Keeps `out` (resolved against `buf`) after its first `written` bytes.
    pub fn queue(&mut self, out: &Output, buf: &[u8], mut written: usize) {
        for s in out.slices(buf) {
            if written >= s.len() {
                written -= s.len();
                continue;
            }
            self.pending.extend_from_slice(&s[written..]);
            written = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_connection_state_stays_small() {
        // What each idle connection costs in user space besides its slab
        // slot and socket: this struct, and no heap (carry and pending empty).
        let size = std::mem::size_of::<Conn>();
        assert!(size <= 184, "Conn grew to {size} bytes");
        let size = std::mem::size_of::<Session>();
        assert!(size <= 88, "Session grew to {size} bytes");
        let c = Conn::new(Session::new(&crate::ws::Config::default(), Instant::now()));
        assert_eq!(c.heap_bytes(), 0);
    }
}
