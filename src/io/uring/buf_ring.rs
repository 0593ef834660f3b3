//! A provided-buffer ring (IORING_REGISTER_PBUF_RING, Linux 5.19): buffers
//! the kernel picks from for each multishot receive, so an idle connection
//! holds no buffer at all.
//!
//! The ring has room for the most buffers it may ever hold, but starts with
//! a few and grows when receives find none free (ENOBUFS): memory follows
//! the load instead of being held from the start. Each growth doubles the
//! buffers with one new block of memory. Blocks stay allocated while the
//! ring lives, but [`BufRing::trim`] gives the pages of buffers unused for a
//! while back to the kernel (`MADV_DONTNEED`), so after a burst an idle
//! shard's memory falls back; a buffer used again faults in afresh.
//!
//! Warm buffers first. The kernel takes buffers from the ring's head, so a
//! ring that only appends recycled buffers at the tail hands out the one
//! idle longest: at 128 of 128 KiB, each receive lands in memory last
//! touched 16 MiB of traffic ago, out of the L2 cache, and the kernel's
//! copy into it cost about twice its copy into epoll's one warm read buffer
//! (64 KiB echoes, AMD EPYC). So the buffers recycled during a turn are
//! put at the head instead, before the next entry into the kernel, and the
//! entries they displace move to the tail: the kernel reuses the buffers
//! the shard touched last, and the rest of the ring stays cold (and gets
//! trimmed). That rewrites entries the kernel already owns, which is safe
//! only where the kernel cannot be reading them: see `top_up`.
//!
//! Invariants (this is shared memory with the kernel):
//! - the ring of entries is page-aligned and outlives its registration: the
//!   owner must drop the `IoUring` (which unregisters it) before this;
//! - the tail is written by us, published with a release store after the
//!   entry it exposes is filled in; the kernel owns the head, and the
//!   entries between head and tail are rewritten only under `top_up`'s
//!   contract (where the kernel cannot be picking a buffer);
//! - a buffer id handed out in a completion belongs to us until `recycle`;
//! - at most `entries` buffers exist, so the published entries (buffers not
//!   handed out) never outnumber the ring's slots;
//! - `trim` discards the contents of published buffers, so it may only run
//!   where the kernel cannot be filling one: see its safety contract.

use io_uring::types::BufRingEntry;
use io_uring::Submitter;
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

/// Where a buffer is, as far as trimming goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BufState {
    /// Handed out by a completion and not recycled yet: never trimmed.
    Out,
    /// In the ring, used since the last trim.
    Used,
    /// In the ring, unused since the last trim: the next one gives its pages back.
    Idle,
    /// In the ring, its pages given back and unused since.
    Trimmed,
}

/// A registered ring of up to `entries` buffers of `buf_size` bytes each,
/// each preceded by `reserve` bytes of our own (the kernel writes after
/// them) so data can be worked on in place with room in front of it.
pub struct BufRing {
    ring: *mut BufRingEntry,
    ring_layout: Layout,
    /// The blocks of buffers allocated so far, with their layouts.
    blocks: Vec<(*mut u8, Layout)>,
    /// Where buffer `bid`'s reserve starts, for every buffer allocated so far.
    base: Vec<*mut u8>,
    entries: u16,
    buf_size: usize,
    reserve: usize,
    /// Distance between buffers in a block: reserve plus size, rounded up so
    /// every buffer starts `ECHO_ALIGN`-aligned (the shard's reserve padding
    /// counts on it).
    stride: usize,
    /// Our copy of the tail (the kernel reads the shared one).
    tail: u16,
    /// Where the kernel's head is, as far as reaped completions say: one
    /// step per buffer handed out.
    head: u16,
    /// Buffers recycled since the last top-up, the most recent last: the
    /// next top-up gives them back to the kernel.
    recycled: Vec<u16>,
    /// Where each buffer is, for trimming.
    state: Vec<BufState>,
    /// How many buffers are [`BufState::Trimmed`].
    trimmed: usize,
    /// The buffer group id receives name.
    pub bgid: u16,
}

