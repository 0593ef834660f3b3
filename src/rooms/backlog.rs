//! A member's room output: the frames it has still to send, by reference,
//! or, for small frames, copied.
//!
//! Why small frames are copied. A shared frame goes out by reference, one
//! iovec per frame; the kernel then walks the iovecs one by one, and for
//! small frames that walk costs more than the bytes: with 500 members all
//! publishing 64-byte messages (each member taking 500 frames a turn), 18%
//! of the server's time was `_copy_from_iter` and 81% was in the kernel,
//! where a server that copies each frame into one buffer per receiver
//! (tokio-tungstenite) spent 28% there (perf, AMD EPYC, 2026-12-07). A copy
//! of a small frame costs less than its iovec, its reference count and its
//! queue entry, so frames up to [`COPY_MAX`] are appended to the member's
//! current buffer (as uWebSockets' publish does into each socket's cork
//! buffer) and go out as one slice; larger frames are shared. The frame is
//! still encoded once.

use crate::rooms::Message;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;

/// One thing to send.
#[derive(Debug)]
pub enum Item {
    /// A room message's shared frame, sent as it is: the plain one, or
    /// (true) the compressed one.
    Frame(Arc<Message>, bool),
    /// Bytes of this connection's own: its own output queued behind room
    /// frames (a pong, a close), or a room frame encrypted for it (TLS).
    Bytes(Vec<u8>),
    /// Small room frames copied one after another (see the module's
    /// comment): whole frames only, at most [`CHUNK`] bytes, and like
    /// shared frames dropped when not begun.
    Copied(Vec<u8>),
}

/// The largest frame copied into a member's buffer rather than shared.
pub const COPY_MAX: usize = 1024;

/// The most bytes of copied frames one item holds, so that dropping the
/// frames not begun stays fine-grained and a buffer stays small.
pub const CHUNK: usize = 64 * 1024;

impl Item {
    /// The bytes of this item.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Item::Frame(m, false) => m.bytes(),
            Item::Frame(m, true) => m.compressed_bytes().unwrap_or_else(|| m.bytes()),
            Item::Bytes(b) | Item::Copied(b) => b,
        }
    }
}

/// Whether a room message was queued for a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// Queued.
    Queued,
    /// It would take the backlog past `--room-backlog`: not queued.
    Full,
}

/// A member's room output, in order.
///
/// Invariant: `bytes` is the length of every item from `offset` in the
/// first one on, including items a driver has taken for a send still in
/// flight (given back with [`Backlog::give_back`]); it is what
/// `--room-backlog` bounds. Items are whole frames (or whole TLS records),
/// so dropping the ones not begun never cuts a frame.
#[derive(Debug, Default)]
pub struct Backlog {
    items: VecDeque<Item>,
    /// Bytes of the first item already sent.
    offset: usize,
    bytes: usize,
    /// A driver holds the first items for a send in flight.
    lent: bool,
}

