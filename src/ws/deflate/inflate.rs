//! Checking compressed messages (RFC 7692 §7.2.2) without keeping them: each
//! message is inflated once, into a small scratch buffer whose output is
//! looked at (UTF-8, size) and thrown away, or, in the fallback echo, copied
//! out as uncompressed fragments.
//!
//! Inflaters are the only memory deflate costs, and only while a message is
//! in flight: a message complete in one read uses the shard's own; one that
//! spans reads borrows one from a bounded per-shard [`Inflaters`] pool and
//! gives it back at its end. Nothing is ever compressed.

use crate::ws::error::ProtocolError;
use flate2::{Decompress, FlushDecompress, Status};
use std::cell::RefCell;

/// RFC 7692 §7.2.2: the receiver appends these four octets (the end of an
/// empty stored block, which the sender removed) before inflating.
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Scratch output per inflate call: the decoder's output is looked at in
/// pieces of this size, so nothing proportional to a message is kept.
pub const SCRATCH_LEN: usize = 16 * 1024;

/// The window every inflater uses. A raw inflater with the largest window
/// decodes a stream made with any smaller one, so one size serves every
/// negotiated `client_max_window_bits`, and zlib-rs resets a 15-bit
/// inflater without reallocating (other sizes are rebuilt on reset).
const WINDOW_BITS: u8 = 15;

/// Free inflaters a pool keeps for reuse; more are freed when given back,
/// so a burst of messages spanning reads does not leave the shard holding
/// `cap` of them (up to 3 MiB at the default 64) for good.
pub const KEEP_FREE: usize = 4;

/// One raw-deflate decoder and the inflated size of the message it is on.
/// In zlib-rs it is 19 KB when made and grows to 47 KB as its 32 KiB window
/// fills (measured on x86-64: 1,000 of them, RSS before and after one 64 KiB
/// message each).
pub struct Inflater {
    d: Decompress,
    inflated: u64,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater").field("inflated", &self.inflated).finish_non_exhaustive()
    }
}

/// What [`Inflater::feed`] does with each piece of inflated output: `Ok(true)`
/// to go on, `Ok(false)` to stop after this piece (the caller's output budget
/// is spent), or an error that fails the connection.
pub type Sink<'a> = dyn FnMut(&[u8]) -> Result<bool, ProtocolError> + 'a;

impl Inflater {
    fn new() -> Inflater {
        Inflater { d: Decompress::new_with_window_bits(false, WINDOW_BITS), inflated: 0 }
    }

    /// Starts a message: a fresh stream (no context takeover, RFC 7692 §7.1.1).
    pub fn start(&mut self) {
        self.d.reset(false);
        self.inflated = 0;
    }

    /// Bytes inflated so far in this message.
    pub fn inflated(&self) -> u64 {
        self.inflated
    }

    /// Inflates `input` (compressed payload bytes, unmasked), handing the
    /// output to `sink` piece by piece; returns how many input bytes were
    /// used: all of them unless `sink` asked to stop. Corrupt data is 1007
    /// and more than `limit` inflated bytes is 1009 (the decompression-bomb
    /// guard), both found before the offending output reaches `sink`'s peer.
    pub fn feed(
        &mut self,
        input: &[u8],
        limit: u64,
        scratch: &mut [u8],
        sink: &mut Sink<'_>,
    ) -> Result<usize, ProtocolError> {
        self.run(input, FlushDecompress::None, limit, scratch, sink)
    }

    /// Ends the message: inflates the [`TAIL`] (RFC 7692 §7.2.2) and hands
    /// the rest of the output to `sink`, which may not stop here (what is left
    /// is at most a few bytes of input's worth).
    pub fn finish(&mut self, limit: u64, scratch: &mut [u8], sink: &mut Sink<'_>) -> Result<(), ProtocolError> {
        let mut all = |b: &[u8]| sink(b).map(|_| true);
        self.run(&TAIL, FlushDecompress::Sync, limit, scratch, &mut all).map(|_| ())
    }

    fn run(
        &mut self,
        input: &[u8],
        flush: FlushDecompress,
        limit: u64,
        scratch: &mut [u8],
        sink: &mut Sink<'_>,
    ) -> Result<usize, ProtocolError> {
        let mut pos = 0;
        loop {
            let (in0, out0) = (self.d.total_in(), self.d.total_out());
            let status = self.d.decompress(&input[pos..], scratch, flush).map_err(|_| ProtocolError::BadDeflate)?;
            let used = (self.d.total_in() - in0) as usize;
            let made = (self.d.total_out() - out0) as usize;
            pos += used;
            let mut go_on = true;
            if made > 0 {
                self.inflated += made as u64;
                if self.inflated > limit {
                    return Err(ProtocolError::TooBig(self.inflated));
                }
                go_on = sink(&scratch[..made])?;
            }
            if status == Status::StreamEnd {
                // RFC 7692 §7.2.3.3 (a block with BFINAL set): the stream
                // ended inside the message; what follows is a new stream.
                // zlib-rs keeps its window on reset at 15 bits.
                self.d.reset(false);
            }
            let output_full = made == scratch.len();
            if !go_on || (pos == input.len() && !output_full) {
                return Ok(pos);
            }
            if used == 0 && made == 0 && status != Status::StreamEnd {
                // No progress with input left: the decoder wants nothing more
                // from this input (cannot happen with valid data; be safe).
                return Ok(input.len());
            }
        }
    }
}

