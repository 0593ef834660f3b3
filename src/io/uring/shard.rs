//! The io_uring backend: one ring per shard, multishot accept, multishot
//! receive over a provided buffer ring, and sends straight from the buffer
//! the data arrived in.
//!
//! A receive completion names a ring buffer; the session unmasks and echoes
//! in place there (each buffer has a reserve in front for headers and carried
//! bytes), and a `sendmsg` goes out from that same buffer. Sends never wait
//! for the socket (MSG_DONTWAIT): what it does not take is copied into the
//! connection and the ring buffer returns at once, so a client that does not
//! read can never hold the shared ring's buffers. That connection's receive
//! is then cancelled and a POLLOUT wait armed; data that still arrives is
//! kept with it and handled when the output drains. TCP flow control holds
//! the client back, exactly as on epoll. Sessions, timers, limits and
//! shutdown are the shared [`Table`]'s.

use super::buf_ring::BufRing;
use super::probe::new_ring;
use crate::rooms::Item;
use crate::server::shard::{ShardContext, ShardListener, ShardReady};
use crate::server::table::{HandshakeTurn, PeerAddr, Table, TimerAction, SHUTDOWN_SWEEP};
use crate::ws::{Chunk, HEADROOM};
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};
use tracing::{debug, warn};

const OP_ACCEPT: u64 = 1;
const OP_RECV: u64 = 2;
const OP_SEND: u64 = 3;
const OP_WAKE: u64 = 4;
const OP_CANCEL: u64 = 5;
const OP_POLLOUT: u64 = 6;
/// Bytes of our own in front of each provided buffer: a server header plus
/// carried bytes up to a control frame (256), padded so that received bytes
/// land where their echo starts 64-byte aligned (buffers are 64-byte aligned;
/// see `aligned_echo_pad`). A bigger carry (a request head split across
/// reads) goes through the scratch buffer instead.
const RESERVE: usize = 256 + crate::io::aligned_echo_pad(256);
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
const BGID: u16 = 0;
/// Slices one `sendmsg` takes (IOV_MAX; more is EINVAL).
const MAX_IOV: usize = libc::UIO_MAXIOV as usize;

fn user_data(op: u64, slot: usize, generation: u32) -> u64 {
    (op << 56) | ((generation as u64 & 0xff_ffff) << 32) | slot as u64
}

fn split_user_data(ud: u64) -> (u64, usize, u32) {
    (ud >> 56, (ud & 0xffff_ffff) as usize, ((ud >> 32) & 0xff_ffff) as u32)
}

/// A send the kernel is working on; its memory must stay put until the
/// completion arrives (the `msghdr` and `iovec`s are on the heap).
struct SendJob {
    /// The ring buffer the data is in, returned when the send completes.
    bid: Option<u16>,
    iov: Vec<libc::iovec>,
    /// Bytes not in a ring buffer (handshake responses, control frames, or
    /// everything, for a copy); the iovecs point into it until the send completes.
    owned: Vec<u8>,
    msg: Box<libc::msghdr>,
    total: usize,
    /// A room send: the member's backlog items it sends (lent by the
    /// backlog, given back at the completion) and the offset into the first.
    /// The iovecs point into them: shared frames (`Arc`, which nothing
    /// changes or frees while this job holds a reference) and bytes of the
    /// connection's own (a `Vec` whose heap buffer does not move when the
    /// item does).
    items: Vec<Item>,
    item_offset: usize,
}

/// Per-connection io_uring state.
struct Io {
    stream: TcpStream,
    recv_armed: bool,
    /// A send or a POLLOUT wait is in flight (at most one).
    busy: bool,
    /// Boxed: only a connection with a send in flight has one, and an idle
    /// connection's slot stays small (see `Table`'s slab).
    job: Option<Box<SendJob>>,
    /// Closing: waiting for in-flight operations before the slot is freed.
    dying: bool,
    /// This client once sent faster than it read: receive one buffer at a
    /// time from now on (a multishot receive reads ahead by many buffers
    /// before a cancel lands, and all of that would have to be kept).
    throttled: bool,
    /// The input kept while backed up was handled once since receiving
    /// stopped (a partial frame left in it needs more bytes, not a retry).
    deferred_handled: bool,
    /// TLS handshake input waits in the carry for the next turn (over the
    /// turn's budget); later input queues behind it.
    waiting: bool,
    /// The send in flight is room output: input may still be handled
    /// meanwhile (its own output goes behind the room output).
    room_send: bool,
}

impl PeerAddr for Io {
    fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.stream.peer_addr().ok()
    }
}

// SAFETY: the raw pointers in SendJob point into memory owned by the job or
// the shard's buffer ring; a shard and everything in it stays on one thread.
unsafe impl Send for SendJob {}

/// A listening socket of the shard.
struct Listener {
    /// None once shutting down (closed; its accept may still be cancelling).
    socket: Option<std::net::TcpListener>,
    /// Its connections speak TLS.
    tls: bool,
    /// Other shards accept on it too: one accept at a time, not multishot.
    /// io_uring's accept waits as an exclusive poll, and a wake-up goes to
    /// the first waiter; a multishot accept stays first, so one shard took
    /// every connection (209 of 209 in the socket activation test).
    /// Re-armed after each, a shard's accept queues behind the others' and
    /// connections go round.
    shared: bool,
    /// Its accept is in flight.
    armed: bool,
}