impl Backlog {
    /// Bytes waiting (in flight included).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// True with nothing to send and nothing in flight.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0 && !self.lent
    }

    /// True while a driver holds items for a send in flight.
    pub fn is_lent(&self) -> bool {
        self.lent
    }

    /// Queues `m` unless that would take the backlog past `limit`. An empty
    /// backlog takes a message of any size (the size limit is
    /// `--max-message-size`'s business), so a member that keeps up never
    /// misses a message for being larger than its backlog.
    pub fn offer(&mut self, m: &Arc<Message>, compressed: bool, limit: usize) -> Offer {
        let frame = if compressed { m.compressed_bytes().unwrap_or_else(|| m.bytes()) } else { m.bytes() };
        let len = frame.len();
        if self.bytes > 0 && self.bytes + len > limit {
            return Offer::Full;
        }
        self.bytes += len;
        if len <= COPY_MAX {
            // Behind the last copied frames if they have room (the last
            // item is never lent: lending takes items from the front).
            if let Some(Item::Copied(buf)) = self.items.back_mut() {
                if buf.len() + len <= CHUNK {
                    buf.extend_from_slice(frame);
                    return Offer::Queued;
                }
            }
            let mut buf = Vec::with_capacity((len * 8).clamp(512, CHUNK));
            buf.extend_from_slice(frame);
            self.items.push_back(Item::Copied(buf));
        } else {
            self.items.push_back(Item::Frame(m.clone(), compressed));
        }
        Offer::Queued
    }

    /// Queues bytes of the connection's own (counted like frames).
    pub fn push_bytes(&mut self, b: Vec<u8>) {
        if b.is_empty() {
            return;
        }
        self.bytes += b.len();
        self.items.push_back(Item::Bytes(b));
    }

    /// Fills `out` with slices of what is to send, in order (epoll:
    /// `sendmsg` straight from the shared frames); returns how many.
    pub fn slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (i, item) in self.items.iter().take(out.len()).enumerate() {
            let b = item.bytes();
            out[i] = IoSlice::new(if i == 0 { &b[self.offset..] } else { b });
            n += 1;
        }
        n
    }

    /// Records that `n` bytes from the front were sent; returns how many
    /// frames were completed.
    pub fn advance(&mut self, mut n: usize) -> usize {
        debug_assert!(n <= self.bytes);
        self.bytes -= n.min(self.bytes);
        let mut done = 0;
        while let Some(front) = self.items.front() {
            let left = front.bytes().len() - self.offset;
            if n < left {
                self.offset += n;
                break;
            }
            n -= left;
            self.offset = 0;
            self.items.pop_front();
            done += 1;
        }
        if self.items.is_empty() && self.items.capacity() > 64 {
            self.items = VecDeque::new();
        }
        done
    }

    /// Takes up to `max` items from the front for a send in flight (io_uring:
    /// the kernel reads them until the completion, so they must stay put and
    /// alive: the job owns them meanwhile). Returns them and the offset into
    /// the first. Nothing is taken while items are already lent.
    pub fn lend(&mut self, max: usize) -> Option<(Vec<Item>, usize)> {
        if self.lent || self.items.is_empty() {
            return None;
        }
        let n = self.items.len().min(max);
        let items: Vec<Item> = self.items.drain(..n).collect();
        let offset = std::mem::take(&mut self.offset);
        self.lent = true;
        Some((items, offset))
    }

    /// Gives back items lent with `offset` after `sent` of their bytes went
    /// out: what is left goes back in front, in order.
    pub fn give_back(&mut self, items: Vec<Item>, mut offset: usize, mut sent: usize) {
        debug_assert!(self.lent);
        self.lent = false;
        self.bytes -= sent.min(self.bytes);
        let mut rest = Vec::new();
        for item in items {
            if rest.is_empty() {
                let left = item.bytes().len() - offset;
                if sent >= left {
                    sent -= left;
                    offset = 0;
                    continue;
                }
                // The first item not sent whole: the rest of it is next.
                self.offset = offset + sent;
                sent = 0;
            }
            rest.push(item);
        }
        for item in rest.into_iter().rev() {
            self.items.push_front(item);
        }
    }

    /// Drops every room frame not begun (a slow member being closed: its
    /// close goes out next); bytes of its own (TLS records, whose sequence
    /// must not break, and control frames) and a frame partly sent stay.
    /// Returns the bytes freed.
    pub fn drop_unsent_frames(&mut self) -> usize {
        // While items are lent, the ones here were never begun.
        let partly_sent_front = !self.lent && self.offset > 0;
        let mut freed = 0;
        if partly_sent_front {
            // Copied frames partly sent: the frame under way stays, the
            // ones behind it in the same buffer go.
            if let Some(Item::Copied(buf)) = self.items.front_mut() {
                let end = frame_boundary(buf, self.offset);
                freed += buf.len() - end;
                buf.truncate(end);
                if end == self.offset {
                    self.items.pop_front();
                    self.offset = 0;
                }
            }
        }
        let partly_sent_front = !self.lent && self.offset > 0;
        let mut i = 0;
        self.items.retain(|item| {
            let keep = (i == 0 && partly_sent_front) || matches!(item, Item::Bytes(_));
            i += 1;
            if !keep {
                freed += item.bytes().len();
            }
            keep
        });
        self.bytes -= freed;
        freed
    }
}

