//! The admin listener's status page in headless Chromium (over the DevTools
//! protocol, `tests/python/chromium_status.py`): it shows the connections
//! the test holds open, a chart that moves under the test's load, and its
//! echo console reaches the server's public listener.

mod common;

use common::{RawClient, Server};
use ricochet::ws::client::Event;
use ricochet::ws::frame::OpCode;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[test]
fn the_status_page_shows_the_real_state_and_echoes() {
    let server = Server::start(&["--metrics-listen", "127.0.0.1:0", "--shards", "2"]);
    let admin = server.metrics.expect("metrics on");
    let held: Vec<RawClient> = (0..3).map(|_| RawClient::open(server.addr)).collect();
    // One more connection keeps echoing, so the charts have something to draw.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = RawClient::open(server.addr);
    let flag = stop.clone();
    let loader = std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            load.send(true, OpCode::Binary, b"load");
            assert_eq!(load.next_event(), Some(Event::Message(OpCode::Binary, b"load".to_vec())));
        }
    });
    let shot = tempfile::Builder::new().suffix(".png").tempfile().unwrap();
    let backend = if common::backend() == "uring" { "io_uring" } else { "epoll" };
    let out = Command::new(common::python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/chromium_status.py"))
        .arg(format!("http://{admin}/"))
        .arg((held.len() + 1).to_string())
        .arg(backend)
        .arg(shot.path())
        .output()
        .expect("run python");
    stop.store(true, Ordering::Relaxed);
    loader.join().unwrap();
    common::assert_script_passed("Chromium", out, &server);
    let png = std::fs::read(shot.path()).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "no screenshot");
    drop(held);
}
