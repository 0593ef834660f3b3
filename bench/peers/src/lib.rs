//! Shared by the peer servers: the one flag they take and the line they print.

use std::io::Write;
use std::net::SocketAddr;

/// `--listen ADDR` (default 127.0.0.1:0), as `ricochet serve` takes it.
pub fn listen_addr() -> SocketAddr {
    let args: Vec<String> = std::env::args().collect();
    let value = args.iter().position(|a| a == "--listen").and_then(|i| args.get(i + 1)).map(String::as_str);
    value.unwrap_or("127.0.0.1:0").parse().unwrap_or_else(|_| {
        eprintln!("usage: {} [--listen ADDR]", args[0]);
        std::process::exit(2)
    })
}

/// Prints `listening on ADDR`, the line `make bench` waits for.
pub fn announce(addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
}

/// Runs a single-threaded tokio server: binds `--listen`, announces it, and
/// hands each accepted connection (TCP_NODELAY set) to `handle` as a local task.
pub fn serve_current_thread<F, Fut>(handle: F)
where
    F: Fn(tokio::net::TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let listener = tokio::net::TcpListener::bind(listen_addr()).await.expect("bind");
        announce(listener.local_addr().expect("local address"));
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            tokio::task::spawn_local(handle(stream));
        }
    });
}
