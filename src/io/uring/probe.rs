//! Can this process use io_uring as the backend needs it? Tried for real:
//! a ring with the setup flags, a provided-buffer ring, a multishot receive.

use super::buf_ring::BufRing;
use io_uring::{cqueue, opcode, types, IoUring};
use std::io::Write;
use std::os::fd::AsRawFd;
use thiserror::Error;

/// Why io_uring cannot be used here.
#[derive(Debug, Error)]
pub enum Unavailable {
    /// io_uring_setup failed.
    #[error("io_uring setup failed ({0}): kernel without io_uring, kernel.io_uring_disabled, or a seccomp filter")]
    Setup(std::io::Error),
    /// Provided-buffer rings are missing.
    #[error("provided buffer rings unsupported ({0}): needs Linux 5.19 or later")]
    BufRing(std::io::Error),
    /// Multishot receive is missing.
    #[error("multishot receive unsupported ({0}): needs Linux 6.0 or later")]
    Multishot(std::io::Error),
}

/// How rings are set up on this kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Support {
    /// SINGLE_ISSUER | DEFER_TASKRUN (Linux 6.1) is available; otherwise COOP_TASKRUN.
    pub defer_taskrun: bool,
}

/// Builds a ring with SINGLE_ISSUER and DEFER_TASKRUN, falling back to
/// COOP_TASKRUN, then to no flags, as the kernel allows.
pub fn new_ring(entries: u32) -> std::io::Result<(IoUring, bool)> {
    if let Ok(r) = IoUring::builder().setup_single_issuer().setup_defer_taskrun().build(entries) {
        return Ok((r, true));
    }
    if let Ok(r) = IoUring::builder().setup_coop_taskrun().build(entries) {
        return Ok((r, false));
    }
    IoUring::new(entries).map(|r| (r, false))
}

/// Tries everything the io_uring backend uses.
pub fn probe() -> Result<Support, Unavailable> {
    let (mut ring, defer_taskrun) = new_ring(8).map_err(Unavailable::Setup)?;
    // Field order matters for drop: `ring` must go before `bufs` (BufRing
    // invariant), so keep `bufs` declared after and drop `ring` explicitly.
    let bufs = BufRing::new(&ring.submitter(), 4, 4, 64, 0, 0).map_err(Unavailable::BufRing)?;
    let (mut a, b) = std::os::unix::net::UnixStream::pair().map_err(Unavailable::Multishot)?;
    a.write_all(b"x").map_err(Unavailable::Multishot)?;
    let sqe = opcode::RecvMulti::new(types::Fd(b.as_raw_fd()), bufs.bgid).build().user_data(1);
    // SAFETY: the socket and the buffer ring outlive the ring's use below.
    unsafe { ring.submission().push(&sqe) }.map_err(|_| Unavailable::Multishot(std::io::ErrorKind::Other.into()))?;
    ring.submit_and_wait(1).map_err(Unavailable::Multishot)?;
    let cqe = ring.completion().next();
    let result = match cqe {
        Some(c) if c.result() >= 1 && cqueue::buffer_select(c.flags()).is_some() => Ok(Support { defer_taskrun }),
        Some(c) if c.result() < 0 => Err(Unavailable::Multishot(std::io::Error::from_raw_os_error(-c.result()))),
        _ => Err(Unavailable::Multishot(std::io::ErrorKind::InvalidData.into())),
    };
    drop(ring);
    drop(bufs);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_answers_without_panicking() {
        // Either answer is fine here; the point is a clear one. On this
        // project's machines io_uring is allowed, so it must succeed there.
        match probe() {
            Ok(s) => eprintln!("io_uring available, defer_taskrun={}", s.defer_taskrun),
            Err(e) => {
                let msg = e.to_string();
                assert!(!msg.contains('\n'));
                let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").map(|v| v.trim() != "0");
                assert!(disabled.unwrap_or(true), "io_uring allowed by sysctl but probe failed: {msg}");
            }
        }
    }
}