struct Shard {
    // Declared first so it is dropped first: the kernel must let go of the
    // buffer ring and the send jobs' memory before they are freed.
    ring: IoUring,
    bufs: BufRing,
    table: Table<Io>,
    /// Emptied at shutdown.
    listeners: Vec<Listener>,
    accept_paused_until: Option<Instant>,
    wake_fd: OwnedFd,
    /// For a carry too big for a buffer's reserve.
    scratch: Vec<u8>,
    /// The most one multishot receive may take (`recv_limit.rs`), where
    /// the kernel can bound it.
    recv_limit: Option<u32>,
    /// A connection that had backed up (and kept input and output on the
    /// heap) closed since the last trim: give the heap back at the next.
    heap_to_trim: bool,
    /// Connections whose receive stopped for lack of buffers (ENOBUFS).
    starved: Vec<(usize, u32)>,
    /// A buffer went back to the ring since starved receives were last re-armed.
    recycled: bool,
    /// Finished send jobs kept for reuse, so a send allocates nothing.
    // Boxed on purpose: a job moves between this pool and a connection's
    // `Io::job`, and reusing the box keeps a send free of allocations.
    #[allow(clippy::vec_box)]
    spare_jobs: Vec<Box<SendJob>>,
    /// Connections whose TLS handshake input waits for the next turn.
    waiting: Vec<(usize, u32)>,
    /// Connections waiting, unread, for an inflater (permessage-deflate);
    /// retried once one is free.
    parked: Vec<(usize, u32)>,
    /// Room members not read because another shard's inbox is full;
    /// retried each turn (that shard wakes this one when it has room).
    room_waiting: Vec<(usize, u32)>,
    /// Members with new room output (scratch).
    room_flush: Vec<usize>,
    cqes: Vec<(u64, i32, u32)>,
    /// The ring was set up with DEFER_TASKRUN, so buffers are filled only
    /// inside this thread's `io_uring_enter`: unused ones may be trimmed.
    can_trim: bool,
    /// When unused receive buffers are next trimmed.
    trim_at: Instant,
    /// Completions taken off the queue are being handled: some may name a
    /// buffer `BufRing::taken` has not seen yet.
    in_batch: bool,
}

/// How often receive buffers unused since the last look give their pages
/// back: a buffer is trimmed after one to two of these idle. Under load the
/// ring reuses the buffers recycled last (`BufRing::top_up`), so the ones
/// the load does not need are trimmed too.
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// Completions one pass of the kernel's deferred work may post before a
/// turn asks for more (its IO_LOCAL_TW_DEFAULT_MAX is 20 items, some of
/// which post more than one completion): a pass that brought this many
/// probably left some behind.
const LOCAL_TW_PASS: usize = 20;

/// The most completions one turn handles before its end-of-turn work (room
/// output, timers): as many as epoll's events a turn.
const TURN_COMPLETIONS: usize = 1024;

/// Receive buffers a shard starts with: 256 KiB of them (2 of the default
/// 128 KiB), as much as epoll's shared read buffer and its reserve. The ring
/// doubles them each time receives find none free, up to `--uring-buffers`:
/// measured at 1000 busy connections it reaches 128 within the first
/// milliseconds of load.
fn initial_buffers(buf_size: usize) -> u16 {
    (256 * 1024 / buf_size).clamp(2, 256) as u16
}

/// Runs one shard on io_uring until shutdown completes; returns its counters.
pub fn run(ctx: ShardContext, listeners: Vec<ShardListener>, ready: impl FnOnce(ShardReady)) -> io::Result<()> {
    let s = &ctx.settings;
    let (ring, defer_taskrun) = new_ring(s.ring_entries)?;
    let bufs = BufRing::new(
        &ring.submitter(),
        s.uring_buffers,
        initial_buffers(s.uring_buffer_size),
        s.uring_buffer_size,
        RESERVE,
        BGID,
    )?;
    // SAFETY: eventfd has no memory-safety preconditions; the result is checked.
    let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if efd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: efd is a fresh descriptor owned by nobody else.
    let wake_fd = unsafe { OwnedFd::from_raw_fd(efd) };
    let recv_limit = super::recv_limit::supported().then(|| super::recv_limit::limit(bufs.buf_size()));
    if let Some(rooms) = &ctx.rooms {
        // Other shards wake this one through the same eventfd as a shutdown.
        rooms.inboxes[ctx.id].set_wake(Box::new(move || {
            let one: u64 = 1;
            // SAFETY: as for the shutdown wake below.
            unsafe { libc::write(efd, &one as *const u64 as *const libc::c_void, 8) };
        }));
    }
    let mut shard = Shard {
        recv_limit,
        heap_to_trim: false,
        ring,
        bufs,
        table: Table::new(ctx),
        listeners: listeners
            .into_iter()
            .map(|l| Listener { socket: Some(l.socket), tls: l.tls, shared: l.shared, armed: false })
            .collect(),
        accept_paused_until: None,
        wake_fd,
        scratch: Vec::new(),
        starved: Vec::new(),
        recycled: false,
        spare_jobs: Vec::new(),
        waiting: Vec::new(),
        parked: Vec::new(),
        room_waiting: Vec::new(),
        room_flush: Vec::new(),
        cqes: Vec::new(),
        can_trim: defer_taskrun,
        trim_at: Instant::now() + TRIM_EVERY,
        in_batch: false,
    };
    shard.table.ctx.metrics.ring_buffers.set(u64::from(shard.bufs.len()));
    for i in 0..shard.listeners.len() {
        shard.arm_accept(i)?;
    }
    shard.arm_wake()?;
    ready(ShardReady {
        wake: Box::new(move || {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to the eventfd, which
            // lives as long as the shard (the process, after shutdown).
            unsafe { libc::write(efd, &one as *const u64 as *const libc::c_void, 8) };
        }),
    });
    shard.event_loop()?;
    Ok(())
}

