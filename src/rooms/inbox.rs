//! A shard's inbox: room messages other shards send it.
//!
//! Bounded by bytes ([`INBOX_BYTES`]): a shard that finds a target's inbox
//! full stops reading the publishing connection (TCP flow control then holds
//! the client back, as everywhere in Ricochet) and is woken when the owner
//! has emptied it. One short lock per batch: a sending shard appends all it
//! has for a target after one read in one go, and the owner takes all that
//! waits in one go (a swap), then delivers without the lock.

use crate::rooms::Message;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Frame bytes an inbox may hold before senders wait: 1 MiB (a frame shared
/// by all of a shard's receivers is counted once). A sender that finds
/// room appends all of one read's messages, so an inbox can go past this
/// by one read's worth (at most a read buffer and one `--max-message-size`).
pub const INBOX_BYTES: usize = 1 << 20;

/// A message for the members of one room on the inbox's shard.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The room, by [`crate::rooms::Room::id`].
    pub room: u64,
    /// The message.
    pub message: Arc<Message>,
}

/// One shard's inbox.
pub struct Inbox {
    queue: Mutex<Vec<Delivery>>,
    /// Frame bytes in `queue`.
    bytes: AtomicUsize,
    /// Deliveries in `queue` (a gauge for metrics).
    depth: AtomicUsize,
    /// Wakes the owning shard's event loop (set once it runs).
    wake: OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// Shards waiting for this inbox to have room.
    waiters: Mutex<Vec<usize>>,
    has_waiters: AtomicBool,
}

impl Default for Inbox {
    fn default() -> Self {
        Inbox::new()
    }
}

impl Inbox {
    /// An empty inbox.
    pub fn new() -> Inbox {
        Inbox {
            queue: Mutex::new(Vec::new()),
            bytes: AtomicUsize::new(0),
            depth: AtomicUsize::new(0),
            wake: OnceLock::new(),
            waiters: Mutex::new(Vec::new()),
            has_waiters: AtomicBool::new(false),
        }
    }

    /// Sets how the owning shard is woken (once, when its loop starts).
    pub fn set_wake(&self, wake: Box<dyn Fn() + Send + Sync>) {
        let _ = self.wake.set(wake);
    }

    /// Wakes the owning shard.
    pub fn wake(&self) {
        if let Some(w) = self.wake.get() {
            w();
        }
    }

    /// True when senders must wait.
    pub fn is_full(&self) -> bool {
        self.bytes.load(Ordering::Acquire) >= INBOX_BYTES
    }

