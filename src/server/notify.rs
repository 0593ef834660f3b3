//! systemd's notify protocol (`sd_notify(3)`): datagrams of `KEY=VALUE`
//! lines sent to the socket named by `$NOTIFY_SOCKET`, a path or, with a
//! leading `@`, a Linux abstract address. About thirty lines; a crate would
//! add nothing. Without `$NOTIFY_SOCKET` (not under `Type=notify`) every
//! call does nothing.

use std::os::fd::{AsRawFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The most descriptors one message may carry (`SCM_MAX_FD`, unix(7)).
pub const MAX_FDS_PER_MESSAGE: usize = 253;

/// Where readiness and status go, if anywhere.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; a notifier that does nothing without it (or
    /// when the address cannot be used: notifying is never worth failing for).
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|v| {
            let v = v.into_encoded_bytes();
            let addr = match v.strip_prefix(b"@") {
                Some(name) => SocketAddr::from_abstract_name(name).ok()?,
                None => SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(&v)).ok()?,
            };
            Some((UnixDatagram::unbound().ok()?, addr))
        });
        Notifier { target }
    }

    /// True when a service manager listens.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `state` (newline-separated `KEY=VALUE` assignments); a failure is ignored.
    pub fn notify(&self, state: &str) {
        if let Some((socket, addr)) = &self.target {
            let _ = socket.send_to_addr(state.as_bytes(), addr);
        }
    }

    /// Sends `state` with `fds` attached (SCM_RIGHTS, at most
    /// [`MAX_FDS_PER_MESSAGE`]): how descriptors reach systemd's file
    /// descriptor store (`FDSTORE=1`, `sd_pid_notify_with_fds(3)`). Unlike
    /// [`Notifier::notify`] a failure is returned: the caller says what it
    /// means for restarts.
    pub fn send_fds(&self, state: &str, fds: &[RawFd]) -> std::io::Result<()> {
        let Some((_, addr)) = &self.target else { return Ok(()) };
        if fds.len() > MAX_FDS_PER_MESSAGE {
            return Err(std::io::Error::other("more descriptors than one message carries"));
        }
        // A socket connected for this message alone: sendmsg then needs no
        // address, and a manager that re-bound its socket since is reached.
        let socket = UnixDatagram::unbound()?;
        socket.connect_addr(addr)?;
        let bytes = state.as_bytes();
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
            let n = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
            if n >= 0 {
                return Ok(());
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}
