//! The table's part in rooms (`--reply room`): members join at their
//! handshake and leave with their connection; collected messages are
//! published after their sender's own output went out; deliveries from
//! this shard and from the inbox go into members' backlogs, which the
//! driver writes ([`Table::backlog_slices`], [`Table::backlog_lend`]).

use super::{core_ctx, Table};
use crate::rooms::{Backlog, Delivery, Item, Member, Members, Message, Offer, Room, Rooms, Sender, SlowMember};
use crate::server::table::PeerAddr;
use crate::ws::output::Collected;
use crate::ws::{close, Output};
use std::io::IoSlice;
use std::sync::Arc;
use std::time::Instant;

/// A member's room state, kept beside the table by slot (dense: 16 bytes a
/// slot), so that a member costs little more than an echo connection until
/// it sends or gets a message.
///
/// Invariant: `ShardRooms::state[slot]` is `Some` exactly while the
/// connection in `slot` is a member: it is set when that connection joins
/// and cleared by `leave_room`, which `Table::remove` calls for every
/// connection it removes. So state found at a slot always belongs to the
/// slot's current connection, and carries no generation of its own (a
/// caller holding a `(slot, generation)` checks it against the table).
pub(super) struct RoomConn {
    /// The room it joined.
    room: Arc<Room>,
    /// Made when it first sends or gets a message.
    io: Option<Box<RoomIo>>,
}

// The idle member's cost is measured against this (docs/rooms.md).
const _: () = assert!(std::mem::size_of::<Option<RoomConn>>() == 16);

/// What a member that sends or gets messages keeps.
#[derive(Default)]
struct RoomIo {
    /// The message it is sending, gathered whole (see `Output::assembling`).
    assembling: Vec<u8>,
    /// The same as it came, if compressed (see `Output::compressed`).
    compressed: Vec<u8>,
    /// Room output waiting for its socket.
    backlog: Backlog,
}

/// A shard's room state.
pub(super) struct ShardRooms {
    pub(super) rooms: Arc<Rooms>,
    members: Members,
    /// Each slot's member state (None for a slot that is not a member).
    state: Vec<Option<RoomConn>>,
    /// Messages collected by `Table::input`, published by [`Table::publish`].
    to_publish: Vec<(Arc<Room>, Sender, Collected)>,
    /// Per target shard, deliveries gathered during one publish.
    batches: Vec<Vec<Delivery>>,
    /// Deliveries taken from the inbox.
    incoming: Vec<Delivery>,
    /// Messages for the uplink, gathered during one publish.
    forward: Vec<(Arc<Room>, Arc<Message>)>,
    /// Members with room output that was not there before: the driver writes them.
    flush: Vec<(usize, u32)>,
    /// Room output bytes waiting in this shard's backlogs.
    backlog_bytes: usize,
    /// One frame to seal for a TLS member.
    seal_in: Output,
    seal_out: Output,
}

impl ShardRooms {
    /// The member in `slot`, if the slot's connection is one (see
    /// [`RoomConn`]'s invariant).
    fn member(&mut self, slot: usize) -> Option<&mut RoomConn> {
        self.state.get_mut(slot)?.as_mut()
    }

    pub(super) fn new(rooms: Arc<Rooms>) -> ShardRooms {
        let shards = rooms.inboxes.len();
        ShardRooms {
            rooms,
            members: Members::default(),
            state: Vec::new(),
            to_publish: Vec::new(),
            batches: (0..shards).map(|_| Vec::new()).collect(),
            incoming: Vec::new(),
            forward: Vec::new(),
            flush: Vec::new(),
            backlog_bytes: 0,
            seal_in: Output::new(),
            seal_out: Output::new(),
        }
    }
}