/// The first frame boundary at or after `at` in `buf`, a run of whole
/// server frames (RFC 6455 §5.2: unmasked, a 7-bit length or 126 and 16
/// bits or 127 and 64 bits); `buf.len()` if a header does not parse, which
/// keeps everything rather than cut a frame.
fn frame_boundary(buf: &[u8], at: usize) -> usize {
    let mut pos = 0;
    while pos < at {
        let Some(&b1) = buf.get(pos + 1) else { return buf.len() };
        let (header, len) = match b1 & 0x7f {
            126 => match buf.get(pos + 2..pos + 4) {
                Some(b) => (4, u16::from_be_bytes([b[0], b[1]]) as usize),
                None => return buf.len(),
            },
            127 => match buf.get(pos + 2..pos + 10) {
                Some(b) => (10, u64::from_be_bytes(b.try_into().expect("8 bytes")) as usize),
                None => return buf.len(),
            },
            n => (2, n as usize),
        };
        pos = pos.saturating_add(header).saturating_add(len);
    }
    pos.min(buf.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooms::Sender;
    use crate::ws::output::Collected;

    fn msg(bytes: &[u8]) -> Arc<Message> {
        let frame = Collected { buf: bytes.to_vec(), start: 0, text: false, compressed: None, at: 0 };
        Arc::new(Message { frame, from: Sender { shard: 0, slot: 0, generation: 0 } })
    }

    fn all(b: &Backlog) -> Vec<u8> {
        let mut v = [IoSlice::new(&[]); 16];
        let n = b.slices(&mut v);
        v[..n].iter().flat_map(|s| s.to_vec()).collect()
    }

    #[test]
    fn the_backlog_bounds_what_waits_but_takes_one_message_of_any_size() {
        let mut b = Backlog::default();
        assert_eq!(b.offer(&msg(&[1; 100]), false, 10), Offer::Queued, "empty: any size");
        assert_eq!(b.offer(&msg(&[2; 1]), false, 10), Offer::Full);
        b.advance(100);
        assert!(b.is_empty());
        assert_eq!(b.offer(&msg(&[3; 6]), false, 10), Offer::Queued);
        assert_eq!(b.offer(&msg(&[4; 4]), false, 10), Offer::Queued);
        assert_eq!(b.offer(&msg(&[5; 1]), false, 10), Offer::Full);
        assert_eq!(b.bytes(), 10);
    }

    #[test]
    fn partial_sends_resume_where_they_stopped() {
        let mut b = Backlog::default();
        b.offer(&msg(b"abc"), false, 100);
        b.push_bytes(b"de".to_vec());
        b.offer(&msg(b"fgh"), false, 100);
        assert_eq!(b.advance(4), 1);
        assert_eq!(all(&b), b"efgh");
        assert_eq!(b.bytes(), 4);
    }

    #[test]
    fn lent_items_come_back_in_front_of_later_ones() {
        let mut b = Backlog::default();
        b.offer(&msg(b"abc"), false, 100);
        b.offer(&msg(b"def"), false, 100);
        b.advance(1);
        let (items, off) = b.lend(8).unwrap();
        assert_eq!(off, 1);
        assert!(b.lend(8).is_none(), "one send in flight at a time");
        b.offer(&msg(b"ghi"), false, 100);
        assert_eq!(b.bytes(), 8);
        b.give_back(items, off, 3); // "bcd" went out
        assert_eq!(all(&b), b"efghi");
        assert_eq!(b.bytes(), 5);
        let (items, off) = b.lend(8).unwrap();
        b.give_back(items, off, 5);
        assert!(b.is_empty());
    }

    #[test]
    fn a_short_send_gives_back_every_item_it_did_not_finish() {
        let mut b = Backlog::default();
        for m in [b"abc", b"def", b"ghi"] {
            b.offer(&msg(m), false, 100);
        }
        let (items, off) = b.lend(8).unwrap();
        b.give_back(items, off, 1);
        assert_eq!(all(&b), b"bcdefghi");
        let (items, off) = b.lend(8).unwrap();
        b.give_back(items, off, 0);
        assert_eq!(all(&b), b"bcdefghi", "nothing sent: all back as it was");
        assert_eq!(b.bytes(), 8);
    }

    /// A binary server frame carrying `payload`.
    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x82];
        match payload.len() {
            n @ 0..=125 => f.push(n as u8),
            n => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn a_slow_close_drops_frames_not_begun_and_keeps_the_rest() {
        let (abc, def, ghi) = (frame(b"abc"), frame(b"def"), frame(b"ghi"));
        let big = frame(&[7; COPY_MAX]); // shared, not copied
        let mut b = Backlog::default();
        b.offer(&msg(&abc), false, 10_000);
        b.offer(&msg(&def), false, 10_000);
        b.push_bytes(b"P".to_vec());
        b.offer(&msg(&ghi), false, 10_000);
        b.offer(&msg(&big), false, 10_000);
        b.advance(1);
        // abc is under way and stays; def (copied behind it), ghi and the
        // shared frame go; the connection's own byte stays.
        assert_eq!(b.drop_unsent_frames(), def.len() + ghi.len() + big.len());
        assert_eq!(all(&b), [&abc[1..], b"P"].concat());
        assert_eq!(b.bytes(), abc.len() - 1 + 1);
    }

    #[test]
    fn a_slow_close_on_a_frame_boundary_drops_every_copied_frame_behind_it() {
        let (abc, def) = (frame(b"abc"), frame(b"def"));
        let mut b = Backlog::default();
        b.offer(&msg(&abc), false, 10_000);
        b.offer(&msg(&def), false, 10_000);
        b.advance(abc.len());
        assert_eq!(b.drop_unsent_frames(), def.len());
        assert!(b.is_empty());
        assert_eq!(all(&b), b"");
    }

    #[test]
    fn small_frames_share_one_buffer_and_large_ones_are_shared() {
        let mut b = Backlog::default();
        for _ in 0..100 {
            b.offer(&msg(&frame(&[1; 100])), false, usize::MAX);
        }
        b.offer(&msg(&frame(&[2; COPY_MAX])), false, usize::MAX);
        let mut v = [IoSlice::new(&[]); 16];
        assert_eq!(b.slices(&mut v), 2, "one buffer of 100 copied frames, then the shared one");
        assert_eq!(frame_boundary(&frame(&[0; 300]), 1), 304);
    }

    proptest::proptest! {
        /// Whatever the sends take (whole items, parts, nothing; through
        /// `slices`/`advance` or `lend`/`give_back`), the bytes that go out are
        /// the frames offered, in order, each once, and `bytes` counts the rest.
        #[test]
        fn what_goes_out_is_what_was_offered_in_order(
            ops in proptest::collection::vec((0u8..4, 1usize..40, 0usize..100), 1..200),
        ) {
            let mut b = Backlog::default();
            let mut offered: Vec<u8> = Vec::new();
            let mut sent: Vec<u8> = Vec::new();
            let mut next = 0u8;
            for (op, len, pick) in ops {
                match op {
                    0 => {
                        let frame: Vec<u8> = (0..len).map(|i| next.wrapping_add(i as u8)).collect();
                        next = next.wrapping_add(len as u8);
                        if b.offer(&msg(&frame), false, usize::MAX) == Offer::Queued {
                            offered.extend_from_slice(&frame);
                        }
                    }
                    1 if !b.is_lent() => {
                        let mut v = [IoSlice::new(&[]); 4];
                        let n = b.slices(&mut v);
                        let all: Vec<u8> = v[..n].iter().flat_map(|s| s.to_vec()).collect();
                        let take = if all.is_empty() { 0 } else { pick % (all.len() + 1) };
                        sent.extend_from_slice(&all[..take]);
                        b.advance(take);
                    }
                    2 => {
                        if let Some((items, off)) = b.lend(1 + pick % 5) {
                            let mut all = Vec::new();
                            for (i, it) in items.iter().enumerate() {
                                all.extend_from_slice(if i == 0 { &it.bytes()[off..] } else { it.bytes() });
                            }
                            let take = pick % (all.len() + 1);
                            sent.extend_from_slice(&all[..take]);
                            b.give_back(items, off, take);
                        }
                    }
                    _ => {}
                }
                proptest::prop_assert!(offered.starts_with(&sent));
                proptest::prop_assert_eq!(b.bytes(), offered.len() - sent.len());
            }
        }
    }
}
