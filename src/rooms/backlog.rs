//! A member's room output: the frames it has still to send, by reference.

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
}

impl Item {
    /// The bytes of this item.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Item::Frame(m, false) => m.bytes(),
            Item::Frame(m, true) => m.compressed_bytes().unwrap_or_else(|| m.bytes()),
            Item::Bytes(b) => b,
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
        let item = Item::Frame(m.clone(), compressed);
        let len = item.bytes().len();
        if self.bytes > 0 && self.bytes + len > limit {
            return Offer::Full;
        }
        self.bytes += len;
        self.items.push_back(item);
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

    #[test]
    fn a_slow_close_drops_frames_not_begun_and_keeps_the_rest() {
        let mut b = Backlog::default();
        b.offer(&msg(b"abc"), false, 100);
        b.offer(&msg(b"def"), false, 100);
        b.push_bytes(b"P".to_vec());
        b.offer(&msg(b"ghi"), false, 100);
        b.advance(1);
        assert_eq!(b.drop_unsent_frames(), 6);
        assert_eq!(all(&b), b"bcP");
        assert_eq!(b.bytes(), 3);
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