impl<T: PeerAddr> Table<T> {
    /// After a session call: lists a member that joined its room in this
    /// call (or counts it out if its handshake was refused after all),
    /// and keeps the messages it completed for [`Table::publish`].
    /// `copies_in_place`: [`Table::own_copies_in_place`] put the member's
    /// own copies in the call's output (they are counted here).
    pub(super) fn after_room_input(
        &mut self,
        slot: usize,
        joined: Option<Arc<Room>>,
        upgraded: bool,
        tls: bool,
        copies_in_place: bool,
    ) {
        let Some(r) = self.room.as_mut() else { return };
        let id = self.ctx.id;
        let s = &mut self.slots[slot];
        if let Some(room) = joined {
            if upgraded {
                r.members.add(&room, Member { slot: slot as u32, generation: s.generation });
                self.ctx.metrics.room_members.add(1);
                if r.state.len() <= slot {
                    r.state.resize_with(slot + 1, || None);
                }
                // RoomConn's invariant: the slot's last member has left.
                debug_assert!(r.state[slot].is_none(), "slot {slot} still holds a member's state");
                r.state[slot] = Some(RoomConn { room, io: None });
            } else {
                r.rooms.registry.leave(&room, id);
            }
        }
        let out = if tls { &mut self.plain_out } else { &mut self.out };
        let generation = s.generation;
        let ShardRooms { state, to_publish, .. } = r;
        let Some(rc) = state.get_mut(slot).and_then(|x| x.as_mut()) else {
            return;
        };
        // The message in progress stays with its connection.
        if !out.assembling.is_empty() || !out.compressed.is_empty() || rc.io.is_some() {
            let io = rc.io.get_or_insert_with(Box::default);
            std::mem::swap(&mut out.assembling, &mut io.assembling);
            std::mem::swap(&mut out.compressed, &mut io.compressed);
        }
        if copies_in_place {
            // (`own_copies_in_place` put them in this call's output.)
            let n = out.messages.len() as u64;
            rc.room.stats.deliveries.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            self.ctx.metrics.room_deliveries.add(n);
        }
        let from = Sender { shard: id, slot, generation };
        let room = rc.room.clone();
        for m in out.messages.drain(..) {
            to_publish.push((room.clone(), from, m));
        }
    }

    /// After a session call that completed messages and also closed the
    /// connection (a protocol error behind them, or its close frame): other
    /// members' deliveries skip a closing member, and its close must not
    /// overtake its own copies, so they go into this call's output where
    /// they completed, as an echo would send them. True when it did (not
    /// with `--room-exclude-sender`). Plain connections; `input_tls` does
    /// the same before it seals.
    pub(super) fn own_copies_in_place(&mut self, slot: usize, buf: &[u8]) -> bool {
        let Some(r) = self.room.as_ref() else { return false };
        let out = &mut self.out;
        if r.rooms.settings.exclude_sender
            || out.messages.is_empty()
            || self.slots[slot].conn.session.phase() == crate::ws::Phase::Open
        {
            return false;
        }
        out.echo_collected_in_place(buf);
        true
    }

    /// Before a session call: the member's message in progress goes where
    /// the session gathers it.
    pub(super) fn before_room_input(&mut self, slot: usize, tls: bool) {
        let out = if tls { &mut self.plain_out } else { &mut self.out };
        out.assembling.clear();
        out.compressed.clear();
        if let Some(io) = self.room.as_mut().and_then(|r| r.member(slot)).and_then(|rc| rc.io.as_mut()) {
            std::mem::swap(&mut out.assembling, &mut io.assembling);
            std::mem::swap(&mut out.compressed, &mut io.compressed);
        }
    }

    /// Publishes the messages collected since the last call: to this
    /// shard's members at once, to other shards' through their inboxes (one
    /// push per shard). The driver calls it after it sent (or queued) the
    /// senders' own output, so a member's 101 always precedes its first
    /// room frame; it then writes [`Table::take_room_flush`].
    pub fn publish(&mut self, now: Instant) {
        let Some(r) = self.room.as_mut() else { return };
        if r.to_publish.is_empty() {
            return;
        }
        let mut list = std::mem::take(&mut r.to_publish);
        let uplink = r.rooms.uplink.clone();
        let max_payload = uplink.as_ref().map_or(usize::MAX, |u| u.max_payload());
        // Senders refused in this call: what they sent after the refused
        // message (in the same read) goes nowhere either, so no receiver
        // sees a gap in a sender's order. Empty, it allocates nothing.
        let mut refused: Vec<Sender> = Vec::new();
        for (room, from, frame) in list.drain(..) {
            if refused.contains(&from) {
                continue;
            }
            if frame.payload().len() > max_payload {
                // Nobody gets it, here or elsewhere: a room message reaches
                // every member or none (docs/cluster.md says why it is not split).
                self.close_member(from, close::MESSAGE_TOO_BIG, "too big for the cluster", now);
                refused.push(from);
                continue;
            }
            let message = Arc::new(Message { frame, from });
            room.stats.published.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.ctx.metrics.room_published.add(1);
            let r = self.room.as_mut().expect("checked above");
            for shard in 0..room.shards() {
                if shard != self.ctx.id && room.members_on(shard) > 0 {
                    r.batches[shard].push(Delivery { room: room.id, message: message.clone() });
                }
            }
            if uplink.is_some() {
                self.room.as_mut().expect("checked above").forward.push((room.clone(), message.clone()));
            }
            self.deliver_local(room.id, &message, now);
        }
        let r = self.room.as_mut().expect("checked above");
        r.to_publish = list;
        if let Some(u) = &uplink {
            u.forward(&mut r.forward);
        }
        for (shard, batch) in r.batches.iter_mut().enumerate() {
            r.rooms.inboxes[shard].push(batch);
        }
    }