impl Shard {
    fn push(&mut self, sqe: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every entry's memory (ring buffers, send jobs, the
            // listener, sockets) outlives its completion (see Shard's fields).
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                return Ok(());
            }
            self.return_buffers();
            self.ring.submit()?;
        }
    }

    fn give_back(&mut self, bid: u16) {
        self.bufs.recycle(bid);
        self.recycled = true;
    }

    /// Gives the kernel the buffers recycled since the last entry into it:
    /// at the head of the ring (warm ones first) where that is safe, else
    /// at the tail. Called before every `io_uring_enter`.
    fn return_buffers(&mut self) {
        let warm_first = self.can_trim
            && !self.in_batch
            && self.ring.completion().is_empty()
            && !self.ring.submission().cq_overflow();
        // SAFETY: with warm_first, the ring has DEFER_TASKRUN (`can_trim`),
        // so the kernel picks buffers only inside this thread's
        // io_uring_enter, and none runs now; the completion queue is empty
        // and no batch taken off it is being handled, so every buffer the
        // kernel handed out went through `BufRing::taken` (on_recv).
        unsafe { self.bufs.top_up(warm_first) };
    }

    /// Arms listener `i`'s accept (its index rides in the user data):
    /// multishot on the shard's own socket, one at a time on a shared one.
    fn arm_accept(&mut self, i: usize) -> io::Result<()> {
        let Some(l) = self.listeners.get_mut(i) else { return Ok(()) };
        let Some(socket) = &l.socket else { return Ok(()) };
        let fd = types::Fd(socket.as_raw_fd());
        let sqe = if l.shared {
            opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut()).build()
        } else {
            opcode::AcceptMulti::new(fd).build()
        };
        let sqe = sqe.user_data(user_data(OP_ACCEPT, i, 0));
        l.armed = true;
        self.push(sqe)
    }

    fn arm_wake(&mut self) -> io::Result<()> {
        let sqe = opcode::PollAdd::new(types::Fd(self.wake_fd.as_raw_fd()), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(user_data(OP_WAKE, 0, 0));
        self.push(sqe)
    }

    fn arm_recv(&mut self, slot: usize) {
        let Some(s) = self.table.get_mut(slot) else { return };
        if s.io.recv_armed || s.io.dying {
            return;
        }
        s.io.recv_armed = true;
        let fd = types::Fd(s.io.stream.as_raw_fd());
        let ud = user_data(OP_RECV, slot, s.generation);
        let sqe = if s.io.throttled {
            let len = self.bufs.buf_size() as u32;
            opcode::Recv::new(fd, std::ptr::null_mut(), len)
                .buf_group(BGID)
                .build()
                .flags(squeue::Flags::BUFFER_SELECT)
                .user_data(ud)
        } else if let Some(total) = self.recv_limit {
            // Read-ahead bounded: see recv_limit.rs.
            super::recv_limit::recv_multi_limited(fd, BGID, total).user_data(ud)
        } else {
            opcode::RecvMulti::new(fd, BGID).build().user_data(ud)
        };
        let _ = self.push(sqe);
    }

    fn cancel_recv(&mut self, slot: usize) {
        let Some(s) = self.table.get_mut(slot) else { return };
        if !s.io.recv_armed {
            return;
        }
        let target = user_data(OP_RECV, slot, s.generation);
        let sqe = opcode::AsyncCancel::new(target).build().user_data(user_data(OP_CANCEL, slot, 0));
        let _ = self.push(sqe);
    }

    fn event_loop(&mut self) -> io::Result<()> {
        loop {
            let now = Instant::now();
            self.table.new_turn();
            self.handle_waiting(now);
            if self.table.begin_shutdown(now) {
                self.begin_shutdown();
            }
            // Shutting down, an accept still in flight must be seen cancelled
            // first: a connection it takes meanwhile (from a queue a new
            // server shares after a takeover) is served, and the ring holds
            // no listener when the process exits. Its teardown after exit is
            // asynchronous, so a listener it still held would stay open for
            // a moment, and a server started right after would find its
            // port taken.
            let accepting = self.listeners.iter().any(|l| l.armed);
            if self.table.shutdown_done(now) && (!accepting || self.table.grace_over(now)) {
                if !self.table.is_empty() {
                    warn!(
                        shard = self.table.ctx.id,
                        left = self.table.len(),
                        "grace period over, dropping connections"
                    );
                }
                return Ok(());
            }
            let trim = (self.can_trim && self.bufs.has_resident() || self.heap_to_trim).then_some(self.trim_at);
            let deadline = [self.table.next_deadline(), self.accept_paused_until, trim].into_iter().flatten().min();
            let mut wait = deadline.map(|d| d.saturating_duration_since(now)).unwrap_or(Duration::from_secs(3600));
            if self.table.shutting_down() {
                wait = wait.min(SHUTDOWN_SWEEP);
            }
            if !self.waiting.is_empty() {
                // TLS handshake input left over from this turn's budget has
                // nothing to complete for it: look at the ring without
                // sleeping, as epoll polls with a zero timeout, or it would
                // wait for some other connection's completion (or a timer).
                wait = Duration::ZERO;
            }
            let ts = types::Timespec::from(wait);
            let args = types::SubmitArgs::new().timespec(&ts);
            self.return_buffers();
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => {}
                Err(e) => return Err(e),
            }
            let mut reaped = self.handle_completions();
            let mut total = reaped;
            // With DEFER_TASKRUN an io_uring_enter runs at most two passes of
            // 20 deferred completions (the kernel's IO_LOCAL_TW_DEFAULT_MAX,
            // 6.13 and later), so under load a turn would end after a few
            // dozen, and every member's room output (flushed once per turn)
            // would go out a frame or two at a time. While a pass comes back
            // full, ask for more without waiting, up to TURN_COMPLETIONS
            // (epoll's 1,024 events a turn): bounded by the budget, and each
            // pass only takes what had already completed. A pass asks for at
            // most half the receive buffers: each receive it runs takes one,
            // and more than the ring holds would end receives with ENOBUFS
            // (each then re-armed: measured, 66,000 in 3 s at 1,000 busy
            // members, when a pass asked for the whole budget).
            while self.can_trim && reaped >= LOCAL_TW_PASS && total < TURN_COMPLETIONS {
                let zero = types::Timespec::new();
                let args = types::SubmitArgs::new().timespec(&zero);
                self.return_buffers();
                let want = (TURN_COMPLETIONS - total).min(usize::from(self.bufs.len()) / 2);
                match self.ring.submitter().submit_with_args(want, &args) {
                    Ok(_) => {}
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => {}
                    Err(e) => return Err(e),
                }
                reaped = self.handle_completions();
                total += reaped;
            }
            let now = Instant::now();
            if self.accept_paused_until.is_some_and(|t| now >= t) {
                self.accept_paused_until = None;
                for i in 0..self.listeners.len() {
                    if !self.listeners[i].armed {
                        let _ = self.arm_accept(i);
                    }
                }
            }
            while let Some((slot, action)) = self.table.next_timer(now) {
                match action {
                    TimerAction::Drop => self.close(slot),
                    TimerAction::Send => self.send_output(slot, None, now),
                    TimerAction::Resume => self.maybe_finish(slot, now),
                }
            }
            if self.table.shutting_down() {
                self.table.report_shutdown(now);
                self.shutdown_sweep(now);
            }
            if (self.can_trim || self.heap_to_trim) && now >= self.trim_at {
                self.trim_at = now + TRIM_EVERY;
                if self.can_trim {
                    self.trim_buffers();
                }
                if std::mem::take(&mut self.heap_to_trim) {
                    // Backed-up connections' kept input and output were
                    // freed, but glibc keeps freed chunks below its mmap
                    // threshold (which rises to 32 MiB as large chunks are
                    // freed) and returns only the top of the heap by itself:
                    // 200 clients that pushed without reading left 17 MB
                    // held after they had gone. At most once a second, and
                    // only after such connections closed.
                    // SAFETY: malloc_trim takes the allocator's own locks.
                    unsafe { libc::malloc_trim(0) };
                }
            }
            // An inflater comes back only while some connection is handled,
            // so looking once per turn wakes the parked without polling.
            if !self.parked.is_empty() && self.table.inflater_free() {
                for (slot, generation) in std::mem::take(&mut self.parked) {
                    if self.table.get_gen(slot, generation).is_some() {
                        self.maybe_finish(slot, now);
                    }
                }
            }
            // Receives stopped for lack of buffers resume once some came back
            // (never in a loop: only after a buffer was returned).
            if self.recycled && !self.starved.is_empty() {
                self.recycled = false;
                for (slot, generation) in std::mem::take(&mut self.starved) {
                    if self.table.get_gen(slot, generation).is_some() {
                        self.maybe_finish(slot, now);
                    }
                }
            }
            // Rooms: what other shards sent, members that waited for an
            // inbox to have room, then every member's new room output, once
            // per turn (one SendMsg with all the frames it got in the turn).
            self.table.drain_inbox(now);
            for (slot, generation) in std::mem::take(&mut self.room_waiting) {
                if self.table.get_gen(slot, generation).is_some() {
                    self.maybe_finish(slot, now);
                }
            }
            self.send_room_output();
        }
    }

    /// Handles every completion in the queue; returns how many there were.
    fn handle_completions(&mut self) -> usize {
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.extend(self.ring.completion().map(|c| (c.user_data(), c.result(), c.flags())));
        let now = Instant::now();
        self.in_batch = true;
        for &(ud, res, flags) in &cqes {
            self.on_completion(ud, res, flags, now);
        }
        self.in_batch = false;
        let n = cqes.len();
        cqes.clear();
        self.cqes = cqes;
        n
    }

    fn on_completion(&mut self, ud: u64, res: i32, flags: u32, now: Instant) {
        let (op, slot, generation) = split_user_data(ud);
        match op {
            OP_ACCEPT => self.on_accept(slot, res, flags, now),
            OP_WAKE => {
                let mut v = 0u64;
                // SAFETY: reads 8 bytes into a live u64 (resets the eventfd).
                unsafe { libc::read(self.wake_fd.as_raw_fd(), &mut v as *mut u64 as *mut libc::c_void, 8) };
                if !cqueue::more(flags) {
                    let _ = self.arm_wake();
                }
            }
            OP_RECV => self.on_recv(slot, generation, res, flags, now),
            OP_SEND => self.on_send(slot, generation, res, now),
            OP_POLLOUT => self.on_pollout(slot, generation, res, now),
            _ => {} // cancellations: their target's own completion says what happened
        }
    }

    /// An accept on listener `i`.
    fn on_accept(&mut self, i: usize, res: i32, flags: u32, now: Instant) {
        let more = cqueue::more(flags);
        let Some(l) = self.listeners.get_mut(i) else { return };
        let tls = l.tls;
        let closing = l.socket.is_none();
        if !more {
            l.armed = false;
        }
        if res >= 0 {
            // SAFETY: a successful accept completion hands us a new descriptor.
            // TCP_NODELAY comes from the listener (see `ListenOptions::nodelay`).
            let stream = unsafe { TcpStream::from_raw_fd(res as RawFd) };
            let io = Io {
                stream,
                recv_armed: false,
                busy: false,
                job: None,
                dying: false,
                throttled: false,
                deferred_handled: false,
                waiting: false,
                room_send: false,
            };
            // Accepted while the cancellation of this accept was on its way
            // (shutting down): served all the same, to its close.
            // None: closed at accept (too many handshakes from its address).
            if let Some(slot) = self.table.insert(io, now, tls) {
                self.arm_recv(slot);
            }
        } else if matches!(-res, libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) {
            warn!(error = %io::Error::from_raw_os_error(-res), "cannot accept, pausing for 100ms (raise LimitNOFILE / ulimit -n)");
            self.accept_paused_until = Some(now + ACCEPT_BACKOFF);
            return;
        }
        if !closing && !self.listeners[i].armed && self.accept_paused_until.is_none() {
            let _ = self.arm_accept(i);
        }
    }

    fn on_recv(&mut self, slot: usize, generation: u32, res: i32, flags: u32, now: Instant) {
        let bid = cqueue::buffer_select(flags);
        if let Some(b) = bid {
            self.bufs.taken(b);
        }
        let Some(s) = self.table.get_gen(slot, generation) else {
            if let Some(b) = bid {
                self.give_back(b);
            }
            return;
        };
        if !cqueue::more(flags) {
            s.io.recv_armed = false;
        }
        if s.io.dying {
            if let Some(b) = bid {
                self.give_back(b);
            }
            return self.close(slot);
        }
        match res {
            1.. => {
                let b = bid.expect("a receive with data names its buffer");
                let len = res as usize;
                self.table.ctx.metrics.bytes_in.add(len as u64);
                // Input behind handshake input that already waits waits too.
                let turn = if self.table.get_gen(slot, generation).is_some_and(|s| s.io.waiting) {
                    HandshakeTurn::Wait
                } else {
                    self.table.handshake_turn(slot)
                };
                let s = self.table.get_gen(slot, generation).expect("checked above");
                if turn == HandshakeTurn::Wait {
                    // A TLS handshake over this turn's budget: keep the bytes
                    // with the connection and handle them next turn.
                    // SAFETY: `b` came from this completion and is ours until given back.
                    let data = unsafe { self.bufs.slot_mut(b, len) };
                    s.conn.defer_input(&data[RESERVE..]);
                    if !s.io.waiting {
                        s.io.waiting = true;
                        self.waiting.push((slot, generation));
                    }
                    self.give_back(b);
                    return;
                }
                let throttled = self.table.throttled(slot, now);
                let blocked = self.table.room_blocked(slot);
                let s = self.table.get_gen(slot, generation).expect("checked above");
                if blocked {
                    // A shard with members of its room has a full inbox:
                    // keep the bytes, stop receiving, and try again once
                    // that shard has woken this one.
                    // SAFETY: `b` came from this completion and is ours until given back.
                    let data = unsafe { self.bufs.slot_mut(b, len) };
                    s.conn.defer_input(&data[RESERVE..]);
                    if !self.room_waiting.contains(&(slot, generation)) {
                        self.room_waiting.push((slot, generation));
                    }
                    self.give_back(b);
                    self.cancel_recv(slot);
                    return;
                }
                let busy = s.io.busy && !s.io.room_send;
                if busy || s.conn.has_pending() || s.conn.session.stalled().is_some() || throttled {
                    // Backed up (or the session stalled on complete input, or
                    // the connection is over its rate limit): keep the bytes
                    // with the connection, give the buffer back, and stop
                    // receiving until the output drains (or the bucket refills).
                    // SAFETY: `b` came from this completion and is ours until given back.
                    let data = unsafe { self.bufs.slot_mut(b, len) };
                    s.conn.defer_input(&data[RESERVE..]);
                    s.io.throttled = true;
                    self.give_back(b);
                    self.cancel_recv(slot);
                    return;
                }
                self.process(slot, b, len, now);
                if turn == HandshakeTurn::Go {
                    self.submit_now();
                }
            }
            0 => return self.on_eof(slot),
            _ if -res == libc::ENOBUFS => {
                self.table.ctx.metrics.recv_starved.add(1);
                self.starved.push((slot, generation));
                // Every buffer is in use: the load needs more, if the ring may grow.
                match self.bufs.grow() {
                    Ok(true) => {
                        self.table.ctx.metrics.ring_buffers.set(u64::from(self.bufs.len()));
                        debug!(shard = self.table.ctx.id, buffers = self.bufs.len(), "receive buffers grown");
                        self.recycled = true; // re-arm the starved receives now
                    }
                    Ok(false) => {}
                    Err(e) => warn!(error = %e, "cannot grow the receive buffers"),
                }
                return;
            }
            _ if -res == libc::ECANCELED => {}
            _ => {
                debug!(error = %io::Error::from_raw_os_error(-res), "receive failed");
                return self.close(slot);
            }
        }
        self.maybe_finish(slot, now);
    }

    /// Handles the TLS handshake input that waited for this turn, as far as
    /// the turn's budget goes; the rest waits again.
    fn handle_waiting(&mut self, now: Instant) {
        for (slot, generation) in std::mem::take(&mut self.waiting) {
            if self.table.get_gen(slot, generation).is_none() {
                continue;
            }
            if self.table.handshake_turn(slot) == HandshakeTurn::Wait {
                self.waiting.push((slot, generation));
                continue;
            }
            let s = self.table.get_gen(slot, generation).expect("checked above");
            s.io.waiting = false;
            if s.io.busy || s.conn.has_pending() {
                continue; // handled once the output drains, as backed-up input is
            }
            self.process_copy(slot, &[], now);
            self.submit_now();
            self.maybe_finish(slot, now);
        }
    }

    /// Gives back the pages of receive buffers unused since the last look
    /// (after a burst, an idle shard's memory falls back to about epoll's).
    fn trim_buffers(&mut self) {
        // A completion not reaped yet may name a buffer (a receive issued
        // inline by a mid-turn submit): look again next time.
        if !self.ring.completion().is_empty() || self.ring.submission().cq_overflow() {
            return;
        }
        // SAFETY: the ring has DEFER_TASKRUN (`can_trim`), so the kernel
        // fills buffers only inside this thread's io_uring_enter, and none
        // runs during the trim; the completion queue was just seen empty.
        let n = unsafe { self.bufs.trim() };
        if n > 0 {
            debug!(shard = self.table.ctx.id, buffers = n, "idle receive buffers trimmed");
            // A burst is over (buffers went unused for a second): hand back
            // the heap it took too. Backed-up connections' kept input and
            // output were freed, but glibc keeps freed chunks below its
            // mmap threshold (which rises to 32 MiB as large chunks are
            // freed) and returns only the top of the heap by itself.
            // SAFETY: malloc_trim takes the allocator's own locks; rare (at
            // most once a second, only after a burst).
            unsafe { libc::malloc_trim(0) };
        }
    }

    /// Submits the queued entries now rather than at the end of the turn.
    /// After a TLS handshake step (about 250 µs of CPU for a full one), so its
    /// flight leaves at once: the turn may hold 15 more, and the clients
    /// would otherwise wait for all of them (epoll writes as it goes).
    /// One `io_uring_enter` per handshake step; echoes stay batched.
    fn submit_now(&mut self) {
        self.return_buffers();
        // Failure is harmless: the entries stay queued for the turn's submit.
        let _ = self.ring.submit();
    }

    /// Runs the session over ring buffer `bid` (`len` bytes) and sends its output.
    fn process(&mut self, slot: usize, bid: u16, len: usize, now: Instant) {
        let carry = self.table.get_mut(slot).map_or(0, |s| s.conn.carry_len());
        if HEADROOM + carry <= RESERVE {
            // SAFETY: `bid` came from a completion and is ours until given back.
            let buf = unsafe { self.bufs.slot_mut(bid, len) };
            let start = self.table.get_mut(slot).expect("live slot").conn.stage_carry(buf, RESERVE);
            self.table.input(slot, buf, start, now);
            self.send_output(slot, Some(bid), now);
            // Room messages are published after their sender's own output
            // (sent at the end of the turn).
            self.table.publish(now);
        } else {
            // A carry bigger than the reserve (a request head split across
            // reads, or input kept while backed up): work on a copy.
            // SAFETY: as above.
            let data = unsafe { self.bufs.slot_mut(bid, len) }[RESERVE..].to_vec();
            self.give_back(bid);
            self.process_copy(slot, &data, now);
        }
    }

    /// Runs the session over the carried bytes plus `data` in the scratch buffer.
    fn process_copy(&mut self, slot: usize, data: &[u8], now: Instant) {
        let Some(s) = self.table.get_mut(slot) else { return };
        let carry = s.conn.carry_len();
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.resize(HEADROOM + carry, 0);
        s.conn.stage_carry(&mut scratch, HEADROOM + carry);
        scratch.extend_from_slice(data);
        self.table.input(slot, &mut scratch, HEADROOM, now);
        let mut bytes = Vec::with_capacity(self.table.out.len());
        self.table.out.copy_to(&scratch, &mut bytes);
        self.scratch = scratch;
        self.send_bytes(slot, bytes, now);
        self.table.publish(now);
    }

    /// Sends the room output of every member that has new output.
    fn send_room_output(&mut self) {
        // Members `maybe_finish` left for now, then those with new frames
        // (a member in both is sent once: the second finds it busy).
        let mut list = std::mem::take(&mut self.room_flush);
        self.table.take_room_flush(&mut list);
        for slot in list.drain(..) {
            self.send_backlog(slot);
        }
        self.room_flush = list;
    }

    /// Submits a member's room output straight from the shared frames (one
    /// `SendMsg` of up to IOV_MAX of them), unless a send is in flight (its
    /// completion comes back here through `maybe_finish`).
    fn send_backlog(&mut self, slot: usize) {
        let Some(s) = self.table.get_mut(slot) else { return };
        if s.io.busy || s.io.dying || s.conn.has_pending() {
            return;
        }
        let Some((items, offset)) = self.table.backlog_lend(slot, MAX_IOV) else { return };
        let mut job = self.new_job();
        for (i, item) in items.iter().enumerate() {
            let b = item.bytes();
            let b = if i == 0 { &b[offset..] } else { b };
            job.iov.push(libc::iovec { iov_base: b.as_ptr() as *mut libc::c_void, iov_len: b.len() });
            job.total += b.len();
        }
        job.items = items;
        job.item_offset = offset;
        self.table.get_mut(slot).expect("checked above").io.room_send = true;
        self.submit_send(slot, job);
    }

    /// Sends `self.table.out`: input chunks from ring buffer `bid`, owned
    /// chunks copied into the job. Behind a send in flight, it is queued.
    fn send_output(&mut self, slot: usize, bid: Option<u16>, now: Instant) {
        let base = bid.map(|b| {
            // SAFETY: `b` is ours until given back; only its address is kept here.
            unsafe { self.bufs.slot_mut(b, 0) }.as_ptr()
        });
        if !self.table.out.is_empty() && self.table.get(slot).is_some_and(|s| s.conn.has_backlog()) {
            // A room member's own output goes behind its room output.
            // SAFETY: input chunks lie within the ring buffer at `base`.
            let buf = base.map(|p| unsafe { std::slice::from_raw_parts(p, RESERVE + self.bufs.buf_size()) });
            self.table.queue_behind_backlog(slot, buf.unwrap_or(&[]));
            if let Some(b) = bid {
                self.give_back(b);
            }
            return self.maybe_finish(slot, now);
        }
        let Some((s, out, _)) = self.table.split(slot) else {
            if let Some(b) = bid {
                self.give_back(b);
            }
            return;
        };
        let (empty, dying) = (out.is_empty(), s.io.dying);
        // More slices than one sendmsg takes, even after coalescing (owned
        // replies between input chunks, e.g. `--reply pong` answering pings
        // and messages in turn), go the queued way too: one copy, one slice.
        let too_many = out.chunks().len() > MAX_IOV;
        if empty || s.io.busy || s.conn.has_pending() || dying || too_many {
            if !empty && !dying {
                // SAFETY: input chunks lie within the ring buffer at `base`.
                let buf = base.map(|p| unsafe { std::slice::from_raw_parts(p, RESERVE + self.bufs.buf_size()) });
                let (s, out, _) = self.table.split(slot).expect("live slot");
                s.conn.queue(out, buf.unwrap_or(&[]), 0);
            }
            if let Some(b) = bid {
                self.give_back(b);
            }
            return self.maybe_finish(slot, now);
        }
        let mut job = self.new_job();
        let out = &self.table.out;
        let SendJob { iov, owned, .. } = &mut *job;
        for &c in out.chunks() {
            if let Chunk::Owned { .. } = c {
                owned.extend_from_slice(out.bytes(&[], c));
            }
        }
        let mut off = 0;
        for &c in out.chunks() {
            let (ptr, n) = match c {
                // SAFETY: input chunks lie within the ring buffer at `base`.
                Chunk::Input { start, end } => {
                    (unsafe { base.expect("input chunks have a buffer").add(start) }, end - start)
                }
                Chunk::Owned { start, end } => {
                    let p = owned[off..].as_ptr();
                    off += end - start;
                    (p, end - start)
                }
            };
            iov.push(libc::iovec { iov_base: ptr as *mut libc::c_void, iov_len: n });
        }
        job.total = out.len();
        job.bid = bid;
        self.submit_send(slot, job);
    }

    /// A send job from the pool (or a new one), emptied.
    fn new_job(&mut self) -> Box<SendJob> {
        let mut j = self.spare_jobs.pop().unwrap_or_else(|| {
            Box::new(SendJob {
                bid: None,
                iov: Vec::new(),
                owned: Vec::new(),
                msg: zeroed_msghdr(),
                total: 0,
                items: Vec::new(),
                item_offset: 0,
            })
        });
        j.iov.clear();
        j.owned.clear();
        j.items.clear();
        j.item_offset = 0;
        j.bid = None;
        j.total = 0;
        j
    }

    /// Returns a finished job to the pool (a few, none holding a big buffer).
    fn keep_job(&mut self, mut j: Box<SendJob>) {
        // Shared frames are let go of at once, not when the job is reused.
        j.items.clear();
        if self.spare_jobs.len() < 64 {
            if j.owned.capacity() > 64 * 1024 {
                j.owned = Vec::new();
            }
            self.spare_jobs.push(j);
        }
    }

    /// Sends `bytes` (a copy), or queues them behind what is in flight.
    fn send_bytes(&mut self, slot: usize, bytes: Vec<u8>, now: Instant) {
        // A room member's own output goes behind its room output.
        let Some(bytes) = self.table.queue_bytes_behind_backlog(slot, bytes) else {
            return self.maybe_finish(slot, now);
        };
        let Some(s) = self.table.get_mut(slot) else { return };
        if bytes.is_empty() || s.io.busy || s.conn.has_pending() || s.io.dying {
            if !bytes.is_empty() && !s.io.dying {
                s.conn.queue_bytes(&bytes);
            }
            return self.maybe_finish(slot, now);
        }
        let mut job = self.new_job();
        job.iov.push(libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() });
        job.total = bytes.len();
        job.owned = bytes;
        self.submit_send(slot, job);
    }

    fn submit_send(&mut self, slot: usize, mut job: Box<SendJob>) {
        let Some(s) = self.table.get_mut(slot) else {
            if let Some(b) = job.bid.take() {
                self.give_back(b);
            }
            return self.keep_job(job);
        };
        job.msg.msg_iov = job.iov.as_mut_ptr();
        job.msg.msg_iovlen = job.iov.len() as _;
        let fd = s.io.stream.as_raw_fd();
        let ud = user_data(OP_SEND, slot, s.generation);
        // MSG_DONTWAIT: take what the socket takes now; the rest is copied
        // out (on_send) so no ring buffer waits on a slow reader.
        let flags = (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as u32;
        // Plain SendMsg by measurement (2 CPUs, loopback, kernel 6.18):
        // SendMsgZc from the ring buffer cost 23% more server CPU per 64 KiB
        // echo and 33% more per 16 KiB (loopback copies zero-copy data
        // anyway, see the kernel's msg_zerocopy.rst, and adds a notification
        // per send); registered files took fget off the profile (2%) with
        // no measurable gain, so descriptors stay plain.
        let sqe = opcode::SendMsg::new(types::Fd(fd), &*job.msg).flags(flags).build().user_data(ud);
        s.io.busy = true;
        s.io.job = Some(job);
        let _ = self.push(sqe);
    }

    fn on_send(&mut self, slot: usize, generation: u32, res: i32, now: Instant) {
        let Some(s) = self.table.get_gen(slot, generation) else { return };
        s.io.busy = false;
        let Some(mut job) = s.io.job.take() else { return };
        let sent = if res >= 0 {
            res as usize
        } else if -res == libc::EAGAIN {
            0
        } else {
            usize::MAX
        };
        if std::mem::take(&mut s.io.room_send) {
            let dying = s.io.dying;
            let items = std::mem::take(&mut job.items);
            let ok = if sent == usize::MAX || dying { 0 } else { sent };
            self.table.backlog_give_back(slot, items, job.item_offset, ok);
            let total = job.total;
            self.keep_job(job);
            if sent == usize::MAX || dying {
                if sent == usize::MAX {
                    debug!(error = %io::Error::from_raw_os_error(-res), "send failed");
                }
                return self.close(slot);
            }
            self.table.ctx.metrics.bytes_out.add(sent as u64);
            if sent < total {
                // The socket is full: wait until it takes more. Reading goes
                // on (room output never holds a member's input back).
                let s = self.table.get_gen(slot, generation).expect("checked above");
                s.io.busy = true;
                let fd = s.io.stream.as_raw_fd();
                let ud = user_data(OP_POLLOUT, slot, s.generation);
                let sqe = opcode::PollAdd::new(types::Fd(fd), libc::POLLOUT as u32).build().user_data(ud);
                let _ = self.push(sqe);
                return;
            }
            return self.maybe_finish(slot, now);
        }
        if sent == usize::MAX || s.io.dying {
            if let Some(b) = job.bid {
                self.give_back(b);
            }
            if sent == usize::MAX {
                debug!(error = %io::Error::from_raw_os_error(-res), "send failed");
            }
            self.keep_job(job);
            return self.close(slot);
        }
        self.table.ctx.metrics.bytes_out.add(sent as u64);
        if sent < job.total {
            // The socket is full: keep the rest, give the buffer back, and
            // wait until the socket takes more.
            let mut skip = sent;
            let mut rest = Vec::with_capacity(job.total - sent);
            for v in &job.iov {
                // SAFETY: the iovecs point into the job or its ring buffer,
                // both still ours here.
                let bytes = unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) };
                if skip >= bytes.len() {
                    skip -= bytes.len();
                } else {
                    rest.extend_from_slice(&bytes[skip..]);
                    skip = 0;
                }
            }
            if let Some(b) = job.bid {
                self.give_back(b);
            }
            self.keep_job(job);
            self.table.ctx.metrics.backpressure_stalls.add(1);
            let s = self.table.get_gen(slot, generation).expect("checked above");
            s.io.throttled = true;
            // What was queued behind this send stays behind its rest.
            let later = s.conn.take_pending();
            s.conn.queue_bytes(&rest);
            s.conn.queue_bytes(&later);
            s.io.busy = true;
            let fd = s.io.stream.as_raw_fd();
            let sqe = opcode::PollAdd::new(types::Fd(fd), libc::POLLOUT as u32).build().user_data(user_data(
                OP_POLLOUT,
                slot,
                s.generation,
            ));
            let _ = self.push(sqe);
            self.cancel_recv(slot);
            return;
        }
        if let Some(b) = job.bid {
            self.give_back(b);
        }
        self.keep_job(job);
        self.maybe_finish(slot, now);
    }

    fn on_pollout(&mut self, slot: usize, generation: u32, res: i32, now: Instant) {
        let Some(s) = self.table.get_gen(slot, generation) else { return };
        s.io.busy = false;
        if res < 0 || s.io.dying {
            return self.close(slot);
        }
        self.maybe_finish(slot, now);
    }

    /// With nothing in flight: queued output goes out first; then input kept
    /// while backed up is handled; then a closed session is closed or
    /// lingers, a shutting-down one gets its close, and receiving resumes.
    fn maybe_finish(&mut self, slot: usize, now: Instant) {
        self.table.settle(slot);
        let Some(s) = self.table.get_mut(slot) else { return };
        if s.io.busy || s.io.dying {
            return;
        }
        if s.conn.has_pending() {
            let bytes = s.conn.take_pending();
            return self.send_bytes(slot, bytes, now);
        }
        if s.conn.has_backlog() {
            // Room output next, at the end of the turn with the rest of the
            // turn's (reading goes on meanwhile): a send submitted now would
            // carry only the frames so far, and keep the member busy when
            // the turn's own flush comes, so that flush would wait a turn.
            self.room_flush.push(slot);
        }
        let Some(s) = self.table.get_mut(slot) else { return };
        let generation = s.generation;
        if self.table.room_blocked(slot) {
            if !self.room_waiting.contains(&(slot, generation)) {
                self.room_waiting.push((slot, generation));
            }
            return;
        }
        if self.table.parked(slot) {
            // No inflater free: stay unread (a receive still armed is
            // cancelled by the next data) until one is.
            if !self.parked.contains(&(slot, generation)) {
                self.parked.push((slot, generation));
            }
            return;
        }
        if self.table.throttled(slot, now) {
            // Over its rate limit: neither kept input nor the socket is read
            // until its timer says TimerAction::Resume.
            return;
        }
        if self.table.stalled(slot) {
            // Complete input waits in the carry: handle it before receiving more.
            return self.process_copy(slot, &[], now);
        }
        let Some(s) = self.table.get_mut(slot) else { return };
        if !s.io.recv_armed && s.conn.carry_len() > 0 && !s.conn.session.is_closed() && !s.io.deferred_handled {
            // Input that arrived while backed up: handle it once now.
            s.io.deferred_handled = true;
            return self.process_copy(slot, &[], now);
        }
        s.io.deferred_handled = false;
        if s.conn.has_backlog() {
            // Room output still going out (its send's completion comes back
            // here): closing or shutting down now would cut it off.
            if !s.conn.peer_eof && !s.conn.session.is_closed() {
                self.arm_recv(slot);
            }
            return;
        }
        if s.conn.peer_eof || s.conn.session.close_handshake_done() {
            return self.close(slot);
        }
        if s.conn.session.is_closed() && !s.conn.write_shut {
            s.conn.write_shut = true;
            let _ = s.io.stream.shutdown(std::net::Shutdown::Write);
        }
        self.arm_recv(slot);
    }

    /// During a shutdown, after a whole batch of completions was handled:
    /// each connection whose input is drained and output flushed gets its
    /// close (1001). Drained is judged here, not while handling completions,
    /// because a completion later in the batch may carry data that already
    /// left the socket. With DEFER_TASKRUN the kernel copies received data
    /// only when we enter the ring, so an empty socket (FIONREAD) now means
    /// nothing is left unhandled.
    fn shutdown_sweep(&mut self, now: Instant) {
        for slot in self.table.slots() {
            let Some(s) = self.table.get_mut(slot) else { continue };
            if s.conn.close_started || s.io.busy || s.io.dying || s.conn.has_pending() || s.conn.session.is_closed() {
                continue;
            }
            if !s.io.recv_armed {
                self.maybe_finish(slot, now);
                continue;
            }
            let mut unread: libc::c_int = 0;
            // SAFETY: FIONREAD writes one int through the pointer given.
            let r = unsafe { libc::ioctl(s.io.stream.as_raw_fd(), libc::FIONREAD, &mut unread) };
            if (r != 0 || unread == 0) && self.table.shutdown_close(slot, now) {
                self.send_output(slot, None, now);
            }
        }
    }

    fn on_eof(&mut self, slot: usize) {
        let Some(s) = self.table.get_mut(slot) else { return };
        if s.io.busy || s.conn.has_pending() || s.conn.session.stalled().is_some() {
            s.conn.peer_eof = true;
        } else {
            self.close(slot);
        }
    }

    /// Closes a connection: at once if nothing is in flight, else once its
    /// operations complete (the kernel may still use their memory).
    fn close(&mut self, slot: usize) {
        let Some(s) = self.table.get_mut(slot) else { return };
        s.io.dying = true;
        if !s.io.busy && !s.io.recv_armed {
            // One that backed up held input and output on the heap.
            self.heap_to_trim |= s.io.throttled;
            self.table.remove(slot);
            return;
        }
        // Make in-flight operations finish now.
        let _ = s.io.stream.shutdown(std::net::Shutdown::Both);
        self.cancel_recv(slot);
    }

    /// Stops accepting; `shutdown_sweep` closes each connection once drained.
    fn begin_shutdown(&mut self) {
        for i in 0..self.listeners.len() {
            if self.listeners[i].armed {
                let sqe =
                    opcode::AsyncCancel::new(user_data(OP_ACCEPT, i, 0)).build().user_data(user_data(OP_CANCEL, 0, 0));
                let _ = self.push(sqe);
            }
            // Our copy closes now; an accept in flight holds the socket until
            // its cancellation completes (see `event_loop`).
            self.listeners[i].socket = None;
        }
    }
}

fn zeroed_msghdr() -> Box<libc::msghdr> {
    // SAFETY: an all-zero msghdr is valid (no name, no iovecs, no control).
    Box::new(unsafe { std::mem::zeroed() })
}
