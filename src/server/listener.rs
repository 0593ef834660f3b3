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
}

/// Fails with `AddrInUse` when another socket already listens on `addr`
/// (another process, or a forgotten instance of this one). SO_REUSEPORT
/// would otherwise let a second server bind the same port and silently take
/// a share of new connections. The probe binds without SO_REUSEPORT (but
/// with SO_REUSEADDR, so connections in TIME_WAIT from an earlier run do not
/// count) and is closed at once. Port 0 needs no probe.
pub fn ensure_unused(addr: SocketAddr) -> std::io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())
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
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(opts.backlog)?;
    Ok(s.into())
}