    /// Delivers what other shards sent this one. Cheap when there is
    /// nothing (an atomic load); one lock to take everything otherwise.
    pub fn drain_inbox(&mut self, now: Instant) {
        let Some(r) = self.room.as_mut() else { return };
        let inbox = &r.rooms.inboxes[self.ctx.id];
        self.ctx.metrics.room_inbox_depth.set(inbox.depth() as u64);
        if inbox.depth() == 0 {
            return;
        }
        let mut incoming = std::mem::take(&mut r.incoming);
        for waiter in inbox.take(&mut incoming) {
            r.rooms.inboxes[waiter].wake();
        }
        for d in incoming.drain(..) {
            self.deliver_local(d.room, &d.message, now);
        }
        self.room.as_mut().expect("checked above").incoming = incoming;
    }

    /// Queues `message` for every member of room `id` on this shard.
    fn deliver_local(&mut self, id: u64, message: &Arc<Message>, now: Instant) {
        let Some(r) = self.room.as_mut() else { return };
        let Some((room, members)) = r.members.of(id) else { return };
        let settings = &r.rooms.settings;
        let limit = settings.backlog;
        // Counted once per message, not per member: the room's counters
        // are shared by every shard, and an atomic add per delivery would
        // move their cache line between shards as often.
        let (mut delivered, mut dropped, mut slow) = (0u64, 0u64, 0u64);
        for &m in members {
            if settings.exclude_sender
                && message.from == (Sender { shard: self.ctx.id, slot: m.slot as usize, generation: m.generation })
            {
                continue;
            }
            let Some(s) = self.slots.get_mut(m.slot as usize).filter(|s| s.generation == m.generation) else {
                continue;
            };
            if s.conn.session.phase() != crate::ws::Phase::Open {
                continue; // closing: it gets nothing more
            }
            // The slot's connection is m (checked above), so its state is m's.
            let Some(rc) = r.state.get_mut(m.slot as usize).and_then(|x| x.as_mut()) else {
                continue;
            };
            let compressed = message.compressed_for(s.conn.session.server_window());
            let io = rc.io.get_or_insert_with(Box::default);
            let (session, mut tls) = (&mut s.conn.session, s.conn.tls.as_deref_mut());
            let was_empty = io.backlog.is_empty();
            let before = io.backlog.bytes();
            let offered = match tls {
                None => io.backlog.offer(message, compressed, limit),
                Some(ref mut t) => {
                    // Encryption is per connection: the shared frame is
                    // sealed into this member's own records.
                    let bytes =
                        if compressed { message.compressed_bytes().unwrap_or_default() } else { message.bytes() };
                    if before > 0 && before + bytes.len() > limit {
                        Offer::Full
                    } else {
                        r.seal_in.clear();
                        r.seal_in.push_input(0, bytes.len());
                        r.seal_out.clear();
                        match t.seal(&r.seal_in, bytes, false, &mut r.seal_out) {
                            Ok(()) => {
                                let mut sealed = Vec::with_capacity(r.seal_out.len());
                                r.seal_out.copy_to(&[], &mut sealed);
                                io.backlog.push_bytes(sealed);
                                Offer::Queued
                            }
                            Err(_) => continue, // a failed TLS connection is on its way out
                        }
                    }
                }
            };
            match offered {
                Offer::Queued => delivered += 1,
                Offer::Full if settings.slow_member == SlowMember::Drop => dropped += 1,
                Offer::Full => {
                    slow += 1;
                    io.backlog.drop_unsent_frames();
                    let ctx = core_ctx(&self.ctx, &self.inflaters, now);
                    let seal = (&mut r.seal_in, &mut r.seal_out);
                    let bytes = close_frame(session, tls, &ctx, close::POLICY_VIOLATION, "too slow", seal);
                    io.backlog.push_bytes(bytes);
                }
            }
            r.backlog_bytes = r.backlog_bytes + io.backlog.bytes() - before;
            s.conn.backlog = !io.backlog.is_empty();
            if was_empty && !io.backlog.is_empty() {
                r.flush.push((m.slot as usize, m.generation));
            }
        }
        let add = |c: &std::sync::atomic::AtomicU64, n: u64| {
            if n > 0 {
                c.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }
        };
        add(&room.stats.deliveries, delivered);
        add(&room.stats.dropped, dropped);
        add(&room.stats.slow_closed, slow);
        self.ctx.metrics.room_deliveries.add(delivered);
        self.ctx.metrics.room_dropped.add(dropped);
        self.ctx.metrics.room_slow_closes.add(slow);
        self.ctx.metrics.room_backlog_bytes.set(r.backlog_bytes as u64);
    }

