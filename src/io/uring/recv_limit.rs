//! A multishot receive that ends after a total number of bytes.
//!
//! A multishot receive reads ahead: each time the socket has data it fills
//! provided buffers, up to 32 in one go on this kernel, before the shard sees
//! any of them. When the connection is backed up (a client that sends and
//! does not read), all of that must be kept (`Conn::defer_input`): 4 MiB per
//! connection with 128 KiB buffers, and 200 such clients took one shard from
//! 6 MB to 183 MB (AMD EPYC, kernel 6.18), 75 MB still held after they left.
//! Linux 6.17 lets the submission say how many bytes the multishot receive
//! may take in all (`sqe->optlen`, the "overall mshot byte limit"); past
//! it the receive completes without `IORING_CQE_F_MORE` and the shard arms
//! another, after it has seen what came. The read-ahead is then bounded by
//! the limit: one more submission per [`limit`] bytes received, nothing per
//! message. The io-uring crate has no setter for the field, so it is written
//! into the entry's bytes; kernels before 6.17 refuse a receive with that
//! field set (it was `file_index`, which must be 0 there), so [`supported`]
//! tries it once first and the backend goes without where it is missing.

use io_uring::{cqueue, opcode, squeue, types};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;

/// Where `optlen` lies in an SQE: the union at byte 44 of `struct
/// io_uring_sqe` (`splice_fd_in` / `file_index` / `optlen` / `addr_len`),
/// kernel ABI.
const OPTLEN_AT: usize = 44;

// The entry is the kernel's 64-byte SQE as it is (`#[repr(C)]` over
// `io_uring_sqe`); the byte writes below rely on that.
const _: () = assert!(std::mem::size_of::<squeue::Entry>() == 64);

/// The limit of a multishot receive, given the provided buffers' size: two
/// buffers. The kernel checks it after each buffer it fills, so a receive
/// takes at most this plus one buffer before it must be armed again.
pub fn limit(buf_size: usize) -> u32 {
    u32::try_from(2 * buf_size).unwrap_or(u32::MAX)
}

/// A multishot receive on `fd` into buffer group `bgid` that ends after
/// `total` bytes.
pub fn recv_multi_limited(fd: types::Fd, bgid: u16, total: u32) -> squeue::Entry {
    let entry = opcode::RecvMulti::new(fd, bgid).build();
    // SAFETY: `squeue::Entry` is `#[repr(C)]` over the kernel's 64-byte
    // `io_uring_sqe` (size asserted above), so its bytes are the SQE's, and
    // any bytes are a valid SQE to hold; only `optlen`, which RecvMulti
    // leaves 0, is written.
    let mut raw: [u8; 64] = unsafe { std::mem::transmute(entry) };
    raw[OPTLEN_AT..OPTLEN_AT + 4].copy_from_slice(&total.to_ne_bytes());
    // SAFETY: as above, bytes of an SQE back into the entry.
    unsafe { std::mem::transmute::<[u8; 64], squeue::Entry>(raw) }
}

/// Whether this kernel takes [`recv_multi_limited`] and ends the receive at
/// the limit: tried once per process on a socket pair (two bytes waiting, a
/// limit of one), then remembered.
pub fn supported() -> bool {
    static ANSWER: OnceLock<bool> = OnceLock::new();
    *ANSWER.get_or_init(|| try_it().unwrap_or(false))
}

fn try_it() -> std::io::Result<bool> {
    let (mut ring, _) = super::probe::new_ring(8)?;
    let bufs = super::buf_ring::BufRing::new(&ring.submitter(), 4, 4, 64, 0, 1)?;
    let answer = (|| {
        let (mut a, b) = std::os::unix::net::UnixStream::pair()?;
        a.write_all(b"xy")?;
        let sqe = recv_multi_limited(types::Fd(b.as_raw_fd()), bufs.bgid, 1).user_data(7);
        // SAFETY: the socket and the buffer ring outlive the ring's use here.
        if unsafe { ring.submission().push(&sqe) }.is_err() {
            return Ok(false);
        }
        ring.submit_and_wait(1)?;
        // Supported: data received, and the receive ended with it (no
        // IORING_CQE_F_MORE, which a multishot receive without a limit
        // sets): the limit is checked after each receive, so it took both
        // bytes, then stopped. Refused: an error such as EINVAL.
        Ok(ring.completion().next().is_some_and(|c| c.result() >= 1 && !cqueue::more(c.flags())))
    })();
    // The ring goes before the buffers it may still point into (BufRing's invariant).
    drop(ring);
    drop(bufs);
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_two_buffers() {
        assert_eq!(limit(128 * 1024), 256 * 1024);
        assert_eq!(limit(usize::MAX / 2), u32::MAX);
    }

    #[test]
    fn this_kernel_answers_and_says_so() {
        // 6.17 and later take the limit; earlier ones refuse it. Either way
        // the answer is a clean bool, and on this project's kernel (6.18) yes.
        let yes = supported();
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut v = release.trim().split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (v.next().unwrap_or(0), v.next().unwrap_or(0));
        let allowed = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").map_or(true, |s| s.trim() == "0");
        if allowed && (major, minor) >= (6, 17) {
            assert!(yes, "kernel {release} should end a multishot receive at its limit");
        }
    }
}