/// Inflaters of one shard: its own (for messages complete in one read) and a
/// bounded pool for messages that span reads, plus the scratch output.
#[derive(Debug)]
pub struct Inflaters {
    inner: RefCell<Pool>,
}

#[derive(Debug)]
struct Pool {
    own: Option<Box<Inflater>>,
    /// Boxed so that a session holding one costs it a pointer.
    #[allow(clippy::vec_box)]
    free: Vec<Box<Inflater>>,
    /// Inflaters held by connections now.
    lent: usize,
    /// Most inflaters lent at once.
    cap: usize,
    scratch: Vec<u8>,
    /// Times a connection found the pool empty and waited.
    waits: u64,
}

impl Inflaters {
    /// A shard's inflaters, lending at most `cap` at once. Nothing is
    /// allocated until a compressed message arrives.
    pub fn new(cap: usize) -> Inflaters {
        Inflaters {
            inner: RefCell::new(Pool { own: None, free: Vec::new(), lent: 0, cap, scratch: Vec::new(), waits: 0 }),
        }
    }

    /// True when [`Inflaters::take`] would succeed.
    pub fn available(&self) -> bool {
        let p = self.inner.borrow();
        p.lent < p.cap
    }

    /// Borrows an inflater for a message that spans reads; `None` when `cap`
    /// are lent (the connection waits: it is not read until one comes back).
    pub fn take(&self) -> Option<Box<Inflater>> {
        let mut p = self.inner.borrow_mut();
        if p.lent >= p.cap {
            p.waits += 1;
            return None;
        }
        p.lent += 1;
        Some(p.free.pop().unwrap_or_else(|| Box::new(Inflater::new())))
    }

    /// Gives a borrowed inflater back (kept for reuse up to [`KEEP_FREE`]).
    pub fn give(&self, i: Box<Inflater>) {
        let mut p = self.inner.borrow_mut();
        p.lent -= 1;
        if p.free.len() < KEEP_FREE {
            p.free.push(i);
        }
    }

    /// Free inflaters kept for reuse.
    pub fn kept(&self) -> usize {
        self.inner.borrow().free.len()
    }

    /// Moves the shard's own inflater, state and all, to the caller as a
    /// lent one, and gives the shard a fresh one (for a message that turned
    /// out to outlive its input; the cap is not checked, as this is a
    /// safety net that should never run).
    pub fn adopt_own(&self) -> Box<Inflater> {
        let mut p = self.inner.borrow_mut();
        p.lent += 1;
        let fresh = p.free.pop().unwrap_or_else(|| Box::new(Inflater::new()));
        p.own.replace(fresh).unwrap_or_else(|| Box::new(Inflater::new()))
    }

    /// Inflaters lent now.
    pub fn lent(&self) -> usize {
        self.inner.borrow().lent
    }

    /// Times a connection waited for an inflater.
    pub fn waits(&self) -> u64 {
        self.inner.borrow().waits
    }