    /// Closes the member `who` (on this shard) with `code`: its close frame
    /// goes behind the room output it has waiting, and the driver writes it.
    fn close_member(&mut self, who: Sender, code: u16, reason: &str, now: Instant) {
        let Some(r) = self.room.as_mut() else { return };
        let Some(s) = self.slots.get_mut(who.slot).filter(|s| s.generation == who.generation) else { return };
        if s.conn.session.phase() != crate::ws::Phase::Open {
            return;
        }
        let Some(rc) = r.state.get_mut(who.slot).and_then(|x| x.as_mut()) else {
            return;
        };
        let io = rc.io.get_or_insert_with(Box::default);
        let ctx = core_ctx(&self.ctx, &self.inflaters, now);
        let seal = (&mut r.seal_in, &mut r.seal_out);
        let bytes = close_frame(&mut s.conn.session, s.conn.tls.as_deref_mut(), &ctx, code, reason, seal);
        let was_empty = io.backlog.is_empty();
        r.backlog_bytes += bytes.len();
        io.backlog.push_bytes(bytes);
        s.conn.backlog = true;
        if was_empty {
            r.flush.push((who.slot, who.generation));
        }
    }

    /// Members whose room output is new since the last call: the driver
    /// writes each (those already waiting for their socket are written
    /// when it takes more).
    pub fn take_room_flush(&mut self, into: &mut Vec<usize>) {
        let Some(r) = self.room.as_mut() else { return };
        for (slot, generation) in r.flush.drain(..) {
            if self.slots.get(slot).is_some_and(|s| s.generation == generation) {
                into.push(slot);
            }
        }
    }

    /// Whether a member must not be read now: another shard with members of
    /// its room has a full inbox (it is then woken when that inbox was
    /// emptied, and the driver tries again). So a publisher faster than its
    /// receivers' shards meets TCP flow control instead of growing inboxes.
    pub fn room_blocked(&self, slot: usize) -> bool {
        let (Some(r), Some(_)) = (self.room.as_ref(), self.slots.get(slot)) else { return false };
        let Some(rc) = r.state.get(slot).and_then(|x| x.as_ref()) else {
            return false;
        };
        let room = &rc.room;
        for shard in 0..room.shards() {
            if shard != self.ctx.id && room.members_on(shard) > 0 {
                let inbox = &r.rooms.inboxes[shard];
                if inbox.is_full() && inbox.wait_for_room(self.ctx.id) {
                    self.ctx.metrics.room_inbox_waits.add(1);
                    return true;
                }
            }
        }
        false
    }

    /// The backlog of the member in `slot`, and its connection's flag of
    /// room output waiting, borrowed together.
    fn backlog(&mut self, slot: usize) -> Option<(&mut Backlog, &mut bool, &mut usize)> {
        let s = self.slots.get_mut(slot)?;
        let r = self.room.as_mut()?;
        let rc = r.state.get_mut(slot)?.as_mut()?;
        let io = rc.io.as_mut()?;
        Some((&mut io.backlog, &mut s.conn.backlog, &mut r.backlog_bytes))
    }

