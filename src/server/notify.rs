//! systemd's notify protocol (`sd_notify(3)`): datagrams of `KEY=VALUE`
//! lines sent to the socket named by `$NOTIFY_SOCKET`, a path or, with a
//! leading `@`, a Linux abstract address. About thirty lines; a crate would
//! add nothing. Without `$NOTIFY_SOCKET` (not under `Type=notify`) every
//! call does nothing.

pub use crate::server::scm::MAX_FDS_PER_MESSAGE;
use std::os::fd::{AsRawFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

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
        // A socket connected for this message alone: sendmsg then needs no
        // address, and a manager that re-bound its socket since is reached.
        let socket = UnixDatagram::unbound()?;
        socket.connect_addr(addr)?;
        crate::server::scm::send_with_fds(socket.as_raw_fd(), state.as_bytes(), fds).map(drop)
    }
}
