//! A second server on an address another process already listens on stops
//! with one line and exit 2, instead of silently taking half the new
//! connections through SO_REUSEPORT; `--share-port` allows it on purpose.

mod common;

use common::{backend, Server};
use std::process::Command;

#[test]
fn a_second_start_on_a_busy_port_is_refused() {
    let first = Server::start(&[]);
    let addr = first.addr.to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_ricochet"))
        .args(["serve", "--listen", &addr, "--shards", "1", "--no-pin", "--backend", &backend()])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&addr) && stderr.contains("already in use") && stderr.contains("--share-port"), "{stderr}");
    assert!(out.stdout.is_empty(), "printed `listening on`: {}", String::from_utf8_lossy(&out.stdout));
    // The wildcard address over a loopback listener conflicts too.
    let wildcard = format!("0.0.0.0:{}", first.addr.port());
    let out = Command::new(env!("CARGO_BIN_EXE_ricochet"))
        .args(["serve", "--listen", &wildcard, "--shards", "1", "--no-pin"])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn share_port_starts_beside_the_first_on_purpose() {
    let first = Server::start(&[]);
    let addr = first.addr.to_string();
    let second = Server::start(&["--listen", &addr, "--share-port"]);
    assert_eq!(second.addr, first.addr);
}

#[test]
fn a_port_freed_by_an_earlier_run_is_not_busy() {
    // Connections in TIME_WAIT from a stopped server do not count as a listener.
    let mut first = Server::start(&[]);
    let addr = first.addr;
    let mut c = common::RawClient::open(addr);
    c.send(true, ricochet::ws::frame::OpCode::Close, &1000u16.to_be_bytes());
    assert_eq!(c.expect_close(), Some(1000));
    first.signal(libc::SIGTERM);
    assert!(first.wait_exit(std::time::Duration::from_secs(10)).unwrap().success());
    let again = Server::start(&["--listen", &addr.to_string()]);
    assert_eq!(again.addr, addr);
}
