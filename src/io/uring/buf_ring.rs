//! A provided-buffer ring (IORING_REGISTER_PBUF_RING, Linux 5.19): buffers
//! the kernel picks from for each multishot receive, so an idle connection
//! holds no buffer at all.
//!
//! Invariants (this is shared memory with the kernel):
//! - the ring of entries is page-aligned and outlives its registration: the
//!   owner must drop the `IoUring` (which unregisters it) before this;
//! - only the tail is written by us, published with a release store after
//!   the entry it exposes is filled in; the kernel owns the head;
//! - a buffer id handed out in a completion belongs to us until `recycle`.

use io_uring::types::BufRingEntry;
use io_uring::Submitter;
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

/// A registered ring of `entries` buffers of `buf_size` bytes each, each
/// preceded by `reserve` bytes of our own (the kernel writes after them) so
/// data can be worked on in place with room in front of it.
pub struct BufRing {
    ring: *mut BufRingEntry,
    ring_layout: Layout,
    bufs: *mut u8,
    bufs_layout: Layout,
    entries: u16,
    buf_size: usize,
    reserve: usize,
    /// Distance between buffers: reserve plus size, rounded up so every
    /// buffer starts `ECHO_ALIGN`-aligned (the shard's reserve padding
    /// counts on it).
    stride: usize,
    /// Our copy of the tail (the kernel reads the shared one).
    tail: u16,
    /// The buffer group id receives name.
    pub bgid: u16,
}

impl BufRing {
    /// Allocates and registers a ring; `entries` must be a power of two (at most 32768).
    pub fn new(
        submitter: &Submitter<'_>,
        entries: u16,
        buf_size: usize,
        reserve: usize,
        bgid: u16,
    ) -> io::Result<BufRing> {
        if !entries.is_power_of_two() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "buffer ring entries must be a power of two"));
        }
        let page = 4096;
        let ring_layout = Layout::from_size_align(entries as usize * std::mem::size_of::<BufRingEntry>(), page)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let stride = (reserve + buf_size).next_multiple_of(crate::io::ECHO_ALIGN);
        let bufs_layout = Layout::from_size_align(entries as usize * stride, page)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: both layouts have nonzero size (entries >= 1, buf_size checked by caller's use).
        let ring = unsafe { alloc_zeroed(ring_layout) } as *mut BufRingEntry;
        let bufs = unsafe { alloc_zeroed(bufs_layout) };
        if ring.is_null() || bufs.is_null() {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        // Fault every page in now: the ring is a fixed cost of the shard, so
        // it shows in RSS from the start, and no page fault lands on the hot
        // path later. Volatile, because a plain write of zeros to zeroed
        // memory may be optimised away.
        for off in (0..bufs_layout.size()).step_by(page) {
            // SAFETY: off is within the allocation just made.
            unsafe { std::ptr::write_volatile(bufs.add(off), 0) };
        }
        let mut me =
            BufRing { ring, ring_layout, bufs, bufs_layout, entries, buf_size, reserve, stride, tail: 0, bgid };
        // SAFETY: the ring is page-aligned, sized for `entries`, and lives
        // until after the IoUring is dropped (struct invariant above).
        unsafe { submitter.register_buf_ring_with_flags(ring as u64, entries, bgid, 0)? };
        for bid in 0..entries {
            me.push(bid);
        }
        me.publish();
        Ok(me)
    }

    /// Size of each buffer.
    pub fn buf_size(&self) -> usize {
        self.buf_size
    }

    /// Buffer `bid` with its reserve: `reserve` bytes of ours, then the
    /// first `len` bytes a completion filled.
    ///
    /// # Safety
    /// `bid` must have been handed out by a completion and not recycled yet.
    pub unsafe fn slot_mut(&mut self, bid: u16, len: usize) -> &mut [u8] {
        debug_assert!(bid < self.entries && len <= self.buf_size);
        std::slice::from_raw_parts_mut(self.bufs.add(bid as usize * self.stride), self.reserve + len)
    }

    /// Hands buffer `bid` back to the kernel.
    pub fn recycle(&mut self, bid: u16) {
        self.push(bid);
        self.publish();
    }

    fn push(&mut self, bid: u16) {
        let idx = (self.tail & (self.entries - 1)) as usize;
        // SAFETY: idx < entries; the kernel does not read entries past the
        // published tail, so writing this one races with nothing.
        let e = unsafe { &mut *self.ring.add(idx) };
        e.set_addr(self.bufs as u64 + (bid as usize * self.stride + self.reserve) as u64);
        e.set_len(self.buf_size as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field lives in the first entry of the ring; the
        // release store orders the entry writes above before it.
        unsafe {
            let tail = BufRingEntry::tail(self.ring) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with these layouts; the IoUring that
        // had it registered is gone (struct invariant).
        unsafe {
            dealloc(self.ring as *mut u8, self.ring_layout);
            dealloc(self.bufs, self.bufs_layout);
        }
    }
}
