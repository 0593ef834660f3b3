//! Listening sockets: one per shard, all bound to the same address with
//! SO_REUSEPORT so the kernel spreads new connections across shards.

use socket2::{Domain, Protocol, Socket, Type};
use std::net::{SocketAddr, TcpListener};

/// Socket options applied to a listener (and inherited by accepted sockets).
#[derive(Clone, Copy, Debug)]
pub struct ListenOptions {
    /// listen(2) backlog.
    pub backlog: i32,
    /// SO_RCVBUF; set before listen so the advertised window scale fits it.
    pub rcvbuf: Option<usize>,
    /// SO_SNDBUF.
    pub sndbuf: Option<usize>,
    /// TCP_NODELAY, set once here instead of once per accepted connection:
    /// Linux copies the listener's Nagle setting into every socket it
    /// accepts (the child is a clone of the listening sock), which saves a
    /// setsockopt per handshake. `accepted_sockets_inherit_nodelay` checks
    /// that this kernel does.
    pub nodelay: bool,
}

/// Sets TCP_NODELAY on a listener that was not bound here (one inherited
/// through `--takeover` from an older process), so its accepted sockets get
/// it as [`bind_all`]'s do.
pub fn set_nodelay(l: &TcpListener, on: bool) -> std::io::Result<()> {
    socket2::SockRef::from(l).set_nodelay(on)
}

/// How long [`ensure_unused`] waits for a listener on the address to go
/// away before it calls the address taken.
pub const PROBE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

/// Fails with `AddrInUse` when another socket listens on `addr` (another
/// process, or a forgotten instance of this one). SO_REUSEPORT would
/// otherwise let a second server bind the same port and silently take a
/// share of new connections. The probe binds without SO_REUSEPORT (but with
/// SO_REUSEADDR, so connections in TIME_WAIT or still closing from an
/// earlier run do not count) and is closed at once. Port 0 needs no probe.
///
/// A listener can outlive its process for a moment: an io_uring ring with
/// an accept armed holds it until the ring's teardown, which the kernel
/// finishes after the process was reaped (0.1-0.4 s seen). A restart right
/// after a crash would find it and be refused, so the probe tries again for
/// up to [`PROBE_PATIENCE`]: such a listener goes away, a live server's
/// stays. Joining it instead (SO_REUSEPORT) would hand new connections to a
/// queue nobody reads.
pub fn ensure_unused(addr: SocketAddr) -> std::io::Result<()> {
    ensure_unused_within(addr, PROBE_PATIENCE)
}

/// [`ensure_unused`] with the patience given.
pub fn ensure_unused_within(addr: SocketAddr, patience: std::time::Duration) -> std::io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let t0 = std::time::Instant::now();
    loop {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        match s.bind(&addr.into()) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && t0.elapsed() < patience => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

/// Binds `n` non-blocking listeners to `addr`. With port 0 the first one picks
/// a free port and the others bind to that same port.
pub fn bind_all(addr: SocketAddr, n: usize, opts: ListenOptions) -> std::io::Result<Vec<TcpListener>> {
    let mut out = Vec::with_capacity(n);
    let mut addr = addr;
    for _ in 0..n {
        let l = bind(addr, opts)?;
        addr = l.local_addr()?;
        out.push(l);
    }
    Ok(out)
}

fn bind(addr: SocketAddr, opts: ListenOptions) -> std::io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    if let Some(n) = opts.rcvbuf {
        s.set_recv_buffer_size(n)?;
    }
    if let Some(n) = opts.sndbuf {
        s.set_send_buffer_size(n)?;
    }
    if opts.nodelay {
        s.set_nodelay(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(opts.backlog)?;
    Ok(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    fn accepted_nodelay(nodelay: bool) -> bool {
        let opts = ListenOptions { backlog: 16, rcvbuf: None, sndbuf: None, nodelay };
        let l = bind_all("127.0.0.1:0".parse().unwrap(), 1, opts).unwrap().pop().unwrap();
        let _client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        l.set_nonblocking(false).unwrap();
        let (s, _) = l.accept().unwrap();
        s.nodelay().unwrap()
    }

    #[test]
    fn accepted_sockets_inherit_nodelay() {
        // The drivers set no socket option per connection: they rely on this.
        assert!(accepted_nodelay(true));
        assert!(!accepted_nodelay(false));
    }
}
