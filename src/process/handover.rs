//! Passing listening sockets between processes over a unix socket
//! (SCM_RIGHTS, unix(7)): the wire format of `--takeover`. The sockets
//! themselves move, not copies bound anew, so their accept queues are never
//! closed and no waiting connection is reset.
//!
//! The old process sends one message per socket: a line of text that says
//! what it is (`ws ADDR`, `wss ADDR` or `admin ADDR`) with the descriptor
//! attached, then `end`. The new one answers `ready` once it accepts on
//! them; only then does the old one stop accepting and drain.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// What a passed socket is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A plain ws:// listener.
    Plain,
    /// A wss:// listener.
    Tls,
    /// The admin (metrics) listener.
    Admin,
}

impl Role {
    fn word(self) -> &'static str {
        match self {
            Role::Plain => "ws",
            Role::Tls => "wss",
            Role::Admin => "admin",
        }
    }
}

/// A listening socket received from the old process.
#[derive(Debug)]
pub struct Passed {
    /// What it is for.
    pub role: Role,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The socket.
    pub socket: TcpListener,
    /// Passed back from systemd's file descriptor store (where an earlier
    /// process put it), not by a socket unit or a takeover.
    pub stored: bool,
}

/// Room for a control message carrying one descriptor.
fn fd_control() -> Vec<u8> {
    // SAFETY: CMSG_SPACE only computes a size.
    vec![0u8; unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize]
}

/// A message header over one buffer and `control`. It points into both,
/// so both must outlive every call it is passed to.
fn msghdr(iov: &mut libc::iovec, control: &mut [u8]) -> libc::msghdr {
    // SAFETY: an all-zero msghdr is valid (no name, no iovecs, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = control.len() as _;
    msg
}

/// Runs a socket call until it is not interrupted: a signal that arrives
/// before anything moved makes it fail with EINTR (a call on a socket with
/// SO_RCVTIMEO is never restarted), and nothing was sent or taken.
fn retrying(mut call: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Sends one line with `fd` attached (SCM_RIGHTS).
fn send_with_fd(stream: &UnixStream, line: &str, fd: RawFd) -> io::Result<()> {
    crate::server::scm::send_with_fds(stream.as_raw_fd(), line.as_bytes(), &[fd]).map(drop)
}

/// Receives one message: its text and the descriptor attached, if any.
fn recv_with_fd(stream: &UnixStream) -> io::Result<(String, Option<OwnedFd>)> {
    let mut buf = [0u8; 512];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: buf.len() };
    let mut control = fd_control();
    let mut msg = msghdr(&mut iov, &mut control);
    // SAFETY: `msg` points at `iov` (over `buf`) and `control`, alive here.
    // MSG_CMSG_CLOEXEC marks the received descriptor close-on-exec.
    let n = retrying(|| unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) })?;
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the old process hung up mid-handover"));
    }
    // SAFETY: the kernel filled `control` (at most its length); a descriptor
    // it carries is this process's from here on, and owned at once.
    let fd = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (!cmsg.is_null() && (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS)
            .then(|| OwnedFd::from_raw_fd(std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const RawFd)))
    };
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other("descriptors truncated in a handover message"));
    }
    Ok((String::from_utf8_lossy(&buf[..n]).into_owned(), fd))
}

/// The old process's side: sends every listener, then waits (up to
/// `wait`) for the new one to say it accepts. True when it did: the caller
/// then stops accepting and drains.
pub fn give(stream: &UnixStream, listeners: &[(Role, &TcpListener)], wait: std::time::Duration) -> io::Result<bool> {
    for (role, l) in listeners {
        let addr = l.local_addr()?;
        send_with_fd(stream, &format!("{} {addr}\n", role.word()), l.as_raw_fd())?;
    }
    (&*stream).write_all(b"end\n")?;
    stream.set_read_timeout(Some(wait))?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line.trim() == "ready")
}

/// The new process's side: receives the old process's listeners. The
/// stream stays open for [`confirm`].
pub fn take(stream: &UnixStream) -> io::Result<Vec<Passed>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("handover: {what}"));
    let mut out = Vec::new();
    loop {
        // A descriptor arrives with the first line of its message; a stream
        // socket may deliver the `end` line behind it in the same read.
        let (text, mut fd) = recv_with_fd(stream)?;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if line == "end" {
                return Ok(out);
            }
            let (word, addr) = line.split_once(' ').ok_or_else(|| bad("unreadable message"))?;
            let role = match word {
                "ws" => Role::Plain,
                "wss" => Role::Tls,
                "admin" => Role::Admin,
                _ => return Err(bad("unknown socket role")),
            };
            let addr: SocketAddr = addr.parse().map_err(|_| bad("unreadable address"))?;
            let fd = fd.take().ok_or_else(|| bad("a message without its socket"))?;
            let socket = TcpListener::from(fd);
            if socket.local_addr()? != addr {
                return Err(bad("a socket that is not what it says"));
            }
            out.push(Passed { role, addr, socket, stored: false });
        }
    }
}

/// The new process's side: tells the old one it accepts now.
pub fn confirm(stream: &UnixStream) -> io::Result<()> {
    (&*stream).write_all(b"ready\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_cross_a_socketpair_and_keep_their_queue() {
        let (old, new) = UnixStream::pair().unwrap();
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let b = TcpListener::bind("127.0.0.1:0").unwrap();
        // A connection waits in a's queue before the handover.
        let waiting = std::net::TcpStream::connect(a.local_addr().unwrap()).unwrap();
        let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let giver = std::thread::spawn(move || {
            give(&old, &[(Role::Plain, &a), (Role::Admin, &b)], std::time::Duration::from_secs(10)).unwrap()
        });
        let passed = take(&new).unwrap();
        assert_eq!(passed.len(), 2);
        assert_eq!((passed[0].role, passed[0].addr), (Role::Plain, aa));
        assert_eq!((passed[1].role, passed[1].addr), (Role::Admin, ba));
        confirm(&new).unwrap();
        assert!(giver.join().unwrap(), "the old side saw the confirmation");
        // The old side's copies are closed (the thread ended); the waiting
        // connection is still there to accept.
        let (accepted, _) = passed[0].socket.accept().unwrap();
        assert_eq!(accepted.peer_addr().unwrap(), waiting.local_addr().unwrap());
    }

    #[test]
    fn an_unconfirmed_handover_is_not_one() {
        let (old, new) = UnixStream::pair().unwrap();
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let giver =
            std::thread::spawn(move || give(&old, &[(Role::Tls, &a)], std::time::Duration::from_secs(10)).unwrap());
        let passed = take(&new).unwrap();
        assert_eq!(passed[0].role, Role::Tls);
        drop(new);
        assert!(!giver.join().unwrap());
    }
}