    /// Runs `f` with `inflater` (or, if `None`, the shard's own) and the
    /// scratch output buffer.
    pub fn with<R>(&self, inflater: Option<&mut Inflater>, f: impl FnOnce(&mut Inflater, &mut [u8]) -> R) -> R {
        let mut p = self.inner.borrow_mut();
        let p = &mut *p;
        if p.scratch.is_empty() {
            p.scratch = vec![0; SCRATCH_LEN];
        }
        match inflater {
            Some(i) => f(i, &mut p.scratch),
            None => f(p.own.get_or_insert_with(|| Box::new(Inflater::new())), &mut p.scratch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::client::deflate_message as compress;
    use flate2::{Compress, Compression, FlushCompress};

    fn inflate_all(pieces: &[&[u8]], limit: u64) -> Result<Vec<u8>, ProtocolError> {
        let pool = Inflaters::new(1);
        let mut got = Vec::new();
        pool.with(None, |i, scratch| {
            i.start();
            let mut sink = |b: &[u8]| {
                got.extend_from_slice(b);
                Ok(true)
            };
            for p in pieces {
                assert_eq!(i.feed(p, limit, scratch, &mut sink)?, p.len());
            }
            i.finish(limit, scratch, &mut sink)
        })?;
        Ok(got)
    }

    #[test]
    fn rfc_7692_examples_inflate() {
        // §7.2.3.1: "Hello" compressed.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate_all(&[&hello], 100).unwrap(), b"Hello");
        // §7.2.3.1: the same split into two fragments.
        assert_eq!(inflate_all(&[&hello[..3], &hello[3..]], 100).unwrap(), b"Hello");
        // §7.2.3.3: a stored (uncompressed) block.
        let stored = [0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00];
        assert_eq!(inflate_all(&[&stored], 100).unwrap(), b"Hello");
        // §7.2.3.4: two blocks in one message.
        let two = [0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate_all(&[&two], 100).unwrap(), b"Hello");
        // §7.2.3.5: a block with BFINAL set, then nothing: decoding goes on
        // (the appended tail is a new stream's empty stored block).
        let bfinal = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(inflate_all(&[&bfinal], 100).unwrap(), b"Hello");
        // §7.2.3.6: an empty message is the single byte 0x00.
        assert_eq!(inflate_all(&[&[0x00]], 100).unwrap(), b"");
        // And an empty payload (some senders omit even that).
        assert_eq!(inflate_all(&[], 100).unwrap(), b"");
    }

    #[test]
    fn bfinal_in_mid_message_is_not_the_end() {
        // Two complete streams back to back in one message: both are decoded.
        let mut c = Compress::new(Compression::default(), false);
        let mut a = Vec::with_capacity(64);
        c.compress_vec(b"first ", &mut a, FlushCompress::Finish).unwrap();
        let mut c = Compress::new(Compression::default(), false);
        let mut b = Vec::with_capacity(64);
        c.compress_vec(b"second", &mut b, FlushCompress::Finish).unwrap();
        a.extend_from_slice(&b);
        assert_eq!(inflate_all(&[&a], 100).unwrap(), b"first second");
        // Cut at every byte: the same.
        for k in 0..a.len() {
            assert_eq!(inflate_all(&[&a[..k], &a[k..]], 100).unwrap(), b"first second", "split at {k}");
        }
    }

    #[test]
    fn corrupt_data_is_1007() {
        let e = inflate_all(&[&[0xff, 0xff, 0xff, 0xff]], 100).unwrap_err();
        assert_eq!(e, ProtocolError::BadDeflate);
        assert_eq!(e.close_code(), crate::ws::close::INVALID_PAYLOAD);
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 1 << 20];
        let z = compress(&zeros);
        assert!(z.len() < 2000);
        let e = inflate_all(&[&z], 64 * 1024).unwrap_err();
        assert!(matches!(e, ProtocolError::TooBig(n) if n > 64 * 1024 && n <= 64 * 1024 + SCRATCH_LEN as u64));
        assert_eq!(inflate_all(&[&z], 1 << 20).unwrap(), zeros);
    }

    #[test]
    fn a_sink_can_stop_mid_input_and_resume() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 7 + i / 1000 % 5) as u8).collect();
        let z = compress(&data);
        let pool = Inflaters::new(1);
        let mut got = Vec::new();
        pool.with(None, |i, scratch| {
            i.start();
            let mut pos = 0;
            let mut rounds = 0;
            while pos < z.len() {
                let mut budget = 0;
                let mut sink = |b: &[u8]| {
                    got.extend_from_slice(b);
                    budget += b.len();
                    Ok(budget < 20_000)
                };
                pos += i.feed(&z[pos..], u64::MAX, scratch, &mut sink).unwrap();
                rounds += 1;
            }
            i.finish(u64::MAX, scratch, &mut |b: &[u8]| {
                got.extend_from_slice(b);
                Ok(true)
            })
            .unwrap();
            assert!(rounds > 5, "{rounds}");
        });
        assert_eq!(got, data);
    }

    #[test]
    fn the_pool_keeps_only_a_few_free() {
        let pool = Inflaters::new(64);
        let lent: Vec<_> = (0..20).map(|_| pool.take().unwrap()).collect();
        for i in lent {
            pool.give(i);
        }
        assert_eq!((pool.lent(), pool.kept()), (0, KEEP_FREE));
    }

    #[test]
    fn the_pool_lends_at_most_its_cap() {
        let pool = Inflaters::new(2);
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        assert!(!pool.available());
        assert!(pool.take().is_none());
        assert_eq!(pool.waits(), 1);
        pool.give(a);
        assert!(pool.available());
        let c = pool.take().unwrap();
        pool.give(b);
        pool.give(c);
        assert_eq!(pool.lent(), 0);
    }
}
