//! The ceiling: a raw TCP echo on one epoll loop (mio), the same bytes with
//! no WebSocket framing, no masking, no handshake. Output the socket does not
//! take is kept and reading paused until it drains, as Ricochet does.

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};

const LISTENER: Token = Token(usize::MAX);

struct Conn {
    stream: TcpStream,
    pending: Vec<u8>,
}

fn main() {
    let mut poll = Poll::new().unwrap();
    let mut listener = TcpListener::bind(ricochet_peers::listen_addr()).unwrap();
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE).unwrap();
    ricochet_peers::announce(listener.local_addr().unwrap(), false);
    let mut conns: HashMap<usize, Conn> = HashMap::new();
    let mut next = 0usize;
    let mut buf = vec![0u8; 128 * 1024];
    let mut events = Events::with_capacity(1024);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            panic!("poll: {e}");
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                while let Ok((mut s, _)) = listener.accept() {
                    let _ = s.set_nodelay(true);
                    next += 1;
                    poll.registry().register(&mut s, Token(next), Interest::READABLE | Interest::WRITABLE).unwrap();
                    conns.insert(next, Conn { stream: s, pending: Vec::new() });
                }
                continue;
            }
            let id = ev.token().0;
            let Some(c) = conns.get_mut(&id) else { continue };
            let mut dead = false;
            // Drain pending output first; read only when none is left.
            while !c.pending.is_empty() {
                match c.stream.write(&c.pending) {
                    Ok(n) => {
                        c.pending.drain(..n);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        dead = true;
                        break;
                    }
                }
            }
            while !dead && c.pending.is_empty() {
                match c.stream.read(&mut buf) {
                    Ok(0) => dead = true,
                    Ok(n) => {
                        let mut off = 0;
                        while off < n {
                            match c.stream.write(&buf[off..n]) {
                                Ok(w) => off += w,
                                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                                    c.pending.extend_from_slice(&buf[off..n]);
                                    break;
                                }
                                Err(_) => {
                                    dead = true;
                                    break;
                                }
                            }
                        }
                        if n < buf.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => dead = true,
                }
            }
            if dead {
                conns.remove(&id);
            }
        }
    }
}
