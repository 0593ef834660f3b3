//! What a session asks the I/O layer to send: slices of the caller's read
//! buffer (echoes, written in place) and a few owned bytes (handshake
//! responses, server-initiated control frames), in order.

use crate::ws::frame::{self, OpCode};

/// One contiguous piece of output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunk {
    /// `buf[start..end]` of the buffer passed to `Session::handle_input`.
    Input {
        /// First byte.
        start: usize,
        /// One past the last byte.
        end: usize,
    },
    /// `owned[start..end]` of this `Output`.
    Owned {
        /// First byte.
        start: usize,
        /// One past the last byte.
        end: usize,
    },
}

/// Ordered output of one call into the session. Reuse one per shard: clearing
/// keeps the allocations, so steady state allocates nothing.
#[derive(Debug, Default)]
pub struct Output {
    chunks: Vec<Chunk>,
    owned: Vec<u8>,
}

impl Output {
    /// An empty output.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets the contents, keeping capacity.
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.owned.clear();
    }

    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The chunks in order.
    pub fn chunks(&self) -> &[Chunk] {
        &self.chunks
    }

    /// Total bytes to send.
    pub fn len(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| match *c {
                Chunk::Input { start, end } | Chunk::Owned { start, end } => end - start,
            })
            .sum()
    }

    /// The bytes of `chunk`, resolving input chunks against `buf`.
    pub fn bytes<'a>(&'a self, buf: &'a [u8], chunk: Chunk) -> &'a [u8] {
        match chunk {
            Chunk::Input { start, end } => &buf[start..end],
            Chunk::Owned { start, end } => &self.owned[start..end],
        }
    }

    /// Every chunk's bytes in order, resolved against `buf`.
    pub fn slices<'a>(&'a self, buf: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.chunks.iter().map(move |&c| self.bytes(buf, c))
    }

    /// Appends every byte, in order, to `dst` (used when a write was short or
    /// for tests).
    pub fn copy_to(&self, buf: &[u8], dst: &mut Vec<u8>) {
        for s in self.slices(buf) {
            dst.extend_from_slice(s);
        }
    }

    /// Adds `buf[start..end]`, merging with the previous chunk when adjacent.
    pub(crate) fn push_input(&mut self, start: usize, end: usize) {
        if let Some(Chunk::Input { end: last_end, .. }) = self.chunks.last_mut() {
            if *last_end == start {
                *last_end = end;
                return;
            }
        }
        self.chunks.push(Chunk::Input { start, end });
    }

    /// Adds owned bytes written by `f`.
    pub(crate) fn push_owned_with(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        let start = self.owned.len();
        f(&mut self.owned);
        let end = self.owned.len();
        if let Some(Chunk::Owned { end: last_end, .. }) = self.chunks.last_mut() {
            if *last_end == start {
                *last_end = end;
                return;
            }
        }
        self.chunks.push(Chunk::Owned { start, end });
    }

    /// Adds an owned unmasked frame.
    pub(crate) fn push_frame(&mut self, opcode: OpCode, payload: &[u8]) {
        self.push_owned_with(|o| frame::encode_frame(o, true, opcode, payload));
    }

    /// Adds an owned close frame with `code` and `reason` (RFC 6455 §5.5.1).
    pub(crate) fn push_close(&mut self, code: u16, reason: &str) {
        let mut payload = [0u8; frame::MAX_CONTROL_PAYLOAD];
        payload[..2].copy_from_slice(&code.to_be_bytes());
        let r = &reason.as_bytes()[..reason.len().min(frame::MAX_CONTROL_PAYLOAD - 2)];
        payload[2..2 + r.len()].copy_from_slice(r);
        self.push_frame(OpCode::Close, &payload[..2 + r.len()]);
    }
}
