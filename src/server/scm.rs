//! Sending descriptors over a unix socket (SCM_RIGHTS, unix(7)): listeners
//! handed to a successor (`--takeover`) and to systemd's file descriptor
//! store (`FDSTORE=1`).

use std::io;
use std::os::fd::RawFd;

/// The most descriptors one message may carry (`SCM_MAX_FD`, unix(7)).
pub const MAX_FDS_PER_MESSAGE: usize = 253;

/// Sends `bytes` on the connected unix socket `socket` with `fds` attached
/// (none, or up to [`MAX_FDS_PER_MESSAGE`]); returns the bytes sent. A
/// signal that interrupts it before anything moved makes it start again.
pub fn send_with_fds(socket: RawFd, bytes: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    if fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(io::Error::other("more descriptors than one message carries"));
    }
    let mut iov = libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() };
    let data = std::mem::size_of_val(fds) as u32;
    // SAFETY: CMSG_SPACE only computes a size.
    let mut control = vec![0u8; unsafe { libc::CMSG_SPACE(data) } as usize];
    // SAFETY: an all-zero msghdr is valid (no name, no iovecs, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = control.len() as _;
        // SAFETY: `control` has room for one cmsghdr carrying `fds`
        // (CMSG_SPACE above), and `msg` points at it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(data) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg) as *mut RawFd, fds.len());
        }
    }
    loop {
        // SAFETY: `msg` points at `iov` (over `bytes`) and `control`, alive here.
        let n = unsafe { libc::sendmsg(socket, &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