    /// Appends the connection's own output (resolved against `buf`) behind
    /// its room output, where it must go to keep the order; false when it
    /// has no room output waiting (the driver sends as usual).
    pub fn queue_behind_backlog(&mut self, slot: usize, buf: &[u8]) -> bool {
        if !self.slots.get(slot).is_some_and(|s| s.conn.backlog) {
            return false;
        }
        let mut bytes = Vec::with_capacity(self.out.len());
        self.out.copy_to(buf, &mut bytes);
        self.queue_bytes_behind_backlog(slot, bytes).is_none()
    }

    /// Appends `bytes` of the connection's own behind its room output, where
    /// they must go to keep the order; gives them back when it has none.
    pub fn queue_bytes_behind_backlog(&mut self, slot: usize, bytes: Vec<u8>) -> Option<Vec<u8>> {
        let Some((backlog, _, total)) = self.backlog(slot).filter(|(b, _, _)| !b.is_empty()) else {
            return Some(bytes);
        };
        *total += bytes.len();
        backlog.push_bytes(bytes);
        None
    }

    /// Fills `out` with slices of the member's room output (epoll); returns how many.
    pub fn backlog_slices<'a>(&'a self, slot: usize, out: &mut [IoSlice<'a>]) -> usize {
        let Some(r) = self.room.as_ref() else { return 0 };
        r.state.get(slot).and_then(|x| x.as_ref()).and_then(|rc| rc.io.as_ref()).map_or(0, |io| io.backlog.slices(out))
    }

    /// `n` bytes of the member's room output went out.
    pub fn backlog_sent(&mut self, slot: usize, n: usize) {
        if let Some((backlog, flag, total)) = self.backlog(slot) {
            backlog.advance(n);
            *flag = !backlog.is_empty();
            *total -= n.min(*total);
            let t = *total as u64;
            self.ctx.metrics.room_backlog_bytes.set(t);
        }
    }

    /// Takes up to `max` items of the member's room output for a send in
    /// flight (io_uring); give them back with [`Table::backlog_give_back`].
    pub fn backlog_lend(&mut self, slot: usize, max: usize) -> Option<(Vec<Item>, usize)> {
        self.backlog(slot)?.0.lend(max)
    }

    /// Gives back items lent for a send of which `sent` bytes went out.
    pub fn backlog_give_back(&mut self, slot: usize, items: Vec<Item>, offset: usize, sent: usize) {
        if let Some((backlog, flag, total)) = self.backlog(slot) {
            backlog.give_back(items, offset, sent);
            *flag = !backlog.is_empty();
            *total -= sent.min(*total);
            let t = *total as u64;
            self.ctx.metrics.room_backlog_bytes.set(t);
        }
    }

    /// A connection going away leaves its room (listed out here first,
    /// then counted out of the registry: see [`Room`]'s invariant).
    pub(super) fn leave_room(&mut self, slot: usize, generation: u32) {
        let Some(r) = self.room.as_mut() else { return };
        // Called for the connection leaving `slot` (its state, by RoomConn's invariant).
        let Some(rc) = r.state.get_mut(slot).and_then(Option::take) else {
            return;
        };
        r.members.remove(rc.room.id, Member { slot: slot as u32, generation });
        r.rooms.registry.leave(&rc.room, self.ctx.id);
        self.ctx.metrics.room_members.set(self.ctx.metrics.room_members.get().saturating_sub(1));
        let waiting = rc.io.as_ref().map_or(0, |io| io.backlog.bytes());
        r.backlog_bytes -= waiting.min(r.backlog_bytes);
        self.ctx.metrics.room_backlog_bytes.set(r.backlog_bytes as u64);
    }
}

/// A close frame with `code` and `reason` from `session`, sealed into a TLS
/// record if the member is on TLS, ready for its backlog. `seal` is the
/// shard's scratch output pair.
fn close_frame(
    session: &mut crate::ws::Session,
    tls: Option<&mut crate::ws::tls::TlsConn>,
    ctx: &crate::ws::Ctx<'_>,
    code: u16,
    reason: &str,
    seal: (&mut Output, &mut Output),
) -> Vec<u8> {
    let (out, sealed) = seal;
    out.clear();
    session.close_with(ctx, code, reason, out);
    let mut bytes = Vec::new();
    match tls {
        Some(tls) => {
            sealed.clear();
            if tls.seal(out, &[], true, sealed).is_ok() {
                sealed.copy_to(&[], &mut bytes);
            }
        }
        None => out.copy_to(&[], &mut bytes),
    }
    bytes
}
