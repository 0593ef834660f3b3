//! systemd socket activation (`sd_listen_fds(3)`): listening sockets passed
//! by the service manager as descriptors 3, 4, … with `LISTEN_FDS`,
//! `LISTEN_PID` and `LISTEN_FDNAMES` in the environment. systemd holds them
//! across `systemctl restart`, so connections arriving while the old
//! process drains and the new one starts wait in the queue instead of being
//! refused. `tuning/ricochet.socket` is such a unit. About forty lines of
//! the protocol; a crate would add nothing.
//!
//! A socket's name (`FileDescriptorName=`) says what it is for: `tls` (or
//! `wss`) a wss:// listener, `metrics` (or `admin`) the admin listener,
//! anything else (`ws`, or the unit's name, systemd's default) a ws://
//! listener. All shards share each passed socket (one accept queue, a
//! copy per shard), where `--listen` gives each shard a SO_REUSEPORT socket
//! of its own. Sockets back from the file descriptor store (`fdstore.rs`)
//! come the same way, named `ricochet-ws`, `ricochet-tls` or
//! `ricochet-metrics`, one per shard as they were bound.

use super::handover::{Passed, Role};
use super::ServeError;
use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// The role a descriptor's name gives it.
fn role_of(name: &str) -> Role {
    match name.strip_prefix(super::fdstore::PREFIX).unwrap_or(name) {
        "tls" | "wss" => Role::Tls,
        "metrics" | "admin" => Role::Admin,
        _ => Role::Plain,
    }
}

/// The listening sockets systemd passed to this process, if any. The
/// variables are removed, so a process this one starts (a `SIGUSR2`
/// successor) does not take them for its own.
pub fn from_env() -> Result<Vec<Passed>, ServeError> {
    let pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(v);
    }
    // Meant for another process (a parent that did not clear them): not
    // ours. No LISTEN_FDS is none passed, as for sd_listen_fds(3).
    if pid.and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id()) || count.is_none() {
        return Ok(Vec::new());
    }
    let bad = |why: String| ServeError::Activation(why);
    let n: RawFd = count
        .as_deref()
        .and_then(|c| c.parse().ok())
        .filter(|&n| (0..=1024).contains(&n))
        .ok_or_else(|| bad(format!("LISTEN_FDS={count:?} is not a count of descriptors")))?;
    let names: Vec<&str> = names.split(':').collect();
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for i in 0..n {
        let fd = FIRST_FD + i;
        let name = names.get(i as usize).copied().unwrap_or("");
        if !is_tcp_listener(fd) {
            return Err(bad(format!(
                "descriptor {fd} ({name}) is not a listening TCP socket: use ListenStream= in the socket unit"
            )));
        }
        // SAFETY: systemd passed `fd` to this process to own; it was checked
        // above to be a listening stream socket, and nothing else wraps it.
        let socket = unsafe { TcpListener::from_raw_fd(fd) };
        socket.set_nonblocking(true).map_err(|e| bad(format!("descriptor {fd}: {e}")))?;
        // FD_CLOEXEC: a successor started by SIGUSR2 gets its sockets by
        // --takeover, never by inheritance.
        // SAFETY: fcntl on a descriptor this process owns.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        let addr = socket.local_addr().map_err(|e| bad(format!("descriptor {fd}: {e}")))?;
        // The same socket twice (a socket unit's, stored too by an earlier
        // process given it by a takeover): served once.
        let id = socket_id(fd).map_err(|e| bad(format!("descriptor {fd}: {e}")))?;
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        let stored = name.starts_with(super::fdstore::PREFIX);
        out.push(Passed { role: role_of(name), addr, socket, stored });
    }
    Ok(out)
}

/// What tells one socket from another (its inode in sockfs).
fn socket_id(fd: RawFd) -> std::io::Result<(u64, u64)> {
    // SAFETY: an all-zero stat is a valid buffer; fstat writes into it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on a descriptor this process owns, into `st`.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.st_dev, st.st_ino))
}

/// True when `fd` is a listening TCP socket (SO_ACCEPTCONN on a stream socket).
fn is_tcp_listener(fd: RawFd) -> bool {
    let opt = |level, name| {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `v`.
        let r = unsafe { libc::getsockopt(fd, level, name, &mut v as *mut _ as *mut libc::c_void, &mut len) };
        (r == 0).then_some(v)
    };
    opt(libc::SOL_SOCKET, libc::SO_TYPE) == Some(libc::SOCK_STREAM)
        && opt(libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == Some(1)
        && matches!(opt(libc::SOL_SOCKET, libc::SO_DOMAIN), Some(libc::AF_INET | libc::AF_INET6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_say_what_a_socket_is_for() {
        assert_eq!(role_of("tls"), Role::Tls);
        assert_eq!(role_of("ricochet-tls"), Role::Tls);
        assert_eq!(role_of("ricochet-metrics"), Role::Admin);
        assert_eq!(role_of("ricochet-ws"), Role::Plain);
        assert_eq!(role_of("wss"), Role::Tls);
        assert_eq!(role_of("metrics"), Role::Admin);
        assert_eq!(role_of("ws"), Role::Plain);
        assert_eq!(role_of("ricochet.socket"), Role::Plain);
        assert_eq!(role_of(""), Role::Plain);
    }
}
