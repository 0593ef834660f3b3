//! What a session asks the I/O layer to send: slices of the caller's read
//! buffer (echoes, written in place) and a few owned bytes (handshake
//! responses, server-initiated control frames), in order.

use crate::ws::frame::{self, OpCode};

/// Input chunks averaging fewer bytes than this are moved together by
/// [`Output::coalesce`]. A judgement, not a measured break-even: a 512-byte
/// move is a few cache lines, while a slice is a trip round the kernel's
/// copy loop; pipelined 20 B and 64 B echoes (16 per read) measured the same
/// with and without coalescing, so the threshold matters little below it.
pub const COALESCE_BELOW: usize = 512;

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

/// A complete data message collected under [`crate::ws::Reply::Collect`]:
/// one unmasked, uncompressed server frame, built where the payload was
/// gathered so that it never needs another copy.
#[derive(Debug, PartialEq, Eq)]
pub struct Collected {
    /// The frame is `buf[start..]`: its header, then the payload.
    pub buf: Vec<u8>,
    /// Where the header starts (the space in front of it is unused).
    pub start: usize,
    /// A text message (else binary).
    pub text: bool,
    /// The message as it came, when it came compressed (RFC 7692): one
    /// frame with RSV1, for receivers that can inflate it.
    pub compressed: Option<Compressed>,
    /// Bytes of the call's own output ([`Output::len`]) that came before
    /// this message completed: where its sender's own copy belongs.
    pub at: usize,
}

/// A collected message's compressed form.
#[derive(Debug, PartialEq, Eq)]
pub struct Compressed {
    /// The frame is `buf[start..]`.
    pub buf: Vec<u8>,
    /// Where its header starts.
    pub start: usize,
    /// The largest window (bits) it may have been compressed with: a
    /// receiver must allow the server at least this (`server_max_window_bits`).
    pub window: u8,
}