impl BufRing {
    /// Registers a ring with room for `entries` buffers (a power of two, at
    /// most 32768) and provides the first `initial` of them.
    pub fn new(
        submitter: &Submitter<'_>,
        entries: u16,
        initial: u16,
        buf_size: usize,
        reserve: usize,
        bgid: u16,
    ) -> io::Result<BufRing> {
        if !entries.is_power_of_two() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "buffer ring entries must be a power of two"));
        }
        let ring_layout = Layout::from_size_align(entries as usize * std::mem::size_of::<BufRingEntry>(), PAGE)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let stride = (reserve + buf_size).next_multiple_of(crate::io::ECHO_ALIGN);
        // SAFETY: the layout has nonzero size (entries >= 1).
        let ring = unsafe { alloc_zeroed(ring_layout) } as *mut BufRingEntry;
        if ring.is_null() {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        let mut me = BufRing {
            ring,
            ring_layout,
            blocks: Vec::new(),
            base: Vec::with_capacity(entries as usize),
            entries,
            buf_size,
            reserve,
            stride,
            tail: 0,
            head: 0,
            recycled: Vec::with_capacity(entries as usize),
            state: Vec::with_capacity(entries as usize),
            trimmed: 0,
            bgid,
        };
        // SAFETY: the ring is page-aligned, sized for `entries`, and lives
        // until after the IoUring is dropped (struct invariant above).
        unsafe { submitter.register_buf_ring_with_flags(ring as u64, entries, bgid, 0)? };
        me.add(initial.clamp(1, entries))?;
        Ok(me)
    }

    /// Size of each buffer.
    pub fn buf_size(&self) -> usize {
        self.buf_size
    }

    /// Buffers provided so far.
    pub fn len(&self) -> u16 {
        self.base.len() as u16
    }

    /// True before any buffer exists (never, once `new` returned).
    pub fn is_empty(&self) -> bool {
        self.base.is_empty()
    }

    /// Doubles the buffers (up to `entries`) after receives found none free;
    /// returns false when the ring is already at its size.
    pub fn grow(&mut self) -> io::Result<bool> {
        let have = self.len();
        if have >= self.entries {
            return Ok(false);
        }
        self.add(have.min(self.entries - have))?;
        Ok(true)
    }

    /// Allocates `n` more buffers in one block, faults its pages in (so no
    /// page fault lands on the hot path later) and provides them.
    fn add(&mut self, n: u16) -> io::Result<()> {
        let layout = Layout::from_size_align(n as usize * self.stride, PAGE)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: the layout has nonzero size (n >= 1, stride >= 64).
        let block = unsafe { alloc_zeroed(layout) };
        if block.is_null() {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        // Volatile, because a plain write of zeros to zeroed memory may be optimised away.
        for off in (0..layout.size()).step_by(PAGE) {
            // SAFETY: off is within the allocation just made.
            unsafe { std::ptr::write_volatile(block.add(off), 0) };
        }
        self.blocks.push((block, layout));
        for i in 0..n as usize {
            let bid = self.base.len() as u16;
            // SAFETY: i * stride is within the block.
            self.base.push(unsafe { block.add(i * self.stride) });
            self.state.push(BufState::Used); // just faulted in: not idle yet
            self.push(bid);
        }
        self.publish();
        Ok(())
    }

    /// Buffer `bid` with its reserve: `reserve` bytes of ours, then the
    /// first `len` bytes a completion filled.
    ///
    /// # Safety
    /// `bid` must have been handed out by a completion and not recycled yet.
    pub unsafe fn slot_mut(&mut self, bid: u16, len: usize) -> &mut [u8] {
        debug_assert!((bid as usize) < self.base.len() && len <= self.buf_size);
        std::slice::from_raw_parts_mut(self.base[bid as usize], self.reserve + len)
    }

    /// Notes that a completion handed buffer `bid` to us.
    pub fn taken(&mut self, bid: u16) {
        self.head = self.head.wrapping_add(1);
        let s = &mut self.state[bid as usize];
        if *s == BufState::Trimmed {
            self.trimmed -= 1;
        }
        *s = BufState::Out;
    }

    /// Takes buffer `bid` back: the next [`top_up`](Self::top_up) gives it
    /// to the kernel again.
    pub fn recycle(&mut self, bid: u16) {
        self.state[bid as usize] = BufState::Used;
        self.recycled.push(bid);
    }

    /// Gives the kernel the buffers recycled since the last call; call it
    /// before every entry into the kernel. With `warm_first`, they go to the
    /// head of the ring, the last recycled first, so the next receives land
    /// in memory still in cache, and the entries they displace go to the
    /// tail; without, they are appended at the tail.
    ///
    /// # Safety
    /// With `warm_first`, the kernel must not be picking a buffer while this
    /// runs, and every buffer it handed out must have been seen by
    /// [`taken`](Self::taken) (so `head` is the kernel's): a ring with
    /// DEFER_TASKRUN picks buffers only inside this thread's
    /// `io_uring_enter`, so call it between two of those, with the
    /// completion queue (and its overflow) reaped and empty. Without
    /// `warm_first` it is always safe.
    pub unsafe fn top_up(&mut self, warm_first: bool) {
        if self.recycled.is_empty() {
            return;
        }
        let in_ring = self.tail.wrapping_sub(self.head);
        let mut recycled = std::mem::take(&mut self.recycled);
        for (i, bid) in recycled.drain(..).rev().enumerate() {
            if warm_first && i < usize::from(in_ring) {
                let idx = (self.head.wrapping_add(i as u16) & (self.entries - 1)) as usize;
                // SAFETY: idx < entries, and the kernel is not reading the
                // ring (this function's contract).
                let e = unsafe { &mut *self.ring.add(idx) };
                let displaced = e.bid();
                self.fill(e, bid);
                self.push(displaced);
            } else {
                self.push(bid);
            }
        }
        self.recycled = recycled;
        self.publish();
    }

    /// Whether some buffer holds pages that a later [`trim`](Self::trim)
    /// may give back (one not trimmed since it was last used).
    pub fn has_resident(&self) -> bool {
        self.trimmed < self.state.len()
    }

    /// Gives back the pages of every buffer that sits in the ring unused
    /// since the last call; returns how many buffers it trimmed. Called
    /// periodically, a buffer is trimmed after one to two periods idle.
    /// Under load the buffers in use stay few (recycled ones go first, see
    /// `top_up`), and the rest are trimmed; a trimmed buffer used again
    /// faults in afresh, a page per 4 KiB received.
    ///
    /// # Safety
    /// The kernel must not fill any buffer while this runs, and no
    /// completion not yet reaped may name one: a ring set up with
    /// DEFER_TASKRUN fills buffers only inside this thread's
    /// `io_uring_enter`, so call it between two of those, with the
    /// completion queue (and its overflow) empty.
    pub unsafe fn trim(&mut self) -> usize {
        let mut n = 0;
        for b in 0..self.base.len() {
            match self.state[b] {
                BufState::Out | BufState::Trimmed => continue,
                BufState::Used => {
                    self.state[b] = BufState::Idle;
                    continue;
                }
                BufState::Idle => {}
            }
            // The whole pages inside this buffer's stride, and a page it
            // shares with a neighbour in the same block when that neighbour
            // is idle or trimmed too (its contents are not needed either).
            // A neighbour handed out or just used keeps the shared page:
            // it may hold its data, or soon will. Without the shared pages
            // a grown ring kept about a page per buffer resident for good
            // (684 KiB after a burst of 5,000 handshakes).
            let start = self.base[b] as usize;
            let end = start + self.stride;
            let lo = if self.neighbour_done(b, -1) { start / PAGE * PAGE } else { start.next_multiple_of(PAGE) };
            let hi = if self.neighbour_done(b, 1) { end.next_multiple_of(PAGE) } else { end / PAGE * PAGE };
            if hi > lo {
                // SAFETY: [lo, hi) lies within this buffer's part of a block
                // we allocated; its contents are not needed (contract above).
                // Private anonymous memory reads back as zeros afterwards.
                libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_DONTNEED);
            }
            self.state[b] = BufState::Trimmed;
            n += 1;
        }
        self.trimmed += n;
        n
    }

    /// Whether the buffer `side` (-1 or 1) of `b`, adjacent in the same
    /// block, is idle or trimmed (a page the two share may go). Block edges
    /// are not crossed: what lies beyond is not the ring's.
    fn neighbour_done(&self, b: usize, side: isize) -> bool {
        let Some(n) = b.checked_add_signed(side).filter(|&n| n < self.base.len()) else { return false };
        let (first, second) = if side < 0 { (n, b) } else { (b, n) };
        self.base[first] as usize + self.stride == self.base[second] as usize
            && matches!(self.state[n], BufState::Idle | BufState::Trimmed)
    }

    fn push(&mut self, bid: u16) {
        let idx = (self.tail & (self.entries - 1)) as usize;
        // SAFETY: idx < entries; the kernel does not read entries past the
        // published tail, so writing this one races with nothing.
        let e = unsafe { &mut *self.ring.add(idx) };
        self.fill(e, bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Points ring entry `e` at buffer `bid`.
    fn fill(&self, e: &mut BufRingEntry, bid: u16) {
        e.set_addr(self.base[bid as usize] as u64 + self.reserve as u64);
        e.set_len(self.buf_size as u32);
        e.set_bid(bid);
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

const PAGE: usize = 4096;

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` and `add` with these layouts; the
        // IoUring that had it registered is gone (struct invariant).
        unsafe {
            dealloc(self.ring as *mut u8, self.ring_layout);
            for &(block, layout) in &self.blocks {
                dealloc(block, layout);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use io_uring::{cqueue, opcode, types, IoUring};
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    /// Sends one byte to `b` and returns the buffer id its receive used.
    fn receive_one(ring: &mut IoUring, bufs: &mut BufRing, a: &mut TcpStream, b: &TcpStream) -> u16 {
        a.write_all(b"x").unwrap();
        let sqe = opcode::Recv::new(types::Fd(b.as_raw_fd()), std::ptr::null_mut(), 64)
            .buf_group(bufs.bgid)
            .build()
            .flags(io_uring::squeue::Flags::BUFFER_SELECT);
        // SAFETY: the socket and the buffer ring outlive the ring's use here.
        unsafe { ring.submission().push(&sqe) }.unwrap();
        ring.submit_and_wait(1).unwrap();
        let c = ring.completion().next().expect("a completion");
        assert_eq!(c.result(), 1, "one byte received");
        let bid = cqueue::buffer_select(c.flags()).expect("a buffer");
        bufs.taken(bid);
        bid
    }

    /// Which buffer the receive after a recycled one gets.
    fn reuse_after_recycle(warm_first: bool) -> (u16, u16) {
        let (mut ring, defer_taskrun) = crate::io::uring::probe::new_ring(8).unwrap();
        assert!(defer_taskrun, "this kernel has DEFER_TASKRUN (6.1+)");
        let mut bufs = BufRing::new(&ring.submitter(), 4, 4, 64, 0, 0).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        let first = receive_one(&mut ring, &mut bufs, &mut a, &b);
        bufs.recycle(first);
        // SAFETY: DEFER_TASKRUN, no kernel entry in progress, and the one
        // completion was reaped and passed to `taken`.
        unsafe { bufs.top_up(warm_first) };
        let second = receive_one(&mut ring, &mut bufs, &mut a, &b);
        drop(ring); // before `bufs` (struct invariant)
        (first, second)
    }

    #[test]
    fn a_recycled_buffer_is_the_next_one_filled() {
        let (first, second) = reuse_after_recycle(true);
        assert_eq!(first, second, "the buffer touched last is reused first");
    }

    #[test]
    fn appending_at_the_tail_hands_out_the_oldest_buffer() {
        let (first, second) = reuse_after_recycle(false);
        assert_ne!(first, second, "without warm_first the ring cycles");
    }

    #[test]
    fn displaced_buffers_stay_in_the_ring() {
        // Four buffers: take all of them one by one, recycling each with
        // warm_first, then take four without recycling: four distinct ids,
        // so no buffer was lost or duplicated by the rewrites.
        let (mut ring, _) = crate::io::uring::probe::new_ring(8).unwrap();
        let mut bufs = BufRing::new(&ring.submitter(), 4, 4, 64, 0, 0).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        for _ in 0..10 {
            let bid = receive_one(&mut ring, &mut bufs, &mut a, &b);
            bufs.recycle(bid);
            // SAFETY: as in reuse_after_recycle.
            unsafe { bufs.top_up(true) };
        }
        let mut ids: Vec<u16> = (0..4).map(|_| receive_one(&mut ring, &mut bufs, &mut a, &b)).collect();
        ids.sort_unstable();
        assert_eq!(ids, [0, 1, 2, 3]);
        drop(ring);
    }

    /// Pages of `block` (of `len` bytes) resident in memory (mincore(2)).
    fn resident_pages(block: *mut u8, len: usize) -> usize {
        let pages = len.div_ceil(PAGE);
        let mut v = vec![0u8; pages];
        // SAFETY: `block` is page-aligned and mapped for `len` bytes (a
        // block of the ring); mincore writes one byte per page into `v`.
        let r = unsafe { libc::mincore(block as *mut libc::c_void, len, v.as_mut_ptr()) };
        assert_eq!(r, 0, "mincore: {}", io::Error::last_os_error());
        v.iter().filter(|&&b| b & 1 == 1).count()
    }

    #[test]
    fn idle_buffers_give_back_the_pages_they_share_with_idle_neighbours() {
        // Buffers that do not fill whole pages (4 KiB and a 256-byte
        // reserve: a stride of 4,352 bytes), in a block big enough to come
        // from mmap: every page of it is given back after two idle periods,
        // but for the last one, past the last buffer's end (not the ring's).
        let (ring, _) = crate::io::uring::probe::new_ring(8).unwrap();
        let mut bufs = BufRing::new(&ring.submitter(), 64, 64, 4096, 256, 0).unwrap();
        let (block, layout) = bufs.blocks[0];
        assert!(bufs.stride % PAGE != 0);
        let before = resident_pages(block, layout.size());
        assert_eq!(before, layout.size().div_ceil(PAGE), "faulted in when added");
        // SAFETY: no receive is in flight, nothing was handed out.
        unsafe {
            bufs.trim(); // used -> idle
            bufs.trim(); // idle -> trimmed
        }
        let after = resident_pages(block, layout.size());
        assert!(after <= 1, "{after} of {before} pages still resident");
        drop(ring);
    }
}