    /// Deliveries waiting now.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Frame bytes waiting now.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Appends `batch` (emptying it) under one lock; wakes the owner when
    /// the inbox was empty (a non-empty one has a wake on its way: the owner
    /// empties the inbox whole, so the first push after that wakes it).
    pub fn push(&self, batch: &mut Vec<Delivery>) {
        if batch.is_empty() {
            return;
        }
        let bytes: usize = batch.iter().map(|d| d.message.bytes().len()).sum();
        let n = batch.len();
        let was_empty = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            let was_empty = q.is_empty();
            q.append(batch);
            // Counted under the lock, as `take` uncounts under it: neither
            // count ever goes below what the queue holds.
            self.bytes.fetch_add(bytes, Ordering::AcqRel);
            self.depth.fetch_add(n, Ordering::Relaxed);
            was_empty
        };
        if was_empty {
            self.wake();
        }
    }

    /// Takes everything waiting into `into` (which must be empty) under one
    /// lock. Returns the shards that waited for room, to be woken.
    pub fn take(&self, into: &mut Vec<Delivery>) -> Vec<usize> {
        debug_assert!(into.is_empty());
        {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::swap(&mut *q, into);
            let bytes: usize = into.iter().map(|d| d.message.bytes().len()).sum();
            self.bytes.fetch_sub(bytes, Ordering::AcqRel);
            self.depth.fetch_sub(into.len(), Ordering::Relaxed);
        }
        if self.has_waiters.swap(false, Ordering::AcqRel) {
            std::mem::take(&mut *self.waiters.lock().unwrap_or_else(|e| e.into_inner()))
        } else {
            Vec::new()
        }
    }

    /// Registers `shard` to be woken once this inbox has room. Returns
    /// false if it has room already (it was emptied meanwhile): the caller
    /// goes on rather than waiting for a wake that may never come.
    pub fn wait_for_room(&self, shard: usize) -> bool {
        {
            let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            if !w.contains(&shard) {
                w.push(shard);
            }
        }
        self.has_waiters.store(true, Ordering::Release);
        // Checked again after registering: a take between the caller's check
        // and the registration would otherwise leave it waiting for nothing.
        self.is_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooms::Sender;
    use crate::ws::output::Collected;
    use std::sync::atomic::AtomicU32;

    fn delivery(len: usize) -> Delivery {
        let frame = Collected { buf: vec![0; 10 + len], start: 0, text: false, compressed: None, at: 0 };
        Delivery { room: 1, message: Arc::new(Message { frame, from: Sender { shard: 0, slot: 0, generation: 0 } }) }
    }

    #[test]
    fn a_batch_wakes_an_empty_inbox_once() {
        let inbox = Inbox::new();
        let wakes = Arc::new(AtomicU32::new(0));
        let w = wakes.clone();
        inbox.set_wake(Box::new(move || {
            w.fetch_add(1, Ordering::Relaxed);
        }));
        inbox.push(&mut vec![delivery(10), delivery(10)]);
        inbox.push(&mut vec![delivery(10)]);
        assert_eq!(wakes.load(Ordering::Relaxed), 1, "the second batch found a wake on its way");
        assert_eq!(inbox.depth(), 3);
        let mut got = Vec::new();
        inbox.take(&mut got);
        assert_eq!((got.len(), inbox.depth(), inbox.bytes()), (3, 0, 0));
        inbox.push(&mut vec![delivery(1)]);
        assert_eq!(wakes.load(Ordering::Relaxed), 2, "emptied, so the next batch wakes again");
    }

    #[test]
    fn a_full_inbox_makes_senders_wait_and_wakes_them_when_emptied() {
        let inbox = Inbox::new();
        inbox.push(&mut vec![delivery(INBOX_BYTES)]);
        assert!(inbox.is_full());
        assert!(inbox.wait_for_room(3), "still full: wait");
        assert!(inbox.wait_for_room(3));
        let mut got = Vec::new();
        assert_eq!(inbox.take(&mut got), vec![3], "shard 3 is woken once");
        assert!(!inbox.is_full());
        assert!(!inbox.wait_for_room(4), "room already: do not wait");
    }

    #[test]
    fn batches_from_many_threads_arrive_whole_and_in_each_senders_order() {
        let inbox = Arc::new(Inbox::new());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let inbox = inbox.clone();
                std::thread::spawn(move || {
                    for i in 0..1000u32 {
                        let frame =
                            Collected { buf: i.to_be_bytes().to_vec(), start: 0, text: false, compressed: None, at: 0 };
                        let m = Message { frame, from: Sender { shard: t, slot: 0, generation: 0 } };
                        inbox.push(&mut vec![Delivery { room: 1, message: Arc::new(m) }]);
                    }
                })
            })
            .collect();
        let mut next = [0u32; 4];
        let mut seen = 0;
        let mut got = Vec::new();
        while seen < 4000 {
            inbox.take(&mut got);
            for d in got.drain(..) {
                let n = u32::from_be_bytes(d.message.frame.buf[..4].try_into().unwrap());
                assert_eq!(n, next[d.message.from.shard], "per-sender order");
                next[d.message.from.shard] += 1;
                seen += 1;
            }
            std::thread::yield_now();
        }
        for t in threads {
            t.join().unwrap();
        }
    }
}