impl Compressed {
    /// The encoded frame.
    pub fn frame(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

impl Collected {
    /// The encoded frame.
    pub fn frame(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// The message's payload.
    pub fn payload(&self) -> &[u8] {
        &self.buf[frame::MAX_SERVER_HEADER_LEN..]
    }

    /// A whole message gathered in `buf` behind [`frame::MAX_SERVER_HEADER_LEN`]
    /// bytes kept for its header, with its one server frame header (unmasked,
    /// FIN, RFC 6455 §5.2) written in front.
    pub fn framed(mut buf: Vec<u8>, text: bool) -> Collected {
        const ROOM: usize = frame::MAX_SERVER_HEADER_LEN;
        debug_assert!(buf.len() >= ROOM, "a collected message starts with room for its header");
        if buf.len() < ROOM {
            buf.resize(ROOM, 0);
        }
        let len = (buf.len() - ROOM) as u64;
        let hlen = frame::server_header_len(len);
        let opcode = if text { frame::OpCode::Text } else { frame::OpCode::Binary };
        frame::write_header(&mut buf[ROOM - hlen..ROOM], true, opcode, len, None);
        Collected { buf, start: ROOM - hlen, text, compressed: None, at: 0 }
    }

    /// `payload` as one whole server frame (a message from elsewhere).
    pub fn message(text: bool, payload: &[u8]) -> Collected {
        let mut buf = Vec::with_capacity(frame::MAX_SERVER_HEADER_LEN + payload.len());
        buf.resize(frame::MAX_SERVER_HEADER_LEN, 0);
        buf.extend_from_slice(payload);
        Collected::framed(buf, text)
    }
}

/// Ordered output of one call into the session. Reuse one per shard: clearing
/// keeps the allocations, so steady state allocates nothing.
#[derive(Debug, Default)]
pub struct Output {
    chunks: Vec<Chunk>,
    owned: Vec<u8>,
    /// Under [`crate::ws::Reply::Collect`]: the messages completed in this call, in order.
    pub messages: Vec<Collected>,
    /// Under [`crate::ws::Reply::Collect`]: the message in progress, its
    /// payload behind [`frame::MAX_SERVER_HEADER_LEN`] bytes kept for the
    /// header. It belongs to the connection: the caller swaps the
    /// connection's own in before a call and back out after it.
    pub assembling: Vec<u8>,
    /// Under [`crate::ws::Reply::Collect`]: the message in progress as it
    /// came, when it came compressed (the connection's too, like `assembling`).
    pub compressed: Vec<u8>,
}

impl Output {
    /// An empty output.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts each collected message's frame into the output where it
    /// completed ([`Collected::at`]), as an echo would have sent it (the
    /// output is resolved against `buf` and becomes owned bytes). For a
    /// sender that gets its own messages and closed in the same call: its
    /// close must not overtake them.
    pub fn echo_collected_in_place(&mut self, buf: &[u8]) {
        if self.messages.is_empty() {
            return;
        }
        let mut bytes = Vec::with_capacity(self.len());
        self.copy_to(buf, &mut bytes);
        self.chunks.clear();
        self.owned.clear();
        let mut from = 0;
        let messages = std::mem::take(&mut self.messages);
        for m in &messages {
            let at = m.at.clamp(from, bytes.len());
            self.push_owned_with(|o| {
                o.extend_from_slice(&bytes[from..at]);
                o.extend_from_slice(m.frame());
            });
            from = at;
        }
        self.push_owned_with(|o| o.extend_from_slice(&bytes[from..]));
        self.messages = messages;
    }

    /// Forgets the contents, keeping capacity (the collected messages are
    /// the caller's to take; [`Output::assembling`] is the connection's).
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.owned.clear();
        self.messages.clear();
    }

    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Owned bytes held (handshake responses, control frames, fallback echoes).
    pub fn owned_len(&self) -> usize {
        self.owned.len()
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

    /// Many small echoes become few slices: when the input chunks average
    /// under [`COALESCE_BELOW`] bytes, each run of consecutive input chunks
    /// is moved together in `buf` (towards its first chunk) and becomes one
    /// chunk. Why: a 128 KiB read of 64-byte fragments is ~1,900 chunks, more
    /// than one `sendmsg` takes (IOV_MAX, 1024: EINVAL), and the kernel pays
    /// per slice while moving a few small payloads costs next to nothing.
    /// Large chunks are left alone (moving them would cost more than a slice).
    ///
    /// Only bytes below the last input chunk's end are written, so input the
    /// session has not consumed (always after its output) is untouched.
    pub fn coalesce(&mut self, buf: &mut [u8]) {
        let (n_input, input_bytes) = self.chunks.iter().fold((0, 0), |(n, bytes), c| match *c {
            Chunk::Input { start, end } => (n + 1, bytes + end - start),
            Chunk::Owned { .. } => (n, bytes),
        });
        if n_input < 2 || input_bytes >= COALESCE_BELOW * n_input {
            return;
        }
        let mut kept: usize = 0;
        for i in 0..self.chunks.len() {
            let c = self.chunks[i];
            if let (Chunk::Input { start, end }, Some(Chunk::Input { end: run_end, .. })) =
                (c, kept.checked_sub(1).map(|k| &mut self.chunks[k]))
            {
                // The session writes echoes in place, front to back, so a
                // later chunk never starts before the run's end; if one did,
                // it would simply stay a chunk of its own.
                if start >= *run_end {
                    buf.copy_within(start..end, *run_end);
                    *run_end += end - start;
                    continue;
                }
            }
            self.chunks[kept] = c;
            kept += 1;
        }
        self.chunks.truncate(kept);
    }

    /// Adds `buf[start..end]`, merging with the previous chunk when adjacent.
    #[inline]
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
        if end == start {
            return;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sent(out: &Output, buf: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        out.copy_to(buf, &mut v);
        v
    }

    #[test]
    fn small_echoes_become_one_slice_per_run() {
        // 2,000 echoes of 64 bytes, each behind a 4-byte gap (the client's
        // header is longer than ours): more than IOV_MAX chunks.
        let mut buf: Vec<u8> = (0..2000 * 68).map(|i| (i % 251) as u8).collect();
        let mut out = Output::new();
        for k in 0..2000 {
            out.push_input(k * 68 + 4, k * 68 + 68);
        }
        out.push_frame(OpCode::Ping, b"");
        out.push_input(2000 * 68 - 2, 2000 * 68);
        let want = sent(&out, &buf);
        out.coalesce(&mut buf);
        assert_eq!(out.chunks().len(), 3);
        assert_eq!(sent(&out, &buf), want);
    }

    #[test]
    fn collected_messages_go_back_where_they_completed() {
        let buf = b"..pong..".to_vec();
        let mut out = Output::new();
        out.push_input(2, 6); // "pong", before the message completed
        let frame = |b: &[u8]| Collected { buf: b.to_vec(), start: 0, text: false, compressed: None, at: 0 };
        out.messages.push(Collected { at: 4, ..frame(b"M1") });
        out.messages.push(Collected { at: 4, ..frame(b"M2") });
        out.push_owned_with(|o| o.extend_from_slice(b"CLOSE"));
        out.echo_collected_in_place(&buf);
        assert_eq!(sent(&out, &[]), b"pongM1M2CLOSE");
        assert_eq!(out.messages.len(), 2, "still there to publish");
    }

    #[test]
    fn large_echoes_are_not_moved() {
        let mut buf = vec![1u8; 3 * 4096];
        let mut out = Output::new();
        out.push_input(10, 4096);
        out.push_input(4100, 8192);
        let before = out.chunks().to_vec();
        out.coalesce(&mut buf);
        assert_eq!(out.chunks(), &before[..]);
    }

    #[test]
    fn bytes_after_the_last_input_chunk_are_untouched() {
        let mut buf: Vec<u8> = (0..100).collect();
        let mut out = Output::new();
        out.push_input(2, 10);
        out.push_input(14, 20);
        out.coalesce(&mut buf);
        assert_eq!(&buf[20..], &(20..100).collect::<Vec<u8>>()[..]);
    }

    proptest! {
        /// Whatever the chunks, what would be sent is the same after coalescing.
        #[test]
        fn coalescing_keeps_what_is_sent(
            pieces in proptest::collection::vec((0usize..8, 0usize..40, any::<bool>()), 0..60),
        ) {
            let mut buf: Vec<u8> = (0..4096).map(|i| (i * 7 % 256) as u8).collect();
            let mut out = Output::new();
            let mut pos = 0;
            for (gap, len, owned) in pieces {
                if owned {
                    out.push_owned_with(|o| o.extend(std::iter::repeat_n(len as u8, len)));
                } else {
                    out.push_input(pos + gap, pos + gap + len);
                    pos += gap + len;
                }
            }
            let want = sent(&out, &buf);
            let tail = buf[pos..].to_vec();
            out.coalesce(&mut buf);
            prop_assert_eq!(sent(&out, &buf), want);
            prop_assert_eq!(&buf[pos..], &tail[..]);
        }
    }
}
